package routing

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gaissmai/bart"
)

// Benchmark table: 1,000,000 IPv4 and 200,000 IPv6 prefixes in the shape of
// a large carrier VPN: 90% /24 (IPv4) and /48 (IPv6), the rest shorter
// (/16-/23 and /32-/47), clustered in 12,000 random IPv4 /16s and 2,000
// random IPv6 /32s. They are spread over 10,000 CPEs (peers) that advertise
// them in BGP; two thirds of the CPEs send the Tunnel Encapsulation
// attribute (explicit endpoint), one third only a NEXT_HOP (their overlay
// address), which resolves through a /32 static route to the CPE's endpoint.
const (
	benchV4   = 1_000_000
	benchV6   = 200_000
	benchCPEs = 10_000
)

type benchData struct {
	routes []Route
	cpe    []Route // the /32 routes the recursive next hops resolve through
	addrs  []netip.Addr
}

var (
	benchOnce sync.Once
	bench     *benchData
)

func cpeAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)})
}

func cpeEndpoint(i int, gen byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18 + gen, byte(i >> 8), byte(i)}), 4500)
}

func genBench() *benchData {
	r := rand.New(rand.NewPCG(42, 4242))
	d := &benchData{}
	seen := make(map[netip.Prefix]struct{}, benchV4+benchV6)
	blocks4 := make([][2]byte, 12000)
	for i := range blocks4 {
		v := r.Uint32()
		// First octets 20-219 except 100: 11-13 are left for the
		// update benchmarks, 100.64.0.0/10 holds the CPE overlay addresses.
		o := byte(v>>24)%199 + 20
		if o >= 100 {
			o++
		}
		blocks4[i] = [2]byte{o, byte(v >> 16)}
	}
	blocks6 := make([]uint32, 2000)
	for i := range blocks6 {
		blocks6[i] = 0x20010000 | r.Uint32()&0xffff
	}
	add := func(p netip.Prefix) {
		if _, dup := seen[p]; dup {
			return
		}
		seen[p] = struct{}{}
		i := len(d.routes) % benchCPEs
		rt := Route{Prefix: p, Peer: cpeAddr(i), Source: SourceBGP, LocalPref: 100, Tunnel: 1}
		switch {
		case p.Addr().Is6():
			rt.Endpoint = cpeEndpoint(i, 0) // IPv6 routes all carry the endpoint
		case i%3 == 2:
			rt.NextHop = cpeAddr(i)
		default:
			rt.Endpoint = cpeEndpoint(i, 0)
			rt.NextHop = cpeAddr(i)
		}
		d.routes = append(d.routes, rt)
	}
	for len(d.routes) < benchV4 {
		b := blocks4[r.IntN(len(blocks4))]
		v := r.Uint32()
		a := netip.AddrFrom4([4]byte{b[0], b[1], byte(v), byte(v >> 8)})
		bits := 24
		if r.IntN(10) == 0 {
			bits = 16 + r.IntN(8)
		}
		add(netip.PrefixFrom(a, bits).Masked())
	}
	for len(d.routes) < benchV4+benchV6 {
		b := blocks6[r.IntN(len(blocks6))]
		v := r.Uint32()
		var x [16]byte
		x[0], x[1], x[2], x[3] = byte(b>>24), byte(b>>16), byte(b>>8), byte(b)
		x[4], x[5] = byte(v), byte(v>>8)
		bits := 48
		if r.IntN(10) == 0 {
			bits = 32 + r.IntN(16)
		}
		add(netip.PrefixFrom(netip.AddrFrom16(x), bits).Masked())
	}
	for i := range benchCPEs {
		d.cpe = append(d.cpe, Route{Prefix: netip.PrefixFrom(cpeAddr(i), 32), Endpoint: cpeEndpoint(i, 0),
			Tunnel: 1, Source: SourceStatic})
	}
	// Destinations inside the prefixes, in random order.
	for range 1 << 16 {
		p := d.routes[r.IntN(len(d.routes))].Prefix
		d.addrs = append(d.addrs, randomIn(p, r))
	}
	return d
}

