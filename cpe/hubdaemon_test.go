package cpe

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/lab"
)

// hubDaemon is mpsa-hub, the real hub, run as a process in a namespace.
type hubDaemon struct {
	t    *testing.T
	ns   *testenv.Netns
	bin  string
	conf string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
	ch chan struct{}
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ch != nil {
		close(l.ch)
		l.ch = nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor waits until the output holds n occurrences of sub.
func (l *lockedBuffer) waitFor(t *testing.T, sub string, n int, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		l.mu.Lock()
		if strings.Count(l.b.String(), sub) >= n {
			l.mu.Unlock()
			return
		}
		if l.ch == nil {
			l.ch = make(chan struct{})
		}
		ch := l.ch
		l.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("mpsa-hub never logged %q (%d times):\n%s", sub, n, l.String())
		}
	}
}

func startHubDaemon(t *testing.T, ns *testenv.Netns, cpes int) *hubDaemon {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mpsa-hub")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/mpsa-hub").CombinedOutput(); err != nil {
		t.Fatalf("building mpsa-hub: %v\n%s", err, out)
	}
	dir := shortTempDir(t)
	var b strings.Builder
	fmt.Fprintf(&b, `ike: {listen: [192.0.2.254]}
identity: fqdn:hub.example.net
groups:
  - name: acme
    pool: {ipv4: 100.64.0.0/24}
bgp:
  router_id: 192.0.2.254
  grpc_listen: 127.0.0.1:50051
dataplane: {backend: userspace}
state_dir: %[1]s/state
status: {socket: %[1]s/hub.sock}
log: {level: info}
cpes:
`, dir)
	for i := 1; i <= cpes; i++ {
		id := fmt.Sprintf("fqdn:cpe%d.example.net", i)
		fmt.Fprintf(&b, "  - {identity: %q, group: acme, psk: %q, prefixes: [10.%d.0.0/24]}\n", id, testPSK(id), i)
	}
	conf := filepath.Join(dir, "hub.yaml")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &hubDaemon{t: t, ns: ns, bin: bin, conf: conf, out: &lockedBuffer{}}
	h.start()
	t.Cleanup(func() {
		h.kill()
		if t.Failed() {
			t.Logf("mpsa-hub output:\n%s", h.out.String())
		}
	})
	return h
}

func (h *hubDaemon) start() {
	h.cmd = h.ns.Command(context.Background(), h.bin, "--config", h.conf)
	h.cmd.Stdout, h.cmd.Stderr = h.out, h.out
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(h.cmd, h.done)
}

// kill ends the hub with SIGKILL: no IKE DELETE, no BGP NOTIFICATION.
func (h *hubDaemon) kill() {
	if h.cmd == nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
	h.cmd = nil
}

