package suite

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/mpsa-vpn/mpsa/transform"
)

// SKCipher protects Encrypted (SK, RFC 7296 §3.14) and Encrypted Fragment
// (SKF, RFC 7383 §2.5) payloads in one direction of an IKE SA: it holds SK_e
// and SK_a of that direction (SK_ei/SK_ai for messages the original
// initiator sends, SK_er/SK_ar for the responder's).
//
// Message layout, with off the offset of the IV in the message:
//
//	msg[:off]                 IKE header .. SK (or SKF) payload header: authenticated, not encrypted
//	msg[off:off+IVLen]        IV
//	msg[off+IVLen:len-ICVLen] E(inner payloads | padding | Pad Length)
//	msg[len-ICVLen:]          Integrity Checksum Data (the AEAD tag for AEAD ciphers)
//
// For AES-CBC the checksum is the truncated HMAC over msg[:len-ICVLen]
// (RFC 7296 §3.14). For AES-GCM (RFC 5282 §5) and ChaCha20-Poly1305
// (RFC 7634 §3) the AAD is msg[:off] and the nonce is the 4-octet salt from
// SK_e followed by the 8-octet IV.
//
// IVs: AES-CBC IVs are drawn from the rand reader (unpredictable, as §3.14
// requires); AEAD IVs are a per-cipher 64-bit counter, so they never repeat
// for a key (RFC 5282 §3.1) even when both peers reuse message IDs.
//
// An SKCipher is not safe for concurrent use: the goroutine that owns the
// IKE SA owns its ciphers. Seal and Open allocate nothing when the caller's
// buffers have room.
type SKCipher struct {
	encr   transform.Encr
	integ  transform.Integ
	ivLen  int
	icvLen int
	block  int // padding alignment: 16 for CBC, 1 for AEAD

	cbcEnc cbcMode // AES-CBC, IV set per message
	cbcDec cbcMode
	mac    hash.Hash
	aead   cipher.AEAD

	key     []byte // copy of SK_e (wiped by Wipe)
	salt    [4]byte
	counter uint64
	rand    io.Reader
	nonce   [12]byte
	sum     [sha512.Size]byte
}

// cbcMode is a CBC BlockMode whose IV can be reset, as crypto/cipher's CBC
// implementations allow (crypto/tls relies on the same method).
type cbcMode interface {
	cipher.BlockMode
	SetIV([]byte)
}

// NewSKCipher builds the protection for one direction from the suite's
// encryption and integrity transforms and that direction's SK_e and SK_a
// (empty for AEAD). rand supplies CBC IVs; it may be nil for AEAD suites.
// The keys are copied.
func NewSKCipher(s Suite, encKey, integKey []byte, rand io.Reader) (*SKCipher, error) {
	el, err := s.Encr.KeyLen(s.KeyBits)
	if err != nil {
		return nil, fmt.Errorf("suite: %w: %v", ErrUnsupported, err)
	}
	il, err := s.Integ.KeyLen()
	if err != nil {
		return nil, fmt.Errorf("suite: %w: %v", ErrUnsupported, err)
	}
	if s.Encr.IsAEAD() != (s.Integ == transform.IntegNone) {
		return nil, fmt.Errorf("suite: %w: %v with %v", ErrUnsupported, s.Encr, s.Integ)
	}
	if len(encKey) != el || len(integKey) != il {
		return nil, fmt.Errorf("suite: SK keys are %d/%d octets, %v needs %d/%d", len(encKey), len(integKey), s, el, il)
	}
	c := &SKCipher{encr: s.Encr, integ: s.Integ, rand: rand, key: slices.Clone(encKey)}
	switch s.Encr {
	case transform.EncrAESCBC:
		if rand == nil {
			return nil, fmt.Errorf("suite: AES-CBC needs a random source for IVs")
		}
		block, err := aes.NewCipher(c.key)
		if err != nil {
			return nil, fmt.Errorf("suite: %w", err)
		}
		var zero [aes.BlockSize]byte
		var ok1, ok2 bool
		c.cbcEnc, ok1 = cipher.NewCBCEncrypter(block, zero[:]).(cbcMode)
		c.cbcDec, ok2 = cipher.NewCBCDecrypter(block, zero[:]).(cbcMode)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("suite: AES-CBC without SetIV")
		}
		var h func() hash.Hash
		switch s.Integ {
		case transform.IntegHMACSHA196:
			h = sha1.New
		case transform.IntegHMACSHA256128:
			h = sha256.New
		case transform.IntegHMACSHA384192:
			h = sha512.New384
		case transform.IntegHMACSHA512256:
			h = sha512.New
		}
		c.mac = hmac.New(h, integKey)
		c.icvLen, _ = s.Integ.ICVLen()
		c.ivLen, c.block = aes.BlockSize, aes.BlockSize
	case transform.EncrAESGCM16:
		k := c.key[:len(c.key)-4]
		copy(c.salt[:], c.key[len(k):])
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("suite: %w", err)
		}
		if c.aead, err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("suite: %w", err)
		}
		c.icvLen, c.ivLen, c.block = 16, 8, 1
	case transform.EncrChaCha20Poly1305:
		k := c.key[:32]
		copy(c.salt[:], c.key[32:])
		if c.aead, err = chacha20poly1305.New(k); err != nil {
			return nil, fmt.Errorf("suite: %w", err)
		}
		c.icvLen, c.ivLen, c.block = chacha20poly1305.Overhead, 8, 1
	default:
		return nil, fmt.Errorf("suite: %w: %v", ErrUnsupported, s.Encr)
	}
	return c, nil
}

