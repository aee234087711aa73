package ike

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/iketest"
	"github.com/mpsa-vpn/mpsa/ike/wire"
)

// TestNATFloat: the CPE is behind a NAT. NAT detection sees it on both
// sides, the CPE floats to 4500 for IKE_AUTH (with the non-ESP marker), the
// CHILD_SA is UDP-encapsulated towards the NAT's public port, the CPE sends
// keepalives, and a new NAT mapping moves the hub's SA.
func TestNATFloat(t *testing.T) {
	// Behind a NAT the CPE's own address is not what the hub sees: the
	// hub's policy names the CPE's network.
	p := newPair(t, func(i, r *Config) { r.RemoteTS = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} })
	pub := netip.MustParseAddr("203.0.113.5")
	p.net.NAT(netip.AddrPortFrom(cpeAddr, 500), netip.AddrPortFrom(pub, 40500))
	p.net.NAT(netip.AddrPortFrom(cpeAddr, 4500), netip.AddrPortFrom(pub, 44500))
	res := p.initiate(defaultConn())
	p.expect(wire.IKESAInit, false)
	p.expect(wire.IKESAInit, true)
	d := p.next()
	if d.Dst.Port() != 4500 || d.Src != netip.AddrPortFrom(pub, 44500) {
		t.Fatalf("IKE_AUTH not floated: %v", d)
	}
	p.net.Deliver(d)
	p.expect(wire.IKEAuth, true)
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	ic := p.i.event(EventChildUp).Child
	rc := p.r.event(EventChildUp).Child
	if !ic.Encap || !rc.Encap {
		t.Fatal("CHILD_SA not UDP-encapsulated")
	}
	if rc.Remote != netip.AddrPortFrom(pub, 44500) || ic.Remote != netip.AddrPortFrom(hubAddr, 4500) {
		t.Fatalf("outer addresses %v / %v", rc.Remote, ic.Remote)
	}
	if ii := r.sa.Info(); !ii.NATLocal || ii.NATRemote || !ii.Encap {
		t.Fatalf("initiator NAT view %+v", ii)
	}
	hub := p.r.m.Handles()[0]
	if hi := hub.Info(); !hi.NATRemote || hi.NATLocal {
		t.Fatalf("responder NAT view %+v", hi)
	}
	// Keepalive from behind the NAT.
	p.clk.Advance(DefaultNATKeepalive)
	ka := p.next()
	if len(ka.Data) != 1 || ka.Data[0] != 0xff || ka.Dst != netip.AddrPortFrom(hubAddr, 4500) {
		t.Fatalf("keepalive %v", ka)
	}
	p.net.Deliver(ka)
	// The NAT maps us to a new port: the hub follows on the next
	// authenticated message.
	p.net.NAT(netip.AddrPortFrom(cpeAddr, 4500), netip.AddrPortFrom(pub, 50000))
	done := async(func() error { return r.sa.SendInformational(ctx(t), nil) })
	p.expect(wire.Informational, false)
	p.expect(wire.Informational, true)
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	ev := p.r.event(EventIKEAddressChanged)
	if ev.Info.Remote != netip.AddrPortFrom(pub, 50000) || len(ev.Info.Children) != 1 {
		t.Fatalf("address change %+v", ev.Info)
	}
	if st := p.r.m.Stats(); st.Keepalives != 1 {
		t.Fatalf("keepalives %d", st.Keepalives)
	}
}

// TestForceEncap: a peer that claims to be behind a NAT (strongSwan's
// encap=yes) gets a UDP-encapsulated CHILD_SA.
func TestForceEncap(t *testing.T) {
	p := newPair(t, func(i, r *Config) { i.ForceEncap = true })
	p.establish(defaultConn())
	if rc := p.r.event(EventChildUp).Child; !rc.Encap || rc.Remote.Port() != 4500 {
		t.Fatalf("responder CHILD_SA %+v", rc)
	}
	if ic := p.i.event(EventChildUp).Child; !ic.Encap {
		t.Fatal("initiator CHILD_SA not encapsulated")
	}
}

