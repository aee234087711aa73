package userspace

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// openTUN uses cfg.TUN or creates a kernel TUN, brings it up and assigns
// cfg.Addresses through netlink.
func (b *Backend) openTUN(cfg Config, mtu int) error {
	// A handle opened now stays in the network namespace New runs in, so
	// later route changes from any goroutine land there too.
	nl, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("dataplane: netlink: %w", err)
	}
	b.nl = nl
	if cfg.TUN != nil {
		b.tun = cfg.TUN
		b.tunName, _ = cfg.TUN.Name()
		_, err := nl.LinkByName(b.tunName)
		b.kernelTUN = err == nil && cfg.TUN.File() != nil
		return nil
	}
	name := cfg.TUNName
	if name == "" {
		name = DefaultTUNName
	}
	dev, err := createTUN(name, mtu, !cfg.NoOffloads)
	if err != nil {
		nl.Close()
		return fmt.Errorf("dataplane: TUN %s: %w", name, err)
	}
	b.tun = dev
	b.tunName, _ = dev.Name()
	b.kernelTUN = true
	link, err := nl.LinkByName(b.tunName)
	if err == nil {
		for _, p := range cfg.Addresses {
			addr := &netlink.Addr{IPNet: prefixToIPNet(p)}
			if p.Addr().Is6() {
				addr.Flags = unix.IFA_F_NODAD
			}
			if err = nl.AddrReplace(link, addr); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = nl.LinkSetUp(link)
	}
	if err != nil {
		dev.Close()
		nl.Close()
		return fmt.Errorf("dataplane: TUN %s: %w", b.tunName, err)
	}
	return nil
}

// createTUN creates a kernel TUN device. With offloads it is wireguard-go's
// (virtio-net header: TSO/GSO reads, GRO writes, batches); without, the
// device is opened without the header, which wireguard-go's tun then
// drives one packet at a time.
func createTUN(name string, mtu int, offloads bool) (tun.Device, error) {
	if offloads {
		return tun.CreateTUN(name, mtu)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Non-blocking before the runtime's poller takes the descriptor.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return tun.CreateTUNFromFile(os.NewFile(uintptr(fd), "/dev/net/tun"), mtu)
}

// SetRoutes makes the kernel routes through the TUN exactly prefixes
// (routes the backend added before and that are not in prefixes are
// removed). It is idempotent. Feed it the FIB's remote prefixes.
//
// The backend only adds routes that do not exist yet (NLM_F_EXCL) and only
// removes its own (routing protocol 252): a prefix the kernel already
// routes elsewhere, such as a connected LAN, is left alone and logged. If
// the kernel flushes the TUN's routes (the device lost its last address,
// or went down), the backend notices through netlink and adds them again.
func (b *Backend) SetRoutes(prefixes []netip.Prefix) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.isClosed {
		return fmt.Errorf("dataplane: backend closed")
	}
	if !b.kernelTUN {
		return fmt.Errorf("dataplane: %s is not a kernel TUN; no routes to program", b.tunName)
	}
	clear(b.wanted)
	for _, p := range prefixes {
		b.wanted[p.Masked()] = true
	}
	return b.syncRoutesLocked(false)
}

// syncRoutesLocked brings the kernel in line with b.wanted. With verify it
// first checks which of the routes it believes installed the kernel still
// has.
func (b *Backend) syncRoutesLocked(verify bool) error {
	link, err := b.nl.LinkByName(b.tunName)
	if err != nil {
		return fmt.Errorf("dataplane: TUN %s: %w", b.tunName, err)
	}
	idx := link.Attrs().Index
	if verify {
		present := make(map[netip.Prefix]bool)
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			rs, err := b.nl.RouteListFiltered(fam, &netlink.Route{LinkIndex: idx, Protocol: routeProto}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
			if err != nil {
				return fmt.Errorf("dataplane: listing routes: %w", err)
			}
			for _, r := range rs {
				if p, ok := ipNetToPrefix(r.Dst); ok {
					present[p] = true
				}
			}
		}
		for p := range b.routes {
			if !present[p] {
				delete(b.routes, p) // flushed by the kernel: add again below
			}
		}
	}
	var firstErr error
	for p := range b.wanted {
		if b.routes[p] {
			continue
		}
		if err := b.addRouteLocked(idx, p); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for p := range b.routes {
		if !b.wanted[p] {
			r := &netlink.Route{LinkIndex: idx, Dst: prefixToIPNet(p), Scope: netlink.SCOPE_LINK, Protocol: routeProto}
			if err := b.nl.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) && firstErr == nil {
				firstErr = fmt.Errorf("dataplane: route %v: %w", p, err)
			}
			delete(b.routes, p)
		}
	}
	for p := range b.foreign {
		if !b.wanted[p] {
			delete(b.foreign, p)
		}
	}
	return firstErr
}

