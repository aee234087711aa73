package routing

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// members lists the prefixes that share one group's slot, packed: 8 bytes
// per IPv4 prefix, 24 per IPv6 prefix. Removal is lazy: a prefix that
// leaves goes into a small "gone" set (and comes out of it if it returns
// before the list is compacted), so the list is always exact once the gone
// set is subtracted. The list is compacted when it is walked, or when the
// gone set reaches half its size.
type members struct {
	v4    []uint64 // address<<8 | bits
	v6    []member6
	gone4 map[uint64]struct{}
	gone6 map[member6]struct{}
}

type member6 struct {
	hi, lo uint64
	bits   uint8
}

func key4(p netip.Prefix) uint64 {
	b := p.Addr().As4()
	return uint64(binary.BigEndian.Uint32(b[:]))<<8 | uint64(p.Bits())
}

func key6(p netip.Prefix) member6 {
	b := p.Addr().As16()
	return member6{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), bits: uint8(p.Bits())}
}

// add lists p, which must not be a member.
func (m *members) add(p netip.Prefix) {
	if p.Addr().Is4() {
		k := key4(p)
		if _, ok := m.gone4[k]; ok {
			delete(m.gone4, k)
			return
		}
		m.v4 = append(m.v4, k)
		return
	}
	k := key6(p)
	if _, ok := m.gone6[k]; ok {
		delete(m.gone6, k)
		return
	}
	m.v6 = append(m.v6, k)
}

// remove unlists p, which must be a member.
func (m *members) remove(p netip.Prefix) {
	if p.Addr().Is4() {
		if m.gone4 == nil {
			m.gone4 = make(map[uint64]struct{})
		}
		m.gone4[key4(p)] = struct{}{}
	} else {
		if m.gone6 == nil {
			m.gone6 = make(map[member6]struct{})
		}
		m.gone6[key6(p)] = struct{}{}
	}
	if g := m.goneLen(); g > 16 && 2*g > m.len() {
		m.compact()
	}
}

func (m *members) len() int     { return len(m.v4) + len(m.v6) }
func (m *members) goneLen() int { return len(m.gone4) + len(m.gone6) }

// live returns the number of members.
func (m *members) live() int { return m.len() - m.goneLen() }

// compact drops the entries of the gone set from the list.
func (m *members) compact() {
	if len(m.gone4) > 0 {
		m.v4 = slices.DeleteFunc(m.v4, func(k uint64) bool { _, ok := m.gone4[k]; return ok })
		m.v4 = slices.Clip(m.v4)
	}
	if len(m.gone6) > 0 {
		m.v6 = slices.DeleteFunc(m.v6, func(k member6) bool { _, ok := m.gone6[k]; return ok })
		m.v6 = slices.Clip(m.v6)
	}
	m.gone4, m.gone6 = nil, nil
}

// each calls fn for every member.
func (m *members) each(fn func(netip.Prefix)) {
	if m.goneLen() > 0 {
		m.compact()
	}
	for _, v := range m.v4 {
		fn(prefix4(v))
	}
	for _, v := range m.v6 {
		fn(v.prefix())
	}
}

func prefix4(v uint64) netip.Prefix {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(v>>8))
	return netip.PrefixFrom(netip.AddrFrom4(b), int(v&0xff))
}

func (v member6) prefix() netip.Prefix {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], v.hi)
	binary.BigEndian.PutUint64(b[8:], v.lo)
	return netip.PrefixFrom(netip.AddrFrom16(b), int(v.bits))
}
