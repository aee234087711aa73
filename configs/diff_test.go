package configs

import (
	"errors"
	"slices"
	"testing"
)

func mustHub(t *testing.T, tree map[string]any) *Hub {
	t.Helper()
	h, _, err := BuildHub(tree, Source{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func ids(cs []HubCPE) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Identity.String())
	}
	return out
}

func TestDiffHub(t *testing.T) {
	old := mustHub(t, hubTree())
	if d := DiffHub(old, mustHub(t, hubTree())); !d.Empty() {
		t.Fatalf("same configuration differs: %v", d.String())
	}

	tree := hubTree()
	cpes := tree["cpes"].([]any)
	// cpe2 removed, cpe4 added, cpe1 changed (PSK and prefixes), cpe3 unchanged.
	cpes[0].(map[string]any)["psk"] = "a brand new PSK for cpe1"
	cpes[0].(map[string]any)["prefixes"] = []any{"10.1.0.0/24", "10.11.0.0/24"}
	cpes[1] = map[string]any{"identity": "fqdn:cpe4.acme.example", "group": "acme", "psk": psk2, "prefixes": []any{"10.4.0.0/24"}}
	setPath(t, tree, "groups[1].lifetime", "2h")
	setPath(t, tree, "groups[1].pool.ipv6", "fd00:65::/64")
	tree["groups"] = append(tree["groups"].([]any), map[string]any{"name": "initech", "pool": map[string]any{"ipv4": "100.64.2.0/24"}})
	setPath(t, tree, "log.level", "debug")
	setPath(t, tree, "bgp.peers", []any{map[string]any{"address": "192.0.2.254", "asn": 65010, "group": "acme"}})
	d := DiffHub(old, mustHub(t, tree))

	if got := ids(d.CPEsAdded); !slices.Equal(got, []string{"fqdn:cpe4.acme.example"}) {
		t.Errorf("added %v", got)
	}
	if got := ids(d.CPEsRemoved); !slices.Equal(got, []string{"fqdn:cpe2.acme.example"}) {
		t.Errorf("removed %v", got)
	}
	if len(d.CPEsChanged) != 1 || d.CPEsChanged[0].New.Identity.String() != "fqdn:cpe1.acme.example" ||
		!slices.Equal(d.CPEsChanged[0].Fields, []string{"psk", "prefixes"}) {
		t.Errorf("changed %+v", d.CPEsChanged)
	}
	if !slices.Equal(d.GroupsAdded, []string{"initech"}) || len(d.GroupsRemoved) != 0 {
		t.Errorf("groups added %v removed %v", d.GroupsAdded, d.GroupsRemoved)
	}
	if len(d.GroupsChanged) != 1 || d.GroupsChanged[0].Name != "globex" || !slices.Equal(d.GroupsChanged[0].Fields, []string{"lifetime", "pool.ipv6"}) {
		t.Errorf("groups changed %+v", d.GroupsChanged)
	}
	if !slices.Equal(d.Changed, []string{"bgp.peers", "log.level"}) {
		t.Errorf("other changes %v", d.Changed)
	}
	want := "groups added: initech; group globex changed: lifetime pool.ipv6; CPEs added: fqdn:cpe4.acme.example; " +
		"CPEs removed: fqdn:cpe2.acme.example; CPE fqdn:cpe1.acme.example changed: psk prefixes; changed: bgp.peers log.level"
	if d.String() != want {
		t.Errorf("String:\n%s\nwant\n%s", d.String(), want)
	}

	// Removing a group (with its CPEs).
	tree = hubTree()
	tree["groups"] = tree["groups"].([]any)[:1]
	tree["cpes"] = tree["cpes"].([]any)[:2]
	d = DiffHub(old, mustHub(t, tree))
	if !slices.Equal(d.GroupsRemoved, []string{"globex"}) || !slices.Equal(ids(d.CPEsRemoved), []string{"fqdn:cpe3.globex.example"}) {
		t.Errorf("group removal: %s", d.String())
	}
}

