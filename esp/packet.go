package esp

import (
	"crypto/subtle"
	"encoding/binary"

	"github.com/mpsa-vpn/mpsa/esp/replay"
)

// Seal turns the inner IP packet buf[Headroom:Headroom+n] into an ESP
// packet in place (tunnel mode, RFC 4303 §3.1.2) with sequence number seq
// (from NextSeq) and returns it: a subslice of buf that starts at
// Headroom-sa.HeaderLen(). buf must have Tailroom octets of capacity behind
// the inner packet. Seal does not allocate.
func (sa *SA) Seal(buf []byte, n int, seq uint32) ([]byte, error) {
	if sa.wiped.Load() {
		return nil, ErrWiped
	}
	if n <= 0 || Headroom+n+Tailroom > cap(buf) {
		return nil, ErrNoRoom
	}
	buf = buf[:cap(buf)]
	var next byte
	switch buf[Headroom] >> 4 {
	case 4:
		next = NextHeaderIPv4
	case 6:
		next = NextHeaderIPv6
	default:
		return nil, ErrNotIP
	}
	return sa.seal(buf, n, seq, next, sa.ivCounter(seq)), nil
}

// seal does the work of Seal with the IV counter given (tests pin it).
func (sa *SA) seal(buf []byte, n int, seq uint32, next byte, iv uint64) []byte {
	start := Headroom - HeaderLen - sa.ivLen
	pad := sa.padLen(n)
	end := Headroom + n
	for i := 1; i <= pad; i++ { // RFC 4303 §2.4: 1, 2, 3, ...
		buf[end] = byte(i)
		end++
	}
	buf[end] = byte(pad)
	buf[end+1] = next
	end += 2
	hdr := buf[start:]
	binary.BigEndian.PutUint32(hdr[0:4], sa.spi)
	binary.BigEndian.PutUint32(hdr[4:8], seq)

	if sa.aead != nil {
		// RFC 4106 §3 / RFC 7634 §2: nonce = salt || IV; AAD = SPI || Seq.
		binary.BigEndian.PutUint64(hdr[8:16], iv)
		nonce := sa.nonces.Get().(*[12]byte)
		copy(nonce[:4], sa.salt[:])
		copy(nonce[4:], hdr[8:16])
		pt := buf[Headroom:end]
		sa.aead.Seal(pt[:0], nonce[:], pt, hdr[:8])
		sa.nonces.Put(nonce)
		return buf[start : end+sa.icvLen]
	}

	c := sa.ctxs.Get().(*cbcCtx)
	// CBC IV: the encryption of a unique nonce block under the SA's key
	// (NIST SP 800-38A Appendix C), so IVs are unpredictable and a
	// receiver can recover the Sender-ID from them.
	copy(c.blk[:8], sa.ivPrefix[:])
	binary.BigEndian.PutUint64(c.blk[8:], iv)
	ivb := hdr[8:24]
	sa.block.Encrypt(ivb, c.blk[:])
	c.enc.(ivSetter).SetIV(ivb)
	c.enc.CryptBlocks(buf[Headroom:end], buf[Headroom:end])
	c.mac.Reset()
	c.mac.Write(buf[start:end])
	sum := c.mac.Sum(c.sum[:0])
	copy(buf[end:end+sa.icvLen], sum)
	sa.ctxs.Put(c)
	return buf[start : end+sa.icvLen]
}

// Packet is an ESP packet opened by Open.
type Packet struct {
	Inner  []byte // the inner IP packet, a subslice of Open's input
	Next   byte   // NextHeaderIPv4 or NextHeaderIPv6
	Seq    uint32
	Sender uint32 // Sender-ID from the IV (0 without Sender-IDs)
}

