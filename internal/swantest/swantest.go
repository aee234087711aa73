// Package swantest runs strongSwan's charon (Debian 12: 5.9.8) as a real
// IKEv2 peer in tests, one instance per network namespace and without
// systemd or the starter: it writes the instance's strongswan.conf and
// swanctl.conf, starts charon in the foreground with a private /run (its
// pid file is fixed), waits for its VICI socket, runs swanctl against it,
// parses `swanctl --list-sas --raw`, shows the end of charon's log when the
// test failed, and stops charon when the test ends. It also captures
// traffic with tcpdump inside a namespace and reads the capture back.
//
// Everything that needs root or an installed binary skips through
// internal/testenv (a failure under MPSA_REQUIRE_ALL=1). The layout follows
// the shared lab in ../shared/interop/strongswan (its README lists
// charon's quirks: kernel-libipsec fakes a NAT, MOBIKE floats to 4500).
package swantest

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// CharonPath is where Debian installs charon.
const CharonPath = "/usr/lib/ipsec/charon"

// Timeout bounds every wait on charon (start, swanctl, Eventually).
const Timeout = 20 * time.Second

// Addresses of a Lab: the link 192.0.2.0/24 between the namespaces and an
// inner address on each side's loopback (kernel-libipsec routes a
// CHILD_SA's traffic from an address of its local traffic selector).
var (
	AddrR  = netip.MustParseAddr("192.0.2.1")
	AddrI  = netip.MustParseAddr("192.0.2.2")
	InnerR = netip.MustParsePrefix("10.99.1.0/24")
	InnerI = netip.MustParsePrefix("10.99.2.0/24")
)

// Require skips the test (fails it under MPSA_REQUIRE_ALL=1) unless it runs
// as root with charon and swanctl installed, and returns swanctl's path.
func Require(tb testing.TB) string {
	tb.Helper()
	testenv.Root(tb)
	testenv.Binary(tb, CharonPath, "apt-get install strongswan-charon libcharon-extra-plugins")
	return testenv.Binary(tb, "swanctl", "apt-get install strongswan-swanctl")
}

// Lab is two namespaces joined by a veth pair: R (AddrR on v-r, the first
// address of InnerR on lo) and I (AddrI on v-i, the first of InnerI).
type Lab struct {
	R, I *testenv.Netns
}

// NewLab builds a Lab; prefixR and prefixI start the namespaces' names.
// Everything is deleted when the test ends.
func NewLab(tb testing.TB, prefixR, prefixI string) *Lab {
	tb.Helper()
	r := testenv.NewNetns(tb, prefixR)
	i := testenv.NewNetns(tb, prefixI)
	testenv.Veth(tb, r, "v-r", i, "v-i")
	r.MustIP("addr", "add", netip.PrefixFrom(AddrR, 24).String(), "dev", "v-r")
	i.MustIP("addr", "add", netip.PrefixFrom(AddrI, 24).String(), "dev", "v-i")
	r.MustIP("addr", "add", netip.PrefixFrom(InnerR.Addr().Next(), 32).String(), "dev", "lo")
	i.MustIP("addr", "add", netip.PrefixFrom(InnerI.Addr().Next(), 32).String(), "dev", "lo")
	return &Lab{R: r, I: i}
}

// Config describes one charon instance.
type Config struct {
	// Name labels the instance (its directory and log lines).
	Name string
	// Swanctl is swanctl.conf: connections, pools, secrets.
	Swanctl string
	// Files are written below the instance's swanctl directory (mode
	// 0600), e.g. "x509ca/ca.pem", "x509/swan.pem", "pkcs8/swan.pem".
	Files map[string][]byte
	// Charon holds extra settings inside charon { } (retransmit_timeout,
	// fragment_size, ...).
	Charon string
	// Log sets filelog levels per subsystem besides default = 1, e.g.
	// {"ike": 4, "chd": 4} to have charon dump its keys.
	Log map[string]int
	// NoLoad leaves the configuration unloaded (no swanctl --load-all).
	NoLoad bool
}

// Charon is a running charon instance.
type Charon struct {
	tb      testing.TB
	name    string
	dir     string
	swanctl string
}

