package suite

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/transform"
)

// IKEKeys is the keying material of one IKE SA (RFC 7296 §2.14):
//
//	{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
//
// SK_ei/SK_er include the 4-octet salt for AEAD ciphers (RFC 5282 §7.1); SK_ai
// and SK_ar are empty with AEAD. All seven slices share one backing array.
//
// IKEKeys holds secrets: never log it or format it with %v (String prints only
// the suite); call Wipe when the IKE SA dies.
type IKEKeys struct {
	Suite Suite
	PRF   PRF

	SKd, SKai, SKar, SKei, SKer, SKpi, SKpr []byte
}

// DeriveIKEKeys computes the keys of a new IKE SA from IKE_SA_INIT (RFC 7296
// §2.14): SKEYSEED = prf(Ni | Nr, g^ir), then prf+ as above. shared is the
// Diffie-Hellman shared secret (DH.SharedSecret), spiI and spiR the IKE SPIs
// as on the wire.
func DeriveIKEKeys(s Suite, shared, ni, nr []byte, spiI, spiR uint64) (*IKEKeys, error) {
	prf, err := NewPRF(s.PRF)
	if err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if len(ni) == 0 || len(nr) == 0 || len(shared) == 0 {
		return nil, fmt.Errorf("suite: SKEYSEED needs both nonces and a shared secret")
	}
	skeyseed := skeyseedInit(prf, shared, ni, nr)
	defer clear(skeyseed)
	return expandIKEKeys(s, prf, skeyseed, ni, nr, spiI, spiR)
}

// DeriveRekeyedIKEKeys computes the keys of the IKE SA that replaces old in a
// CREATE_CHILD_SA exchange (RFC 7296 §2.18):
//
//	SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
//
// with the old IKE SA's PRF, then the seven keys with prf+ of the new suite's
// PRF over the new nonces and new SPIs (spiI is the SPI of whoever initiated
// the rekey).
func DeriveRekeyedIKEKeys(old *IKEKeys, s Suite, shared, ni, nr []byte, spiI, spiR uint64) (*IKEKeys, error) {
	if old == nil || len(old.SKd) == 0 {
		return nil, fmt.Errorf("suite: rekey needs the old IKE SA's SK_d")
	}
	prf, err := NewPRF(s.PRF)
	if err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if len(ni) == 0 || len(nr) == 0 || len(shared) == 0 {
		return nil, fmt.Errorf("suite: rekeyed SKEYSEED needs both nonces and a shared secret")
	}
	skeyseed := skeyseedRekey(old.PRF, old.SKd, shared, ni, nr)
	defer clear(skeyseed)
	return expandIKEKeys(s, prf, skeyseed, ni, nr, spiI, spiR)
}

// skeyseedInit is SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 §2.14). The key of
// prf is Ni | Nr untruncated: every PRF here takes variable-length keys.
func skeyseedInit(prf PRF, shared, ni, nr []byte) []byte {
	nonces := make([]byte, 0, len(ni)+len(nr))
	nonces = append(append(nonces, ni...), nr...)
	return prf.Sum(nonces, shared)
}

// skeyseedRekey is SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) with the
// old IKE SA's PRF (RFC 7296 §2.18).
func skeyseedRekey(oldPRF PRF, oldSKd, shared, ni, nr []byte) []byte {
	return oldPRF.Sum(oldSKd, shared, ni, nr)
}

func expandIKEKeys(s Suite, prf PRF, skeyseed, ni, nr []byte, spiI, spiR uint64) (*IKEKeys, error) {
	el, il, pl, err := s.KeyLens()
	if err != nil {
		return nil, err
	}
	seed := make([]byte, 0, len(ni)+len(nr)+16)
	seed = append(append(seed, ni...), nr...)
	seed = binary.BigEndian.AppendUint64(seed, spiI)
	seed = binary.BigEndian.AppendUint64(seed, spiR)
	buf := make([]byte, 3*pl+2*il+2*el)
	if err := prf.PlusInto(buf, skeyseed, seed); err != nil {
		return nil, err
	}
	k := &IKEKeys{Suite: s, PRF: prf}
	take := func(n int) []byte {
		b := buf[:n:n]
		buf = buf[n:]
		return b
	}
	k.SKd = take(pl)
	k.SKai = take(il)
	k.SKar = take(il)
	k.SKei = take(el)
	k.SKer = take(el)
	k.SKpi = take(pl)
	k.SKpr = take(pl)
	return k, nil
}

// Wipe zeroes all key material in place.
func (k *IKEKeys) Wipe() {
	if k == nil {
		return
	}
	for _, b := range [][]byte{k.SKd, k.SKai, k.SKar, k.SKei, k.SKer, k.SKpi, k.SKpr} {
		clear(b)
	}
}

