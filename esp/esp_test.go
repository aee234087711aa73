package esp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane/tuntest"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/transform"
)

var suites = []transform.ESP{
	{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA196},
	{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128},
	{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128},
	{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA384192},
	{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA512256},
	{Encr: transform.EncrAESGCM16, KeyBits: 128},
	{Encr: transform.EncrAESGCM16, KeyBits: 256},
	{Encr: transform.EncrChaCha20Poly1305},
}

// testKeys derives deterministic keys for a suite from a seed.
func testKeys(tb testing.TB, s transform.ESP, spi uint32, seed byte) Keys {
	tb.Helper()
	el, il, err := s.KeyLens()
	if err != nil {
		tb.Fatal(err)
	}
	k := Keys{SPI: spi, Suite: s, EncKey: make([]byte, el), IntegKey: make([]byte, il)}
	for i := range k.EncKey {
		k.EncKey[i] = seed + byte(i)
	}
	for i := range k.IntegKey {
		k.IntegKey[i] = seed ^ byte(3*i)
	}
	return k
}

func newTestSA(tb testing.TB, s transform.ESP, window int, bits uint8, id uint32) *SA {
	tb.Helper()
	sa, err := NewSA(Config{Keys: testKeys(tb, s, 0xc0ffee01, 7), ReplayWindow: window, SenderIDBits: bits, SenderID: id})
	if err != nil {
		tb.Fatal(err)
	}
	return sa
}

var (
	v4a, v4b = netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
	v6a, v6b = netip.MustParseAddr("fd00:1::1"), netip.MustParseAddr("fd00:2::1")
)

// sealPkt seals a copy of inner and returns the ESP packet.
func sealPkt(tb testing.TB, sa *SA, inner []byte) []byte {
	tb.Helper()
	seq, err := sa.NextSeq()
	if err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, Headroom+len(inner)+Tailroom)
	copy(buf[Headroom:], inner)
	out, err := sa.Seal(buf, len(inner), seq)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	for _, s := range suites {
		for _, fam := range []struct {
			name     string
			src, dst netip.Addr
		}{{"v4", v4a, v4b}, {"v6", v6a, v6b}} {
			t.Run(s.String()+"/"+fam.name, func(t *testing.T) {
				tx := newTestSA(t, s, 0, 0, 0)
				rx := newTestSA(t, s, 64, 0, 0)
				for size := 0; size < 70; size++ {
					inner := tuntest.Ping(fam.dst, fam.src, 7, uint16(size), bytes.Repeat([]byte{byte(size)}, size))
					pkt := sealPkt(t, tx, inner)
					if got, want := len(pkt), len(inner)+tx.Overhead(len(inner)); got != want {
						t.Fatalf("size %d: packet %d octets, Overhead says %d", size, got, want)
					}
					if ct := len(pkt) - tx.HeaderLen() - tx.icvLen; ct%tx.align != 0 {
						t.Fatalf("ciphertext %d not aligned to %d", ct, tx.align)
					}
					if bytes.Contains(pkt, inner[len(inner)-8:]) && size > 8 {
						t.Fatalf("plaintext visible in packet")
					}
					p, d := rx.Open(pkt)
					if d != DropNone {
						t.Fatalf("size %d: open: %v", size, d)
					}
					if !bytes.Equal(p.Inner, inner) {
						t.Fatalf("size %d: inner differs", size)
					}
					if !rx.Accept(&p) {
						t.Fatalf("size %d: replay window refused seq %d", size, p.Seq)
					}
				}
			})
		}
	}
}

