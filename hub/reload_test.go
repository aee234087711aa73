package hub

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/internal/ops"
)

// TestReload adds a CPE (it can connect only after the reload), removes
// one (its IKE SA is deleted, its lease released, its group rekeyed at once
// and the new SA never reaches it) and checks that nothing changes for the
// CPEs the reload does not name. A bad configuration keeps the running one.
func TestReload(t *testing.T) {
	checkGoroutines(t)
	cfg := baseConfig(t)
	th := startHub(t, cfg)
	cpes := joinCPEs(t, th, "fqdn:cpe1.acme.example", "fqdn:cpe2.acme.example", "rfc822:cpe3@globex.example")
	cpe1, cpe2, cpe3 := cpes[0], cpes[1], cpes[2]
	old1, _ := cpe1.groupSA()
	old3, _ := cpe3.groupSA()
	info1, info3 := cpe1.sa.Info(), cpe3.sa.Info()
	cpe2Name := auth.MustParseID("fqdn:cpe2.acme.example").String()
	if len(th.h.pools.addrs(cpe2Name)) != 1 {
		t.Fatal("cpe2 holds no lease")
	}

	// cpe5 is not provisioned yet.
	cpe5 := newCPE(t, th, "fqdn:cpe5.acme.example", cpeOpts{})
	if err := cpe5.connect(th, false); !errors.Is(err, ike.ErrAuthFailed) {
		t.Fatalf("unprovisioned cpe5 connected: %v", err)
	}

	next := copyConfig(cfg)
	removeCPE(next, "fqdn:cpe2.acme.example")
	addCPE(next, "fqdn:cpe5.acme.example", "acme", "10.5.0.0/24")
	checkConfig(t, next)
	diff, err := th.h.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff.CPEsAdded) != 1 || len(diff.CPEsRemoved) != 1 {
		t.Fatalf("diff %v", diff.String())
	}

	// cpe2's IKE SA is deleted.
	select {
	case <-cpe2.sa.Done():
	case <-time.After(waitOK):
		t.Fatal("removed cpe2 still has its IKE SA")
	}
	// cpe1 gets the next epoch of acme at once: a new SPI and keys.
	if err := cpe1.waitPut(); err != nil {
		t.Fatal(err)
	}
	if st := cpe1.member.Stats(); st.Accepted != 2 {
		t.Fatalf("cpe1 member stats %+v", st)
	}
	snap := cpe1.dp.Snapshot()
	var newSA dataplane.SA
	for _, sa := range snap.SAs {
		if sa.Keys.SPI != old1.Keys.SPI {
			newSA = sa
		}
	}
	if newSA.Keys.SPI == 0 || sameKeys(newSA, old1) {
		t.Fatalf("cpe1 after the revocation: %s", cpe1.dp.Text())
	}
	// cpe2 never saw it.
	select {
	case err := <-cpe2.puts:
		t.Fatalf("revoked cpe2 got an MPSA_PUT (%v)", err)
	default:
	}
	for _, sa := range cpe2.dp.Snapshot().SAs {
		if sa.Keys.SPI == newSA.Keys.SPI {
			t.Fatal("revoked cpe2 holds the new group SA")
		}
	}
	if a := th.h.pools.addrs(cpe2Name); len(a) != 0 {
		t.Errorf("removed cpe2 keeps its lease %v", a)
	}
	// Its PSK is wiped once no IKE_AUTH can be using it.
	var removedPSK configs.Secret
	for _, c := range cfg.CPEs {
		if c.Identity.String() == cpe2Name {
			removedPSK = c.PSK
		}
	}
	if lines := th.logs.lines("deleting IKE SA", "id=fqdn:cpe2.acme.example", "removed from the configuration"); len(lines) == 0 {
		t.Errorf("no log line for cpe2's removal:\n%s", th.logs.String())
	}

	// The other CPEs' IKE SAs are untouched; globex was not rekeyed.
	if i := cpe1.sa.Info(); i.SPIi != info1.SPIi || i.SPIr != info1.SPIr || i.State != ike.StateEstablished {
		t.Errorf("cpe1's IKE SA changed: %v → %v", info1, i)
	}
	if i := cpe3.sa.Info(); i.SPIi != info3.SPIi || i.State != ike.StateEstablished {
		t.Errorf("cpe3's IKE SA changed")
	}
	if g, _ := cpe3.groupSA(); !sameKeys(g, old3) {
		t.Errorf("globex rekeyed by a change in acme")
	}
	select {
	case err := <-cpe3.puts:
		t.Errorf("cpe3 got an MPSA_PUT after a reload that does not concern it (%v)", err)
	default:
	}

	// cpe5 connects now and gets acme's current SA.
	cpe5.mustConnect(th, false)
	if err := cpe5.waitPut(); err != nil {
		t.Fatal(err)
	}
	if g, _ := cpe5.groupSA(); !sameKeys(g, newSA) {
		t.Errorf("cpe5's group SA %v, acme's current %v", g.Keys, newSA.Keys)
	}

	// A configuration that fails to load is reported; the running one stays.
	calls := 0
	rl, _, err := configs.NewHubReloader(func() (*configs.Hub, []configs.Warning, error) {
		calls++
		if calls == 1 {
			return next, nil, nil
		}
		return nil, nil, configs.Errors{{Path: "groups[0].lifetime", Msg: `expected a duration ≥ 60s, got "5s"`}}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := th.h.ReloadFrom(rl); !errors.Is(err, ErrReloadKept) || !strings.Contains(err.Error(), "groups[0].lifetime") {
		t.Errorf("bad reload: %v", err)
	}
	if th.h.Config() != next {
		t.Error("running configuration replaced by a failed reload")
	}
	if removedPSK.IsZero() || bytes.Count(removedPSK.Bytes(), []byte{0}) == removedPSK.Len() {
		t.Fatal("removed PSK wiped too early (or never set)")
	}
	th.stop()
	if bytes.Count(removedPSK.Bytes(), []byte{0}) != removedPSK.Len() {
		t.Error("removed CPE's PSK not wiped")
	}
	if lines := th.logs.lines("configuration not reloaded, keeping the running one", "groups[0].lifetime"); len(lines) == 0 {
		t.Errorf("no log line for the failed reload")
	}
}

// TestReloadMoveAndPrefixes: a CPE moved to another group is revoked in the
// old one and reconnects into the new one; a change of prefixes alone
// leaves its IKE SA alone.
func TestReloadMove(t *testing.T) {
	checkGoroutines(t)
	cfg := baseConfig(t)
	th := startHub(t, cfg)
	cpe1 := newCPE(t, th, "fqdn:cpe1.acme.example", cpeOpts{})
	cpe1.mustConnect(th, false)
	if err := cpe1.waitPut(); err != nil {
		t.Fatal(err)
	}
	info := cpe1.sa.Info()

	next := copyConfig(cfg)
	next.CPEs[0].Prefixes = []netip.Prefix{mustPrefix("10.1.0.0/24"), mustPrefix("10.11.0.0/24")}
	checkConfig(t, next)
	if _, err := th.h.Reload(next); err != nil {
		t.Fatal(err)
	}
	if i := cpe1.sa.Info(); i.SPIi != info.SPIi || i.State != ike.StateEstablished {
		t.Fatalf("prefix change touched the IKE SA")
	}

	moved := copyConfig(next)
	moved.CPEs[0].Group = "globex"
	moved.CPEs[0].Prefixes = []netip.Prefix{mustPrefix("10.9.0.0/24")}
	checkConfig(t, moved)
	if _, err := th.h.Reload(moved); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cpe1.sa.Done():
	case <-time.After(waitOK):
		t.Fatal("moved CPE keeps its IKE SA")
	}
	cpe1b := newCPE(t, th, "fqdn:cpe1.acme.example", cpeOpts{})
	cpe1b.mustConnect(th, false)
	if err := cpe1b.waitPut(); err != nil {
		t.Fatal(err)
	}
	if v := cpe1b.sa.Info().VIPs; len(v) != 1 || !mustPrefix("100.64.1.0/24").Contains(v[0].Addr()) {
		t.Errorf("moved CPE's overlay %v, want one from globex's pool", v)
	}
	if g, _ := cpe1b.groupSA(); g.SenderIDBits == 0 {
		t.Errorf("moved CPE did not get globex's SA: %+v", g)
	}
}

