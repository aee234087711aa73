package xfrm

import (
	"bytes"
	"cmp"
	"fmt"
	"net/netip"

	"github.com/mpsa-vpn/mpsa/esp"
)

// The backend's own description of the XFRM objects it wants: comparable
// values keyed the way the kernel keys them, turned into netlink messages
// only when applied.

// encap is the UDP encapsulation of a state (RFC 3948); zero means raw ESP.
type encap struct{ sport, dport uint16 }

// selector restricts the inner addresses of a state; zero means any
// (the kernel's AF_UNSPEC selector).
type selector struct{ src, dst netip.Prefix }

// stateID is how the kernel identifies a state (with protocol ESP).
type stateID struct {
	dst netip.Addr
	spi uint32
}

func (a stateID) String() string { return fmt.Sprintf("SPI %08x to %v", a.spi, a.dst) }

func (a stateID) compare(b stateID) int {
	if c := a.dst.Compare(b.dst); c != 0 {
		return c
	}
	return cmp.Compare(a.spi, b.spi)
}

// kstate is one tunnel-mode ESP state.
type kstate struct {
	stateID
	src    netip.Addr // outer source; the unspecified address for a group SA's inbound state
	reqid  uint32
	in     bool
	encap  encap
	replay uint32
	sel    selector
	keys   *esp.Keys // not owned: the SA's copy (desired) or the state's own (installed)
}

// same reports whether a and b install the same kernel state.
func (a *kstate) same(b *kstate) bool {
	return a.stateID == b.stateID && a.src == b.src && a.reqid == b.reqid && a.in == b.in &&
		a.encap == b.encap && a.replay == b.replay && a.sel == b.sel &&
		a.keys.Suite == b.keys.Suite && bytes.Equal(a.keys.EncKey, b.keys.EncKey) &&
		bytes.Equal(a.keys.IntegKey, b.keys.IntegKey)
}

// pdir is a policy direction, numbered as the kernel numbers them.
type pdir uint8

const (
	dirIn  pdir = 0
	dirOut pdir = 1
	dirFwd pdir = 2
)

func (d pdir) String() string {
	switch d {
	case dirIn:
		return "in"
	case dirOut:
		return "out"
	case dirFwd:
		return "fwd"
	}
	return "dir?"
}

// policyID is how the kernel identifies a policy (no marks, no interface IDs).
type policyID struct {
	dir      pdir
	src, dst netip.Prefix
}

func (a policyID) compare(b policyID) int {
	if c := cmp.Compare(a.dir, b.dir); c != 0 {
		return c
	}
	if c := comparePrefix(a.dst, b.dst); c != 0 {
		return c
	}
	return comparePrefix(a.src, b.src)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// tmpl is a policy's single ESP tunnel-mode template; a zero tmpl means the
// policy has none (an allow or block policy).
type tmpl struct {
	src, dst netip.Addr
	reqid    uint32
}

func (t tmpl) ok() bool { return t.dst.IsValid() }

// pval is what a policy says, apart from its identity; it is small enough
// for a map to keep inline.
type pval struct {
	prio  uint32
	block bool
	tmpl  tmpl
}

// kpolicy is one XFRM policy.
type kpolicy struct {
	policyID
	pval
}

func anyPrefix(is4 bool) netip.Prefix {
	if is4 {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

func anyAddr(is4 bool) netip.Addr {
	if is4 {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func maxBits(is4 bool) int {
	if is4 {
		return 32
	}
	return 128
}
