//go:build linux

package userspace_test

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane/tuntest"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
)

// newNetnsBackend starts a backend with its own port-4500 sockets in ns
// (and a channel TUN: these tests only use port 4500).
func newNetnsBackend(t *testing.T, ns *testenv.Netns) *userspace.Backend {
	t.Helper()
	var b *userspace.Backend
	if err := ns.Do(func() (err error) {
		b, err = userspace.New(userspace.Config{FIB: routing.New(), TUN: tuntest.NewChannelTUN(1), Logger: quiet})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestNetnsNATTAddresses checks, on the kernel's sockets, that an IKE
// datagram sent to one of several addresses of a host comes out of
// ReadPacket with that address, that WritePacket answers from it, that
// SourceAddr tells the kernel's choice, and that NAT keepalives leave.
func TestNetnsNATTAddresses(t *testing.T) {
	srv, cli := testenv.NewNetns(t, "nts"), testenv.NewNetns(t, "ntc")
	testenv.Veth(t, srv, "eth0", cli, "eth0")
	// Two subnets on one link, both families: the kernel picks the source
	// by subnet, so each address is the natural source towards one client
	// address, and the other one must be asked for.
	srvAddrs := []string{"192.0.2.1/24", "198.51.100.1/24", "2001:db8:1::1/64", "2001:db8:2::1/64"}
	cliAddrs := []string{"192.0.2.2/24", "198.51.100.2/24", "2001:db8:1::2/64", "2001:db8:2::2/64"}
	for i := range srvAddrs {
		srv.MustIP("addr", "add", srvAddrs[i], "dev", "eth0", "nodad")
		cli.MustIP("addr", "add", cliAddrs[i], "dev", "eth0", "nodad")
	}
	b := newNetnsBackend(t, srv)
	c := b.NATT()
	defer c.Close()
	if la := c.LocalAddr(); la != netip.MustParseAddrPort("0.0.0.0:4500") {
		t.Fatalf("LocalAddr %v", la)
	}
	ike := append([]byte{0, 0, 0, 0}, "IKE_SA_INIT............"...)
	buf := make([]byte, 2048)
	for i := range srvAddrs {
		to := netip.MustParsePrefix(srvAddrs[i]).Addr()
		from := netip.MustParsePrefix(cliAddrs[i]).Addr()
		other := netip.MustParsePrefix(srvAddrs[i^1]).Addr() // the other subnet's address, same family
		if a, err := c.SourceAddr(netip.AddrPortFrom(from, 4500)); err != nil || a != to {
			t.Fatalf("SourceAddr(%v) = %v, %v; want %v", from, a, err, to)
		}
		var s *net.UDPConn
		if err := cli.Do(func() (err error) {
			s, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, dst := range []netip.Addr{to, other} {
			if _, err := s.WriteToUDPAddrPort(ike, netip.AddrPortFrom(dst, 4500)); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, src, got, err := c.ReadPacket(buf)
			if err != nil || !bytes.Equal(buf[:n], ike) {
				t.Fatalf("ReadPacket: %q, %v", buf[:n], err)
			}
			if src != s.LocalAddr().(*net.UDPAddr).AddrPort() || got != netip.AddrPortFrom(dst, 4500) {
				t.Fatalf("datagram from %v to %v: ReadPacket says from %v to %v", s.LocalAddr(), dst, src, got)
			}
			// The answer leaves from the address that was asked, even
			// when the kernel would choose the other one.
			if err := c.WritePacket(ike, got, src); err != nil {
				t.Fatal(err)
			}
			s.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, ansFrom, err := s.ReadFromUDPAddrPort(buf)
			if err != nil || !bytes.Equal(buf[:n], ike) || ansFrom != netip.AddrPortFrom(dst, 4500) {
				t.Fatalf("answer to %v from %v: %q, %v; want it from %v:4500", src, ansFrom, buf[:n], err, dst)
			}
		}
		if err := c.WritePacket([]byte{0xff}, netip.AddrPort{}, s.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, ansFrom, err := s.ReadFromUDPAddrPort(buf); err != nil || n != 1 || buf[0] != 0xff || ansFrom != netip.AddrPortFrom(to, 4500) {
			t.Fatalf("keepalive: %x from %v, %v", buf[:n], ansFrom, err)
		}
	}
}

// TestNetnsNATKeepalive runs the IKE engine of a CPE behind a NAT on the
// backend's port-4500 conn: the engine learns its real address from the
// conn, detects the NAT, floats to 4500 and sends NAT keepalives (RFC 3948
// §2.3) that leave through the backend's socket and reach the hub through
// the NAT.
//
//	cpe (10.0.0.2) -- (10.0.0.1) nat (192.0.2.1, masquerade) -- (192.0.2.2) hub
func TestNetnsNATKeepalive(t *testing.T) {
	nft := testenv.Binary(t, "nft", "apt-get install nftables")
	cpe, nat, hub := testenv.NewNetns(t, "nkc"), testenv.NewNetns(t, "nkn"), testenv.NewNetns(t, "nkh")
	testenv.Veth(t, cpe, "eth0", nat, "lan0")
	testenv.Veth(t, nat, "wan0", hub, "eth0")
	cpe.MustIP("addr", "add", "10.0.0.2/24", "dev", "eth0")
	cpe.MustIP("route", "add", "default", "via", "10.0.0.1")
	nat.MustIP("addr", "add", "10.0.0.1/24", "dev", "lan0")
	nat.MustIP("addr", "add", "192.0.2.1/24", "dev", "wan0")
	hub.MustIP("addr", "add", "192.0.2.2/24", "dev", "eth0")
	if out, err := nat.Run("sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		t.Fatalf("sysctl: %v %s", err, out)
	}
	rules := filepath.Join(t.TempDir(), "nat.nft")
	if err := os.WriteFile(rules, []byte(`table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" masquerade
	}
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := nat.Run(nft, "-f", rules); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}

	psk := []byte("natt-keepalive-test-psk")
	hubID, cpeID := auth.MustParseID("fqdn:hub.example.net"), auth.MustParseID("fqdn:cpe.example.net")
	config := func(id auth.ID) ike.Config {
		return ike.Config{
			Local: auth.Local{ID: id, PSK: psk},
			Peers: auth.Static(auth.Rule{Pattern: auth.MustParsePattern("any"), Peer: &auth.Peer{PSK: psk}}),
		}
	}
	listen := func(ns *testenv.Netns, port uint16) *ike.UDPConn {
		var c *ike.UDPConn
		if err := ns.Do(func() (err error) {
			c, err = ike.ListenUDP("udp4", netip.AddrPortFrom(netip.IPv4Unspecified(), port))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return c
	}

	hubMgr, err := ike.New(config(hubID))
	if err != nil {
		t.Fatal(err)
	}
	defer hubMgr.Close()
	hubMgr.AddConn(listen(hub, 500), false)
	keepalives := make(chan netip.AddrPort, 16)
	hubMgr.AddConn(keepaliveTap{listen(hub, 4500), keepalives}, true)

	b := newNetnsBackend(t, cpe)
	cfg := config(cpeID)
	cfg.NATKeepalive = 200 * time.Millisecond
	cpeMgr, err := ike.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cpeMgr.Close()
	cpeMgr.AddConn(listen(cpe, 500), false)
	cpeMgr.AddConn(b.NATT(), true)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa, err := cpeMgr.Initiate(ctx, ike.Connection{Remote: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.2:500")},
		RemoteID: hubID, Childless: true})
	if err != nil {
		t.Fatal(err)
	}
	info := sa.Info()
	if !info.NATLocal || !info.Encap || info.Local != netip.MustParseAddrPort("10.0.0.2:4500") {
		t.Fatalf("CPE's IKE SA: local %v, behind a NAT %v, encapsulated %v; want 10.0.0.2:4500 behind a NAT",
			info.Local, info.NATLocal, info.Encap)
	}
	timeout := time.After(10 * time.Second)
	for i := range 3 {
		select {
		case from := <-keepalives:
			if from.Addr() != netip.MustParseAddr("192.0.2.1") {
				t.Fatalf("keepalive from %v, not through the NAT", from)
			}
		case <-timeout:
			t.Fatalf("the hub received %d NAT keepalives in 10s (CPE: %+v)", i, cpeMgr.Stats())
		}
	}
	if remote := hubMgr.SAs()[0].Remote; remote.Addr() != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("the hub sees the CPE at %v, not behind the NAT's address", remote)
	}
	if err := sa.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// keepaliveTap is the hub's NAT-T socket, reporting the sender of every
// NAT keepalive it reads.
type keepaliveTap struct {
	ike.Conn
	seen chan<- netip.AddrPort
}

func (k keepaliveTap) ReadPacket(b []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	n, src, dst, err := k.Conn.ReadPacket(b)
	if err == nil && n == 1 && b[0] == 0xff {
		select {
		case k.seen <- src:
		default:
		}
	}
	return n, src, dst, err
}
