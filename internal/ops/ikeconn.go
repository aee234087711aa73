package ops

import (
	"errors"
	"net"
	"net/netip"
)

// PacketConn adapts a net.PacketConn, such as the userspace data plane's
// port-4500 conn (userspace.Backend.IKEConn), to the IKE engine's Conn
// (ike.Manager.AddConn). When pc also has ReadPacket, WritePacket and
// SourceAddr (the userspace conn has), the engine learns each datagram's
// local address, answers from it and can look up source addresses
// (ike.SourceAddrConn); otherwise datagrams are taken as sent to the
// conn's own address and SourceAddr reports the address unknown.
type PacketConn struct {
	pc    net.PacketConn
	pp    packetConn // pc, when it tells and chooses local addresses
	sa    sourceAddrConn
	local netip.AddrPort
}

// packetConn is what a net.PacketConn that knows the local address of each
// datagram adds (userspace.Backend.IKEConn's conn).
type packetConn interface {
	ReadPacket(b []byte) (n int, src, dst netip.AddrPort, err error)
	WritePacket(b []byte, src, dst netip.AddrPort) error
}

type sourceAddrConn interface {
	SourceAddr(dst netip.AddrPort) (netip.Addr, error)
}

// NewPacketConn wraps pc.
func NewPacketConn(pc net.PacketConn) *PacketConn {
	var local netip.AddrPort
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		local = ua.AddrPort()
		local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	}
	c := &PacketConn{pc: pc, local: local}
	c.pp, _ = pc.(packetConn)
	c.sa, _ = pc.(sourceAddrConn)
	return c
}

// ReadPacket implements ike.Conn.
func (c *PacketConn) ReadPacket(b []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	if c.pp != nil {
		return c.pp.ReadPacket(b)
	}
	n, addr, err := c.pc.ReadFrom(b)
	if err != nil {
		return 0, netip.AddrPort{}, netip.AddrPort{}, err
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, netip.AddrPort{}, netip.AddrPort{}, errors.New("ops: IKE datagram from a non-UDP address")
	}
	src := ua.AddrPort()
	return n, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), netip.AddrPort{}, nil
}

// WritePacket implements ike.Conn; without the wrapped conn's WritePacket
// the source address is the conn's own.
func (c *PacketConn) WritePacket(b []byte, src, dst netip.AddrPort) error {
	if c.pp != nil {
		return c.pp.WritePacket(b, src, dst)
	}
	_, err := c.pc.WriteTo(b, net.UDPAddrFromAddrPort(dst))
	return err
}

// SourceAddr implements ike.SourceAddrConn: the wrapped conn's answer, or
// an error (address unknown) when it cannot tell.
func (c *PacketConn) SourceAddr(dst netip.AddrPort) (netip.Addr, error) {
	if c.sa != nil {
		return c.sa.SourceAddr(dst)
	}
	return netip.Addr{}, errors.New("ops: the conn cannot look up source addresses")
}

// LocalAddr implements ike.Conn.
func (c *PacketConn) LocalAddr() netip.AddrPort { return c.local }

// Close implements ike.Conn.
func (c *PacketConn) Close() error { return c.pc.Close() }
