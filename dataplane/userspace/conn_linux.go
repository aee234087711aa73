package userspace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockConn is a Conn on a Linux socket with recvmmsg/sendmmsg and, for UDP,
// generic segmentation offload (UDP_SEGMENT): a run of equal-sized
// datagrams to one destination leaves in one sendmmsg entry.
type sockConn struct {
	pc  net.PacketConn
	rc  syscall.RawConn
	v6  bool
	raw bool
	gso bool // UDP_SEGMENT usable (turned off after the first failure)
	// pktinfo: the kernel tells each datagram's destination address
	// (IP_PKTINFO / IPV6_RECVPKTINFO), in rcmsg.
	pktinfo bool
	read    func(fd uintptr) bool
	peek    func(fd uintptr) bool

	rmu   sync.Mutex // serialises ReadBatch; guards the r* fields
	rhdr  []mmsghdr
	riov  []unix.Iovec
	rname []unix.RawSockaddrInet6
	rcmsg []byte // rcmsgLen octets of ancillary data per message
	rms   []Message
	rn    int
	rerr  error

	wmu    sync.Mutex // serialises WriteBatch; guards the w* fields
	whdr   []mmsghdr
	wiov   []unix.Iovec
	wname  []unix.RawSockaddrInet6
	wcmsg  [][]byte
	wfirst []int // index (into the packed messages) of each entry's first message
	wn     int
	wcnt   int
	werr   error
	write  func(fd uintptr) bool
}

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// rcmsgLen is the room for the ancillary data of one received datagram:
// the packet info of either family (a dual-stack socket gets both kinds).
var rcmsgLen = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(unix.SizeofInet4Pktinfo)

const (
	maxBatch   = 128
	maxGSOSegs = 64
	gsoMaxSize = 65000
	sockBuf    = 8 << 20
)

// ListenUDP opens the ESP-in-UDP socket on port (4500) for the family of
// addr (an unspecified address listens on all).
func ListenUDP(addr netip.AddrPort) (Conn, error) {
	network := "udp4"
	if addr.Addr().Is6() {
		network = "udp6"
	}
	pc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	return newSockConn(pc, addr.Addr().Is6(), false)
}

// ListenESP opens a raw IP protocol 50 socket for the family of addr. It
// needs CAP_NET_RAW.
func ListenESP(addr netip.Addr) (Conn, error) {
	network := "ip4:50"
	if addr.Is6() {
		network = "ip6:50"
	}
	pc, err := net.ListenPacket(network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	return newSockConn(pc, addr.Is6(), true)
}

func newSockConn(pc net.PacketConn, v6, raw bool) (*sockConn, error) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		pc.Close()
		return nil, errors.New("dataplane: socket has no raw access")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		pc.Close()
		return nil, err
	}
	c := &sockConn{pc: pc, rc: rc, v6: v6, raw: raw, gso: !raw}
	c.rhdr = make([]mmsghdr, maxBatch)
	c.riov = make([]unix.Iovec, maxBatch)
	c.rname = make([]unix.RawSockaddrInet6, maxBatch)
	c.whdr = make([]mmsghdr, maxBatch)
	c.wiov = make([]unix.Iovec, maxBatch)
	c.wname = make([]unix.RawSockaddrInet6, maxBatch)
	c.wcmsg = make([][]byte, maxBatch)
	c.wfirst = make([]int, maxBatch+1)
	for i := range c.wcmsg {
		c.wcmsg[i] = make([]byte, unix.CmsgSpace(2)+unix.CmsgSpace(unix.SizeofInet6Pktinfo))
	}
	c.read = c.doRead
	c.peek = c.doPeek
	c.write = c.doWrite
	if !raw {
		// The destination address of each datagram, for IKE on port
		// 4500 (NATTConn.ReadPacket).
		var serr error
		err := rc.Control(func(fd uintptr) {
			if v6 {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
				// A dual-stack socket receives IPv4 too.
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			}
		})
		if err == nil && serr == nil {
			c.pktinfo = true
			c.rcmsg = make([]byte, maxBatch*rcmsgLen)
		}
	}
	// Big socket buffers absorb the bursts a TSO/GSO super-packet makes.
	// A full raw socket is worse than a lost packet: the kernel then answers
	// the sender with ICMP protocol unreachable.
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBuf) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, sockBuf)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sockBuf) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, sockBuf)
		}
	})
	return c, nil
}

func (c *sockConn) Raw() bool           { return c.raw }
func (c *sockConn) LocalAddr() net.Addr { return c.pc.LocalAddr() }
func (c *sockConn) Close() error        { return c.pc.Close() }

