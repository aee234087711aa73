package mpsa

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/transform"
)

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// draftExample is the example of draft §3.2.2: ESP, AES-CBC 256 bits, PRF
// HMAC-SHA1, HMAC-SHA1-96, with values of our choosing for what the figure
// leaves open.
func draftExample() *Put {
	return &Put{
		SPI:   0x12345678,
		Suite: transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA196},
		PRF:   transform.PRFHMACSHA1,
		Nonce: seq(32, 0xa0),
		SKd:   seq(20, 0x01),
		Life:  3600 * time.Second,
		Roll1: 30 * time.Second,
		Roll2: 60 * time.Second,
	}
}

// draftExampleData is the Notification Data of draftExample written out by
// hand after the draft's figure, field by field.
func draftExampleData() []byte {
	h := func(s string) []byte {
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		if err != nil {
			panic(err)
		}
		return b
	}
	var d []byte
	d = append(d, h("00 00 00a4")...)  // 0 (last) | RESERVED | Proposal Length = 164
	d = append(d, h("01 03 04 08")...) // Prop Num = 1 | 3 (ESP) | SPI Size = 4 | Num Transforms = 8
	d = append(d, h("12345678")...)    // SPI, same as in the notify header
	d = append(d, h("03 00 000c")...)  // 3 | RESERVED | Transform Length = 12
	d = append(d, h("01 00 000c")...)  // 1 (ENCR) | RESERVED | 12 (ENCR_AES_CBC)
	d = append(d, h("800e 0100")...)   // 1 | 14 (Key Length) | 256
	d = append(d, h("03 00 0008")...)  // 3 | RESERVED | Transform Length = 8
	d = append(d, h("02 00 0002")...)  // 2 (PRF) | RESERVED | 2 (PRF_HMAC_SHA1)
	d = append(d, h("03 00 0008")...)  // 3 | RESERVED | Transform Length = 8
	d = append(d, h("03 00 0002")...)  // 3 (INTEG) | RESERVED | 2 (AUTH_HMAC_SHA1_96)
	d = append(d, h("03 00 002c")...)  // 3 | RESERVED | Transform Length = 44
	d = append(d, h("f1 00 0001")...)  // 241 (NONCE) | RESERVED | 1
	d = append(d, h("4000 0020")...)   // 0 | 16384 (Nonce) | Attribute Length = 32
	d = append(d, seq(32, 0xa0)...)    // [Nonce]
	d = append(d, h("03 00 0020")...)  // 3 | RESERVED | Transform Length = 32
	d = append(d, h("f2 00 0001")...)  // 242 (SKD) | RESERVED | 1
	d = append(d, h("4001 0014")...)   // 0 | 16385 (SK_d) | Attribute Length = 20
	d = append(d, seq(20, 0x01)...)    // [SK_d]
	d = append(d, h("03 00 0010")...)  // 3 | RESERVED | Transform Length = 16
	d = append(d, h("f3 00 0001")...)  // 243 (LIFE) | RESERVED | 1
	d = append(d, h("4002 0004")...)   // 0 | 16386 (Lifetime) | Attribute Length = 4
	d = append(d, h("00000e10")...)    // [Lifetime] = 3600
	d = append(d, h("03 00 0010")...)  // 3 | RESERVED | Transform Length = 16
	d = append(d, h("f4 00 0001")...)  // 244 (ROLL1) | RESERVED | 1
	d = append(d, h("4003 0004")...)   // 0 | 16387 (the figure says 16386) | Attribute Length = 4
	d = append(d, h("0000001e")...)    // [RolloverTime1] = 30
	d = append(d, h("00 00 0010")...)  // 0 (last) | RESERVED | Transform Length = 16
	d = append(d, h("f5 00 0001")...)  // 245 (ROLL2) | RESERVED | 1
	d = append(d, h("4004 0004")...)   // 0 | 16388 (the figure says 16386) | Attribute Length = 4
	d = append(d, h("0000003c")...)    // [RolloverTime2] = 60
	return d
}

func TestDraftExample(t *testing.T) {
	p := draftExample()
	n, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if n.Type != 40960 || n.Protocol != 3 || !bytes.Equal(n.SPI, []byte{0x12, 0x34, 0x56, 0x78}) {
		t.Errorf("notify header: type %d protocol %d SPI %x", n.Type, n.Protocol, n.SPI)
	}
	want := draftExampleData()
	if !bytes.Equal(n.Data, want) {
		t.Errorf("encoding differs from the draft's figure:\n got %x\nwant %x", n.Data, want)
	}
	got, err := DecodePut(Notify{Protocol: 3, Type: 40960, SPI: n.SPI, Data: want})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("decoded %+v, want %+v", *got, *p)
	}
}

