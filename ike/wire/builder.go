package wire

import "errors"

// builder appends encoded payloads to one buffer. It has the methods of
// cryptobyte.Builder the codec writes with, and writes IKE's lengths, which
// count a header before them (addLength16), in place: no child builder and
// no copy per payload.
type builder struct {
	buf []byte
	err error
}

// errLength16 reports a length-prefixed field over 0xffff octets.
var errLength16 = errors.New("wire: length-prefixed field over 65535 octets")

func newBuilder(capacity int) *builder { return &builder{buf: make([]byte, 0, capacity)} }

func (b *builder) AddUint8(v uint8) { b.buf = append(b.buf, v) }

func (b *builder) AddUint16(v uint16) { b.buf = append(b.buf, byte(v>>8), byte(v)) }

func (b *builder) AddUint32(v uint32) {
	b.buf = append(b.buf, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func (b *builder) AddBytes(v []byte) { b.buf = append(b.buf, v...) }

// SetError records the first error; Bytes returns it.
func (b *builder) SetError(err error) {
	if b.err == nil {
		b.err = err
	}
}

// AddUint16LengthPrefixed writes what f writes after its 16-bit length,
// which does not count itself (cryptobyte's convention).
func (b *builder) AddUint16LengthPrefixed(f func(*builder)) { addLength16(b, 0, f) }

// Bytes returns what was written, or the first error.
func (b *builder) Bytes() ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	return b.buf, nil
}

// chainSizeHint is the initial capacity for an encoded payload chain: most
// IKE messages (IKE_SA_INIT, IKE_AUTH with PSK, INFORMATIONAL) fit.
const chainSizeHint = 512