// TestMOBIKE: the CPE's address changes; UPDATE_SA_ADDRESSES from the new
// address moves the IKE SA and its CHILD_SA on both sides, and the SA keeps
// working.
func TestMOBIKE(t *testing.T) {
	p := newPair(t, func(i, r *Config) { i.MOBIKE, r.MOBIKE = true, true })
	a, b := p.establish(defaultConn())
	if !a.Info().MOBIKE || !b.Info().MOBIKE || !a.Info().Encap {
		t.Fatalf("MOBIKE not negotiated or no float: %+v", a.Info())
	}
	newAddr := netip.MustParseAddr("198.51.100.7")
	p.net.Rebind(p.i.c500, netip.AddrPortFrom(newAddr, 500))
	p.net.Rebind(p.i.c4500, netip.AddrPortFrom(newAddr, 4500))
	done := async(func() error { return a.UpdateAddresses(ctx(t), netip.AddrPortFrom(newAddr, 4500), netip.AddrPort{}) })
	d := p.next()
	if d.Src.Addr() != newAddr {
		t.Fatalf("update not sent from the new address: %v", d)
	}
	m := decodeDatagram(t, d)
	p.net.Deliver(d)
	if m.Exchange != wire.Informational {
		t.Fatalf("%v", m)
	}
	p.expect(wire.Informational, true)
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*endpoint{p.i, p.r} {
		ev := e.event(EventIKEAddressChanged)
		local, remote := ev.Info.Local, ev.Info.Remote
		if e == p.r {
			local, remote = remote, local
		}
		if local.Addr() != newAddr || remote.Addr() != hubAddr || ev.Info.Children[0].Remote != ev.Info.Remote {
			t.Fatalf("%s: addresses %+v", e.name, ev.Info)
		}
	}
	// A message that only changes the source address does not move a
	// MOBIKE SA; the rekey below goes over the new path.
	spi := firstChild(b).InSPI
	done = async(func() error { return b.RekeyChild(ctx(t), spi) })
	req := p.next()
	if req.Dst.Addr() != newAddr {
		t.Fatalf("hub still sends to the old address: %v", req)
	}
	p.net.Deliver(req)
	p.expect(wire.CreateChildSA, true)
	p.expect(wire.Informational, false)
	p.expect(wire.Informational, true)
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	// The responder may not send UPDATE_SA_ADDRESSES.
	if err := b.UpdateAddresses(ctx(t), netip.AddrPort{}, netip.AddrPort{}); err == nil {
		t.Fatal("responder allowed to update addresses")
	}
}

// TestFragmentation: IKE_AUTH messages larger than FragmentSize travel as
// SKF fragments (RFC 7383) when both sides announced support.
func TestFragmentation(t *testing.T) {
	big := func(t wire.NotifyType) *wire.Notify {
		return &wire.Notify{NotifyType: t, Data: bytes.Repeat([]byte{byte(t)}, 400)}
	}
	p := newPair(t, func(i, r *Config) {
		i.Fragmentation, r.Fragmentation = true, true
		i.FragmentSize, r.FragmentSize = 576, 576
		r.Policy.AuthNotifies = func(PeerInfo, []*wire.Notify) []*wire.Notify {
			return []*wire.Notify{big(40970), big(40971)}
		}
	})
	c := defaultConn()
	c.Notifies = []*wire.Notify{big(40960), big(40961), big(40962)}
	res := p.initiate(c)
	p.expect(wire.IKESAInit, false)
	p.expect(wire.IKESAInit, true)
	frags := map[bool]int{}
	for {
		d := p.next()
		if len(d.Data) > 576 {
			t.Fatalf("datagram of %d octets", len(d.Data))
		}
		m := decodeDatagram(t, d)
		p.net.Deliver(d)
		if f, ok := m.Payloads[0].(*wire.Fragment); ok {
			frags[m.IsResponse()]++
			if m.IsResponse() && f.Number == f.Total {
				break
			}
		}
	}
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if frags[false] < 3 || frags[true] < 2 {
		t.Fatalf("fragments %v", frags)
	}
	var got []wire.NotifyType
	for _, n := range p.r.event(EventIKEUp).Info.PeerAuthNotifies {
		got = append(got, n.NotifyType)
	}
	if !slices.Contains(got, 40962) {
		t.Fatalf("responder saw %v", got)
	}
}

// vipPool hands out 10.99.100.x.
type vipPool struct {
	mu       sync.Mutex
	next     byte
	released []netip.Prefix
}

