// Package wire is the IKEv2 message codec (RFC 7296 §3): the 28-octet
// header, every payload this product speaks (SA with proposals, transforms
// and attributes; KE; Nonce; IDi/IDr; CERT; CERTREQ; AUTH; Notify; Delete;
// Vendor ID; TSi/TSr; SK; SKF of RFC 7383; CP), whole messages, and the table
// of which payloads each exchange may carry.
//
// Decoding never panics and allocates at most in proportion to its input.
// A decoded Message aliases the buffer it was decoded from (Raw keeps the
// exact octets: IKE_SA_INIT messages are signed by AUTH, RFC 7296 §2.15), so
// the caller hands over a buffer it will not reuse.
//
// Lengths on the wire include their headers: the IKE header's Length counts
// all 28 octets and every payload's Payload Length counts its 4-octet generic
// header. Bodies are written in place after a length that addLength16 fills
// in once they are done (builder.go); readGeneric is the one place that
// reads the framing.
//
// Protocol errors are *NotifyError values carrying the notify a responder
// sends back (INVALID_SYNTAX, UNSUPPORTED_CRITICAL_PAYLOAD with the payload
// type as data, INVALID_MAJOR_VERSION). Unknown payloads without the critical
// bit are kept as *Unknown and otherwise ignored.
//
// The SK and SKF payloads are framed here but protected elsewhere: encoding
// takes a Sealer, and Message.Encrypted and Message.Fragment give the
// authenticated prefix and the body to the cipher that opens them (package
// ike/suite provides both), after which DecodePayloads parses the inner
// chain.
package wire
