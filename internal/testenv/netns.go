package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var nsCounter atomic.Uint32

// Netns is a network namespace made for one test and deleted by its cleanup.
type Netns struct {
	Name string
	tb   testing.TB
}

// NewNetns creates a fresh namespace with loopback up. Its name starts with
// prefix and is unique per process; the namespace is deleted, with every
// process still running in it killed, when the test ends.
func NewNetns(tb testing.TB, prefix string) *Netns {
	tb.Helper()
	Root(tb)
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		Skip(tb, "network namespaces unavailable: "+err.Error())
	}
	name := fmt.Sprintf("%s%d-%d", prefix, os.Getpid()%100000, nsCounter.Add(1))
	if len(name) > 15 {
		name = name[len(name)-15:]
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		Skip(tb, fmt.Sprintf("cannot create network namespace: %v: %s", err, out))
	}
	ns := &Netns{Name: name, tb: tb}
	tb.Cleanup(ns.delete)
	ns.MustIP("link", "set", "lo", "up")
	return ns
}

func (ns *Netns) delete() {
	// Kill what still runs inside, then remove the namespace.
	if out, err := exec.Command("ip", "netns", "pids", ns.Name).Output(); err == nil {
		for _, pid := range strings.Fields(string(out)) {
			exec.Command("kill", "-9", pid).Run()
		}
	}
	exec.Command("ip", "netns", "del", ns.Name).Run()
}

// IP runs `ip -n NS args...` and returns its combined output.
func (ns *Netns) IP(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip -n %s %s: %v: %s", ns.Name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// MustIP is IP that fails the test on error.
func (ns *Netns) MustIP(args ...string) string {
	ns.tb.Helper()
	out, err := ns.IP(args...)
	if err != nil {
		ns.tb.Fatal(err)
	}
	return out
}

// Command returns a command that runs inside the namespace.
func (ns *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output.
func (ns *Netns) Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var buf bytes.Buffer
	cmd := ns.Command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// Do runs f on an OS thread switched into the namespace, for code that opens
// sockets or devices there. Sockets keep their namespace after f returns.
func (ns *Netns) Do(f func() error) error {
	return DoInNetns(ns.Name, f)
}

// Veth joins two namespaces with a veth pair named a (in nsA) and b (in nsB),
// both up.
func Veth(tb testing.TB, nsA *Netns, a string, nsB *Netns, b string) {
	tb.Helper()
	tmpA := fmt.Sprintf("vt%da", nsCounter.Add(1))
	tmpB := tmpA[:len(tmpA)-1] + "b"
	run := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			tb.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
	run("link", "set", tmpA, "netns", nsA.Name)
	run("link", "set", tmpB, "netns", nsB.Name)
	nsA.MustIP("link", "set", tmpA, "name", a)
	nsB.MustIP("link", "set", tmpB, "name", b)
	nsA.MustIP("link", "set", a, "up")
	nsB.MustIP("link", "set", b, "up")
}
