package cpe

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/routing"
	"github.com/mpsa-vpn/mpsa/transform"
)

var (
	cbc = transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128}
	gcm = transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}
)

func keys(spi uint32, s transform.ESP) esp.Keys {
	e, i, _ := s.KeyLens()
	return esp.Keys{SPI: spi, Suite: s, EncKey: bytes.Repeat([]byte{byte(spi)}, e), IntegKey: bytes.Repeat([]byte{1}, i)}
}

func sel(p string) wire.Selector { return wire.SelectorFromPrefix(netip.MustParsePrefix(p)) }

func testChild(in, out uint32, established time.Time, encap bool) *child {
	return &child{ChildSA: ike.ChildSA{
		InSPI: in, OutSPI: out, Suite: gcm,
		LocalTS: []wire.Selector{sel("100.64.0.2/32")}, RemoteTS: []wire.Selector{sel("100.64.0.1/32")},
		Local: netip.MustParseAddrPort("192.0.2.1:4500"), Remote: netip.MustParseAddrPort("192.0.2.254:4500"),
		Encap: encap, In: keys(in, gcm), Out: keys(out, gcm), Established: established,
	}}
}

// TestBuildState: the group SAs and the CHILD_SAs become one valid State;
// during a CHILD_SA rekey only the newest CHILD_SA is outbound.
func TestBuildState(t *testing.T) {
	t0 := time.Unix(1000, 0)
	group := []dataplane.SA{
		{Keys: keys(0x1000, cbc), Dir: dataplane.In, Tunnel: GroupTunnel},
		{Keys: keys(0x2000, cbc), Dir: dataplane.Both, Tunnel: GroupTunnel},
	}
	for _, c := range []struct {
		name  string
		kids  []*child
		check func(*testing.T, *dataplane.State)
	}{
		{"group only", nil, func(t *testing.T, st *dataplane.State) {
			if len(st.SAs) != 2 {
				t.Errorf("%d SAs", len(st.SAs))
			}
		}},
		{"raw ESP child", []*child{testChild(0xa100, 0xb100, t0, false)}, func(t *testing.T, st *dataplane.State) {
			out := st.SAs[3]
			if out.Dir != dataplane.Out || out.Tunnel != HubTunnel || out.Peer != netip.MustParseAddrPort("192.0.2.254:0") ||
				out.Keys.SPI != 0xb100 || out.Local != netip.MustParseAddr("192.0.2.1") {
				t.Errorf("outbound CHILD_SA %+v", out)
			}
			in := st.SAs[2]
			if in.Dir != dataplane.In || in.Keys.SPI != 0xa100 || in.ReplayWindow != DefaultChildReplayWindow ||
				in.RemoteSelectors[0] != netip.MustParsePrefix("100.64.0.1/32") || in.LocalSelectors[0] != netip.MustParsePrefix("100.64.0.2/32") {
				t.Errorf("inbound CHILD_SA %+v", in)
			}
		}},
		{"rekey overlap", []*child{testChild(0xa100, 0xb100, t0, true), testChild(0xa200, 0xb200, t0.Add(time.Minute), true)},
			func(t *testing.T, st *dataplane.State) {
				var outs []uint32
				for _, sa := range st.SAs {
					if sa.Tunnel == HubTunnel && sa.Dir&dataplane.Out != 0 {
						outs = append(outs, sa.Keys.SPI)
						if sa.Peer.Port() != 4500 {
							t.Errorf("encapsulated CHILD_SA to %v", sa.Peer)
						}
					}
				}
				if len(outs) != 1 || outs[0] != 0xb200 {
					t.Errorf("outbound CHILD_SAs %x, want only the newest (b2)", outs)
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := buildState(c.kids, group)
			if err := st.Validate(); err != nil {
				t.Fatal(err)
			}
			c.check(t, st)
		})
	}
}

// TestTunnelAddrs: the hub's overlay address is the single address of the
// narrowed TSr, ours the overlay address of its family inside TSi.
func TestTunnelAddrs(t *testing.T) {
	info := ike.SAInfo{VIPs: []netip.Prefix{netip.MustParsePrefix("fd00::2/128"), netip.MustParsePrefix("100.64.0.2/32")}}
	ch := testChild(0x1001, 0x1002, time.Time{}, false)
	ch.LocalTS = []wire.Selector{sel("fd00::2/128"), sel("100.64.0.2/32")}
	ch.RemoteTS = []wire.Selector{sel("fd00::1/128"), sel("100.64.0.1/32")}
	hub, vip := tunnelAddrs(info, []*child{ch})
	if hub != netip.MustParseAddr("100.64.0.1") || vip != netip.MustParseAddr("100.64.0.2") {
		t.Errorf("hub %v vip %v; want the IPv4 pair", hub, vip)
	}
	// A TSr the hub did not narrow to one address names no overlay address.
	ch.RemoteTS = []wire.Selector{sel("0.0.0.0/0")}
	if hub, _ := tunnelAddrs(info, []*child{ch}); hub.IsValid() {
		t.Errorf("hub %v from an unnarrowed TSr", hub)
	}
	if hub, vip := tunnelAddrs(info, nil); hub.IsValid() || vip.IsValid() {
		t.Error("addresses without a CHILD_SA")
	}
}

// TestEndpointFor: the advertised ESP endpoint follows the encapsulation.
func TestEndpointFor(t *testing.T) {
	info := ike.SAInfo{Local: netip.MustParseAddrPort("192.0.2.1:4500"), Encap: true}
	raw := &Dataplane{RawESP: true}
	for _, c := range []struct {
		encap configs.Encapsulation
		dp    *Dataplane
		nat   bool
		kid   bool
		want  string
	}{
		{configs.EncapAuto, raw, false, false, "192.0.2.1:0"},
		{configs.EncapAuto, raw, true, false, "192.0.2.1:4500"},
		{configs.EncapAuto, raw, false, true, "192.0.2.1:4500"},
		{configs.EncapAuto, &Dataplane{}, false, false, "192.0.2.1:4500"},
		{configs.EncapUDP, raw, false, false, "192.0.2.1:4500"},
		{configs.EncapRaw, raw, true, true, "192.0.2.1:0"},
	} {
		cfg := &configs.CPE{WAN: configs.WANConfig{Encapsulation: c.encap}}
		i := info
		i.NATLocal = c.nat
		var kids []*child
		if c.kid {
			kids = []*child{testChild(0x1001, 0x1002, time.Time{}, true)}
		}
		if got := endpointFor(cfg, c.dp, i, kids).String(); got != c.want {
			t.Errorf("%s nat=%v encapsulated child=%v raw=%v: %s, want %s", c.encap, c.nat, c.kid, c.dp.RawESP, got, c.want)
		}
	}
	if ep := endpointFor(&configs.CPE{}, raw, ike.SAInfo{Local: netip.MustParseAddrPort("0.0.0.0:4500")}, nil); ep.IsValid() {
		t.Errorf("endpoint %v from an unspecified local address", ep)
	}
}

func TestRouterID(t *testing.T) {
	cfg := &configs.CPE{}
	cfg.Identity, _ = configs.ParseIdentity("fqdn:cpe1.example.net")
	if got := routerID(cfg, netip.MustParseAddr("100.64.0.9")); got != netip.MustParseAddr("100.64.0.9") {
		t.Errorf("router ID %v, want the overlay address", got)
	}
	derived := routerID(cfg, netip.Addr{})
	if !derived.Is4() || derived.As4()[0] == 0 || derived != routerID(cfg, netip.Addr{}) {
		t.Errorf("derived router ID %v", derived)
	}
	cfg.BGP.RouterID = netip.MustParseAddr("10.0.0.1")
	if got := routerID(cfg, netip.MustParseAddr("100.64.0.9")); got != cfg.BGP.RouterID {
		t.Errorf("router ID %v, want the configured one", got)
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.next())
	}
	for i, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		w := want * time.Millisecond
		if got[i] < w*9/10 || got[i] > w*11/10 {
			t.Errorf("step %d: %v, want %v ±10%%", i, got[i], w)
		}
	}
	b.reset()
	if d := b.next(); d > 110*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
}

