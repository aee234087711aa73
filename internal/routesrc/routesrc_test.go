package routesrc

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// lookup is one destination and the source address it must get.
type lookup struct{ dst, want string }

func check(t *testing.T, name string, p *Prober, steps []lookup) {
	t.Helper()
	for i, s := range steps {
		got, err := p.Source(netip.MustParseAddrPort(s.dst))
		if err != nil || got != netip.MustParseAddr(s.want) {
			t.Errorf("%s step %d: source for %s: %v, %v; want %s", name, i, s.dst, got, err, s.want)
		}
	}
}

// mustFail checks that dst has no source address and that the error names
// dst.
func mustFail(t *testing.T, name string, p *Prober, dst string) error {
	t.Helper()
	a, err := p.Source(netip.MustParseAddrPort(dst))
	if err == nil {
		t.Errorf("%s: source for %s: %v, want an error", name, dst, a)
		return nil
	}
	if !strings.Contains(err.Error(), netip.MustParseAddrPort(dst).String()) {
		t.Errorf("%s: error for %s does not name it: %v", name, dst, err)
	}
	return err
}

// TestLoopback: loopback destinations of both families, IPv4-mapped ones
// included, get a loopback source, unmapped, in the test's own namespace.
func TestLoopback(t *testing.T) {
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		testenv.Skip(t, "no IPv6 loopback: "+err.Error())
	} else {
		c.Close()
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	forSock := NewForSocket(rc, true, true) // unprivileged: this thread's namespace
	defer forSock.Close()
	check(t, "loopback for a socket", forSock, []lookup{{"127.0.0.1:500", "127.0.0.1"}, {"[::1]:500", "::1"}})
	p := New(true, true)
	defer p.Close()
	check(t, "loopback", p, []lookup{
		{"127.0.0.1:500", "127.0.0.1"},
		{"[::1]:500", "::1"},
		{"127.0.0.1:0", "127.0.0.1"}, // port 0 is connectable: used as given
		{"[::ffff:127.0.0.1]:4500", "127.0.0.1"},
		{"[::1]:4500", "::1"},
	})
	if got, err := p.Source(netip.MustParseAddrPort("[::ffff:127.0.0.1]:4500")); err != nil || got.Is4In6() {
		t.Errorf("mapped destination: %v, %v; want an unmapped address", got, err)
	}
	if _, err := p.Source(netip.AddrPort{}); err == nil {
		t.Error("invalid destination: no error")
	}
}

// TestFamilies: a family not asked for is an error naming the
// destination; the other family still answers. After Close every lookup
// fails with net.ErrClosed, and Close may be repeated.
func TestFamilies(t *testing.T) {
	p := New(true, false)
	if _, err := p.Source(netip.MustParseAddrPort("127.0.0.1:500")); err != nil {
		t.Fatal(err)
	}
	mustFail(t, "IPv6 not asked for", p, "[::1]:500")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := mustFail(t, "closed", p, "127.0.0.1:500"); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Errorf("lookup after Close: %v, want net.ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	none := New(false, false)
	defer none.Close()
	mustFail(t, "no families", none, "127.0.0.1:500")
}

// netnsLab is a namespace with two veths to a peer namespace, an address
// of each family on each, and routes via each; the host namespace has
// none of these routes.
func netnsLab(t *testing.T) (ns *testenv.Netns) {
	ns = testenv.NewNetns(t, "rsrc")
	peer := testenv.NewNetns(t, "rsrp")
	for _, l := range []struct{ dev, peer, v4, v6 string }{
		{"d0", "p0", "198.51.100.7/24", "2001:db8:7::7/64"},
		{"d1", "p1", "192.0.2.8/24", "2001:db8:8::8/64"},
	} {
		testenv.Veth(t, ns, l.dev, peer, l.peer)
		ns.MustIP("addr", "add", l.v4, "dev", l.dev)
		ns.MustIP("addr", "add", l.v6, "dev", l.dev, "nodad")
	}
	ns.MustIP("route", "add", "203.0.113.0/24", "via", "198.51.100.1")
	ns.MustIP("route", "add", "10.20.0.0/16", "via", "192.0.2.1")
	ns.MustIP("-6", "route", "add", "2001:db8:99::/48", "via", "2001:db8:8::1")
	return ns
}

// labSteps alternate between destinations behind different source
// addresses (a connected UDP socket would keep its first source address
// unless dissolved between lookups), each family, mapped IPv4 included.
var labSteps = []lookup{
	{"203.0.113.9:500", "198.51.100.7"},
	{"10.20.1.1:500", "192.0.2.8"},
	{"10.20.1.1:4500", "192.0.2.8"},
	{"203.0.113.9:4500", "198.51.100.7"},
	{"192.0.2.20:500", "192.0.2.8"},
	{"[::ffff:198.51.100.20]:500", "198.51.100.7"},
	{"[2001:db8:7::20]:500", "2001:db8:7::7"},
	{"[2001:db8:99::1]:500", "2001:db8:8::8"},
	{"[2001:db8:7::20]:4500", "2001:db8:7::7"},
}

// TestNetnsVeth: in a namespace of the test's own, destinations routed via
// a veth get that veth's address, for probes made on a thread in the
// namespace (New) and for probes made from the host namespace for a socket
// opened in the namespace (NewForSocket). A destination with no route is
// an error naming it, and does not spoil the next lookup.
func TestNetnsVeth(t *testing.T) {
	ns := netnsLab(t)
	var inside *Prober
	var sock *net.UDPConn
	if err := ns.Do(func() (err error) {
		inside = New(true, true)
		sock, err = net.ListenUDP("udp", &net.UDPAddr{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	defer sock.Close()
	rc, err := sock.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	// Made here, in the host namespace, which routes none of the lab's
	// destinations via the lab's addresses.
	forSock := NewForSocket(rc, true, true)
	defer forSock.Close()
	// And from a thread already in the socket's namespace.
	var forSockInside *Prober
	if err := ns.Do(func() error { forSockInside = NewForSocket(rc, true, true); return nil }); err != nil {
		t.Fatal(err)
	}
	defer forSockInside.Close()
	for _, c := range []struct {
		name string
		p    *Prober
	}{{"New in netns", inside}, {"NewForSocket from host", forSock}, {"NewForSocket in netns", forSockInside}} {
		check(t, c.name, c.p, labSteps)
		for _, dst := range []string{"100.64.9.9:500", "[2001:db8:42::1]:500"} {
			err := mustFail(t, c.name+" no route", c.p, dst)
			if err != nil && !errors.Is(err, syscall.ENETUNREACH) {
				t.Errorf("%s: no route to %s: %v, want ENETUNREACH", c.name, dst, err)
			}
		}
		check(t, c.name+" after a failure", c.p, labSteps[:2])
	}
}

// TestNetnsConcurrent: lookups from several goroutines at once, of both
// families, each get their own destination's answer.
func TestNetnsConcurrent(t *testing.T) {
	ns := netnsLab(t)
	var p *Prober
	if err := ns.Do(func() error { p = New(true, true); return nil }); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	errs := make(chan error, len(labSteps))
	for g := range len(labSteps) {
		wg.Go(func() {
			for i := range 2000 {
				s := labSteps[(g+i)%len(labSteps)]
				got, err := p.Source(netip.MustParseAddrPort(s.dst))
				if err != nil || got != netip.MustParseAddr(s.want) {
					errs <- errors.New("source for " + s.dst + ": " + got.String() + ", want " + s.want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
