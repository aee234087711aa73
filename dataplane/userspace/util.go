package userspace

import (
	"net"
	"net/netip"
)

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// stripIPv4 returns where the payload of the IPv4 packet pkt (as a raw
// IPv4 socket hands it up) starts and how long it is; a malformed header
// yields length 0, which the inbound path drops as malformed.
func stripIPv4(pkt []byte) (off, n int) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return 0, 0
	}
	hl := int(pkt[0]&0x0f) * 4
	if hl < 20 || hl > len(pkt) {
		return 0, 0
	}
	return hl, len(pkt) - hl
}

func ipNetToPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}
