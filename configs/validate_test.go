package configs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// badCase sets one value in a valid tree and expects one error at a path,
// containing a phrase.
type badCase struct {
	name string
	set  map[string]any // path → value (del removes)
	path string         // the FieldError's path
	msg  string         // a phrase of its message
}

func runBad(t *testing.T, base func() map[string]any, build func(map[string]any) error, cases []badCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tree := base()
			for p, v := range tc.set {
				setPath(t, tree, p, v)
			}
			err := build(tree)
			if err == nil {
				t.Fatalf("accepted; want %s: ...%s...", tc.path, tc.msg)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %v is not an Errors", err)
			}
			for _, e := range es {
				if e.Path == tc.path && strings.Contains(e.Msg, tc.msg) {
					for _, s := range []string{psk1, psk2, psk3} {
						if strings.Contains(err.Error(), s) {
							t.Errorf("error message leaks a PSK: %v", err)
						}
					}
					return
				}
			}
			t.Fatalf("got %v\nwant %s: ...%s...", err, tc.path, tc.msg)
		})
	}
}

func buildHub(tree map[string]any) error {
	_, _, err := BuildHub(tree, Source{})
	return err
}

func buildCPE(tree map[string]any) error {
	_, _, err := BuildCPE(tree, Source{})
	return err
}

func TestValidTreesLoad(t *testing.T) {
	if _, w, err := BuildHub(hubTree(), Source{}); err != nil || len(w) > 0 {
		t.Fatalf("hub: %v, warnings %v", err, w)
	}
	if _, w, err := BuildCPE(cpeTree(), Source{}); err != nil || len(w) > 0 {
		t.Fatalf("cpe: %v, warnings %v", err, w)
	}
}

