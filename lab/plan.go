package lab

import (
	"fmt"
	"net/netip"
	"strings"
)

// Prefix starts the name of every namespace a lab creates.
const Prefix = "mpsalab-"

// Addressing and naming of a lab.
const (
	// MaxCPEs bounds the CPEs of one lab (addresses are derived from the
	// index, 1..MaxCPEs).
	MaxCPEs = 50
	// GroupName is the MPSA group every lab CPE belongs to.
	GroupName = "lab"
	// HubIdentity is the hub's IKE identity.
	HubIdentity = "fqdn:hub.lab"
	// HubRouterID is the route reflector's BGP identifier.
	HubRouterID = "192.0.2.254"
	// MaxNameLen bounds a lab's name.
	MaxNameLen = 24
)

// Family is an IP address family.
type Family uint8

// Families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// ParseFamily reads "v4", "4", "ipv4" (and likewise for IPv6).
func ParseFamily(s string) (Family, error) {
	switch strings.ToLower(s) {
	case "v4", "4", "ipv4", "inet":
		return IPv4, nil
	case "v6", "6", "ipv6", "inet6":
		return IPv6, nil
	}
	return 0, fmt.Errorf("lab: unknown address family %q (expected v4 or v6)", s)
}

// FamilyOf returns the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return IPv4
	}
	return IPv6
}

// validName reports whether s can name a lab: lower-case letters and
// digits, at most MaxNameLen. No '-': it separates the lab's name from the
// node's in namespace names, so that one lab's prefix never matches
// another's.
func validName(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// underlayPrefix is the underlay segment of a family.
func underlayPrefix(f Family) netip.Prefix {
	if f == IPv6 {
		return netip.MustParsePrefix("2001:db8::/64")
	}
	return netip.MustParsePrefix("192.0.2.0/24")
}

// hubWAN is the hub's underlay address.
func hubWAN(f Family) netip.Addr {
	if f == IPv6 {
		return netip.MustParseAddr("2001:db8::254")
	}
	return netip.MustParseAddr("192.0.2.254")
}

// cpeWAN is CPE i's underlay address; alt selects the second one a test
// moves it to (a DHCP renewal with a new lease).
func cpeWAN(f Family, i int, alt bool) netip.Addr {
	if f == IPv6 {
		if alt {
			return netip.MustParseAddr(fmt.Sprintf("2001:db8::1:%x", i))
		}
		return netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i))
	}
	if alt {
		i += 100
	}
	return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
}

// lanPrefix is CPE i's LAN prefix of family f.
func lanPrefix(f Family, i int) netip.Prefix {
	if f == IPv6 {
		return netip.MustParsePrefix(fmt.Sprintf("fd01:%x::/64", i))
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 24)
}

// nthAddr returns the n-th address of p (n small).
func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for ; n > 0; n-- {
		a = a.Next()
	}
	return a
}

// Overlay address pools of the lab group.
var (
	pool4 = netip.MustParsePrefix("100.64.0.0/24")
	pool6 = netip.MustParsePrefix("fd00:64::/64")
)

// nsName is the namespace of node in lab name.
func nsName(lab, node string) string { return Prefix + lab + "-" + node }
