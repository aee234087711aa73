package xfrm

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/transform"
)

// Conversion of the backend's objects to netlink messages, and rendering of
// netlink objects (ours, or the kernel's as read back) as text without key
// material, ip-xfrm style, for golden tests and the VM checks.

// kernelAlgos names the kernel's algorithms for an ESP suite (the names
// strongSwan and iproute2 use). The key slices are k's own: they are not
// copied.
func kernelAlgos(k *esp.Keys) (aead, crypt, auth *netlink.XfrmStateAlgo, err error) {
	s := k.Suite
	switch s.Encr {
	case transform.EncrAESGCM16:
		return &netlink.XfrmStateAlgo{Name: "rfc4106(gcm(aes))", Key: k.EncKey, ICVLen: 128}, nil, nil, nil
	case transform.EncrChaCha20Poly1305:
		return &netlink.XfrmStateAlgo{Name: "rfc7539esp(chacha20,poly1305)", Key: k.EncKey, ICVLen: 128}, nil, nil, nil
	case transform.EncrAESCBC:
		crypt = &netlink.XfrmStateAlgo{Name: "cbc(aes)", Key: k.EncKey}
	default:
		return nil, nil, nil, fmt.Errorf("xfrm: SA %08x: no kernel cipher for %v", k.SPI, s)
	}
	var name string
	switch s.Integ {
	case transform.IntegHMACSHA196:
		name = "hmac(sha1)"
	case transform.IntegHMACSHA256128:
		name = "hmac(sha256)"
	case transform.IntegHMACSHA384192:
		name = "hmac(sha384)"
	case transform.IntegHMACSHA512256:
		name = "hmac(sha512)"
	default:
		return nil, nil, nil, fmt.Errorf("xfrm: SA %08x: no kernel integrity algorithm for %v", k.SPI, s)
	}
	icv, err := s.Integ.ICVLen()
	if err != nil {
		return nil, nil, nil, err
	}
	return nil, crypt, &netlink.XfrmStateAlgo{Name: name, Key: k.IntegKey, TruncateLen: icv * 8}, nil
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// netlinkState builds the netlink message for s. It holds s.keys' slices.
func netlinkState(s *kstate) (*netlink.XfrmState, error) {
	aead, crypt, auth, err := kernelAlgos(s.keys)
	if err != nil {
		return nil, err
	}
	x := &netlink.XfrmState{
		Dst: s.dst.AsSlice(), Src: s.src.AsSlice(),
		Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL,
		Spi: int(s.spi), Reqid: int(s.reqid), ReplayWindow: int(s.replay),
		Aead: aead, Crypt: crypt, Auth: auth,
	}
	if s.encap != (encap{}) {
		x.Encap = &netlink.XfrmStateEncap{Type: netlink.XFRM_ENCAP_ESPINUDP, SrcPort: int(s.encap.sport), DstPort: int(s.encap.dport)}
	}
	if s.sel != (selector{}) {
		x.Selector = &netlink.XfrmPolicy{Src: ipnet(s.sel.src), Dst: ipnet(s.sel.dst)}
	}
	return x, nil
}

// netlinkStateID is enough of a state to get or delete it.
func netlinkStateID(id stateID) *netlink.XfrmState {
	return &netlink.XfrmState{Dst: id.dst.AsSlice(), Proto: netlink.XFRM_PROTO_ESP, Spi: int(id.spi)}
}

func netlinkPolicy(p kpolicy) *netlink.XfrmPolicy {
	x := &netlink.XfrmPolicy{Src: ipnet(p.src), Dst: ipnet(p.dst), Dir: netlink.Dir(p.dir), Priority: int(p.prio)}
	if p.block {
		x.Action = netlink.XFRM_POLICY_BLOCK
	}
	if p.tmpl.ok() {
		x.Tmpls = []netlink.XfrmPolicyTmpl{{
			Src: p.tmpl.src.AsSlice(), Dst: p.tmpl.dst.AsSlice(),
			Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL, Reqid: int(p.tmpl.reqid),
		}}
	}
	return x
}

// addrOf converts an address from netlink to the given family. Netlink
// reads an IPv6 address whose last 12 octets are zero back as an IPv4
// address; knowing the family undoes that.
func addrOf(ip net.IP, is4 bool) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	if is4 {
		return a.Unmap()
	}
	if a.Is4In6() || a.Is4() {
		var b [16]byte
		v4 := a.Unmap().As4()
		copy(b[:4], v4[:])
		return netip.AddrFrom16(b)
	}
	return a
}

