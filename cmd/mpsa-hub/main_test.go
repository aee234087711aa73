package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/mpsa"
	"github.com/mpsa-vpn/mpsa/tests/vm/vmtest"
)

var binary string

// selfEnv makes the test binary run mpsa-hub's main instead of its tests:
// inside the VM of tests/vm there is no Go toolchain to build mpsa-hub, so
// the tests run their own binary as the daemon.
const selfEnv = "MPSA_HUB_TEST_AS_MAIN"

// TestMain builds mpsa-hub once (in the VM: uses itself as mpsa-hub); the
// tests run it as a process.
func TestMain(m *testing.M) {
	if os.Getenv(selfEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	if os.Getenv(vmtest.Env) == "1" {
		binary = os.Args[0]
		os.Setenv(selfEnv, "1") // for the children only: this process is past the check
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "mpsa-hub-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "mpsa-hub")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil && strings.Contains(string(out), "-buildvcs=false") {
		// A checkout git will not read for this user (another owner):
		// build without the VCS stamp.
		out, err = exec.Command("go", "build", "-buildvcs=false", "-o", binary, ".").CombinedOutput()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const waitOK = 20 * time.Second

// hubYAML is a configuration with one group and the CPEs named.
func hubYAML(dir string, extra string, cpes ...string) string {
	return hubYAMLAt("127.0.0.1", dir, extra, cpes...)
}

func hubYAMLAt(listen, dir string, extra string, cpes ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `ike:
  listen: [%s]
identity: fqdn:hub.example.net
groups:
  - name: acme
    lifetime: 1h
    rekey_margin: 5m
    roll1: 10s
    roll2: 30s
    pool: {ipv4: 100.64.0.0/24}
bgp:
  router_id: 192.0.2.1
  grpc_listen: 127.0.0.1:50051
dataplane:
  backend: userspace
state_dir: %s/state
status:
  socket: %s/hub.sock
metrics:
  listen: 127.0.0.1:9470
log:
  level: debug
%s
cpes:
`, listen, dir, dir, extra)
	for i, c := range cpes {
		fmt.Fprintf(&b, "  - {identity: \"fqdn:%s\", group: acme, psk: %q, prefixes: [10.%d.0.0/24]}\n", c, psk(c), i+1)
	}
	return b.String()
}

func psk(cpe string) string { return "secret of " + cpe + " 0123456789" }

func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func runBinary(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestVersion(t *testing.T) {
	out, _, code := runBinary(t, "-version")
	if code != 0 || !strings.HasPrefix(out, "mpsa-hub ") || !strings.Contains(out, "go1.") {
		t.Errorf("-version: %d %q", code, out)
	}
}

// TestConfigCheck: -test reports every bad field by its path and exits
// non-zero; a good file passes.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeConfig(t, good, hubYAML(dir, "", "cpe1.acme.example"))
	out, errOut, code := runBinary(t, "-test", "-config", good)
	if code != 0 || !strings.Contains(out, "configuration OK") {
		t.Errorf("good config: code %d\n%s%s", code, out, errOut)
	}

	bad := filepath.Join(dir, "bad.yaml")
	text := strings.Replace(hubYAML(dir, "", "cpe1.acme.example"), "lifetime: 1h", "lifetime: 5s", 1)
	text = strings.Replace(text, "router_id: 192.0.2.1", "router_id: not-an-address\n  rooter: x", 1)
	writeConfig(t, bad, text)
	_, errOut, code = runBinary(t, "-test", "-config", bad)
	if code == 0 {
		t.Fatal("bad config passed -test")
	}
	for _, want := range []string{"groups[0].lifetime", `"5s"`, "bgp.router_id", "bgp.rooter"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("-test output lacks %q:\n%s", want, errOut)
		}
	}
	// A flag overrides the file.
	_, errOut, code = runBinary(t, "-test", "-config", good, "--bgp.router_id=nope")
	if code == 0 || !strings.Contains(errOut, "bgp.router_id") {
		t.Errorf("flag override: code %d %s", code, errOut)
	}
	// A world-readable file with PSKs is refused.
	if err := os.Chmod(good, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code = runBinary(t, "-test", "-config", good); code == 0 {
		t.Errorf("world-readable file with PSKs accepted: %s", errOut)
	}
}

// daemon is mpsa-hub running in a network namespace of its own.
type daemon struct {
	t     *testing.T
	ns    *testenv.Netns
	cmd   *exec.Cmd
	lines chan string
	log   strings.Builder
	exit  chan error
}

func startDaemon(t *testing.T, ns *testenv.Netns, cfg string) *daemon {
	d := &daemon{t: t, ns: ns, lines: make(chan string, 1024), exit: make(chan error, 1)}
	d.cmd = ns.Command(context.Background(), binary, "-config", cfg)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			d.lines <- s.Text()
		}
		close(d.lines)
		d.exit <- d.cmd.Wait()
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		for range d.lines {
		}
	})
	return d
}

