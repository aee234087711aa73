package xfrm

import (
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// PrepareIKESocket readies IKE's UDP socket on port 4500 for a kernel data
// plane (RFC 3948): it sets UDP_ENCAP_ESPINUDP, so the kernel takes the
// ESP datagrams (non-zero first word) and leaves IKE's marker-prefixed ones
// to the socket, and it gives the socket bypass policies both ways, so IKE
// itself is never captured by a tunnelled prefix that covers a peer's
// address (strongSwan does the same).
func PrepareIKESocket(conn syscall.Conn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("xfrm: IKE socket: %w", err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = prepareFD(int(fd))
	})
	if err != nil {
		return fmt.Errorf("xfrm: IKE socket: %w", err)
	}
	return serr
}

func prepareFD(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_ENCAP, unix.UDP_ENCAP_ESPINUDP); err != nil {
		return fmt.Errorf("xfrm: UDP_ENCAP_ESPINUDP: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("xfrm: IKE socket: %w", err)
	}
	level, opt, family := unix.IPPROTO_IP, unix.IP_XFRM_POLICY, uint16(unix.AF_INET)
	if _, v6 := sa.(*unix.SockaddrInet6); v6 {
		level, opt, family = unix.IPPROTO_IPV6, unix.IPV6_XFRM_POLICY, unix.AF_INET6
	}
	for _, dir := range []uint8{0, 1} { // XFRM_POLICY_IN, XFRM_POLICY_OUT
		p := nl.XfrmUserpolicyInfo{Dir: dir, Action: 0} // XFRM_POLICY_ALLOW, no templates
		p.Sel.Family = family
		p.Lft.SoftByteLimit, p.Lft.HardByteLimit = nl.XFRM_INF, nl.XFRM_INF
		p.Lft.SoftPacketLimit, p.Lft.HardPacketLimit = nl.XFRM_INF, nl.XFRM_INF
		if err := unix.SetsockoptString(fd, level, opt, string(p.Serialize())); err != nil {
			return fmt.Errorf("xfrm: IKE socket bypass policy (dir %d): %w", dir, err)
		}
	}
	return nil
}
