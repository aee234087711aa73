package ike

import (
	"net"
	"net/netip"
	"testing"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// TestUDPConnSourceAddrNetns: a wildcard UDPConn opened inside a network
// namespace looks up source addresses in that namespace, also when asked
// from a goroutine in another one (the manager's), and a bound UDPConn
// answers with its own address.
func TestUDPConnSourceAddrNetns(t *testing.T) {
	ns := testenv.NewNetns(t, "iksrc")
	other := testenv.NewNetns(t, "iksrd")
	testenv.Veth(t, ns, "d0", other, "d1")
	ns.MustIP("addr", "add", "198.51.100.7/24", "dev", "d0")
	ns.MustIP("addr", "add", "2001:db8:7::7/64", "dev", "d0", "nodad")
	ns.MustIP("route", "add", "203.0.113.0/24", "via", "198.51.100.1", "src", "198.51.100.7")
	var wild4, wild6, bound, wrapped *UDPConn
	var raw *net.UDPConn
	err := ns.Do(func() error {
		var err error
		if wild4, err = ListenUDP("udp4", netip.MustParseAddrPort("0.0.0.0:0")); err != nil {
			return err
		}
		if raw, err = net.ListenUDP("udp4", &net.UDPAddr{}); err != nil {
			return err
		}
		if wild6, err = ListenUDP("udp", netip.MustParseAddrPort("[::]:0")); err != nil {
			return err
		}
		bound, err = ListenUDP("udp4", netip.MustParseAddrPort("198.51.100.7:0"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Wrapped outside the namespace the socket was opened in: the probes
	// are made in the socket's namespace all the same.
	if wrapped, err = NewUDPConn(raw); err != nil {
		raw.Close()
		t.Fatal(err)
	}
	for _, c := range []*UDPConn{wild4, wild6, bound, wrapped} {
		t.Cleanup(func() { c.Close() })
	}
	for _, tc := range []struct {
		c    *UDPConn
		dst  string
		want string
	}{
		{wild4, "203.0.113.9:500", "198.51.100.7"},
		{wild4, "198.51.100.20:4500", "198.51.100.7"},
		{wild6, "198.51.100.20:500", "198.51.100.7"}, // dual-stack socket, IPv4 peer
		{wild6, "[2001:db8:7::20]:500", "2001:db8:7::7"},
		{bound, "203.0.113.9:500", "198.51.100.7"},
		{wrapped, "203.0.113.9:500", "198.51.100.7"},
	} {
		got, err := tc.c.SourceAddr(netip.MustParseAddrPort(tc.dst))
		if err != nil || got != netip.MustParseAddr(tc.want) {
			t.Errorf("%v: source for %s: %v, %v; want %s", tc.c.LocalAddr(), tc.dst, got, err, tc.want)
		}
	}
	// No route: an error, not a guess.
	if a, err := wild4.SourceAddr(netip.MustParseAddrPort("192.0.2.1:500")); err == nil {
		t.Errorf("source for an unroutable peer: %v", a)
	}
}

// TestUDPConnSourceAddrPerDestination: a wildcard UDPConn answers each
// destination with the source address of its own route, also after a
// lookup for a destination reached from another address (a connected UDP
// socket keeps its first source address unless it is disconnected).
func TestUDPConnSourceAddrPerDestination(t *testing.T) {
	ns := testenv.NewNetns(t, "iksrp")
	other := testenv.NewNetns(t, "iksrq")
	for _, l := range []struct{ dev, peer, v4, v6 string }{
		{"d0", "p0", "198.51.100.7/24", "2001:db8:7::7/64"},
		{"d1", "p1", "192.0.2.8/24", "2001:db8:8::8/64"},
	} {
		testenv.Veth(t, ns, l.dev, other, l.peer)
		ns.MustIP("addr", "add", l.v4, "dev", l.dev)
		ns.MustIP("addr", "add", l.v6, "dev", l.dev, "nodad")
	}
	ns.MustIP("route", "add", "203.0.113.0/24", "via", "198.51.100.1", "src", "198.51.100.7")
	ns.MustIP("route", "add", "10.20.0.0/16", "via", "192.0.2.1", "src", "192.0.2.8")
	ns.MustIP("-6", "route", "add", "2001:db8:99::/48", "via", "2001:db8:8::1", "src", "2001:db8:8::8")
	var wild4, wild6 *UDPConn
	err := ns.Do(func() error {
		var err error
		if wild4, err = ListenUDP("udp4", netip.MustParseAddrPort("0.0.0.0:0")); err != nil {
			return err
		}
		wild6, err = ListenUDP("udp", netip.MustParseAddrPort("[::]:0"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wild4.Close(); wild6.Close() })
	// Alternate between destinations behind different source addresses,
	// each one asked twice in a row and again after the others.
	steps := []struct {
		c         *UDPConn
		dst, want string
	}{
		{wild4, "203.0.113.9:500", "198.51.100.7"},
		{wild4, "10.20.1.1:500", "192.0.2.8"},
		{wild4, "10.20.1.1:4500", "192.0.2.8"},
		{wild4, "203.0.113.9:4500", "198.51.100.7"},
		{wild4, "192.0.2.20:500", "192.0.2.8"},
		{wild4, "198.51.100.20:500", "198.51.100.7"},
		{wild6, "[2001:db8:7::20]:500", "2001:db8:7::7"},
		{wild6, "[2001:db8:99::1]:500", "2001:db8:8::8"},
		{wild6, "[2001:db8:7::20]:500", "2001:db8:7::7"},
		{wild6, "10.20.1.1:500", "192.0.2.8"}, // dual-stack socket, IPv4 peers
		{wild6, "203.0.113.9:500", "198.51.100.7"},
	}
	for i, s := range steps {
		got, err := s.c.SourceAddr(netip.MustParseAddrPort(s.dst))
		if err != nil || got != netip.MustParseAddr(s.want) {
			t.Errorf("step %d: %v: source for %s: %v, %v; want %s", i, s.c.LocalAddr(), s.dst, got, err, s.want)
		}
	}
	// An unroutable destination after routable ones is an error, not the
	// previous answer.
	if a, err := wild4.SourceAddr(netip.MustParseAddrPort("100.64.9.9:500")); err == nil {
		t.Errorf("source for an unroutable peer after others: %v", a)
	}
	if a, err := wild4.SourceAddr(netip.MustParseAddrPort("10.20.1.1:500")); err != nil || a != netip.MustParseAddr("192.0.2.8") {
		t.Errorf("source after a failed lookup: %v, %v", a, err)
	}
}
