package userspace_test

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/tuntest"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace/conntest"
	"github.com/mpsa-vpn/mpsa/routing"
	"github.com/mpsa-vpn/mpsa/transform"
)

// TestFewerBatchesThanSockets gives a backend two sockets and a single
// inbound batch, and sends ESP and IKE to each socket in turn, each only
// after the previous one arrived. A reader that waited for its socket
// holding the batch would starve the other socket for good (on a CPE with
// UDP and raw ESP sockets of both families and two batches, IKE on port
// 4500 went unread); a reader that takes the batch once a datagram is
// there cannot.
func TestFewerBatchesThanSockets(t *testing.T) {
	t.Run("in memory", func(t *testing.T) {
		leakCheck(t)
		nw := conntest.NewNetwork()
		a := netip.MustParseAddrPort("192.0.2.1:4500")
		b1, b2 := netip.MustParseAddrPort("192.0.2.2:4500"), netip.MustParseAddrPort("192.0.2.3:4500")
		ike := nw.Listen(netip.MustParseAddrPort("192.0.2.66:4500"), false)
		defer ike.Close()
		fewerBatches(t, nw.Listen(a, false), a, nw.Listen(b1, false), b1, nw.Listen(b2, false), b2,
			func(p []byte, to netip.AddrPort) error {
				_, err := ike.WriteBatch([]userspace.Message{{Buf: p, N: len(p), Addr: to}})
				return err
			})
	})
	t.Run("kernel sockets", func(t *testing.T) {
		leakCheck(t)
		listen := func(s string) (userspace.Conn, netip.AddrPort) {
			c, err := userspace.ListenUDP(netip.MustParseAddrPort(s))
			if err != nil {
				t.Fatal(err)
			}
			return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
		}
		ca, a := listen("127.0.0.1:0")
		c1, b1 := listen("127.0.0.1:0")
		c2, b2 := listen("127.0.0.2:0")
		ike, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer ike.Close()
		fewerBatches(t, ca, a, c1, b1, c2, b2, func(p []byte, to netip.AddrPort) error {
			_, err := ike.WriteToUDPAddrPort(p, to)
			return err
		})
	})
}

// fewerBatches runs TestFewerBatchesThanSockets over the given conns:
// backend A on ca (at a), backend B on c1 and c2 (at b1 and b2) with one
// inbound batch; sendIKE puts an IKE datagram on the wire from elsewhere.
func fewerBatches(t *testing.T, ca userspace.Conn, a netip.AddrPort, c1 userspace.Conn, b1 netip.AddrPort, c2 userspace.Conn, b2 netip.AddrPort,
	sendIKE func(p []byte, to netip.AddrPort) error) {
	s := transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}
	mk := func(conns []userspace.Conn, rxBatches int) *node {
		n := &node{tun: tuntest.NewChannelTUN(8), fib: routing.New()}
		b, err := userspace.New(userspace.Config{FIB: n.fib, TUN: n.tun, Conns: conns, Workers: 2, Logger: quiet,
			TxBatches: 1, RxBatches: rxBatches})
		if err != nil {
			t.Fatal(err)
		}
		n.b = b
		t.Cleanup(func() { b.Close() })
		return n
	}
	na := mk([]userspace.Conn{ca}, 0)
	nb := mk([]userspace.Conn{c1, c2}, 1)
	// A reaches B's LAN 10.2.0.0/24 through b1 and 10.3.0.0/24 through b2.
	addRoute(t, na.fib, netip.MustParsePrefix("10.2.0.0/24"), routing.NextHop{Endpoint: b1, Tunnel: groupTunnel})
	addRoute(t, na.fib, netip.MustParsePrefix("10.3.0.0/24"), routing.NextHop{Endpoint: b2, Tunnel: groupTunnel})
	for i, n := range []*node{na, nb} {
		st := &dataplane.State{SAs: []dataplane.SA{{Keys: groupKeys(t, s, 0xc0ffee01), Dir: dataplane.Both, Tunnel: groupTunnel,
			ReplayWindow: 128, SenderIDBits: 8, SenderID: uint32(i + 1)}}}
		if err := n.b.Set(st); err != nil {
			t.Fatal(err)
		}
	}
	natt := nb.b.NATT()
	defer natt.Close()
	src := netip.MustParseAddr("10.1.0.5")
	buf := make([]byte, 1500)
	for i := range 10 {
		for k, to := range []netip.AddrPort{b1, b2} {
			dst := netip.AddrFrom4([4]byte{10, byte(2 + k), 0, 9})
			send(t, na.tun, tuntest.Ping(dst, src, 1, uint16(i), nil))
			if _, got, _ := tuntest.Addrs(recv(t, nb.tun)); got != dst {
				t.Fatalf("round %d: ESP to %v delivered for %v, want %v", i, to, got, dst)
			}
			msg := append([]byte{0, 0, 0, 0}, "IKE_SA_INIT request......"...)
			msg[4], msg[5] = byte(i), byte(k)
			if err := sendIKE(msg, to); err != nil {
				t.Fatal(err)
			}
			natt.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, at, err := natt.ReadPacket(buf)
			if err != nil || !bytes.Equal(buf[:n], msg) {
				t.Fatalf("round %d: IKE to %v: %v %x", i, to, err, buf[:n])
			}
			if at.Port() != to.Port() {
				t.Fatalf("round %d: IKE to %v read at %v", i, to, at)
			}
		}
	}
	if d := nb.b.Stats().Drops; len(d) != 0 {
		t.Fatalf("drops at B: %v", d)
	}
}
