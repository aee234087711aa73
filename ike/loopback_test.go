package ike

import (
	"net/netip"
	"testing"
	"time"
)

// TestLoopback runs an initiator and a responder on real UDP sockets on
// loopback (ephemeral ports standing in for 500 and 4500, so no privileges
// are needed): wildcard sockets with packet info, the float to the NAT-T
// socket with the non-ESP marker, a CHILD_SA and IKE rekey, a delete.
func TestLoopback(t *testing.T) {
	checkGoroutines(t)
	r500, r4500 := listenLoopback(t, "0.0.0.0:0"), listenLoopback(t, "0.0.0.0:0")
	i500, i4500 := listenLoopback(t, "127.0.0.1:0"), listenLoopback(t, "127.0.0.1:0")
	// MOBIKE: float to the NAT-T socket without a NAT.
	hub, hubEvents := loopbackManager(t, loopbackHub(), r500, r4500, r4500, true, "hub")
	cpe, _ := loopbackManager(t, baseConfig(cpeID), i500, i4500, r4500, true, "cpe")
	remote := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r500.LocalAddr().Port())
	sa, err := cpe.Initiate(ctx(t), loopbackConn(remote))
	if err != nil {
		t.Fatal(err)
	}
	var hubSA *SA
	select {
	case ev := <-hubEvents:
		hubSA = ev.SA
	case <-time.After(stepTimeout):
		t.Fatal("no event on the hub")
	}
	hi := hubSA.Info()
	// The hub learnt its own address from packet info on a wildcard socket
	// and sees the CPE on its NAT-T socket.
	if hi.Local != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r4500.LocalAddr().Port()) || hi.Remote != i4500.LocalAddr() {
		t.Fatalf("hub path %v <- %v", hi.Local, hi.Remote)
	}
	if err := sa.RekeyChild(ctx(t), firstChild(sa).InSPI); err != nil {
		t.Fatal(err)
	}
	// The old CHILD_SA's delete follows the rekey; a rekey of the IKE SA
	// meanwhile would get TEMPORARY_FAILURE (RFC 7296 §2.25.2).
	for ev := range hubEvents {
		if ev.Kind == EventChildDown {
			break
		}
	}
	if err := hubSA.RekeyIKE(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := sa.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hubSA.Done():
	case <-time.After(stepTimeout):
		t.Fatal("hub SA not deleted")
	}
	if st := hub.Stats(); st.DroppedMalformed+st.DroppedIntegrity+st.DroppedUnexpected != 0 {
		t.Fatalf("hub dropped datagrams: %+v", st)
	}
}

