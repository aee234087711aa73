package userspace_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace/conntest"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/transform"
)

// readOne reads one datagram from an in-memory conn, or fails after 5 s.
func readOne(t *testing.T, c *conntest.Conn) userspace.Message {
	t.Helper()
	got := make(chan userspace.Message, 1)
	go func() {
		ms := []userspace.Message{{Buf: make([]byte, 2048)}}
		if n, err := c.ReadBatch(ms); err == nil && n == 1 {
			got <- ms[0]
		}
	}()
	select {
	case m := <-got:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("nothing arrived within 5s")
		return userspace.Message{}
	}
}

// TestNATTConn checks the IKE engine's view of port 4500: the local
// address of each IKE datagram, the chosen source of answers, NAT
// keepalives out, refusal of anything that is not IKE, and independent
// closing of conns that share the sockets.
func TestNATTConn(t *testing.T) {
	leakCheck(t)
	_, b, nw := pair(t, transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}, false, true)
	peer := netip.MustParseAddrPort("192.0.2.66:4500")
	inject := nw.Listen(peer, false)
	defer inject.Close()
	put := func(p []byte) {
		t.Helper()
		if _, err := inject.WriteBatch([]userspace.Message{{Buf: p, N: len(p), Addr: b.addr}}); err != nil {
			t.Fatal(err)
		}
	}
	var srcs []netip.AddrPort
	nw.Tap = func(src, dst netip.AddrPort, _ bool, _ []byte) {
		if dst == peer {
			srcs = append(srcs, src) // only the test goroutine sends to peer
		}
	}

	c := b.b.NATT()
	if got := c.LocalAddr(); got != b.addr {
		t.Fatalf("LocalAddr %v, want %v", got, b.addr)
	}
	if a, err := c.SourceAddr(peer); err != nil || a != b.addr.Addr() {
		t.Fatalf("SourceAddr of a bound socket: %v, %v", a, err)
	}
	ike := append([]byte{0, 0, 0, 0}, "IKE_SA_INIT request......"...)
	put(ike)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, src, dst, err := c.ReadPacket(buf)
	if err != nil || !bytes.Equal(buf[:n], ike) || src != peer || dst != b.addr {
		t.Fatalf("ReadPacket: %v %q from %v to %v", err, buf[:n], src, dst)
	}
	// The answer leaves from the address it was asked of.
	alt := netip.MustParseAddrPort("192.0.2.102:4500")
	if err := c.WritePacket(ike, alt, peer); err != nil {
		t.Fatal(err)
	}
	if m := readOne(t, inject); !bytes.Equal(m.Buf[:m.N], ike) || m.Addr != alt {
		t.Fatalf("answer %q from %v, want from %v", m.Buf[:m.N], m.Addr, alt)
	}
	// NAT keepalives (RFC 3948 §2.3) leave through both views.
	if err := c.WritePacket([]byte{0xff}, netip.AddrPort{}, peer); err != nil {
		t.Fatalf("keepalive: %v", err)
	}
	if m := readOne(t, inject); m.N != 1 || m.Buf[0] != 0xff || m.Addr != b.addr {
		t.Fatalf("keepalive on the wire: %x from %v", m.Buf[:m.N], m.Addr)
	}
	if _, err := b.b.IKEConn().WriteTo([]byte{0xff}, net.UDPAddrFromAddrPort(peer)); err != nil {
		t.Fatalf("keepalive through IKEConn: %v", err)
	}
	if m := readOne(t, inject); m.N != 1 || m.Buf[0] != 0xff {
		t.Fatalf("keepalive through IKEConn on the wire: %x", m.Buf[:m.N])
	}
	if len(srcs) != 3 || srcs[0] != alt || srcs[1] != b.addr || srcs[2] != b.addr {
		t.Fatalf("sources on the wire %v", srcs)
	}
	// What is not IKE nor a keepalive is refused: ESP is the backend's.
	for _, bad := range [][]byte{[]byte("\x00\x00\x10\x01 ESP"), {0xfe}, {0xff, 0xff}, {0, 0, 0}} {
		if err := c.WritePacket(bad, netip.AddrPort{}, peer); err == nil {
			t.Fatalf("sent %x", bad)
		}
	}
	if err := c.WritePacket(ike, netip.MustParseAddrPort("[2001:db8::1]:4500"), peer); err == nil {
		t.Fatal("sent from an IPv6 source to an IPv4 peer")
	}

	// The legacy view offers the same addresses to adapters.
	put(ike)
	type packetConn interface {
		ReadPacket([]byte) (int, netip.AddrPort, netip.AddrPort, error)
	}
	pc := b.b.IKEConn()
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, src, dst, err := pc.(packetConn).ReadPacket(buf); err != nil || src != peer || dst != b.addr {
		t.Fatalf("IKEConn ReadPacket: %v from %v to %v", err, src, dst)
	}
	pc.SetReadDeadline(time.Time{})

	// Closing a conn wakes its pending read and leaves the others working.
	c.SetReadDeadline(time.Time{})
	woke := make(chan error, 1)
	go func() {
		_, _, _, err := c.ReadPacket(buf)
		woke <- err
	}()
	c.Close()
	select {
	case err := <-woke:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("pending read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the pending read")
	}
	if err := c.WritePacket(ike, netip.AddrPort{}, peer); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	next := b.b.NATT()
	put(ike)
	next.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, src, _, err := next.ReadPacket(buf); err != nil || src != peer {
		t.Fatalf("a new conn after another closed: %v from %v", err, src)
	}
	next.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, _, err := next.ReadPacket(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past deadline: %v", err)
	}
	next.SetReadDeadline(time.Time{})
	// The backend's Close ends every conn.
	go func() {
		_, _, _, err := next.ReadPacket(buf)
		woke <- err
	}()
	b.b.Close()
	select {
	case err := <-woke:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("pending read after the backend's Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's Close did not wake the pending read")
	}
	if _, _, err := pc.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("IKEConn after the backend's Close: %v", err)
	}
}

// TestOpsPacketConn checks that the daemons' adapter of IKEConn
// (internal/ops.PacketConn, which the hub hands the IKE engine) passes
// each datagram's local address and the chosen source through.
func TestOpsPacketConn(t *testing.T) {
	_, b, nw := pair(t, transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}, false, true)
	peer := netip.MustParseAddrPort("192.0.2.66:4500")
	inject := nw.Listen(peer, false)
	defer inject.Close()
	c := ops.NewPacketConn(b.b.IKEConn())
	ike := append([]byte{0, 0, 0, 0}, "IKE_AUTH request"...)
	if _, err := inject.WriteBatch([]userspace.Message{{Buf: ike, N: len(ike), Addr: b.addr}}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	b.b.IKEConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, src, dst, err := c.ReadPacket(buf); err != nil || src != peer || dst != b.addr {
		t.Fatalf("ReadPacket: %v from %v to %v", err, src, dst)
	}
	alt := netip.MustParseAddrPort("192.0.2.102:4500")
	if err := c.WritePacket(ike, alt, peer); err != nil {
		t.Fatal(err)
	}
	if m := readOne(t, inject); m.Addr != alt {
		t.Fatalf("answer from %v, want %v", m.Addr, alt)
	}
	if a, err := c.SourceAddr(peer); err != nil || a != b.addr.Addr() {
		t.Fatalf("SourceAddr: %v, %v", a, err)
	}
}
