package ike

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/iketest"
)

// BenchmarkResponderHeap establishes IKE_BENCH_SAS (default 2000) IKE SAs,
// each with a CHILD_SA and a virtual IP, against one responder on the
// in-memory network, drops the initiator, and reports the responder's heap
// per established SA (target: ≤ 8 KiB at 10,000 SAs) and the in-process
// setup rate (both sides on the same cores).
//
//	IKE_BENCH_SAS=10000 go test -run XXX -bench ResponderHeap -benchtime 1x ./ike/
func BenchmarkResponderHeap(b *testing.B) {
	n := 2000
	if s := os.Getenv("IKE_BENCH_SAS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for range b.N {
		perSA, rate := responderHeap(b, n)
		b.ReportMetric(perSA, "B/SA")
		b.ReportMetric(rate, "setups/s")
	}
}

func responderHeap(b *testing.B, n int) (perSA, rate float64) {
	net := iketest.NewNet()
	net.SetAuto(true)
	clk := iketest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	newM := func(cfg Config, addr netip.Addr, seed byte) *Manager {
		cfg.Clock = clk
		cfg.Rand = rand.NewChaCha8([32]byte{seed})
		// Dispatch as fast as the pair can go: this is not the
		// amplification test.
		cfg.UnauthReplyRate, cfg.UnauthReplyBurst = 1e9, 1<<30
		cfg.CookieThreshold = 1 << 30
		m, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		m.AddConn(net.Listen(netip.AddrPortFrom(addr, 500)), false)
		m.AddConn(net.Listen(netip.AddrPortFrom(addr, 4500)), true)
		return m
	}
	rcfg := baseConfig(hubID)
	rcfg.LocalTS = []netip.Prefix{netip.MustParsePrefix("10.99.1.0/24")}
	var mu sync.Mutex
	next := uint32(0)
	rcfg.Policy.AssignAddresses = func(context.Context, PeerInfo, []netip.Addr) ([]netip.Prefix, error) {
		mu.Lock()
		defer mu.Unlock()
		next++
		return []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100, byte(next >> 8), byte(next)}), 32)}, nil
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	hub := newM(rcfg, hubAddr, 1)
	defer hub.Close()
	cpe := newM(baseConfig(cpeID), cpeAddr, 2)
	conn := defaultConn()
	conn.VirtualIPs = []netip.Addr{netip.IPv4Unspecified()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	// The first SA alone: the others then carry no INITIAL_CONTACT.
	if _, err := cpe.Initiate(ctx, conn); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	work := make(chan struct{})
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				if _, err := cpe.Initiate(ctx, conn); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for range n - 1 {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	cpe.Close()
	if got := hub.Stats().Established; got != int64(n) {
		b.Fatalf("%d SAs established, want %d", got, n)
	}
	runtime.GC()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(hub)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n), float64(n) / elapsed.Seconds()
}