// TestRestart: a hub restarted on the same state directory keeps its
// groups' epochs (no rekey) and the CPEs' overlay addresses; a CPE that
// reconnects gets the SA it already holds, so its data plane does not
// change.
func TestRestart(t *testing.T) {
	checkGoroutines(t)
	cfg := baseConfig(t)
	th := startHub(t, cfg)
	cpe1 := newCPE(t, th, "fqdn:cpe1.acme.example", cpeOpts{})
	cpe1.mustConnect(th, true)
	if err := cpe1.waitPut(); err != nil {
		t.Fatal(err)
	}
	vips := cpe1.sa.Info().VIPs
	before, _ := cpe1.groupSA()
	gen := cpe1.dp.Gen()
	epoch := th.h.Groups().Groups[0].Epoch
	th.stop()
	select {
	case <-cpe1.sa.Done():
	case <-time.After(waitOK):
		t.Fatal("the stopping hub did not delete the CPE's IKE SA")
	}
	// The group SA stays on the CPE without the hub.
	if g, ok := cpe1.groupSA(); !ok || !sameKeys(g, before) {
		t.Fatal("CPE lost its group SA with the hub")
	}

	th2 := startHub(t, cfg)
	if g := th2.h.Groups().Groups[0]; g.Epoch != epoch || g.SPI != ops.SPI32(before.Keys.SPI) {
		t.Fatalf("restarted hub: epoch %d spi %s, before %d %08x", g.Epoch, g.SPI, epoch, before.Keys.SPI)
	}
	cpe1b := newCPE(t, th2, "fqdn:cpe1.acme.example", cpeOpts{})
	cpe1b.member = cpe1.member // the same CPE: its Member and data plane
	cpe1b.dp = cpe1.dp
	cpe1b.puts = cpe1.puts
	cpe1b.mustConnect(th2, true)
	if err := cpe1.waitPut(); err != nil {
		t.Fatal(err)
	}
	if v := cpe1b.sa.Info().VIPs; len(v) != 2 || v[0] != vips[0] || v[1] != vips[1] {
		t.Errorf("overlay after restart %v, before %v", v, vips)
	}
	if st := cpe1.member.Stats(); st.Accepted != 1 || st.Refreshed != 1 {
		t.Errorf("member after the restart %+v, want the same SA refreshed", st)
	}
	if cpe1.dp.Gen() != gen {
		t.Errorf("CPE data plane changed by the hub restart:\n%s", cpe1.dp.Text())
	}
}

