package cpe

import (
	"context"
	"errors"
	"net/netip"
	"syscall"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/ike"
)

// Dataplane is a data plane as the CPE drives it: the backend plus what the
// CPE must know to share sockets with it and to reach the hub through it.
type Dataplane struct {
	// Backend is programmed with Set after every change.
	Backend dataplane.Backend
	// Name says which backend it is, for logs and status ("userspace",
	// "xfrm", or what a test calls it).
	Name string
	// NATT, when set, returns a new conn on the port-4500 sockets IKE
	// shares with the backend (the userspace backend owns them), for one
	// IKE engine: it reports the local address of each datagram and sends
	// from a chosen one (an ike.SourceAddrConn, so NAT detection hashes
	// real addresses); its Close ends only that conn. nil: IKE opens its
	// own port-4500 sockets.
	NATT func() (ike.Conn, error)
	// PrepareIKESocket, when set, is applied to IKE's own port-4500 sockets
	// (the xfrm backend: UDP_ENCAP_ESPINUDP and bypass policies).
	PrepareIKESocket func(syscall.Conn) error
	// Interface is the device the CPE puts its overlay addresses on; empty
	// leaves them off (in-memory tests).
	Interface string
	// BindDevice, when set, is the device the BGP connection to the hub is
	// bound to (SO_BINDTODEVICE), so it can only leave through the tunnel.
	BindDevice string
	// RawESP reports that the backend receives raw ESP (IP protocol 50).
	RawESP bool
	// Run, when set, runs alongside the CPE until its context ends (the
	// userspace backend's FollowRoutes).
	Run func(ctx context.Context) error
	// SetEndpoints, when set, is given this node's ESP endpoints whenever
	// they change (the xfrm backend's inbound group SA states need them).
	SetEndpoints func([]netip.AddrPort) error
	// Ready, when set, reports whether packets to hub (the hub's overlay
	// address) go through the tunnel yet, so the BGP connection is never
	// sent around it (the xfrm backend follows the FIB asynchronously).
	Ready func(hub netip.Prefix) bool
}

// errNoBackend: a backend was named that this binary was built without.
var errNoBackend = errors.New("cpe: data plane backend left out of this build")

// buildDataplane chooses and starts the configured backend.
func (c *CPE) buildDataplane(ctx context.Context, cfg *configs.CPE) (*Dataplane, error) {
	env := DataplaneEnv{FIB: c.fib, Config: cfg, Logger: c.base, Netns: c.o.netns, InNetns: c.inNetns,
		Buffers: c.o.buffers.withDefaults(), Changed: c.dataplaneChanged}
	if c.o.dataplane != nil {
		return c.o.dataplane(env)
	}
	switch cfg.Dataplane.Backend {
	case configs.BackendUserspace:
		return newUserspace(env)
	case configs.BackendXFRM:
		return newXFRM(env)
	}
	// auto: the kernel's ESP when it has it.
	err := probeXFRM(c.o.netns)
	if err == nil {
		c.log.Info("data plane: the kernel has ESP, using xfrm", "state", "xfrm")
		dp, err := newXFRM(env)
		if err == nil {
			return dp, nil
		}
		c.log.Warn("data plane: xfrm failed, using userspace", "err", err)
	} else {
		c.log.Info("data plane: using userspace", "reason", err.Error(), "state", "userspace")
	}
	return newUserspace(env)
}

// dataplaneChanged wakes routineMain when the data plane may have become
// ready for the tunnel to the hub while that tunnel waits for it.
func (c *CPE) dataplaneChanged() {
	c.mu.Lock()
	waiting := c.sa != nil && !c.tunnel.up
	c.mu.Unlock()
	if waiting {
		c.kick()
	}
}

// rawESPFor reports whether the configuration wants raw ESP sockets.
func rawESPFor(cfg *configs.CPE) bool { return cfg.WAN.Encapsulation != configs.EncapUDP }
