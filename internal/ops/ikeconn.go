package ops

import (
	"errors"
	"net"
	"net/netip"
)

// PacketConn adapts a net.PacketConn, such as the userspace data plane's
// port-4500 conn (userspace.Backend.IKEConn), to the IKE engine's Conn
// (ike.Manager.AddConn). The engine learns no destination address from it:
// datagrams are taken as sent to the conn's own address.
type PacketConn struct {
	pc    net.PacketConn
	local netip.AddrPort
}

// NewPacketConn wraps pc.
func NewPacketConn(pc net.PacketConn) *PacketConn {
	var local netip.AddrPort
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		local = ua.AddrPort()
		local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	}
	return &PacketConn{pc: pc, local: local}
}

// ReadPacket implements ike.Conn.
func (c *PacketConn) ReadPacket(b []byte) (int, netip.AddrPort, netip.AddrPort, error) {
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

// WritePacket implements ike.Conn; the source address is the conn's own.
func (c *PacketConn) WritePacket(b []byte, _, dst netip.AddrPort) error {
	_, err := c.pc.WriteTo(b, net.UDPAddrFromAddrPort(dst))
	return err
}

// LocalAddr implements ike.Conn.
func (c *PacketConn) LocalAddr() netip.AddrPort { return c.local }

// Close implements ike.Conn.
func (c *PacketConn) Close() error { return c.pc.Close() }
