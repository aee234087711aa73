package suite

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
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
// buffers have room and the cipher's state is built.
//
// Memory: the expanded AES key schedule with the CBC mode of each direction
// used, or the AEAD, is built on the first Seal or Open and kept until
// Release, which drops it (about 0.5 KiB each way); the next call rebuilds
// it from the keys, which costs one key expansion (well under 1 µs). An
// IKE SA that exchanges a message every few seconds at most (a hub's
// established SAs) keeps only its keys between messages. Seal builds only
// the encrypting CBC mode, Open only the decrypting one. HMAC states are
// borrowed from a pool per message.
type SKCipher struct {
	encr   transform.Encr
	integ  transform.Integ
	keyLen int // octets of keys that are SK_e; the rest is SK_a
	ivLen  int
	icvLen int
	block  int // padding alignment: 16 for CBC, 1 for AEAD

	keys    []byte  // SK_e | SK_a (wiped by Wipe)
	mac     macHash // HMAC of SK_a (CBC suites)
	salt    [4]byte
	counter uint64
	rand    io.Reader
	st      *skState // nil until the first Seal or Open after New or Release
}

// skState is what Seal and Open build from the keys.
type skState struct {
	cbcEnc cbcMode // AES-CBC, IV set per message; built by the first Seal
	cbcDec cbcMode // built by the first Open
	aead   cipher.AEAD
	nonce  [12]byte
	sum    [sha512.Size]byte
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
// The keys are copied; the cipher state is built on first use.
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
	c := &SKCipher{encr: s.Encr, integ: s.Integ, keyLen: el, rand: rand}
	c.keys = make([]byte, 0, el+il)
	c.keys = append(append(c.keys, encKey...), integKey...)
	switch s.Encr {
	case transform.EncrAESCBC:
		if rand == nil {
			return nil, fmt.Errorf("suite: AES-CBC needs a random source for IVs")
		}
		switch s.Integ {
		case transform.IntegHMACSHA196:
			c.mac = macSHA1
		case transform.IntegHMACSHA256128:
			c.mac = macSHA256
		case transform.IntegHMACSHA384192:
			c.mac = macSHA384
		case transform.IntegHMACSHA512256:
			c.mac = macSHA512
		default:
			return nil, fmt.Errorf("suite: %w: %v", ErrUnsupported, s.Integ)
		}
		c.icvLen, _ = s.Integ.ICVLen()
		c.ivLen, c.block = aes.BlockSize, aes.BlockSize
	case transform.EncrAESGCM16:
		copy(c.salt[:], encKey[el-4:])
		c.icvLen, c.ivLen, c.block = 16, 8, 1
	case transform.EncrChaCha20Poly1305:
		copy(c.salt[:], encKey[32:])
		c.icvLen, c.ivLen, c.block = chacha20poly1305.Overhead, 8, 1
	default:
		return nil, fmt.Errorf("suite: %w: %v", ErrUnsupported, s.Encr)
	}
	return c, nil
}

