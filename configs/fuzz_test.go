package configs

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// FuzzBuildHub feeds arbitrary JSON documents (the shape a YAML parser
// produces too) through the whole pipeline: it must never panic, a result
// must pass Validate again, and no PSK value may appear in an error.
func FuzzBuildHub(f *testing.F) {
	seed, _ := json.Marshal(hubTree())
	f.Add(seed)
	f.Add([]byte(`{"groups":[{"name":"a","lifetime":"5s","pool":{"ipv4":"10.0.0.0/8"}}],"cpes":[{"psk":"0xzz"}]}`))
	f.Add([]byte(`{"ike":{"listen":"::,0.0.0.0","port":1e300},"bgp":{"asn":-1,"peers":[null,{}]}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var tree map[string]any
		if json.Unmarshal(b, &tree) != nil {
			return
		}
		secrets := pskValues(tree)
		h, _, err := BuildHub(tree, Source{})
		if err != nil {
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error leaks PSK %q: %v", s, err)
				}
			}
			return
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("built configuration fails Validate: %v", err)
		}
		_ = h.Redacted()
		_ = DiffHub(h, h)
	})
}

// FuzzBuildCPE is FuzzBuildHub for the CPE.
func FuzzBuildCPE(f *testing.F) {
	seed, _ := json.Marshal(cpeTree())
	f.Add(seed)
	f.Add([]byte(`{"hubs":"1.2.3.4,[::1]:500,x","identity":"dn:CN=","credentials":{"psk":12}}`))
	f.Add([]byte(`{"lan":{"prefixes":[["10.0.0.0/8"]]},"reconnect":{"min":"-1h"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var tree map[string]any
		if json.Unmarshal(b, &tree) != nil {
			return
		}
		c, _, err := BuildCPE(tree, Source{})
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("built configuration fails Validate: %v", err)
		}
		_ = c.Redacted()
	})
}

// FuzzParseESP checks that every accepted transform name maps to a suite
// that validates and back to a name that parses to the same suite.
func FuzzParseESP(f *testing.F) {
	for _, n := range ESPNames() {
		f.Add(n)
	}
	f.Add("AES256-SHA256")
	f.Fuzz(func(t *testing.T, name string) {
		s, err := ParseESP(name)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if back, err := ParseESP(ESPName(s)); err != nil || back != s {
			t.Fatalf("%q round trip: %v %v", name, back, err)
		}
	})
}

// pskValues returns the string values of "psk" keys that occur nowhere else
// in the tree (a value also written into another field may be echoed there).
func pskValues(tree any) []string {
	var psks, others []string
	var walk func(v any, psk bool)
	walk = func(v any, psk bool) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				others = append(others, k)
				walk(e, strings.EqualFold(k, "psk"))
			}
		case []any:
			for _, e := range x {
				walk(e, false)
			}
		case string:
			if psk {
				psks = append(psks, x)
			} else {
				others = append(others, x)
			}
		}
	}
	walk(tree, false)
	var out []string
	for _, p := range psks {
		if len(p) >= 4 && !slices.ContainsFunc(others, func(o string) bool { return strings.Contains(o, p) || strings.Contains(p, o) && len(o) >= 4 }) {
			out = append(out, p)
		}
	}
	return out
}
