package auth

import (
	"errors"
	"strconv"

	"github.com/mpsa-vpn/mpsa/ike/suite"
)

// Method is the Auth Method of an AUTH payload (RFC 7296 §3.8, RFC 7427 §7),
// with the IANA numbers the codec uses.
type Method uint8

// Authentication methods.
const (
	MethodRSA              Method = 1  // RSA Digital Signature (PKCS#1 v1.5 with SHA-1), verify only
	MethodPSK              Method = 2  // Shared Key Message Integrity Code
	MethodECDSA256         Method = 9  // ECDSA with SHA-256 on P-256 (RFC 4754)
	MethodECDSA384         Method = 10 // ECDSA with SHA-384 on P-384
	MethodECDSA521         Method = 11 // ECDSA with SHA-512 on P-521
	MethodDigitalSignature Method = 14 // RFC 7427
)

func (m Method) String() string {
	switch m {
	case MethodRSA:
		return "RSA_SIG"
	case MethodPSK:
		return "PSK"
	case MethodECDSA256:
		return "ECDSA_256"
	case MethodECDSA384:
		return "ECDSA_384"
	case MethodECDSA521:
		return "ECDSA_521"
	case MethodDigitalSignature:
		return "DIGITAL_SIGNATURE"
	}
	return "AUTH(" + strconv.Itoa(int(m)) + ")"
}

// ErrAuthFailed means an AUTH payload did not verify, or the peer's
// credentials were not acceptable: the exchange ends with
// AUTHENTICATION_FAILED (RFC 7296 §2.21.2).
var ErrAuthFailed = errors.New("auth: authentication failed")

// SignedOctets returns the octets an AUTH payload covers (RFC 7296 §2.15):
//
//	InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
//	ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR
//	MACedIDForI = prf(SK_pi, RestOfInitIDPayload)
//
// For the initiator's AUTH, realMessage is the IKE_SA_INIT request as sent
// (all octets, from the IKE header), nonce the responder's nonce (Nr), skp
// SK_pi and id IDi. For the responder's AUTH: its IKE_SA_INIT response, Ni,
// SK_pr and IDr. prf is the IKE SA's PRF.
func SignedOctets(prf suite.PRF, skp []byte, realMessage, nonce []byte, id ID) []byte {
	rest := id.AppendBody(make([]byte, 0, 4+len(id.data)))
	maced := prf.Sum(skp, rest)
	out := make([]byte, 0, len(realMessage)+len(nonce)+len(maced))
	return append(append(append(out, realMessage...), nonce...), maced...)
}