func TestReadRequest(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     httpRequest
		err      error
	}{
		{"scrape", "GET /metrics HTTP/1.1\r\nHost: cpe\r\nAccept: text/plain\r\n\r\n", httpRequest{"GET", "/metrics", "HTTP/1.1"}, nil},
		{"query", "GET /metrics?x=1 HTTP/1.0\n\n", httpRequest{"GET", "/metrics", "HTTP/1.0"}, nil},
		{"no version", "GET /metrics\r\n\r\n", httpRequest{}, errBadRequest},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\n", httpRequest{}, errBadRequest},
		{"lowercase method", "get /metrics HTTP/1.1\r\n\r\n", httpRequest{}, errBadRequest},
		{"bad header", "GET / HTTP/1.1\r\nno colon\r\n\r\n", httpRequest{}, errBadRequest},
		{"truncated", "GET /metrics HTTP/1.1\r\nHost: x\r\n", httpRequest{}, io.ErrUnexpectedEOF},
		{"huge line", "GET /" + strings.Repeat("a", MaxMetricsRequest) + " HTTP/1.1\r\n\r\n", httpRequest{}, errRequestTooLarge},
		{"many headers", "GET / HTTP/1.1\r\n" + strings.Repeat("A: b\r\n", MaxMetricsHeaders+1) + "\r\n", httpRequest{}, errRequestTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := readRequest(bufio.NewReaderSize(strings.NewReader(c.in), 64))
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if err == nil && got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// FuzzReadRequest: no input makes the request parser panic or read past
// its bound, and a request it accepts has a method, an absolute path and
// an HTTP/1 version.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("GET /metrics HTTP/1.1\r\nHost: cpe\r\n\r\n"))
	f.Add([]byte("HEAD / HTTP/1.0\n\n"))
	f.Add([]byte("GET /metrics HTTP/1.1\r\nX:" + strings.Repeat("y", 9000) + "\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := &countingReader{r: bytes.NewReader(b)}
		req, err := readRequest(bufio.NewReaderSize(r, 256))
		if r.n > MaxMetricsRequest+256 {
			t.Fatalf("read %d octets, bound %d", r.n, MaxMetricsRequest)
		}
		if err != nil {
			return
		}
		if req.Method == "" || !strings.HasPrefix(req.Path, "/") || !strings.HasPrefix(req.Proto, "HTTP/1.") {
			t.Fatalf("accepted %+v", req)
		}
	})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

// TestExposition: the metrics text is in the Prometheus format: HELP and
// TYPE once per family, before its samples, labels escaped.
func TestExposition(t *testing.T) {
	var b bytes.Buffer
	e := &expo{w: bufio.NewWriter(&b)}
	e.metric("x_total", "counter", "An x.", 3, "reason", "bad \"icv\"\n")
	e.metric("x_total", "counter", "", 4, "reason", `a\b`)
	e.metric("y", "gauge", "A y.", 0.5)
	e.w.Flush()
	want := "# HELP x_total An x.\n# TYPE x_total counter\nx_total{reason=\"bad \\\"icv\\\"\\n\"} 3\n" +
		"x_total{reason=\"a\\\\b\"} 4\n# HELP y A y.\n# TYPE y gauge\ny 0.5\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestSinkRefusesOwnLAN: a learned route inside our LAN prefixes never
// reaches the FIB (it would take the LAN's traffic into the tunnel), and
// a path the peer had there before is withdrawn; other routes pass.
func TestSinkRefusesOwnLAN(t *testing.T) {
	cfg := &configs.CPE{LAN: configs.LANConfig{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}}}
	c := &CPE{cfg: cfg, log: testLogger(t, "cpe")}
	fib := routing.New()
	s := fibSink{FIB: fib, c: c}
	peer := netip.MustParseAddr("100.64.0.1")
	route := func(p string) routing.Route {
		return routing.Route{Prefix: netip.MustParsePrefix(p), NextHop: netip.MustParseAddr("192.0.2.2"),
			Endpoint: netip.MustParseAddrPort("192.0.2.2:0"), Tunnel: GroupTunnel, Peer: peer, Source: routing.SourceBGP}
	}
	for _, p := range []string{"10.0.0.0/8", "10.2.0.0/24"} {
		if err := s.Upsert(route(p)); err != nil {
			t.Fatal(err)
		}
	}
	// The hub's own copy of a route that is now ours: it goes.
	if err := fib.Upsert(route("10.1.0.128/25")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"10.1.0.0/24", "10.1.0.128/25"} {
		if err := s.Upsert(route(p)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for r := range fib.Routes() {
		got = append(got, r.Route.Prefix.String())
	}
	if strings.Join(got, " ") != "10.0.0.0/8 10.2.0.0/24" {
		t.Errorf("FIB holds %v, want the covering 10/8 and 10.2.0.0/24 only", got)
	}
	if n := c.counters.ownRoutes.Load(); n != 2 {
		t.Errorf("%d routes counted as ours, want 2", n)
	}
}

// TestSinkOtherFamilyNextHop: an IPv6 prefix carried over an IPv4
// underlay arrives with an IPv4 or IPv4-mapped NEXT_HOP and the endpoint
// in the Tunnel Encapsulation attribute; the FIB gets it by its endpoint.
func TestSinkOtherFamilyNextHop(t *testing.T) {
	c := &CPE{cfg: &configs.CPE{}, log: testLogger(t, "cpe")}
	fib := routing.New()
	s := fibSink{FIB: fib, c: c}
	peer := netip.MustParseAddr("192.0.2.254")
	for _, nh := range []string{"::ffff:192.0.2.2", "192.0.2.2"} {
		r := routing.Route{Prefix: netip.MustParsePrefix("fd01:2::/64"), NextHop: netip.MustParseAddr(nh),
			Endpoint: netip.MustParseAddrPort("192.0.2.2:0"), Tunnel: GroupTunnel, Peer: peer, Source: routing.SourceBGP}
		if err := s.Upsert(r); err != nil {
			t.Fatalf("next hop %s: %v", nh, err)
		}
		got, ok := fib.Lookup(netip.MustParseAddr("fd01:2::2"))
		if !ok || got.Endpoint != r.Endpoint || got.Tunnel != GroupTunnel {
			t.Errorf("next hop %s: lookup %+v %v", nh, got, ok)
		}
	}
	// Without an endpoint there is nothing to go by: refused as before.
	r := routing.Route{Prefix: netip.MustParsePrefix("fd01:3::/64"), NextHop: netip.MustParseAddr("::ffff:192.0.2.3"),
		Tunnel: GroupTunnel, Peer: peer, Source: routing.SourceBGP}
	if err := s.Upsert(r); err == nil {
		t.Error("a mapped next hop without an endpoint was accepted")
	}
}
