package suite

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"sync"
)

// HMAC (RFC 2104) over pooled hash states. crypto/hmac builds two hash
// states and their marshalled pad states per key, about 0.6 KiB of garbage
// for SHA-256, and an IKE SA setup computes a dozen MACs with as many keys
// (SKEYSEED, prf+, SignedOctets, PSK AUTH, SK payloads), each once. Here a
// MAC borrows one hash state from a pool per hash function and computes
// H((K ^ opad) | H((K ^ ipad) | text)) with it, allocating nothing. The
// known answers of RFC 2202 and RFC 4231 (TestPRFKnownAnswers) and the
// cross-check against strongSwan's keys cover it.

const (
	maxBlock = sha512.BlockSize
	maxSize  = sha512.Size
)

// macHash names a hash function with its pool of MAC states.
type macHash struct {
	pool *sync.Pool
}

var (
	macSHA1   = newMACHash(sha1.New)
	macSHA256 = newMACHash(sha256.New)
	macSHA384 = newMACHash(sha512.New384)
	macSHA512 = newMACHash(sha512.New)
)

func newMACHash(newH func() hash.Hash) macHash {
	return macHash{pool: &sync.Pool{New: func() any {
		h := newH()
		return &macState{h: h, bs: h.BlockSize()}
	}}}
}

// macState is one HMAC computation in progress: the hash state, the key
// block and scratch space, so that nothing escapes per MAC.
type macState struct {
	h   hash.Hash
	bs  int
	key [maxBlock]byte // K, hashed first if longer than a block, zero-padded
	pad [maxBlock]byte
	sum [maxSize]byte // the inner hash
	t   [maxSize]byte // prf+'s previous block
	one [1]byte
}

// get returns a state keyed with key and started (inner pad written).
// Release it with put.
func (mh macHash) get(key []byte) *macState {
	m := mh.pool.Get().(*macState)
	if len(key) > m.bs {
		m.h.Reset()
		m.h.Write(key)
		key = m.h.Sum(m.sum[:0])
	}
	n := copy(m.key[:m.bs], key)
	clear(m.key[n:m.bs])
	m.start()
	return m
}

// start begins a MAC with the state's key: H((K ^ ipad) | ...
func (m *macState) start() {
	for i := range m.bs {
		m.pad[i] = m.key[i] ^ 0x36
	}
	m.h.Reset()
	m.h.Write(m.pad[:m.bs])
}

func (m *macState) write(b []byte) { m.h.Write(b) }

// finish appends the MAC of what was written since start to dst.
func (m *macState) finish(dst []byte) []byte {
	inner := m.h.Sum(m.sum[:0])
	for i := range m.bs {
		m.pad[i] = m.key[i] ^ 0x5c
	}
	m.h.Reset()
	m.h.Write(m.pad[:m.bs])
	m.h.Write(inner)
	return m.h.Sum(dst)
}

// put wipes the key-derived state and returns m to its pool.
func (mh macHash) put(m *macState) {
	clear(m.key[:])
	clear(m.pad[:])
	clear(m.sum[:])
	clear(m.t[:])
	m.h.Reset()
	mh.pool.Put(m)
}
