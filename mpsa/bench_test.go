package mpsa

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

// ackSession acknowledges every MPSA_PUT at once, as a CPE on a perfect
// network would.
type ackSession struct{ n int }

func (s *ackSession) Inform(ns []Notify, done func(error)) {
	s.n++
	done(nil)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// benchHub builds a key server with one group of n connected CPEs that have
// acknowledged the group SA.
func benchHub(b *testing.B, n int, cfg GroupConfig, sessions []*ackSession, names []string) *KeyServer {
	clock := newClock()
	ks, err := NewKeyServer(KeyServerConfig{Now: clock.Now, Rand: seededRand(1), Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	if err := ks.AddGroup(cfg); err != nil {
		b.Fatal(err)
	}
	prov := make(map[string]string, n)
	for _, name := range names {
		prov[name] = cfg.Name
	}
	if err := ks.Sync(nil, prov); err != nil {
		b.Fatal(err)
	}
	for i, name := range names {
		if err := ks.Connected(name, sessions[i], fullCaps); err != nil {
			b.Fatal(err)
		}
	}
	return ks
}

// BenchmarkHeapPerCPE measures the key server's heap per connected CPE
// (MPSA state only: the IKE SA and its session are the engine's).
func BenchmarkHeapPerCPE(b *testing.B) {
	for _, cfg := range []GroupConfig{{Name: "cbc"}, {Name: "gcm", Suite: beta.Suite}} {
		b.Run(cfg.Name, func(b *testing.B) {
			const n = 10000
			sessions := make([]*ackSession, n)
			names := make([]string, n)
			for i := range sessions {
				sessions[i] = &ackSession{}
				names[i] = "cpe" + strconv.Itoa(i) + ".example.net"
			}
			var perCPE float64
			for b.Loop() {
				base := heapInUse()
				ks := benchHub(b, n, cfg, sessions, names)
				perCPE = float64(heapInUse()-base) / n
				if st := ks.Status()[0]; st.Epochs[0].Acked != n {
					b.Fatalf("acked %d", st.Epochs[0].Acked)
				}
				runtime.KeepAlive(ks)
				ks.Close()
			}
			b.ReportMetric(perCPE, "B/cpe")
			b.ReportMetric(perCPE/(16<<10)*100, "%budget")
		})
	}
}

// BenchmarkRekeyFanout measures a rekey of a group of 10,000 connected CPEs
// inside the key server (generation, encoding, bookkeeping; no network),
// against the anchor of encoding the same 10,000 MPSA_PUT alone.
func BenchmarkRekeyFanout(b *testing.B) {
	const n = 10000
	sessions := make([]*ackSession, n)
	names := make([]string, n)
	for i := range sessions {
		sessions[i] = &ackSession{}
		names[i] = "cpe" + strconv.Itoa(i)
	}
	b.Run("keyserver", func(b *testing.B) {
		ks := benchHub(b, n, GroupConfig{Name: "g", Lifetime: 1000 * time.Hour, RekeyMargin: time.Hour}, sessions, names)
		defer ks.Close()
		for b.Loop() {
			ks.mu.Lock()
			sends, err := ks.rekeyLocked(ks.groups["g"], ks.now(), "benchmark")
			ks.mu.Unlock()
			if err != nil || len(sends) != n {
				b.Fatal(len(sends), err)
			}
			ks.dispatch(sends)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/cpe")
	})
	b.Run("anchor-encode-only", func(b *testing.B) {
		p := draftExample()
		p.Suite, p.PRF, p.SKd = DefaultSuite, DefaultPRF, seq(32, 1)
		for b.Loop() {
			for range n {
				nt, err := p.Encode()
				if err != nil {
					b.Fatal(err)
				}
				clear(nt.Data)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/cpe")
	})
}
