package routing

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The randomized differential test: random batches over a small address
// space (so that next hops, loops and overlaps are common) go to the FIB and
// to the naive reference; after every batch both must agree on every path's
// status, on lookups, and the change feed must add up to the forwarding
// table.

type diffGen struct {
	r     *rand.Rand
	six   bool
	peers []netip.Addr
	eps   []netip.AddrPort
}

func newDiffGen(seed uint64, six bool) *diffGen {
	g := &diffGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), six: six}
	g.peers = []netip.Addr{{}, netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("2.2.2.2"), netip.MustParseAddr("2001:db8::3")}
	g.eps = []netip.AddrPort{
		netip.MustParseAddrPort("198.51.100.1:4500"),
		netip.MustParseAddrPort("198.51.100.2:0"),
		netip.MustParseAddrPort("[2001:db8:ffff::1]:4500"),
	}
	return g
}

// addr returns an address in a small space: 10.0.0.0/22 or fd00::/118.
func (g *diffGen) addr(v6 bool) netip.Addr {
	n := g.r.IntN(1 << 10)
	if v6 {
		var b [16]byte
		b[0] = 0xfd
		b[14], b[15] = byte(n>>8), byte(n)
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)})
}

func (g *diffGen) prefix(v6 bool) netip.Prefix {
	a := g.addr(v6)
	lens := []int{8, 16, 22, 24, 26, 28, 30, 31, 32}
	bits := lens[g.r.IntN(len(lens))]
	if v6 {
		bits += 96
	}
	return netip.PrefixFrom(a, bits).Masked()
}

func (g *diffGen) route() Route {
	v6 := g.six && g.r.IntN(3) == 0
	r := Route{
		Prefix:    g.prefix(v6),
		Peer:      g.peers[g.r.IntN(len(g.peers))],
		LocalPref: uint32(100 * (1 + g.r.IntN(2))),
		Tunnel:    Tunnel(g.r.IntN(3)),
	}
	switch x := g.r.IntN(20); {
	case x == 0:
		r.Source = SourceConnected
	case x < 5:
		r.Source = SourceStatic
	default:
		r.Source = SourceBGP
	}
	switch x := g.r.IntN(10); {
	case x < 3:
		r.Endpoint = g.eps[g.r.IntN(len(g.eps))]
		if g.r.IntN(2) == 0 {
			r.NextHop = g.addr(v6)
		}
	case x < 4 && !v6:
		r.NextHop = netip.AddrFrom4([4]byte{192, 0, 2, byte(g.r.IntN(4))}) // underlay
	default:
		r.NextHop = g.addr(v6)
	}
	return r
}

type diffOp struct {
	op       Op
	down     bool // WithdrawPeer(peerDown) instead of Apply
	peerDown netip.Addr
}

func (g *diffGen) batch(held []Route) []diffOp {
	if g.r.IntN(30) == 0 {
		return []diffOp{{down: true, peerDown: g.peers[g.r.IntN(len(g.peers))]}}
	}
	n := 1 + g.r.IntN(6)
	out := make([]diffOp, 0, n)
	for range n {
		switch x := g.r.IntN(10); {
		case x < 3 && len(held) > 0:
			h := held[g.r.IntN(len(held))]
			out = append(out, diffOp{op: Op{Route: Route{Prefix: h.Prefix, Peer: h.Peer}, Withdraw: true}})
		case x < 5 && len(held) > 0:
			// Change one attribute of a held path (an endpoint move, a new
			// next hop...).
			h := held[g.r.IntN(len(held))]
			r := g.route()
			r.Prefix, r.Peer = h.Prefix, h.Peer
			out = append(out, diffOp{op: Op{Route: r}})
		default:
			out = append(out, diffOp{op: Op{Route: g.route()}})
		}
	}
	return out
}

func routesOf(n *naive) []Route {
	var out []Route
	for _, paths := range n.routes {
		out = append(out, paths...)
	}
	slices.SortFunc(out, func(a, b Route) int {
		if c := comparePrefix(a.Prefix, b.Prefix); c != 0 {
			return c
		}
		return comparePaths(&a, &b)
	})
	return out
}

func naiveStatus(res naiveResult) []RouteStatus {
	keys := make([]netip.Prefix, 0, len(res.paths))
	for p := range res.paths {
		keys = append(keys, p)
	}
	slices.SortFunc(keys, comparePrefix)
	var out []RouteStatus
	for _, p := range keys {
		out = append(out, res.paths[p]...)
	}
	return out
}