// TestCBCAgainstOpenSSL checks an AES-CBC/HMAC-SHA2-256 packet with an
// independent implementation: openssl computes the ICV and decrypts.
func TestCBCAgainstOpenSSL(t *testing.T) {
	ossl := testenv.Binary(t, "openssl", "apt-get install openssl")
	s := transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128}
	sa := newTestSA(t, s, 0, 0, 0)
	inner := tuntest.UDP(netip.AddrPortFrom(v4a, 1), netip.AddrPortFrom(v4b, 2), []byte("hello, independent check"))
	pkt := sealPkt(t, sa, inner)
	icvAt := len(pkt) - 16
	cmd := exec.Command(ossl, "dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:"+fmt.Sprintf("%x", sa.keys.IntegKey))
	cmd.Stdin = bytes.NewReader(pkt[:icvAt])
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%x", pkt[icvAt:]); !bytes.Contains(out, []byte(want)) {
		t.Fatalf("openssl HMAC %s does not start with our ICV %s", out, want)
	}
	cmd = exec.Command(ossl, "enc", "-d", "-aes-128-cbc", "-nopad", "-K", fmt.Sprintf("%x", sa.keys.EncKey), "-iv", fmt.Sprintf("%x", pkt[8:24]))
	cmd.Stdin = bytes.NewReader(pkt[24:icvAt])
	plain, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(plain, inner) || plain[len(plain)-1] != NextHeaderIPv4 {
		t.Fatalf("openssl decrypted %x", plain)
	}
}

func TestDrops(t *testing.T) {
	for _, s := range suites {
		t.Run(s.String(), func(t *testing.T) {
			tx := newTestSA(t, s, 0, 0, 0)
			rx := newTestSA(t, s, 32, 0, 0)
			inner := tuntest.Ping(v4b, v4a, 1, 1, []byte("x"))
			good := sealPkt(t, tx, inner)
			open := func(pkt []byte) Drop {
				_, d := rx.Open(append([]byte(nil), pkt...))
				return d
			}
			for i := range good {
				bad := append([]byte(nil), good...)
				bad[i] ^= 0x40
				want := DropBadICV
				if i < 4 {
					want = DropUnknownSPI
				}
				if d := open(bad); d != want {
					t.Fatalf("bit flipped at %d: %v, want %v", i, d, want)
				}
			}
			for _, n := range []int{0, 1, 7, 8, 16, 24, len(good) - 1} {
				if d := open(good[:n]); d != DropMalformed && d != DropBadICV {
					t.Fatalf("truncated to %d: %v", n, d)
				}
			}
			if d := open(append([]byte{0xde, 0xad, 0xbe, 0xef}, good[4:]...)); d != DropUnknownSPI {
				t.Fatalf("other SPI: %v", d)
			}
			// Replay: accept once, then the same packet is refused.
			p, d := rx.Open(append([]byte(nil), good...))
			if d != DropNone || !rx.Accept(&p) {
				t.Fatalf("good packet refused: %v", d)
			}
			if d := open(good); d != DropReplay {
				t.Fatalf("replayed: %v", d)
			}
			// Too old: move the window 40 packets ahead.
			tx.SetSeq(100)
			far := sealPkt(t, tx, inner)
			p, d = rx.Open(far)
			if d != DropNone || !rx.Accept(&p) {
				t.Fatalf("far ahead refused: %v", d)
			}
			tx.SetSeq(40)
			old := sealPkt(t, tx, inner)
			if d := open(old); d != DropReplay {
				t.Fatalf("too old: %v", d)
			}
		})
	}
}

