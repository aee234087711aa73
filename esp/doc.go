// Package esp implements ESP (RFC 4303) in tunnel mode for the data plane:
// packet encapsulation and decapsulation for AES-CBC with HMAC-SHA1/SHA2,
// AES-GCM-16 (RFC 4106) and ChaCha20-Poly1305 (RFC 7634), anti-replay windows,
// and UDP encapsulation (RFC 3948).
package esp
