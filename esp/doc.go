// Package esp implements ESP (RFC 4303) in tunnel mode for the data plane:
// packet encapsulation and decapsulation for AES-CBC with HMAC-SHA1-96 and
// HMAC-SHA2-256/384/512 (RFC 3602, RFC 2404, RFC 4868), AES-GCM-16 with an
// 8-octet explicit IV (RFC 4106) and ChaCha20-Poly1305 (RFC 7634); IPv4 and
// IPv6 inner packets (Next Header 4 and 41) over either outer family, which
// is the caller's socket's business; anti-replay windows (package replay);
// and the port-4500 demultiplexing of UDP encapsulation (RFC 3948).
//
// # Packet path
//
// An SA seals in place: the caller reads the inner packet into a buffer at
// offset Headroom with Tailroom spare capacity behind it, reserves a
// sequence number with NextSeq (in the order packets leave) and calls Seal,
// which may run on any goroutine. Receiving is split the same way: Open
// authenticates and decrypts in place on any goroutine and checks the
// replay window without moving it; Accept, called in delivery order, moves
// the window. The window therefore moves only after the ICV verified
// (RFC 4303 §3.4.3). Neither Seal nor Open allocates; malformed input is
// reported as a Drop reason, never a panic.
//
// Sequence numbers are 32 bits (no ESN) and never wrap: NextSeq fails after
// MaxSeq, and RekeyDue turns true at SoftSeqLimit so the owner rekeys first.
//
// # IVs and Sender-IDs
//
// AES-GCM and ChaCha20-Poly1305 must never see a (key, nonce) pair twice.
// The nonce is the 4-octet salt from the key material followed by the
// 8-octet IV carried in the packet. Every SA builds its IV as a 64-bit
// big-endian counter:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Sender-ID (SenderIDBits)  |      zero                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                  ESP Sequence Number (32 bits)                |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// With SenderIDBits = 0 (a CHILD_SA, one sender) the IV is the sequence
// number. A group SA (MPSA) has many senders on one key, so counter-mode
// ciphers need per-sender nonce space: as RFC 6054 does for group SAs, the
// sender's ID fills the high SenderIDBits bits of the IV and the low
// 64-SenderIDBits bits are that sender's own counter, its ESP sequence
// number. Two senders with distinct IDs therefore never produce the same
// nonce, and as sequence numbers never wrap, one sender never repeats one.
//
// AES-CBC IVs must be unpredictable. They are the AES encryption, under the
// SA's own key, of a nonce block made of 8 random octets chosen when the SA
// is created followed by the same 64-bit counter (NIST SP 800-38A,
// Appendix C). The random half keeps the IVs of different senders apart
// when there are no Sender-IDs; with Sender-IDs a receiver decrypts the IV
// block to learn the sender, and the HMAC over the IV makes that
// authenticated.
//
// # Replay protection
//
// A CHILD_SA has one sender and one anti-replay window (Config.ReplayWindow
// packets). A group SA with Sender-IDs keeps one window per Sender-ID, keyed
// by the authenticated Sender-ID and fed with that sender's sequence
// numbers; this gives the shared SA the anti-replay that
// draft-yamaya-ipsecme-mpsa lacks. A group SA without Sender-IDs runs with
// replay checking off (ReplayWindow 0): all CPEs of the group send on the
// same SPI, each with its own sequence numbers starting at 1, so one window
// would see every number once per sender and drop good packets as replays,
// while a window per outer source address could be defeated by anyone who
// spoofs addresses. RFC 4303 §3.4.3 lets a receiver disable the check; the
// hub should prefer Sender-IDs wherever the transform allows.
//
// # Keys
//
// An SA copies the keys it is given and zeroes its copy in Wipe when it
// dies. Key material is never logged: String prints only SPI and suite.
package esp