// String never prints key material.
func (c SKCipher) String() string {
	if c.integ == transform.IntegNone {
		return "SK cipher " + c.encr.String()
	}
	return "SK cipher " + c.encr.String() + "/" + c.integ.String()
}

// GoString never prints key material either.
func (c SKCipher) GoString() string { return c.String() }

// IVLen is the length of the IV that starts the payload body.
func (c *SKCipher) IVLen() int { return c.ivLen }

// ICVLen is the length of the Integrity Checksum Data that ends it.
func (c *SKCipher) ICVLen() int { return c.icvLen }

// SealedLen returns the length of the payload body (IV through ICV, without
// the payload header) that Seal produces for n octets of inner payloads. Use
// it to set the SK payload length and the IKE header Length before Seal.
func (c *SKCipher) SealedLen(n int) int {
	padded := n + 1 // Pad Length octet
	if r := padded % c.block; r != 0 {
		padded += c.block - r
	}
	return c.ivLen + padded + c.icvLen
}

// PlaintextCap returns the largest number of inner-payload octets whose
// sealed body fits in sealed octets (for sizing SKF fragments), or 0.
func (c *SKCipher) PlaintextCap(sealed int) int {
	room := sealed - c.ivLen - c.icvLen
	room -= room % c.block
	if room < 1 {
		return 0
	}
	return room - 1
}

// Seal appends IV | ciphertext | ICV to msg, which must hold the message from
// the IKE header through the SK (or SKF) payload header with every length
// field already final (see SealedLen), and returns the extended slice.
// plaintext is the serialised inner payload chain; it may be msg's spare
// capacity at msg[len(msg)+IVLen():] (serialised in place), but must not
// overlap msg otherwise.
func (c *SKCipher) Seal(msg, plaintext []byte) ([]byte, error) {
	if c.key == nil {
		return nil, fmt.Errorf("suite: SK cipher used after Wipe")
	}
	n := len(plaintext)
	total := c.SealedLen(n)
	off := len(msg)
	msg = slices.Grow(msg, total)[:off+total]
	iv := msg[off : off+c.ivLen]
	body := msg[off+c.ivLen : off+total-c.icvLen]
	copy(body, plaintext)
	padLen := len(body) - n - 1
	clear(body[n : n+padLen])
	body[len(body)-1] = byte(padLen)

	if c.aead != nil {
		c.counter++
		binary.BigEndian.PutUint64(iv, c.counter)
		nonce := c.nonceFor(iv)
		c.aead.Seal(body[:0], nonce, body, msg[:off])
		return msg, nil
	}
	if _, err := io.ReadFull(c.rand, iv); err != nil {
		return nil, fmt.Errorf("suite: SK IV: %w", err)
	}
	c.cbcEnc.SetIV(iv)
	c.cbcEnc.CryptBlocks(body, body)
	icvOff := off + total - c.icvLen
	c.mac.Reset()
	c.mac.Write(msg[:icvOff])
	sum := c.mac.Sum(c.sum[:0])
	copy(msg[icvOff:], sum[:c.icvLen])
	return msg, nil
}

