package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps the namespaces' bind mounts.
const netnsDir = "/run/netns"

// ErrNotRoot and ErrNoNetns are what Check returns when the machine cannot
// run a lab.
var (
	ErrNotRoot = errors.New("lab: must run as root (network namespaces, veth links and TUN devices need CAP_NET_ADMIN and CAP_SYS_ADMIN)")
	ErrNoNetns = errors.New("lab: network namespaces are unavailable")
)

// Check reports whether this machine can run a lab: root, network
// namespaces, the ip command (iproute2) and /dev/net/tun for the daemons'
// userspace data plane.
func Check() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("%w: %v (kernel without CONFIG_NET_NS?)", ErrNoNetns, err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("lab: the ip command is missing (apt-get install iproute2): %w", err)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("lab: /dev/net/tun is missing, the daemons' userspace data plane needs it: %w", err)
	}
	return nil
}

// createNS makes a named namespace with loopback up.
func createNS(name string) error {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("%w: ip netns add %s: %v: %s", ErrNoNetns, name, err, strings.TrimSpace(string(out)))
	}
	return withHandle(name, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		return h.LinkSetUp(lo)
	})
}

// deleteNS kills every process in the namespace and removes it.
func deleteNS(name string) error {
	for _, pid := range nsPIDs(name) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		if _, serr := os.Stat(filepath.Join(netnsDir, name)); os.IsNotExist(serr) {
			return nil
		}
		return fmt.Errorf("lab: ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// listNS returns the namespaces whose names start with prefix.
func listNS(prefix string) []string {
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// nsPIDs returns the processes whose network namespace is the named one.
func nsPIDs(name string) []int {
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, name), &want); err != nil {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev {
			pids = append(pids, pid)
		}
	}
	return pids
}

// withHandle runs f with a netlink handle working in the named namespace.
func withHandle(name string, f func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("lab: namespace %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("lab: netlink in %s: %w", name, err)
	}
	defer h.Close()
	if err := f(h); err != nil {
		return fmt.Errorf("lab: %s: %w", name, err)
	}
	return nil
}

// doInNS runs f on an OS thread that joined the named namespace; sockets f
// opens stay there. The thread is restored afterwards (or, if that fails,
// left locked so that it dies with f's goroutine).
func doInNS(name string, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: current namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: namespace %s: %w", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: enter %s: %w", name, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("lab: leave %s: %w", name, err) // thread stays locked and is discarded
	}
	runtime.UnlockOSThread()
	return ferr
}

// veth joins the switch namespace (port swPort, enslaved to br0) to node's
// namespace (interface ifName), both up. Nothing appears in the caller's
// namespace: the pair is created in the switch namespace with its peer
// directly in the node's.
func veth(swNS, swPort, nodeNS, ifName, bridge string) error {
	peer, err := netns.GetFromName(nodeNS)
	if err != nil {
		return fmt.Errorf("lab: namespace %s: %w", nodeNS, err)
	}
	defer peer.Close()
	err = withHandle(swNS, func(h *netlink.Handle) error {
		la := netlink.NewLinkAttrs()
		la.Name = swPort
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: ifName, PeerNamespace: netlink.NsFd(int(peer))}); err != nil {
			return fmt.Errorf("veth %s/%s: %w", swPort, ifName, err)
		}
		l, err := h.LinkByName(swPort)
		if err != nil {
			return err
		}
		if bridge != "" {
			br, err := h.LinkByName(bridge)
			if err != nil {
				return err
			}
			if err := h.LinkSetMaster(l, br); err != nil {
				return fmt.Errorf("%s master %s: %w", swPort, bridge, err)
			}
		}
		return h.LinkSetUp(l)
	})
	if err != nil {
		return err
	}
	return withHandle(nodeNS, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifName)
		if err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
}

// addrAdd puts addresses on a link (IPv6 without duplicate address
// detection, so they are usable at once).
func addrAdd(ns, ifName string, addrs ...netip.Prefix) error {
	return withHandle(ns, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifName)
		if err != nil {
			return err
		}
		for _, p := range addrs {
			a := &netlink.Addr{IPNet: ipNet(p)}
			if p.Addr().Is6() {
				a.Flags = unix.IFA_F_NODAD
			}
			if err := h.AddrAdd(l, a); err != nil {
				return fmt.Errorf("address %v on %s: %w", p, ifName, err)
			}
		}
		return nil
	})
}

// addrDel removes an address from a link.
func addrDel(ns, ifName string, p netip.Prefix) error {
	return withHandle(ns, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifName)
		if err != nil {
			return err
		}
		if err := h.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
			return fmt.Errorf("remove %v from %s: %w", p, ifName, err)
		}
		return nil
	})
}

// defaultRoute adds a default route through gw.
func defaultRoute(ns string, gw netip.Addr) error {
	return withHandle(ns, func(h *netlink.Handle) error {
		dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if gw.Is6() {
			dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		if err := h.RouteAdd(&netlink.Route{Dst: dst, Gw: gw.AsSlice()}); err != nil {
			return fmt.Errorf("default route via %v: %w", gw, err)
		}
		return nil
	})
}

// linkStats returns a link's packet counters.
func linkStats(ns, ifName string) (rx, tx uint64, err error) {
	err = withHandle(ns, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifName)
		if err != nil {
			return err
		}
		if s := l.Attrs().Statistics; s != nil {
			rx, tx = s.RxPackets, s.TxPackets
		}
		return nil
	})
	return rx, tx, err
}

// sysctl writes a value under /proc/sys/net inside a namespace.
func sysctl(ns, key, value string) error {
	return doInNS(ns, func() error {
		p := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("lab: sysctl %s=%s in %s: %w", key, value, ns, err)
		}
		return nil
	})
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}