func fmtStatus(sts []RouteStatus) string {
	var b strings.Builder
	for _, st := range sts {
		r := st.Route
		fmt.Fprintf(&b, "  %s peer=%s nh=%s ep=%s src=%s lp=%d sel=%v res=%v hops=%v via=%s depth=%d reason=%s\n",
			r.Prefix, r.Peer, r.NextHop, r.Endpoint, r.Source, r.LocalPref, st.Selected, st.Resolved, st.NextHops, st.Via, st.Depth, st.Reason)
	}
	return b.String()
}

// feedState applies updates to a map of forwarding entries.
type feedState map[netip.Prefix][]NextHop

func (fs feedState) apply(t *testing.T, u Update) feedState {
	t.Helper()
	fs, err := fs.update(u)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// update applies u, checking that it is consistent with what fs holds.
func (fs feedState) update(u Update) (feedState, error) {
	if u.Snapshot {
		fs = feedState{}
	}
	for i, c := range u.Changes {
		if i > 0 && comparePrefix(u.Changes[i-1].Prefix, c.Prefix) >= 0 {
			return fs, fmt.Errorf("update not in prefix order or duplicate prefix: %s after %s", c.Prefix, u.Changes[i-1].Prefix)
		}
		_, had := fs[c.Prefix]
		switch {
		case c.Kind == Added && had && !u.Snapshot:
			return fs, fmt.Errorf("Added %s that the reader already holds", c.Prefix)
		case c.Kind == Changed && !had, c.Kind == Removed && !had:
			return fs, fmt.Errorf("%s %s that the reader does not hold", c.Kind, c.Prefix)
		case c.Kind == Added, c.Kind == Changed:
			if len(c.NextHops) == 0 {
				return fs, fmt.Errorf("%s %s without next hops", c.Kind, c.Prefix)
			}
			fs[c.Prefix] = c.NextHops
		case c.Kind == Removed:
			delete(fs, c.Prefix)
		default:
			return fs, fmt.Errorf("bad change kind %d", c.Kind)
		}
	}
	return fs, nil
}

func runDifferential(t *testing.T, seed uint64, steps int, opts ...Option) {
	t.Helper()
	g := newDiffGen(seed, true)
	f := New(opts...)
	ref := newNaive(newConfig(opts))
	sub := f.Subscribe()
	defer sub.Close()
	fs := feedState{}
	var history []string
	for step := range steps {
		b := g.batch(routesOf(ref))
		if b[0].down {
			peer := b[0].peerDown
			history = append(history, fmt.Sprintf("WithdrawPeer(%s)", peer))
			got, want := f.WithdrawPeer(peer), ref.withdrawPeer(peer)
			if got != want {
				t.Fatalf("step %d: WithdrawPeer(%s) = %d, reference %d", step, peer, got, want)
			}
		} else {
			ops := make([]Op, len(b))
			for i := range b {
				ops[i] = b[i].op
			}
			history = append(history, fmt.Sprintf("Apply(%v)", ops))
			if err := f.Apply(ops); err != nil {
				continue // rejected as a whole
			}
			for _, op := range ops {
				if op.Withdraw {
					ref.withdraw(op.Route.Prefix, op.Route.Peer)
				} else {
					ref.upsert(op.Route)
				}
			}
		}
		res := ref.resolve()
		fail := func(format string, args ...any) {
			t.Helper()
			h := history
			if len(h) > 30 {
				h = h[len(h)-30:]
			}
			var got []RouteStatus
			for st := range f.Routes() {
				got = append(got, st)
			}
			t.Fatalf("seed %d step %d: %s\nlast batches:\n  %s\nFIB:\n%sreference:\n%s", seed, step, fmt.Sprintf(format, args...),
				strings.Join(h, "\n  "), fmtStatus(got), fmtStatus(naiveStatus(res)))
		}
		var got []RouteStatus
		for st := range f.Routes() {
			got = append(got, st)
		}
		if want := naiveStatus(res); !reflect.DeepEqual(got, want) {
			fail("Routes differ")
		}
		fwd := res.resolved()
		for range 64 {
			a := g.addr(g.r.IntN(3) == 0)
			h := g.r.Uint32()
			gh, gok := f.LookupFlow(a, h)
			wh, wok := lookupIn(fwd, a, h)
			if gh != wh || gok != wok {
				fail("LookupFlow(%s, %d) = %v %v, reference %v %v", a, h, gh, gok, wh, wok)
			}
		}
		for p, hops := range fwd {
			if nh, ok := f.Lookup(p.Addr()); !ok || nh != hops[0] {
				// a longer resolved prefix may hold p.Addr()
				if wh, _ := lookupIn(fwd, p.Addr(), 0); nh != wh {
					fail("Lookup(%s) = %v %v, want %v", p.Addr(), nh, ok, wh)
				}
			}
		}
		st := f.Stats()
		unres := 0
		for _, v := range res.values {
			if len(v.hops) == 0 {
				unres++
			}
		}
		if st.Paths != len(routesOf(ref)) || st.Prefixes4+st.Prefixes6 != len(ref.routes) || st.Unresolved != unres {
			fail("Stats = %+v; reference paths %d prefixes %d unresolved %d", st, len(routesOf(ref)), len(ref.routes), unres)
		}
		for {
			u, ok, err := sub.TryNext()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			fs = fs.apply(t, u)
		}
		if !reflect.DeepEqual(map[netip.Prefix][]NextHop(fs), fwd) && !(len(fs) == 0 && len(fwd) == 0) {
			fail("feed state differs from forwarding table: feed %v, reference %v", fs, fwd)
		}
	}
}

func TestDifferential(t *testing.T) {
	steps := 3000
	if testing.Short() {
		steps = 500
	}
	cases := []struct {
		name string
		opts []Option
	}{
		{"default", nil},
		{"multipath", []Option{WithMultipath(true)}},
		{"shallow", []Option{WithMaxDepth(2)}},
		{"underlay", []Option{WithUnderlay(Underlay{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Port: 4500, Tunnel: 9})}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for seed := range uint64(4) {
				runDifferential(t, seed+1, steps, c.opts...)
			}
		})
	}
}

