package speaker

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/mpsa-vpn/mpsa/bgp/speaker/speakertest"
)

// discardConn is a connection whose writes vanish: the fuzz target drives
// an Established session directly and only looks at what it installs.
type discardConn struct{}

func (discardConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)} }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 179} }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzFrame turns fuzz input into messages: each is one type octet, a
// 2-octet body length and the body.
func fuzzFrame(typ byte, body []byte) []byte {
	b := append(make([]byte, 0, 3+len(body)), typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// FuzzSessionMessages feeds arbitrary messages to an Established session:
// it must never panic, must account for every route it installs, and must
// install only valid, masked prefixes with unicast endpoints.
func FuzzSessionMessages(f *testing.F) {
	encap := func(ep string) []byte { return aEncap(f, ep) }
	seeds := [][]byte{
		update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5"), aLocalPref, encap("192.0.2.55:4500")}, nlri4("10.5.0.0/24")),
		update(nil, [][]byte{aOrigin, aASPath, mpReach6("2001:db8::1", "fd00:5::/48"), encap("[2001:db8::5]:0")}, nil),
		update(nil, [][]byte{aOrigin, aASPath, mpReach6("::ffff:192.0.2.1", "fd00:6::/64")}, nil),
		update(nlri4("10.5.0.0/24"), nil, nil),
		update(nil, [][]byte{attr(0x80, 15, 0, 2, 1, 48, 0xfd, 0, 0, 5, 0, 0)}, nil),
		update(nil, nil, nil),
		update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5"), attr(0x80, 9, 10, 0, 0, 2)}, nlri4("10.6.0.0/16")),
		update(nil, [][]byte{aOrigin, aASPath, aNextHop("192.0.2.5"), attr(0xc0, 23, mustHex("0019000c060a000000000003c6336407")...)}, nlri4("10.5.0.0/24")),
	}
	for _, m := range seeds {
		f.Add(fuzzFrame(m[18], m[19:]))
	}
	f.Add(append(fuzzFrame(bgp.BGP_MSG_ROUTE_REFRESH, []byte{0, 1, 0, 1}), fuzzFrame(bgp.BGP_MSG_KEEPALIVE, nil)...))
	f.Add(fuzzFrame(bgp.BGP_MSG_NOTIFICATION, []byte{6, 2}))

	f.Fuzz(func(t *testing.T, data []byte) {
		sink := speakertest.NewSink()
		sp, err := New(Config{ASN: 65000, RouterID: netip.MustParseAddr("10.0.0.2"), Sink: sink, MaxRoutes: 64,
			Prefixes: pfx("10.9.0.0/24", "fd00:9::/48"), Endpoint: netip.MustParseAddrPort("192.0.2.9:4500"),
			Dial: func(ctx context.Context) (net.Conn, error) { return nil, net.ErrClosed }})
		if err != nil {
			t.Fatal(err)
		}
		ss := sp.newSession(discardConn{})
		ss.peerID = netip.MustParseAddr("10.255.255.1")
		ss.families = map[bgp.RouteFamily]bgp.BGPAddPathMode{bgp.RF_IPv4_UC: 0, bgp.RF_IPv6_UC: 0}
		ss.peerRefresh = true
		sp.rib.peer = ss.peerID
		for len(data) >= 3 {
			typ, n := data[0], int(binary.BigEndian.Uint16(data[1:3]))
			data = data[3:]
			n = min(n, len(data), maxMessageLen-headerLen)
			hdr := make([]byte, headerLen)
			for i := range 16 {
				hdr[i] = 0xff
			}
			binary.BigEndian.PutUint16(hdr[16:], uint16(headerLen+n))
			hdr[18] = typ
			msg, err := checkHeader(hdr)
			if err != nil {
				break
			}
			copy(msg[headerLen:], data[:n])
			data = data[n:]
			if err := ss.handle(msg); err != nil {
				break
			}
		}
		st := sp.Stats()
		if int(st.RoutesLearned) != sink.Len() || len(sp.rib.routes) != sink.Len() {
			t.Fatalf("RoutesLearned %d, rib %d, sink %d", st.RoutesLearned, len(sp.rib.routes), sink.Len())
		}
		if sink.Len() > 64 {
			t.Fatalf("%d routes, MaxRoutes 64", sink.Len())
		}
		for _, r := range sink.Routes() {
			if !r.Prefix.IsValid() || r.Prefix != r.Prefix.Masked() || r.Peer != ss.peerID {
				t.Fatalf("bad route %+v", r)
			}
			if r.Endpoint.IsValid() && (r.Endpoint.Addr().IsUnspecified() || r.Endpoint.Addr().IsMulticast() || r.Endpoint.Addr().Is4In6()) {
				t.Fatalf("bad endpoint %+v", r)
			}
		}
	})
}