// waitLog waits for a log line holding every one of parts.
func (d *daemon) waitLog(parts ...string) string {
	d.t.Helper()
	deadline := time.After(waitOK)
	for {
		select {
		case line, ok := <-d.lines:
			if !ok {
				d.t.Fatalf("mpsa-hub exited while waiting for %q:\n%s", parts, d.log.String())
			}
			d.log.WriteString(line + "\n")
			match := true
			for _, p := range parts {
				match = match && strings.Contains(line, p)
			}
			if match {
				return line
			}
		case <-deadline:
			d.t.Fatalf("no log line with %q:\n%s", parts, d.log.String())
		}
	}
}

func (d *daemon) status(socket string, view ...string) string {
	d.t.Helper()
	out, errOut, code := runBinary(d.t, append([]string{"status", "-socket", socket}, view...)...)
	if code != 0 {
		d.t.Fatalf("status %v: %d %s", view, code, errOut)
	}
	return out
}

// TestDaemon runs mpsa-hub as a process with the userspace data plane in a
// namespace: it starts, puts its overlay address on its TUN, answers
// status, serves metrics, takes a CPE, rekeys its group on `mpsa-hub rekey`,
// reloads on SIGHUP (and keeps running on a bad file) and stops on SIGTERM,
// deleting the CPE's IKE SA.
func TestDaemon(t *testing.T) {
	testenv.Root(t)
	ns := testenv.NewNetns(t, "hubd")
	dir, err := os.MkdirTemp("", "hubd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "hub.yaml")
	sock := filepath.Join(dir, "hub.sock")
	writeConfig(t, cfg, hubYAML(dir, "", "cpe1.acme.example"))
	d := startDaemon(t, ns, cfg)
	d.waitLog("hub ready")

	if out := ns.MustIP("-4", "addr", "show", "dev", "mpsa0"); !strings.Contains(out, "100.64.0.1/24") {
		t.Errorf("hub overlay address not on mpsa0:\n%s", out)
	}
	if out := d.status(sock, "cpes"); !strings.Contains(out, "fqdn:cpe1.acme.example") || !strings.Contains(out, "DOWN") {
		t.Errorf("status cpes:\n%s", out)
	}

	// A CPE in the namespace connects and receives its group SA.
	puts := make(chan error, 8)
	m := newCPE(t, ns, "fqdn:cpe1.acme.example", puts, "127.0.0.2:0", nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitOK)
	defer cancel()
	sa, err := m.Initiate(ctx, ike.Connection{Remote: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:500")},
		RemoteID: auth.MustParseID("fqdn:hub.example.net"), VirtualIPs: []netip.Addr{netip.IPv4Unspecified()}})
	if err != nil {
		t.Fatalf("CPE: %v\n%s", err, d.log.String())
	}
	select {
	case err := <-puts:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitOK):
		t.Fatal("no MPSA_PUT")
	}
	d.waitLog("CPE connected", "id=fqdn:cpe1.acme.example")
	if out := d.status(sock, "sas"); !strings.Contains(out, "fqdn:cpe1.acme.example: ESTABLISHED") || !strings.Contains(out, "remote 100.64.0.2/32") {
		t.Errorf("status sas:\n%s", out)
	}
	if out := d.status(sock, "-json", "groups"); !strings.Contains(out, `"connected":1`) {
		t.Errorf("status -json groups: %s", out)
	}
	metrics := scrape(t, ns, "127.0.0.1:9470")
	for _, want := range []string{`mpsa_hub_ike_sas{state="established"} 1`, `mpsa_hub_mpsa_put_ack_seconds_count 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// The operator rolls the group over: the CPE receives the next SA.
	if out, errOut, code := runBinary(t, "rekey", "-socket", sock, "acme"); code != 0 || !strings.Contains(out, "acme: epoch 2, esp_spi ") {
		t.Errorf("rekey acme: %d %s%s", code, out, errOut)
	}
	select {
	case err := <-puts:
		if err != nil {
			t.Fatalf("MPSA_PUT of the operator's rekey: %v", err)
		}
	case <-time.After(waitOK):
		t.Fatal("no MPSA_PUT after rekey")
	}
	d.waitLog("group SA generated", "group=acme", "epoch=2", "operator request")
	if _, errOut, code := runBinary(t, "rekey", "-socket", sock, "nope"); code != 1 || !strings.Contains(errOut, `no group "nope"`) {
		t.Errorf("rekey of an unknown group: %d %s", code, errOut)
	}

	// SIGHUP with a CPE added.
	writeConfig(t, cfg, hubYAML(dir, "", "cpe1.acme.example", "cpe2.acme.example"))
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog("configuration reloaded", "CPEs added: fqdn:cpe2.acme.example")
	if out := d.status(sock, "cpes"); !strings.Contains(out, "fqdn:cpe2.acme.example") {
		t.Errorf("status cpes after reload:\n%s", out)
	}
	// SIGHUP with a bad file: reported, the running configuration stays.
	writeConfig(t, cfg, strings.Replace(hubYAML(dir, "", "cpe1.acme.example"), "lifetime: 1h", "lifetime: 5s", 1))
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog("configuration not reloaded, keeping the running one", "groups[0].lifetime")
	if out := d.status(sock, "cpes"); !strings.Contains(out, "fqdn:cpe2.acme.example") {
		t.Errorf("status cpes after a bad reload:\n%s", out)
	}
	if sa.Info().State != ike.StateEstablished {
		t.Error("the CPE's IKE SA suffered from the reloads")
	}

	// SIGTERM: the hub deletes the CPE's IKE SA and exits cleanly.
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-sa.Done():
	case <-time.After(waitOK):
		t.Error("the CPE's IKE SA was not deleted on shutdown")
	}
	d.waitLog("hub stopped")
	for range d.lines {
	}
	if err := <-d.exit; err != nil {
		t.Errorf("mpsa-hub exit: %v", err)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("status socket left behind")
	}
}

// newCPE is a minimal CPE in ns: an IKE initiator with MPSA that checks
// each MPSA_PUT it receives.
func newCPE(t *testing.T, ns *testenv.Netns, id string, puts chan error, local string, events func(ike.Event)) *ike.Manager {
	member, err := mpsa.NewMember(mpsa.MemberConfig{Tunnel: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(member.Close)
	m, err := ike.New(ike.Config{
		Local: auth.Local{ID: auth.MustParseID(id), PSK: []byte(psk(strings.TrimPrefix(id, "fqdn:")))},
		Peers: auth.Static(auth.Rule{Pattern: auth.MustParsePattern("fqdn:hub.example.net"),
			Peer: &auth.Peer{PSK: []byte(psk(strings.TrimPrefix(id, "fqdn:")))}}),
		Policy: ike.Policy{
			VendorIDs:    mpsa.VendorIDs(),
			AuthNotifies: func(ike.PeerInfo, []*wire.Notify) []*wire.Notify { return ops.WireNotifies(mpsa.CPEAuthNotifies()) },
			Informational: func(sa *ike.SA, ns []*wire.Notify) {
				for _, n := range ops.MPSANotifies(ns) {
					if n.Type == mpsa.NotifyPut {
						_, err := member.Handle(n, time.Now())
						mpsa.WipeSAs(member.SAs())
						puts <- err
					}
				}
			},
		},
		MOBIKE: true,
		Events: func(ev ike.Event) {
			if events != nil {
				events(ev)
			}
			if ev.Child != nil {
				ev.Child.In.Wipe()
				ev.Child.Out.Wipe()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	err = ns.Do(func() error {
		for _, natt := range []bool{false, true} {
			c, err := ike.ListenUDP("udp4", netip.MustParseAddrPort(local))
			if err != nil {
				return err
			}
			m.AddConn(c, natt)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// scrape fetches /metrics from inside the namespace.
func scrape(t *testing.T, ns *testenv.Netns, addr string) string {
	t.Helper()
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return conn, nil
	}}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