func listenLoopback(t *testing.T, addr string) *UDPConn {
	t.Helper()
	c, err := ListenUDP("udp4", netip.MustParseAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// loopbackManager starts a manager on two sockets; the peer's NAT-T port
// is natt's. mobike offers MOBIKE, which floats to the NAT-T socket even
// without a NAT.
func loopbackManager(t *testing.T, cfg Config, c500, c4500 Conn, natt *UDPConn, mobike bool, name string) (*Manager, chan Event) {
	t.Helper()
	events := make(chan Event, 64)
	cfg.Events = func(ev Event) { events <- ev }
	cfg.Logger = testLogger(t, name)
	cfg.MOBIKE = mobike
	cfg.NATTPort = natt.LocalAddr().Port()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.AddConn(c500, false)
	m.AddConn(c4500, true)
	t.Cleanup(m.Close)
	return m, events
}

// loopbackHub is the responder's configuration of the loopback tests.
func loopbackHub() Config {
	cfg := baseConfig(hubID)
	cfg.LocalTS = []netip.Prefix{netip.MustParsePrefix("10.99.1.0/24")}
	cfg.RemoteTS = []netip.Prefix{netip.MustParsePrefix("10.99.2.0/24")}
	return cfg
}

func loopbackConn(remote netip.AddrPort) Connection {
	return Connection{Remote: []netip.AddrPort{remote}, RemoteID: hubID,
		LocalTS: []netip.Prefix{netip.MustParsePrefix("10.99.2.0/24")}, RemoteTS: []netip.Prefix{netip.MustParsePrefix("10.99.1.0/24")}}
}

// childUp waits for the next EventChildUp.
func childUp(t *testing.T, events chan Event) Event {
	t.Helper()
	for {
		select {
		case ev := <-events:
			if ev.Kind == EventChildUp {
				return ev
			}
		case <-time.After(stepTimeout):
			t.Fatal("no CHILD_SA event")
		}
	}
}

// blindConn is a socket that cannot tell the destination address of a
// datagram nor look up its source address (no packet info, no route
// lookup), like a data plane's conn that only hands over datagrams.
type blindConn struct{ c Conn }

func (b blindConn) ReadPacket(p []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	n, src, _, err := b.c.ReadPacket(p)
	return n, src, netip.AddrPort{}, err
}
func (b blindConn) WritePacket(p []byte, _, dst netip.AddrPort) error {
	return b.c.WritePacket(p, netip.AddrPort{}, dst)
}
func (b blindConn) LocalAddr() netip.AddrPort { return b.c.LocalAddr() }
func (b blindConn) Close() error              { return b.c.Close() }

// TestLoopbackWildcardNAT: an initiator on wildcard sockets and no
// Connection.Local, with no NAT on the path, must neither believe it is
// behind a NAT nor make the responder believe it (RFC 7296 §2.23: NAT-D
// hashes the real address). With packet info and route lookup (UDPConn)
// it learns 127.0.0.1 and NAT detection runs; on sockets that can tell
// nothing it sends no NAT_DETECTION_SOURCE_IP and claims no NAT. Both
// ends of both runs see no NAT and negotiate plain ESP.
func TestLoopbackWildcardNAT(t *testing.T) {
	for _, blind := range []bool{false, true} {
		name := "packet info"
		if blind {
			name = "blind sockets"
		}
		t.Run(name, func(t *testing.T) {
			checkGoroutines(t)
			r500, r4500 := listenLoopback(t, "127.0.0.1:0"), listenLoopback(t, "127.0.0.1:0")
			i500, i4500 := listenLoopback(t, "0.0.0.0:0"), listenLoopback(t, "0.0.0.0:0")
			var ic500, ic4500 Conn = i500, i4500
			if blind {
				ic500, ic4500 = blindConn{i500}, blindConn{i4500}
			}
			lo := netip.MustParseAddr("127.0.0.1")
			if a, err := i500.SourceAddr(netip.AddrPortFrom(lo, 500)); err != nil || a != lo {
				t.Fatalf("route lookup on the wildcard socket: %v, %v", a, err)
			}
			hub, hubEvents := loopbackManager(t, loopbackHub(), r500, r4500, r4500, false, "hub")
			cpe, cpeEvents := loopbackManager(t, baseConfig(cpeID), ic500, ic4500, r4500, false, "cpe")
			sa, err := cpe.Initiate(ctx(t), loopbackConn(r500.LocalAddr()))
			if err != nil {
				t.Fatal(err)
			}
			ic, rc := childUp(t, cpeEvents).Child, childUp(t, hubEvents).Child
			ii, hi := sa.Info(), hub.SAs()[0]
			if ii.NATLocal || ii.NATRemote || hi.NATLocal || hi.NATRemote {
				t.Fatalf("NAT claimed without a NAT: initiator local %v remote %v, responder local %v remote %v",
					ii.NATLocal, ii.NATRemote, hi.NATLocal, hi.NATRemote)
			}
			if ic.Encap || rc.Encap || ii.Encap {
				t.Fatal("ESP UDP-encapsulated without a NAT")
			}
			if !blind && ii.Local != netip.AddrPortFrom(lo, i500.LocalAddr().Port()) {
				t.Fatalf("initiator's local address %v, want 127.0.0.1", ii.Local)
			}
			if rc.Remote != netip.AddrPortFrom(lo, i500.LocalAddr().Port()) {
				t.Fatalf("responder's CHILD_SA peer %v", rc.Remote)
			}
			if err := sa.Close(ctx(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLoopbackBlindNATT: a responder whose NAT-T socket cannot tell
// datagrams' destination (as the userspace data plane's port-4500 conn
// handed over through internal/ops.PacketConn) keeps the local address
// it learnt on port 500 when the initiator floats to 4500, instead of
// taking the wildcard for its address.
func TestLoopbackBlindNATT(t *testing.T) {
	checkGoroutines(t)
	r500, r4500 := listenLoopback(t, "0.0.0.0:0"), listenLoopback(t, "0.0.0.0:0")
	i500, i4500 := listenLoopback(t, "127.0.0.1:0"), listenLoopback(t, "127.0.0.1:0")
	_, hubEvents := loopbackManager(t, loopbackHub(), r500, blindConn{r4500}, r4500, true, "hub")
	cpe, _ := loopbackManager(t, baseConfig(cpeID), i500, i4500, r4500, true, "cpe")
	lo := netip.MustParseAddr("127.0.0.1")
	sa, err := cpe.Initiate(ctx(t), loopbackConn(netip.AddrPortFrom(lo, r500.LocalAddr().Port())))
	if err != nil {
		t.Fatal(err)
	}
	ev := childUp(t, hubEvents)
	want := netip.AddrPortFrom(lo, r4500.LocalAddr().Port())
	if ev.Info.Local != want || ev.Child.Local != want || ev.Info.NATLocal || ev.Info.NATRemote {
		t.Fatalf("hub's path after the float: local %v, CHILD_SA local %v (want %v), NAT %v/%v",
			ev.Info.Local, ev.Child.Local, want, ev.Info.NATLocal, ev.Info.NATRemote)
	}
	if err := sa.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
}
