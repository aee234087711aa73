package hub

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/memory"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// TestCPEsJoin runs three CPEs against the hub over real UDP on loopback:
// each authenticates, gets an overlay address from its group's pool and a
// CHILD_SA narrowed to (its overlay address ↔ the hub's), which the hub
// installs with a route; each receives and acknowledges its group's SA in
// MPSA_PUT. The CPEs of a group hold the same SPI and keys, the other
// group's CPE another.
func TestCPEsJoin(t *testing.T) {
	checkGoroutines(t)
	th := startHub(t, baseConfig(t))
	cpe1 := newCPE(t, th, "fqdn:cpe1.acme.example", cpeOpts{})
	cpe2 := newCPE(t, th, "fqdn:cpe2.acme.example", cpeOpts{})
	cpe3 := newCPE(t, th, "rfc822:cpe3@globex.example", cpeOpts{})
	cpe1.mustConnect(th, true)
	cpe2.mustConnect(th, false)
	cpe3.mustConnect(th, false)
	for _, c := range []*testCPE{cpe1, cpe2, cpe3} {
		if err := c.waitPut(); err != nil {
			t.Fatalf("%v: MPSA_PUT refused: %v", c.id, err)
		}
	}

	// Overlay addresses come from each group's pool; the hub has the first.
	i1 := cpe1.sa.Info()
	if len(i1.VIPs) != 2 || !netip.MustParsePrefix("100.64.0.0/24").Contains(i1.VIPs[0].Addr()) ||
		!netip.MustParsePrefix("fd00:64::/64").Contains(i1.VIPs[1].Addr()) || i1.VIPs[0].Addr() == netip.MustParseAddr("100.64.0.1") {
		t.Errorf("cpe1 overlay %v", i1.VIPs)
	}
	i3 := cpe3.sa.Info()
	if len(i3.VIPs) != 1 || !netip.MustParsePrefix("100.64.1.0/24").Contains(i3.VIPs[0].Addr()) {
		t.Errorf("cpe3 overlay %v", i3.VIPs)
	}
	// The CHILD_SA is narrowed to the overlay addresses.
	ch := i1.Children[0]
	if got := prefixesOf(ch.LocalTS); len(got) != 2 || got[0] != i1.VIPs[0] || got[1] != i1.VIPs[1] {
		t.Errorf("cpe1 TSi %v, want its overlay addresses %v", got, i1.VIPs)
	}
	if got := prefixesOf(ch.RemoteTS); len(got) != 2 || got[0] != netip.MustParsePrefix("100.64.0.1/32") || got[1] != netip.MustParsePrefix("fd00:64::1/128") {
		t.Errorf("cpe1 TSr %v, want the hub's overlay addresses", got)
	}

	// The hub installed each CHILD_SA both ways, to the CPE's outer
	// address, and routes the overlay address into its tunnel.
	th.waitFor("CHILD_SAs in the data plane", func() bool {
		for _, c := range []*testCPE{cpe1, cpe2, cpe3} {
			i := c.sa.Info()
			if _, ok := th.dp.Inbound(i.Children[0].OutSPI); !ok {
				return false
			}
		}
		return true
	})
	in, _ := th.dp.Inbound(ch.OutSPI)
	if in.Peer != netip.AddrPortFrom(loop4, 0) || in.Dir != dataplane.In {
		t.Errorf("hub inbound SA %+v", in)
	}
	nh, ok := th.h.fib.Lookup(i1.VIPs[0].Addr())
	if !ok || nh.Endpoint != netip.AddrPortFrom(loop4, 0) {
		t.Fatalf("route to cpe1: %+v %v", nh, ok)
	}
	out, ok := th.dp.Outbound(nh.Tunnel)
	if !ok || out.Keys.SPI != ch.InSPI || out.Peer != nh.Endpoint {
		t.Errorf("hub outbound SA for cpe1's tunnel: %+v (CPE inbound SPI %08x)", out, ch.InSPI)
	}
	if nh6, ok := th.h.fib.Lookup(i1.VIPs[1].Addr()); !ok || nh6.Tunnel != nh.Tunnel {
		t.Errorf("IPv6 overlay route %+v %v", nh6, ok)
	}

	// Group SAs: equal within a group, different across groups.
	g1, ok1 := cpe1.groupSA()
	g2, ok2 := cpe2.groupSA()
	g3, ok3 := cpe3.groupSA()
	if !ok1 || !ok2 || !ok3 {
		t.Fatalf("group SAs installed: %v %v %v", ok1, ok2, ok3)
	}
	if !sameKeys(g1, g2) {
		t.Errorf("cpe1 and cpe2 hold different group SAs: %v, %v", g1.Keys, g2.Keys)
	}
	if g1.Keys.SPI == g3.Keys.SPI || sameKeys(g1, g3) {
		t.Errorf("acme and globex share an SA: %v, %v", g1.Keys, g3.Keys)
	}
	if g3.SenderIDBits == 0 || g3.SenderID == 0 || g1.SenderIDBits != 0 {
		t.Errorf("Sender-IDs: acme %d/%d, globex %d/%d", g1.SenderIDBits, g1.SenderID, g3.SenderIDBits, g3.SenderID)
	}

	// The key server counts the acknowledgements.
	th.waitFor("acknowledgements", func() bool {
		for _, g := range th.h.Groups().Groups {
			if g.Connected == 0 || g.OnCurrent != g.Connected {
				return false
			}
		}
		return true
	})
	groups := th.h.Groups()
	if groups.Groups[0].Name != "acme" || groups.Groups[0].Connected != 2 || groups.Groups[0].SPI != ops.SPI32(g1.Keys.SPI) {
		t.Errorf("groups view %+v", groups.Groups[0])
	}

	// The status views say the same.
	sas := th.h.SAs()
	if len(sas.SAs) != 3 || sas.SAs[0].CPE != "fqdn:cpe1.acme.example" || sas.SAs[0].State != "ESTABLISHED" ||
		sas.SAs[0].AckedEpoch != groups.Groups[0].Epoch || len(sas.SAs[0].Children) != 1 {
		t.Errorf("sas view %+v", sas)
	}
	text := render(sas)
	for _, want := range []string{"fqdn:cpe1.acme.example: ESTABLISHED, IKEv2, ", "remote 'fqdn:cpe1.acme.example' @ 127.0.0.1:",
		"child #1: INSTALLED, TUNNEL, ESP:", "local  100.64.0.1/32 fd00:64::1/128"} {
		if !strings.Contains(text, want) {
			t.Errorf("sas text lacks %q:\n%s", want, text)
		}
	}
	cpes := th.h.CPEs()
	if len(cpes.CPEs) != 3 || cpes.CPEs[0].State != "CONNECTED" || cpes.CPEs[0].Overlay[0] != i1.VIPs[0].Addr().String() {
		t.Errorf("cpes view %+v", cpes.CPEs)
	}
	if unknown := th.fc.UnknownIn("hub"); len(unknown) > 0 {
		t.Errorf("log fields not in docs/LOGGING.md: %v", unknown)
	}
}

