package wire

// Reassembly collects the opened fragments of one message (RFC 7383 §2.6).
// The zero value is ready; Reset it for the next message.
type Reassembly struct {
	msgID uint32
	total uint16
	inner PayloadType
	parts [][]byte
	have  int
	size  int
}

// MaxReassembled bounds the plaintext of a reassembled message.
const MaxReassembled = 64 << 10

// Reset forgets every fragment.
func (r *Reassembly) Reset() {
	for _, p := range r.parts {
		clear(p)
	}
	*r = Reassembly{}
}

// Add records the plaintext of fragment f of message msgID. It returns true
// when every fragment is there. Fragments of another message ID restart the
// collection; a higher Total Fragments restarts it, a lower one is ignored
// (RFC 7383 §2.6). The plaintext is copied.
func (r *Reassembly) Add(msgID uint32, f *Fragment, plain []byte) (bool, error) {
	if f.Total == 0 || f.Total > MaxFragments || f.Number == 0 || f.Number > f.Total {
		return false, syntaxError("fragment %d of %d", f.Number, f.Total)
	}
	if r.parts == nil || msgID != r.msgID || f.Total > r.total {
		r.Reset()
		r.msgID, r.total = msgID, f.Total
		r.parts = make([][]byte, f.Total)
	}
	if f.Total < r.total {
		return false, nil
	}
	i := int(f.Number) - 1
	if r.parts[i] != nil {
		return r.have == int(r.total), nil
	}
	if r.size+len(plain) > MaxReassembled {
		r.Reset()
		return false, syntaxError("reassembled message over %d octets", MaxReassembled)
	}
	if f.Number == 1 {
		r.inner = f.Inner
	}
	r.parts[i] = append(make([]byte, 0, len(plain)), plain...)
	r.have++
	r.size += len(plain)
	return r.have == int(r.total), nil
}

// Payloads decodes the reassembled plaintext once Add reported completion.
func (r *Reassembly) Payloads() ([]Payload, error) {
	if r.parts == nil || r.have != int(r.total) {
		return nil, syntaxError("message incomplete")
	}
	buf := make([]byte, 0, r.size)
	for _, p := range r.parts {
		buf = append(buf, p...)
	}
	return DecodePayloads(r.inner, buf)
}

// MessageID is the message ID being collected.
func (r *Reassembly) MessageID() uint32 { return r.msgID }

// Pending reports whether fragments are held.
func (r *Reassembly) Pending() bool { return r.have > 0 }
