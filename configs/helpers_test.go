package configs

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// Test PSKs: long enough, and distinctive so leak checks can search for them.
const (
	psk1 = "PSK-one-0123456789-secret"
	psk2 = "PSK-two-0123456789-secret"
	psk3 = "PSK-three-0123456789-secret"
)

// hubTree returns a valid hub configuration tree, shaped as a YAML or
// JSON parser would produce it.
func hubTree() map[string]any {
	return clone(map[string]any{
		"identity": "fqdn:hub.example.net",
		"groups": []any{
			map[string]any{"name": "acme", "pool": map[string]any{"ipv4": "100.64.0.0/24", "ipv6": "fd00:64::/64"}},
			map[string]any{"name": "globex", "esp": "aes256gcm16", "pool": map[string]any{"ipv4": "100.64.1.0/24"}},
		},
		"cpes": []any{
			map[string]any{"identity": "fqdn:cpe1.acme.example", "group": "acme", "psk": psk1, "prefixes": []any{"10.1.0.0/24"}},
			map[string]any{"identity": "fqdn:cpe2.acme.example", "group": "acme", "psk": psk2, "prefixes": []any{"10.2.0.0/24", "fd01:2::/64"}},
			map[string]any{"identity": "fqdn:cpe3.globex.example", "group": "globex", "psk": psk3, "prefixes": []any{"10.1.0.0/24"}},
		},
		"bgp": map[string]any{"router_id": "192.0.2.1"},
	})
}

// cpeTree returns a valid CPE configuration tree.
func cpeTree() map[string]any {
	return clone(map[string]any{
		"hubs":        []any{"192.0.2.1", "[2001:db8::1]:500"},
		"identity":    "fqdn:cpe1.acme.example",
		"credentials": map[string]any{"psk": psk1},
		"lan":         map[string]any{"interface": "br-lan", "prefixes": []any{"10.1.0.0/24", "fd01:1::/64"}},
	})
}

// clone deep-copies a tree through JSON (which keeps its shape).
func clone(t map[string]any) map[string]any {
	b, err := json.Marshal(t)
	if err != nil {
		panic(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// del as a value removes the key.
type deleted struct{}

var del = deleted{}

// setPath sets (or with del, removes) the value at a path such as
// "groups[1].pool.ipv4" in a tree.
func setPath(t testing.TB, tree map[string]any, path string, v any) {
	t.Helper()
	var cur any = tree
	parts := strings.Split(path, ".")
	for i, p := range parts {
		key, idx := p, -1
		if j := strings.IndexByte(p, '['); j >= 0 {
			key = p[:j]
			n, err := strconv.Atoi(strings.TrimSuffix(p[j+1:], "]"))
			if err != nil {
				t.Fatalf("bad path %q", path)
			}
			idx = n
		}
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("path %q: %q is not in a mapping", path, p)
		}
		last := i == len(parts)-1
		if idx < 0 {
			if last {
				if v == del {
					delete(m, key)
				} else {
					m[key] = v
				}
				return
			}
			if _, ok := m[key]; !ok {
				m[key] = map[string]any{}
			}
			cur = m[key]
			continue
		}
		l, ok := m[key].([]any)
		if !ok || idx >= len(l) {
			t.Fatalf("path %q: no element %d", path, idx)
		}
		if last {
			l[idx] = v
			return
		}
		cur = l[idx]
	}
}