// Open authenticates and decrypts the ESP packet pkt (starting at the SPI)
// in place. It checks the anti-replay window before the work but does not
// move it: call Accept, in order, once the packet is to be delivered. Open
// does not allocate.
func (sa *SA) Open(pkt []byte) (Packet, Drop) {
	var p Packet
	if sa.wiped.Load() {
		return p, DropUnknownSPI
	}
	hl := HeaderLen + sa.ivLen
	ctLen := len(pkt) - hl - sa.icvLen
	if ctLen < 2 || ctLen%sa.align != 0 {
		return p, DropMalformed
	}
	if binary.BigEndian.Uint32(pkt[0:4]) != sa.spi {
		return p, DropUnknownSPI
	}
	p.Seq = binary.BigEndian.Uint32(pkt[4:8])
	var c *cbcCtx
	var iv uint64
	if sa.aead != nil {
		iv = binary.BigEndian.Uint64(pkt[8:16])
	} else if sa.senderBits > 0 {
		c = sa.ctxs.Get().(*cbcCtx)
		sa.block.Decrypt(c.blk[:], pkt[8:24])
		iv = binary.BigEndian.Uint64(c.blk[8:])
	}
	p.Sender = sa.senderOf(iv)
	if sa.window > 0 && !sa.check(p.Seq, p.Sender) {
		if c != nil {
			sa.ctxs.Put(c)
		}
		return p, DropReplay
	}

	var pt []byte
	if sa.aead != nil {
		nonce := sa.nonces.Get().(*[12]byte)
		copy(nonce[:4], sa.salt[:])
		copy(nonce[4:], pkt[8:16])
		ct := pkt[hl:]
		var err error
		pt, err = sa.aead.Open(ct[:0], nonce[:], ct, pkt[:8])
		sa.nonces.Put(nonce)
		if err != nil {
			return p, DropBadICV
		}
	} else {
		if c == nil {
			c = sa.ctxs.Get().(*cbcCtx)
		}
		macEnd := len(pkt) - sa.icvLen
		c.mac.Reset()
		c.mac.Write(pkt[:macEnd])
		sum := c.mac.Sum(c.sum[:0])
		if subtle.ConstantTimeCompare(sum[:sa.icvLen], pkt[macEnd:]) != 1 {
			sa.ctxs.Put(c)
			return p, DropBadICV
		}
		pt = pkt[hl:macEnd]
		c.dec.(ivSetter).SetIV(pkt[8:24])
		c.dec.CryptBlocks(pt, pt)
		sa.ctxs.Put(c)
		if sa.senderBits > 0 && uint32(iv) != p.Seq {
			// An authenticated packet whose IV does not carry its own
			// sequence number was built by a broken sender.
			return p, DropMalformed
		}
	}
	payload, next, d := trailer(pt)
	if d != DropNone {
		return p, d
	}
	p.Next = next
	p.Inner, d = Inner(next, payload)
	return p, d
}

// trailer checks and strips Padding, Pad Length and Next Header.
func trailer(pt []byte) (payload []byte, next byte, d Drop) {
	if len(pt) < 2 {
		return nil, 0, DropMalformed
	}
	padLen := int(pt[len(pt)-2])
	next = pt[len(pt)-1]
	if padLen+2 > len(pt) {
		return nil, 0, DropBadPadding
	}
	pad := pt[len(pt)-2-padLen : len(pt)-2]
	for i, b := range pad {
		if b != byte(i+1) {
			return nil, 0, DropBadPadding
		}
	}
	return pt[:len(pt)-2-padLen], next, DropNone
}

// Inner checks that payload is the IP packet next announces and returns it
// without any TFC padding behind it (RFC 4303 §2.7).
func Inner(next byte, payload []byte) ([]byte, Drop) {
	switch next {
	case NextHeaderIPv4:
		if len(payload) < 20 || payload[0]>>4 != 4 || int(payload[0]&0x0f)*4 < 20 {
			return nil, DropMalformed
		}
		tl := int(binary.BigEndian.Uint16(payload[2:4]))
		if tl < int(payload[0]&0x0f)*4 || tl > len(payload) {
			return nil, DropMalformed
		}
		return payload[:tl], DropNone
	case NextHeaderIPv6:
		if len(payload) < 40 || payload[0]>>4 != 6 {
			return nil, DropMalformed
		}
		tl := 40 + int(binary.BigEndian.Uint16(payload[4:6]))
		if tl > len(payload) {
			return nil, DropMalformed
		}
		return payload[:tl], DropNone
	case NextHeaderNone:
		return nil, DropDummy
	}
	return nil, DropMalformed
}

// check is the replay pre-check: would (seq, sender) be accepted now?
func (sa *SA) check(seq, sender uint32) bool {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	f := &sa.filter
	if sa.senders != nil {
		if f = sa.senders[sender]; f == nil {
			return len(sa.senders) < sa.maxSenders && seq != 0
		}
	}
	return f.Check(uint64(seq))
}

// Accept moves the anti-replay window for an opened packet and reports
// whether the packet may be delivered. Call it only after Open succeeded,
// in delivery order. With replay checking off it always returns true.
// The first packet from a new Sender-ID allocates its window, bounded by
// Config.MaxSenders.
func (sa *SA) Accept(p *Packet) bool {
	if sa.window == 0 {
		return true
	}
	sa.mu.Lock()
	defer sa.mu.Unlock()
	f := &sa.filter
	if sa.senders != nil {
		if f = sa.senders[p.Sender]; f == nil {
			if len(sa.senders) >= sa.maxSenders {
				return false
			}
			f = new(replay.Filter)
			f.Init(sa.window)
			sa.senders[p.Sender] = f
		}
	}
	return f.Update(uint64(p.Seq))
}
