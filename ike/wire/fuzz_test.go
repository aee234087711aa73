package wire

import (
	"bytes"
	"testing"
)

// FuzzDecodeMessage decodes arbitrary datagrams; whatever decodes must
// re-encode to the same octets and decode again to the same value.
// Seeds: strongSwan's messages in testdata/charon and built ones.
func FuzzDecodeMessage(f *testing.F) {
	for _, b := range readSeeds(f) {
		f.Add(b)
	}
	s := newGCMSealer(f)
	inner := innerAuth()
	fixSelectors(inner)
	h := hdr(IKEAuth, FlagInitiator)
	if frags, err := EncodeFragments(&h, inner, s, 200); err == nil {
		for _, b := range frags {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(bytes.Clone(b))
		if err != nil {
			return
		}
		_ = CheckOuter(m)
		_ = m.String()
		m.Encrypted()
		m.Fragment()
		again, err := (&Message{Header: m.Header, Payloads: m.Payloads}).Encode()
		if err != nil {
			// A selector with Start and End of different families cannot
			// be decoded, so everything decoded encodes.
			t.Fatalf("re-encode %v: %v", m, err)
		}
		m2, err := Decode(again)
		if err != nil {
			t.Fatalf("decode of re-encoding: %v", err)
		}
		if m2.Header != m.Header || !equalPayloads(m2.Payloads, m.Payloads) {
			t.Fatalf("round trip differs: %v vs %v", m, m2)
		}
		// Only fields with a fixed meaning may differ from the input
		// octets: RESERVED fields and Last Substruc are rewritten.
		if len(again) != len(b) {
			t.Fatalf("length %d, re-encoded %d", len(b), len(again))
		}
	})
}

// FuzzDecodePayloads decodes arbitrary SK plaintexts.
func FuzzDecodePayloads(f *testing.F) {
	inner := innerAuth()
	fixSelectors(inner)
	first, b, err := EncodePayloads(inner)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(first), b)
	f.Add(uint8(PayloadD), []byte{0, 0, 0, 16, 3, 4, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, first uint8, b []byte) {
		ps, err := DecodePayloads(PayloadType(first), bytes.Clone(b))
		if err != nil {
			return
		}
		for _, e := range []ExchangeType{IKEAuth, CreateChildSA, Informational} {
			_ = CheckInner(e, false, ps)
			_ = CheckInner(e, true, ps)
		}
		f2, again, err := EncodePayloads(ps)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		ps2, err := DecodePayloads(f2, again)
		if err != nil || !equalPayloads(ps2, ps) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
