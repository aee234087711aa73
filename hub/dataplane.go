package hub

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/dataplane/xfrm"
)

// openDataplane builds the data plane the configuration (or WithDataplane)
// names. The hub's overlay addresses go on its device: the userspace
// backend's TUN, or for XFRM a dummy interface of the same name (the kernel
// then routes the pools there and the XFRM policies encrypt).
func (h *Hub) openDataplane(cfg *configs.Hub) error {
	addrs := h.pools.hubAddrs()
	if h.opts.dataplane != nil {
		dp, err := h.opts.dataplane(h.fib, addrs)
		if err != nil {
			return fmt.Errorf("hub: data plane: %w", err)
		}
		h.dp = dp
		if n, ok := dp.(interface{ TUNName() string }); ok {
			h.tun = tunAddrs{name: n.TUNName(), have: addrSet(addrs)}
		}
		return nil
	}
	backend := cfg.Dataplane.Backend
	if backend == configs.BackendAuto {
		backend = configs.BackendUserspace
		if err := xfrm.Probe(""); err == nil {
			backend = configs.BackendXFRM
		} else {
			h.log.Info("kernel ESP unavailable, userspace data plane", "reason", err.Error())
		}
	}
	switch backend {
	case configs.BackendXFRM:
		if err := h.tun.createDummy(cfg.Dataplane.TUN.Name, cfg.Dataplane.TUN.MTU); err != nil {
			return err
		}
		if err := h.tun.sync(addrs); err != nil {
			return err
		}
		dp, err := xfrm.New(xfrm.Config{Routes: h.fib, Logger: h.root})
		if err != nil {
			return fmt.Errorf("hub: data plane: %w", err)
		}
		h.dp = dp
		h.opts.prepareNATT = func(c *net.UDPConn) error { return xfrm.PrepareIKESocket(c) }
		return nil
	default:
		natt := cfg.IKE.NATTPort
		if h.opts.ports != nil {
			natt = h.opts.ports[1]
		}
		var conns []userspace.Conn
		fail := func(err error) error {
			for _, c := range conns {
				c.Close()
			}
			return fmt.Errorf("hub: data plane: %w", err)
		}
		for _, a := range cfg.IKE.Listen {
			c, err := userspace.ListenUDP(netip.AddrPortFrom(a, natt))
			if err != nil {
				if a.IsUnspecified() && a.Is6() && len(conns) > 0 {
					h.log.Warn("no IPv6 ESP-in-UDP socket", "err", err)
					continue
				}
				return fail(err)
			}
			conns = append(conns, c)
		}
		for _, a := range cfg.IKE.Listen {
			c, err := userspace.ListenESP(a)
			if err != nil {
				if a.IsUnspecified() && a.Is6() {
					continue
				}
				return fail(fmt.Errorf("raw ESP socket (CPEs not behind a NAT send raw ESP): %w", err))
			}
			conns = append(conns, c)
		}
		dp, err := userspace.New(userspace.Config{FIB: h.fib, TUNName: cfg.Dataplane.TUN.Name, MTU: cfg.Dataplane.TUN.MTU,
			Addresses: addrs, Conns: conns, Logger: h.root})
		if err != nil {
			return fail(err)
		}
		h.dp = dp
		h.tun = tunAddrs{name: dp.TUNName(), have: addrSet(addrs)}
		return nil
	}
}

func addrSet(ps []netip.Prefix) map[netip.Prefix]bool {
	m := make(map[netip.Prefix]bool, len(ps))
	for _, p := range ps {
		m[p] = true
	}
	return m
}

// tunAddrs keeps the hub's overlay addresses on its kernel device as
// groups come and go. The zero value (no device) does nothing.
type tunAddrs struct {
	name  string
	dummy bool // created by the hub (XFRM): deleted on close
	have  map[netip.Prefix]bool
}

func (t *tunAddrs) createDummy(name string, mtu int) error {
	if l, err := netlink.LinkByName(name); err == nil {
		if _, ok := l.(*netlink.Dummy); !ok {
			return fmt.Errorf("hub: interface %s exists and is not a dummy interface", name)
		}
		netlink.LinkDel(l)
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = name, mtu
	d := &netlink.Dummy{LinkAttrs: la}
	if err := netlink.LinkAdd(d); err != nil {
		return fmt.Errorf("hub: interface %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(d); err != nil {
		netlink.LinkDel(d)
		return fmt.Errorf("hub: interface %s: %w", name, err)
	}
	t.name, t.dummy, t.have = name, true, map[netip.Prefix]bool{}
	return nil
}

// sync makes the device's addresses (among those the hub put there) want.
func (t *tunAddrs) sync(want []netip.Prefix) error {
	if t.name == "" {
		return nil
	}
	link, err := netlink.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("hub: interface %s: %w", t.name, err)
	}
	var errs []error
	w := addrSet(want)
	for p := range w {
		if t.have[p] {
			continue
		}
		a := &netlink.Addr{IPNet: prefixNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, a); err != nil {
			errs = append(errs, fmt.Errorf("hub: address %v on %s: %w", p, t.name, err))
			continue
		}
		t.have[p] = true
	}
	for p := range t.have {
		if w[p] {
			continue
		}
		if err := netlink.AddrDel(link, &netlink.Addr{IPNet: prefixNet(p)}); err != nil {
			errs = append(errs, fmt.Errorf("hub: address %v on %s: %w", p, t.name, err))
			continue
		}
		delete(t.have, p)
	}
	return errors.Join(errs...)
}

func (t *tunAddrs) close() {
	if t.dummy {
		if l, err := netlink.LinkByName(t.name); err == nil {
			netlink.LinkDel(l)
		}
	}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