// TestBadPaddingAndInner builds packets with a valid ICV around a broken
// trailer or inner header, which only a buggy or hostile sender with the
// keys can make, and checks each is dropped for the right reason.
func TestBadPaddingAndInner(t *testing.T) {
	s := transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}
	sa := newTestSA(t, s, 0, 0, 0)
	inner := tuntest.Ping(v6b, v6a, 1, 1, nil)
	seal := func(payload []byte) []byte {
		buf := make([]byte, Headroom+len(payload)+Tailroom)
		copy(buf[Headroom:], payload)
		hdr := buf[Headroom-16:]
		binary.BigEndian.PutUint32(hdr, sa.spi)
		binary.BigEndian.PutUint32(hdr[4:], 9)
		binary.BigEndian.PutUint64(hdr[8:], 9)
		var nonce [12]byte
		copy(nonce[:], sa.salt[:])
		copy(nonce[4:], hdr[8:16])
		pt := buf[Headroom : Headroom+len(payload)]
		out := sa.aead.Seal(pt[:0], nonce[:], pt, hdr[:8])
		return buf[Headroom-16 : Headroom+len(out)]
	}
	trail := func(p []byte, pad []byte, next byte) []byte {
		q := append(append([]byte(nil), p...), pad...)
		return append(q, byte(len(pad)), next)
	}
	for _, c := range []struct {
		name    string
		payload []byte
		want    Drop
	}{
		{"good", trail(inner, []byte{1, 2}, NextHeaderIPv6), DropNone},
		{"pad bytes", trail(inner, []byte{1, 3}, NextHeaderIPv6), DropBadPadding},
		{"pad length", append(append([]byte(nil), inner...), 1, 2, 9, 41), DropBadPadding},
		{"dummy", trail([]byte{1, 2, 3, 4, 5, 6}, nil, NextHeaderNone), DropDummy},
		{"v4 says v6", trail(inner, []byte{1, 2}, NextHeaderIPv4), DropMalformed},
		{"unknown next", trail(inner, []byte{1, 2}, 17), DropMalformed},
		{"short inner", trail(inner[:30], nil, NextHeaderIPv6), DropMalformed},
	} {
		_, d := sa.Open(seal(c.payload))
		if d != c.want {
			t.Errorf("%s: %v, want %v", c.name, d, c.want)
		}
	}
}

// TestSenderIDs runs a group SA with Sender-IDs: three senders share one
// key and each starts at sequence number 1. Their IVs never collide, the
// receiver keeps a window per sender, and a replay is caught per sender.
func TestSenderIDs(t *testing.T) {
	for _, s := range []transform.ESP{suites[1], suites[5], suites[7]} {
		t.Run(s.String(), func(t *testing.T) {
			rx := newTestSA(t, s, 64, 12, 0)
			seen := map[string]bool{}
			var pkts [][]byte
			for id := uint32(1); id <= 3; id++ {
				tx := newTestSA(t, s, 0, 12, id)
				for i := 0; i < 5; i++ {
					pkt := sealPkt(t, tx, tuntest.Ping(v4b, v4a, 1, uint16(i), nil))
					iv := string(pkt[8 : 8+tx.ivLen])
					if seen[iv] {
						t.Fatalf("IV reused across senders: %x", iv)
					}
					seen[iv] = true
					if s.Encr.IsAEAD() && binary.BigEndian.Uint64(pkt[8:16])>>52 != uint64(id) {
						t.Fatalf("IV %x does not carry Sender-ID %d in its high 12 bits", pkt[8:16], id)
					}
					pkts = append(pkts, pkt)
				}
			}
			for _, pkt := range pkts {
				p, d := rx.Open(append([]byte(nil), pkt...))
				if d != DropNone {
					t.Fatalf("open: %v", d)
				}
				if !rx.Accept(&p) {
					t.Fatalf("sender %d seq %d refused: windows not per sender", p.Sender, p.Seq)
				}
			}
			if _, d := rx.Open(append([]byte(nil), pkts[7]...)); d != DropReplay {
				t.Fatalf("replay of sender 2: %v", d)
			}
		})
	}
	if _, err := NewSA(Config{Keys: testKeys(t, suites[5], 0x1000, 1), SenderIDBits: 4, SenderID: 16}); err == nil {
		t.Fatal("Sender-ID wider than its bits accepted")
	}
}