// state returns the cipher state, building what is missing: the
// encrypting CBC mode when enc, the decrypting one when dec.
func (c *SKCipher) state(enc, dec bool) (*skState, error) {
	if c.keys == nil {
		return nil, fmt.Errorf("suite: SK cipher used after Wipe")
	}
	st := c.st
	if st == nil {
		st = new(skState)
	}
	ek := c.keys[:c.keyLen]
	switch c.encr {
	case transform.EncrAESCBC:
		if (enc && st.cbcEnc == nil) || (dec && st.cbcDec == nil) {
			block, err := aes.NewCipher(ek)
			if err != nil {
				return nil, fmt.Errorf("suite: %w", err)
			}
			var zero [aes.BlockSize]byte
			var ok bool
			if enc && st.cbcEnc == nil {
				if st.cbcEnc, ok = cipher.NewCBCEncrypter(block, zero[:]).(cbcMode); !ok {
					return nil, fmt.Errorf("suite: AES-CBC without SetIV")
				}
			}
			if dec && st.cbcDec == nil {
				if st.cbcDec, ok = cipher.NewCBCDecrypter(block, zero[:]).(cbcMode); !ok {
					return nil, fmt.Errorf("suite: AES-CBC without SetIV")
				}
			}
		}
	case transform.EncrAESGCM16:
		if st.aead == nil {
			block, err := aes.NewCipher(ek[:len(ek)-4])
			if err != nil {
				return nil, fmt.Errorf("suite: %w", err)
			}
			if st.aead, err = cipher.NewGCM(block); err != nil {
				return nil, fmt.Errorf("suite: %w", err)
			}
		}
	case transform.EncrChaCha20Poly1305:
		if st.aead == nil {
			var err error
			if st.aead, err = chacha20poly1305.New(ek[:32]); err != nil {
				return nil, fmt.Errorf("suite: %w", err)
			}
		}
	}
	c.st = st
	return st, nil
}

// Release drops the cipher state built from the keys (key schedules, CBC
// modes, AEAD); the next Seal or Open builds it again. The
// keys stay. (The standard library offers no way to clear the expanded
// state; it becomes garbage.)
func (c *SKCipher) Release() {
	if c == nil || c.st == nil {
		return
	}
	clear(c.st.sum[:])
	c.st = nil
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
	st, err := c.state(true, false)
	if err != nil {
		return nil, err
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

	if st.aead != nil {
		c.counter++
		binary.BigEndian.PutUint64(iv, c.counter)
		nonce := c.nonceFor(st, iv)
		st.aead.Seal(body[:0], nonce, body, msg[:off])
		return msg, nil
	}
	if _, err := io.ReadFull(c.rand, iv); err != nil {
		return nil, fmt.Errorf("suite: SK IV: %w", err)
	}
	st.cbcEnc.SetIV(iv)
	st.cbcEnc.CryptBlocks(body, body)
	icvOff := off + total - c.icvLen
	sum := c.icv(st, msg[:icvOff])
	copy(msg[icvOff:], sum[:c.icvLen])
	return msg, nil
}

// icv returns the untruncated HMAC of b with SK_a, in st's scratch space.
func (c *SKCipher) icv(st *skState, b []byte) []byte {
	m := c.mac.get(c.keys[c.keyLen:])
	defer c.mac.put(m)
	m.write(b)
	return m.finish(st.sum[:0])
}

func (c *SKCipher) nonceFor(st *skState, iv []byte) []byte {
	copy(st.nonce[:4], c.salt[:])
	copy(st.nonce[4:], iv)
	return st.nonce[:]
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
	if c.keys == nil {
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
	st, err := c.state(false, true)
	if err != nil {
		return nil, err
	}
	var out []byte
	if st.aead != nil {
		out, err = st.aead.Open(dst, c.nonceFor(st, iv), msg[off+c.ivLen:], msg[:off])
		if err != nil {
			return nil, fmt.Errorf("%w: AEAD tag mismatch", ErrIntegrity)
		}
	} else {
		sum := c.icv(st, msg[:icvOff])
		if subtle.ConstantTimeCompare(sum[:c.icvLen], msg[icvOff:]) != 1 {
			return nil, fmt.Errorf("%w: ICV mismatch", ErrIntegrity)
		}
		var tail []byte
		out, tail = sliceForAppend(dst, len(ct))
		copy(tail, ct) // no-op when decrypting in place
		st.cbcDec.SetIV(iv)
		st.cbcDec.CryptBlocks(tail, tail)
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

// Wipe zeroes the cipher's copy of SK_e and SK_a and releases its state;
// the cipher is unusable afterwards.
func (c *SKCipher) Wipe() {
	if c == nil {
		return
	}
	clear(c.keys)
	clear(c.salt[:])
	c.keys = nil
	c.Release()
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