func TestHubBadInput(t *testing.T) {
	long := strings.Repeat("x", 120)
	runBad(t, hubTree, buildHub, []badCase{
		// The example from the issue.
		{"lifetime too short", map[string]any{"groups[1].lifetime": "5s"}, "groups[1].lifetime", `expected a duration ≥ 60s and ≤ 168h, got "5s"`},
		{"lifetime too long", map[string]any{"groups[0].lifetime": "200h"}, "groups[0].lifetime", `≤ 168h, got "200h"`},
		{"lifetime fraction", map[string]any{"groups[0].lifetime": "1h0m0.5s"}, "groups[0].lifetime", "whole number of seconds"},
		{"lifetime bare number", map[string]any{"groups[0].lifetime": 3600}, "groups[0].lifetime", "expected a duration such as 30s, 5m or 1h, got 3600"},
		{"lifetime days", map[string]any{"groups[0].lifetime": "8d"}, "groups[0].lifetime", `expected a duration such as 30s, 5m or 1h, got "8d"`},
		{"roll1 too short", map[string]any{"groups[0].roll1": "500ms"}, "groups[0].roll1", `expected a duration ≥ 1s, got "500ms"`},
		{"roll2 not after roll1", map[string]any{"groups[0].roll2": "5s"}, "groups[0].roll2", "greater than roll1 (30s)"},
		{"roll2 equal to roll1", map[string]any{"groups[0].roll2": "30s"}, "groups[0].roll2", "greater than roll1"},
		{"roll2 fraction", map[string]any{"groups[0].roll2": "30.5s"}, "groups[0].roll2", "whole number of seconds"},
		{"rekey margin below roll2", map[string]any{"groups[0].rekey_margin": "20s"}, "groups[0].rekey_margin", "greater than roll2 (2m)"},
		{"rekey margin equal to roll2", map[string]any{"groups[0].rekey_margin": "2m"}, "groups[0].rekey_margin", "greater than roll2 (2m)"},
		{"rekey margin fraction", map[string]any{"groups[0].rekey_margin": "150.5s"}, "groups[0].rekey_margin", "whole number of seconds"},
		{"rekey margin over half", map[string]any{"groups[0].lifetime": "1h", "groups[0].rekey_margin": "40m"}, "groups[0].rekey_margin", "≤ half the lifetime (30m)"},
		{"unknown prf", map[string]any{"groups[0].prf": "prfmd5"}, "groups[0].prf", `expected a PRF (prfsha256, prfsha384, prfsha512, prfsha1), got "prfmd5"`},
		{"rekey margin negative", map[string]any{"groups[0].rekey_margin": "-1s"}, "groups[0].rekey_margin", "positive duration"},

		{"no identity", map[string]any{"identity": del}, "identity", "expected the hub's identity"},
		{"bad identity", map[string]any{"identity": "ipv4:300.1.2.3"}, "identity", "expected an identity"},
		{"identity not a string", map[string]any{"identity": 42}, "identity", "got 42"},
		{"listen not an address", map[string]any{"ike.listen": []any{"300.1.1.1"}}, "ike.listen[0]", `expected an IPv4 or IPv6 address, got "300.1.1.1"`},
		{"listen multicast", map[string]any{"ike.listen": []any{"224.0.0.1"}}, "ike.listen[0]", "unicast"},
		{"listen twice", map[string]any{"ike.listen": "192.0.2.1, 192.0.2.1"}, "ike.listen[1]", "each address once"},
		{"port out of range", map[string]any{"ike.port": 70000}, "ike.port", "expected an integer in 0..65535, got 70000"},
		{"port not a number", map[string]any{"ike.port": "ike"}, "ike.port", `got "ike"`},
		{"natt port equals port", map[string]any{"ike.natt_port": 500}, "ike.natt_port", "other than ike.port"},
		{"ike not a mapping", map[string]any{"ike": "500"}, "ike", "expected a mapping"},

		{"cert without key", map[string]any{"credentials.certificate": "hub.crt"}, "credentials.private_key", "expected a private key file"},
		{"key without cert", map[string]any{"credentials.private_key": "hub.key"}, "credentials.certificate", "expected a certificate file"},
		{"cert and key in one file", map[string]any{"credentials.certificate": "hub.pem", "credentials.private_key": "hub.pem"}, "credentials.private_key", "separate"},

		{"no groups", map[string]any{"groups": []any{}}, "groups", "at least one group"},
		{"groups not a list", map[string]any{"groups": "acme"}, "groups", `expected a list, got "acme"`},
		{"group not a mapping", map[string]any{"groups[0]": "acme"}, "groups[0]", "expected a mapping"},
		{"group without name", map[string]any{"groups[0].name": del}, "groups[0].name", "expected a group name"},
		{"group name charset", map[string]any{"groups[0].name": "Acme Corp"}, "groups[0].name", "lower-case letters"},
		{"group name too long", map[string]any{"groups[0].name": long}, "groups[0].name", "lower-case letters"},
		{"group name twice", map[string]any{"groups[1].name": "acme"}, "groups[1].name", "unique group name"},
		{"unknown transform", map[string]any{"groups[0].esp": "3des-md5"}, "groups[0].esp", `expected an ESP transform (aes256-sha256, `},
		{"sender id too narrow", map[string]any{"groups[1].sender_id_bits": 4}, "groups[1].sender_id_bits", "expected 0 (off) or 8..32, got 4"},
		{"sender id too wide", map[string]any{"groups[1].sender_id_bits": 40}, "groups[1].sender_id_bits", "8..32, got 40"},
		{"sender id over uint8", map[string]any{"groups[1].sender_id_bits": 300}, "groups[1].sender_id_bits", "expected an integer in 0..255, got 300"},
		{"no pool", map[string]any{"groups[0].pool": del}, "groups[0].pool", "ipv4 and/or ipv6"},
		{"pool host bits", map[string]any{"groups[0].pool.ipv4": "100.64.0.1/24"}, "groups[0].pool.ipv4", "did you mean 100.64.0.0/24"},
		{"pool wrong family", map[string]any{"groups[0].pool.ipv4": "fd00::/64"}, "groups[0].pool.ipv4", "expected an IPv4 prefix"},
		{"pool too small", map[string]any{"groups[0].pool.ipv4": "100.64.0.0/31"}, "groups[0].pool.ipv4", "/30 or shorter"},
		{"pool too small for CPEs", map[string]any{"groups[0].pool.ipv4": "100.64.0.0/30", "cpes[2].group": "acme", "cpes[2].prefixes": []any{"10.3.0.0/24"}}, "groups[0].pool.ipv4", "room for 3 CPEs plus the hub"},
		{"ipv6 pool too small", map[string]any{"groups[0].pool.ipv6": "fd00:64::/127"}, "groups[0].pool.ipv6", "/126 or shorter"},
		{"pools overlap", map[string]any{"groups[1].pool.ipv4": "100.64.0.0/23"}, "groups[1].pool.ipv4", "not overlapping groups[0].pool.ipv4"},
		{"pool not a prefix", map[string]any{"groups[0].pool.ipv4": "100.64.0.0"}, "groups[0].pool.ipv4", `expected an IP prefix such as 10.1.0.0/24, got "100.64.0.0"`},
		{"max prefixes negative", map[string]any{"groups[0].bgp.max_prefixes": -1}, "groups[0].bgp.max_prefixes", "expected 1..100000, got -1"},
		{"local pref negative", map[string]any{"groups[0].bgp.local_pref": -5}, "groups[0].bgp.local_pref", "0..4294967295"},
		{"more specifics not a bool", map[string]any{"groups[0].bgp.accept_more_specifics": "maybe"}, "groups[0].bgp.accept_more_specifics", `expected true or false, got "maybe"`},

		{"cpes not a list", map[string]any{"cpes": map[string]any{}}, "cpes", "expected a list, got a mapping"},
		{"cpe without identity", map[string]any{"cpes[0].identity": del}, "cpes[0].identity", "expected the CPE's identity"},
		{"cpe identity twice", map[string]any{"cpes[1].identity": "fqdn:CPE1.acme.example"}, "cpes[1].identity", "unique identity"},
		{"cpe unknown group", map[string]any{"cpes[0].group": "initech"}, "cpes[0].group", `expected the name of a group in groups, got "initech"`},
		{"psk too short", map[string]any{"cpes[0].psk": "short"}, "cpes[0].psk", "expected a PSK of 16..1024 octets, got 5 octets"},
		{"psk bad hex", map[string]any{"cpes[0].psk": "0xnothex-but-long-enough"}, "cpes[0].psk", "hex digits"},
		{"psk a number", map[string]any{"cpes[0].psk": 12345678901234567}, "cpes[0].psk", "expected a secret string, got a number"},
		{"psk and psk file", map[string]any{"cpes[0].psk_file": "cpe1.psk"}, "cpes[0].psk_file", "either psk or psk_file"},
		{"psk auth without psk", map[string]any{"cpes[0].psk": del, "cpes[0].auth": "psk"}, "cpes[0].psk", "expected psk or psk_file"},
		{"unknown auth", map[string]any{"cpes[0].auth": "token"}, "cpes[0].auth", `expected psk or cert, got "token"`},
		{"cert auth with psk", map[string]any{"cpes[0].auth": "cert"}, "cpes[0].psk", "no PSK with auth: cert"},
		{"cert auth needs hub CA", map[string]any{"cpes[0].psk": del}, "credentials.ca", "expected a CA file"},
		{"cert auth needs hub cert", map[string]any{"cpes[0].psk": del}, "credentials.certificate", "some CPEs use auth: cert"},
		{"no prefixes", map[string]any{"cpes[0].prefixes": []any{}}, "cpes[0].prefixes", "at least one authorised LAN prefix"},
		{"prefix host bits", map[string]any{"cpes[0].prefixes": []any{"10.1.0.1/24"}}, "cpes[0].prefixes[0]", "host bits zero"},
		{"prefix overlaps another CPE", map[string]any{"cpes[1].prefixes": []any{"10.1.0.128/25"}}, "cpes[1].prefixes[0]", "not overlapping cpes[0].prefixes[0] (10.1.0.0/24)"},
		{"prefix in pool", map[string]any{"cpes[0].prefixes": []any{"100.64.0.0/28"}}, "cpes[0].prefixes[0]", "outside the group's overlay pool"},
		{"prefix list item bad", map[string]any{"cpes[0].prefixes": "10.1.0.0/24,junk"}, "cpes[0].prefixes[1]", `got "junk"`},
		{"prefixes a number", map[string]any{"cpes[0].prefixes": 5}, "cpes[0].prefixes", "expected a list, got 5"},
		{"overlay outside pool", map[string]any{"cpes[0].overlay": []any{"100.64.9.9"}}, "cpes[0].overlay[0]", "group's IPv4 pool"},
		{"overlay is hub", map[string]any{"cpes[0].overlay": []any{"100.64.0.1"}}, "cpes[0].overlay[0]", "other than the pool's network and hub address"},
		{"overlay two of a family", map[string]any{"cpes[0].overlay": []any{"100.64.0.5", "100.64.0.6"}}, "cpes[0].overlay[1]", "at most one address per family"},
		{"overlay shared", map[string]any{"cpes[0].overlay": []any{"100.64.0.5"}, "cpes[1].overlay": []any{"100.64.0.5"}}, "cpes[1].overlay[0]", "unique overlay address"},
		{"overlay family without pool", map[string]any{"cpes[2].overlay": []any{"fd00:65::5"}}, "cpes[2].overlay[0]", "group's IPv6 pool"},

		{"asn AS_TRANS", map[string]any{"bgp.asn": 23456}, "bgp.asn", "AS_TRANS"},
		{"asn reserved", map[string]any{"bgp.asn": 4294967295}, "bgp.asn", "got 4294967295"},
		{"asn negative", map[string]any{"bgp.asn": -1}, "bgp.asn", "expected an integer in 0..4294967295, got -1"},
		{"asn too big", map[string]any{"bgp.asn": 4294967296}, "bgp.asn", "expected an integer in 0..4294967295"},
		{"no router id", map[string]any{"bgp.router_id": del}, "bgp.router_id", "non-zero IPv4 address"},
		{"router id v6", map[string]any{"bgp.router_id": "2001:db8::1"}, "bgp.router_id", `got "2001:db8::1"`},
		{"cluster id zero", map[string]any{"bgp.cluster_id": "0.0.0.0"}, "bgp.cluster_id", "non-zero IPv4"},
		{"grpc without port", map[string]any{"bgp.grpc_listen": "127.0.0.1"}, "bgp.grpc_listen", "non-zero port"},
		{"grpc garbage", map[string]any{"bgp.grpc_listen": "localhost:50051"}, "bgp.grpc_listen", "expected an address or address:port"},
		{"peer without address", map[string]any{"bgp.peers": []any{map[string]any{"asn": 65010, "group": "acme"}}}, "bgp.peers[0].address", "unicast IP address"},
		{"peer without asn", map[string]any{"bgp.peers": []any{map[string]any{"address": "192.0.2.254", "group": "acme"}}}, "bgp.peers[0].asn", "got 0"},
		{"peer unknown group", map[string]any{"bgp.peers": []any{map[string]any{"address": "192.0.2.254", "asn": 65010, "group": "x"}}}, "bgp.peers[0].group", "name of a group"},
		{"peer twice", map[string]any{"bgp.peers": []any{
			map[string]any{"address": "192.0.2.254", "asn": 65010, "group": "acme"},
			map[string]any{"address": "192.0.2.254", "asn": 65011, "group": "globex"}}}, "bgp.peers[1].address", "unique peer address"},

		{"backend unknown", map[string]any{"dataplane.backend": "dpdk"}, "dataplane.backend", `expected auto, userspace or xfrm, got "dpdk"`},
		{"tun name too long", map[string]any{"dataplane.tun.name": "mpsa-overlay-tun0"}, "dataplane.tun.name", "at most 15 characters"},
		{"tun name slash", map[string]any{"dataplane.tun.name": "mp/sa"}, "dataplane.tun.name", "without '/'"},
		{"mtu too small", map[string]any{"dataplane.tun.mtu": 576}, "dataplane.tun.mtu", "expected an MTU in 1280..9000, got 576"},
		{"mtu too big", map[string]any{"dataplane.tun.mtu": 65536}, "dataplane.tun.mtu", "got 65536"},
		{"mtu fractional", map[string]any{"dataplane.tun.mtu": 1400.5}, "dataplane.tun.mtu", "expected an integer"},
		{"state dir relative", map[string]any{"state_dir": "var/lib/mpsa"}, "state_dir", "absolute directory path"},
		{"metrics without port", map[string]any{"metrics.listen": "127.0.0.1"}, "metrics.listen", "non-zero port"},
		{"status socket relative", map[string]any{"status.socket": "hub.sock"}, "status.socket", "absolute path"},
		{"status socket too long", map[string]any{"status.socket": "/" + long}, "status.socket", "at most 107 characters"},
		{"log level", map[string]any{"log.level": "verbose"}, "log.level", `expected debug, info, warn or error, got "verbose"`},
		{"log format", map[string]any{"log.format": "xml"}, "log.format", `expected text or json, got "xml"`},
		{"key export same file", map[string]any{"key_export.ike": "/tmp/keys", "key_export.esp": "/tmp/keys"}, "key_export.esp", "different file"},
	})
}