func TestDiffCPE(t *testing.T) {
	old, _, err := BuildCPE(cpeTree(), Source{})
	if err != nil {
		t.Fatal(err)
	}
	tree := cpeTree()
	setPath(t, tree, "credentials.psk", "another secret of 16+ octets")
	setPath(t, tree, "lan.prefixes", []any{"10.1.0.0/24"})
	setPath(t, tree, "reconnect.max", "30s")
	new, _, err := BuildCPE(tree, Source{})
	if err != nil {
		t.Fatal(err)
	}
	d := DiffCPE(old, new)
	if !slices.Equal(d.Changed, []string{"credentials.psk", "lan.prefixes", "reconnect.max"}) {
		t.Errorf("changed %v", d.Changed)
	}
	if !d.Has("credentials") || !d.Has("lan") || d.Has("hubs") || d.Has("lan.interface") {
		t.Errorf("Has")
	}
	if e := DiffCPE(old, old); !e.Empty() || e.String() != "no changes" {
		t.Errorf("self diff %v", e)
	}
}

// The reloader keeps the running configuration when the new one is bad.
func TestReloaderKeepsRunningConfigOnError(t *testing.T) {
	next := hubTree()
	load := func() (*Hub, []Warning, error) { return BuildHub(clone(next), Source{}) }
	r, _, err := NewHubReloader(load)
	if err != nil {
		t.Fatal(err)
	}
	running := r.Current()

	setPath(t, next, "groups[1].lifetime", "5s")
	d, _, err := r.Reload()
	var es Errors
	if !errors.As(err, &es) || es[0].Path != "groups[1].lifetime" {
		t.Fatalf("bad reload: %v", err)
	}
	if r.Current() != running || !d.Empty() {
		t.Fatal("a bad configuration replaced the running one")
	}

	setPath(t, next, "groups[1].lifetime", "2h")
	d, _, err = r.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if r.Current() == running || len(d.GroupsChanged) != 1 {
		t.Fatalf("good reload: %s", d.String())
	}

	if _, _, err := NewHubReloader(func() (*Hub, []Warning, error) { return BuildHub(map[string]any{}, Source{}) }); err == nil {
		t.Fatal("initial bad configuration accepted")
	}

	ctree := cpeTree()
	cr, _, err := NewCPEReloader(func() (*CPE, []Warning, error) { return BuildCPE(clone(ctree), Source{}) })
	if err != nil {
		t.Fatal(err)
	}
	cur := cr.Current()
	setPath(t, ctree, "hubs", []any{})
	if _, _, err := cr.Reload(); err == nil || cr.Current() != cur {
		t.Fatalf("bad CPE reload: %v", err)
	}
	setPath(t, ctree, "hubs", []any{"198.51.100.1"})
	cd, _, err := cr.Reload()
	if err != nil || !slices.Equal(cd.Changed, []string{"hubs"}) {
		t.Fatalf("CPE reload: %v %v", cd, err)
	}
}

func TestKeys(t *testing.T) {
	keys := map[string]Key{}
	for _, k := range HubKeys() {
		keys[k.Path] = k
	}
	for path, env := range map[string]string{
		"bgp.router_id": "MPSA_BGP_ROUTER_ID", "log.level": "MPSA_LOG_LEVEL", "ike.listen": "MPSA_IKE_LISTEN",
		"dataplane.tun.mtu": "MPSA_DATAPLANE_TUN_MTU", "credentials.ca": "MPSA_CREDENTIALS_CA", "state_dir": "MPSA_STATE_DIR",
	} {
		if keys[path].Env != env {
			t.Errorf("%s: env %q, want %s", path, keys[path].Env, env)
		}
	}
	if !keys["ike.listen"].List || keys["log.level"].List {
		t.Error("List flags")
	}
	for _, p := range []string{"groups", "cpes", "bgp.peers", "groups.name"} {
		if _, ok := keys[p]; ok {
			t.Errorf("%s is inside a list of mappings and cannot be a key", p)
		}
	}
	ck := map[string]Key{}
	for _, k := range CPEKeys() {
		ck[k.Path] = k
	}
	if !ck["credentials.psk"].Secret || !ck["hubs"].List || ck["credentials.certificate"].Path == "" {
		t.Errorf("CPE keys %v", CPEKeys())
	}

	tree := map[string]any{"BGP": map[string]any{"ASN": 1}, "log": "flat"}
	SetKey(tree, "bgp.router_id", "192.0.2.9")
	SetKey(tree, "bgp.asn", "65001")
	SetKey(tree, "log.level", "debug")
	b := tree["bgp"].(map[string]any)
	if b["router_id"] != "192.0.2.9" || b["asn"] != "65001" || len(b) != 2 || tree["log"].(map[string]any)["level"] != "debug" {
		t.Errorf("SetKey: %v", tree)
	}
}