// Start runs charon in ns with c and waits until it answers on VICI;
// unless c.NoLoad it loads the configuration. The instance lives in the
// test's temporary directory and stops (SIGTERM, then SIGKILL after 10 s)
// when the test ends; if the test failed, the end of its log is printed.
func Start(tb testing.TB, ns *testenv.Netns, c Config) *Charon {
	tb.Helper()
	swanctl := Require(tb)
	if c.Name == "" {
		c.Name = "charon"
	}
	dir := filepath.Join(tb.TempDir(), c.Name)
	for _, d := range []string{"run", "swanctl/x509", "swanctl/x509ca", "swanctl/pkcs8"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	levels := "default = 1"
	for _, k := range slices.Sorted(maps.Keys(c.Log)) {
		levels += fmt.Sprintf("\n\t\t\t%s = %d", k, c.Log[k])
	}
	conf := fmt.Sprintf(`charon {
	load_modular = yes
	%[2]s
	plugins {
		include /etc/strongswan.d/charon/*.conf
		vici {
			load = yes
			socket = unix://%[1]s/charon.vici
		}
		stroke { load = no }
		resolve { load = no }
		kernel-libipsec { load = yes }
	}
	filelog {
		test {
			path = %[1]s/charon.log
			time_format = %%s
			ike_name = yes
			append = no
			flush_line = yes
			%[3]s
		}
	}
	syslog { daemon { default = -1 } }
}
swanctl { socket = unix://%[1]s/charon.vici }
`, dir, c.Charon, levels)
	write(tb, filepath.Join(dir, "strongswan.conf"), []byte(conf))
	write(tb, filepath.Join(dir, "swanctl", "swanctl.conf"), []byte(c.Swanctl))
	for name, b := range c.Files {
		write(tb, filepath.Join(dir, "swanctl", name), b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// charon's pid file is fixed (/var/run/charon.pid): a private /run.
	cmd := ns.Command(ctx, "unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$1/run" /run && exec env STRONGSWAN_CONF="$1/strongswan.conf" "$2"`, "charon", dir, CharonPath)
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		out.Close()
		tb.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); out.Close() }()
	ch := &Charon{tb: tb, name: c.Name, dir: dir, swanctl: swanctl}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		cancel()
		if tb.Failed() {
			tb.Logf("charon %s log (end):\n%s", c.Name, tail(ch.Log(), 6000))
		}
	})
	// The VICI socket appears once charon is ready.
	Eventually(tb, "charon "+c.Name+"'s VICI socket", func() bool {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "stdout.log"))
			tb.Fatalf("charon %s exited: %v\n%s", c.Name, err, b)
		default:
		}
		_, err := os.Stat(filepath.Join(dir, "charon.vici"))
		return err == nil
	})
	if !c.NoLoad {
		ch.MustSwanctl("--load-all", "--noprompt")
	}
	return ch
}

func write(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Dir is the instance's directory (strongswan.conf, swanctl/, charon.log).
func (c *Charon) Dir() string { return c.dir }

// LogPath is the path of charon's log file.
func (c *Charon) LogPath() string { return filepath.Join(c.dir, "charon.log") }

// Log returns charon's log so far.
func (c *Charon) Log() string {
	b, _ := os.ReadFile(c.LogPath())
	return string(b)
}

// Swanctl runs swanctl against the instance and returns its output.
func (c *Charon) Swanctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.swanctl, args...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+filepath.Join(c.dir, "strongswan.conf"), "SWANCTL_DIR="+filepath.Join(c.dir, "swanctl"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("swanctl %s (charon %s): %v\n%s", strings.Join(args, " "), c.name, err, out)
	}
	return string(out), nil
}

// MustSwanctl is Swanctl that fails the test on error.
func (c *Charon) MustSwanctl(args ...string) string {
	c.tb.Helper()
	out, err := c.Swanctl(args...)
	if err != nil {
		c.tb.Fatal(err)
	}
	return out
}

// ListSAs returns the IKE SAs charon holds (`swanctl --list-sas --raw`).
func (c *Charon) ListSAs() []SA {
	c.tb.Helper()
	return ParseListSAs(c.MustSwanctl("--list-sas", "--raw"))
}

// WaitNoSA waits until charon holds no IKE SA.
func (c *Charon) WaitNoSA() {
	c.tb.Helper()
	Eventually(c.tb, "charon "+c.name+" to hold no SA", func() bool { return len(c.ListSAs()) == 0 })
}

// Eventually polls cond, the state of an outside daemon that sends no
// event, every 20 ms until it holds, and fails the test after Timeout.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
