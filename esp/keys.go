package esp

import (
	"fmt"

	"github.com/mpsa-vpn/mpsa/transform"
)

// Keys is the keying of one ESP SA in one direction: its SPI, cipher suite and
// key material, as IKE (CHILD_SA, RFC 7296 §2.17) or MPSA (KEYMAT =
// prf+(SK_d, Nonce)) derived it. EncKey includes the 4-octet salt for AEAD
// ciphers. The zero value is not a usable SA.
//
// Keys holds secrets: never log it or format it with %v; call Wipe when the SA
// dies.
type Keys struct {
	SPI      uint32
	Suite    transform.ESP
	EncKey   []byte
	IntegKey []byte
}

// Validate checks that the key lengths match the suite.
func (k *Keys) Validate() error {
	el, il, err := k.Suite.KeyLens()
	if err != nil {
		return err
	}
	if len(k.EncKey) != el {
		return fmt.Errorf("esp: SPI %08x: encryption key is %d octets, %v needs %d", k.SPI, len(k.EncKey), k.Suite, el)
	}
	if len(k.IntegKey) != il {
		return fmt.Errorf("esp: SPI %08x: integrity key is %d octets, %v needs %d", k.SPI, len(k.IntegKey), k.Suite, il)
	}
	if k.SPI < 256 {
		return fmt.Errorf("esp: SPI %08x is reserved (RFC 4303 §2.1)", k.SPI)
	}
	return nil
}

// Clone returns a deep copy, so the copy can be wiped independently.
func (k *Keys) Clone() Keys {
	return Keys{
		SPI:      k.SPI,
		Suite:    k.Suite,
		EncKey:   append([]byte(nil), k.EncKey...),
		IntegKey: append([]byte(nil), k.IntegKey...),
	}
}

// Wipe zeroes the key material in place.
func (k *Keys) Wipe() {
	clear(k.EncKey)
	clear(k.IntegKey)
}

// String never prints key material.
func (k Keys) String() string { return fmt.Sprintf("ESP SA %08x %v", k.SPI, k.Suite) }

// GoString never prints key material either.
func (k Keys) GoString() string { return k.String() }
