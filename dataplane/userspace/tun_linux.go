package userspace

import (
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
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
		link, err := nl.LinkByName(b.tunName)
		b.kernelTUN = err == nil && cfg.TUN.File() != nil
		if b.kernelTUN {
			b.tunIndex = link.Attrs().Index
		}
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
		b.tunIndex = link.Attrs().Index
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
