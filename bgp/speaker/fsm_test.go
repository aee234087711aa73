package speaker

import (
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/mpsa-vpn/mpsa/bgp/tunnelencap"
	"github.com/mpsa-vpn/mpsa/routing"
)

// scriptPeer plays the hub's side of a session message by message, built
// with GoBGP's codec, to drive the speaker through error paths a real
// reflector does not produce on purpose.
type scriptPeer struct {
	t    *testing.T
	ln   net.Listener
	conn net.Conn
}

func newScriptPeer(t *testing.T) *scriptPeer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &scriptPeer{t: t, ln: ln}
}

func (p *scriptPeer) addr() string { return p.ln.Addr().String() }

func (p *scriptPeer) accept() {
	p.t.Helper()
	p.ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := p.ln.Accept()
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { c.Close() })
	p.conn = c
}

// read returns the next message, or nil at EOF.
func (p *scriptPeer) read() *bgp.BGPMessage {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 19)
	if _, err := io.ReadFull(p.conn, hdr); err != nil {
		if err == io.EOF {
			return nil
		}
		p.t.Fatalf("read: %v", err)
	}
	body := make([]byte, int(binary.BigEndian.Uint16(hdr[16:]))-19)
	if _, err := io.ReadFull(p.conn, body); err != nil {
		p.t.Fatalf("read body: %v", err)
	}
	m, err := bgp.ParseBGPMessage(append(hdr, body...))
	if err != nil {
		p.t.Fatalf("parse %x: %v", append(hdr, body...), err)
	}
	return m
}

// readType skips KEEPALIVEs and returns the next message of another type.
func (p *scriptPeer) readNonKeepalive() *bgp.BGPMessage {
	p.t.Helper()
	for {
		m := p.read()
		if m == nil || m.Header.Type != bgp.BGP_MSG_KEEPALIVE {
			return m
		}
	}
}

func (p *scriptPeer) send(m *bgp.BGPMessage) {
	p.t.Helper()
	b, err := m.Serialize()
	if err != nil {
		p.t.Fatal(err)
	}
	p.sendRaw(b)
}

