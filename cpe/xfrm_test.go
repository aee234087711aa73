package cpe

import (
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/dataplane/xfrm"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/tests/vm/vmtest"
)

func inVM() bool { return os.Getenv(vmtest.Env) == "1" }

// TestXFRMVM runs TestXFRM in a QEMU guest booting Debian's kernel, when
// this host's kernel cannot do ESP (tests/vm).
func TestXFRMVM(t *testing.T) {
	if inVM() {
		t.Skip("already inside the VM")
	}
	testenv.Root(t)
	if xfrm.Probe(testenv.NewNetns(t, "cxp").Name) == nil {
		t.Skip("the host kernel has ESP: TestXFRM ran directly")
	}
	testenv.Short(t)
	vmtest.Run(t, vmtest.Options{Packages: []string{"./cpe"}, Run: "TestXFRM$"})
}

// TestXFRM: with dataplane.backend auto on a kernel with ESP, the CPE
// picks the xfrm backend; its CHILD_SA and the group SA become kernel
// states, its overlay address goes on lo, and its BGP connection to the
// hub's overlay address is made only once the kernel's policy sends it
// through the CHILD_SA, where the hub (XFRM too) accepts it.
func TestXFRM(t *testing.T) {
	if !inVM() {
		testenv.Root(t)
		if err := xfrm.Probe(testenv.NewNetns(t, "cxp").Name); err != nil {
			t.Skipf("no ESP in this kernel (%v); TestXFRMVM runs this test in a QEMU guest", err)
		}
	}
	hubNS, sites := topology(t, 1)
	s := sites[0]
	// Kernel routes: the CPE's default route leaves through its WAN (as a
	// CPE's does), the hub routes the overlay pool to the CPEs; decrypted
	// packets arrive on eth0 from overlay addresses (loose rp_filter).
	s.cpe.MustIP("route", "add", "default", "via", "192.0.2.254")
	hubNS.MustIP("route", "add", "100.64.0.0/24", "dev", "eth0")
	for _, conf := range []string{"all", "eth0"} {
		if out, err := hubNS.Run("sh", "-c", "echo 2 > /proc/sys/net/ipv4/conf/"+conf+"/rp_filter"); err != nil {
			t.Fatalf("rp_filter: %v %s", err, out)
		}
	}
	id := "fqdn:cpe1.example.net"
	newTestHub(t, hubOptions{ns: hubNS, outer: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.254:500")},
		overlay: netip.MustParseAddr("100.64.0.1"), psk: map[string][]byte{id: testPSK(id)}, xfrm: true})

	// The hub's BGP port: a plain listener stands in for the reflector;
	// a connection accepted on it crossed the CHILD_SA both ways.
	var ln net.Listener
	if err := hubNS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "100.64.0.1:179")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Each accepted connection is held (the speaker waits for an OPEN
	// that never comes) until the test closes it.
	accepted := make(chan net.Conn, 8)
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	})
	// nextBGP waits for the next connection and checks it comes from
	// our overlay address.
	nextBGP := func(what string, overlay netip.Addr) net.Conn {
		t.Helper()
		select {
		case c, ok := <-accepted:
			if !ok {
				t.Fatalf("%s: listener closed", what)
			}
			t.Cleanup(func() { c.Close() })
			if from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(); from != overlay {
				t.Errorf("%s: BGP connection from %v, want our overlay address %v", what, from, overlay)
			}
			return c
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no BGP connection reached the hub through the CHILD_SA", what)
		}
		return nil
	}

	cfg := cpeConfig(t, id, []netip.AddrPort{netip.MustParseAddrPort("192.0.2.254:500")}, "10.1.0.0/24")
	cfg.WAN.Interface = "eth0"
	c, err := New(cfg, testLogger(t, "cpe1"), WithNetns(s.cpe.Name),
		WithIKEConfig(func(c *ike.Config) { c.RetransmitTimeout = 500 * time.Millisecond }),
		WithBGPConfig(func(c *speaker.Config) { c.MinBackoff, c.MaxBackoff = 200*time.Millisecond, time.Second }))
	if err != nil {
		t.Fatal(err)
	}
	runCPE(t, c)
	st := waitStatus(t, c, 60*time.Second, "tunnel and group SA over XFRM", func(st *Status) bool {
		return st.Tunnel.Up && len(st.Group.SAs) == 1
	})
	if st.Dataplane.Backend != "xfrm" {
		t.Fatalf("backend %q, want xfrm (auto on a kernel with ESP)", st.Dataplane.Backend)
	}
	bgpConn := nextBGP("first connection", st.Tunnel.Overlay)

	// The kernel holds the group SA and both halves of the CHILD_SA, and
	// the overlay address is on lo.
	states := s.cpe.MustIP("xfrm", "state")
	want := []string{"spi 0x" + st.Group.SAs[0].SPI}
	for _, ch := range st.IKE[0].Children {
		want = append(want, "spi 0x"+ch.InSPI, "spi 0x"+ch.OutSPI)
	}
	for _, w := range want {
		if !strings.Contains(states, w) {
			t.Errorf("kernel states lack %s:\n%s", w, states)
		}
	}
	if lo := s.cpe.MustIP("addr", "show", "dev", "lo"); !strings.Contains(lo, st.Tunnel.Overlay.String()+"/32") {
		t.Errorf("overlay address %v not on lo:\n%s", st.Tunnel.Overlay, lo)
	}

	// A WAN address change (a DHCP client's new lease: the old address
	// goes, the new one and the default route come): MOBIKE moves the IKE
	// SA, the backend moves the states and policies to the new address
	// (SetEndpoints), and a new BGP connection crosses the CHILD_SA.
	s.cpe.MustIP("addr", "del", "192.0.2.1/24", "dev", "eth0")
	s.cpe.MustIP("addr", "add", "192.0.2.11/24", "dev", "eth0")
	s.cpe.MustIP("route", "replace", "default", "via", "192.0.2.254")
	moved := netip.MustParseAddr("192.0.2.11")
	oldAddr := regexp.MustCompile(`\b192\.0\.2\.1\b`)
	var kernel string
	st, err = c.Wait(within(t, 30*time.Second), func(st *Status) bool {
		if len(st.IKE) != 1 || len(st.Group.SAs) != 1 || st.IKE[0].Local.Addr() != moved || st.Tunnel.Endpoint != netip.AddrPortFrom(moved, 0) || !st.Tunnel.Up {
			return false
		}
		// reconcile (which notifies) has set the endpoints by now.
		kernel = s.cpe.MustIP("xfrm", "state")
		return strings.Contains(kernel, "spi 0x"+st.Group.SAs[0].SPI) && strings.Contains(kernel, "192.0.2.11") && !oldAddr.MatchString(kernel)
	})
	if err != nil {
		t.Fatalf("after the WAN change: %v; status %+v; kernel states:\n%s", err, st, kernel)
	}
	if n := c.counters.mobike.Load(); n != 1 {
		t.Errorf("%d MOBIKE updates, want 1", n)
	}
	if pols := s.cpe.MustIP("xfrm", "policy"); oldAddr.MatchString(pols) {
		t.Errorf("policies still name the old address:\n%s", pols)
	}
	bgpConn.Close()
	nextBGP("connection after the WAN change", st.Tunnel.Overlay)

	// Stopping removes the states, the policies and the overlay address.
	c.Close()
	if states := s.cpe.MustIP("xfrm", "state"); strings.Contains(states, "spi") {
		t.Errorf("states left after Close:\n%s", states)
	}
	if lo := s.cpe.MustIP("addr", "show", "dev", "lo"); strings.Contains(lo, st.Tunnel.Overlay.String()) {
		t.Errorf("overlay address left on lo:\n%s", lo)
	}
}