// WaitRead waits until the socket has a datagram. It peeks at the queue
// with a zero-length MSG_PEEK, through which the kernel checks and drops a
// UDP datagram with a bad checksum, so a datagram it reports is one
// recvmmsg returns.
func (c *sockConn) WaitRead() error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if err := c.rc.Read(c.peek); err != nil {
		return translateErr(err)
	}
	return nil
}

// doPeek reports whether a datagram (or an error, which the next read
// returns) is waiting.
func (c *sockConn) doPeek(fd uintptr) bool {
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, 0, 0, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return errno != unix.EAGAIN && errno != unix.EINTR
}

func (c *sockConn) ReadBatch(ms []Message) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	n := min(len(ms), maxBatch)
	for i := 0; i < n; i++ {
		b := ms[i].Buf
		c.riov[i] = unix.Iovec{Base: unsafe.SliceData(b)}
		c.riov[i].SetLen(len(b))
		h := &c.rhdr[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&c.rname[i])), Iov: &c.riov[i]}
		h.Namelen = uint32(unsafe.Sizeof(c.rname[i]))
		h.SetIovlen(1)
		if c.pktinfo {
			h.Control = &c.rcmsg[i*rcmsgLen]
			h.SetControllen(rcmsgLen)
		}
	}
	c.rms = ms[:n]
	c.rn, c.rerr = 0, nil
	if err := c.rc.Read(c.read); err != nil {
		return 0, translateErr(err)
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	for i := 0; i < c.rn; i++ {
		m := &ms[i]
		m.Off, m.N = 0, int(c.rhdr[i].n)
		m.Addr = sockaddrToAddrPort(&c.rname[i])
		m.Dst = netip.Addr{}
		if c.pktinfo {
			cm := c.rcmsg[i*rcmsgLen:]
			m.Dst = pktinfoDst(cm[:min(int(c.rhdr[i].hdr.Controllen), len(cm))])
		}
		if c.raw && !c.v6 {
			m.Off, m.N = stripIPv4(m.Buf[:m.N])
		}
	}
	c.rms = nil
	return c.rn, nil
}

func (c *sockConn) doRead(fd uintptr) bool {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.rhdr[0])), uintptr(len(c.rms)), unix.MSG_DONTWAIT, 0, 0)
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	if errno != 0 {
		c.rerr = fmt.Errorf("dataplane: recvmmsg: %w", errno)
		return true
	}
	c.rn = int(n)
	return true
}

func (c *sockConn) WriteBatch(ms []Message) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	sent := 0
	for sent < len(ms) {
		k, consumed := c.pack(ms[sent:])
		if err := c.flush(k); err != nil {
			if errors.Is(err, errGSO) {
				// The kernel or the device refused segmentation (or a
				// segment exceeds the path MTU): resend what did not go
				// out, without GSO from now on.
				c.gso = false
				sent += c.wfirst[c.wn]
				continue
			}
			return sent + c.wfirst[c.wn], err
		}
		sent += consumed
	}
	return sent, nil
}

// pack fills up to maxBatch mmsghdrs from ms and returns how many headers
// and how many messages they hold.
func (c *sockConn) pack(ms []Message) (hdrs, consumed int) {
	iov := 0
	for consumed < len(ms) && hdrs < maxBatch && iov < maxBatch {
		m := &ms[consumed]
		h := &c.whdr[hdrs]
		h.hdr = unix.Msghdr{}
		nlen := addrPortToSockaddr(m.Addr, &c.wname[hdrs], c.v6)
		h.hdr.Name = (*byte)(unsafe.Pointer(&c.wname[hdrs]))
		h.hdr.Namelen = nlen
		c.wfirst[hdrs] = consumed
		first := iov
		size := m.N
		total := 0
		segs := 0
		for consumed < len(ms) && iov < maxBatch {
			m2 := &ms[consumed]
			if segs > 0 && (!c.gso || m2.Addr != m.Addr || m2.Src != m.Src || m2.N > size || segs == maxGSOSegs || total+m2.N > gsoMaxSize) {
				break
			}
			b := m2.Buf[m2.Off : m2.Off+m2.N]
			c.wiov[iov] = unix.Iovec{Base: unsafe.SliceData(b)}
			c.wiov[iov].SetLen(len(b))
			iov++
			consumed++
			segs++
			total += m2.N
			if m2.N < size {
				break // a shorter datagram ends a GSO run
			}
		}
		h.hdr.Iov = &c.wiov[first]
		h.hdr.SetIovlen(segs)
		if n := c.control(c.wcmsg[hdrs], segs, size, m.Src); n > 0 {
			h.hdr.Control = &c.wcmsg[hdrs][0]
			h.hdr.SetControllen(n)
		}
		hdrs++
	}
	return hdrs, consumed
}

