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
	listen := func(addr string) *UDPConn {
		c, err := ListenUDP("udp4", netip.MustParseAddrPort(addr))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	r500, r4500 := listen("0.0.0.0:0"), listen("0.0.0.0:0")
	i500, i4500 := listen("127.0.0.1:0"), listen("127.0.0.1:0")
	newM := func(cfg Config, c500, c4500 *UDPConn, name string) (*Manager, chan Event) {
		events := make(chan Event, 64)
		cfg.Events = func(ev Event) { events <- ev }
		cfg.Logger = testLogger(t, name)
		cfg.MOBIKE = true // float to the NAT-T socket without a NAT
		cfg.NATTPort = r4500.LocalAddr().Port()
		m, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.AddConn(c500, false)
		m.AddConn(c4500, true)
		t.Cleanup(m.Close)
		return m, events
	}
	rcfg := baseConfig(hubID)
	rcfg.LocalTS = []netip.Prefix{netip.MustParsePrefix("10.99.1.0/24")}
	rcfg.RemoteTS = []netip.Prefix{netip.MustParsePrefix("10.99.2.0/24")}
	hub, hubEvents := newM(rcfg, r500, r4500, "hub")
	cpe, _ := newM(baseConfig(cpeID), i500, i4500, "cpe")
	remote := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r500.LocalAddr().Port())
	sa, err := cpe.Initiate(ctx(t), Connection{Remote: []netip.AddrPort{remote}, RemoteID: hubID,
		LocalTS: []netip.Prefix{netip.MustParsePrefix("10.99.2.0/24")}, RemoteTS: []netip.Prefix{netip.MustParsePrefix("10.99.1.0/24")}})
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
