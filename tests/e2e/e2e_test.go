package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/lab"
)

// TestThreeCPEs: three CPEs, dual-stack LANs, on an IPv4 and an IPv6
// underlay (so IPv4 and IPv6 LAN traffic each run over both families):
// every LAN host reaches every other in both families, and captures on the
// hub's link see no CPE-to-CPE ESP while the CPEs' links carry it.
func TestThreeCPEs(t *testing.T) {
	for _, u := range []lab.Family{lab.IPv4, lab.IPv6} {
		t.Run(fmt.Sprintf("underlay_v%d", u), func(t *testing.T) {
			ctx := testContext(t)
			l := newLab(t, lab.Config{CPEs: 3, Underlay: u})
			converge(t, ctx, l)
			var res []lab.PingResult
			d, err := l.CheckDirect(ctx, func(ctx context.Context) error {
				res = pingAll(t, ctx, l, 5)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			ok := map[lab.Family]int{}
			for _, r := range res {
				if r.OK() {
					ok[lab.FamilyOf(r.Dst)]++
				}
			}
			if ok[lab.IPv4] != 6 || ok[lab.IPv6] != 6 {
				t.Errorf("pairs with every reply: %d IPv4, %d IPv6; want 6 and 6 (3 CPEs, both directions)", ok[lab.IPv4], ok[lab.IPv6])
			}
			if !d.OK() {
				t.Errorf("CPE-to-CPE traffic not shown direct: %v", d)
			}
			t.Logf("\n%s", l.Summary(l.Snapshot(ctx), res, d))
		})
	}
}

// TestAddCPE: a fourth CPE provisioned at runtime (config edit and SIGHUP)
// reaches every other CPE, and nothing changes on the three others: same
// IKE SAs, CHILD_SAs, group SA and BGP sessions (no reset).
func TestAddCPE(t *testing.T) {
	ctx := testContext(t)
	l := newLab(t, lab.Config{CPEs: 3, IPv4Only: true})
	s0 := converge(t, ctx, l)
	before := map[string]fingerprint{}
	hubBefore := map[string]string{}
	for _, c := range l.CPEs() {
		before[c.Name] = fingerprintOf(t, s0, c.Name)
		for _, sa := range s0.HubSA(c.Identity) {
			hubBefore[c.Identity] += sa.SPIi + "_" + sa.SPIr + " "
		}
	}

	c4, err := l.AddCPE(ctx, lab.CPEOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s1 := converge(t, ctx, l)
	res := pingAll(t, ctx, l, 3)
	n4 := 0
	for _, r := range res {
		if r.OK() && (r.From == c4.Name || r.To == c4.Name) {
			n4++
		}
	}
	if n4 != 6 {
		t.Errorf("%s exchanged pings with %d of 6 (peer, direction) pairs", c4.Name, n4)
	}
	if s1.Group().Epoch != s0.Group().Epoch || s1.Group().SPI != s0.Group().SPI {
		t.Errorf("adding a CPE changed the group SA: epoch %d SPI %s -> epoch %d SPI %s",
			s0.Group().Epoch, s0.Group().SPI, s1.Group().Epoch, s1.Group().SPI)
	}
	for name, fp := range before {
		if now := fingerprintOf(t, s1, name); now != fp {
			t.Errorf("%s changed: %+v -> %+v", name, fp, now)
		}
	}
	for id, spis := range hubBefore {
		now := ""
		for _, sa := range s1.HubSA(id) {
			now += sa.SPIi + "_" + sa.SPIr + " "
		}
		if now != spis {
			t.Errorf("hub: IKE SAs of %s changed: %s -> %s", id, spis, now)
		}
	}
}

// TestRemovedCPE: a CPE taken out of the configuration is revoked: its
// routes are withdrawn at every other CPE, the group rolls over to a new SA,
// and the traffic between the remaining CPEs captured after the rollover
// does not decrypt with the group keys the removed CPE held (our esp
// package and tshark both say so) while it does with the new keys.
func TestRemovedCPE(t *testing.T) {
	tshark := testenv.Binary(t, "tshark", "apt-get install tshark")
	ctx := testContext(t)
	l := newLab(t, lab.Config{CPEs: 3, IPv4Only: true, Roll1: time.Second, Roll2: 3 * time.Second})
	s0 := converge(t, ctx, l)
	c1, _ := l.CPE("cpe1")
	c2, _ := l.CPE("cpe2")
	c3, _ := l.CPE("cpe3")
	oldSPI := s0.Group().SPI

	if err := l.RemoveCPE(ctx, c3.Name); err != nil {
		t.Fatal(err)
	}
	rest := []lab.CPE{c1, c2}
	s1 := waitFor(t, ctx, l, 60*time.Second, "cpe3 withdrawn and the group rolled over", func(s *lab.Snapshot) bool {
		g := s.Group()
		if g == nil || g.Epoch <= s0.Group().Epoch || len(s.Problems(rest)) > 0 || len(s.HubSA(c3.Identity)) > 0 {
			return false
		}
		for _, c := range rest { // steady on the new SA: the old one is gone
			st := s.CPEs[c.Name]
			if st == nil || len(st.Status.Group.SAs) != 1 || st.Status.Group.SAs[0].SPI != g.SPI {
				return false
			}
		}
		return true
	})
	newSPI := s1.Group().SPI
	t.Logf("group rolled over from %s (epoch %d) to %s (epoch %d)", oldSPI, s0.Group().Epoch, newSPI, s1.Group().Epoch)
	for _, c := range rest {
		for p := range s1.BGPRoutes(c.Name) {
			if slices.Contains(c3.Prefixes, p) {
				t.Errorf("%s still has a route to %v of the removed CPE", c.Name, p)
			}
		}
	}

	// Traffic between the remaining CPEs after the rollover.
	capt, err := lab.StartCapture(c1.NS, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	st, err := lab.Ping(ctx, c1.HostNS, c2.Host(lab.IPv4), 10, 50*time.Millisecond, 20*time.Second)
	pkts := capt.Stop()
	if err != nil || st.Received != st.Sent {
		t.Fatalf("pings after the rollover: %v %v", st, err)
	}
	var spiNew uint32
	fmt.Sscanf(newSPI, "%x", &spiNew)
	var spiOld uint32
	fmt.Sscanf(oldSPI, "%x", &spiOld)
	n := 0
	for _, p := range pkts {
		if p.Info.Kind != lab.KindESP || !p.Info.Between(c1.WAN, c2.WAN) {
			continue
		}
		switch p.Info.SPI {
		case spiNew:
			n++
		case spiOld:
			t.Errorf("ESP with the old group SPI %s after the rollover", oldSPI)
		}
	}
	if n < 2*st.Received {
		t.Fatalf("captured %d ESP packets with the new SPI between %v and %v, want at least %d", n, c1.WAN, c2.WAN, 2*st.Received)
	}

	// Decrypt with our esp package: every key the removed CPE held (its key
	// table outlives it) fails on every packet, the new keys open every one
	// into the pings we sent. It never held the new SA.
	heldAll := keyTable(t, c3.KeyFile)
	var held esp.Keys
	for _, e := range heldAll {
		if e.Keys.SPI == spiNew {
			t.Fatalf("the removed CPE received the new group SA %s", newSPI)
		}
		if e.Keys.SPI == spiOld {
			held = e.Keys
		}
		old, err := lab.Decrypt(pkts, spiNew, e.Keys, 0)
		if err != nil {
			t.Fatal(err)
		}
		dropped := 0
		for _, k := range old.Drops {
			dropped += k
		}
		if old.Opened != 0 || dropped != n {
			t.Errorf("with the removed CPE's keys of SA %08x (%v): %d opened, drops %v; want all %d refused", e.Keys.SPI, e.Keys.Suite, old.Opened, old.Drops, n)
		}
	}
	if held.SPI == 0 {
		t.Fatalf("the removed CPE's key table has no entry for the group SA %s it used", oldSPI)
	}
	newKeys := groupKeys(t, c1.KeyFile, newSPI)
	defer newKeys.Wipe()
	fresh, err := lab.Decrypt(pkts, spiNew, newKeys, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Opened != n {
		t.Errorf("with the new keys: %d of %d opened, drops %v", fresh.Opened, n, fresh.Drops)
	}
	hosts := []netip.Addr{c1.Host(lab.IPv4), c2.Host(lab.IPv4)}
	for _, in := range fresh.Inner {
		src, dst := netip.AddrFrom4([4]byte(in[12:16])), netip.AddrFrom4([4]byte(in[16:20]))
		if in[9] != 1 || !slices.Contains(hosts, src) || !slices.Contains(hosts, dst) {
			t.Errorf("decrypted packet is not an echo between the LAN hosts: proto %d %v -> %v", in[9], src, dst)
		}
	}
	t.Logf("%d ESP packets after the rollover: none opens with any of the %d keys the removed CPE held; the new keys open %d", n, len(heldAll), fresh.Opened)

	// The same with tshark and Wireshark's esp_sa table.
	dir := t.TempDir()
	pcap := filepath.Join(dir, "after-rollover.pcap")
	f, err := os.Create(pcap)
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.WritePcap(f, pkts); err != nil {
		t.Fatal(err)
	}
	f.Close()
	oldAsNew := held.Clone()
	oldAsNew.SPI = spiNew // "the keys the removed CPE held", tried on the new SPI
	got, err := lab.TsharkCount(ctx, tshark, pcap, filepath.Join(dir, "old"), "icmp", oldAsNew)
	oldAsNew.Wipe()
	if err != nil || got != 0 {
		t.Errorf("tshark with the removed CPE's keys: %d echo packets decrypted (%v)", got, err)
	}
	got, err = lab.TsharkCount(ctx, tshark, pcap, filepath.Join(dir, "new"), "icmp", newKeys)
	if err != nil || got != fresh.Opened {
		t.Errorf("tshark with the new keys: %d echo packets decrypted (%v), our esp package %d", got, err, fresh.Opened)
	}
}

// TestHubKill: kill -9 of the hub during continuous CPE-to-CPE pings: no
// ping is lost while it is down (the group SA and the stale routes carry
// the traffic), and after a restart everything re-establishes within 10 s.
func TestHubKill(t *testing.T) {
	ctx := testContext(t)
	l := newLab(t, lab.Config{CPEs: 3, IPv4Only: true})
	s0 := converge(t, ctx, l)
	c1, _ := l.CPE("cpe1")
	c2, _ := l.CPE("cpe2")
	c3, _ := l.CPE("cpe3")
	pingers := startPingers(t, ctx, 50*time.Millisecond, [2]lab.CPE{c1, c2}, [2]lab.CPE{c3, c1})

	killed := time.Now()
	if err := l.Kill(ctx, "hub"); err != nil {
		t.Fatal(err)
	}
	t.Log("hub killed with SIGKILL")
	// Down until every CPE has noticed (its IKE SA with the hub is gone).
	waitFor(t, ctx, l, 90*time.Second, "the CPEs noticed the hub is gone", func(s *lab.Snapshot) bool {
		for _, c := range []lab.CPE{c1, c2, c3} {
			if st := s.CPEs[c.Name]; st == nil || st.Status.Tunnel.Up {
				return false
			}
		}
		return true
	})
	restarted := time.Now()
	t.Logf("all CPEs noticed after %v; restarting the hub", restarted.Sub(killed).Round(time.Millisecond))
	if err := l.Start(ctx, "hub"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	s1, err := l.WaitConverged(cctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(restarted)
	t.Logf("re-established %v after the restart", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("re-establishment took %v after the hub restarted, want at most 10s", took.Round(time.Millisecond))
	}
	if s1.Group().SPI != s0.Group().SPI {
		t.Logf("group SA after the restart: %s (was %s)", s1.Group().SPI, s0.Group().SPI)
	}
	for _, p := range pingers {
		st := p.stop()
		var down, after int
		for _, at := range st.LostAt {
			if at.Before(restarted) {
				down++
			} else {
				after++
			}
		}
		t.Logf("%s: %v", p.name, st)
		if down > 0 {
			t.Errorf("%s: %d pings lost while the hub was down", p.name, down)
		}
		if after > 0 {
			t.Errorf("%s: %d pings lost after the hub restarted", p.name, after)
		}
		if st.Received == 0 {
			t.Errorf("%s: no replies at all", p.name)
		}
	}
}

// TestRekeyUnderLoad: 20 group rekeys with ROLL1/ROLL2 during an iperf3
// transfer and a 100 pps ping, without losing a ping. The group lifetime is
// the shortest allowed (a lifetime rekey every 30 s); the operator's rekey
// command (mpsa-hub rekey) adds rekeys in between, each waited out through
// its rollover, so that the test ends in about a minute.
func TestRekeyUnderLoad(t *testing.T) {
	const rekeys = 20
	ctx := testContext(t)
	l := newLab(t, lab.Config{CPEs: 3, IPv4Only: true, Lifetime: time.Minute, RekeyMargin: 30 * time.Second,
		Roll1: time.Second, Roll2: 2 * time.Second})
	s0 := converge(t, ctx, l)
	c1, _ := l.CPE("cpe1")
	c2, _ := l.CPE("cpe2")
	ip := startIperf(t, ctx, c2.HostNS, c1.HostNS, c2.Host(lab.IPv4).String(), "20M")
	pingers := startPingers(t, ctx, 10*time.Millisecond, [2]lab.CPE{c1, c2})

	members := l.CPEs()
	epoch0 := s0.Group().Epoch
	phases := map[string]int{}
	start := time.Now()
	for epoch := epoch0; epoch < epoch0+rekeys; {
		r, err := l.Rekey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Epoch <= epoch || r.Connected != len(members) {
			t.Fatalf("rekey answered epoch %d for %d CPEs, after epoch %d with %d CPEs", r.Epoch, r.Connected, epoch, len(members))
		}
		s := waitFor(t, ctx, l, 30*time.Second, "rollover to the new group SA", func(s *lab.Snapshot) bool {
			g := s.Group()
			if g == nil {
				return false
			}
			steady := g.Epoch >= r.Epoch
			for _, c := range members {
				st := s.CPEs[c.Name]
				if st == nil {
					return false
				}
				phases[st.Status.Group.Phase]++
				if len(st.Status.Group.SAs) != 1 || st.Status.Group.SAs[0].SPI != g.SPI {
					steady = false
				}
			}
			return steady
		})
		epoch = s.Group().Epoch
	}
	t.Logf("%d rekeys in %v; phases seen (snapshots x CPEs): %v", rekeys, time.Since(start).Round(time.Millisecond), phases)
	if phases["roll1"] == 0 || phases["roll2"] == 0 {
		t.Errorf("rollover phases seen %v: want roll1 and roll2", phases)
	}
	for _, p := range pingers {
		st := p.stop()
		t.Logf("%s: %v", p.name, st)
		if len(st.Lost) > 0 || st.Received == 0 {
			t.Errorf("%s lost %d pings over %d rekeys", p.name, len(st.Lost), rekeys)
		}
	}
	// Stopped by SIGINT, iperf3 exits 1 and reports what it sent.
	out, err := ip.stop()
	sent := iperfSent(out)
	if (err != nil && !strings.Contains(out, "interrupt - the client has terminated")) || sent == 0 {
		t.Errorf("iperf3 (%.1f MB sent): %v\n%s", sent, err, out)
	}
	t.Logf("iperf3 during the rekeys:\n%s", iperfSummary(out))
}

// TestWANChange: a CPE's WAN address changes (a new DHCP lease); the other
// CPEs send to its new address within 5 s.
func TestWANChange(t *testing.T) {
	ctx := testContext(t)
	l := newLab(t, lab.Config{CPEs: 3, IPv4Only: true})
	converge(t, ctx, l)
	c1, _ := l.CPE("cpe1")
	c2, _ := l.CPE("cpe2")
	c3, _ := l.CPE("cpe3")
	caps := map[string]*lab.Capture{}
	for _, c := range []lab.CPE{c2, c3} {
		cp, err := lab.StartCapture(c.NS, "eth0")
		if err != nil {
			t.Fatal(err)
		}
		caps[c.Name] = cp
	}
	pingers := startPingers(t, ctx, 20*time.Millisecond, [2]lab.CPE{c2, c1}, [2]lab.CPE{c3, c1})

	moved := time.Now()
	addr, err := l.SetWAN(c1.Name, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s moved from %v to %v", c1.Name, c1.WAN, addr)
	waitFor(t, ctx, l, 30*time.Second, "routes to cpe1 with its new endpoint", func(s *lab.Snapshot) bool {
		for _, c := range []lab.CPE{c2, c3} {
			for _, p := range c1.Prefixes {
				if r, ok := s.BGPRoutes(c.Name)[p]; !ok || r.Endpoint.Addr() != addr {
					return false
				}
			}
		}
		return true
	})
	t.Logf("routes switched after %v", time.Since(moved).Round(time.Millisecond))
	// Pings keep going: wait for a reply sent after the switch so that the
	// captures hold packets to the new address.
	if err := lab.PingUntil(ctx, c2.HostNS, c1.Host(lab.IPv4), 10*time.Second); err != nil {
		t.Error(err)
	}
	if err := lab.PingUntil(ctx, c3.HostNS, c1.Host(lab.IPv4), 10*time.Second); err != nil {
		t.Error(err)
	}
	for _, c := range []lab.CPE{c2, c3} {
		var first time.Time
		for _, p := range caps[c.Name].Stop() {
			if p.Info.Kind == lab.KindESP && p.Info.Src == c.WAN && p.Info.Dst == addr {
				first = p.Time
				break
			}
		}
		switch {
		case first.IsZero():
			t.Errorf("%s never sent ESP to %v", c.Name, addr)
		case first.Sub(moved) > 5*time.Second:
			t.Errorf("%s first sent to the new endpoint %v after the change, want within 5s", c.Name, first.Sub(moved).Round(time.Millisecond))
		default:
			t.Logf("%s sent to the new endpoint %v after the change", c.Name, first.Sub(moved).Round(time.Millisecond))
		}
	}
	for _, p := range pingers {
		t.Logf("%s during the move: %v", p.name, p.stop())
	}
	converge(t, ctx, l)
}

// TestBadCredentials: a CPE with the wrong PSK, one with an identity the
// hub does not know and one whose certificate has expired are refused with
// a clear log line, and the hub keeps no state for them; the lab's other
// CPEs are not disturbed.
func TestBadCredentials(t *testing.T) {
	ctx := testContext(t)
	l := newLab(t, lab.Config{CPEs: 2, IPv4Only: true, Certificates: true})
	s0 := converge(t, ctx, l)
	from := l.LogOffset("hub")

	wrong, err := l.AddCPE(ctx, lab.CPEOptions{WrongPSK: true})
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := l.AddCPE(ctx, lab.CPEOptions{Unprovisioned: true})
	if err != nil {
		t.Fatal(err)
	}
	// The certificate is valid while mpsa-cpe loads it (it refuses an
	// expired one itself) and expired when the hub first sees it: the CPE
	// is provisioned only after its expiry.
	expiry := time.Now().Add(15 * time.Second)
	expired, err := l.AddCPE(ctx, lab.CPEOptions{Cert: true, Unprovisioned: true, NotAfter: expiry})
	if err != nil {
		t.Fatal(err)
	}
	if time.Now().After(expiry) {
		t.Fatal("the CPE with the short-lived certificate took too long to start; the test cannot tell its refusals apart")
	}

	// The refusal is the IKE_AUTH failure for the CPE's address with the
	// reason; a clear line also names the CPE's identity.
	refusal := func(c lab.CPE, from int64, what, why string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		r, err := l.WaitLog(wctx, "hub", from, func(r lab.LogRecord) bool {
			peer, _ := netip.ParseAddrPort(r.Str("peer"))
			return r.Level == "WARN" && r.Str("reason") == "AUTHENTICATION_FAILED" && peer.Addr() == c.WAN &&
				strings.Contains(strings.ToLower(r.Raw), why)
		})
		if err != nil {
			t.Errorf("%s (%s): no AUTHENTICATION_FAILED line for %v saying %q in the hub's log: %v", c.Name, what, c.WAN, why, err)
			return
		}
		t.Logf("%s (%s): hub: %s", c.Name, what, r.Raw)
		if !strings.Contains(r.Raw, c.Identity) {
			t.Errorf("%s (%s): the hub's refusal does not name the identity %s: %s", c.Name, what, c.Identity, r.Raw)
		}
	}
	refusal(wrong, from, "wrong PSK", "psk")
	refusal(unknown, from, "unknown identity", "unknown")
	// Now that it has expired, provision the certificate CPE.
	waitUntil(ctx, expiry.Add(time.Second))
	from = l.LogOffset("hub")
	if err := l.Provision(ctx, expired.Name, true); err != nil {
		t.Fatal(err)
	}
	refusal(expired, from, "expired certificate", "expired")

	// No state on the hub: no IKE SA (established or half-open), no
	// overlay address, the group as before.
	s := waitFor(t, ctx, l, 20*time.Second, "no state for the refused CPEs", func(s *lab.Snapshot) bool {
		for _, c := range []lab.CPE{wrong, unknown, expired} {
			if len(s.HubSA(c.Identity)) > 0 {
				return false
			}
		}
		return true
	})
	m, err := l.Metrics(ctx, "hub")
	if err != nil {
		t.Fatal(err)
	}
	if est, half := m[`mpsa_hub_ike_sas{state="established"}`], m[`mpsa_hub_ike_sas{state="half_open"}`]; est != 2 || half != 0 {
		t.Errorf("hub IKE SAs: %v established, %v half-open; want 2 and 0", est, half)
	}
	if n := m["mpsa_hub_ike_auth_failures_total"]; n < 3 {
		t.Errorf("hub counted %v authentication failures, want at least 3", n)
	}
	for _, e := range s.HubCPEs.CPEs {
		if (e.Name == wrong.Identity || e.Name == expired.Identity) && (e.State != "DOWN" || len(e.Overlay) > 0) {
			t.Errorf("hub keeps %s: state %s, overlay %v", e.Name, e.State, e.Overlay)
		}
		if e.Name == unknown.Identity {
			t.Errorf("hub lists the unknown identity %s", e.Name)
		}
	}
	if g := s.Group(); g.Connected != 2 || g.Epoch != s0.Group().Epoch {
		t.Errorf("group after the refusals: %d connected, epoch %d; want 2, epoch %d", g.Connected, g.Epoch, s0.Group().Epoch)
	}
	// The refused CPEs say why too.
	for _, c := range []lab.CPE{wrong, unknown, expired} {
		recs, _ := l.Logs(c.Name, 0)
		found := false
		for _, r := range recs {
			found = found || strings.Contains(r.Raw, "AUTHENTICATION_FAILED")
		}
		if !found {
			t.Errorf("%s does not log AUTHENTICATION_FAILED", c.Name)
		}
	}
	converge(t, ctx, l)
}

// groupKeys reads the group SA with that SPI from a CPE's esp_sa key table.
func groupKeys(t *testing.T, file, spi string) esp.Keys {
	t.Helper()
	for _, e := range keyTable(t, file) {
		if fmt.Sprintf("%08x", e.Keys.SPI) == spi {
			return e.Keys.Clone()
		}
	}
	t.Fatalf("no group SA keys for SPI %s in %s", spi, file)
	return esp.Keys{}
}

// keyTable reads a CPE's esp_sa key table (key_export.esp); the keys are
// wiped when the test ends.
func keyTable(t *testing.T, file string) []lab.ESPSAEntry {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("no key table: %v (the CPE must write key_export.esp, cpe/NEEDS.md)", err)
	}
	defer f.Close()
	entries, err := lab.ParseESPSA(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.WipeESPSA(entries) })
	if len(entries) == 0 {
		t.Fatalf("%s holds no keys (cpe/NEEDS.md)", file)
	}
	return entries
}
