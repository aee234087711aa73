package cpe

import (
	"context"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/configs"
)

// wanResubscribe is how long routineWAN waits before subscribing again
// after the netlink subscription failed.
const wanResubscribe = time.Second

// routineWAN follows the kernel's address changes (RTM_NEWADDR and
// RTM_DELADDR) and marks the WAN for reevaluation after each.
func (c *CPE) routineWAN(ctx context.Context) {
	for ctx.Err() == nil {
		updates := make(chan netlink.AddrUpdate, 64)
		done := make(chan struct{})
		failed := make(chan struct{}, 1)
		err := c.inNetns(func() error {
			return netlink.AddrSubscribeWithOptions(updates, done, netlink.AddrSubscribeOptions{
				ErrorCallback: func(err error) {
					c.log.Warn("netlink address subscription", "err", err)
					signal(failed)
				},
			})
		})
		if err != nil {
			c.log.Error("cannot follow WAN address changes", "err", err)
		} else {
			c.followAddrs(ctx, updates, failed)
			close(done)
			for range updates { // drain until the subscription closes the channel
			}
		}
		t := make(chan struct{})
		stop := c.clock.AfterFunc(wanResubscribe, func() { close(t) })
		select {
		case <-ctx.Done():
		case <-t:
		}
		stop()
	}
}

// followAddrs reads address updates until ctx ends or the subscription
// fails; any change may move the IKE SA.
func (c *CPE) followAddrs(ctx context.Context, updates <-chan netlink.AddrUpdate, failed <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-failed:
			return
		case u, ok := <-updates:
			if !ok {
				return
			}
			if u.Scope == unix.RT_SCOPE_UNIVERSE {
				signal(c.wanDirty)
			}
		}
	}
}

// routineMOBIKE reevaluates the WAN address whenever it may have changed.
func (c *CPE) routineMOBIKE(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wanDirty:
			c.checkWAN(ctx)
		}
	}
}

// checkWAN moves the IKE SA (MOBIKE, RFC 4555 §3.5) when the address it
// uses is no longer the one to use: gone from the WAN interface, or no
// longer where the route to the hub leaves from. When no address of the
// hub's family is left, another configured hub address of the other family
// is tried. Without MOBIKE, or when the move fails, the CPE reconnects.
func (c *CPE) checkWAN(ctx context.Context) {
	c.mu.Lock()
	sa := c.sa
	info, ok := c.infos[sa]
	cfg := c.cfg
	c.mu.Unlock()
	if sa == nil || !ok {
		return
	}
	cur, remote := info.Local.Addr(), info.Remote
	want := c.pickLocal(cfg, remote.Addr())
	newRemote := remote
	if !want.IsValid() {
		for _, h := range cfg.Hubs {
			if h.Addr().Is4() == remote.Addr().Is4() {
				continue
			}
			if a := c.pickLocal(cfg, h.Addr()); a.IsValid() {
				want, newRemote = a, netip.AddrPortFrom(h.Addr(), remote.Port())
				break
			}
		}
	}
	if !want.IsValid() {
		c.log.Warn("no WAN address reaches the hub; waiting for one", "local", info.Local.String(), "peer", remote.String())
		return
	}
	if want == cur && newRemote == remote {
		return
	}
	if !info.MOBIKE {
		c.log.Warn("WAN address changed and the hub has no MOBIKE: reconnecting", "local", want.String())
		signal(c.redial)
		return
	}
	c.log.Info("WAN address changed: moving the IKE SA (MOBIKE)", "local", want.String(), "peer", newRemote.String(),
		"reason", "was "+cur.String())
	ctx, cancel := context.WithTimeout(ctx, DefaultMOBIKETimeout)
	defer cancel()
	if err := sa.UpdateAddresses(ctx, netip.AddrPortFrom(want, info.Local.Port()), newRemote); err != nil {
		c.counters.mobikeFailures.Add(1)
		c.log.Warn("MOBIKE update failed: reconnecting", "err", err)
		signal(c.redial)
		return
	}
	c.counters.mobike.Add(1)
	c.kick()
}

// pickLocal returns the WAN address to reach dst from: the source of the
// kernel's route to dst, restricted to the configured WAN interface when
// there is one (then its first usable address of dst's family if the route
// leaves elsewhere).
func (c *CPE) pickLocal(cfg *configs.CPE, dst netip.Addr) netip.Addr {
	var src netip.Addr
	var linkIndex int
	if routes, err := c.nlWAN.RouteGet(dst.AsSlice()); err == nil && len(routes) > 0 {
		if a, ok := netip.AddrFromSlice(routes[0].Src); ok {
			src = a.Unmap()
		}
		linkIndex = routes[0].LinkIndex
	}
	ifname := cfg.WAN.Interface
	if ifname == "" {
		if src.IsValid() && !src.IsUnspecified() {
			return src
		}
		if linkIndex == 0 {
			return netip.Addr{}
		}
	}
	var link netlink.Link
	var err error
	if ifname != "" {
		link, err = c.nlWAN.LinkByName(ifname)
	} else {
		link, err = c.nlWAN.LinkByIndex(linkIndex)
	}
	if err != nil {
		return netip.Addr{}
	}
	fam := netlink.FAMILY_V4
	if dst.Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := c.nlWAN.AddrList(link, fam)
	if err != nil {
		return netip.Addr{}
	}
	var first netip.Addr
	for _, a := range addrs {
		if a.Scope != unix.RT_SCOPE_UNIVERSE || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED|unix.IFA_F_DEPRECATED) != 0 {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip == src {
			return src
		}
		if !first.IsValid() {
			first = ip
		}
	}
	return first
}