// TestGroupWithoutReplay: with the window off, every sender's sequence
// numbers are accepted, including repeats (see the package doc).
func TestGroupWithoutReplay(t *testing.T) {
	rx := newTestSA(t, suites[1], 0, 0, 0)
	for range 2 {
		tx := newTestSA(t, suites[1], 0, 0, 0)
		p, d := rx.Open(sealPkt(t, tx, tuntest.Ping(v4b, v4a, 1, 1, nil)))
		if d != DropNone || !rx.Accept(&p) || p.Seq != 1 {
			t.Fatalf("%v seq %d", d, p.Seq)
		}
	}
}

func TestMaxSenders(t *testing.T) {
	rx, err := NewSA(Config{Keys: testKeys(t, suites[5], 0xc0ffee01, 7), ReplayWindow: 8, SenderIDBits: 8, MaxSenders: 2})
	if err != nil {
		t.Fatal(err)
	}
	for id := uint32(1); id <= 3; id++ {
		tx := newTestSA(t, suites[5], 0, 8, id)
		p, d := rx.Open(sealPkt(t, tx, tuntest.Ping(v4b, v4a, 1, 1, nil)))
		ok := d == DropNone && rx.Accept(&p)
		if ok != (id <= 2) {
			t.Fatalf("sender %d: accepted %v (%v)", id, ok, d)
		}
	}
}

func TestSeqExhausted(t *testing.T) {
	sa := newTestSA(t, suites[5], 0, 0, 0)
	sa.SetSeq(SoftSeqLimit - 1)
	if sa.RekeyDue() {
		t.Fatal("rekey due early")
	}
	if _, err := sa.NextSeq(); err != nil || !sa.RekeyDue() {
		t.Fatal("soft limit not signalled")
	}
	sa.SetSeq(MaxSeq - 1)
	if s, err := sa.NextSeq(); err != nil || s != MaxSeq {
		t.Fatalf("last seq: %d %v", s, err)
	}
	if _, err := sa.NextSeq(); err != ErrSeqExhausted {
		t.Fatalf("wrapped: %v", err)
	}
}