// FuzzApply decodes the input into batches of routes over a tiny address
// space and holds the FIB to the naive reference after every batch.
func FuzzApply(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	f.Add([]byte{0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x80, 0x21, 0x33, 0x43, 0x50, 0x05, 0xff, 0x00})
	f.Add([]byte("loops and next hops and endpoints"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 600 {
			return
		}
		mp := len(data) > 0 && data[0]&1 == 1
		fib := New(WithMultipath(mp), WithMaxDepth(3),
			WithUnderlay(Underlay{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Port: 4500}))
		ref := newNaive(newConfig([]Option{WithMultipath(mp), WithMaxDepth(3),
			WithUnderlay(Underlay{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Port: 4500})}))
		sub := fib.Subscribe()
		defer sub.Close()
		fs := feedState{}
		a := func(b byte) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, b & 0x3f}) }
		peers := []netip.Addr{{}, netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("2.2.2.2")}
		for len(data) >= 5 {
			n := 1 + int(data[0]>>5)
			var ops []Op
			for ; n > 0 && len(data) >= 5; n-- {
				b := data[:5]
				data = data[5:]
				r := Route{
					Prefix:    netip.PrefixFrom(a(b[1]), []int{26, 28, 30, 31, 32, 24, 16, 0}[b[2]&7]).Masked(),
					Peer:      peers[int(b[0]&3)%len(peers)],
					Source:    Source(1 + (b[2]>>3)%3),
					LocalPref: uint32(b[2] >> 6),
				}
				switch b[3] & 3 {
				case 0:
					r.Endpoint = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, b[3] >> 2}), 4500)
				case 1:
					r.NextHop = netip.AddrFrom4([4]byte{192, 0, 2, b[3] >> 2})
				default:
					r.NextHop = a(b[4])
				}
				ops = append(ops, Op{Route: r, Withdraw: b[0]&4 != 0})
			}
			if err := fib.Apply(ops); err != nil {
				continue
			}
			for _, op := range ops {
				if op.Withdraw {
					ref.withdraw(op.Route.Prefix, op.Route.Peer)
				} else {
					ref.upsert(op.Route)
				}
			}
			res := ref.resolve()
			var got []RouteStatus
			for st := range fib.Routes() {
				got = append(got, st)
			}
			if want := naiveStatus(res); !reflect.DeepEqual(got, want) {
				t.Fatalf("Routes differ\nFIB:\n%sreference:\n%s", fmtStatus(got), fmtStatus(want))
			}
			fwd := res.resolved()
			for i := range 64 {
				d := a(byte(i))
				gh, gok := fib.LookupFlow(d, uint32(i))
				wh, wok := lookupIn(fwd, d, uint32(i))
				if gh != wh || gok != wok {
					t.Fatalf("LookupFlow(%s) = %v %v, reference %v %v", d, gh, gok, wh, wok)
				}
			}
			for {
				u, ok, err := sub.TryNext()
				if err != nil || !ok {
					break
				}
				fs = fs.apply(t, u)
			}
			if len(fs)+len(fwd) > 0 && !reflect.DeepEqual(map[netip.Prefix][]NextHop(fs), fwd) {
				t.Fatalf("feed %v, reference %v", fs, fwd)
			}
		}
	})
}