func render(v ops.TextRenderer) string {
	var t ops.Text
	v.RenderText(&t)
	return t.String()
}

// TestRefused: a wrong PSK, an unknown identity and an expired certificate
// are refused with a log line saying why, and leave nothing behind: no IKE
// SA, no overlay lease, no key server session, nothing in the data plane.
func TestRefused(t *testing.T) {
	checkGoroutines(t)
	ca := newPKI(t)
	cfg := baseConfig(t)
	cfg.Credentials = ca.hubFiles(t)
	cfg.CPEs = append(cfg.CPEs, configs.HubCPE{Identity: auth.MustParseID("fqdn:cpe4.acme.example"), Group: "acme", Auth: configs.AuthCert,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("10.4.0.0/24")}})
	checkConfig(t, cfg)
	if _, err := cfg.Resolve(configs.Source{}); err != nil {
		t.Fatal(err)
	}
	th := startHub(t, cfg)

	expiredKey, expired := ca.issue(t, "cpe4.acme.example", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	for _, tc := range []struct {
		name string
		id   string
		o    cpeOpts
		log  []string
	}{
		{"wrong PSK", "fqdn:cpe1.acme.example", cpeOpts{psk: "not the right key 0123456789"},
			[]string{"initiator authentication failed", "id=fqdn:cpe1.acme.example", "AUTHENTICATION_FAILED"}},
		{"unknown identity", "fqdn:intruder.example", cpeOpts{},
			[]string{"IKE_AUTH refused: unknown identity", "id=fqdn:intruder.example", "AUTHENTICATION_FAILED"}},
		{"expired certificate", "fqdn:cpe4.acme.example",
			cpeOpts{local: &auth.Local{ID: auth.MustParseID("fqdn:cpe4.acme.example"), Signer: expiredKey, Certs: []*x509.Certificate{expired}},
				hubPeer: &auth.Peer{CAs: ca.pool(t)}},
			[]string{"initiator authentication failed", "id=fqdn:cpe4.acme.example", "expired"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCPE(t, th, tc.id, tc.o)
			err := c.connect(th, false)
			if err == nil || !errors.Is(err, ike.ErrAuthFailed) {
				t.Fatalf("connect: %v, want an authentication failure", err)
			}
			if lines := th.logs.lines(tc.log...); len(lines) == 0 {
				t.Errorf("no log line with %q in:\n%s", tc.log, th.logs.String())
			}
			pollFor(t, "the refused IKE SA to go", func() bool { return len(th.h.ike.SAs()) == 0 })
			th.h.mu.Lock()
			conns := len(th.h.conns)
			th.h.mu.Unlock()
			if conns != 0 {
				t.Errorf("%d CPE connections left", conns)
			}
			name := auth.MustParseID(tc.id).String()
			if a := th.h.pools.addrs(name); len(a) != 0 {
				t.Errorf("overlay lease left: %v", a)
			}
			for _, g := range th.h.ks.Status() {
				if g.Connected != 0 {
					t.Errorf("group %s: %d connected", g.Name, g.Connected)
				}
			}
			if snap := th.dp.Snapshot(); len(snap.SAs) != 0 {
				t.Errorf("data plane holds %v", th.dp.Text())
			}
			if st := th.h.fib.Stats(); st.Paths != 0 {
				t.Errorf("FIB holds %d paths", st.Paths)
			}
		})
	}
	// A good certificate works (and proves the expired case failed for
	// its expiry, not for the setup).
	key, cert := ca.issue(t, "cpe4.acme.example", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	c := newCPE(t, th, "fqdn:cpe4.acme.example", cpeOpts{local: &auth.Local{ID: auth.MustParseID("fqdn:cpe4.acme.example"), Signer: key, Certs: []*x509.Certificate{cert}},
		hubPeer: &auth.Peer{CAs: ca.pool(t)}})
	c.mustConnect(th, false)
	if err := c.waitPut(); err != nil {
		t.Fatal(err)
	}
	// A PSK CPE of the same hub, which has a certificate, authenticates
	// both ways with its PSK.
	p := newCPE(t, th, "fqdn:cpe1.acme.example", cpeOpts{})
	p.mustConnect(th, false)
	if err := p.waitPut(); err != nil {
		t.Fatal(err)
	}
}

// TestKeyExport: with key_export set, the hub writes every IKE SA's and
// CHILD_SA's keys in Wireshark's tables, files of mode 0600.
func TestKeyExport(t *testing.T) {
	checkGoroutines(t)
	cfg := baseConfig(t)
	dir := t.TempDir()
	cfg.KeyExport = configs.KeyExportConfig{IKE: filepath.Join(dir, "ikev2_decryption_table"), ESP: filepath.Join(dir, "esp_sa")}
	th := startHub(t, cfg)
	c := newCPE(t, th, "fqdn:cpe1.acme.example", cpeOpts{})
	c.mustConnect(th, false)
	if err := c.waitPut(); err != nil {
		t.Fatal(err)
	}
	i := c.sa.Info()
	// The keys are written before the CHILD_SA goes into the data plane.
	th.waitFor("the CHILD_SA in the data plane", func() bool { _, ok := th.dp.Inbound(i.Children[0].OutSPI); return ok })
	ikeTable, err := os.ReadFile(cfg.KeyExport.IKE)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%016x,%016x,", i.SPIi, i.SPIr); !strings.HasPrefix(string(ikeTable), want) {
		t.Errorf("IKE table %q, want a line starting %q", ikeTable, want)
	}
	espTable, err := os.ReadFile(cfg.KeyExport.ESP)
	if err != nil {
		t.Fatal(err)
	}
	for _, spi := range []uint32{i.Children[0].InSPI, i.Children[0].OutSPI} {
		if want := fmt.Sprintf(`"0x%08x"`, spi); !strings.Contains(string(espTable), want) {
			t.Errorf("ESP table lacks SPI %s:\n%s", want, espTable)
		}
	}
	for _, f := range []string{cfg.KeyExport.IKE, cfg.KeyExport.ESP} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v", f, fi.Mode(), err)
		}
	}
}

