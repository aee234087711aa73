// Package peertest runs foreign BGP speakers (stock gobgpd, BIRD 2, FRR's
// bgpd) for interoperability tests. Each runs in the foreground from a
// configuration written into the test's temporary directory and is killed
// when the test ends.
//
// A daemon runs only in a network namespace of the test's own: the one
// passed (the test then opens its own sockets there with Netns.Do), or, with
// none passed, the one the whole test process was moved into by
// testenv.RunInNetns. Its ports are therefore fixed ones (179), which no
// test of another package running at the same time can take from it.
package peertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// Proc is a daemon started by a test.
type Proc struct {
	Dir  string // its working directory (configuration, sockets)
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

type lockedWriter struct{ p *Proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// Start runs bin with args in dir inside ns and kills it (by its PID) when
// the test ends. Its output is kept for Output. A nil ns is this process's
// namespace, allowed only in a test moved by testenv.RunInNetns.
func Start(tb testing.TB, ns *testenv.Netns, dir, bin string, args ...string) *Proc {
	tb.Helper()
	p := &Proc{Dir: dir, done: make(chan struct{})}
	switch {
	case ns != nil:
		// ip netns exec executes bin in its own place: the PID is bin's.
		p.cmd = ns.Command(context.Background(), bin, args...)
	case testenv.InTestNetns():
		p.cmd = exec.Command(bin, args...)
	default:
		tb.Fatalf("peertest: %s must run in a namespace of the test's own (pass one, or call testenv.RunInNetns first)", filepath.Base(bin))
	}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tb.Logf("%s output:\n%s", filepath.Base(bin), p.Output())
		}
	})
	return p
}

// Kill ends the daemon at once (SIGKILL: no NOTIFICATION leaves it) and
// waits for it.
func (p *Proc) Kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
	<-p.done
}

// Exited reports whether the daemon has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output returns what the daemon wrote so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func write(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Gobgpd starts the stock gobgpd (Debian package gobgpd) in ns with a TOML
// configuration; grpcPort is where its API listens on 127.0.0.1.
func Gobgpd(tb testing.TB, ns *testenv.Netns, config string, grpcPort int) *Proc {
	tb.Helper()
	bin := testenv.Binary(tb, "gobgpd", "apt-get install gobgpd")
	dir := tb.TempDir()
	cfg := write(tb, dir, "gobgpd.toml", config)
	return Start(tb, ns, dir, bin, "-f", cfg, "-t", "toml", "-l", "info", "-p",
		"--api-hosts", fmt.Sprintf("127.0.0.1:%d", grpcPort), "--pprof-disable")
}

// Bird starts BIRD 2 in ns with the given configuration; Birdc talks to it
// (over its control socket, from any namespace).
func Bird(tb testing.TB, ns *testenv.Netns, config string) *Proc {
	tb.Helper()
	bin := testenv.Binary(tb, "bird", "apt-get install bird2")
	testenv.Binary(tb, "birdc", "apt-get install bird2")
	dir := tb.TempDir()
	cfg := write(tb, dir, "bird.conf", "log stderr { info, remote, warning, error, auth, fatal, bug };\n"+config)
	return Start(tb, ns, dir, bin, "-f", "-c", cfg, "-s", filepath.Join(dir, "bird.ctl"), "-P", filepath.Join(dir, "bird.pid"))
}

// Birdc runs a birdc command against a BIRD started by Bird.
func (p *Proc) Birdc(tb testing.TB, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "birdc", append([]string{"-s", filepath.Join(p.Dir, "bird.ctl")}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("birdc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// FRR starts FRR's bgpd alone (no zebra) in ns with the given
// configuration, listening on 127.0.0.1:port (none if 0); Vtysh talks to it
// (over its vty socket, from any namespace).
func FRR(tb testing.TB, ns *testenv.Netns, config string, port int) *Proc {
	tb.Helper()
	bin := testenv.Binary(tb, "/usr/lib/frr/bgpd", "apt-get install frr")
	testenv.Binary(tb, "vtysh", "apt-get install frr")
	dir := tb.TempDir()
	cfg := write(tb, dir, "bgpd.conf", config)
	args := []string{"-Z", "-f", cfg, "-i", filepath.Join(dir, "bgpd.pid"), "--vty_socket", dir,
		"-p", fmt.Sprint(port), "-l", "127.0.0.1", "-P", "0", "-n"}
	if os.Geteuid() == 0 {
		args = append(args, "-S", "-u", "root", "-g", "root")
	}
	return Start(tb, ns, dir, bin, args...)
}

// Vtysh runs a vtysh command against an FRR started by FRR.
func (p *Proc) Vtysh(tb testing.TB, command string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "vtysh", "--vty_socket", p.Dir, "-d", "bgpd", "-c", command)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("vtysh -c %q: %v\n%s", command, err, out)
	}
	return string(out)
}
