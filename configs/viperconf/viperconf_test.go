package viperconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/mpsa-vpn/mpsa/configs"
)

// copyExample copies an example file from configs/ into a fresh directory
// with the given mode.
func copyExample(t *testing.T, name string, mode os.FileMode) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", name))
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, filepath.Join(t.TempDir(), name), mode, string(b))
}

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

func TestExampleFilesLoad(t *testing.T) {
	h, warns, err := LoadHub(Options{File: copyExample(t, "hub.yaml", 0o640)})
	if err != nil || len(warns) > 0 {
		t.Fatalf("hub.yaml: %v, warnings %v", err, warns)
	}
	if len(h.Groups) != 2 || len(h.CPEs) != 3 || configs.ESPName(h.Groups[1].ESP) != "aes256gcm16" || h.Groups[1].SenderIDBits != 16 {
		t.Errorf("hub.yaml read as %s", h.Redacted())
	}
	if h.CPEs[1].PSK.Len() != 16 || h.Metrics.Listen.String() != "127.0.0.1:9470" {
		t.Errorf("hub.yaml: hex PSK %d octets, metrics %v", h.CPEs[1].PSK.Len(), h.Metrics.Listen)
	}
	c, warns, err := LoadCPE(Options{File: copyExample(t, "cpe.yaml", 0o600)})
	if err != nil || len(warns) > 0 {
		t.Fatalf("cpe.yaml: %v, warnings %v", err, warns)
	}
	if len(c.Hubs) != 2 || c.Hubs[1].String() != "[2001:db8::1]:500" || c.LAN.Interface != "br-lan" {
		t.Errorf("cpe.yaml read as %s", c.Redacted())
	}
	// As shipped they hold PSKs, so a world-readable copy is refused.
	f := copyExample(t, "cpe.yaml", 0o644)
	_, _, err = LoadCPE(Options{File: f})
	if err == nil || !strings.Contains(err.Error(), f+": expected a file not readable by others since it holds PSKs") {
		t.Fatalf("world-readable cpe.yaml: %v", err)
	}
}

const cpeYAML = `
hubs: [192.0.2.1]
identity: fqdn:cpe1.acme.example
credentials:
  psk: "correct horse battery staple 1"
lan:
  prefixes: [10.1.0.0/24]
log:
  level: info
`

func TestEnvironmentAndFlags(t *testing.T) {
	file := writeFile(t, filepath.Join(t.TempDir(), "cpe.yaml"), 0o600, cpeYAML)
	t.Setenv("MPSA_LOG_LEVEL", "warn")                        // overrides the file
	t.Setenv("MPSA_LOG_FORMAT", "json")                       // a key the file lacks
	t.Setenv("MPSA_HUBS", "198.51.100.1, [2001:db8::9]:4501") // a list, comma-separated
	t.Setenv("MPSA_METRICS_LISTEN", "127.0.0.1:9471")         // a section the file lacks
	t.Setenv("MPSA_DATAPLANE_TUN_MTU", "1400")                // a number
	t.Setenv("MPSA_BGP_ROUTER_ID", "")                        // empty counts as unset
	fs := pflag.NewFlagSet("mpsa-cpe", pflag.ContinueOnError)
	AddCPEFlags(fs)
	if err := fs.Parse([]string{"--log.level=debug", "--reconnect.max=90s"}); err != nil {
		t.Fatal(err)
	}
	c, _, err := LoadCPE(Options{File: file, Flags: fs})
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.Level != configs.LogDebug || c.Log.Format != configs.LogJSON {
		t.Errorf("log %+v: want debug (flag over env over file), json (env)", c.Log)
	}
	if len(c.Hubs) != 2 || c.Hubs[0].String() != "198.51.100.1:500" || c.Hubs[1].String() != "[2001:db8::9]:4501" {
		t.Errorf("hubs %v", c.Hubs)
	}
	if c.Metrics.Listen.String() != "127.0.0.1:9471" || c.Dataplane.TUN.MTU != 1400 || c.Reconnect.Max.String() != "1m30s" || c.BGP.RouterID.IsValid() {
		t.Errorf("metrics %v mtu %d reconnect %v router id %v", c.Metrics.Listen, c.Dataplane.TUN.MTU, c.Reconnect.Max, c.BGP.RouterID)
	}

	t.Setenv("MPSA_DATAPLANE_TUN_MTU", "big")
	_, _, err = LoadCPE(Options{File: file})
	if err == nil || err.Error() != `configs: dataplane.tun.mtu: expected an integer, got "big"` {
		t.Errorf("bad environment value: %v", err)
	}

	// Without a file, environment and flags alone.
	os.Unsetenv("MPSA_DATAPLANE_TUN_MTU")
	t.Setenv("MPSA_IDENTITY", "fqdn:cpe9.example.net")
	t.Setenv("MPSA_CREDENTIALS_PSK", "a PSK from the environment")
	t.Setenv("MPSA_LAN_PREFIXES", "10.9.0.0/24")
	c, _, err = LoadCPE(Options{})
	if err != nil || c.Identity.String() != "fqdn:cpe9.example.net" || c.Credentials.PSK.Len() != 26 {
		t.Fatalf("env only: %v %v", c, err)
	}
}

