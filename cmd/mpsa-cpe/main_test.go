package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/cpe"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// binary is mpsa-cpe built once for the process tests, stamped like
// firmware/ stamps it.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mpsa-cpe-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "mpsa-cpe")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version=1.2.3-test -X main.commit=0123456789ab", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs the binary and returns its exit code, stdout and stderr.
func runBin(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "MPSA_LOG_LEVEL=") // no environment overrides
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runBin(t, "-version")
	if code != 0 || !strings.HasPrefix(out, "mpsa-cpe 1.2.3-test (0123456789ab) go") {
		t.Errorf("exit %d, output %q", code, out)
	}
}

const goodConfig = `hubs: [192.0.2.254, "2001:db8::fe"]
hub_identity: fqdn:hub.example.net
identity: fqdn:cpe1.example.net
credentials:
  psk: "a pre-shared key long enough"
lan:
  prefixes: [10.1.0.0/24]
wan:
  interface: eth0
reconnect:
  min: 200ms
  max: 2s
status:
  socket: %s
log:
  level: debug
`

func writeConfig(t *testing.T, dir, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, "cpe.yaml")
	if err := os.WriteFile(p, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigCheck: -test accepts a good configuration and refuses bad
// ones with a message naming the field and what was expected, as the
// OpenWrt init script shows them.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "cpe.sock")
	good := fmt.Sprintf(goodConfig, sock)
	code, out, errOut := runBin(t, "-test", "-config", writeConfig(t, dir, good, 0o600))
	if code != 0 || !strings.Contains(out, "configuration OK") {
		t.Fatalf("good config: exit %d\n%s%s", code, out, errOut)
	}
	for _, c := range []struct {
		name, config string
		mode         os.FileMode
		want         []string
	}{
		{"no hubs", strings.Replace(good, "hubs: [192.0.2.254, \"2001:db8::fe\"]\n", "", 1), 0o600,
			[]string{"hubs: expected at least one hub address"}},
		{"bad prefix", strings.Replace(good, "10.1.0.0/24", "10.1.0.1/24", 1), 0o600,
			[]string{"lan.prefixes[0]", "host bits zero"}},
		{"short PSK", strings.Replace(good, "a pre-shared key long enough", "short", 1), 0o600,
			[]string{"credentials.psk"}},
		{"bad duration", strings.Replace(good, "min: 200ms", "min: soon", 1), 0o600,
			[]string{"reconnect.min"}},
		{"PSK readable by others", good, 0o644, []string{"not readable by others"}},
		{"two problems at once", strings.Replace(strings.Replace(good, "level: debug", "level: loud", 1), "interface: eth0", "interface: a/b", 1), 0o600,
			[]string{"log.level", "wan.interface"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := t.TempDir()
			code, out, errOut := runBin(t, "-test", "-config", writeConfig(t, d, c.config, c.mode))
			if code == 0 {
				t.Fatalf("accepted:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("message lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
	// An unknown key is a warning, not an error.
	code, _, errOut = runBin(t, "-test", "-config", writeConfig(t, t.TempDir(), good+"colour: blue\n", 0o600))
	if code != 0 || !strings.Contains(errOut, "colour") {
		t.Errorf("unknown key: exit %d, stderr %q", code, errOut)
	}
	// A missing file.
	if code, _, errOut := runBin(t, "-test", "-config", filepath.Join(dir, "nope.yaml")); code == 0 || errOut == "" {
		t.Errorf("missing file: exit %d %q", code, errOut)
	}
	// Flags override the file, with the same checks.
	if code, _, errOut := runBin(t, "-test", "-config", writeConfig(t, t.TempDir(), good, 0o600), "-bgp.asn", "23456"); code == 0 || !strings.Contains(errOut, "bgp.asn") {
		t.Errorf("-bgp.asn 23456: exit %d %q", code, errOut)
	}
}

// TestDaemon runs mpsa-cpe in a namespace with no hub to reach: it starts,
// answers status queries, reloads on SIGHUP (a bad file keeps the running
// configuration), and on SIGTERM removes what it installed and exits 0.
func TestDaemon(t *testing.T) {
	testenv.Root(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Skip(t, "no /dev/net/tun")
	}
	ns := testenv.NewNetns(t, "cpebin")
	ns.MustIP("link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	ns.MustIP("link", "set", "eth0", "up")
	ns.MustIP("addr", "add", "192.0.2.1/24", "dev", "eth0")
	dir, err := os.MkdirTemp("", "cpebin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "cpe.sock")
	conf := writeConfig(t, dir, fmt.Sprintf(goodConfig, sock), 0o600)

	var logs syncBuffer
	cmd := ns.Command(context.Background(), binary, "-config", conf)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("daemon output:\n%s", logs.String())
		}
	})

	// The status socket answers once the daemon runs; the CPE keeps
	// trying the unreachable hub.
	logs.waitLog(t, "msg=started", 1)
	bgp := bgpView(t, sock)
	if !slices.Equal(prefixStrings(bgp.Prefixes), []string{"10.1.0.0/24"}) {
		t.Errorf("prefixes %v", bgp.Prefixes)
	}
	resp, err := ops.Query(ctxT(t), sock, ops.Request{Command: "sas"})
	if err != nil || !strings.HasPrefix(resp.Text, "hub: ") {
		t.Errorf("status sas: %v %+v", err, resp)
	}
	// The status subcommand, socket named before or after it.
	for _, args := range [][]string{{"-socket", sock, "status", "sas"}, {"status", "-socket", sock, "sas"},
		{"status", "-socket", sock, "-json", "bgp"}} {
		code, out, errOut := runBin(t, args...)
		if code != 0 || !(strings.HasPrefix(out, "hub: ") || strings.Contains(out, `"prefixes"`)) {
			t.Errorf("mpsa-cpe %v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	if out, _ := ns.Run("ip", "link", "show", "mpsa0"); !strings.Contains(out, "mpsa0") {
		t.Errorf("no TUN device: %s", out)
	}

	// SIGHUP with new LAN prefixes: applied.
	writeConfig(t, dir, strings.Replace(fmt.Sprintf(goodConfig, sock), "[10.1.0.0/24]", "[10.1.0.0/24, 10.9.0.0/16]", 1), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	logs.waitLog(t, "configuration reloaded", 1)
	if b := bgpView(t, sock); len(b.Prefixes) != 2 {
		t.Errorf("after the reload: prefixes %v", b.Prefixes)
	}

	// SIGHUP with a bad file: refused, the running configuration stays.
	writeConfig(t, dir, strings.Replace(fmt.Sprintf(goodConfig, sock), "[10.1.0.0/24]", "[10.1.0.1/24]", 1), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	logs.waitLog(t, "keeping the running one", 1)
	if !strings.Contains(logs.String(), "lan.prefixes[0]") {
		t.Error("the refusal does not name the bad field")
	}
	if b := bgpView(t, sock); len(b.Prefixes) != 2 {
		t.Errorf("a bad reload changed the prefixes to %v", b.Prefixes)
	}

	// SIGTERM: a clean exit that removes the socket and the TUN.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("status socket left behind: %v", err)
	}
	if out, err := ns.Run("ip", "link", "show", "mpsa0"); err == nil {
		t.Errorf("TUN left behind: %s", out)
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "a pre-shared key long enough") {
			t.Errorf("the PSK was logged: %s", l)
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// bgpView reads the bgp view from the status socket.
func bgpView(t *testing.T, sock string) *cpe.BGPStatus {
	t.Helper()
	var st overview
	resp, err := ops.Query(ctxT(t), sock, ops.Request{Command: "bgp", Format: ops.FormatJSON})
	if err == nil {
		err = json.Unmarshal(resp.Data, &st)
	}
	if err != nil {
		t.Fatalf("bgp view: %v", err)
	}
	return &st.BGP
}

// syncBuffer collects a process's output and tells waiters about each
// write.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wrote != nil {
		close(s.wrote)
		s.wrote = nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLog waits until the output holds n lines containing sub.
func (s *syncBuffer) waitLog(t *testing.T, sub string, n int) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if strings.Count(s.b.String(), sub) >= n {
			s.mu.Unlock()
			return
		}
		if s.wrote == nil {
			s.wrote = make(chan struct{})
		}
		ch := s.wrote
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("no %d log lines with %q in:\n%s", n, sub, s.String())
		}
	}
}

type overview struct {
	BGP cpe.BGPStatus `json:"bgp"`
}

func prefixStrings[T fmt.Stringer](ps []T) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}