// TestNotCapable: a plain IKEv2 peer (no MPSA Vendor ID) and a CPE without
// Sender-ID support in an AES-GCM group are authenticated but get no group
// SA; the hub says why and deletes their IKE SA.
func TestNotCapable(t *testing.T) {
	checkGoroutines(t)
	th := startHub(t, baseConfig(t))
	for _, tc := range []struct {
		id string
		o  cpeOpts
	}{
		{"fqdn:cpe1.acme.example", cpeOpts{noVendor: true}},
		{"rfc822:cpe3@globex.example", cpeOpts{noSID: true}},
	} {
		c := newCPE(t, th, tc.id, tc.o)
		c.mustConnect(th, false)
		select {
		case <-c.sa.Done():
		case <-time.After(waitOK):
			t.Fatalf("%s: IKE SA not deleted", tc.id)
		}
		if lines := th.logs.lines("CPE refused by the key server", "id="+tc.id); len(lines) == 0 {
			t.Errorf("%s: no log line saying why:\n%s", tc.id, th.logs.String())
		}
		if _, ok := c.groupSA(); ok {
			t.Errorf("%s got a group SA", tc.id)
		}
	}
}

// TestJSONLogsNameIdentities: with log.format json, the lines that carry an
// identity name it as the text format does ("fqdn:..."), refusals included:
// the operator must see which CPE was refused.
func TestJSONLogsNameIdentities(t *testing.T) {
	checkGoroutines(t)
	th := startHubLogging(t, baseConfig(t), func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewJSONHandler(w, o) },
		WithoutBGP())
	for _, tc := range []struct{ id, psk string }{{"fqdn:cpe1.acme.example", "not the right key 0123456789"}, {"fqdn:intruder.example", ""}} {
		if err := newCPE(t, th, tc.id, cpeOpts{psk: tc.psk}).connect(th, false); !errors.Is(err, ike.ErrAuthFailed) {
			t.Fatalf("%s: %v, want an authentication failure", tc.id, err)
		}
	}
	good := newCPE(t, th, "fqdn:cpe2.acme.example", cpeOpts{})
	good.mustConnect(th, true)
	if err := good.waitPut(); err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]string{
		{`"msg":"initiator authentication failed"`, `"id":"fqdn:cpe1.acme.example"`, `"reason":"AUTHENTICATION_FAILED"`},
		{`"msg":"IKE_AUTH refused: unknown identity"`, `"id":"fqdn:intruder.example"`, `"reason":"AUTHENTICATION_FAILED"`},
		{`"msg":"CPE connected"`, `"id":"fqdn:cpe2.acme.example"`, `"group":"acme"`, `"prefix":"100.64.0.`, `,fd00:64::`},
	} {
		if len(th.logs.lines(want...)) == 0 {
			t.Errorf("no JSON log line with %q in:\n%s", want, th.logs)
		}
	}
	if bad := th.logs.lines(`"id":{`); len(bad) > 0 {
		t.Errorf("identities logged as structures: %q", bad)
	}
	// A JSON object with a key twice loses one of them in most pipelines.
	for _, line := range th.logs.lines("{") {
		if dup := duplicateKeys(line); len(dup) > 0 {
			t.Errorf("keys %q twice in %s", dup, line)
		}
	}
}