// randomIn returns a random address inside p.
func randomIn(p netip.Prefix, r *rand.Rand) netip.Addr {
	b := p.Addr().As16()
	off := 0
	if p.Addr().Is4() {
		off = 12
	}
	for i := off; i < 16; i++ {
		bit := (i - off) * 8 // first bit of this byte within the address
		if keep := p.Bits() - bit; keep < 8 {
			mask := byte(0xff) >> max(keep, 0)
			b[i] |= byte(r.Uint32()) & mask
		}
	}
	if p.Addr().Is4() {
		return netip.AddrFrom4([4]byte(b[12:]))
	}
	return netip.AddrFrom16(b)
}

func getBench(b *testing.B) *benchData {
	b.Helper()
	benchOnce.Do(func() { bench = genBench() })
	return bench
}

// loadFIB builds the benchmark FIB in batches of 1,000 routes.
func loadFIB(d *benchData, opts ...Option) *FIB {
	f := New(opts...)
	ops := make([]Op, 0, 1000)
	for i := range d.cpe {
		ops = append(ops, Op{Route: d.cpe[i]})
	}
	if err := f.Apply(ops); err != nil {
		panic(err)
	}
	for i := 0; i < len(d.routes); i += 1000 {
		ops = ops[:0]
		for j := i; j < min(i+1000, len(d.routes)); j++ {
			ops = append(ops, Op{Route: d.routes[j]})
		}
		if err := f.Apply(ops); err != nil {
			panic(err)
		}
	}
	return f
}

var (
	fibOnce  sync.Once
	benchFIB *FIB
	rawOnce  sync.Once
	rawBart  *bart.Table[*NextHop]
)

func getFIB(b *testing.B) *FIB {
	d := getBench(b)
	fibOnce.Do(func() { benchFIB = loadFIB(d) })
	return benchFIB
}

// getRaw is the anchor: the same prefixes in a plain bart table, each
// pointing at its next hop, no resolution and no concurrency control.
func getRaw(b *testing.B) *bart.Table[*NextHop] {
	d := getBench(b)
	rawOnce.Do(func() {
		rawBart = new(bart.Table[*NextHop])
		hops := make(map[netip.AddrPort]*NextHop)
		for _, r := range d.routes {
			ep := r.Endpoint
			if !ep.IsValid() {
				ep = cpeEndpoint(0, 0)
			}
			h := hops[ep]
			if h == nil {
				h = &NextHop{Endpoint: ep, Tunnel: 1}
				hops[ep] = h
			}
			rawBart.Insert(r.Prefix, h)
		}
	})
	return rawBart
}

var sinkHop NextHop

// BenchmarkLookup compares a resolved FIB lookup with a raw bart lookup of
// the same prefixes, in the same run. The target: fib ≤ 1.5 × bart, 0
// allocations.
func BenchmarkLookup(b *testing.B) {
	d := getBench(b)
	raw, f := getRaw(b), getFIB(b)
	b.Run("bart", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if h, ok := raw.Lookup(d.addrs[i&0xffff]); ok {
				sinkHop = *h
			}
		}
	})
	b.Run("fib", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sinkHop, _ = f.Lookup(d.addrs[i&0xffff])
		}
	})
	b.Run("fib-flow", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sinkHop, _ = f.LookupFlow(d.addrs[i&0xffff], uint32(i))
		}
	})
	b.Run("fib-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(1 << 16)
			var h NextHop
			for pb.Next() {
				h, _ = f.Lookup(d.addrs[i&0xffff])
				i++
			}
			_ = h
		})
	})
}

