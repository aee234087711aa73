package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/xfrm"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
	"github.com/mpsa-vpn/mpsa/tests/vm/vmtest"
)

// The XFRM data plane of the hub needs a kernel with ESP: the guest of the
// VM harness (tests/vm), or a host whose kernel passes xfrm.Probe. On other
// hosts TestDaemonVM boots the guest and runs TestDaemonXFRM there.

func inVM() bool { return os.Getenv(vmtest.Env) == "1" }

// TestDaemonVM runs TestDaemonXFRM in a QEMU guest that boots Debian's
// kernel, when the host's kernel cannot do ESP itself.
func TestDaemonVM(t *testing.T) {
	if inVM() {
		t.Skip("already inside the VM")
	}
	testenv.Root(t)
	if xfrm.Probe(testenv.NewNetns(t, "hxe").Name) == nil {
		t.Skip("the host kernel has ESP: TestDaemonXFRM ran directly")
	}
	testenv.Short(t)
	vmtest.Run(t, vmtest.Options{Packages: []string{"./cmd/mpsa-hub"}, Run: "TestDaemonXFRM"})
}

// TestDaemonXFRM: mpsa-hub with dataplane.backend xfrm in one namespace, a
// CPE whose CHILD_SA is in its kernel's XFRM (dataplane/xfrm) in another,
// behind a veth pair. The hub puts its overlay address on a dummy
// interface, installs the CHILD_SA as kernel ESP states with policies from
// its FIB, and a ping from the CPE's overlay address to the hub's crosses
// it both ways; the hub's metrics count it from the kernel's state
// counters. On SIGTERM the hub removes its states, policies and interface.
func TestDaemonXFRM(t *testing.T) {
	if !inVM() {
		testenv.Root(t)
		if err := xfrm.Probe(testenv.NewNetns(t, "hxe").Name); err != nil {
			t.Skipf("no ESP in this kernel (%v); TestDaemonVM runs this test in a QEMU guest", err)
		}
	}
	testenv.Binary(t, "ping", "apt-get install iputils-ping")
	hubNS := testenv.NewNetns(t, "hubx")
	cpeNS := testenv.NewNetns(t, "cpex")
	testenv.Veth(t, hubNS, "wan0", cpeNS, "wan0")
	hubNS.MustIP("addr", "add", "192.0.2.1/24", "dev", "wan0")
	cpeNS.MustIP("addr", "add", "192.0.2.2/24", "dev", "wan0")
	// Decapsulated packets come in on wan0 from an overlay address the hub
	// routes to its dummy interface: loose reverse-path filtering, as on a
	// hardened host, lets them through.
	for _, conf := range []string{"all", "wan0"} {
		if out, err := hubNS.Run("sh", "-c", "echo 2 > /proc/sys/net/ipv4/conf/"+conf+"/rp_filter"); err != nil {
			t.Fatalf("rp_filter: %v %s", err, out)
		}
	}

	dir, err := os.MkdirTemp("", "hubx")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "hub.yaml")
	yaml := strings.Replace(hubYAMLAt("192.0.2.1", dir, "", "cpe1.acme.example"), "backend: userspace", "backend: xfrm", 1)
	writeConfig(t, cfg, yaml)
	d := startDaemon(t, hubNS, cfg)
	d.waitLog("hub ready")
	if out := hubNS.MustIP("-d", "addr", "show", "dev", "mpsa0"); !strings.Contains(out, "100.64.0.1/24") || !strings.Contains(out, "dummy") {
		t.Errorf("hub overlay address not on the dummy interface mpsa0:\n%s", out)
	}

	// The CPE's data plane: XFRM in its namespace.
	fib := routing.New(routing.WithLogger(slog.New(slog.DiscardHandler)))
	dp, err := xfrm.New(xfrm.Config{Netns: cpeNS.Name, Routes: fib, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	const tunnel = routing.Tunnel(1)
	hubOverlay := netip.MustParsePrefix("100.64.0.1/32")
	var mu sync.Mutex
	var sas []dataplane.SA
	childUp := make(chan ike.ChildSA, 1)
	puts := make(chan error, 8)
	m := newCPE(t, cpeNS, "fqdn:cpe1.acme.example", puts, "192.0.2.2:0", func(ev ike.Event) {
		if ev.Kind != ike.EventChildUp {
			return
		}
		peer := netip.AddrPortFrom(ev.Child.Remote.Addr(), 0)
		if ev.Child.Encap {
			peer = ev.Child.Remote
		}
		var local []netip.Prefix
		for _, v := range ev.Info.VIPs {
			local = append(local, v)
		}
		base := dataplane.SA{Tunnel: tunnel, Peer: peer, Local: ev.Child.Local.Addr(), ReplayWindow: 64}
		in, out := base, base
		in.Keys, in.Dir, in.RemoteSelectors, in.LocalSelectors = ev.Child.In.Clone(), dataplane.In, []netip.Prefix{hubOverlay}, local
		out.Keys, out.Dir = ev.Child.Out.Clone(), dataplane.Out
		mu.Lock()
		sas = []dataplane.SA{in, out}
		err := dp.Set(&dataplane.State{SAs: sas})
		mu.Unlock()
		if err == nil {
			err = fib.Upsert(routing.Route{Prefix: hubOverlay, Endpoint: peer, Tunnel: tunnel, Source: routing.SourceStatic})
		}
		if err != nil {
			t.Errorf("CPE data plane: %v", err)
		}
		childUp <- *ev.Child
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitOK)
	defer cancel()
	sa, err := m.Initiate(ctx, ike.Connection{Remote: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:500")},
		RemoteID: auth.MustParseID("fqdn:hub.example.net"), VirtualIPs: []netip.Addr{netip.IPv4Unspecified()}})
	if err != nil {
		t.Fatalf("CPE: %v\n%s", err, d.log.String())
	}
	var child ike.ChildSA
	select {
	case child = <-childUp:
	case <-time.After(waitOK):
		t.Fatal("no CHILD_SA")
	}
	if child.Encap {
		t.Errorf("ESP UDP-encapsulated without a NAT")
	}
	select {
	case err := <-puts:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitOK):
		t.Fatal("no MPSA_PUT")
	}
	vip := sa.Info().VIPs[0]
	cpeNS.MustIP("addr", "add", vip.String(), "dev", "lo")
	cpeNS.MustIP("route", "add", hubOverlay.String(), "dev", "wan0", "src", vip.Addr().String())
	d.waitLog("CPE connected", "id=fqdn:cpe1.acme.example")

	// The hub's kernel holds the CHILD_SA: both SPIs.
	waitXfrm := func(what string, cond func(states, policies string) bool) (string, string) {
		t.Helper()
		// The kernel announces nothing we could wait on here: poll it.
		deadline := time.After(waitOK)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			st, _ := hubNS.IP("xfrm", "state")
			po, _ := hubNS.IP("xfrm", "policy")
			if cond(st, po) {
				return st, po
			}
			select {
			case <-tick.C:
			case <-deadline:
				t.Fatalf("hub kernel: %s:\n%s\n%s\nhub log:\n%s", what, st, po, d.log.String())
			}
		}
	}
	spis := []string{fmt.Sprintf("spi 0x%08x", child.InSPI), fmt.Sprintf("spi 0x%08x", child.OutSPI)}
	waitXfrm("the CHILD_SA's states and the policy to the CPE", func(st, po string) bool {
		return strings.Contains(st, spis[0]) && strings.Contains(st, spis[1]) && strings.Contains(po, "dst "+vip.String())
	})

	out, err := cpeNS.Run("ping", "-c", "3", "-i", "0.2", "-W", "5", "-I", vip.Addr().String(), "100.64.0.1")
	if err != nil || !strings.Contains(out, "3 packets received") && !strings.Contains(out, "3 received") {
		st, _ := hubNS.IP("-s", "xfrm", "state")
		t.Fatalf("ping over the CHILD_SA: %v\n%s\nhub states:\n%s\nhub log:\n%s", err, out, st, d.log.String())
	}
	if st := dp.Stats(); st.RxPackets < 3 || st.TxPackets < 3 {
		t.Errorf("CPE data plane counters %+v", st)
	}
	metrics := scrape(t, hubNS, "127.0.0.1:9470")
	for _, dir := range []string{"in", "out"} {
		if n := metricValue(metrics, `mpsa_hub_dataplane_packets_total{dir="`+dir+`"}`); n < 3 {
			t.Errorf("hub metrics: %d packets %s, want ≥ 3:\n%s", n, dir, grepLines(metrics, "dataplane"))
		}
	}

	// SIGTERM: the hub deletes the CPE's IKE SA and takes its kernel state
	// down.
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-sa.Done():
	case <-time.After(waitOK):
		t.Error("the CPE's IKE SA was not deleted on shutdown")
	}
	d.waitLog("hub stopped")
	for range d.lines {
	}
	if err := <-d.exit; err != nil {
		t.Errorf("mpsa-hub exit: %v", err)
	}
	st, _ := hubNS.IP("xfrm", "state")
	po, _ := hubNS.IP("xfrm", "policy")
	if strings.Contains(st, "spi") || strings.Contains(po, "tmpl") {
		t.Errorf("XFRM state left after the hub stopped:\n%s\n%s", st, po)
	}
	if out, err := hubNS.IP("link", "show", "mpsa0"); err == nil {
		t.Errorf("mpsa0 left after the hub stopped:\n%s", out)
	}
	mu.Lock()
	for i := range sas {
		sas[i].Keys.Wipe()
	}
	mu.Unlock()
}

// metricValue returns the value of one sample of the Prometheus text
// format, -1 if it is not there.
func metricValue(text, sample string) int64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return int64(v)
}
