package wire

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"testing"
)

// gcmSealer protects SK payloads with AES-GCM-16 the way RFC 5282 lays them
// out: 8-octet explicit IV, ciphertext of payloads|padding|Pad Length, 16-octet
// ICV, the message up to the IV as associated data. It exists to test the
// framing; package ike/suite holds the product's implementation.
type gcmSealer struct {
	aead cipher.AEAD
	salt [4]byte
	iv   uint64
}

func newGCMSealer(t testing.TB) *gcmSealer {
	block, err := aes.NewCipher(bytes.Repeat([]byte{7}, 16))
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return &gcmSealer{aead: aead, salt: [4]byte{1, 2, 3, 4}}
}

func (s *gcmSealer) SealedLen(n int) int { return 8 + n + 1 + 16 }

func (s *gcmSealer) Seal(msg, plain []byte) ([]byte, error) {
	s.iv++
	var nonce [12]byte
	copy(nonce[:], s.salt[:])
	for i := 0; i < 8; i++ {
		nonce[4+i] = byte(s.iv >> (56 - 8*i))
	}
	aad := msg
	out := append(msg, nonce[4:]...)
	pt := append(bytes.Clone(plain), 0) // no padding, Pad Length 0
	return s.aead.Seal(out, nonce[:], pt, aad), nil
}

func (s *gcmSealer) Open(prefix, body []byte) ([]byte, error) {
	if len(body) < 8+16+1 {
		return nil, errors.New("short")
	}
	var nonce [12]byte
	copy(nonce[:], s.salt[:])
	copy(nonce[4:], body[:8])
	pt, err := s.aead.Open(nil, nonce[:], body[8:], prefix)
	if err != nil {
		return nil, err
	}
	pad := int(pt[len(pt)-1])
	if pad+1 > len(pt) {
		return nil, errors.New("bad padding")
	}
	return pt[:len(pt)-1-pad], nil
}

func innerAuth() []Payload {
	return []Payload{
		&ID{IDType: IDFQDN, Data: []byte("cpe1.example.net")},
		&Auth{Method: AuthPSK, Data: bytes.Repeat([]byte{0xaa}, 32)},
		&Notify{NotifyType: NotifyInitialContact},
		&CP{CfgType: CfgRequest, Attrs: []CfgAttr{{Type: AttrInternalIP4Address}}},
		&SA{Proposals: []Proposal{{Num: 1, Protocol: ProtoESP, SPI: []byte{0xc0, 0xff, 0xee, 1},
			Transforms: []Transform{NewTransform(1, 20, 256), NewTransform(5, 0, 0)}}}},
		&TS{Selectors: []Selector{{EndPort: 0xffff}}},
		&TS{Responder: true, Selectors: []Selector{{EndPort: 0xffff}}},
	}
}

func TestEncrypted(t *testing.T) {
	s := newGCMSealer(t)
	inner := innerAuth()
	fixSelectors(inner)
	h := hdr(IKEAuth, FlagInitiator)
	raw, err := EncodeEncrypted(&h, inner, s)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckOuter(m); err != nil {
		t.Fatal(err)
	}
	sk, prefix := m.Encrypted()
	if sk == nil || sk.Inner != PayloadIDi || len(prefix) != HeaderLen+4 {
		t.Fatalf("SK %+v prefix %d", sk, len(prefix))
	}
	plain, err := s.Open(prefix, sk.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodePayloads(sk.Inner, plain)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckInner(m.Exchange, m.IsResponse(), got); err != nil {
		t.Fatal(err)
	}
	if !equalPayloads(got, inner) {
		t.Fatalf("inner payloads differ:\n%v\n%v", Summary(got), Summary(inner))
	}
	// Flipping any octet of the header breaks the authentication.
	raw[19] ^= 0x01
	m2, _ := Decode(raw)
	sk2, prefix2 := m2.Encrypted()
	if _, err := s.Open(prefix2, sk2.Body); err == nil {
		t.Fatal("tampered header accepted")
	}
}

func fixSelectors(ps []Payload) {
	for _, p := range ps {
		if ts, ok := p.(*TS); ok {
			ts.Selectors = []Selector{SelectorFromPrefix(mustPrefix("10.0.0.0/8"))}
		}
	}
}

func TestFragments(t *testing.T) {
	s := newGCMSealer(t)
	inner := innerAuth()
	fixSelectors(inner)
	inner = append(inner, &Cert{Encoding: CertX509Signature, Data: bytes.Repeat([]byte{0x30}, 1500)})
	h := hdr(IKEAuth, FlagInitiator)
	frags, err := EncodeFragments(&h, inner, s, 576)
	if err != nil {
		t.Fatal(err)
	}
	if len(frags) < 3 {
		t.Fatalf("%d fragments", len(frags))
	}
	var r Reassembly
	// Deliver in reverse order with a duplicate: reassembly does not care.
	order := []int{}
	for i := len(frags) - 1; i >= 0; i-- {
		order = append(order, i)
	}
	order = append([]int{1}, order...)
	done := false
	for k, i := range order {
		if len(frags[i]) > 576 {
			t.Fatalf("fragment %d is %d octets", i, len(frags[i]))
		}
		m, err := Decode(frags[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckOuter(m); err != nil {
			t.Fatal(err)
		}
		f, prefix := m.Fragment()
		if f == nil || int(f.Total) != len(frags) || int(f.Number) != i+1 {
			t.Fatalf("fragment %d: %+v", i, f)
		}
		plain, err := s.Open(prefix, f.Body)
		if err != nil {
			t.Fatal(err)
		}
		done, err = r.Add(m.MessageID, f, plain)
		if err != nil {
			t.Fatal(err)
		}
		if done != (k == len(order)-1) {
			t.Fatalf("step %d: done=%v", k, done)
		}
	}
	got, err := r.Payloads()
	if err != nil {
		t.Fatal(err)
	}
	if !equalPayloads(got, inner) {
		t.Fatalf("reassembled %v", Summary(got))
	}
	// A small message is not fragmented.
	small, err := EncodeFragments(&h, []Payload{&Notify{NotifyType: NotifyInitialContact}}, s, 576)
	if err != nil || len(small) != 1 {
		t.Fatalf("small message: %d, %v", len(small), err)
	}
	if m, _ := Decode(small[0]); m == nil || m.Payloads[0].Type() != PayloadSK {
		t.Fatal("small message not in SK")
	}
}

func TestReassemblyRestart(t *testing.T) {
	var r Reassembly
	if done, _ := r.Add(5, &Fragment{Inner: PayloadN, Number: 1, Total: 2}, []byte{1}); done {
		t.Fatal("done after 1 of 2")
	}
	// A higher total restarts; a lower one is ignored.
	if done, _ := r.Add(5, &Fragment{Number: 3, Total: 3}, []byte{3}); done {
		t.Fatal("done")
	}
	if done, _ := r.Add(5, &Fragment{Number: 2, Total: 2}, []byte{2}); done {
		t.Fatal("lower total accepted")
	}
	// Another message ID restarts too.
	if done, _ := r.Add(6, &Fragment{Inner: PayloadN, Number: 1, Total: 1}, []byte{0, 0, 0, 8, 0, 0, 0x40, 0}); !done {
		t.Fatal("not done")
	}
	ps, err := r.Payloads()
	if err != nil || len(ps) != 1 || ps[0].(*Notify).NotifyType != NotifyInitialContact {
		t.Fatalf("%v %v", ps, err)
	}
	if _, err := r.Add(6, &Fragment{Number: 1, Total: MaxFragments + 1}, nil); err == nil {
		t.Fatal("total over MaxFragments accepted")
	}
}
