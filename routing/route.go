package routing

import (
	"fmt"
	"net/netip"
)

// Tunnel names the outbound SA that carries a route's packets. It is opaque to
// routing: the daemon that inserts a route chooses it (the group SA's tunnel
// for routes learned over BGP, the CHILD_SA's tunnel for the hub's overlay
// address), and the data plane maps it to an installed SA. Zero means "no
// tunnel": the route is delivered locally or through the underlay.
type Tunnel uint32

// Source says where a route came from. It orders best-path selection before
// any other attribute (see Best path in the package doc).
type Source uint8

// Route sources, in order of preference.
const (
	SourceConnected Source = iota + 1 // an address on this node (delivered locally)
	SourceStatic                      // configured, e.g. the route to the hub's overlay address
	SourceBGP                         // learned from the route reflector
)

func (s Source) String() string {
	switch s {
	case SourceConnected:
		return "connected"
	case SourceStatic:
		return "static"
	case SourceBGP:
		return "bgp"
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

// Route is one path to a prefix, as BGP (or configuration) gave it.
// A route is identified by (Prefix, Peer): one peer has at most one path per
// prefix, several peers may advertise the same prefix (a dual-homed site).
type Route struct {
	Prefix netip.Prefix // masked; the FIB rejects an unmasked or invalid prefix

	// NextHop is the BGP NEXT_HOP. Without an Endpoint the route resolves
	// recursively through the FIB entry covering NextHop (RFC 5565 model).
	NextHop netip.Addr

	// Endpoint is the ESP tunnel endpoint from the Tunnel Encapsulation
	// attribute (RFC 9012: Tunnel Egress Endpoint sub-TLV, UDP Destination
	// Port sub-TLV; port 0 = raw ESP). Zero when the attribute was absent.
	Endpoint netip.AddrPort

	// Tunnel is the outbound SA that carries packets resolved through this
	// route's endpoint.
	Tunnel Tunnel

	// Peer is the advertising BGP peer (its router ID or session address);
	// zero for static and connected routes.
	Peer netip.Addr

	Source    Source
	LocalPref uint32 // BGP LOCAL_PREF; higher is preferred
}

// NextHop is where a packet goes once its route is resolved: the ESP endpoint
// and the tunnel whose SA encrypts it, or local delivery.
// The zero value means "no route".
type NextHop struct {
	Endpoint netip.AddrPort // outer destination; port 0 means raw ESP (IP protocol 50)
	Tunnel   Tunnel
	Local    bool // deliver locally (connected route): no encapsulation
}