// TestStatusAndMetrics queries the views through the status socket as
// `mpsa-hub status` does, and scrapes the metrics.
func TestStatusAndMetrics(t *testing.T) {
	checkGoroutines(t)
	th := startHub(t, baseConfig(t))
	cpe1 := newCPE(t, th, "fqdn:cpe1.acme.example", cpeOpts{})
	cpe1.mustConnect(th, false)
	if err := cpe1.waitPut(); err != nil {
		t.Fatal(err)
	}
	th.waitFor("the acknowledgement", func() bool { return th.h.Groups().Groups[0].OnCurrent == 1 })
	ctx := context.Background()
	sock := th.cfg.Status.Socket
	for view, want := range map[string]string{
		"sas":    "fqdn:cpe1.acme.example: ESTABLISHED, IKEv2",
		"groups": "acme: epoch 1, esp_spi ",
		"cpes":   "fqdn:cpe1.acme.example      acme    CONNECTED",
		"routes": "100.64.0.2/32",
		"bgp":    "BGP route reflector not running",
		"help":   "groups",
	} {
		resp, err := ops.Query(ctx, sock, ops.Request{Command: view})
		if err != nil {
			t.Errorf("status %s: %v", view, err)
			continue
		}
		if !strings.Contains(resp.Text, want) {
			t.Errorf("status %s lacks %q:\n%s", view, want, resp.Text)
		}
	}
	var sas SAView
	if err := ops.QueryJSON(ctx, sock, "sas", &sas); err != nil || len(sas.SAs) != 1 || sas.SAs[0].AckedEpoch != 1 {
		t.Errorf("status -json sas: %v %+v", err, sas)
	}

	th.dp.SetStats(dataplane.Stats{RxPackets: 7, TxPackets: 9, Drops: map[string]uint64{"bad_icv": 2}})
	srv := httptest.NewServer(th.h.metrics.handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mpsa_hub_ike_sas{state="established"} 1`,
		`mpsa_hub_mpsa_put_ack_seconds_count 1`,
		`mpsa_hub_mpsa_current_epoch_ratio{group="acme"} 1`,
		`mpsa_hub_mpsa_epoch{group="acme"} 1`,
		`mpsa_hub_cpes{group="acme",state="connected"} 1`,
		`mpsa_hub_cpes{group="acme",state="provisioned"} 2`,
		`mpsa_hub_dataplane_dropped_total{reason="bad_icv"} 2`,
		`mpsa_hub_dataplane_packets_total{dir="in"} 7`,
		`mpsa_hub_ike_dropped_total{reason="integrity"} 0`,
		`mpsa_hub_overlay_routes 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestReloadRestartOnly: a reload that changes fields a running hub cannot
// change (sockets, identity, state directory, the reflector's IDs, key
// export, log format) applies the rest (a CPE added, the log level), warns
// about those by name and keeps their running values in Config, so the next
// reload warns again.
func TestReloadRestartOnly(t *testing.T) {
	checkGoroutines(t)
	cfg := baseConfig(t)
	th := startHub(t, cfg)
	cpe1 := newCPE(t, th, "fqdn:cpe1.acme.example", cpeOpts{})
	cpe1.mustConnect(th, false)
	if err := cpe1.waitPut(); err != nil {
		t.Fatal(err)
	}
	info := cpe1.sa.Info()

	changed := func() *configs.Hub {
		next := copyConfig(cfg)
		next.IKE.Port = 1500
		next.Identity = auth.MustParseID("fqdn:other-hub.example.net")
		next.StateDir = t.TempDir()
		next.Metrics.Listen = netip.MustParseAddrPort("127.0.0.1:9999")
		next.Status.Socket = cfg.Status.Socket + ".new"
		next.BGP.ASN = 65001
		next.BGP.RouterID = netip.MustParseAddr("192.0.2.77")
		next.BGP.GRPCListen = netip.MustParseAddrPort("127.0.0.1:50999")
		next.KeyExport.ESP = t.TempDir() + "/esp_sa"
		next.Log.Format = configs.LogJSON
		next.Log.Level = configs.LogDebug
		next.Dataplane.TUN.MTU = 1400
		addCPE(next, "fqdn:cpe5.acme.example", "acme", "10.5.0.0/24")
		return checkConfig(t, next)
	}
	for round := 1; round <= 2; round++ {
		next := changed()
		diff, err := th.h.Reload(next)
		if err != nil {
			t.Fatal(err)
		}
		lines := th.logs.lines("configuration changes that need a restart are not applied")
		if len(lines) != round {
			t.Fatalf("round %d: %d restart warnings:\n%s", round, len(lines), th.logs)
		}
		for _, p := range []string{"ike.port", "identity", "state_dir", "metrics.listen", "status.socket", "bgp.asn", "bgp.router_id",
			"bgp.grpc_listen", "key_export.esp", "log.format", "dataplane.tun.mtu"} {
			if !strings.Contains(lines[round-1], p) {
				t.Errorf("round %d: the warning does not name %s: %s", round, p, lines[round-1])
			}
		}
		if strings.Contains(lines[round-1], "log.level") {
			t.Errorf("log.level reported as needing a restart: %s", lines[round-1])
		}
		run := th.h.Config()
		if run.IKE.Port != cfg.IKE.Port || !run.Identity.Equal(cfg.Identity) || run.StateDir != cfg.StateDir ||
			run.Metrics != cfg.Metrics || run.Status != cfg.Status || run.BGP.ASN != cfg.BGP.ASN || run.BGP.RouterID != cfg.BGP.RouterID ||
			run.BGP.GRPCListen != cfg.BGP.GRPCListen || run.KeyExport != cfg.KeyExport || run.Log.Format != cfg.Log.Format ||
			run.Dataplane != cfg.Dataplane {
			t.Errorf("round %d: running configuration took restart-only values: %+v", round, run)
		}
		if run.Log.Level != configs.LogDebug || run.CPE(auth.MustParseID("fqdn:cpe5.acme.example")) == nil {
			t.Errorf("round %d: the reloadable changes were not applied (level %v)", round, run.Log.Level)
		}
		if round == 1 && len(diff.CPEsAdded) != 1 {
			t.Errorf("diff %s", diff.String())
		}
		// keepRunning leaves no restart-only difference behind.
		if left := restartPaths(configs.DiffHub(cfg, keepRunning(cfg, next)).Changed); len(left) > 0 {
			t.Errorf("keepRunning misses %v", left)
		}
	}
	if i := cpe1.sa.Info(); i.SPIi != info.SPIi || i.State != ike.StateEstablished {
		t.Error("cpe1's IKE SA suffered from the reloads")
	}
	cpe5 := newCPE(t, th, "fqdn:cpe5.acme.example", cpeOpts{})
	cpe5.mustConnect(th, false)
	if err := cpe5.waitPut(); err != nil {
		t.Fatal(err)
	}
}
