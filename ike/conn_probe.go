package ike

import (
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newProbes makes the route-lookup sockets of a wildcard UDPConn (IPv4, and
// IPv6 when v6) in the network namespace of the socket behind rc. That is
// the calling thread's namespace unless the socket was opened in another
// one; then the probes are made there (setns, which needs CAP_SYS_ADMIN).
// What cannot be made is -1.
func newProbes(rc syscall.RawConn, v6 bool) [2]int {
	probes := [2]int{-1, -1}
	var nsFD int = -1
	_ = rc.Control(func(fd uintptr) {
		// SIOCGSKNS needs CAP_NET_ADMIN; without it the socket is taken
		// to be in this thread's namespace, where unprivileged code made it.
		if n, err := unix.IoctlRetInt(int(fd), unix.SIOCGSKNS); err == nil {
			nsFD = n
		}
	})
	if nsFD >= 0 {
		defer unix.Close(nsFD)
	}
	// One locked thread, so the namespace compared is the one the probes
	// are made in; a goroutine of its own, so a thread left in another
	// namespace by a failed restore dies with it.
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if nsFD >= 0 && !inNetns(nsFD) {
			orig, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				return
			}
			defer orig.Close()
			if unix.Setns(nsFD, unix.CLONE_NEWNET) != nil {
				runtime.UnlockOSThread()
				return
			}
			makeProbes(&probes, v6)
			if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) != nil {
				return // the thread stays locked and exits with the goroutine
			}
			runtime.UnlockOSThread()
			return
		}
		makeProbes(&probes, v6)
		runtime.UnlockOSThread()
	}()
	<-done
	return probes
}

// inNetns reports whether the calling (locked) thread is in the namespace
// nsFD refers to.
func inNetns(nsFD int) bool {
	var a, b unix.Stat_t
	if unix.Fstat(nsFD, &a) != nil || unix.Stat("/proc/thread-self/ns/net", &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

func makeProbes(probes *[2]int, v6 bool) {
	for i, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if i == 1 && !v6 {
			break
		}
		fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			continue
		}
		// It never reads: keep its receive buffer at the minimum.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1)
		probes[i] = fd
	}
}

// disconnect dissolves a UDP socket's association: connect(2) to an
// AF_UNSPEC address, which also forgets the source address the previous
// connect chose (unless the socket was bound to one).
func disconnect(fd int) error {
	sa := unix.RawSockaddrInet6{Family: unix.AF_UNSPEC}
	_, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if errno != 0 {
		return errno
	}
	return nil
}