// BenchmarkLookupRatio times both lookups over the same destinations in
// short alternating rounds (the machine is shared, so only what is measured
// side by side compares) and reports the median of the per-round ratios
// fib/bart.
func BenchmarkLookupRatio(b *testing.B) {
	d := getBench(b)
	raw, f := getRaw(b), getFIB(b)
	const chunk = 512
	var ratios []float64
	var tRaw, tFIB time.Duration
	timeRaw := func(base int) time.Duration {
		t0 := time.Now()
		for i := range chunk {
			if h, ok := raw.Lookup(d.addrs[(base+i)&0xffff]); ok {
				sinkHop = *h
			}
		}
		return time.Since(t0)
	}
	timeFIB := func(base int) time.Duration {
		t0 := time.Now()
		for i := range chunk {
			sinkHop, _ = f.Lookup(d.addrs[(base+i)&0xffff])
		}
		return time.Since(t0)
	}
	for n := 0; b.Loop(); n++ {
		base := (n * chunk) & 0xffff
		var r, x time.Duration
		if n%2 == 0 {
			r, x = timeRaw(base), timeFIB(base)
		} else {
			x, r = timeFIB(base), timeRaw(base)
		}
		tRaw += r
		tFIB += x
		ratios = append(ratios, float64(x)/float64(r))
	}
	slices.Sort(ratios)
	n := float64(len(ratios) * chunk)
	b.ReportMetric(float64(tRaw.Nanoseconds())/n, "bart-ns/lookup")
	b.ReportMetric(float64(tFIB.Nanoseconds())/n, "fib-ns/lookup")
	b.ReportMetric(ratios[len(ratios)/2], "median-ratio")
}

// cpuTime is the CPU time the process has used (all threads: the
// benchmark, the GC workers). On a shared machine it is steadier than the
// wall clock, which also counts time other processes held the cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemory reports the heap the FIB holds per prefix, everything
// included (both lookup tables, groups, member lists, tracking).
func BenchmarkMemory(b *testing.B) {
	d := getBench(b)
	for b.Loop() {
		before := heapInUse()
		f := loadFIB(d)
		after := heapInUse()
		st := f.Stats()
		b.ReportMetric(float64(after-before)/float64(st.Prefixes4+st.Prefixes6), "B/prefix")
		runtime.KeepAlive(f)
	}
}

// BenchmarkUpdate measures inserting and withdrawing routes into the loaded
// FIB, in batches of the given size (one UPDATE: the routes of a batch share
// one CPE's attributes), with a subscriber following. It reports routes per
// second of wall clock and per second of the process's CPU time (which
// includes the garbage collector's work on the other core).
func BenchmarkUpdate(b *testing.B) {
	d := getBench(b)
	f := getFIB(b)
	for _, size := range []int{1, 100, 1000} {
		b.Run(sizeName(size), func(b *testing.B) {
			sub := f.Subscribe()
			defer sub.Close()
			sub.TryNext() // the snapshot
			// Fresh prefixes under 11.0.0.0/8 and 2001:db9::/32, attached to
			// existing CPEs.
			ops := make([]Op, size)
			wd := make([]Op, size)
			routes := 0
			start, cpu0 := time.Now(), cpuTime()
			for n := 0; b.Loop(); n++ {
				for i := range size {
					k := n*size + i
					p := netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(k >> 8), byte(k), 0}), 24)
					if k%6 == 5 {
						p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb9, byte(k >> 8), byte(k)}), 48)
					}
					// A batch is one UPDATE: its routes carry one CPE's
					// attributes (with batch=1, every route is another CPE's).
					rt := d.routes[(n*size)%len(d.routes)]
					rt.Prefix = p
					if p.Addr().Is6() && !rt.Endpoint.IsValid() {
						rt.Endpoint = cpeEndpoint(0, 0)
					}
					if p.Addr().Is6() {
						rt.NextHop = netip.Addr{}
					}
					ops[i] = Op{Route: rt}
					wd[i] = Op{Route: Route{Prefix: p, Peer: rt.Peer}, Withdraw: true}
				}
				// The subscriber takes each batch as it comes, as a data
				// plane following the FIB does.
				if err := f.Apply(ops); err != nil {
					b.Fatal(err)
				}
				sub.TryNext()
				if err := f.Apply(wd); err != nil {
					b.Fatal(err)
				}
				sub.TryNext()
				routes += 2 * size
			}
			b.ReportMetric(float64(routes)/time.Since(start).Seconds(), "routes/s")
			b.ReportMetric(float64(routes)/(cpuTime()-cpu0).Seconds(), "routes/cpu-s")
		})
	}
}

