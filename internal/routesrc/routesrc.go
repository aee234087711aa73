// Package routesrc tells which local address the kernel sends a datagram
// to a destination from: its route choice, source address included, as a
// wildcard-bound UDP socket would use it.
//
// A Prober holds one unbound UDP socket per address family. Source
// connect(2)s the family's socket to the destination, which makes the
// kernel look up the route and fix a source address without sending
// anything, and reads that address back with getsockname(2). A UDP socket
// connected before keeps the source address of its first connect (Linux
// fills the source only when it has none), so every lookup first dissolves
// the previous association with a connect to AF_UNSPEC. One lookup per
// family runs at a time; lookups of different families run in parallel.
//
// Routes are per network namespace, so the probe sockets must live in the
// namespace of the socket whose route choice they stand for:
//
//   - New makes them in the namespace of the calling thread, for callers
//     that open their own sockets in the same call (the userspace data
//     plane's backend, whose constructor runs in the namespace it serves).
//   - NewForSocket makes them in the namespace of an existing socket, also
//     when that socket was opened in another namespace than the caller's
//     (the IKE engine's UDPConn may wrap a socket a test or daemon opened
//     inside a namespace and be wrapped on any thread). It asks the socket
//     for its namespace (SIOCGSKNS, which needs CAP_NET_ADMIN) and, when
//     that is not the current one, makes the probes there on a thread of
//     its own (setns, which needs CAP_SYS_ADMIN). Without CAP_NET_ADMIN
//     the socket is taken to be in the calling thread's namespace, where
//     unprivileged code made it.
//
// A family that could not be made (not asked for, unsupported, setns
// refused) does not fail the constructor: the owner's socket works
// without lookups, and Source for that family returns an error saying
// why. IPv4-mapped IPv6 destinations are looked up as IPv4, and results
// come back unmapped. The destination port is used as given, since policy
// routing may select on it; callers substitute their protocol's port for
// port 0. IPv6 zones are not used, so a link-local destination is an
// error. An unspecified result is an error, never an answer.
//
// The probes never read: their receive buffers are kept at the minimum.
package routesrc

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Prober looks up the kernel's source address for destinations. It is
// safe for concurrent use. Make it with New or NewForSocket.
type Prober struct {
	fam [2]probe // IPv4, IPv6
}

// probe is one family's socket.
type probe struct {
	mu  sync.Mutex // guards the fields below; held across connect and getsockname
	fd  int        // -1: none
	err error      // why fd is -1
}

var familyNames = [2]string{"IPv4", "IPv6"}

// New makes the probe sockets of the families asked for in the network
// namespace of the calling thread.
func New(v4, v6 bool) *Prober {
	p := &Prober{}
	p.init(v4, v6)
	p.open(v4, v6)
	return p
}

// NewForSocket makes the probe sockets of the families asked for in the
// network namespace of the socket behind rc (see the package comment for
// the privileges this needs when that is not the calling thread's).
func NewForSocket(rc syscall.RawConn, v4, v6 bool) *Prober {
	p := &Prober{}
	p.init(v4, v6)
	nsFD := -1
	_ = rc.Control(func(fd uintptr) {
		if n, err := unix.IoctlRetInt(int(fd), unix.SIOCGSKNS); err == nil {
			nsFD = n
		}
	})
	if nsFD < 0 {
		// No CAP_NET_ADMIN: the socket is taken to be in this thread's
		// namespace.
		p.open(v4, v6)
		return p
	}
	defer unix.Close(nsFD)
	// One locked thread, so the namespace compared is the one the probes
	// are made in; a goroutine of its own, so a thread left in another
	// namespace by a failed restore dies with it.
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if inNetns(nsFD) {
			p.open(v4, v6)
			runtime.UnlockOSThread()
			return
		}
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			p.fail(v4, v6, fmt.Errorf("routesrc: this thread's network namespace: %w", err))
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
			p.fail(v4, v6, fmt.Errorf("routesrc: entering the socket's network namespace: %w", err))
			runtime.UnlockOSThread()
			return
		}
		p.open(v4, v6)
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) != nil {
			return // the thread stays locked and exits with the goroutine
		}
		runtime.UnlockOSThread()
	}()
	<-done
	return p
}

