package liteconf

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/configs/viperconf"
)

func writeFile(t *testing.T, path string, mode os.FileMode, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func example(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExampleFilesLoad(t *testing.T) {
	dir := t.TempDir()
	h, warns, err := LoadHub(Options{File: writeFile(t, filepath.Join(dir, "hub.yaml"), 0o600, example(t, "hub.yaml"))})
	if err != nil || len(warns) > 0 || len(h.CPEs) != 3 {
		t.Fatalf("hub.yaml: %v, warnings %v", err, warns)
	}
	c, warns, err := LoadCPE(Options{File: writeFile(t, filepath.Join(dir, "cpe.yaml"), 0o600, example(t, "cpe.yaml"))})
	if err != nil || len(warns) > 0 || len(c.Hubs) != 2 {
		t.Fatalf("cpe.yaml: %v, warnings %v", err, warns)
	}
}

// result is what a load produced, comparable across loaders.
type result struct {
	redacted string
	psks     []string
	warns    []string
	err      string
}

func hubResult(h *configs.Hub, warns []configs.Warning, err error) result {
	var r result
	if h != nil {
		r.redacted = h.Redacted()
		for _, c := range h.CPEs {
			r.psks = append(r.psks, string(c.PSK.Bytes()))
		}
	}
	for _, w := range warns {
		r.warns = append(r.warns, strings.ToLower(w.String())) // Viper lower-cases keys
	}
	slices.Sort(r.warns)
	if err != nil {
		r.err = err.Error()
	}
	return r
}

func cpeResult(c *configs.CPE, warns []configs.Warning, err error) result {
	var h *configs.Hub
	r := hubResult(h, warns, err)
	if c != nil {
		r.redacted = c.Redacted()
		r.psks = []string{string(c.Credentials.PSK.Bytes())}
	}
	return r
}

// Both loaders give the same result for the same file, environment and flags.
func TestAgreesWithViper(t *testing.T) {
	dir := t.TempDir()
	hub := example(t, "hub.yaml")
	cpe := example(t, "cpe.yaml")
	cases := []struct {
		name, kind, file string
		env              map[string]string
		flags            []string
	}{
		{"hub example", "hub", hub, nil, nil},
		{"cpe example", "cpe", cpe, nil, nil},
		{"hub env and flags", "hub", hub, map[string]string{"MPSA_LOG_LEVEL": "warn", "MPSA_IKE_LISTEN": "192.0.2.1,2001:db8::1", "MPSA_BGP_ASN": "65001"},
			[]string{"-log.level=debug", "-bgp.grpc_listen=127.0.0.1:50052"}},
		{"cpe env over missing section", "cpe", cpe, map[string]string{"MPSA_KEY_EXPORT_ESP": filepath.Join(dir, "esp.csv"), "MPSA_HUBS": "198.51.100.7"}, []string{"-wan.encapsulation=udp"}},
		{"unknown and misspelt keys", "cpe", cpe + "\nLogg:\n  level: debug\nkey_export:\n  ike_file: x\n", nil, nil},
		{"bad values", "hub", strings.NewReplacer("lifetime: 2h", "lifetime: 5s", "mtu: 1380", "mtu: big", "level: info", "level: 7").Replace(hub), nil, nil},
		{"bad env value", "cpe", cpe, map[string]string{"MPSA_RECONNECT_MIN": "soon"}, nil},
		{"wrong shapes", "cpe", "hubs: {a: 1}\nlan: [1, 2]\nidentity: [x]\n", nil, nil},
		{"empty file", "cpe", "", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, filepath.Join(dir, tc.kind+".yaml"), 0o600, tc.file)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			lfs := flag.NewFlagSet("lite", flag.ContinueOnError)
			vfs := pflag.NewFlagSet("viper", pflag.ContinueOnError)
			var lite, viper result
			if tc.kind == "hub" {
				AddHubFlags(lfs)
				viperconf.AddHubFlags(vfs)
			} else {
				AddCPEFlags(lfs)
				viperconf.AddCPEFlags(vfs)
			}
			vflags := make([]string, len(tc.flags))
			for i, f := range tc.flags {
				vflags[i] = "-" + f // pflag spells long flags with two dashes
			}
			if err := lfs.Parse(tc.flags); err != nil {
				t.Fatal(err)
			}
			if err := vfs.Parse(vflags); err != nil {
				t.Fatal(err)
			}
			if tc.kind == "hub" {
				lite = hubResult(LoadHub(Options{File: file, Flags: lfs}))
				viper = hubResult(viperconf.LoadHub(viperconf.Options{File: file, Flags: vfs}))
			} else {
				lite = cpeResult(LoadCPE(Options{File: file, Flags: lfs}))
				viper = cpeResult(viperconf.LoadCPE(viperconf.Options{File: file, Flags: vfs}))
			}
			if lite.redacted != viper.redacted || !slices.Equal(lite.psks, viper.psks) || !slices.Equal(lite.warns, viper.warns) || lite.err != viper.err {
				t.Fatalf("loaders disagree\nlite:  %+v\nviper: %+v", lite, viper)
			}
			if tc.name == "bad values" && !strings.Contains(lite.err, "groups[1].lifetime") {
				t.Fatalf("bad values accepted: %+v", lite)
			}
		})
	}
}

// Redacted output with the secrets put back loads to the same configuration.
func TestRedactedRoundTrip(t *testing.T) {
	dir := t.TempDir()
	h, _, err := LoadHub(Options{File: writeFile(t, filepath.Join(dir, "hub.yaml"), 0o600, example(t, "hub.yaml"))})
	if err != nil {
		t.Fatal(err)
	}
	out := h.Redacted()
	for _, c := range h.CPEs {
		out = strings.Replace(out, `"[redacted]"`, `"0x`+hexOf(c.PSK.Bytes())+`"`, 1)
	}
	back, _, err := LoadHub(Options{File: writeFile(t, filepath.Join(dir, "back.yaml"), 0o600, out)})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if d := configs.DiffHub(h, back); !d.Empty() || back.Redacted() != h.Redacted() {
		t.Fatalf("round trip changed: %s", d.String())
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// FuzzLoadCPE feeds arbitrary YAML to the parser and the whole pipeline:
// never a panic, and whatever loads passes Validate.
func FuzzLoadCPE(f *testing.F) {
	b, err := os.ReadFile("../cpe.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("hubs: [1.2.3.4, '::1']\nidentity: &a fqdn:x\nlan: {prefixes: *a}\n"))
	f.Add([]byte("? [a]\n: b\n"))
	f.Add([]byte("credentials: {psk: !!binary aGVsbG8=}\nreconnect: {min: 1e9}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tree, err := parseYAML(data)
		if err != nil {
			return
		}
		c, _, err := configs.BuildCPE(tree, configs.Source{})
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("loaded configuration fails Validate: %v", err)
		}
	})
}

// FuzzLoadHub is FuzzLoadCPE for the hub.
func FuzzLoadHub(f *testing.F) {
	b, err := os.ReadFile("../hub.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("groups: [{name: a, pool: {ipv4: 10.0.0.0/30}}]\ncpes: [{identity: x, group: a, psk: 0123456789abcdef0, prefixes: 1.0.0.0/8}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tree, err := parseYAML(data)
		if err != nil {
			return
		}
		h, _, err := configs.BuildHub(tree, configs.Source{})
		if err != nil {
			return
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("loaded configuration fails Validate: %v", err)
		}
	})
}