// Trim returns what an IKE SA keeps of k once its SK ciphers are built and
// its AUTH payloads are done: the suite, the PRF and a fresh copy of SK_d
// (CHILD_SA keys and rekeying, RFC 7296 §2.17, §2.18); every other field is
// empty. k is wiped. SK_pi and SK_pr serve only the AUTH payloads, SK_e and
// SK_a live on inside the SKCiphers (SKCiphers copies them).
func (k *IKEKeys) Trim() *IKEKeys {
	t := &IKEKeys{Suite: k.Suite, PRF: k.PRF, SKd: slices.Clone(k.SKd)}
	k.Wipe()
	return t
}

// String never prints key material (value receiver, so %v of a value or a
// pointer is safe).
func (k IKEKeys) String() string { return "IKE keys " + k.Suite.String() }

// GoString never prints key material either.
func (k IKEKeys) GoString() string { return k.String() }

// SKCiphers returns the SK payload protection of this IKE SA for the given
// role: out protects what this side sends (SK_ei/SK_ai for the original
// initiator of the IKE SA, SK_er/SK_ar for the responder), in opens what it
// receives. rand supplies CBC IVs (crypto/rand.Reader in production).
//
// The ciphers copy the keys they need, so k may be wiped afterwards.
func (k *IKEKeys) SKCiphers(initiator bool, rand io.Reader) (out, in *SKCipher, err error) {
	ei, ai, er, ar := k.SKei, k.SKai, k.SKer, k.SKar
	if !initiator {
		ei, ai, er, ar = er, ar, ei, ai
	}
	if out, err = NewSKCipher(k.Suite, ei, ai, rand); err != nil {
		return nil, nil, err
	}
	if in, err = NewSKCipher(k.Suite, er, ar, rand); err != nil {
		out.Wipe()
		return nil, nil, err
	}
	return out, in, nil
}

// ChildSAKeys is the keying of one CHILD_SA: two ESP SAs, one per direction.
type ChildSAKeys struct {
	// IToR carries traffic from the IKE exchange's initiator to its
	// responder: the SPI the responder chose, keyed with encr_i/integ_i.
	IToR esp.Keys
	// RToI carries traffic from the responder to the initiator: the SPI the
	// initiator chose, keyed with encr_r/integ_r.
	RToI esp.Keys
}

// InOut returns the inbound and outbound SA for the side that was the
// initiator (initiator == true) or the responder of the exchange that
// created the CHILD_SA.
func (c *ChildSAKeys) InOut(initiator bool) (in, out *esp.Keys) {
	if initiator {
		return &c.RToI, &c.IToR
	}
	return &c.IToR, &c.RToI
}

// String never prints key material.
func (c ChildSAKeys) String() string {
	return fmt.Sprintf("CHILD_SA keys %v / %v", c.IToR, c.RToI)
}

// GoString never prints key material either.
func (c ChildSAKeys) GoString() string { return c.String() }

// Wipe zeroes both directions' key material.
func (c *ChildSAKeys) Wipe() {
	c.IToR.Wipe()
	c.RToI.Wipe()
}

// DeriveChildKeys computes the keys of a CHILD_SA (RFC 7296 §2.17):
//
//	KEYMAT = prf+(SK_d, Ni | Nr)                 (no PFS: shared == nil)
//	KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr)    (PFS in CREATE_CHILD_SA)
//
// taken in the order encr_i, integ_i, encr_r, integ_r. spiI is the SPI the
// exchange's initiator chose (its inbound SA), spiR the responder's. Ni and Nr
// are the nonces of the exchange that creates the CHILD_SA (IKE_SA_INIT's for
// the first one). The returned keys own fresh memory.
func (k *IKEKeys) DeriveChildKeys(s transform.ESP, shared, ni, nr []byte, spiI, spiR uint32) (ChildSAKeys, error) {
	el, il, err := s.KeyLens()
	if err != nil {
		return ChildSAKeys{}, fmt.Errorf("suite: %w", err)
	}
	if len(ni) == 0 || len(nr) == 0 {
		return ChildSAKeys{}, fmt.Errorf("suite: KEYMAT needs both nonces")
	}
	seed := make([]byte, 0, len(shared)+len(ni)+len(nr))
	seed = append(append(append(seed, shared...), ni...), nr...)
	defer clear(seed)
	buf := make([]byte, 2*(el+il))
	if err := k.PRF.PlusInto(buf, k.SKd, seed); err != nil {
		return ChildSAKeys{}, err
	}
	take := func(n int) []byte {
		b := buf[:n:n]
		buf = buf[n:]
		return b
	}
	var c ChildSAKeys
	c.IToR = esp.Keys{SPI: spiR, Suite: s, EncKey: take(el), IntegKey: take(il)}
	c.RToI = esp.Keys{SPI: spiI, Suite: s, EncKey: take(el), IntegKey: take(il)}
	return c, nil
}
