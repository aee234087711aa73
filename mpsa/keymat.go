package mpsa

import (
	"fmt"

	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/transform"
)

// DeriveKeys computes the keys of a group SA (draft §3.3.2):
//
//	KEYMAT = prf+(SK_d, Nonce)
//
// which is RFC 7296 §2.17 with Ni | Nr replaced by the Nonce. The encryption
// key is taken first, then the integrity key, as RFC 7296 takes the keys of
// its first direction; for AEAD suites the encryption key is followed by the
// 4-octet salt (RFC 4106 §8.1, RFC 7634 §2) and there is no integrity key.
// The caller wipes the result (Keys.Wipe) when the SA dies.
func DeriveKeys(spi uint32, s transform.ESP, prfID transform.PRF, skd, nonce []byte) (esp.Keys, error) {
	el, il, err := s.KeyLens()
	if err != nil {
		return esp.Keys{}, fmt.Errorf("mpsa: %w", err)
	}
	prf, err := suite.NewPRF(prfID)
	if err != nil {
		return esp.Keys{}, fmt.Errorf("mpsa: %w", err)
	}
	if len(skd) != prf.KeyLen() {
		return esp.Keys{}, fmt.Errorf("mpsa: SK_d is %d octets, %v needs %d", len(skd), prfID, prf.KeyLen())
	}
	keymat := make([]byte, el+il)
	if err := prf.PlusInto(keymat, skd, nonce); err != nil {
		clear(keymat)
		return esp.Keys{}, fmt.Errorf("mpsa: %w", err)
	}
	k := esp.Keys{SPI: spi, Suite: s, EncKey: keymat[:el:el]}
	if il > 0 {
		k.IntegKey = keymat[el:]
	}
	if err := k.Validate(); err != nil {
		k.Wipe()
		return esp.Keys{}, fmt.Errorf("mpsa: %w", err)
	}
	return k, nil
}

// Keys derives the ESP keys p describes (see DeriveKeys).
func (p *Put) Keys() (esp.Keys, error) {
	return DeriveKeys(p.SPI, p.Suite, p.PRF, p.SKd, p.Nonce)
}