func (c *SKCipher) nonceFor(iv []byte) []byte {
	copy(c.nonce[:4], c.salt[:])
	copy(c.nonce[4:], iv)
	return c.nonce[:]
}

// Open checks and decrypts the SK (or SKF) payload that ends msg, whose IV
// starts at msg[off]; msg must end with the payload's ICV (slice it to the
// IKE header Length). It appends the inner payload chain, padding removed,
// to dst and returns the extended slice. dst may be nil, or exactly
// msg[off+IVLen():off+IVLen()] to decrypt in place (see OpenInPlace); it
// must not overlap msg otherwise.
//
// Any failure — too short, misaligned, wrong ICV, bad padding — returns an
// error wrapping ErrIntegrity and leaves no plaintext behind; the caller
// drops the message (RFC 7296 §2.21).
func (c *SKCipher) Open(dst, msg []byte, off int) ([]byte, error) {
	if c.key == nil {
		return nil, fmt.Errorf("suite: SK cipher used after Wipe")
	}
	if off < 0 || len(msg)-off < c.ivLen+c.block+c.icvLen {
		return nil, fmt.Errorf("%w: encrypted payload too short", ErrIntegrity)
	}
	iv := msg[off : off+c.ivLen]
	icvOff := len(msg) - c.icvLen
	ct := msg[off+c.ivLen : icvOff]
	if len(ct)%c.block != 0 {
		return nil, fmt.Errorf("%w: ciphertext not a multiple of the block size", ErrIntegrity)
	}
	var out []byte
	if c.aead != nil {
		var err error
		out, err = c.aead.Open(dst, c.nonceFor(iv), msg[off+c.ivLen:], msg[:off])
		if err != nil {
			return nil, fmt.Errorf("%w: AEAD tag mismatch", ErrIntegrity)
		}
	} else {
		c.mac.Reset()
		c.mac.Write(msg[:icvOff])
		sum := c.mac.Sum(c.sum[:0])
		if subtle.ConstantTimeCompare(sum[:c.icvLen], msg[icvOff:]) != 1 {
			return nil, fmt.Errorf("%w: ICV mismatch", ErrIntegrity)
		}
		var tail []byte
		out, tail = sliceForAppend(dst, len(ct))
		copy(tail, ct) // no-op when decrypting in place
		c.cbcDec.SetIV(iv)
		c.cbcDec.CryptBlocks(tail, tail)
	}
	pt := out[len(dst):]
	padLen := int(pt[len(pt)-1])
	if padLen+1 > len(pt) {
		clear(pt)
		return nil, fmt.Errorf("%w: Pad Length %d exceeds the plaintext", ErrIntegrity, padLen)
	}
	return out[:len(out)-padLen-1], nil
}

// OpenInPlace is Open decrypting into msg itself: the returned inner payload
// chain is a subslice of msg starting at off+IVLen.
func (c *SKCipher) OpenInPlace(msg []byte, off int) ([]byte, error) {
	if off < 0 || off+c.ivLen > len(msg) {
		return nil, fmt.Errorf("%w: encrypted payload too short", ErrIntegrity)
	}
	return c.Open(msg[off+c.ivLen:off+c.ivLen], msg, off)
}

// Wipe zeroes the cipher's copy of SK_e; the cipher is unusable afterwards.
// (The expanded AES and HMAC key schedules live inside the standard library,
// which offers no way to clear them; they become garbage here.)
func (c *SKCipher) Wipe() {
	if c == nil {
		return
	}
	clear(c.key)
	clear(c.salt[:])
	clear(c.sum[:])
	c.key, c.cbcEnc, c.cbcDec, c.mac, c.aead = nil, nil, nil, nil, nil
}

// sliceForAppend extends in by n octets, reusing its capacity when possible,
// and returns the whole slice and the new tail.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return
}
