package cpe

import (
	"net"
	"net/netip"
	"os"
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
	accepted := make(chan net.Addr, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c.RemoteAddr()
			// Hold it: the speaker waits for an OPEN that never comes.
			defer c.Close()
		}
	}()

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
	select {
	case from, ok := <-accepted:
		if !ok || from.(*net.TCPAddr).IP.String() != st.Tunnel.Overlay.String() {
			t.Errorf("BGP connection from %v, want our overlay address %v", from, st.Tunnel.Overlay)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no BGP connection reached the hub through the CHILD_SA")
	}

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

	// Stopping removes the states, the policies and the overlay address.
	c.Close()
	if states := s.cpe.MustIP("xfrm", "state"); strings.Contains(states, "spi") {
		t.Errorf("states left after Close:\n%s", states)
	}
	if lo := s.cpe.MustIP("addr", "show", "dev", "lo"); strings.Contains(lo, st.Tunnel.Overlay.String()) {
		t.Errorf("overlay address left on lo:\n%s", lo)
	}
}