func TestVendorID(t *testing.T) {
	if got := []byte(VendorID); !bytes.Equal(got, []byte{'m', 'u', 'l', 't', 'i', '-', 'p', 'o', 'i', 'n', 't', ' ', 'S', 'A'}) || len(got) != 14 {
		t.Fatalf("Vendor ID %q", got)
	}
	caps := PeerCapabilities(VendorIDs(), CPEAuthNotifies())
	if !caps.MPSA || !caps.SenderID {
		t.Errorf("CPE announcing both: %+v", caps)
	}
	if c := PeerCapabilities([][]byte{[]byte("multi-point SA\x00")}, CPEAuthNotifies()); c.MPSA || c.SenderID {
		t.Errorf("Vendor ID with a trailing NUL counted: %+v", c)
	}
	if c := PeerCapabilities(VendorIDs(), nil); !c.MPSA || c.SenderID {
		t.Errorf("MPSA without the Sender-ID notify: %+v", c)
	}
	if c := PeerCapabilities(nil, CPEAuthNotifies()); c.MPSA || c.SenderID {
		t.Errorf("Sender-ID notify without the Vendor ID counted: %+v", c)
	}
}

var (
	suiteCBC   = transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128}
	suiteGCM   = transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 256}
	suiteChaCh = transform.ESP{Encr: transform.EncrChaCha20Poly1305}
)

func randomPut(r *rand.Rand) *Put {
	suites := []transform.ESP{
		suiteCBC, suiteGCM, suiteChaCh,
		{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA196},
		{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA512256},
		{Encr: transform.EncrAESGCM16, KeyBits: 128},
	}
	prfs := []transform.PRF{transform.PRFHMACSHA1, transform.PRFHMACSHA2256, transform.PRFHMACSHA2384, transform.PRFHMACSHA2512}
	p := &Put{
		SPI:   256 + r.Uint32N(1<<32-256),
		Suite: suites[r.IntN(len(suites))],
		PRF:   prfs[r.IntN(len(prfs))],
	}
	kl, _ := p.PRF.KeyLen()
	p.SKd = make([]byte, kl)
	p.Nonce = make([]byte, MinNonceLen+r.IntN(MaxNonceLen-MinNonceLen+1))
	for _, b := range [][]byte{p.SKd, p.Nonce} {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}
	p.Life = time.Duration(1+r.Uint32N(1<<32-1)) * time.Second
	p.Roll2 = time.Duration(r.Int64N(int64(p.Life/time.Second))) * time.Second
	p.Roll1 = time.Duration(r.Int64N(int64(p.Roll2/time.Second)+1)) * time.Second
	if p.Suite.Encr.IsAEAD() || r.IntN(3) == 0 {
		p.SenderIDBits = uint8(1 + r.IntN(MaxSenderIDBits))
		p.SenderID = uint32(1 + r.Uint64N(1<<p.SenderIDBits-1))
	}
	return p
}

func TestPutRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		p := randomPut(r)
		n, err := p.Encode()
		if err != nil {
			t.Fatalf("#%d %v: %v", i, p, err)
		}
		got, err := DecodePut(n)
		if err != nil {
			t.Fatalf("#%d %v: %v\n%x", i, p, err, n.Data)
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("#%d: round trip changed %+v into %+v", i, *p, *got)
		}
		if len(n.Data) != p.dataLen() {
			t.Fatalf("#%d: %d octets, dataLen %d", i, len(n.Data), p.dataLen())
		}
	}
}

func TestPutStringHidesKeys(t *testing.T) {
	p := draftExample()
	p.SKd = bytes.Repeat([]byte{0xee}, 20)
	for _, s := range []string{p.String(), p.GoString()} {
		if strings.Contains(strings.ToLower(s), "eeee") || strings.Contains(s, "238") {
			t.Errorf("String shows key material: %s", s)
		}
	}
}

// Hand-built wire for the rejection table.

type rawTransform struct {
	typ   uint8
	id    uint16
	attrs []byte
}

func tvAttr(typ, v uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, typ|0x8000), v)
}

