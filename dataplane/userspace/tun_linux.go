package userspace

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

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
// (virtio-net header: TSO/GSO reads, GRO writes, batches); without, it is
// a plainTUN.
func createTUN(name string, mtu int, offloads bool) (tun.Device, error) {
	if offloads {
		return tun.CreateTUN(name, mtu)
	}
	t, err := createPlainTUN(name, mtu)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// plainTUN is a kernel TUN opened without the virtio-net header: one
// packet per read and per write. wireguard-go's tun drives such a device
// the same way, but allocates for it what only offloads use: its
// coalescing (GRO) tables, about 1.9 MB, and a 64 KiB read buffer, and
// runs two goroutines that watch the link.
type plainTUN struct {
	f         *os.File
	name      string
	ctl       int            // a socket in the TUN's namespace, for interface ioctls
	events    chan tun.Event // never sent on; closed by Close
	closeOnce sync.Once
}

var _ tun.Device = (*plainTUN)(nil)

func createPlainTUN(name string, mtu int) (*plainTUN, error) {
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
	ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	t := &plainTUN{f: os.NewFile(uintptr(fd), "/dev/net/tun"), name: ifr.Name(), ctl: ctl, events: make(chan tun.Event)}
	if ifr, err = unix.NewIfreq(t.name); err == nil {
		ifr.SetUint32(uint32(mtu))
		err = unix.IoctlIfreq(ctl, unix.SIOCSIFMTU, ifr)
	}
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("MTU: %w", err)
	}
	return t, nil
}

func (t *plainTUN) File() *os.File { return t.f }

// Read reads one packet into bufs[0][offset:].
func (t *plainTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.f.Read(bufs[0][offset:])
	if err != nil {
		return 0, tunErr(err)
	}
	sizes[0] = n
	return 1, nil
}

// Write writes each of bufs[i][offset:] as a packet. Like wireguard-go's
// TUN it returns the octets written and the errors of the packets the
// kernel refused, joined.
func (t *plainTUN) Write(bufs [][]byte, offset int) (int, error) {
	var errs error
	total := 0
	for _, b := range bufs {
		n, err := t.f.Write(b[offset:])
		if err != nil {
			if err = tunErr(err); errors.Is(err, os.ErrClosed) {
				return total, err
			}
			errs = errors.Join(errs, err)
			continue
		}
		total += n
	}
	return total, errs
}

// tunErr maps a detached or closed TUN to os.ErrClosed.
func tunErr(err error) error {
	if errors.Is(err, syscall.EBADFD) || errors.Is(err, os.ErrClosed) {
		return os.ErrClosed
	}
	return err
}

// MTU asks the kernel for the device's MTU (through a socket opened in the
// TUN's namespace, so any thread may ask).
func (t *plainTUN) MTU() (int, error) {
	ifr, err := unix.NewIfreq(t.name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(t.ctl, unix.SIOCGIFMTU, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

func (t *plainTUN) Name() (string, error)    { return t.name, nil }
func (t *plainTUN) Events() <-chan tun.Event { return t.events }
func (t *plainTUN) BatchSize() int           { return 1 }

func (t *plainTUN) Close() error {
	var err error
	t.closeOnce.Do(func() {
		err = t.f.Close()
		unix.Close(t.ctl)
		close(t.events)
	})
	return err
}