// BenchmarkUpdateBart is the anchor for BenchmarkUpdate: the same fresh
// prefixes inserted into and deleted from a plain bart table holding the
// benchmark prefixes (one copy, no resolution, no readers).
func BenchmarkUpdateBart(b *testing.B) {
	d := getBench(b)
	t := new(bart.Table[slotID])
	for i, r := range d.routes {
		t.Insert(r.Prefix, slotID(i))
	}
	routes := 0
	start, cpu0 := time.Now(), cpuTime()
	ps := make([]netip.Prefix, 1000)
	for n := 0; b.Loop(); n++ {
		for i := range ps {
			k := n*1000 + i
			ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(k >> 8), byte(k), 0}), 24)
			if k%6 == 5 {
				ps[i] = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb9, byte(k >> 8), byte(k)}), 48)
			}
			t.Insert(ps[i], 1)
		}
		for _, p := range ps {
			t.Delete(p)
		}
		routes += 2000
	}
	b.ReportMetric(float64(routes)/time.Since(start).Seconds(), "routes/s")
	b.ReportMetric(float64(routes)/(cpuTime()-cpu0).Seconds(), "routes/cpu-s")
}

func sizeName(n int) string {
	switch n {
	case 1:
		return "batch=1"
	case 100:
		return "batch=100"
	}
	return "batch=1000"
}

// BenchmarkReresolve moves the endpoint of one CPE that 100,000 routes
// resolve through (recursively, by NEXT_HOP) and measures how long the FIB
// takes to re-resolve them and hand the 100,000 changes to a subscriber.
func BenchmarkReresolve(b *testing.B) {
	d := getBench(b)
	f := getFIB(b)
	const deps = 100_000
	hub := Route{Prefix: netip.MustParsePrefix("100.127.255.1/32"), Endpoint: netip.MustParseAddrPort("203.0.113.1:4500"),
		Tunnel: 7, Source: SourceStatic}
	if err := f.Upsert(hub); err != nil {
		b.Fatal(err)
	}
	ops := make([]Op, 0, deps)
	for i := range deps {
		ops = append(ops, Op{Route: Route{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(12 + i>>16), byte(i >> 8), byte(i), 0}), 24),
			NextHop: hub.Prefix.Addr(), Peer: netip.MustParseAddr("100.127.255.1"), Source: SourceBGP, LocalPref: 100}})
	}
	if err := f.Apply(ops); err != nil {
		b.Fatal(err)
	}
	sub := f.Subscribe()
	defer sub.Close()
	sub.TryNext() // the snapshot
	var worst, cpu time.Duration
	runs := 0
	for n := 0; b.Loop(); n++ {
		hub.Endpoint = netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(2 + n%200)}), 4500)
		t0, c0 := time.Now(), cpuTime()
		if err := f.Upsert(hub); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, time.Since(t0))
		cpu += cpuTime() - c0
		runs++
		b.StopTimer()
		u, ok, _ := sub.TryNext()
		if !ok || len(u.Changes) != deps+1 { // the dependents and the /32 itself
			b.Fatalf("subscriber got %d changes, want %d", len(u.Changes), deps+1)
		}
		if nh, _ := f.Lookup(netip.MustParseAddr("12.0.5.1")); nh.Endpoint != hub.Endpoint {
			b.Fatalf("lookup after the change: %v", nh)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(runs), "cpu-ms/op")
	_ = d
}
