package userspace

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// routeKey is a prefix as the backend's route table keeps it: two words
// of address (IPv4 in the low 32 bits of lo), the length and the family,
// without the pointer a netip.Addr carries, so that a table of 10,000
// routes is one pointer-free array the garbage collector does not scan.
// Keys order like netip.Prefix addresses (IPv4 first), then by length.
type routeKey struct {
	hi, lo uint64
	bits   uint8
	v6     bool
}

func keyOf(p netip.Prefix) routeKey {
	p = p.Masked()
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		return routeKey{lo: uint64(binary.BigEndian.Uint32(b[:])), bits: uint8(p.Bits())}
	}
	b := a.As16()
	return routeKey{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), bits: uint8(p.Bits()), v6: true}
}

func (k routeKey) prefix() netip.Prefix {
	if !k.v6 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(k.lo))
		return netip.PrefixFrom(netip.AddrFrom4(b), int(k.bits))
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.PrefixFrom(netip.AddrFrom16(b), int(k.bits))
}

func compareKeys(a, b routeKey) int {
	if a.v6 != b.v6 {
		if a.v6 {
			return 1
		}
		return -1
	}
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	if c := cmp.Compare(a.lo, b.lo); c != 0 {
		return c
	}
	return cmp.Compare(a.bits, b.bits)
}

// routeState is what the kernel has for a prefix the backend wants
// through the TUN.
type routeState uint8

const (
	routeWanted  routeState = iota // not added (yet): the next sync tries
	routeOurs                      // our route (protocol 252) is in the kernel
	routeForeign                   // the kernel routes the prefix otherwise: left alone
	routeRecheck                   // routeForeign, to be tried again (the other route may be gone)
)

// kroute is one entry of the route table: a routeKey's fields and the
// state, 24 octets.
type kroute struct {
	hi, lo uint64
	bits   uint8
	v6     bool
	st     routeState
	seen   bool // scratch of a verify: the kernel listed the route
}

func newKroute(k routeKey) kroute { return kroute{hi: k.hi, lo: k.lo, bits: k.bits, v6: k.v6} }

func (e *kroute) key() routeKey { return routeKey{hi: e.hi, lo: e.lo, bits: e.bits, v6: e.v6} }

// routeOp is one change of the set of prefixes wanted through the TUN.
type routeOp struct {
	routeKey
	add bool
}

// routeTable is the set of prefixes wanted through the TUN, sorted by
// key, each with its kernel state: the backend's whole mirror of the
// kernel routes (24 octets a prefix).
type routeTable struct {
	r []kroute
}

// find returns the index of k, and whether it is there.
func (t *routeTable) find(k routeKey) (int, bool) {
	return slices.BinarySearchFunc(t.r, k, func(e kroute, k routeKey) int { return compareKeys(e.key(), k) })
}

// sortOps sorts ops by key and keeps the last op of each key, in place.
func sortOps(ops []routeOp) []routeOp {
	slices.SortStableFunc(ops, func(a, b routeOp) int { return compareKeys(a.routeKey, b.routeKey) })
	out := ops[:0]
	for i, op := range ops {
		if i+1 < len(ops) && ops[i+1].routeKey == op.routeKey {
			continue
		}
		out = append(out, op)
	}
	return out
}

// apply changes the set by ops, sorted by sortOps: an add keeps an entry
// (with its state) or inserts it as wanted, a removal takes it out; with
// replace, entries without an op are taken out too, so the set becomes
// exactly ops' additions. It calls gone for each entry taken out, before
// the table changes. It works in place: two passes over the table, no
// allocation but the growth of the table.
func (t *routeTable) apply(ops []routeOp, replace bool, gone func(kroute)) {
	// Forward: take out what leaves, count what comes in.
	adds, matched := 0, 0
	for _, op := range ops {
		if op.add {
			adds++
		}
	}
	w, j := 0, 0
	for _, e := range t.r {
		k := e.key()
		for j < len(ops) && compareKeys(ops[j].routeKey, k) < 0 {
			j++
		}
		keep := !replace
		if j < len(ops) && ops[j].routeKey == k {
			keep = ops[j].add
			if keep {
				matched++
			}
			j++
		}
		if !keep {
			gone(e)
			continue
		}
		t.r[w] = e
		w++
	}
	clear(t.r[w:])
	t.r = t.r[:w]
	inserts := adds - matched
	if inserts == 0 {
		return
	}
	// Backward: merge the new entries in from the end.
	n := len(t.r)
	t.r = slices.Grow(t.r, inserts)[:n+inserts]
	i, w := n-1, n+inserts-1
	for j := len(ops) - 1; j >= 0; {
		op := ops[j]
		if !op.add {
			j--
			continue
		}
		if i >= 0 {
			if c := compareKeys(t.r[i].key(), op.routeKey); c > 0 {
				t.r[w] = t.r[i]
				i, w = i-1, w-1
				continue
			} else if c == 0 {
				j-- // already there, keeps its state
				continue
			}
		}
		t.r[w] = newKroute(op.routeKey)
		w, j = w-1, j-1
	}
}
