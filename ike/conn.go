package ike

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/mpsa-vpn/mpsa/internal/routesrc"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Conn is a UDP socket the manager reads IKE datagrams from and writes them
// to. The manager owns reading: one goroutine per Conn calls ReadPacket until
// it fails. A Conn registered as NAT-T (port 4500) carries the 4-octet
// non-ESP marker in both directions (RFC 3948 §2.2): the manager strips it
// from what ReadPacket returns and adds it to what it passes WritePacket, so a
// backend that shares the socket with ESP hands over marker-prefixed
// datagrams unchanged.
type Conn interface {
	// ReadPacket reads one datagram into b. dst is the local address it
	// was sent to, or the zero/unspecified address when unknown.
	ReadPacket(b []byte) (n int, src, dst netip.AddrPort, err error)
	// WritePacket sends b to dst from src's address when src is valid
	// (the socket's own address otherwise).
	WritePacket(b []byte, src, dst netip.AddrPort) error
	// LocalAddr is the address the socket is bound to.
	LocalAddr() netip.AddrPort
	Close() error
}

// SourceAddrConn is a Conn on a wildcard socket that can tell which local
// address the kernel sends datagrams to dst from (its route choice), as
// UDPConn does. The manager asks before it has seen a datagram of an SA
// (an initiator's IKE_SA_INIT, a responder on a conn that does not report
// destination addresses), so that NAT_DETECTION_SOURCE_IP hashes the real
// address (RFC 7296 §2.23). An error means unknown: the manager then sends
// no NAT_DETECTION_SOURCE_IP rather than a wrong one, and never concludes
// that it is behind a NAT from an address it does not know.
type SourceAddrConn interface {
	Conn
	SourceAddr(dst netip.AddrPort) (netip.Addr, error)
}

// UDPConn is a Conn over a *net.UDPConn that learns the destination address
// of each datagram (IP_PKTINFO / IPV6_RECVPKTINFO) and sends from a chosen
// source address, so one wildcard socket serves every local address.
//
// On a wildcard socket, SourceAddr looks up the source address the kernel
// chooses for a destination, with an unbound probe socket per family in the
// socket's network namespace (made when the UDPConn is made).
type UDPConn struct {
	c     *net.UDPConn
	local netip.AddrPort
	v6    bool

	// probes looks up source addresses for a wildcard socket (nil when
	// the socket is bound to an address).
	probes *routesrc.Prober
}

var _ SourceAddrConn = (*UDPConn)(nil)

// ListenUDP opens a UDP socket on addr ("0.0.0.0:500", "[::]:4500", ...).
func ListenUDP(network string, addr netip.AddrPort) (*UDPConn, error) {
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("ike: listen %v: %w", addr, err)
	}
	u, err := NewUDPConn(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return u, nil
}

// NewUDPConn wraps c, enabling packet info on it.
func NewUDPConn(c *net.UDPConn) (*UDPConn, error) {
	la := c.LocalAddr().(*net.UDPAddr).AddrPort()
	u := &UDPConn{c: c, local: la, v6: la.Addr().Is6() && !la.Addr().Is4In6()}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if u.v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
			// Dual-stack sockets see IPv4 too.
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("ike: enable packet info: %w", err)
	}
	if la.Addr().IsUnspecified() {
		u.probes = routesrc.NewForSocket(rc, true, u.v6)
	}
	return u, nil
}

// SourceAddr implements SourceAddrConn: the socket's own address when it is
// bound to one, else the address the kernel would send from to reach dst.
func (u *UDPConn) SourceAddr(dst netip.AddrPort) (netip.Addr, error) {
	if !u.local.Addr().IsUnspecified() {
		return u.local.Addr(), nil
	}
	if dst.Port() == 0 {
		dst = netip.AddrPortFrom(dst.Addr(), DefaultIKEPort)
	}
	src, err := u.probes.Source(dst)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("ike: on %v: %w", u.local, err)
	}
	return src, nil
}

// ReadPacket implements Conn.
func (u *UDPConn) ReadPacket(b []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	var oob [64]byte
	n, oobn, _, src, err := u.c.ReadMsgUDPAddrPort(b, oob[:])
	if err != nil {
		return 0, netip.AddrPort{}, netip.AddrPort{}, err
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst := netip.AddrPortFrom(parsePktinfo(oob[:oobn]), u.local.Port())
	return n, src, dst, nil
}

func parsePktinfo(oob []byte) netip.Addr {
	var cm4 ipv4.ControlMessage
	if cm4.Parse(oob) == nil && cm4.Dst != nil {
		a, _ := netip.AddrFromSlice(cm4.Dst)
		return a.Unmap()
	}
	var cm6 ipv6.ControlMessage
	if cm6.Parse(oob) == nil && cm6.Dst != nil {
		a, _ := netip.AddrFromSlice(cm6.Dst)
		return a.Unmap()
	}
	return netip.Addr{}
}

// WritePacket implements Conn.
func (u *UDPConn) WritePacket(b []byte, src, dst netip.AddrPort) error {
	var oob []byte
	if u.local.Addr().IsUnspecified() && src.Addr().IsValid() && !src.Addr().IsUnspecified() {
		if src.Addr().Is4() && !u.v6 {
			oob = (&ipv4.ControlMessage{Src: src.Addr().AsSlice()}).Marshal()
		} else {
			oob = (&ipv6.ControlMessage{Src: netip.AddrFrom16(src.Addr().As16()).AsSlice()}).Marshal()
		}
	}
	if u.v6 && dst.Addr().Is4() {
		dst = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
	}
	_, _, err := u.c.WriteMsgUDPAddrPort(b, oob, dst)
	if err != nil && oob != nil && errors.Is(err, syscall.EINVAL) {
		// The source address is gone (roaming): let the kernel choose.
		_, _, err = u.c.WriteMsgUDPAddrPort(b, nil, dst)
	}
	return err
}

// LocalAddr implements Conn.
func (u *UDPConn) LocalAddr() netip.AddrPort { return u.local }

// Close implements Conn.
func (u *UDPConn) Close() error {
	if u.probes != nil {
		u.probes.Close()
	}
	return u.c.Close()
}

// UDPConn returns the underlying socket (for UDP_ENCAP_ESPINUDP with XFRM).
func (u *UDPConn) UDPConn() *net.UDPConn { return u.c }