// TestWithHubDaemon runs two CPEs (this library, in namespaces) against
// the real mpsa-hub: both connect, get their overlay addresses, the group
// SA and the BGP session; each learns the other's LAN with its endpoint and
// the LANs reach each other directly. Then the hub is killed (kill -9):
// the CPEs keep their routes and group SA, LAN traffic keeps flowing, and
// everything is back soon after the hub restarts.
func TestWithHubDaemon(t *testing.T) {
	testenv.Root(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Skip(t, "no /dev/net/tun")
	}
	testenv.Binary(t, "ping", "apt-get install iputils-ping")
	hubNS, sites := topology(t, 2)
	hub := startHubDaemon(t, hubNS, len(sites))
	hub.out.waitFor(t, "hub ready", 1, 60*time.Second)
	for _, s := range sites {
		s.c = netnsCPE(t, s)
	}
	diagCPEs = []*CPE{sites[0].c, sites[1].c}
	defer func() { diagCPEs = nil }()
	var spi string
	for _, s := range sites {
		st := waitStatus(t, s.c, 60*time.Second, fmt.Sprintf("cpe%d up with mpsa-hub", s.i), func(st *Status) bool {
			return st.Tunnel.Up && len(st.Group.SAs) == 1 && st.BGP.Established
		})
		if spi == "" {
			spi = st.Group.SAs[0].SPI
		} else if st.Group.SAs[0].SPI != spi {
			t.Errorf("cpe%d has group SA %s, cpe1 %s", s.i, st.Group.SAs[0].SPI, spi)
		}
		if !netip.MustParsePrefix("100.64.0.0/24").Contains(st.Tunnel.Overlay) {
			t.Errorf("cpe%d overlay %v outside the group's pool", s.i, st.Tunnel.Overlay)
		}
	}
	waitRoute(t, sites[0].c, 30*time.Second, "10.2.0.0/24", "192.0.2.2:0")
	waitRoute(t, sites[1].c, 30*time.Second, "10.1.0.0/24", "192.0.2.1:0")
	if lost := pingUntil(t, sites[0].lan, sites[1].host, 20*time.Second, 5); lost != 0 {
		t.Errorf("lan1 -> lan2: %d of 5 lost", lost)
	}

	// kill -9: routes and traffic stay; the hub comes back.
	hub.kill()
	for _, s := range sites {
		waitStatus(t, s.c, 30*time.Second, fmt.Sprintf("cpe%d notices the hub is gone", s.i), func(st *Status) bool {
			return !st.BGP.Established
		})
	}
	waitRoute(t, sites[0].c, time.Second, "10.2.0.0/24", "192.0.2.2:0")
	if lost := pingUntil(t, sites[1].lan, sites[0].host, 5*time.Second, 5); lost != 0 {
		t.Errorf("while the hub is down: %d of 5 lost", lost)
	}
	start := time.Now()
	hub.start()
	for _, s := range sites {
		st := waitStatus(t, s.c, 30*time.Second, fmt.Sprintf("cpe%d back", s.i), func(st *Status) bool {
			return st.Tunnel.Up && st.BGP.Established && st.BGP.Routes == 1 &&
				len(st.Group.SAs) == 1 && st.Group.SAs[0].SPI == spi
		})
		t.Logf("cpe%d back after %v, %d of its routes still stale", s.i, time.Since(start).Round(time.Millisecond), st.BGP.Stale)
	}
	// The restarted reflector ends its restart deferral and sends every
	// CPE the table and End-of-RIB: the routes kept are fresh again.
	for _, s := range sites {
		waitStatus(t, s.c, 10*time.Second, fmt.Sprintf("cpe%d has End-of-RIB from the restarted hub", s.i), func(st *Status) bool {
			return st.BGP.Established && st.BGP.Routes == 1 && st.BGP.Stale == 0
		})
	}
	waitRoute(t, sites[0].c, time.Second, "10.2.0.0/24", "192.0.2.2:0")
	if lost := pingUntil(t, sites[0].lan, sites[1].host, 10*time.Second, 5); lost != 0 {
		t.Errorf("after the restart: %d of 5 lost", lost)
	}
}

// hubSAs is what the tests read of mpsa-hub's "sas" status view.
type hubSAs struct {
	SAs []struct {
		CPE      string `json:"cpe"`
		Local    string `json:"local"`
		Remote   string `json:"remote"`
		NAT      bool   `json:"nat"`
		Children []struct {
			InSPI  string `json:"in_spi"`
			OutSPI string `json:"out_spi"`
			Encap  bool   `json:"encap"`
		} `json:"children"`
	} `json:"sas"`
}