func (v *vipPool) assign(_ context.Context, _ PeerInfo, req []netip.Addr) ([]netip.Prefix, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []netip.Prefix
	for _, a := range req {
		if a.Is4() {
			v.next++
			out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, 100, v.next}), 32))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no IPv6 pool")
	}
	return out, nil
}

func (v *vipPool) release(_ PeerInfo, ps []netip.Prefix) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.released = append(v.released, ps...)
}

// TestVirtualIP: the CPE asks for an IPv4 address; the hub assigns one from
// its pool, narrows TSi to it and gives it back when the SA goes.
func TestVirtualIP(t *testing.T) {
	pool := &vipPool{}
	p := newPair(t, func(i, r *Config) {
		r.Policy.AssignAddresses, r.Policy.ReleaseAddresses = pool.assign, pool.release
	})
	c := defaultConn()
	c.VirtualIPs = []netip.Addr{netip.IPv4Unspecified()}
	a, b := p.establish(c)
	want := netip.MustParsePrefix("10.99.100.1/32")
	if v := a.Info().VIPs; len(v) != 1 || v[0] != want {
		t.Fatalf("initiator VIPs %v", v)
	}
	if v := b.Info().VIPs; len(v) != 1 || v[0] != want {
		t.Fatalf("responder VIPs %v", v)
	}
	ic := p.i.event(EventChildUp).Child
	if got := ic.LocalTS[0].String(); got != "10.99.100.1-10.99.100.1" {
		t.Fatalf("TSi %s", got)
	}
	done := async(func() error { return a.Close(ctx(t)) })
	p.expect(wire.Informational, false)
	p.expect(wire.Informational, true)
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	p.r.event(EventIKEDown)
	pool.mu.Lock()
	released := pool.released
	pool.mu.Unlock()
	if len(released) != 1 || released[0] != want {
		t.Fatalf("released %v", released)
	}
	// IPv6 only: INTERNAL_ADDRESS_FAILURE refuses the CHILD_SA.
	c.VirtualIPs = []netip.Addr{netip.IPv6Unspecified()}
	c.Name = "v6"
	res := p.initiate(c)
	p.expect(wire.IKESAInit, false)
	p.expect(wire.IKESAInit, true)
	p.expect(wire.IKEAuth, false)
	p.expect(wire.IKEAuth, true)
	var pe *ProtocolError
	if r := <-res; !errors.As(r.err, &pe) || pe.Type != wire.NotifyInternalAddressFailure {
		t.Fatalf("Initiate: %v", r.err)
	}
}

// TestExtensionHooks: Vendor IDs in IKE_SA_INIT, extra notifies in IKE_AUTH
// both ways, and notifies in INFORMATIONAL requests both ways.
func TestExtensionHooks(t *testing.T) {
	infoI := make(chan []*wire.Notify, 1)
	infoR := make(chan []*wire.Notify, 1)
	p := newPair(t, func(i, r *Config) {
		i.Policy.VendorIDs = [][]byte{[]byte("mpsa-cpe-v1")}
		r.Policy.VendorIDs = [][]byte{[]byte("mpsa-hub-v1")}
		i.Policy.AuthNotifies = func(_ PeerInfo, peer []*wire.Notify) []*wire.Notify {
			if peer != nil {
				t.Error("initiator hook got peer notifies")
			}
			return []*wire.Notify{{NotifyType: 40962, Data: []byte("cpe-caps")}}
		}
		r.Policy.AuthNotifies = func(pi PeerInfo, peer []*wire.Notify) []*wire.Notify {
			if string(pi.VendorIDs[0]) != "mpsa-cpe-v1" || !slices.ContainsFunc(peer, func(n *wire.Notify) bool { return string(n.Data) == "cpe-caps" }) {
				t.Errorf("responder hook: %v %v", pi.VendorIDs, peer)
			}
			return []*wire.Notify{{NotifyType: 40963, Data: []byte("hub-caps")}}
		}
		i.Policy.Informational = func(_ *SA, ns []*wire.Notify) { infoI <- ns }
		r.Policy.Informational = func(_ *SA, ns []*wire.Notify) { infoR <- ns }
	})
	a, b := p.establish(defaultConn())
	if v := a.Info().PeerVendorIDs; len(v) != 1 || string(v[0]) != "mpsa-hub-v1" {
		t.Fatalf("initiator sees vendor IDs %q", v)
	}
	if !slices.ContainsFunc(a.Info().PeerAuthNotifies, func(n *wire.Notify) bool { return string(n.Data) == "hub-caps" }) {
		t.Fatal("initiator did not get the responder's IKE_AUTH notify")
	}
	p.net.SetAuto(true)
	for _, tc := range []struct {
		from *SA
		ch   chan []*wire.Notify
	}{{b, infoI}, {a, infoR}} {
		n := &wire.Notify{NotifyType: 40964, Data: []byte(strings.Repeat("k", 64))}
		if err := tc.from.SendInformational(ctx(t), []*wire.Notify{n}); err != nil {
			t.Fatal(err)
		}
		got := <-tc.ch
		if len(got) != 1 || got[0].NotifyType != 40964 || string(got[0].Data) != string(n.Data) {
			t.Fatalf("hook got %v", got)
		}
	}
}

