package mpsa

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/transform"
)

func randomRecord(r *rand.Rand) *groupRecord {
	rec := &groupRecord{name: "g" + string(rune('a'+r.IntN(26))), lastEpoch: uint64(r.IntN(1000)) + maxStoredEpochs}
	n := r.IntN(maxStoredEpochs + 1)
	t := time.Unix(1_700_000_000+int64(r.IntN(1e6)), int64(r.IntN(1e9)))
	for i := 0; i < n; i++ {
		p := randomPut(r)
		e := epochRecord{
			n: rec.lastEpoch - uint64(n-1-i), spi: p.SPI,
			params: keyParams{suite: p.Suite, prf: p.PRF, senderIDBits: p.SenderIDBits},
			nonce:  p.Nonce, skd: p.SKd,
			created: t, expires: t.Add(p.Life), reservedSID: r.Uint32(),
		}
		if i < n-1 {
			e.superseded = t.Add(time.Minute)
			e.dies = t.Add(2 * time.Minute)
		}
		rec.epochs = append(rec.epochs, e)
	}
	return rec
}

func normalize(r *groupRecord) {
	for i := range r.epochs {
		e := &r.epochs[i]
		for _, t := range []*time.Time{&e.created, &e.expires, &e.superseded, &e.dies} {
			if !t.IsZero() {
				*t = time.Unix(0, t.UnixNano())
			}
		}
	}
}

func TestGroupRecordRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 300; i++ {
		rec := randomRecord(r)
		v, err := rec.encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeGroupRecord(v)
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		normalize(rec)
		if len(rec.epochs) == 0 {
			rec.epochs = []epochRecord{}
		}
		if !reflect.DeepEqual(got, rec) {
			t.Fatalf("#%d: round trip changed\n%+v\ninto\n%+v", i, rec, got)
		}
	}
}

func TestGroupRecordRejects(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	rec := randomRecord(r)
	for len(rec.epochs) < 2 {
		rec = randomRecord(r)
	}
	good, _ := rec.encode()
	if _, err := decodeGroupRecord(good); err != nil {
		t.Fatal(err)
	}
	mutate := map[string]func(*groupRecord){
		"epoch order":  func(g *groupRecord) { g.epochs[0].n, g.epochs[1].n = g.epochs[1].n, g.epochs[0].n },
		"beyond last":  func(g *groupRecord) { g.lastEpoch = g.epochs[0].n },
		"short SK_d":   func(g *groupRecord) { g.epochs[0].skd = g.epochs[0].skd[:4] },
		"short nonce":  func(g *groupRecord) { g.epochs[0].nonce = g.epochs[0].nonce[:8] },
		"bad suite":    func(g *groupRecord) { g.epochs[0].params.suite = transform.ESP{Encr: 3} },
		"reserved SPI": func(g *groupRecord) { g.epochs[0].spi = 17 },
		"no lifetime":  func(g *groupRecord) { g.epochs[0].expires = g.epochs[0].created },
	}
	for name, m := range mutate {
		c := randomRecordCopy(rec)
		m(c)
		v, err := c.encode()
		if err != nil {
			continue
		}
		if _, err := decodeGroupRecord(v); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, v := range [][]byte{nil, {2}, good[:len(good)-1], append(bytes.Clone(good), 0)} {
		if _, err := decodeGroupRecord(v); err == nil {
			t.Errorf("accepted %x", v)
		}
	}
}

func randomRecordCopy(r *groupRecord) *groupRecord {
	c := *r
	c.epochs = make([]epochRecord, len(r.epochs))
	for i, e := range r.epochs {
		e.nonce, e.skd = bytes.Clone(e.nonce), bytes.Clone(e.skd)
		c.epochs[i] = e
	}
	return &c
}

func FuzzDecodeGroupRecord(f *testing.F) {
	r := rand.New(rand.NewPCG(9, 10))
	for range 6 {
		v, _ := randomRecord(r).encode()
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		rec, err := decodeGroupRecord(v)
		if err != nil {
			return
		}
		w, err := rec.encode()
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if !bytes.Equal(v, w) {
			t.Fatalf("decode→encode changed the record:\n%x\n%x", v, w)
		}
	})
}