func TestWipe(t *testing.T) {
	k := testKeys(t, suites[1], 0x1234, 9)
	sa, err := NewSA(Config{Keys: k})
	if err != nil {
		t.Fatal(err)
	}
	k.Wipe() // the SA holds its own copy
	pkt := sealPkt(t, sa, tuntest.Ping(v4b, v4a, 1, 1, nil))
	sa.Wipe()
	for _, b := range append(sa.keys.EncKey, sa.keys.IntegKey...) {
		if b != 0 {
			t.Fatal("key material left after Wipe")
		}
	}
	if _, d := sa.Open(pkt); d == DropNone {
		t.Fatal("wiped SA opened a packet")
	}
	if s := fmt.Sprintf("%v %s", sa, sa); bytes.Contains([]byte(s), []byte{9}) {
		t.Fatalf("formatting leaks: %q", s)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want Kind
	}{
		{[]byte{0xff}, KindKeepalive},
		{[]byte{0xfe}, KindInvalid},
		{[]byte{0, 0, 0, 0, 1, 2, 3, 4, 5}, KindIKE},
		{[]byte{0, 0, 1, 0, 0, 0, 0, 1}, KindESP},
		{[]byte{0, 0, 1}, KindInvalid},
		{nil, KindInvalid},
	} {
		if got := Classify(c.in); got != c.want {
			t.Errorf("Classify(%x) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	for _, s := range suites {
		for _, bits := range []uint8{0, 16} {
			tx := newTestSA(t, s, 0, bits, uint32(bits)/8)
			rx := newTestSA(t, s, 1024, bits, 0)
			inner := tuntest.UDP(netip.AddrPortFrom(v4a, 1), netip.AddrPortFrom(v4b, 2), make([]byte, 1300))
			buf := make([]byte, Headroom+len(inner)+Tailroom)
			allocs := testing.AllocsPerRun(200, func() {
				copy(buf[Headroom:], inner)
				seq, _ := tx.NextSeq()
				pkt, err := tx.Seal(buf, len(inner), seq)
				if err != nil {
					t.Fatal(err)
				}
				p, d := rx.Open(pkt)
				if d != DropNone || !rx.Accept(&p) {
					t.Fatal(d)
				}
			})
			if allocs != 0 {
				t.Errorf("%v bits=%d: %v allocs per seal+open", s, bits, allocs)
			}
		}
	}
}

func FuzzOpen(f *testing.F) {
	keys := []*SA{}
	for _, s := range suites {
		sa, err := NewSA(Config{Keys: testKeys(f, s, 0xc0ffee01, 7), ReplayWindow: 64, SenderIDBits: 8})
		if err != nil {
			f.Fatal(err)
		}
		keys = append(keys, sa)
		tx := newTestSA(f, s, 0, 8, 1)
		f.Add(uint8(len(keys)-1), sealPkt(f, tx, tuntest.Ping(v4b, v4a, 1, 1, []byte("seed"))))
		f.Add(uint8(len(keys)-1), sealPkt(f, tx, tuntest.Ping(v6b, v6a, 1, 1, nil)))
	}
	f.Add(uint8(0), []byte{0xc0, 0xff, 0xee, 0x01})
	f.Fuzz(func(t *testing.T, which uint8, pkt []byte) {
		sa := keys[int(which)%len(keys)]
		p, d := sa.Open(pkt)
		if d == DropNone {
			if len(p.Inner) == 0 || len(p.Inner) > len(pkt) {
				t.Fatalf("inner of %d octets from %d", len(p.Inner), len(pkt))
			}
			sa.Accept(&p)
		}
		Classify(pkt)
		trailer(pkt)
		Inner(NextHeaderIPv4, pkt)
		Inner(NextHeaderIPv6, pkt)
	})
}

// Benchmarks: seal+open of 1,400-octet packets against the raw cipher
// doing the same work on the same data in the same run.

const benchSize = 1400

// BenchmarkSealOpen measures seal+open of one packet per transform
// ("esp") next to the raw Go cipher doing the same cryptographic work on the
// same size ("raw"): encrypt and decrypt for the AEADs; encrypt, decrypt
// and two HMACs for CBC. The pairs run back to back, so their ratio holds
// on a loaded machine.
func BenchmarkSealOpen(b *testing.B) {
	for _, s := range suites {
		b.Run(s.String()+"/esp", func(b *testing.B) { benchESP(b, s) })
		b.Run(s.String()+"/raw", func(b *testing.B) { benchRaw(b, s) })
	}
}

func benchESP(b *testing.B, s transform.ESP) {
	tx := newTestSA(b, s, 0, 16, 1)
	rx := newTestSA(b, s, 1024, 16, 0)
	inner := tuntest.UDP(netip.AddrPortFrom(v4a, 1), netip.AddrPortFrom(v4b, 2), make([]byte, benchSize-28))
	buf := make([]byte, Headroom+len(inner)+Tailroom)
	b.SetBytes(int64(len(inner)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf[Headroom:], inner)
		seq, _ := tx.NextSeq()
		pkt, _ := tx.Seal(buf, len(inner), seq)
		p, d := rx.Open(pkt)
		if d != DropNone || !rx.Accept(&p) {
			b.Fatal(d)
		}
	}
}

func benchRaw(b *testing.B, s transform.ESP) {
	k := testKeys(b, s, 0x100, 7)
	buf := make([]byte, benchSize+64)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	b.SetBytes(benchSize)
	b.ReportAllocs()
	if s.Encr.IsAEAD() {
		sa := newTestSA(b, s, 0, 0, 0)
		nonce := make([]byte, 12)
		aad := make([]byte, 8)
		for b.Loop() {
			ct := sa.aead.Seal(buf[:0], nonce, buf[:benchSize], aad)
			if _, err := sa.aead.Open(ct[:0], nonce, ct, aad); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	blk, _ := aes.NewCipher(k.EncKey)
	iv := make([]byte, 16)
	enc := cipher.NewCBCEncrypter(blk, iv)
	dec := cipher.NewCBCDecrypter(blk, iv)
	sa := newTestSA(b, s, 0, 0, 0)
	mac := hmac.New(sa.newHash, k.IntegKey)
	sum := make([]byte, 0, 64)
	data := buf[:benchSize/16*16]
	for b.Loop() {
		enc.CryptBlocks(data, data)
		mac.Reset()
		mac.Write(data)
		sum = mac.Sum(sum[:0])
		mac.Reset()
		mac.Write(data)
		sum = mac.Sum(sum[:0])
		dec.CryptBlocks(data, data)
	}
}

// BenchmarkRatio interleaves, packet by packet, one ESP seal+open and the
// raw cipher's equivalent work, timing each, so that load from other
// tenants of the machine falls on both alike. It reports the median time
// of each and the ESP path's throughput as a fraction of the raw cipher's,
// esp/raw (target >= 0.5). The timing slices grow with b.N (the timed
// sections themselves allocate nothing: see allocs/op of the other
// benchmarks and TestAllocs).
func BenchmarkRatio(b *testing.B) {
	for _, s := range suites {
		b.Run(s.String(), func(b *testing.B) {
			tx := newTestSA(b, s, 0, 16, 1)
			rx := newTestSA(b, s, 1024, 16, 0)
			inner := tuntest.UDP(netip.AddrPortFrom(v4a, 1), netip.AddrPortFrom(v4b, 2), make([]byte, benchSize-28))
			buf := make([]byte, Headroom+len(inner)+Tailroom)
			raw := newRawWork(b, s)
			var espNs, rawNs []time.Duration
			b.SetBytes(int64(len(inner)))
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				copy(buf[Headroom:], inner)
				seq, _ := tx.NextSeq()
				pkt, _ := tx.Seal(buf, len(inner), seq)
				p, d := rx.Open(pkt)
				if d != DropNone || !rx.Accept(&p) {
					b.Fatal(d)
				}
				t1 := time.Now()
				raw()
				t2 := time.Now()
				espNs = append(espNs, t1.Sub(t0))
				rawNs = append(rawNs, t2.Sub(t1))
			}
			// Medians: a packet whose timing caught a preemption says
			// nothing about either path.
			e, r := median(espNs), median(rawNs)
			b.ReportMetric(float64(e.Nanoseconds()), "esp-ns/pkt")
			b.ReportMetric(float64(r.Nanoseconds()), "raw-ns/pkt")
			b.ReportMetric(float64(r)/float64(e), "esp/raw")
		})
	}
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// newRawWork returns one packet's worth of the raw cipher work benchRaw
// loops over.
func newRawWork(b *testing.B, s transform.ESP) func() {
	k := testKeys(b, s, 0x100, 7)
	buf := make([]byte, benchSize+64)
	if s.Encr.IsAEAD() {
		sa := newTestSA(b, s, 0, 0, 0)
		nonce := make([]byte, 12)
		aad := make([]byte, 8)
		return func() {
			ct := sa.aead.Seal(buf[:0], nonce, buf[:benchSize], aad)
			if _, err := sa.aead.Open(ct[:0], nonce, ct, aad); err != nil {
				b.Fatal(err)
			}
		}
	}
	blk, _ := aes.NewCipher(k.EncKey)
	iv := make([]byte, 16)
	enc := cipher.NewCBCEncrypter(blk, iv)
	dec := cipher.NewCBCDecrypter(blk, iv)
	sa := newTestSA(b, s, 0, 0, 0)
	mac := hmac.New(sa.newHash, k.IntegKey)
	sum := make([]byte, 0, 64)
	data := buf[:benchSize/16*16]
	return func() {
		enc.CryptBlocks(data, data)
		mac.Reset()
		mac.Write(data)
		sum = mac.Sum(sum[:0])
		mac.Reset()
		mac.Write(data)
		sum = mac.Sum(sum[:0])
		dec.CryptBlocks(data, data)
	}
}
