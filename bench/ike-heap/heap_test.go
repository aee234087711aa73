package ikeheap

import (
	"context"
	"flag"
	"os"
	"runtime"
	"testing"
	"time"
)

var (
	flagSAs        = flag.Int("ikeheap.sas", 10000, "established IKE SAs to measure")
	flagIKE        = flag.String("ikeheap.ike", "", "IKE suite of both sides, strongSwan's spelling (default aes128-sha256-x25519)")
	flagMemProfile = flag.String("ikeheap.memprofile", "", "write a heap profile of the established state (every allocation sampled)")
)

func TestMain(m *testing.M) {
	RunChildIfAsked()
	os.Exit(m.Run())
}

// BenchmarkResponderHeap reports the responder's live heap, goroutine
// stacks and goroutines per established IKE SA at -ikeheap.sas SAs (target:
// heap ≤ 8 KiB per SA at 10,000). One iteration is one complete
// measurement: run it with -benchtime 1x.
func BenchmarkResponderHeap(b *testing.B) {
	o := Options{SAs: *flagSAs, IKE: *flagIKE}
	if *flagMemProfile != "" {
		runtime.MemProfileRate = 1
		defer func() { runtime.MemProfileRate = 512 * 1024 }()
	}
	var res Result
	for b.Loop() {
		var f *os.File
		if *flagMemProfile != "" {
			var err error
			if f, err = os.Create(*flagMemProfile); err != nil {
				b.Fatal(err)
			}
			o.MemProfile = f
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		var err error
		res, err = Measure(ctx, o)
		cancel()
		if f != nil {
			f.Close()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Log(res)
	b.ReportMetric(res.HeapPerSA, "heap-B/sa")
	b.ReportMetric(res.StackPerSA, "stack-B/sa")
	b.ReportMetric(res.GoroutinesPerSA, "goroutines/sa")
	b.ReportMetric(res.HeapObjectsPerSA, "objects/sa")
}

// TestMeasure runs the measurement with a few SAs: the child process
// establishes them all, the responder reaches the steady state and the
// figures are those of real SAs (some heap per SA, no goroutine left per
// idle SA). It checks the harness, not the 8 KiB budget (that is the
// benchmark's).
func TestMeasure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Measure(ctx, Options{SAs: 200, Managers: 4, Window: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.HeapPerSA < 256 || res.HeapPerSA > 1<<20 || res.HeapObjectsPerSA < 4 {
		t.Fatalf("implausible heap per SA: %v", res)
	}
	if res.GoroutinesPerSA > 0.05 {
		t.Fatalf("established SAs hold goroutines: %v", res)
	}
}