func (p *scriptPeer) sendRaw(b []byte) {
	p.t.Helper()
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

// expectNotification reads until a NOTIFICATION and checks its codes.
func (p *scriptPeer) expectNotification(code, sub uint8) {
	p.t.Helper()
	for {
		m := p.read()
		if m == nil {
			p.t.Fatalf("connection closed, want NOTIFICATION %d/%d", code, sub)
		}
		if n, ok := m.Body.(*bgp.BGPNotification); ok {
			if n.ErrorCode != code || n.ErrorSubcode != sub {
				p.t.Fatalf("NOTIFICATION %d/%d, want %d/%d", n.ErrorCode, n.ErrorSubcode, code, sub)
			}
			if p.read() != nil {
				p.t.Fatal("message after NOTIFICATION")
			}
			p.conn.Close()
			return
		}
	}
}

type openOpts struct {
	as       uint32
	hold     uint16
	id       string
	version  uint8
	families []bgp.RouteFamily
	grTime   uint16 // 0 = no GR capability
	nBit     bool
}

var hubID = "10.255.255.1"

func (p *scriptPeer) openMsg(o openOpts) *bgp.BGPMessage {
	if o.as == 0 {
		o.as = 65000
	}
	if o.hold == 0 {
		o.hold = 90
	}
	if o.id == "" {
		o.id = hubID
	}
	if o.families == nil {
		o.families = []bgp.RouteFamily{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC}
	}
	caps := []bgp.ParameterCapabilityInterface{bgp.NewCapRouteRefresh(), bgp.NewCapFourOctetASNumber(o.as)}
	var tuples []*bgp.CapGracefulRestartTuple
	for _, f := range o.families {
		caps = append(caps, bgp.NewCapMultiProtocol(f))
		tuples = append(tuples, bgp.NewCapGracefulRestartTuple(f, true))
	}
	if o.grTime > 0 {
		caps = append(caps, bgp.NewCapGracefulRestart(false, o.nBit, o.grTime, tuples))
	}
	as := uint16(o.as)
	if o.as > 0xffff {
		as = 23456
	}
	m := bgp.NewBGPOpenMessage(as, o.hold, o.id, []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if o.version != 0 {
		m.Body.(*bgp.BGPOpen).Version = o.version
	}
	return m
}

// handshake completes OPEN/KEEPALIVE and drains the speaker's initial
// routes up to its last End-of-RIB; it returns the speaker's OPEN.
func (p *scriptPeer) handshake(o openOpts) *bgp.BGPOpen {
	p.t.Helper()
	p.accept()
	m := p.read()
	open, ok := m.Body.(*bgp.BGPOpen)
	if !ok {
		p.t.Fatalf("first message %T", m.Body)
	}
	p.send(p.openMsg(o))
	p.send(bgp.NewBGPKeepAliveMessage())
	if m := p.read(); m.Header.Type != bgp.BGP_MSG_KEEPALIVE {
		p.t.Fatalf("want KEEPALIVE, got %T", m.Body)
	}
	fams := len(o.families)
	if fams == 0 {
		fams = 2
	}
	for eors := 0; eors < fams; {
		m := p.readNonKeepalive()
		if u, ok := m.Body.(*bgp.BGPUpdate); ok {
			if eor, _ := u.IsEndOfRib(); eor {
				eors++
			}
		}
	}
	return open
}

// barrier sends a ROUTE-REFRESH for IPv4 and waits for the speaker's
// answer, so every message sent before has been processed.
func (p *scriptPeer) barrier() {
	p.t.Helper()
	p.send(bgp.NewBGPRouteRefreshMessage(bgp.AFI_IP, 0, bgp.SAFI_UNICAST))
	for {
		m := p.readNonKeepalive()
		if m == nil {
			p.t.Fatal("closed during barrier")
		}
		if _, ok := m.Body.(*bgp.BGPUpdate); ok {
			return
		}
	}
}

func scriptedSpeaker(t *testing.T, p *scriptPeer, mod func(*Config)) *runningSpeaker {
	cfg := Config{ASN: 65000, RouterID: netip.MustParseAddr("10.0.0.2"), Dial: dialFrom("127.0.0.1", p.addr()),
		Prefixes: pfx("10.9.0.0/24"), Endpoint: netip.MustParseAddrPort("192.0.2.9:4500"), MinBackoff: time.Hour}
	if mod != nil {
		mod(&cfg)
	}
	return start(t, cfg)
}

func TestOpenWeSend(t *testing.T) {
	leakCheck(t)
	for _, asn := range []uint32{65000, 4200000001} {
		p := newScriptPeer(t)
		s := scriptedSpeaker(t, p, func(c *Config) { c.ASN = asn; c.HoldTime = 30 * time.Second; c.RestartTime = 77 * time.Second })
		open := p.handshake(openOpts{as: asn, grTime: 120})
		s.waitState(t, StateEstablished, 5*time.Second)
		wantAS := uint16(asn)
		if asn > 0xffff {
			wantAS = 23456
		}
		if open.Version != 4 || open.MyAS != wantAS || open.HoldTime != 30 || open.ID.String() != "10.0.0.2" {
			t.Errorf("OPEN %+v", open)
		}
		seen := map[bgp.BGPCapabilityCode]bgp.ParameterCapabilityInterface{}
		fams := map[bgp.RouteFamily]bool{}
		for _, op := range open.OptParams {
			for _, c := range op.(*bgp.OptionParameterCapability).Capability {
				seen[c.Code()] = c
				if mp, ok := c.(*bgp.CapMultiProtocol); ok {
					fams[mp.CapValue] = true
				}
			}
		}
		if !fams[bgp.RF_IPv4_UC] || !fams[bgp.RF_IPv6_UC] || seen[bgp.BGP_CAP_ROUTE_REFRESH] == nil {
			t.Errorf("capabilities %v", seen)
		}
		if c, ok := seen[bgp.BGP_CAP_FOUR_OCTET_AS_NUMBER].(*bgp.CapFourOctetASNumber); !ok || c.CapValue != asn {
			t.Errorf("4-octet AS capability %+v", seen[bgp.BGP_CAP_FOUR_OCTET_AS_NUMBER])
		}
		gr, ok := seen[bgp.BGP_CAP_GRACEFUL_RESTART].(*bgp.CapGracefulRestart)
		if !ok || gr.Time != 77 || gr.Flags&0x04 == 0 || len(gr.Tuples) != 2 || gr.Tuples[0].Flags != 0x80 {
			t.Errorf("GR capability %+v", gr)
		}
		s.stop(t)
	}
}

func TestOpenErrors(t *testing.T) {
	leakCheck(t)
	tests := []struct {
		name      string
		o         openOpts
		code, sub uint8
	}{
		{"version", openOpts{version: 3}, 2, 1},
		{"peer AS", openOpts{as: 65001}, 2, 2},
		{"BGP identifier equals ours", openOpts{id: "10.0.0.2"}, 2, 3},
		{"hold time 2", openOpts{hold: 2}, 2, 6},
		{"no common family", openOpts{families: []bgp.RouteFamily{bgp.RF_IPv4_VPN}}, 2, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newScriptPeer(t)
			s := scriptedSpeaker(t, p, nil)
			p.accept()
			p.read() // OPEN
			p.send(p.openMsg(tt.o))
			p.expectNotification(tt.code, tt.sub)
			if s.Stats().Established != 0 {
				t.Error("session established")
			}
			s.stop(t)
		})
	}
}

func TestHeaderErrors(t *testing.T) {
	leakCheck(t)
	keepalive, _ := bgp.NewBGPKeepAliveMessage().Serialize()
	tests := []struct {
		name      string
		raw       []byte
		code, sub uint8
	}{
		{"marker", append([]byte{0xfe}, keepalive[1:]...), 1, 1},
		{"length over 4096", func() []byte {
			b := append([]byte(nil), keepalive...)
			binary.BigEndian.PutUint16(b[16:], 5000)
			return b
		}(), 1, 2},
		{"keepalive with body", func() []byte {
			b := append(append([]byte(nil), keepalive...), 0)
			binary.BigEndian.PutUint16(b[16:], 20)
			return b
		}(), 1, 2},
		{"length below header", func() []byte {
			b := append([]byte(nil), keepalive...)
			binary.BigEndian.PutUint16(b[16:], 18)
			return b
		}(), 1, 2},
		{"unknown type", func() []byte {
			b := append([]byte(nil), keepalive...)
			b[18] = 9
			return b
		}(), 1, 3},
		{"OPEN in Established", nil, 5, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newScriptPeer(t)
			s := scriptedSpeaker(t, p, nil)
			p.handshake(openOpts{})
			if tt.raw == nil {
				p.send(p.openMsg(openOpts{}))
			} else {
				p.sendRaw(tt.raw)
			}
			p.expectNotification(tt.code, tt.sub)
			s.stop(t)
		})
	}
}

