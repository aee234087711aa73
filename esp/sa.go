package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/mpsa-vpn/mpsa/esp/replay"
	"github.com/mpsa-vpn/mpsa/transform"
)

// Wire sizes.
const (
	HeaderLen = 8  // SPI and Sequence Number (RFC 4303 §2)
	MaxIVLen  = 16 // AES-CBC; the AEAD ciphers carry 8 octets
	MaxICVLen = 32 // HMAC-SHA2-512-256

	// Headroom is the space Seal needs in front of the inner packet.
	Headroom = HeaderLen + MaxIVLen
	// Tailroom is the most Seal appends behind the inner packet: up to 15
	// octets of padding, Pad Length, Next Header and the ICV.
	Tailroom = 15 + 2 + MaxICVLen

	// MaxSeq is the last sequence number an SA may send: without extended
	// sequence numbers the 32-bit counter must not wrap (RFC 4303 §3.3.3).
	MaxSeq = 1<<32 - 1
	// SoftSeqLimit is where an SA asks its owner to rekey, leaving 2^24
	// packets for the rekey to complete.
	SoftSeqLimit = MaxSeq - 1<<24

	// DefaultMaxSenders bounds the per-Sender-ID replay windows of one SA.
	DefaultMaxSenders = 1 << 16
)

// Next Header values of tunnel mode (IANA protocol numbers).
const (
	NextHeaderIPv4 = 4
	NextHeaderIPv6 = 41
	NextHeaderNone = 59 // dummy packet
)

// Errors of Seal and NewSA.
var (
	ErrSeqExhausted = errors.New("esp: sequence numbers exhausted, SA must be rekeyed")
	ErrNotIP        = errors.New("esp: inner packet is not IPv4 or IPv6")
	ErrNoRoom       = errors.New("esp: buffer lacks head or tail room")
	ErrWiped        = errors.New("esp: SA keys wiped")
)

// Config describes one SA to NewSA.
type Config struct {
	Keys Keys

	// ReplayWindow is the anti-replay window in packets; 0 turns replay
	// checking off (a group SA without Sender-IDs, see the package doc).
	// It is capped at replay.MaxWindow.
	ReplayWindow int

	// SenderIDBits > 0 gives every sender of a group SA its own IV space:
	// the high SenderIDBits of the 64-bit IV carry SenderID (see the
	// package doc for the layout). At most 32.
	SenderIDBits uint8
	SenderID     uint32

	// MaxSenders bounds the per-Sender-ID windows kept; 0 means
	// DefaultMaxSenders. Packets of further senders are dropped (replay).
	MaxSenders int

	// Rand is the source of the CBC IV prefix; nil means crypto/rand.
	Rand io.Reader
}

// SA is one ESP SA, ready to seal and open packets. Seal, Open, Accept and
// NextSeq are safe for concurrent use; the caller must deliver Accept calls
// for one SA in the order it wants the window to see them.
type SA struct {
	spi        uint32
	suite      transform.ESP
	ivLen      int
	align      int // ciphertext alignment: cipher block size or 4
	icvLen     int
	senderBits uint8
	senderID   uint32
	window     int
	maxSenders int

	keys Keys // our copy of the key material, wiped by Wipe

	aead   cipher.AEAD // AES-GCM or ChaCha20-Poly1305
	salt   [4]byte
	nonces sync.Pool // *[12]byte: a nonce passed to the AEAD escapes

	block    cipher.Block // AES-CBC
	newHash  func() hash.Hash
	ctxs     sync.Pool // *cbcCtx: CBC modes and HMAC state are not shareable
	ivPrefix [8]byte   // random high half of the CBC IV nonce block

	seq atomic.Uint64 // last outbound sequence number used

	wiped atomic.Bool

	mu      sync.Mutex // guards the replay state below
	filter  replay.Filter
	senders map[uint32]*replay.Filter
}

type ivSetter interface{ SetIV([]byte) }

type cbcCtx struct {
	enc, dec cipher.BlockMode
	mac      hash.Hash
	sum      [64]byte
	blk      [16]byte
}

