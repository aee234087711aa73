//go:build linux

package userspace_test

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
)

// TestNetnsKernelRoutes checks the kernel routes the backend keeps for the
// FIB: added through the TUN, never over a route the kernel already has
// (a connected LAN), removed without touching others, restored after the
// kernel flushed them or someone deleted one, added once the route that
// kept a prefix out is gone, and 10,000 of them in and out.
func TestNetnsKernelRoutes(t *testing.T) {
	testenv.Root(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Skip(t, "no /dev/net/tun")
	}
	ns := testenv.NewNetns(t, "rt")
	ns.MustIP("link", "add", "lan0", "type", "veth", "peer", "name", "lan0p")
	ns.MustIP("addr", "add", "10.2.0.1/24", "dev", "lan0")
	ns.MustIP("link", "set", "lan0p", "up")
	ns.MustIP("link", "set", "lan0", "up")
	var b *userspace.Backend
	err := ns.Do(func() (err error) {
		b, err = userspace.New(userspace.Config{FIB: routing.New(), TUNName: "mpsa0", Logger: quiet,
			Addresses: []netip.Prefix{netip.MustParsePrefix("10.9.0.1/24")}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	routes := func(args ...string) string { return ns.MustIP(append([]string{"route", "show"}, args...)...) }
	want := []netip.Prefix{
		netip.MustParsePrefix("10.2.0.0/24"), // our own LAN: must stay connected
		netip.MustParsePrefix("10.3.0.0/24"),
		netip.MustParsePrefix("fd00:3::/64"),
	}
	if err := b.SetRoutes(want); err != nil {
		t.Fatal(err)
	}
	if got := routes("10.2.0.0/24"); !strings.Contains(got, "dev lan0") || strings.Contains(got, "mpsa0") {
		t.Fatalf("connected LAN route replaced: %q", got)
	}
	if got := routes("10.3.0.0/24"); !strings.Contains(got, "dev mpsa0") || !strings.Contains(got, "proto 252") {
		t.Fatalf("tunnel route missing: %q", got)
	}
	if got := ns.MustIP("-6", "route", "show", "fd00:3::/64"); !strings.Contains(got, "dev mpsa0") {
		t.Fatalf("IPv6 tunnel route missing: %q", got)
	}
	// A route of ours already in the kernel (left by an earlier run) is
	// adopted, and a prefix another route has is not ours.
	adopt := netip.MustParsePrefix("10.4.0.0/24")
	ns.MustIP("route", "add", adopt.String(), "dev", "mpsa0", "proto", "252")
	if err := b.SetRoutes(append(slices.Clone(want), adopt)); err != nil {
		t.Fatal(err)
	}
	if got := b.Routes(); !slices.Contains(got, adopt) || slices.Contains(got, want[0]) || len(got) != 3 {
		t.Fatalf("routes after adoption: %v", got)
	}
	// The kernel flushes the TUN's IPv4 routes when it loses its last
	// IPv4 address; the backend puts them back.
	ns.MustIP("addr", "flush", "dev", "mpsa0")
	waitFor(t, "route restored after the flush", func() bool {
		return strings.Contains(routes("10.3.0.0/24"), "dev mpsa0")
	})
	// A route of ours someone deletes is put back (RTM_DELROUTE).
	ns.MustIP("route", "del", "10.3.0.0/24", "dev", "mpsa0")
	waitFor(t, "route restored after its deletion", func() bool {
		return strings.Contains(routes("10.3.0.0/24"), "dev mpsa0")
	})
	ns.MustIP("-6", "route", "del", "fd00:3::/64", "dev", "mpsa0")
	waitFor(t, "IPv6 route restored after its deletion", func() bool {
		return strings.Contains(ns.MustIP("-6", "route", "show", "fd00:3::/64"), "dev mpsa0")
	})
	// Withdrawing everything removes our routes and only ours.
	if err := b.SetRoutes(nil); err != nil {
		t.Fatal(err)
	}
	if got := routes(adopt.String()); got != "" {
		t.Fatalf("adopted route left: %q", got)
	}
	if got := routes("10.3.0.0/24"); got != "" {
		t.Fatalf("route left behind: %q", got)
	}
	if got := routes("10.2.0.0/24"); !strings.Contains(got, "dev lan0") {
		t.Fatalf("connected LAN route removed: %q", got)
	}
	// A wanted prefix the kernel routed elsewhere goes into the tunnel
	// once that route is gone.
	if err := b.SetRoutes(want); err != nil {
		t.Fatal(err)
	}
	ns.MustIP("addr", "del", "10.2.0.1/24", "dev", "lan0")
	waitFor(t, "the LAN's prefix through the TUN once the LAN route is gone", func() bool {
		return strings.Contains(routes("10.2.0.0/24"), "dev mpsa0")
	})
	// 10,000 routes (a CPE's BGP table) in, then out.
	many := make([]netip.Prefix, 10000)
	for i := range many {
		many[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{44, byte(i >> 8), byte(i), 0}), 24)
	}
	if err := b.SetRoutes(many); err != nil {
		t.Fatal(err)
	}
	if n := len(b.Routes()); n != len(many) {
		t.Fatalf("%d routes, want %d", n, len(many))
	}
	if n := strings.Count(routes("proto", "252"), "\n"); n != len(many) {
		t.Fatalf("the kernel has %d routes of ours, want %d", n, len(many))
	}
	if err := b.SetRoutes(nil); err != nil {
		t.Fatal(err)
	}
	if got := routes("proto", "252"); got != "" || len(b.Routes()) != 0 {
		t.Fatalf("routes left: %d %q", len(b.Routes()), got[:min(len(got), 200)])
	}
}
