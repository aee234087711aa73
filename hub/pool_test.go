package hub

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/mpsa-vpn/mpsa/configs"
)

func poolConfig(t *testing.T) (*configs.Hub, map[string]*configs.HubCPE) {
	cfg := baseConfig(t)
	cfg.Groups[0].Pool.IPv4 = mustPrefix("100.64.0.0/29") // 8 addresses: network, hub, 6 for CPEs
	checkConfig(t, cfg)
	return cfg, mustProv(t, cfg).cpes
}

func mustProv(t *testing.T, cfg *configs.Hub) *provisioning {
	p, err := newProvisioning(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPoolsAssign(t *testing.T) {
	cfg, cpes := poolConfig(t)
	path := filepath.Join(t.TempDir(), LeaseFile)
	p, err := openPools(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p.sync(cfg, cpes)

	a1, err := p.assign("fqdn:cpe1.acme.example", "acme", []int{0, 1})
	if err != nil || len(a1) != 2 || a1[0] != netip.MustParseAddr("100.64.0.2") || a1[1] != netip.MustParseAddr("fd00:64::2") {
		t.Fatalf("first lease %v %v", a1, err)
	}
	// The same CPE gets the same addresses again; only the families it asks for.
	again, _ := p.assign("fqdn:cpe1.acme.example", "acme", []int{1})
	if len(again) != 1 || again[0] != a1[1] {
		t.Errorf("again %v", again)
	}
	a2, _ := p.assign("fqdn:cpe2.acme.example", "acme", []int{0})
	if len(a2) != 1 || a2[0] != netip.MustParseAddr("100.64.0.3") {
		t.Errorf("second lease %v", a2)
	}
	// globex pools no IPv6.
	if a, err := p.assign("rfc822:cpe3@globex.example", "globex", []int{1}); err == nil {
		t.Errorf("IPv6 from an IPv4-only group: %v", a)
	}
	// A group that does not exist.
	if _, err := p.assign("fqdn:cpe1.acme.example", "nope", []int{0}); err == nil {
		t.Error("lease from no group")
	}
	if hub := p.hubAddrs(); len(hub) != 3 || hub[0] != mustPrefix("100.64.0.1/29") || hub[1] != mustPrefix("100.64.1.1/24") {
		t.Errorf("hub addresses %v", hub)
	}
	p.close()

	// Reopened: the leases are back, and new CPEs get other addresses.
	p, err = openPools(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lease store mode %v %v", fi.Mode(), err)
	}
	p.sync(cfg, cpes)
	if got := p.addrs("fqdn:cpe1.acme.example"); len(got) != 2 || got[0] != a1[0] {
		t.Errorf("after reopen %v", got)
	}
	// Fill the pool: 6 addresses for CPEs, two leased.
	for i := range 4 {
		if _, err := p.assign(string(rune('a'+i)), "acme", []int{0}); err != nil {
			t.Fatalf("lease %d: %v", i, err)
		}
	}
	if a, err := p.assign("one too many", "acme", []int{0}); err == nil {
		t.Errorf("lease from a full pool: %v", a)
	}
}

func TestPoolsSync(t *testing.T) {
	cfg, cpes := poolConfig(t)
	p, err := openPools(filepath.Join(t.TempDir(), LeaseFile), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	p.sync(cfg, cpes)
	a1, _ := p.assign("fqdn:cpe1.acme.example", "acme", []int{0})
	a2, _ := p.assign("fqdn:cpe2.acme.example", "acme", []int{0})

	// cpe2 pins cpe1's address; cpe1 loses it, cpe2's own lease goes too.
	next := copyConfig(cfg)
	next.CPEs[1].Overlay = []netip.Addr{a1[0]}
	checkConfig(t, next)
	p.sync(next, mustProv(t, next).cpes)
	if got := p.addrs("fqdn:cpe2.acme.example"); len(got) != 1 || got[0] != a1[0] {
		t.Errorf("pinned %v", got)
	}
	if got := p.addrs("fqdn:cpe1.acme.example"); len(got) != 0 {
		t.Errorf("cpe1 keeps a pinned address of another CPE: %v", got)
	}
	again, _ := p.assign("fqdn:cpe1.acme.example", "acme", []int{0})
	if len(again) != 1 || again[0] == a1[0] {
		t.Errorf("cpe1's new lease %v", again)
	}
	_ = a2

	// Removed and moved CPEs lose their leases.
	moved := copyConfig(next)
	moved.CPEs[0].Group = "globex"
	moved.CPEs[0].Prefixes = []netip.Prefix{mustPrefix("10.9.0.0/24")}
	removeCPE(moved, "fqdn:cpe2.acme.example")
	checkConfig(t, moved)
	p.sync(moved, mustProv(t, moved).cpes)
	if got := p.addrs("fqdn:cpe1.acme.example"); len(got) != 0 {
		t.Errorf("moved CPE keeps its lease %v", got)
	}
	if got := p.addrs("fqdn:cpe2.acme.example"); len(got) != 0 {
		t.Errorf("removed CPE keeps its lease %v", got)
	}
	if a, err := p.assign("fqdn:cpe1.acme.example", "globex", []int{0}); err != nil || !mustPrefix("100.64.1.0/24").Contains(a[0]) {
		t.Errorf("moved CPE's lease %v %v", a, err)
	}

	// A smaller pool releases the addresses outside it.
	shrunk := copyConfig(moved)
	shrunk.Groups[1].Pool.IPv4 = mustPrefix("100.64.1.128/25")
	checkConfig(t, shrunk)
	p.sync(shrunk, mustProv(t, shrunk).cpes)
	if got := p.addrs("fqdn:cpe1.acme.example"); len(got) != 0 {
		t.Errorf("lease outside the shrunk pool kept: %v", got)
	}
}

// TestPoolsBadRecords: records that do not decode are dropped at start, not
// trusted.
func TestPoolsBadRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), LeaseFile)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := json.Marshal(leaseRecord{Group: "acme", Addrs: []netip.Addr{netip.MustParseAddr("100.64.0.5")}})
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucketIfNotExists(leaseBucket)
		b.Put([]byte("fqdn:cpe1.acme.example"), good)
		b.Put([]byte("fqdn:cpe2.acme.example"), []byte("{not json"))
		b.Put([]byte("x"), []byte(`{"group":"acme","addrs":[]}`))
		return nil
	})
	db.Close()
	cfg, cpes := poolConfig(t)
	p, err := openPools(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	p.sync(cfg, cpes)
	if got := p.addrs("fqdn:cpe1.acme.example"); len(got) != 1 || got[0] != netip.MustParseAddr("100.64.0.5") {
		t.Errorf("good record %v", got)
	}
	if got := p.addrs("fqdn:cpe2.acme.example"); len(got) != 0 {
		t.Errorf("bad record kept %v", got)
	}
}

func FuzzDecodeLease(f *testing.F) {
	f.Add([]byte(`{"group":"acme","addrs":["100.64.0.2","fd00:64::2"]}`))
	f.Add([]byte(`{"group":"","addrs":["100.64.0.2"]}`))
	f.Add([]byte(`{"group":"g","addrs":["fe80::1%eth0"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeLease(b)
		if err != nil {
			return
		}
		if rec.Group == "" || len(rec.Addrs) == 0 || len(rec.Addrs) > 2 {
			t.Fatalf("accepted %+v", rec)
		}
		for _, a := range rec.Addrs {
			if !a.IsValid() || a.Zone() != "" {
				t.Fatalf("accepted address %v", a)
			}
		}
	})
}
