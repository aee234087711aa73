package xfrm

import (
	"errors"
	"log/slog"
	"net/netip"

	"github.com/mpsa-vpn/mpsa/routing"
)

// Implementation constants.
const (
	// DefaultReqIDBase starts the band of request IDs the backend gives
	// tunnels ("mp" in the high octets, clear of strongSwan's low numbers).
	DefaultReqIDBase = 0x6d700000
	// ReqIDSpan is the size of the reqid band.
	ReqIDSpan = 1 << 16

	// DefaultPriorityBase starts the band of policy priorities.
	DefaultPriorityBase = 0x6d7000
	// PrioritySpan is the size of the priority band: one value per
	// prefix length 0-128.
	PrioritySpan = 129

	// DefaultEncapPort is the UDP port of ESP-in-UDP (RFC 3948) when a
	// local endpoint does not name one.
	DefaultEncapPort = 4500

	// MaxReplayWindow is the largest anti-replay window the kernel keeps
	// for an SA without extended sequence numbers.
	MaxReplayWindow = 32
)

// ErrSenderID is returned by Set for an SA with Sender-IDs (RFC 6054),
// which the kernel's IV generators cannot produce.
var ErrSenderID = errors.New("xfrm: the kernel cannot send Sender-ID IVs (RFC 6054); use the userspace backend for this group")

// Routes is the FIB the backend follows: a *routing.FIB. The backend takes
// the first next hop of each forwarding entry; multipath needs the
// userspace backend (an XFRM policy leads to one endpoint).
type Routes interface {
	Subscribe() *routing.Subscription
}

// Config configures a Backend.
type Config struct {
	// Netns is the network namespace to program: a name under /run/netns
	// or a path (/proc/PID/ns/net). Empty means the caller's namespace.
	Netns string

	// Routes is the FIB whose entries become policies. Nil means no
	// routes: only the SAs of each State are installed.
	Routes Routes

	// Endpoints are this node's own ESP endpoints as packets arrive at
	// them (local addresses, after any NAT), at most one per family.
	// Group SAs are received there; a port makes the inbound states
	// expect ESP-in-UDP on that port, port 0 raw ESP. The address of the
	// outer packets' family is also the outer source of outbound states;
	// without one, the backend asks the kernel's routing table.
	Endpoints []netip.AddrPort

	// Bypass prefixes never go through a tunnel, even when a tunnelled
	// prefix covers them (e.g. fe80::/10 under a remote ::/0).
	Bypass []netip.Prefix

	// ReqIDBase and PriorityBase place the backend's bands; zero means
	// the defaults.
	ReqIDBase    uint32
	PriorityBase uint32

	// Logger receives the backend's logs (component "dataplane"); nil
	// means slog.Default().
	Logger *slog.Logger

	// Applied, if set, is called after every reconciliation the backend
	// runs on its own (after a FIB update), with its result. Tests wait on
	// it; daemons may export it. It runs on the backend's goroutine: it
	// must return quickly and must not call the Backend.
	Applied func(error)
}

func (c *Config) reqIDBase() uint32 {
	if c.ReqIDBase == 0 {
		return DefaultReqIDBase
	}
	return c.ReqIDBase
}

func (c *Config) priorityBase() uint32 {
	if c.PriorityBase == 0 {
		return DefaultPriorityBase
	}
	return c.PriorityBase
}