// addRouteLocked adds p through the TUN unless the kernel routes p
// already; a route of ours left from before is adopted.
func (b *Backend) addRouteLocked(idx int, p netip.Prefix) error {
	r := &netlink.Route{LinkIndex: idx, Dst: prefixToIPNet(p), Scope: netlink.SCOPE_LINK, Protocol: routeProto}
	err := b.nl.RouteAdd(r)
	if err == nil {
		b.routes[p] = true
		delete(b.foreign, p)
		return nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("dataplane: route %v: %w", p, err)
	}
	fam := netlink.FAMILY_V4
	if p.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	rs, lerr := b.nl.RouteListFiltered(fam, &netlink.Route{LinkIndex: idx, Dst: r.Dst, Protocol: routeProto},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_DST|netlink.RT_FILTER_PROTOCOL)
	if lerr == nil && len(rs) > 0 {
		b.routes[p] = true // ours, from before
		return nil
	}
	if !b.foreign[p] {
		b.foreign[p] = true
		b.log.Warn("prefix already routed by the kernel, not sent into the tunnel", "prefix", p.String())
	}
	return nil
}

// routineWatchRoutes re-checks the TUN's routes whenever the kernel reports
// a change of the TUN's link, addresses or routes.
func (b *Backend) routineWatchRoutes(ns netns.NsHandle) {
	defer b.wg.Done()
	defer ns.Close()
	done := make(chan struct{})
	defer close(done)
	links := make(chan netlink.LinkUpdate, 16)
	addrs := make(chan netlink.AddrUpdate, 16)
	routes := make(chan netlink.RouteUpdate, 64)
	errCB := func(err error) { b.log.Debug("netlink watch", "err", err) }
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: &ns, ErrorCallback: errCB}); err != nil {
		b.log.Warn("cannot watch the TUN's link; routes flushed by the kernel stay missing", "err", err)
		return
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: &ns, ErrorCallback: errCB}); err != nil {
		b.log.Warn("cannot watch the TUN's addresses", "err", err)
		return
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: &ns, ErrorCallback: errCB}); err != nil {
		b.log.Warn("cannot watch routes", "err", err)
		return
	}
	link, err := b.nl.LinkByName(b.tunName)
	if err != nil {
		return
	}
	idx := link.Attrs().Index
	for {
		ours := false
		select {
		case <-b.closed:
			return
		case u, ok := <-links:
			if !ok {
				return
			}
			ours = int(u.Index) == idx
		case u, ok := <-addrs:
			if !ok {
				return
			}
			ours = u.LinkIndex == idx && !u.NewAddr
		case u, ok := <-routes:
			if !ok {
				return
			}
			ours = u.Type == unix.RTM_DELROUTE && u.LinkIndex == idx
		}
		if !ours {
			continue
		}
		b.mu.Lock()
		if !b.isClosed {
			if err := b.syncRoutesLocked(true); err != nil {
				b.log.Warn("kernel routes not restored", "err", err)
			}
		}
		b.mu.Unlock()
	}
}

// routeProto marks our routes in the kernel table (a private protocol
// number, like BIRD's and FRR's own).
const routeProto = netlink.RouteProtocol(252)

func (b *Backend) removeRoutesLocked() {
	if len(b.routes) == 0 {
		return
	}
	link, err := b.nl.LinkByName(b.tunName)
	if err == nil {
		for p := range b.routes {
			_ = b.nl.RouteDel(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixToIPNet(p), Scope: netlink.SCOPE_LINK, Protocol: routeProto})
		}
	}
	clear(b.routes)
	clear(b.wanted)
}

// Routes returns the prefixes the backend currently routes into the TUN.
func (b *Backend) Routes() []netip.Prefix {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]netip.Prefix, 0, len(b.routes))
	for p := range b.routes {
		out = append(out, p)
	}
	return out
}