// TestInitialContact: a CPE that restarts and connects again with
// INITIAL_CONTACT replaces its old IKE SA on the hub.
func TestInitialContact(t *testing.T) {
	p := newPair(t, nil)
	_, old := p.establish(defaultConn())
	p.i.m.Close() // the CPE reboots without telling the hub
	p.i = newEndpoint(t, p.net, p.clk, "cpe2", cpeAddr, baseConfig(cpeID), 3)
	res := p.initiate(defaultConn())
	p.expect(wire.IKESAInit, false)
	p.expect(wire.IKESAInit, true)
	auth := p.next()
	p.net.Deliver(auth)
	p.expect(wire.IKEAuth, true)
	if r := <-res; r.err != nil {
		t.Fatal(r.err)
	}
	select {
	case <-old.Done():
	case <-time.After(stepTimeout):
		t.Fatal("old SA not replaced")
	}
	if !errors.Is(old.Err(), ErrReplaced) {
		t.Fatalf("old SA ended with %v", old.Err())
	}
	if n := len(p.r.m.SAs()); n != 1 {
		t.Fatalf("hub holds %d SAs", n)
	}
}

// TestDPD: the hub checks liveness after DPDInterval of silence and gives
// the SA up when the CPE stops answering.
func TestDPD(t *testing.T) {
	p := newPair(t, func(i, r *Config) { r.DPDInterval = 30 * time.Second })
	p.establish(defaultConn())
	p.clk.Advance(30 * time.Second)
	if m := p.expect(wire.Informational, false); len(m.Payloads) != 1 {
		t.Fatalf("%v", m)
	}
	p.expect(wire.Informational, true)
	p.clk.Advance(30 * time.Second)
	p.next() // lost, and every retransmission too
	p.exhaustRetransmits()
	if ev := p.r.event(EventIKEDown); !errors.Is(ev.Err, ErrTimeout) {
		t.Fatalf("down with %v", ev.Err)
	}
}