// inNetns reports whether the calling (locked) thread is in the network
// namespace nsFD refers to.
func inNetns(nsFD int) bool {
	var a, b unix.Stat_t
	if unix.Fstat(nsFD, &a) != nil || unix.Stat("/proc/thread-self/ns/net", &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// init marks every family as having no socket, saying why.
func (p *Prober) init(v4, v6 bool) {
	for i, want := range [2]bool{v4, v6} {
		p.fam[i].fd = -1
		if !want {
			p.fam[i].err = fmt.Errorf("routesrc: no %s lookups asked for", familyNames[i])
		}
	}
}

// fail records err as the reason the families asked for have no socket.
func (p *Prober) fail(v4, v6 bool, err error) {
	for i, want := range [2]bool{v4, v6} {
		if want {
			p.fam[i].err = err
		}
	}
}

// open makes the sockets of the families asked for on the calling thread.
// It runs before the Prober is shared.
func (p *Prober) open(v4, v6 bool) {
	for i, want := range [2]bool{v4, v6} {
		if !want {
			continue
		}
		family := unix.AF_INET
		if i == 1 {
			family = unix.AF_INET6
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			p.fam[i].err = fmt.Errorf("routesrc: %s probe socket: %w", familyNames[i], err)
			continue
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1)
		p.fam[i].fd = fd
	}
}

// Source returns the address the kernel would send a UDP datagram to dst
// from. An IPv4-mapped dst is looked up as IPv4, and the result is never
// IPv4-mapped. It fails, naming dst, when dst is not an IP address, the
// family has no probe socket, the Prober is closed, or there is no route.
func (p *Prober) Source(dst netip.AddrPort) (netip.Addr, error) {
	a := dst.Addr().Unmap()
	if !a.IsValid() {
		return netip.Addr{}, fmt.Errorf("routesrc: source address for %v: not an IP address", dst)
	}
	dst = netip.AddrPortFrom(a, dst.Port())
	i := 0
	var sa unix.Sockaddr
	if a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: a.As4()}
	} else {
		i, sa = 1, &unix.SockaddrInet6{Port: int(dst.Port()), Addr: a.As16()}
	}
	f := &p.fam[i]
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd < 0 {
		return netip.Addr{}, fmt.Errorf("routesrc: source address for %v: %w", dst, f.err)
	}
	if err := disconnect(f.fd); err != nil {
		return netip.Addr{}, fmt.Errorf("routesrc: source address for %v: dissolving the previous lookup: %w", dst, err)
	}
	if err := unix.Connect(f.fd, sa); err != nil {
		return netip.Addr{}, fmt.Errorf("routesrc: source address for %v: %w", dst, os.NewSyscallError("connect", err))
	}
	name, err := unix.Getsockname(f.fd)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("routesrc: source address for %v: %w", dst, os.NewSyscallError("getsockname", err))
	}
	var src netip.Addr
	switch n := name.(type) {
	case *unix.SockaddrInet4:
		src = netip.AddrFrom4(n.Addr)
	case *unix.SockaddrInet6:
		src = netip.AddrFrom16(n.Addr).Unmap()
	}
	if !src.IsValid() || src.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("routesrc: no source address for %v", dst)
	}
	return src, nil
}

// disconnect dissolves a UDP socket's association: connect(2) to an
// AF_UNSPEC address, which also forgets the source address the previous
// connect chose (the socket is never bound to one).
func disconnect(fd int) error {
	sa := unix.RawSockaddrInet6{Family: unix.AF_UNSPEC}
	_, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if errno != 0 {
		return os.NewSyscallError("connect", errno)
	}
	return nil
}

// Close closes the probe sockets; Source then fails with net.ErrClosed.
// It waits for lookups in progress and may be called more than once.
func (p *Prober) Close() error {
	for i := range p.fam {
		f := &p.fam[i]
		f.mu.Lock()
		if f.fd >= 0 {
			unix.Close(f.fd)
			f.fd = -1
		}
		f.err = net.ErrClosed
		f.mu.Unlock()
	}
	return nil
}