func TestCPEBadInput(t *testing.T) {
	hubs := make([]any, MaxHubEndpoints+1)
	for i := range hubs {
		hubs[i] = fmt.Sprintf("192.0.2.%d", 10+i)
	}
	runBad(t, cpeTree, buildCPE, []badCase{
		{"no hubs", map[string]any{"hubs": del}, "hubs", "at least one hub address"},
		{"hub name", map[string]any{"hubs": []any{"hub.example.net"}}, "hubs[0]", `expected an address or address:port ([v6]:port), got "hub.example.net"`},
		{"hub unspecified", map[string]any{"hubs": []any{"0.0.0.0"}}, "hubs[0]", "unicast"},
		{"hub twice", map[string]any{"hubs": "192.0.2.1,192.0.2.1:500"}, "hubs[1]", "each hub address once"},
		{"too many hubs", map[string]any{"hubs": hubs}, "hubs", "at most 16 hub addresses, got 17"},
		{"hub v6 port unbracketed", map[string]any{"hubs": []any{"2001:db8::1:500:x"}}, "hubs[0]", "expected an address"},
		{"hub identity bad", map[string]any{"hub_identity": "ipv6:192.0.2.1"}, "hub_identity", "expected an identity"},
		{"no identity", map[string]any{"identity": del}, "identity", "expected the CPE's identity"},
		{"no credentials", map[string]any{"credentials": del}, "credentials", "expected psk, psk_file, or certificate"},
		{"psk and certificate", map[string]any{"credentials.certificate": "cpe.crt", "credentials.private_key": "cpe.key"}, "credentials", "not both"},
		{"psk and psk file", map[string]any{"credentials.psk_file": "cpe.psk"}, "credentials.psk_file", "either psk or psk_file"},
		{"psk short", map[string]any{"credentials.psk": "0x0102"}, "credentials.psk", "got 2 octets"},
		{"cert without key", map[string]any{"credentials.psk": del, "credentials.certificate": "cpe.crt", "credentials.ca": "ca.crt"}, "credentials.private_key", "expected a private key file"},
		{"cert without ca", map[string]any{"credentials.psk": del, "credentials.certificate": "cpe.crt", "credentials.private_key": "cpe.key"}, "credentials.ca", "expected a CA file"},
		{"lan interface too long", map[string]any{"lan.interface": "bridge-lan-number-1"}, "lan.interface", "at most 15"},
		{"no lan prefixes", map[string]any{"lan.prefixes": []any{}}, "lan.prefixes", "at least one LAN prefix"},
		{"lan prefix host bits", map[string]any{"lan.prefixes": []any{"10.1.0.9/24"}}, "lan.prefixes[0]", "did you mean 10.1.0.0/24"},
		{"lan prefixes overlap", map[string]any{"lan.prefixes": []any{"10.1.0.0/16", "10.1.2.0/24"}}, "lan.prefixes[1]", "not overlapping lan.prefixes[0]"},
		{"lan prefix mapped", map[string]any{"lan.prefixes": []any{"::ffff:10.1.0.0/120"}}, "lan.prefixes[0]", "not IPv4-mapped"},
		{"wan interface space", map[string]any{"wan.interface": "eth 0"}, "wan.interface", "spaces"},
		{"encapsulation", map[string]any{"wan.encapsulation": "gre"}, "wan.encapsulation", `expected auto, udp or raw, got "gre"`},
		{"backend", map[string]any{"dataplane.backend": "kernel"}, "dataplane.backend", "auto, userspace or xfrm"},
		{"mtu", map[string]any{"dataplane.tun.mtu": 100}, "dataplane.tun.mtu", "1280..9000"},
		{"asn", map[string]any{"bgp.asn": 0.5}, "bgp.asn", "expected an integer"},
		{"asn trans", map[string]any{"bgp.asn": 23456}, "bgp.asn", "AS_TRANS"},
		{"router id v6", map[string]any{"bgp.router_id": "::1"}, "bgp.router_id", "IPv4 address or nothing"},
		{"reconnect min tiny", map[string]any{"reconnect.min": "10ms"}, "reconnect.min", `expected a duration ≥ 100ms and ≤ 1h, got "10ms"`},
		{"reconnect max below min", map[string]any{"reconnect.min": "5s", "reconnect.max": "1s"}, "reconnect.max", "≥ reconnect.min (5s)"},
		{"reconnect max huge", map[string]any{"reconnect.max": "2h"}, "reconnect.max", `got "2h"`},
		{"metrics garbage", map[string]any{"metrics.listen": ":9471"}, "metrics.listen", "expected an address or address:port"},
		{"status relative", map[string]any{"status.socket": "cpe.sock"}, "status.socket", "absolute path"},
		{"log level", map[string]any{"log.level": 3}, "log.level", "expected a string, got 3 (quote it)"},
		{"key export same", map[string]any{"key_export.ike": "k", "key_export.esp": "k"}, "key_export.esp", "different file"},
	})
}