func TestUnknownKeysAndSyntaxErrors(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "cpe.yaml"), 0o600, cpeYAML+"recconnect:\n  min: 2s\n")
	_, warns, err := LoadCPE(Options{File: file})
	if err != nil || len(warns) != 1 || warns[0].String() != `recconnect: unknown key, ignored (did you mean "reconnect"?)` {
		t.Fatalf("warnings %v, err %v", warns, err)
	}
	file = writeFile(t, filepath.Join(dir, "bad.yaml"), 0o600, "hubs: [192.0.2.1\nidentity: x\n")
	if _, _, err := LoadCPE(Options{File: file}); err == nil || !strings.HasPrefix(err.Error(), "configs: "+file+": ") || !strings.Contains(err.Error(), "line") {
		t.Fatalf("syntax error: %v", err)
	}
	if _, _, err := LoadCPE(Options{File: filepath.Join(dir, "missing.yaml")}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
	if _, _, err := LoadCPE(Options{File: dir}); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Fatalf("directory: %v", err)
	}
}

// A reload triggered by the daemon (SIGHUP) re-reads the file; a bad file
// is reported with its field paths and the running configuration is kept.
func TestReloadKeepsRunningConfigOnBadFile(t *testing.T) {
	b, err := os.ReadFile("../hub.yaml")
	if err != nil {
		t.Fatal(err)
	}
	good := string(b)
	file := writeFile(t, filepath.Join(t.TempDir(), "hub.yaml"), 0o600, good)
	r, warns, err := configs.NewHubReloader(HubLoader(Options{File: file}))
	if err != nil || len(warns) > 0 {
		t.Fatalf("%v %v", err, warns)
	}
	running := r.Current()

	bad := strings.Replace(good, "lifetime: 2h", "lifetime: 5s", 1)
	writeFile(t, file, 0o600, bad)
	_, _, err = r.Reload()
	var es configs.Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Error() != `groups[1].lifetime: expected a duration ≥ 60s and ≤ 168h, got "5s"` {
		t.Fatalf("bad reload: %v", err)
	}
	if r.Current() != running {
		t.Fatal("the bad file replaced the running configuration")
	}

	writeFile(t, file, 0o600, "groups: [\n")
	if _, _, err := r.Reload(); err == nil || r.Current() != running {
		t.Fatalf("syntax error reload: %v", err)
	}
	writeFile(t, file, 0o644, good) // world-readable with PSKs
	if _, _, err := r.Reload(); err == nil || r.Current() != running {
		t.Fatalf("world-readable reload: %v", err)
	}

	// Adding a 4th CPE: one CPE added, nothing else changed.
	added := strings.Replace(good, "# A CPE with a certificate", `- identity: fqdn:cpe4.acme.example
    group: acme
    psk: "the fourth CPE's own PSK"
    prefixes: [10.4.0.0/24]

  # A CPE with a certificate`, 1)
	writeFile(t, file, 0o600, added)
	d, _, err := r.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.CPEsAdded) != 1 || d.CPEsAdded[0].Identity.String() != "fqdn:cpe4.acme.example" || len(d.CPEsRemoved)+len(d.CPEsChanged)+len(d.GroupsChanged)+len(d.Changed) != 0 {
		t.Fatalf("diff: %s", d.String())
	}
	if len(r.Current().CPEs) != 4 {
		t.Fatal("new configuration not current")
	}
}
