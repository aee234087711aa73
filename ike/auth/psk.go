package auth

import (
	"crypto/hmac"
	"fmt"

	"github.com/mpsa-vpn/mpsa/ike/suite"
)

// keyPad is the constant of RFC 7296 §2.15, without a terminator.
const keyPad = "Key Pad for IKEv2"

// MinPSKLen is the shortest pre-shared key accepted, in octets. RFC 7296
// §2.15 warns that short keys fall to dictionary attacks; 16 random octets
// (or a long passphrase) are the floor here.
const MinPSKLen = 16

// PSKAuth returns the AUTH data for method 2 (RFC 7296 §2.15):
//
//	AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
func PSKAuth(prf suite.PRF, psk, octets []byte) []byte {
	k := prf.Sum(psk, []byte(keyPad))
	defer clear(k)
	return prf.Sum(k, octets)
}

// VerifyPSK checks a peer's PSK AUTH data in constant time. It returns an
// error wrapping ErrAuthFailed on mismatch.
func VerifyPSK(prf suite.PRF, psk, octets, authData []byte) error {
	if len(psk) == 0 {
		return fmt.Errorf("%w: no pre-shared key for this peer", ErrAuthFailed)
	}
	want := PSKAuth(prf, psk, octets)
	defer clear(want)
	if !hmac.Equal(want, authData) {
		return fmt.Errorf("%w: PSK AUTH mismatch", ErrAuthFailed)
	}
	return nil
}
