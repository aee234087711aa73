package fanout

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

var cpuProfile = flag.String("fanout.cpuprofile", "", "write a CPU profile of the hub during the rekeys (not the connects) to this file")

func TestMain(m *testing.M) {
	RunChildIfAsked()
	os.Exit(m.Run())
}

// TestFanout runs the measurement small: 50 CPEs connect, acknowledge the
// first group SA, a rekey reaches all of them, and so does a liveness
// check.
func TestFanout(t *testing.T) {
	testenv.Short(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Heap <= 0 {
		t.Errorf("heap per CPE %.0f", s.Heap)
	}
	g := s.Hub.Groups().Groups[0]
	if g.Connected != 50 || g.OnCurrent != 50 || g.Epoch != 1 {
		t.Fatalf("group before the rekey: %+v", g)
	}
	took, err := s.Rekey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Hub.Changed()
	if g := s.Hub.Groups().Groups[0]; g.Epoch != 2 || len(g.Epochs) != 2 {
		t.Errorf("group after the rekey: epoch %d, %d live", g.Epoch, len(g.Epochs))
	}
	if _, err := s.Anchor(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("50 CPEs: heap %.0f B/CPE, rekey acknowledged by all in %v", s.Heap, took)
}

// BenchmarkFanout: a group rekey to 1,000 and 10,000 connected CPEs, until
// all acknowledged (ms/rekey), against one empty INFORMATIONAL exchange with
// every CPE (ms/anchor); and the hub's heap per connected CPE.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("cpes=%d", n), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			s, err := Start(ctx, n)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var rekey, anchor time.Duration
			var rekeyCPU, anchorCPU CPU
			if *cpuProfile != "" {
				f, err := os.Create(fmt.Sprintf("%s.%d", *cpuProfile, n))
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				pprof.StartCPUProfile(f)
				defer pprof.StopCPUProfile()
			}
			for b.Loop() {
				r, err := s.Rekey(ctx)
				if err != nil {
					b.Fatal(err)
				}
				rekeyCPU.Hub += s.Last.Hub
				rekeyCPU.CPEs += s.Last.CPEs
				a, err := s.Anchor(ctx)
				if err != nil {
					b.Fatal(err)
				}
				anchorCPU.Hub += s.Last.Hub
				anchorCPU.CPEs += s.Last.CPEs
				rekey += r
				anchor += a
			}
			k := float64(b.N)
			b.ReportMetric(float64(rekey.Milliseconds())/k, "ms/rekey")
			b.ReportMetric(float64(anchor.Milliseconds())/k, "ms/anchor")
			b.ReportMetric(float64(rekey)/float64(anchor), "rekey/anchor")
			b.ReportMetric(float64(rekeyCPU.Hub.Milliseconds())/k, "hub-cpu-ms/rekey")
			b.ReportMetric(float64(anchorCPU.Hub.Milliseconds())/k, "hub-cpu-ms/anchor")
			b.ReportMetric(float64(rekeyCPU.CPEs.Milliseconds())/k, "cpe-cpu-ms/rekey")
			b.ReportMetric(float64(anchorCPU.CPEs.Milliseconds())/k, "cpe-cpu-ms/anchor")
			b.ReportMetric(s.Heap, "heap-B/cpe")
			b.ReportMetric(s.Took.Seconds(), "s-connect")
		})
	}
}
