package userspace

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"unsafe"
)

func TestRouteKey(t *testing.T) {
	ps := []string{"0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/24", "10.1.0.0/16", "192.0.2.0/24", "255.255.255.255/32",
		"::/0", "::ffff:10.0.0.0/104", "2001:db8::/32", "2001:db8::/64", "2001:db8:0:1::/64", "fd00::1/128"}
	var keys []routeKey
	for _, s := range ps {
		p := netip.MustParsePrefix(s)
		k := keyOf(p)
		if got := k.prefix(); got != p {
			t.Errorf("%v: back %v", p, got)
		}
		keys = append(keys, k)
	}
	if k := keyOf(netip.MustParsePrefix("10.1.2.3/16")); k.prefix().String() != "10.1.0.0/16" {
		t.Errorf("unmasked: %v", k.prefix())
	}
	// The order is netip's (address, then length), which is the routing
	// feed's order.
	for i := range keys {
		for j := range keys {
			a, b := keys[i].prefix(), keys[j].prefix()
			want := a.Addr().Compare(b.Addr())
			if want == 0 {
				want = a.Bits() - b.Bits()
			}
			if got := compareKeys(keys[i], keys[j]); sign(got) != sign(want) {
				t.Errorf("compare %v %v: %d, want %d", a, b, got, want)
			}
		}
	}
	if s := unsafe.Sizeof(kroute{}); s > 24 {
		t.Errorf("a table entry takes %d octets", s)
	}
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

// TestRouteTable checks apply against a map, with random ops over a small
// key space (so that adds meet present keys and removals absent ones) and
// random states that must survive.
func TestRouteTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() routeKey {
		if rng.IntN(4) == 0 {
			return keyOf(netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(32))}), 64+rng.IntN(2)*64))
		}
		return keyOf(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(rng.IntN(8)), byte(rng.IntN(16)), 0}), 24))
	}
	var tab routeTable
	ref := map[routeKey]routeState{}
	for round := range 3000 {
		n := rng.IntN(40)
		if round%50 == 0 {
			n = rng.IntN(400)
		}
		ops := make([]routeOp, n)
		for i := range ops {
			ops[i] = routeOp{routeKey: key(), add: rng.IntN(3) > 0}
		}
		replace := rng.IntN(10) == 0
		// The reference: the last op per key counts.
		next := map[routeKey]routeState{}
		if !replace {
			for k, st := range ref {
				next[k] = st
			}
		}
		last := map[routeKey]bool{}
		for _, op := range ops {
			last[op.routeKey] = op.add
		}
		for k, add := range last {
			if !add {
				delete(next, k)
				continue
			}
			if st, ok := ref[k]; ok {
				next[k] = st
			} else {
				next[k] = routeWanted
			}
		}
		wantGone := map[routeKey]bool{}
		for k := range ref {
			if _, ok := next[k]; !ok {
				wantGone[k] = true
			}
		}
		gone := map[routeKey]bool{}
		tab.apply(sortOps(ops), replace, func(e kroute) {
			if gone[e.key()] {
				t.Fatalf("round %d: %v gone twice", round, e.key().prefix())
			}
			if e.st != ref[e.key()] {
				t.Fatalf("round %d: %v gone with state %d, had %d", round, e.key().prefix(), e.st, ref[e.key()])
			}
			gone[e.key()] = true
		})
		if len(gone) != len(wantGone) {
			t.Fatalf("round %d: %d gone, want %d", round, len(gone), len(wantGone))
		}
		for k := range wantGone {
			if !gone[k] {
				t.Fatalf("round %d: %v not reported gone", round, k.prefix())
			}
		}
		if len(tab.r) != len(next) {
			t.Fatalf("round %d: %d entries, want %d", round, len(tab.r), len(next))
		}
		for i, e := range tab.r {
			if i > 0 && compareKeys(tab.r[i-1].key(), e.key()) >= 0 {
				t.Fatalf("round %d: not sorted at %d", round, i)
			}
			st, ok := next[e.key()]
			if !ok || st != e.st {
				t.Fatalf("round %d: %v state %d, want %d (%v)", round, e.key().prefix(), e.st, st, ok)
			}
			if j, ok := tab.find(e.key()); !ok || j != i {
				t.Fatalf("round %d: find %v: %d %v", round, e.key().prefix(), j, ok)
			}
		}
		// New states for the next round, as the kernel sync would set.
		ref = map[routeKey]routeState{}
		for i := range tab.r {
			tab.r[i].st = routeState(rng.IntN(4))
			ref[tab.r[i].key()] = tab.r[i].st
		}
	}
}

// TestRouteTableAllocs: a change that does not grow the table allocates
// nothing.
func TestRouteTableAllocs(t *testing.T) {
	var tab routeTable
	var ops []routeOp
	for i := range 10000 {
		ops = append(ops, routeOp{routeKey: keyOf(netip.PrefixFrom(netip.AddrFrom4([4]byte{44, byte(i >> 8), byte(i), 0}), 24)), add: true})
	}
	tab.apply(ops, true, func(kroute) {})
	if len(tab.r) != 10000 || !slices.IsSortedFunc(tab.r, func(a, b kroute) int { return compareKeys(a.key(), b.key()) }) {
		t.Fatalf("%d entries", len(tab.r))
	}
	flip := []routeOp{{routeKey: ops[5000].routeKey}}
	n := testing.AllocsPerRun(50, func() {
		flip[0].add = !flip[0].add
		tab.apply(flip, false, func(kroute) {})
	})
	if n != 0 {
		t.Fatalf("%v allocations per change", n)
	}
}
