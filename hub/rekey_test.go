package hub

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/internal/ops"
)

// TestOperatorRekey: the status socket's rekey command rolls one group over
// at once: every connected CPE of the group receives and acknowledges the
// same new SA over its unchanged IKE SA, the other group is not touched, the
// key server logs why, and the metrics count it. A missing or unknown group
// is an error that changes nothing.
func TestOperatorRekey(t *testing.T) {
	checkGoroutines(t)
	th := startHub(t, baseConfig(t))
	cpes := joinCPEs(t, th, "fqdn:cpe1.acme.example", "fqdn:cpe2.acme.example", "rfc822:cpe3@globex.example")
	cpe1, cpe2, cpe3 := cpes[0], cpes[1], cpes[2]
	old1, _ := cpe1.groupSA()
	old3, _ := cpe3.groupSA()
	info1 := cpe1.sa.Info()
	ctx := context.Background()
	sock := th.cfg.Status.Socket

	for _, args := range [][]string{nil, {"nope"}, {"acme", "globex"}} {
		if _, err := ops.Query(ctx, sock, ops.Request{Command: "rekey", Args: args}); err == nil {
			t.Errorf("rekey %q accepted", args)
		}
	}
	if g := th.h.Groups().Groups; g[0].Epoch != 1 || g[1].Epoch != 1 {
		t.Fatalf("refused rekeys changed the groups: %+v", g)
	}

	resp, err := ops.Query(ctx, sock, ops.Request{Command: "rekey", Args: []string{"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	g := th.h.Groups().Groups[0]
	if g.Epoch != 2 || len(g.Epochs) != 2 {
		t.Fatalf("acme after the rekey: %+v", g)
	}
	for _, want := range []string{"acme: epoch 2, esp_spi " + g.SPI + " generated, sending it to 2 connected CPEs", "epoch 1 accepted until "} {
		if !strings.Contains(resp.Text, want) {
			t.Errorf("rekey answer lacks %q:\n%s", want, resp.Text)
		}
	}
	var newSPI uint32
	for _, c := range []*testCPE{cpe1, cpe2} {
		if err := c.waitPut(); err != nil {
			t.Fatalf("%v: %v", c.id, err)
		}
		// The new SA is accepted inbound at once; the old one still sends
		// until ROLL1.
		snap := c.dp.Snapshot()
		for _, sa := range snap.SAs {
			if sa.Keys.SPI != old1.Keys.SPI && ops.SPI32(sa.Keys.SPI) == g.SPI {
				newSPI = sa.Keys.SPI
			}
		}
		snap.Wipe()
		if _, ok := c.dp.Inbound(newSPI); !ok || newSPI == 0 {
			t.Fatalf("%v did not install the new SA %s: %s", c.id, g.SPI, c.dp.Text())
		}
	}
	in1, _ := cpe1.dp.Inbound(newSPI)
	in2, _ := cpe2.dp.Inbound(newSPI)
	if !sameKeys(in1, in2) || sameKeys(in1, old1) {
		t.Error("acme's CPEs hold different keys for the new SA, or the old keys")
	}
	th.waitFor("both acme CPEs on epoch 2", func() bool { return th.h.Groups().Groups[0].OnCurrent == 2 })
	if i := cpe1.sa.Info(); i.SPIi != info1.SPIi || i.SPIr != info1.SPIr {
		t.Error("the rekey replaced cpe1's IKE SA")
	}
	// globex is not touched.
	select {
	case err := <-cpe3.puts:
		t.Errorf("globex's cpe3 got an MPSA_PUT (%v)", err)
	default:
	}
	if g3, _ := cpe3.groupSA(); !sameKeys(g3, old3) || th.h.Groups().Groups[1].Epoch != 1 {
		t.Error("globex rekeyed along with acme")
	}
	if lines := th.logs.lines("group SA generated", "group=acme", "epoch=2", `reason="operator request"`); len(lines) != 1 {
		t.Errorf("key server log lines for the rekey: %q", lines)
	}

	// The JSON answer, for scripts: a second rekey.
	var v RekeyView
	if err := ops.QueryJSON(ctx, sock, "rekey", &v, "acme"); err != nil || v.Group != "acme" || v.Epoch != 3 || v.Previous != 2 || v.Connected != 2 {
		t.Fatalf("rekey -json: %v %+v", err, v)
	}
	for _, c := range []*testCPE{cpe1, cpe2} {
		if err := c.waitPut(); err != nil {
			t.Fatal(err)
		}
	}

	srv := httptest.NewServer(th.h.metrics.handler())
	defer srv.Close()
	r, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	for _, want := range []string{`mpsa_hub_mpsa_rekeys_total{group="acme"} 2`, `mpsa_hub_mpsa_rekeys_total{group="globex"} 0`,
		`mpsa_hub_mpsa_epoch{group="acme"} 3`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if unknown := th.fc.UnknownIn("hub"); len(unknown) > 0 {
		t.Errorf("log fields not in docs/LOGGING.md: %v", unknown)
	}
}
