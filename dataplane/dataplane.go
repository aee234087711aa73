// Package dataplane defines the interface both daemons program the packet path
// through, and the state they program: ESP SAs. Where each packet goes comes
// from the routing FIB the backend was built with; the backend follows the
// FIB's changes itself.
//
// Backends live in subpackages: userspace (TUN plus ESP in Go, the default and
// the one that runs on kernels without ESP) and xfrm (the Linux kernel's IPsec
// through netlink).
package dataplane

import (
	"net/netip"

	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/routing"
)

// Direction says which way an SA is installed.
type Direction uint8

// Directions. An MPSA group SA is installed Both ways: every CPE sends and
// receives on the same SPI and keys.
const (
	In   Direction = 1 << iota // decrypt packets that arrive with this SPI
	Out                        // encrypt packets routed to this SA's tunnel
	Both = In | Out
)

// SA is one ESP SA as the daemon wants it installed.
type SA struct {
	Keys esp.Keys
	Dir  Direction

	// Tunnel is the routing.Tunnel whose packets this SA encrypts (Dir has
	// Out). At most one installed SA serves a tunnel outbound at a time;
	// during an MPSA rollover the old SA stays In only and keeps its
	// Tunnel, so a backend that accepts a tunnel's prefixes only through
	// that tunnel's SAs (xfrm) still accepts the packets still in flight.
	Tunnel routing.Tunnel

	// Peer is the fixed outer destination of a point-to-point SA (a
	// CHILD_SA): port 4500 means UDP encapsulation (RFC 3948), port 0 raw
	// ESP. It is zero for a group SA, whose outer destination is the
	// Endpoint of each packet's resolved route.
	Peer netip.AddrPort

	// Local is the outer source address; zero lets the backend choose.
	Local netip.Addr

	// Selectors restrict inbound inner packets: the inner source must be in
	// Remote and the inner destination in Local (RFC 4301 traffic
	// selectors). An empty list means any address.
	RemoteSelectors []netip.Prefix
	LocalSelectors  []netip.Prefix

	// ReplayWindow is the anti-replay window in packets (RFC 4303 §3.4.3);
	// 0 turns replay checking off (a group SA without Sender-IDs).
	ReplayWindow int

	// SenderIDBits > 0 marks a group SA with per-sender IV space (RFC 6054):
	// the high SenderIDBits of each IV carry the sender's ID and receivers
	// keep one replay window per Sender-ID. SenderID is ours, for outbound.
	SenderIDBits uint8
	SenderID     uint32
}

// State is everything a daemon wants installed. Set replaces the previous
// State as a whole.
type State struct {
	SAs []SA
}

// Backend is a data plane. Set may be called any number of times with the
// same State; it changes only what differs (idempotent). Backends copy what
// they keep: the caller may wipe the keys it passed once Set returns. Keys of
// SAs that disappear from the State are wiped by the backend.
// After Close, Set returns net.ErrClosed.
type Backend interface {
	Set(*State) error
	Stats() Stats
	Close() error
}

// Stats are the packet and drop counters a backend exports for metrics.
type Stats struct {
	TxPackets, TxBytes uint64
	RxPackets, RxBytes uint64
	// Drops counts dropped packets by reason (e.g. "unknown_spi",
	// "bad_icv", "replay", "bad_padding", "selector", "no_route", "malformed").
	Drops map[string]uint64
}