// NewSA builds an SA from cfg. It copies the keys: the caller may wipe its
// own copy afterwards.
func NewSA(cfg Config) (*SA, error) {
	if err := cfg.Keys.Validate(); err != nil {
		return nil, err
	}
	if cfg.SenderIDBits > 32 {
		return nil, fmt.Errorf("esp: SPI %08x: %d Sender-ID bits, at most 32", cfg.Keys.SPI, cfg.SenderIDBits)
	}
	if cfg.SenderIDBits < 32 && cfg.SenderID>>cfg.SenderIDBits != 0 {
		return nil, fmt.Errorf("esp: SPI %08x: Sender-ID %d does not fit %d bits", cfg.Keys.SPI, cfg.SenderID, cfg.SenderIDBits)
	}
	if cfg.ReplayWindow < 0 {
		return nil, fmt.Errorf("esp: SPI %08x: negative replay window", cfg.Keys.SPI)
	}
	sa := &SA{
		spi:        cfg.Keys.SPI,
		suite:      cfg.Keys.Suite,
		senderBits: cfg.SenderIDBits,
		senderID:   cfg.SenderID,
		window:     min(cfg.ReplayWindow, replay.MaxWindow),
		maxSenders: cfg.MaxSenders,
		keys:       cfg.Keys.Clone(),
	}
	sa.nonces.New = func() any { return new([12]byte) }
	if sa.maxSenders <= 0 {
		sa.maxSenders = DefaultMaxSenders
	}
	if sa.window > 0 {
		sa.filter.Init(sa.window)
		if sa.senderBits > 0 {
			sa.senders = make(map[uint32]*replay.Filter)
		}
	}
	k := &sa.keys
	var err error
	switch k.Suite.Encr {
	case transform.EncrAESGCM16:
		n := len(k.EncKey) - 4
		copy(sa.salt[:], k.EncKey[n:])
		var b cipher.Block
		if b, err = aes.NewCipher(k.EncKey[:n]); err == nil {
			sa.aead, err = cipher.NewGCM(b)
		}
		sa.ivLen, sa.align, sa.icvLen = 8, 4, 16
	case transform.EncrChaCha20Poly1305:
		n := len(k.EncKey) - 4
		copy(sa.salt[:], k.EncKey[n:])
		sa.aead, err = chacha20poly1305.New(k.EncKey[:n])
		sa.ivLen, sa.align, sa.icvLen = 8, 4, 16
	case transform.EncrAESCBC:
		sa.block, err = aes.NewCipher(k.EncKey)
		sa.ivLen, sa.align = aes.BlockSize, aes.BlockSize
		sa.icvLen, _ = k.Suite.Integ.ICVLen()
		switch k.Suite.Integ {
		case transform.IntegHMACSHA196:
			sa.newHash = sha1.New
		case transform.IntegHMACSHA256128:
			sa.newHash = sha256.New
		case transform.IntegHMACSHA384192:
			sa.newHash = sha512.New384
		case transform.IntegHMACSHA512256:
			sa.newHash = sha512.New
		}
		r := cfg.Rand
		if r == nil {
			r = rand.Reader
		}
		if _, err := io.ReadFull(r, sa.ivPrefix[:]); err != nil {
			return nil, fmt.Errorf("esp: SPI %08x: IV prefix: %w", sa.spi, err)
		}
		sa.ctxs.New = sa.newCBCCtx
	default:
		err = fmt.Errorf("unsupported cipher %v", k.Suite.Encr)
	}
	if err != nil {
		sa.keys.Wipe()
		return nil, fmt.Errorf("esp: SPI %08x: %w", sa.spi, err)
	}
	return sa, nil
}

func (sa *SA) newCBCCtx() any {
	var zero [16]byte
	c := &cbcCtx{
		enc: cipher.NewCBCEncrypter(sa.block, zero[:]),
		dec: cipher.NewCBCDecrypter(sa.block, zero[:]),
		mac: hmac.New(sa.newHash, sa.keys.IntegKey),
	}
	return c
}

// SPI returns the SA's SPI.
func (sa *SA) SPI() uint32 { return sa.spi }

// Suite returns the SA's cipher suite.
func (sa *SA) Suite() transform.ESP { return sa.suite }

// Overhead returns how many octets Seal adds to an inner packet of n octets.
func (sa *SA) Overhead(n int) int {
	return HeaderLen + sa.ivLen + sa.padLen(n) + 2 + sa.icvLen
}

// HeaderLen returns the ESP header and IV length of this SA's packets.
func (sa *SA) HeaderLen() int { return HeaderLen + sa.ivLen }

func (sa *SA) padLen(n int) int {
	return (sa.align - (n+2)%sa.align) % sa.align
}

// NextSeq reserves the next outbound sequence number. It fails once MaxSeq
// is used: the SA must have been rekeyed by then (see RekeyDue).
func (sa *SA) NextSeq() (uint32, error) {
	s := sa.seq.Add(1)
	if s > MaxSeq {
		return 0, ErrSeqExhausted
	}
	return uint32(s), nil
}

// RekeyDue reports whether the SA sent SoftSeqLimit packets or more: its
// owner should replace it before the sequence numbers run out.
func (sa *SA) RekeyDue() bool { return sa.seq.Load() >= SoftSeqLimit }

// SetSeq sets the last sent sequence number (tests, and restoring state).
func (sa *SA) SetSeq(s uint64) { sa.seq.Store(s) }

// Wipe zeroes the SA's copy of the key material and makes Seal and Open
// fail. The expanded key schedules inside the Go cipher implementations
// cannot be reached and are left to the garbage collector.
func (sa *SA) Wipe() {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	sa.wiped.Store(true)
	sa.keys.Wipe()
	clear(sa.salt[:])
	clear(sa.ivPrefix[:])
}

// String never prints key material.
func (sa *SA) String() string { return sa.keys.String() }

// ivCounter is the 64-bit IV value for seq: the Sender-ID in the high bits,
// the sequence number in the low bits.
func (sa *SA) ivCounter(seq uint32) uint64 {
	if sa.senderBits == 0 {
		return uint64(seq)
	}
	return uint64(sa.senderID)<<(64-sa.senderBits) | uint64(seq)
}

// senderOf extracts the Sender-ID from a 64-bit IV counter.
func (sa *SA) senderOf(iv uint64) uint32 {
	if sa.senderBits == 0 {
		return 0
	}
	return uint32(iv >> (64 - sa.senderBits))
}