// TestHoldTimer: a hub that goes silent is dropped after the negotiated
// hold time with NOTIFICATION Hold Timer Expired, while we keep sending
// KEEPALIVEs every hold/3.
func TestHoldTimer(t *testing.T) {
	leakCheck(t)
	p := newScriptPeer(t)
	s := scriptedSpeaker(t, p, nil)
	p.handshake(openOpts{hold: 3})
	t0 := time.Now()
	keepalives := 0
	for {
		m := p.read()
		if m == nil {
			t.Fatal("closed without NOTIFICATION")
		}
		if m.Header.Type == bgp.BGP_MSG_KEEPALIVE {
			keepalives++
			continue
		}
		n, ok := m.Body.(*bgp.BGPNotification)
		if !ok || n.ErrorCode != 4 {
			t.Fatalf("got %T %+v", m.Body, m.Body)
		}
		p.conn.Close()
		break
	}
	if d := time.Since(t0); d < 2500*time.Millisecond || d > 6*time.Second {
		t.Errorf("hold timer fired after %v, want about 3s", d)
	}
	if keepalives < 2 {
		t.Errorf("%d KEEPALIVEs in 3s, want at least 2", keepalives)
	}
	s.stop(t)
}

// Path attribute builders for hand-made UPDATEs.
func attr(flags, typ byte, v ...byte) []byte {
	return append([]byte{flags, typ, byte(len(v))}, v...)
}

var (
	aOrigin    = attr(0x40, 1, 0)
	aASPath    = attr(0x40, 2)
	aLocalPref = attr(0x40, 5, 0, 0, 0, 200)
)

func aNextHop(ip string) []byte { return attr(0x40, 3, netip.MustParseAddr(ip).AsSlice()...) }

func aEncap(t testing.TB, ep string) []byte {
	v, err := tunnelencap.AppendValue(nil, netip.MustParseAddrPort(ep))
	if err != nil {
		t.Fatal(err)
	}
	return attr(0xc0, 23, v...)
}

// update builds an UPDATE from raw withdrawn routes, attributes and NLRI.
func update(withdrawn []byte, attrs [][]byte, nlri []byte) []byte {
	var a []byte
	for _, x := range attrs {
		a = append(a, x...)
	}
	body := binary.BigEndian.AppendUint16(nil, uint16(len(withdrawn)))
	body = append(body, withdrawn...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(a)))
	body = append(append(body, a...), nlri...)
	msg := append(make([]byte, 16), 0, 0, bgp.BGP_MSG_UPDATE)
	for i := range 16 {
		msg[i] = 0xff
	}
	binary.BigEndian.PutUint16(msg[16:], uint16(19+len(body)))
	return append(msg, body...)
}

