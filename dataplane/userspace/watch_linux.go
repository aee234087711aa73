package userspace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// routeWatch is a netlink socket that hears what can take the TUN's
// routes away: changes of the TUN's link, addresses removed from it, and
// deleted routes. A socket filter in the kernel passes only those, so the
// echo of every route the backend adds (10,000 with as many BGP routes)
// never reaches it; what passes is read into one buffer, without
// allocating.
type routeWatch struct {
	f     *os.File
	rc    syscall.RawConn
	index int32 // the TUN's interface index
	buf   []byte
	// The current read (rc.Read callback, method value made once).
	n, flags int
	block    bool
	err      error
	recv     func(fd uintptr) bool
}

// watchBufSize holds any route or address message and most link messages;
// a longer one is truncated, which the reader treats as "look again".
const watchBufSize = 8 << 10

// newRouteWatch opens the watch in the calling thread's network namespace
// for the interface with index index.
func newRouteWatch(index int) (*routeWatch, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("dataplane: netlink: %w", err)
	}
	prog := watchFilter(int32(index))
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dataplane: netlink socket filter: %w", err)
	}
	groups := uint32(unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR | unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dataplane: netlink: %w", err)
	}
	f := os.NewFile(uintptr(fd), "netlink-route")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	w := &routeWatch{f: f, rc: rc, index: int32(index), buf: make([]byte, watchBufSize)}
	w.recv = w.doRecv
	return w, nil
}

func (w *routeWatch) close() { w.f.Close() }

// read receives one datagram into w.buf and returns it, waiting for one
// if block is set (else nil when none is queued). truncated reports a
// datagram longer than the buffer. ENOBUFS means the socket overflowed:
// events were lost.
func (w *routeWatch) read(block bool) (msg []byte, truncated bool, err error) {
	w.block, w.err = block, nil
	if err := w.rc.Read(w.recv); err != nil {
		return nil, false, translateErr(err)
	}
	if w.err != nil {
		return nil, false, w.err
	}
	if w.n < 0 {
		return nil, false, nil
	}
	return w.buf[:min(w.n, len(w.buf))], w.n > len(w.buf), nil
}

func (w *routeWatch) doRecv(fd uintptr) bool {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&w.buf[0])), uintptr(len(w.buf)), unix.MSG_TRUNC, 0, 0)
	switch errno {
	case 0:
		w.n = int(n)
		return true
	case unix.EAGAIN, unix.EINTR:
		if w.block {
			return false
		}
		w.n = -1
		return true
	}
	w.err = fmt.Errorf("dataplane: netlink watch: %w", errno)
	if errno == unix.ENOBUFS {
		w.err = errWatchOverflow
	}
	return true
}

// errWatchOverflow: the kernel dropped notifications for the watch.
var errWatchOverflow = errors.New("dataplane: netlink watch overflowed")

// watchEvent is what one notification means for the TUN's routes.
type watchEvent struct {
	// verify: the TUN's link changed or it lost an address; the kernel
	// may have flushed its routes without telling each one (IPv4 does not).
	verify bool
	// A deleted route of the main table: its prefix, output interface
	// (0 when the message has none) and routing protocol.
	gone     bool
	prefix   netip.Prefix
	oif      int32
	protocol uint8
}

const (
	nlmsgHdrLen  = unix.SizeofNlMsghdr  // 16
	rtmsgLen     = unix.SizeofRtMsg     // 12
	ifinfomsgLen = unix.SizeofIfInfomsg // 16
	ifaddrmsgLen = unix.SizeofIfAddrmsg // 8
)