func tlvAttr(typ uint16, v []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func rawData(spi uint32, ts []rawTransform) []byte {
	var body []byte
	for i, t := range ts {
		last := byte(3)
		if i == len(ts)-1 {
			last = 0
		}
		body = append(body, last, 0)
		body = binary.BigEndian.AppendUint16(body, uint16(8+len(t.attrs)))
		body = append(body, t.typ, 0)
		body = binary.BigEndian.AppendUint16(body, t.id)
		body = append(body, t.attrs...)
	}
	d := []byte{0, 0}
	d = binary.BigEndian.AppendUint16(d, uint16(12+len(body)))
	d = append(d, 1, 3, 4, byte(len(ts)))
	d = append(d, u32(spi)...)
	return append(d, body...)
}

// cbcTransforms is a valid AES-CBC-256/HMAC-SHA2-256-128/PRF-SHA2-256 put.
func cbcTransforms() []rawTransform {
	return []rawTransform{
		{1, 12, tvAttr(14, 256)},
		{2, 5, nil},
		{3, 12, nil},
		{241, 1, tlvAttr(16384, seq(32, 0xa0))},
		{242, 1, tlvAttr(16385, seq(32, 0x01))},
		{243, 1, tlvAttr(16386, u32(3600))},
		{244, 1, tlvAttr(16387, u32(30))},
		{245, 1, tlvAttr(16388, u32(60))},
	}
}

func gcmTransforms() []rawTransform {
	ts := cbcTransforms()
	ts[0] = rawTransform{1, 20, tvAttr(14, 256)}
	ts = append(ts[:2], ts[3:]...) // no INTEG
	return append(ts, rawTransform{246, 1, append(tvAttr(16389, 16), tlvAttr(16390, u32(7))...)})
}

func TestDecodeValidBuilders(t *testing.T) {
	for name, ts := range map[string][]rawTransform{"cbc": cbcTransforms(), "gcm": gcmTransforms()} {
		p, err := DecodePut(Notify{Protocol: 3, Type: NotifyPut, SPI: u32(0xc0ffee01), Data: rawData(0xc0ffee01, ts)})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "gcm" && (p.SenderIDBits != 16 || p.SenderID != 7) {
			t.Errorf("gcm Sender-ID %d/%d", p.SenderID, p.SenderIDBits)
		}
	}
	// CBC with a Sender-ID, for per-sender anti-replay.
	ts := append(cbcTransforms(), gcmTransforms()[7])
	if p, err := DecodePut(Notify{Protocol: 3, Type: NotifyPut, SPI: u32(0xc0ffee01), Data: rawData(0xc0ffee01, ts)}); err != nil || p.SenderIDBits != 16 || p.SenderID != 7 {
		t.Errorf("CBC with a Sender-ID: %v", err)
	}
	// AEAD with an explicit INTEG NONE is accepted too (RFC 7296 §3.3.3).
	ts = gcmTransforms()
	ts = append(ts[:2], append([]rawTransform{{3, 0, nil}}, ts[2:]...)...)
	if _, err := DecodePut(Notify{Protocol: 3, Type: NotifyPut, SPI: u32(0xc0ffee01), Data: rawData(0xc0ffee01, ts)}); err != nil {
		t.Errorf("AEAD with INTEG NONE: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	const spi = 0xc0ffee01
	with := func(base func() []rawTransform, edit func([]rawTransform) []rawTransform) []byte {
		return rawData(spi, edit(base()))
	}
	set := func(i int, tr rawTransform) func([]rawTransform) []rawTransform {
		return func(ts []rawTransform) []rawTransform { ts[i] = tr; return ts }
	}
	drop := func(i int) func([]rawTransform) []rawTransform {
		return func(ts []rawTransform) []rawTransform { return append(ts[:i], ts[i+1:]...) }
	}
	valid := rawData(spi, cbcTransforms())
	patched := func(off int, b ...byte) []byte {
		d := bytes.Clone(valid)
		copy(d[off:], b)
		return d
	}
	cases := []struct {
		name  string
		n     Notify
		field string
	}{
		{"notify type", Notify{Protocol: 3, Type: 40962, SPI: u32(spi), Data: valid}, "Notify Message Type"},
		{"protocol IKE", Notify{Protocol: 1, Type: NotifyPut, SPI: u32(spi), Data: valid}, "Protocol ID"},
		{"SPI size 8", Notify{Protocol: 3, Type: NotifyPut, SPI: make([]byte, 8), Data: valid}, "SPI Size"},
		{"SPI differs", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi + 1), Data: valid}, "SPI"},
		{"SPI reserved", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(255), Data: rawData(255, cbcTransforms())}, "SPI"},
		{"empty data", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi)}, "proposal"},
		{"truncated", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: valid[:len(valid)-1]}, "Proposal Length"},
		{"trailing octet", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: append(bytes.Clone(valid), 0)}, "Proposal Length"},
		{"two proposals", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: patched(0, 2)}, "proposal"},
		{"proposal num", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: patched(4, 2)}, "Proposal Num"},
		{"proposal protocol", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: patched(5, 1)}, "Protocol ID"},
		{"proposal SPI size", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: patched(6, 8)}, "SPI Size"},
		{"num transforms low", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: patched(7, 7)}, "Num Transforms"},
		{"num transforms high", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: patched(7, 9)}, "Num Transforms"},
		{"transform length short", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: patched(14, 0, 4)}, "Transform Length"},
		{"transform last flag", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: patched(12, 0)}, "Num Transforms"},
		{"duplicate PRF", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(2, rawTransform{2, 5, nil}))}, "PRF"},
		{"missing LIFE", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, drop(5))}, "LIFE"},
		{"missing NONCE", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, drop(3))}, "NONCE"},
		{"missing INTEG", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, drop(2))}, "INTEG"},
		{"missing ENCR", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, drop(0))}, "ENCR"},
		{"DH transform", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(2, rawTransform{4, 14, nil}))}, "transform 4"},
		{"private transform 250", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(2, rawTransform{250, 1, nil}))}, "transform 250"},
		{"ENCR 3DES", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(0, rawTransform{1, 3, nil}))}, "ENCR"},
		{"ENCR key length 192", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(0, rawTransform{1, 12, tvAttr(14, 192)}))}, "ENCR"},
		{"ENCR no key length", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(0, rawTransform{1, 12, nil}))}, "ENCR"},
		{"ENCR two key lengths", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(0, rawTransform{1, 12, append(tvAttr(14, 256), tvAttr(14, 256)...)}))}, "ENCR"},
		{"ENCR unknown attribute", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(0, rawTransform{1, 12, append(tvAttr(14, 256), tvAttr(15, 1)...)}))}, "ENCR"},
		{"PRF unknown", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(1, rawTransform{2, 4, nil}))}, "PRF"},
		{"PRF with attribute", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(1, rawTransform{2, 5, tvAttr(14, 256)}))}, "PRF"},
		{"INTEG unknown", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(2, rawTransform{3, 1, nil}))}, "INTEG"},
		{"INTEG NONE with CBC", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(2, rawTransform{3, 0, nil}))}, "INTEG"},
		{"NONCE transform ID 2", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(3, rawTransform{241, 2, tlvAttr(16384, seq(32, 0))}))}, "NONCE"},
		{"NONCE 15 octets", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(3, rawTransform{241, 1, tlvAttr(16384, seq(15, 0))}))}, "NONCE"},
		{"NONCE 257 octets", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(3, rawTransform{241, 1, tlvAttr(16384, make([]byte, 257))}))}, "NONCE"},
		{"NONCE as TV", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(3, rawTransform{241, 1, tvAttr(16384, 1)}))}, "NONCE"},
		{"NONCE attribute overruns", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(3, rawTransform{241, 1, tlvAttr(16384, seq(32, 0))[:20]}))}, "NONCE"},
		{"NONCE extra octets", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(3, rawTransform{241, 1, append(tlvAttr(16384, seq(32, 0)), 0)}))}, "NONCE"},
		{"SK_d short", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(4, rawTransform{242, 1, tlvAttr(16385, seq(20, 0))}))}, "SK_d"},
		{"SK_d long", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(4, rawTransform{242, 1, tlvAttr(16385, seq(48, 0))}))}, "SK_d"},
		{"SK_d huge", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(4, rawTransform{242, 1, tlvAttr(16385, make([]byte, 1000))}))}, "SK_d"},
		{"LIFE 0", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(5, rawTransform{243, 1, tlvAttr(16386, u32(0))}))}, "LIFE"},
		{"LIFE 2 octets", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(5, rawTransform{243, 1, tlvAttr(16386, []byte{1, 0})}))}, "LIFE"},
		{"LIFE wrong attribute", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(5, rawTransform{243, 1, tlvAttr(16387, u32(3600))}))}, "LIFE"},
		{"ROLL1 with the figure's 16386", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(6, rawTransform{244, 1, tlvAttr(16386, u32(30))}))}, "ROLL1"},
		{"ROLL2 with the figure's 16386", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(7, rawTransform{245, 1, tlvAttr(16386, u32(60))}))}, "ROLL2"},
		{"ROLL1 after ROLL2", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(6, rawTransform{244, 1, tlvAttr(16387, u32(61))}))}, "ROLL2"},
		{"ROLL2 not before LIFE", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, set(7, rawTransform{245, 1, tlvAttr(16388, u32(3600))}))}, "ROLL2"},
		{"GCM without SENDER_ID", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(gcmTransforms, drop(7))}, "SENDER_ID"},
		{"CBC with SENDER_ID 0", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(cbcTransforms, func(ts []rawTransform) []rawTransform {
			return append(ts, rawTransform{246, 1, append(tvAttr(16389, 16), tlvAttr(16390, u32(0))...)})
		})}, "SENDER_ID"},
		{"GCM with HMAC", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(gcmTransforms, func(ts []rawTransform) []rawTransform {
			return append(ts, rawTransform{3, 12, nil})
		})}, "INTEG"},
		{"SENDER_ID 0", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(gcmTransforms, set(7, rawTransform{246, 1, append(tvAttr(16389, 16), tlvAttr(16390, u32(0))...)}))}, "SENDER_ID"},
		{"SENDER_ID too wide", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(gcmTransforms, set(7, rawTransform{246, 1, append(tvAttr(16389, 8), tlvAttr(16390, u32(256))...)}))}, "SENDER_ID"},
		{"SENDER_ID 33 bits", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(gcmTransforms, set(7, rawTransform{246, 1, append(tvAttr(16389, 33), tlvAttr(16390, u32(1))...)}))}, "SENDER_ID"},
		{"SENDER_ID no value", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(gcmTransforms, set(7, rawTransform{246, 1, tvAttr(16389, 16)}))}, "SENDER_ID"},
		{"SENDER_ID extra attribute", Notify{Protocol: 3, Type: NotifyPut, SPI: u32(spi), Data: with(gcmTransforms, set(7, rawTransform{246, 1, append(append(tvAttr(16389, 16), tlvAttr(16390, u32(1))...), tvAttr(16391, 0)...)}))}, "SENDER_ID"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := DecodePut(c.n)
			if err == nil {
				t.Fatalf("accepted: %v", p)
			}
			if got := Field(err); got != c.field {
				t.Errorf("field %q, want %q (%v)", got, c.field, err)
			}
			if !strings.HasPrefix(err.Error(), "mpsa: MPSA_PUT "+c.field+": ") {
				t.Errorf("error %q does not name the field", err)
			}
		})
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	for name, edit := range map[string]func(*Put){
		"life 0":       func(p *Put) { p.Life = 0 },
		"short SK_d":   func(p *Put) { p.SKd = p.SKd[:10] },
		"GCM no SID":   func(p *Put) { p.Suite = suiteGCM },
		"SID 0":        func(p *Put) { p.SenderIDBits, p.SenderID = 8, 0 },
		"life > 2^32s": func(p *Put) { p.Life = (1 << 32) * time.Second },
		"roll1>roll2":  func(p *Put) { p.Roll1 = p.Roll2 + time.Second },
	} {
		p := draftExample()
		edit(p)
		if _, err := p.Encode(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

func FuzzDecodePut(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	f.Add(uint32(0x12345678), draftExampleData())
	f.Add(uint32(0xc0ffee01), rawData(0xc0ffee01, gcmTransforms()))
	for range 8 {
		p := randomPut(r)
		n, _ := p.Encode()
		f.Add(p.SPI, n.Data)
	}
	f.Fuzz(func(t *testing.T, spi uint32, data []byte) {
		p, err := DecodePut(Notify{Protocol: ProtocolESP, Type: NotifyPut, SPI: u32(spi), Data: data})
		if err != nil {
			if Field(err) == "" {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		n, err := p.Encode()
		if err != nil {
			t.Fatalf("decoded %v does not encode: %v", p, err)
		}
		q, err := DecodePut(n)
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("decode→encode→decode changed %+v into %+v", *p, *q)
		}
		if _, err := p.Keys(); err != nil {
			t.Fatalf("valid put, no keys: %v", err)
		}
	})
}