// TestHubDaemonEncapsulation: three CPEs on a plain underlay (no NAT)
// against the real mpsa-hub, with wan.encapsulation auto, raw and udp.
// The hub reports none of them behind a NAT except the one that asks for
// UDP (which fakes its NAT_DETECTION_SOURCE_IP, RFC 7296 §2.23, to get
// it); the CHILD_SAs, the advertised endpoints and the ESP on the hub's
// link are raw ESP for auto and raw, ESP-in-UDP for udp. Each CPE's IKE
// SA, and the hub's, name the real addresses the datagrams used.
func TestHubDaemonEncapsulation(t *testing.T) {
	testenv.Root(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Skip(t, "no /dev/net/tun")
	}
	hubNS, sites := topology(t, 3)
	hub := startHubDaemon(t, hubNS, len(sites))
	hub.out.waitFor(t, "hub ready", 1, 60*time.Second)
	capt, err := lab.StartCapture(hubNS.Name, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Stop()
	encaps := []configs.Encapsulation{configs.EncapAuto, configs.EncapRaw, configs.EncapUDP}
	udp := func(e configs.Encapsulation) bool { return e == configs.EncapUDP }
	for i, s := range sites {
		s.c = netnsCPE(t, s, func(c *configs.CPE) { c.WAN.Encapsulation = encaps[i] })
	}
	diagCPEs = []*CPE{sites[0].c, sites[1].c, sites[2].c}
	defer func() { diagCPEs = nil }()
	childSPIs := map[string]bool{} // the CHILD_SAs' SPIs, both ways
	for i, s := range sites {
		st := waitStatus(t, s.c, 60*time.Second, fmt.Sprintf("cpe%d (%s) up", s.i, encaps[i]), func(st *Status) bool {
			return st.Tunnel.Up && len(st.Group.SAs) == 1 && st.BGP.Established
		})
		port := uint16(0)
		if udp(encaps[i]) {
			port = 4500
		}
		if want := netip.AddrPortFrom(s.outer, port); st.Tunnel.Endpoint != want {
			t.Errorf("cpe%d (%s) advertises endpoint %v, want %v", s.i, encaps[i], st.Tunnel.Endpoint, want)
		}
		if len(st.IKE) != 1 {
			t.Fatalf("cpe%d IKE SAs %+v", s.i, st.IKE)
		}
		sa := st.IKE[0]
		if sa.NATLocal || sa.NATRemote {
			t.Errorf("cpe%d (%s) sees a NAT: local %v, hub %v", s.i, encaps[i], sa.NATLocal, sa.NATRemote)
		}
		if sa.Local != netip.AddrPortFrom(s.outer, 4500) || sa.Remote != netip.MustParseAddrPort("192.0.2.254:4500") {
			t.Errorf("cpe%d IKE SA %v -> %v, want %v:4500 -> 192.0.2.254:4500", s.i, sa.Local, sa.Remote, s.outer)
		}
		for _, ch := range sa.Children {
			if ch.Encap != udp(encaps[i]) {
				t.Errorf("cpe%d (%s) CHILD_SA %s encapsulated: %v", s.i, encaps[i], ch.InSPI, ch.Encap)
			}
			childSPIs[ch.InSPI], childSPIs[ch.OutSPI] = true, true
		}
	}
	// Each learns the others' LANs with the endpoint they advertised.
	waitRoute(t, sites[0].c, 30*time.Second, "10.2.0.0/24", "192.0.2.2:0")
	waitRoute(t, sites[0].c, 30*time.Second, "10.3.0.0/24", "192.0.2.3:4500")
	waitRoute(t, sites[2].c, 30*time.Second, "10.1.0.0/24", "192.0.2.1:0")

	// The hub's view.
	var view hubSAs
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ops.QueryJSON(ctx, filepath.Join(filepath.Dir(hub.conf), "hub.sock"), "sas", &view); err != nil {
		t.Fatal(err)
	}
	byCPE := map[string]int{}
	for i, sa := range view.SAs {
		byCPE[sa.CPE] = i
	}
	for i, s := range sites {
		id := fmt.Sprintf("fqdn:cpe%d.example.net", s.i)
		j, ok := byCPE[id]
		if !ok {
			t.Errorf("the hub has no IKE SA of %s: %+v", id, view.SAs)
			continue
		}
		sa := view.SAs[j]
		if sa.NAT != udp(encaps[i]) {
			t.Errorf("the hub reports %s (%s) behind a NAT: %v", id, encaps[i], sa.NAT)
		}
		if sa.Remote != netip.AddrPortFrom(s.outer, 4500).String() || sa.Local != "192.0.2.254:4500" {
			t.Errorf("the hub's IKE SA of %s: %s -> %s", id, sa.Local, sa.Remote)
		}
		for _, ch := range sa.Children {
			if ch.Encap != udp(encaps[i]) {
				t.Errorf("the hub's CHILD_SA %s of %s (%s) encapsulated: %v", ch.InSPI, id, encaps[i], ch.Encap)
			}
		}
	}

	// On the wire: the CHILD_SAs' ESP (the BGP sessions) is raw or in UDP
	// as each CPE asked, both ways.
	type count struct{ raw, udp int }
	seen := map[netip.Addr]*count{}
	for _, p := range capt.Stop() {
		pi := p.Info
		if pi.Kind != lab.KindESP || !childSPIs[fmt.Sprintf("%08x", pi.SPI)] {
			continue
		}
		cpe := pi.Src
		if cpe == netip.MustParseAddr("192.0.2.254") {
			cpe = pi.Dst
		}
		if seen[cpe] == nil {
			seen[cpe] = &count{}
		}
		if pi.UDPEncap {
			seen[cpe].udp++
		} else {
			seen[cpe].raw++
		}
	}
	for i, s := range sites {
		c := seen[s.outer]
		switch {
		case c == nil:
			t.Errorf("no CHILD_SA ESP of cpe%d on the hub's link", s.i)
		case udp(encaps[i]) && (c.raw != 0 || c.udp == 0), !udp(encaps[i]) && (c.udp != 0 || c.raw == 0):
			t.Errorf("cpe%d (%s): %d raw ESP and %d ESP-in-UDP packets of its CHILD_SA", s.i, encaps[i], c.raw, c.udp)
		}
	}
}
