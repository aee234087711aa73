// Package suite implements the IKEv2 cryptographic transforms (RFC 7296 §3.3.2):
// PRFs and prf+ (§2.13), SKEYSEED and the SK_* keys (§2.14), CHILD_SA KEYMAT
// (§2.17), the ENCR/INTEG transforms that protect the SK payload (§3.14,
// RFC 5282 for AEAD), and the Diffie-Hellman groups with peer public value
// validation.
package suite