// TestHalfOpenTimeout: a responder SA that is never authenticated goes
// after HalfOpenTimeout.
func TestHalfOpenTimeout(t *testing.T) {
	p := newPair(t, nil)
	p.initiate(defaultConn())
	p.expect(wire.IKESAInit, false)
	p.expect(wire.IKESAInit, true)
	p.next() // IKE_AUTH lost
	if st := p.r.m.Stats(); st.HalfOpen != 1 {
		t.Fatalf("half-open %d", st.HalfOpen)
	}
	h := p.r.m.Handles()[0]
	p.clk.Advance(DefaultHalfOpenTimeout)
	select {
	case <-h.Done():
	case <-time.After(stepTimeout):
		t.Fatal("half-open SA not dropped")
	}
	if st := p.r.m.Stats(); st.HalfOpen != 0 || st.Established != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestInitialContactConcurrent: a CPE that sets up two IKE SAs with the hub
// at once sends INITIAL_CONTACT in neither IKE_AUTH (each SA would make the
// hub delete the other), and the hub keeps both; a later lone setup after
// both are gone sends it again.
func TestInitialContactConcurrent(t *testing.T) {
	p := newPair(t, nil)
	resA, resB := p.initiate(defaultConn()), p.initiate(defaultConn())
	// Both requests, then both responses: both SAs then send IKE_AUTH.
	for _, response := range []bool{false, true} {
		ds := []iketest.Datagram{p.next(), p.next()}
		for _, d := range ds {
			if m := decodeDatagram(t, d); m.Exchange != wire.IKESAInit || m.IsResponse() != response {
				t.Fatalf("got %v, want IKE_SA_INIT response=%v", m, response)
			}
			p.net.Deliver(d)
		}
		p.settle()
	}
	// hasIC delivers the next datagram, an IKE_AUTH request, and reports
	// whether the hub's SA of it saw INITIAL_CONTACT.
	hasIC := func() bool {
		t.Helper()
		d := p.next()
		p.net.Deliver(d)
		p.settle()
		m := decodeDatagram(t, d)
		if m.Exchange != wire.IKEAuth || m.IsResponse() {
			t.Fatalf("got %v, want an IKE_AUTH request", m)
		}
		for _, h := range p.r.m.Handles() {
			if i := h.Info(); i.SPIi == m.SPIi && i.State == StateEstablished {
				for _, n := range i.PeerAuthNotifies {
					if n.NotifyType == wire.NotifyInitialContact {
						return true
					}
				}
				return false
			}
		}
		t.Fatal("the hub did not establish the SA")
		return false
	}
	for range 2 {
		if hasIC() {
			t.Fatal("INITIAL_CONTACT sent while another SA with the hub was being set up")
		}
	}
	for range 2 {
		p.expect(wire.IKEAuth, true)
	}
	a, b := <-resA, <-resB
	if a.err != nil || b.err != nil {
		t.Fatalf("Initiate: %v, %v", a.err, b.err)
	}
	if n := len(p.r.m.SAs()); n != 2 {
		t.Fatalf("hub holds %d SAs, want both", n)
	}
	for _, r := range []initResult{a, b} {
		done := async(func() error { return r.sa.Close(ctx(t)) })
		p.expect(wire.Informational, false)
		p.expect(wire.Informational, true)
		if err := wait(t, done); err != nil {
			t.Fatal(err)
		}
	}
	res := p.initiate(defaultConn())
	p.expect(wire.IKESAInit, false)
	p.expect(wire.IKESAInit, true)
	if !hasIC() {
		t.Fatal("a lone setup sent no INITIAL_CONTACT")
	}
	p.expect(wire.IKEAuth, true)
	if r := <-res; r.err != nil {
		t.Fatal(r.err)
	}
}

// TestInitialContactOlderOnly: INITIAL_CONTACT deletes only the SAs of the
// identity that are older than the SA carrying it. Here the hub completes
// a second CPE's IKE SA (same identity, also with INITIAL_CONTACT) while
// the first one's IKE_AUTH is still on its way; the first one's
// INITIAL_CONTACT then arrives and must not take down the newer SA.
func TestInitialContactOlderOnly(t *testing.T) {
	p := newPair(t, nil)
	cpe2 := newEndpoint(t, p.net, p.clk, "cpe2", netip.MustParseAddr("192.0.2.3"), baseConfig(cpeID), 3)
	res1 := p.initiate(defaultConn())
	p.expect(wire.IKESAInit, false)
	p.expect(wire.IKESAInit, true)
	auth1 := p.next() // held back
	res2 := make(chan initResult, 1)
	go func() {
		sa, err := cpe2.m.Initiate(ctx(t), defaultConn())
		res2 <- initResult{sa, err}
	}()
	p.expect(wire.IKESAInit, false)
	p.expect(wire.IKESAInit, true)
	p.expect(wire.IKEAuth, false)
	p.expect(wire.IKEAuth, true)
	second := <-res2
	if second.err != nil {
		t.Fatal(second.err)
	}
	p.net.Deliver(auth1)
	p.expect(wire.IKEAuth, true)
	if r := <-res1; r.err != nil {
		t.Fatal(r.err)
	}
	p.settle()
	if n := len(p.r.m.SAs()); n != 2 {
		t.Fatalf("hub holds %d SAs, want 2", n)
	}
	for _, h := range p.r.m.Handles() {
		if i := h.Info(); i.State != StateEstablished {
			t.Fatalf("hub SA %v is %v", h, i.State)
		}
	}
}