// parseWatch calls f for each notification about the TUN (index) in the
// datagram b, as the kernel lays it out (host byte order). It stops at
// the first malformed message; nothing in b is trusted.
func parseWatch(b []byte, index int32, f func(watchEvent)) {
	ne := binary.NativeEndian
	for len(b) >= nlmsgHdrLen {
		l := int(ne.Uint32(b[0:4]))
		typ := ne.Uint16(b[4:6])
		if l < nlmsgHdrLen || l > len(b) {
			return
		}
		m := b[nlmsgHdrLen:l]
		switch typ {
		case unix.RTM_NEWLINK, unix.RTM_DELLINK:
			// ifinfomsg: family, pad, type (2), index (4), ...
			if len(m) >= ifinfomsgLen && int32(ne.Uint32(m[4:8])) == index {
				f(watchEvent{verify: true})
			}
		case unix.RTM_DELADDR:
			// ifaddrmsg: family, prefixlen, flags, scope, index (4)
			if len(m) >= ifaddrmsgLen && int32(ne.Uint32(m[4:8])) == index {
				f(watchEvent{verify: true})
			}
		case unix.RTM_DELROUTE:
			if ev, ok := parseRouteGone(m); ok {
				f(ev)
			}
		}
		b = b[min(len(b), (l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
	}
}

// parseRouteGone reads an RTM_DELROUTE body: rtmsg (family, dst_len,
// src_len, tos, table, protocol, scope, type, flags) and attributes. Only
// unicast routes of the main table count.
func parseRouteGone(m []byte) (watchEvent, bool) {
	if len(m) < rtmsgLen {
		return watchEvent{}, false
	}
	ne := binary.NativeEndian
	family, dstLen, table, proto, typ := m[0], int(m[1]), uint32(m[4]), m[5], m[7]
	if typ != unix.RTN_UNICAST {
		return watchEvent{}, false
	}
	ev := watchEvent{gone: true, protocol: proto}
	var addr netip.Addr
	switch family {
	case unix.AF_INET:
		addr = netip.IPv4Unspecified()
	case unix.AF_INET6:
		addr = netip.IPv6Unspecified()
	default:
		return watchEvent{}, false
	}
	for a := m[rtmsgLen:]; len(a) >= unix.SizeofRtAttr; {
		al := int(ne.Uint16(a[0:2]))
		at := ne.Uint16(a[2:4])
		if al < unix.SizeofRtAttr || al > len(a) {
			return watchEvent{}, false
		}
		v := a[unix.SizeofRtAttr:al]
		switch at {
		case unix.RTA_DST:
			dst, ok := netip.AddrFromSlice(v)
			if !ok || dst.BitLen() != addr.BitLen() {
				return watchEvent{}, false
			}
			addr = dst
		case unix.RTA_OIF:
			if len(v) >= 4 {
				ev.oif = int32(ne.Uint32(v))
			}
		case unix.RTA_TABLE:
			if len(v) >= 4 {
				table = ne.Uint32(v)
			}
		}
		a = a[min(len(a), (al+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	if table != unix.RT_TABLE_MAIN {
		return watchEvent{}, false
	}
	p, err := addr.Prefix(dstLen)
	if err != nil || p.Bits() != dstLen {
		return watchEvent{}, false
	}
	ev.prefix = p
	return ev, true
}

// watchFilter is the classic BPF program the watch socket runs in the
// kernel: it passes RTM_DELROUTE, and RTM_NEWLINK, RTM_DELLINK and
// RTM_DELADDR of the interface index, and drops the rest (RTM_NEWROUTE
// and RTM_NEWADDR above all). BPF loads are big-endian and netlink
// headers host-endian, so the constants are the host's octets read
// big-endian.
func watchFilter(index int32) []unix.SockFilter {
	h16 := func(v uint16) uint32 {
		return uint32(binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, v)))
	}
	h32 := func(v uint32) uint32 { return binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, v)) }
	const (
		ldh = unix.BPF_LD | unix.BPF_H | unix.BPF_ABS
		ldw = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
	)
	return []unix.SockFilter{
		/* 0 */ {Code: ldh, K: 4}, // nlmsg_type
		/* 1 */ {Code: jeq, K: h16(unix.RTM_DELROUTE), Jt: 6}, // -> 8 pass
		/* 2 */ {Code: jeq, K: h16(unix.RTM_NEWLINK), Jt: 3}, // -> 6
		/* 3 */ {Code: jeq, K: h16(unix.RTM_DELLINK), Jt: 2}, // -> 6
		/* 4 */ {Code: jeq, K: h16(unix.RTM_DELADDR), Jt: 1}, // -> 6
		/* 5 */ {Code: ret, K: 0},
		/* 6 */ {Code: ldw, K: nlmsgHdrLen + 4}, // ifi_index / ifa_index
		/* 7 */ {Code: jeq, K: h32(uint32(index)), Jf: 1}, // -> 9 drop
		/* 8 */ {Code: ret, K: 0xffffffff},
		/* 9 */ {Code: ret, K: 0},
	}
}
