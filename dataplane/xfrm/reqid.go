package xfrm

import (
	"cmp"
	"maps"
	"slices"

	"github.com/mpsa-vpn/mpsa/routing"
)

// reqKey names what a reqid is given to: a tunnel, or (tunnel 0) the SPI
// of an SA installed without one.
type reqKey struct {
	tunnel routing.Tunnel
	spi    uint32
}

func (a reqKey) compare(b reqKey) int {
	if c := cmp.Compare(a.tunnel, b.tunnel); c != 0 {
		return c
	}
	return cmp.Compare(a.spi, b.spi)
}

// reqids hands out request IDs from a band: a key keeps its ID for as long
// as it is in use, and a freed ID comes back only after the rest of the
// band was used, so a new tunnel never inherits a stale object's ID.
type reqids struct {
	base, span uint32
	next       uint32 // offset of the next ID to try
	ids        map[reqKey]uint32
}

func newReqids(base, span uint32) *reqids {
	return &reqids{base: base, span: span, ids: make(map[reqKey]uint32)}
}

func (r *reqids) clone() *reqids {
	c := *r
	c.ids = maps.Clone(r.ids)
	return &c
}

// sync keeps the IDs of keys already known, frees the others and gives the
// new keys IDs in sorted order. It reports false when the band is full.
func (r *reqids) sync(keys map[reqKey]bool) bool {
	used := make(map[uint32]bool, len(keys))
	for k, id := range r.ids {
		if keys[k] {
			used[id] = true
		} else {
			delete(r.ids, k)
		}
	}
	var fresh []reqKey
	for k := range keys {
		if _, ok := r.ids[k]; !ok {
			fresh = append(fresh, k)
		}
	}
	if len(r.ids)+len(fresh) > int(r.span) {
		return false
	}
	slices.SortFunc(fresh, reqKey.compare)
	for _, k := range fresh {
		for used[r.base+r.next] {
			r.next = (r.next + 1) % r.span
		}
		id := r.base + r.next
		r.ids[k], used[id] = id, true
		r.next = (r.next + 1) % r.span
	}
	return true
}

func (r *reqids) get(k reqKey) uint32 { return r.ids[k] }

// owns reports whether id lies in the band.
func (r *reqids) owns(id uint32) bool { return id-r.base < r.span }