func prefixOf(n *net.IPNet, is4 bool) netip.Prefix {
	if n == nil {
		return anyPrefix(is4)
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(addrOf(n.IP, is4), ones)
}

func ipIs4(ip net.IP) bool { return ip.To4() != nil }

// renderState writes a state on one line, without key material:
//
//	state spi 0x00001001 src 0.0.0.0 dst 192.0.2.1 reqid 0x6d700000 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
//
// is4 is the family of the outer addresses.
func renderState(x *netlink.XfrmState, is4 bool) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "state spi 0x%08x src %v dst %v reqid %#x", uint32(x.Spi), addrOf(x.Src, is4), addrOf(x.Dst, is4), x.Reqid)
	if x.Mode != netlink.XFRM_MODE_TUNNEL || x.Proto != netlink.XFRM_PROTO_ESP {
		fmt.Fprintf(&sb, " %v %v", x.Proto, x.Mode)
	}
	fmt.Fprintf(&sb, " replay %d", x.ReplayWindow)
	if a := x.Aead; a != nil {
		fmt.Fprintf(&sb, " aead %s %d icv %d", a.Name, len(a.Key)*8, a.ICVLen)
	}
	if a := x.Crypt; a != nil {
		fmt.Fprintf(&sb, " enc %s %d", a.Name, len(a.Key)*8)
	}
	if a := x.Auth; a != nil {
		fmt.Fprintf(&sb, " auth %s %d trunc %d", a.Name, len(a.Key)*8, a.TruncateLen)
	}
	if e := x.Encap; e != nil {
		fmt.Fprintf(&sb, " encap %v %d %d", e.Type, e.SrcPort, e.DstPort)
	}
	sel := "any"
	if s := x.Selector; s != nil {
		// The kernel reports the family of a state's selector only
		// through its addresses; an empty one is AF_UNSPEC.
		sis4 := s.Dst == nil || ipIs4(s.Dst.IP)
		src, dst := prefixOf(s.Src, sis4), prefixOf(s.Dst, sis4)
		if src.Bits() != 0 || dst.Bits() != 0 || !src.Addr().IsUnspecified() || !dst.Addr().IsUnspecified() {
			sel = fmt.Sprintf("src %v dst %v", src, dst)
		}
	}
	fmt.Fprintf(&sb, " sel %s", sel)
	return sb.String()
}

// renderPolicy writes a policy on one line:
//
//	policy out src 0.0.0.0/0 dst 10.2.0.0/24 prio 7172104 tmpl src 192.0.2.1 dst 192.0.2.2 reqid 0x6d700000
//
// or with "allow" or "block" instead of a template. is4 is the selector's
// family.
func renderPolicy(x *netlink.XfrmPolicy, is4 bool) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "policy %v src %v dst %v prio %d", pdir(x.Dir), prefixOf(x.Src, is4), prefixOf(x.Dst, is4), x.Priority)
	switch {
	case x.Action == netlink.XFRM_POLICY_BLOCK:
		sb.WriteString(" block")
	case len(x.Tmpls) == 0:
		sb.WriteString(" allow")
	}
	for _, t := range x.Tmpls {
		t4 := ipIs4(t.Dst)
		fmt.Fprintf(&sb, " tmpl src %v dst %v reqid %#x", addrOf(t.Src, t4), addrOf(t.Dst, t4), t.Reqid)
		if t.Mode != netlink.XFRM_MODE_TUNNEL || t.Proto != netlink.XFRM_PROTO_ESP || t.Spi != 0 {
			fmt.Fprintf(&sb, " %v %v spi %#x", t.Proto, t.Mode, t.Spi)
		}
	}
	return sb.String()
}

// renderDesired renders the objects d asks for, states first, sorted.
func renderDesired(d *desired) (string, error) {
	var lines []string
	for _, s := range d.states {
		x, err := netlinkState(s)
		if err != nil {
			return "", err
		}
		lines = append(lines, renderState(x, s.dst.Is4()))
	}
	slices.Sort(lines)
	var pols []string
	for id, p := range d.policies {
		pols = append(pols, renderPolicy(netlinkPolicy(kpolicy{id, p}), id.dst.Addr().Is4()))
	}
	slices.Sort(pols)
	return joinLines(append(lines, pols...)), nil
}

// renderPlan renders the changes of p in the order they are applied.
func renderPlan(p *plan) (string, error) {
	var lines []string
	for _, group := range []struct {
		mark string
		s    []*kstate
	}{{"~", p.replace}, {"+", p.addStates}} {
		for _, s := range group.s {
			x, err := netlinkState(s)
			if err != nil {
				return "", err
			}
			lines = append(lines, group.mark+renderState(x, s.dst.Is4()))
		}
	}
	for _, pol := range p.policies {
		lines = append(lines, "+"+renderPolicy(netlinkPolicy(pol), pol.dst.Addr().Is4()))
	}
	for _, id := range p.delPolicies {
		lines = append(lines, fmt.Sprintf("-policy %v src %v dst %v", id.dir, id.src, id.dst))
	}
	for _, id := range p.delStates {
		lines = append(lines, fmt.Sprintf("-state spi 0x%08x dst %v", id.spi, id.dst))
	}
	return joinLines(lines), nil
}

func joinLines(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}
