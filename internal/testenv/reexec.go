package testenv

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NetnsEnv is set by RunInNetns for the child it starts: "NS/TestName",
// the namespace the child runs in and the one test it runs.
const NetnsEnv = "MPSA_TEST_NETNS"

// RunInNetns runs the calling test again, alone, in a child process of the
// test binary that starts inside a fresh namespace (NewNetns). Everything the
// test binds then lives where no other test can take a port between choosing
// it and binding it: the daemons the test starts, and in-process servers that
// open their sockets on goroutines of their own, out of reach of Netns.Do (an
// embedded GoBGP listens from its Serve loop). Use Netns.Do instead where the
// test opens every socket itself.
//
// In the calling process RunInNetns waits for the child, logs its output and
// ends the test as the child ended it (pass, skip or fail), and returns true:
// the test must return at once. In the child it checks that it really runs
// in that namespace and returns false: the test proceeds. The namespace, with
// anything still running in it, is deleted when the test ends.
//
//	if testenv.RunInNetns(t) {
//		return
//	}
func RunInNetns(t *testing.T) bool {
	t.Helper()
	if v, ok := os.LookupEnv(NetnsEnv); ok {
		name, test, _ := strings.Cut(v, "/")
		if test != t.Name() {
			t.Fatalf("%s=%s: this is test %s", NetnsEnv, v, t.Name())
		}
		if err := inNetns(name); err != nil {
			t.Fatalf("%s=%s: %v", NetnsEnv, v, err)
		}
		return false
	}
	ns := NewNetns(t, "tn")
	var run []string
	for _, part := range strings.Split(t.Name(), "/") {
		run = append(run, "^"+regexp.QuoteMeta(part)+"$")
	}
	args := []string{"-test.run=" + strings.Join(run, "/"), "-test.count=1", "-test.v=true"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		// The child's own timeout comes first, so that its goroutine dump
		// reaches this test's log.
		left := time.Until(d)
		args = append(args, "-test.timeout="+(left*8/10).String())
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-left/10))
		defer cancel()
	}
	cmd := ns.Command(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), NetnsEnv+"="+ns.Name+"/"+t.Name())
	cmd.WaitDelay = 10 * time.Second
	// The child, and through their own Pdeathsig its daemons, dies with
	// this process even when it is killed outright (ip netns exec execs
	// the test binary in its own place, which keeps the signal).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	log := childLog(out)
	if log != "" {
		log = ":\n" + log
	}
	result := func(s string) bool { return strings.Contains(string(out), "--- "+s+": "+t.Name()+" (") }
	switch {
	case err == nil && result("PASS"):
		t.Logf("ran in namespace %s%s", ns.Name, log)
	case err == nil && result("SKIP"):
		t.Skipf("skipped in namespace %s%s", ns.Name, log)
	default:
		t.Fatalf("in namespace %s: %v%s", ns.Name, err, log)
	}
	return true
}

// inNetns reports an error unless this process's network namespace is the
// one named.
func inNetns(name string) error {
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return err
	}
	want, err := os.Stat("/run/netns/" + name)
	if err != nil {
		return err
	}
	if !os.SameFile(self, want) {
		return fmt.Errorf("process is not in network namespace %s", name)
	}
	return nil
}

// InTestNetns reports whether this process is a child started by RunInNetns
// and runs in the namespace made for it.
func InTestNetns() bool {
	v, ok := os.LookupEnv(NetnsEnv)
	if !ok {
		return false
	}
	name, _, _ := strings.Cut(v, "/")
	return inNetns(name) == nil
}

// childLog is the child's output without the test framework's own lines
// (=== RUN, --- PASS and the like), which would read as results of subtests
// in this test's log.
func childLog(out []byte) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(string(out), "\n") {
		s := strings.TrimSpace(l)
		if s == "PASS" || s == "FAIL" || strings.HasPrefix(s, "=== ") || strings.HasPrefix(s, "--- ") {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}