func nlri4(p string) []byte {
	pp := netip.MustParsePrefix(p)
	b := pp.Addr().As4()
	return append([]byte{byte(pp.Bits())}, b[:(pp.Bits()+7)/8]...)
}

func mpReach6(nh string, p string) []byte {
	pp := netip.MustParsePrefix(p)
	a := pp.Addr().As16()
	n := netip.MustParseAddr(nh).As16()
	v := []byte{0, 2, 1, 16}
	v = append(append(v, n[:]...), 0)
	v = append(append(v, byte(pp.Bits())), a[:(pp.Bits()+7)/8]...)
	return attr(0x80, 14, v...)
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestUpdateErrorHandling drives RFC 7606 (and RFC 9012 §13) cases: the
// speaker first learns 10.5.0.0/24, then gets a variant UPDATE for it.
func TestUpdateErrorHandling(t *testing.T) {
	leakCheck(t)
	good := func(t *testing.T) []byte {
		return update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5"), aLocalPref, aEncap(t, "192.0.2.55:4500")}, nlri4("10.5.0.0/24"))
	}
	tests := []struct {
		name   string
		msg    func(t *testing.T) []byte
		want   string // endpoint of 10.5.0.0/24 afterwards; "-" = withdrawn, "nh" = no endpoint
		notify [2]uint8
		stat   func(Stats) bool
	}{
		{name: "valid replacement", want: "192.0.2.66:0",
			msg: func(t *testing.T) []byte {
				return update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5"), aEncap(t, "192.0.2.66:0")}, nlri4("10.5.0.0/24"))
			}},
		{name: "malformed tunnel encap is treat-as-withdraw", want: "-",
			msg: func(t *testing.T) []byte {
				return update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5"), attr(0xc0, 23, mustHex("0019000c060a000000000003c6336407")...)}, nlri4("10.5.0.0/24"))
			},
			stat: func(s Stats) bool { return s.BadTunnelEncap == 1 && s.TreatAsWithdraw == 1 }},
		{name: "tunnel encap with partial flag (BIRD) accepted", want: "192.0.2.77:4500",
			msg: func(t *testing.T) []byte {
				e := aEncap(t, "192.0.2.77:4500")
				e[0] |= 0x20
				return update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5"), e}, nlri4("10.5.0.0/24"))
			}},
		{name: "other tunnel type only: plain RFC 5565 route", want: "nh",
			msg: func(t *testing.T) []byte {
				return update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5"), attr(0xc0, 23, mustHex("0002000c060a000000000001c6336407")...)}, nlri4("10.5.0.0/24"))
			}},
		{name: "no attribute: plain RFC 5565 route", want: "nh",
			msg: func(t *testing.T) []byte {
				return update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5")}, nlri4("10.5.0.0/24"))
			}},
		{name: "egress AFI 0 resolves to next hop", want: "192.0.2.5:4500",
			msg: func(t *testing.T) []byte {
				return update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5"), attr(0xc0, 23, mustHex("0019000c"+"0606000000000000"+"08021194")...)}, nlri4("10.5.0.0/24"))
			}},
		{name: "invalid ORIGIN is treat-as-withdraw", want: "-",
			msg: func(t *testing.T) []byte {
				return update(nil, [][]byte{attr(0x40, 1, 7), aASPath, aNextHop("192.0.2.5")}, nlri4("10.5.0.0/24"))
			},
			stat: func(s Stats) bool { return s.TreatAsWithdraw == 1 }},
		{name: "missing AS_PATH is treat-as-withdraw", want: "-",
			msg: func(t *testing.T) []byte {
				return update(nil, [][]byte{aOrigin, aNextHop("192.0.2.5")}, nlri4("10.5.0.0/24"))
			}},
		{name: "malformed AGGREGATOR is attribute-discard", want: "192.0.2.55:4500",
			msg: func(t *testing.T) []byte {
				return update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5"), attr(0xc0, 7, 1, 2, 3), aEncap(t, "192.0.2.55:4500")}, nlri4("10.5.0.0/24"))
			},
			stat: func(s Stats) bool { return s.AttributeDiscard == 1 && s.TreatAsWithdraw == 0 }},
		{name: "our ORIGINATOR_ID is ignored", want: "-",
			msg: func(t *testing.T) []byte {
				return update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5"), attr(0x80, 9, 10, 0, 0, 2)}, nlri4("10.5.0.0/24"))
			},
			stat: func(s Stats) bool { return s.OwnRoutes == 1 }},
		{name: "explicit withdraw", want: "-",
			msg: func(t *testing.T) []byte { return update(nlri4("10.5.0.0/24"), nil, nil) }},
		{name: "attribute length overruns block resets", notify: [2]uint8{3, 1},
			msg: func(t *testing.T) []byte {
				m := update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5")}, nlri4("10.5.0.0/24"))
				m[19+2+2+len(aOrigin)+2] = 40 // AS_PATH length runs past the attribute block
				return m
			}},
		{name: "two MP_REACH_NLRI resets", notify: [2]uint8{3, 1},
			msg: func(t *testing.T) []byte {
				return update(nil, [][]byte{aOrigin, aASPath, mpReach6("2001:db8::1", "fd00:5::/48"), mpReach6("2001:db8::1", "fd00:6::/48")}, nil)
			}},
		{name: "withdrawn length past end resets", notify: [2]uint8{3, 1},
			msg: func(t *testing.T) []byte {
				m := update(nil, nil, nil)
				m[20] = 9
				return m
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newScriptPeer(t)
			s := scriptedSpeaker(t, p, nil)
			p.handshake(openOpts{})
			p.sendRaw(good(t))
			p.barrier()
			if r, ok := s.sink.Get(netip.MustParsePrefix("10.5.0.0/24")); !ok || r.Endpoint.String() != "192.0.2.55:4500" || r.LocalPref != 200 {
				t.Fatalf("good route: %+v %v", r, ok)
			}
			p.sendRaw(tt.msg(t))
			if tt.notify[0] != 0 {
				p.expectNotification(tt.notify[0], tt.notify[1])
				s.stop(t)
				if s.sink.Len() != 0 {
					t.Errorf("routes left after session reset:\n%s", s.sink)
				}
				return
			}
			p.barrier()
			r, ok := s.sink.Get(netip.MustParsePrefix("10.5.0.0/24"))
			switch tt.want {
			case "-":
				if ok {
					t.Errorf("route kept: %+v", r)
				}
			case "nh":
				if !ok || r.Endpoint.IsValid() || r.NextHop != netip.MustParseAddr("192.0.2.5") {
					t.Errorf("route %+v %v, want next hop only", r, ok)
				}
			default:
				if !ok || r.Endpoint.String() != tt.want {
					t.Errorf("route %+v %v, want endpoint %s", r, ok, tt.want)
				}
			}
			if tt.stat != nil && !tt.stat(s.Stats()) {
				t.Errorf("stats %+v", s.Stats())
			}
			if st := s.Stats(); int(st.RoutesLearned) != s.sink.Len() {
				t.Errorf("RoutesLearned %d, sink has %d", st.RoutesLearned, s.sink.Len())
			}
		})
	}
}

// TestIPv6MappedNextHop: an IPv6 route whose MP_REACH next hop is an
// IPv4-mapped address (what GoBGP and BIRD send for IPv6 over IPv4) gets
// the plain IPv4 address as next hop and endpoint.
func TestIPv6MappedNextHop(t *testing.T) {
	leakCheck(t)
	p := newScriptPeer(t)
	s := scriptedSpeaker(t, p, nil)
	p.handshake(openOpts{})
	p.sendRaw(update(nil, [][]byte{aOrigin, aASPath, mpReach6("::ffff:192.0.2.5", "fd00:5::/48")}, nil))
	p.barrier()
	r, ok := s.sink.Get(netip.MustParsePrefix("fd00:5::/48"))
	if !ok || r.NextHop != netip.MustParseAddr("192.0.2.5") || r.Endpoint.IsValid() {
		t.Fatalf("route %+v %v", r, ok)
	}
}

// TestMaxRoutes: learning more than MaxRoutes ends the session with
// Cease/Maximum Number of Prefixes Reached (RFC 4486), or its RFC 8538
// Hard Reset form when the N bit was exchanged, and drops the routes.
func TestMaxRoutes(t *testing.T) {
	leakCheck(t)
	for _, nBit := range []bool{false, true} {
		p := newScriptPeer(t)
		s := scriptedSpeaker(t, p, func(c *Config) { c.MaxRoutes = 2 })
		p.handshake(openOpts{grTime: 120, nBit: nBit})
		p.sendRaw(update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5")},
			append(append(nlri4("10.5.0.0/24"), nlri4("10.5.1.0/24")...), nlri4("10.5.2.0/24")...)))
		if nBit {
			p.expectNotification(6, 9)
		} else {
			p.expectNotification(6, 1)
		}
		if err := s.sink.Wait(within(t, 5*time.Second), func(rs map[netip.Prefix]routing.Route) bool { return len(rs) == 0 }); err != nil {
			t.Errorf("routes kept after max-prefix reset: %s", s.sink)
		}
		s.stop(t)
	}
}