// duplicateKeys returns the keys that occur more than once at the top level
// of a JSON object.
func duplicateKeys(line string) []string {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return []string{"(not an object)"}
	}
	seen := map[string]bool{}
	var dup []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return append(dup, "(bad JSON)")
		}
		k, _ := tok.(string)
		if seen[k] {
			dup = append(dup, k)
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return append(dup, "(bad JSON)")
		}
	}
	return dup
}

// TestLogsFieldsAndNoKeys runs CPEs through joining, an operator rekey and a
// reload that removes one, with debug logging and the route reflector on,
// then holds every component's log lines to docs/LOGGING.md's field names
// and checks that no key reached them: no PSK, none of the group SAs' or
// CHILD_SAs' keys (hex or base64), no SK_d.
func TestLogsFieldsAndNoKeys(t *testing.T) {
	if testenv.RunInNetns(t) {
		return
	}
	checkGoroutines(t)
	cfg := baseConfig(t)
	loopbackPools(cfg)
	th := startHubBGP(t, cfg, WithBGPPort(bgpPort), WithGRPC(netip.AddrPort{}))
	cpes := joinCPEs(t, th, "fqdn:cpe1.acme.example", "fqdn:cpe2.acme.example", "rfc822:cpe3@globex.example")
	cpe1, cpe2, cpe3 := cpes[0], cpes[1], cpes[2]
	if _, err := th.h.Rekey("acme"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testCPE{cpe1, cpe2} {
		if err := c.waitPut(); err != nil {
			t.Fatal(err)
		}
	}
	var keys [][]byte
	for _, dp := range []*memory.Backend{cpe1.dp, cpe3.dp, th.dp} {
		snap := dp.Snapshot()
		for _, sa := range snap.SAs {
			keys = append(keys, bytes.Clone(sa.Keys.EncKey), bytes.Clone(sa.Keys.IntegKey))
		}
		snap.Wipe()
	}
	next := copyConfig(cfg)
	removeCPE(next, "fqdn:cpe2.acme.example")
	checkConfig(t, next)
	if _, err := th.h.Reload(next); err != nil {
		t.Fatal(err)
	}
	if err := cpe1.waitPut(); err != nil {
		t.Fatal(err)
	}
	th.stop()

	logs := th.logs.String()
	for _, want := range []string{"component=ike", "component=mpsa", "component=hub", "component=bgp"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no line with %s: the check below would miss that component", want)
		}
	}
	if unknown := th.fc.Unknown(); len(unknown) > 0 {
		t.Errorf("log fields not in docs/LOGGING.md: %v", unknown)
	}
	for _, c := range cfg.CPEs {
		if c.PSK.Len() > 0 && strings.Contains(logs, string(c.PSK.Bytes())) {
			t.Errorf("the PSK of %v is in the logs", c.Identity)
		}
	}
	if len(keys) < 8 {
		t.Fatalf("only %d keys to look for", len(keys))
	}
	for _, k := range keys {
		if len(k) < 4 {
			continue
		}
		for _, enc := range []string{hex.EncodeToString(k), strings.ToUpper(hex.EncodeToString(k)), base64.StdEncoding.EncodeToString(k)[:len(k)*4/3-1]} {
			if strings.Contains(logs, enc) {
				t.Errorf("a key is in the logs (%d octets)", len(k))
			}
		}
		if strings.Contains(logs, fmt.Sprint(k)) || strings.Contains(logs, string(k)) {
			t.Errorf("a key is in the logs as bytes (%d octets)", len(k))
		}
	}
}