// Every problem of one file is reported, not just the first.
func TestAllProblemsReported(t *testing.T) {
	tree := hubTree()
	setPath(t, tree, "groups[1].lifetime", "5s")
	setPath(t, tree, "log.level", "loud")
	setPath(t, tree, "cpes[0].group", "nope")
	_, _, err := BuildHub(tree, Source{})
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("got %v, want 3 problems", err)
	}
	want := []string{"groups[1].lifetime", "cpes[0].group", "log.level"}
	for i, e := range es {
		if e.Path != want[i] {
			t.Errorf("problem %d at %s, want %s (file order)", i, e.Path, want[i])
		}
	}
	if !strings.HasPrefix(err.Error(), "configs: 3 problems:\n\tgroups[1].lifetime: expected") {
		t.Errorf("message: %q", err.Error())
	}
}

func TestUnknownKeysWarned(t *testing.T) {
	tree := hubTree()
	setPath(t, tree, "groups[1].lifetme", "2h")
	setPath(t, tree, "bgp.routerid", "192.0.2.9")
	setPath(t, tree, "frobnicate", true)
	h, warns, err := BuildHub(tree, Source{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, w := range warns {
		got[w.Path] = w.Msg
	}
	for path, msg := range map[string]string{
		"groups[1].lifetme": `unknown key, ignored (did you mean "lifetime"?)`,
		"bgp.routerid":      `unknown key, ignored (did you mean "router_id"?)`,
		"frobnicate":        "unknown key, ignored",
	} {
		if got[path] != msg {
			t.Errorf("warning for %s = %q, want %q", path, got[path], msg)
		}
	}
	if len(warns) != 3 {
		t.Errorf("warnings %v", warns)
	}
	if h.Groups[1].Lifetime != DefaultLifetime {
		t.Errorf("misspelt key was applied")
	}
}
