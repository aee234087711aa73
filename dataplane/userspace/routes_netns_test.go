//go:build linux

package userspace_test

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
)

// TestNetnsKernelRoutes checks the kernel routes the backend keeps for the
// FIB: added through the TUN, never over a route the kernel already has
// (a connected LAN), removed without touching others, and restored after
// the kernel flushed them.
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
	// The kernel flushes the TUN's IPv4 routes when it loses its last
	// IPv4 address; the backend puts them back.
	ns.MustIP("addr", "flush", "dev", "mpsa0")
	waitFor(t, "route restored after the flush", func() bool {
		return strings.Contains(routes("10.3.0.0/24"), "dev mpsa0")
	})
	// Withdrawing everything removes our routes and only ours.
	if err := b.SetRoutes(nil); err != nil {
		t.Fatal(err)
	}
	if got := routes("10.3.0.0/24"); got != "" {
		t.Fatalf("route left behind: %q", got)
	}
	if got := routes("10.2.0.0/24"); !strings.Contains(got, "dev lan0") {
		t.Fatalf("connected LAN route removed: %q", got)
	}
}