// control fills cm with the ancillary data of one sendmmsg entry: the GSO
// segment size for a run of segs > 1 datagrams, and the outer source
// address when src is set. It returns the length used.
func (c *sockConn) control(cm []byte, segs, size int, src netip.Addr) int {
	n := 0
	if segs > 1 {
		hdr := (*unix.Cmsghdr)(unsafe.Pointer(&cm[0]))
		hdr.Level = unix.SOL_UDP
		hdr.Type = unix.UDP_SEGMENT
		hdr.SetLen(unix.CmsgLen(2))
		*(*uint16)(unsafe.Pointer(&cm[unix.CmsgLen(0)])) = uint16(size)
		n = unix.CmsgSpace(2)
	}
	if !src.IsValid() {
		return n
	}
	hdr := (*unix.Cmsghdr)(unsafe.Pointer(&cm[n]))
	data := unsafe.Pointer(&cm[n+unix.CmsgLen(0)])
	if c.v6 {
		hdr.Level, hdr.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		hdr.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		*(*unix.Inet6Pktinfo)(data) = unix.Inet6Pktinfo{Addr: src.As16()}
		return n + unix.CmsgSpace(unix.SizeofInet6Pktinfo)
	}
	hdr.Level, hdr.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	hdr.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	*(*unix.Inet4Pktinfo)(data) = unix.Inet4Pktinfo{Spec_dst: src.Unmap().As4()}
	return n + unix.CmsgSpace(unix.SizeofInet4Pktinfo)
}

func (c *sockConn) flush(k int) error {
	off := 0
	for off < k {
		c.wn, c.wcnt, c.werr = off, k, nil
		if err := c.rc.Write(c.write); err != nil {
			return translateErr(err)
		}
		if c.werr != nil {
			return c.werr
		}
		off = c.wn
	}
	return nil
}

func (c *sockConn) doWrite(fd uintptr) bool {
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.whdr[c.wn])), uintptr(c.wcnt-c.wn), unix.MSG_DONTWAIT, 0, 0)
	if errno == unix.EAGAIN {
		return false
	}
	if errno == unix.EINTR {
		return false
	}
	if errno != 0 {
		if c.gso && c.whdr[c.wn].hdr.Iovlen > 1 && (errno == unix.EIO || errno == unix.EINVAL || errno == unix.EMSGSIZE) {
			// Segments larger than the path MTU (EMSGSIZE; EINVAL on older
			// kernels) or a device without segmentation (EIO).
			c.werr = errGSO
			return true
		}
		if isTransient(errno) || errno == unix.EINVAL {
			// One datagram the kernel refused (no route, unreachable peer,
			// too big, bad address): skip it rather than stall the batch.
			c.wn++
			return c.wn >= c.wcnt
		}
		c.werr = fmt.Errorf("dataplane: sendmmsg: %w", errno)
		return true
	}
	c.wn += int(n)
	return c.wn >= c.wcnt
}

// errGSO reports a segmentation offload failure of one sendmmsg entry.
var errGSO = errors.New("dataplane: UDP GSO refused")

func isTransient(e syscall.Errno) bool {
	switch e {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EMSGSIZE, unix.ENOBUFS, unix.EPERM, unix.EACCES, unix.EADDRNOTAVAIL:
		return true
	}
	return false
}

func translateErr(err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
		return net.ErrClosed
	}
	return err
}

// pktinfoDst returns the destination address in the IP_PKTINFO or
// IPV6_PKTINFO message of the ancillary data cm, or the zero Addr.
func pktinfoDst(cm []byte) netip.Addr {
	const align = int(unsafe.Sizeof(uintptr(0))) // cmsg alignment on Linux
	hdrLen := unix.CmsgLen(0)
	for len(cm) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&cm[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(cm) {
			break
		}
		data := cm[hdrLen:l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			return netip.AddrFrom4((*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0])).Addr)
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			return netip.AddrFrom16((*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0])).Addr).Unmap()
		}
		next := (l + align - 1) &^ (align - 1)
		if next >= len(cm) {
			break
		}
		cm = cm[next:]
	}
	return netip.Addr{}
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

func addrPortToSockaddr(ap netip.AddrPort, sa *unix.RawSockaddrInet6, v6 bool) uint32 {
	port := ap.Port()
	if !v6 {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().As4()}
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ap.Addr().As16()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return unix.SizeofSockaddrInet6
}
