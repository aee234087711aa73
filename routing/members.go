package routing

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// members lists the prefixes that share one group's slot, packed: 8 bytes
// per IPv4 prefix, 24 per IPv6 prefix. Removal is lazy (a prefix that
// leaves only bumps stale); the list is compacted against the FIB when it is
// walked with stale entries, or when they make up half of it. A prefix that
// leaves and comes back may be listed twice until then: compaction removes
// duplicates.
type members struct {
	v4    []uint64 // address<<8 | bits
	v6    []member6
	stale int
}

type member6 struct {
	hi, lo uint64
	bits   uint8
}

func (m *members) add(p netip.Prefix) {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		v := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
		m.v4 = append(m.v4, v<<8|uint64(p.Bits()))
		return
	}
	b := a.As16()
	m.v6 = append(m.v6, member6{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), bits: uint8(p.Bits())})
}

func (m *members) len() int { return len(m.v4) + len(m.v6) }

// removed records that one listed prefix left.
func (m *members) removed() { m.stale++ }

// live returns the number of listed prefixes that are still members.
func (m *members) live() int { return m.len() - m.stale }

// needsCompaction reports whether stale entries make up half the list.
func (m *members) needsCompaction() bool { return m.stale > 32 && 2*m.stale > m.len() }

// compact drops duplicates and the entries keep rejects.
func (m *members) compact(keep func(netip.Prefix) bool) {
	slices.Sort(m.v4)
	m.v4 = slices.Compact(m.v4)
	m.v4 = slices.DeleteFunc(m.v4, func(v uint64) bool { return !keep(prefix4(v)) })
	slices.SortFunc(m.v6, func(a, b member6) int {
		return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo), cmp.Compare(a.bits, b.bits))
	})
	m.v6 = slices.Compact(m.v6)
	m.v6 = slices.DeleteFunc(m.v6, func(v member6) bool { return !keep(v.prefix()) })
	m.v4 = slices.Clip(m.v4)
	m.v6 = slices.Clip(m.v6)
	m.stale = 0
}

// each calls fn for every member; with stale entries it compacts first.
func (m *members) each(keep func(netip.Prefix) bool, fn func(netip.Prefix)) {
	if m.stale > 0 {
		m.compact(keep)
	}
	for _, v := range m.v4 {
		fn(prefix4(v))
	}
	for _, v := range m.v6 {
		fn(v.prefix())
	}
}

func prefix4(v uint64) netip.Prefix {
	a := uint32(v >> 8)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), int(v&0xff))
}

func (v member6) prefix() netip.Prefix {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], v.hi)
	binary.BigEndian.PutUint64(b[8:], v.lo)
	return netip.PrefixFrom(netip.AddrFrom16(b), int(v.bits))
}
