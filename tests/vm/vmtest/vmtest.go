// Package vmtest lets a Go test run test binaries inside the project's QEMU
// guest (tests/vm): Debian's own kernel, booted with an initramfs that holds
// the static test binaries, for tests that need kernel features the host
// lacks (ESP). Inside the guest, Env is "1".
package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// Env is set to "1" inside the guest.
const Env = "MPSA_VM"

// Options says what to run in the guest.
type Options struct {
	// Packages are the packages whose test binaries run, as paths from
	// the module root ("./dataplane/xfrm").
	Packages []string
	// Run is the -test.run pattern for every binary (no spaces); empty
	// runs every test.
	Run string
}

// Run builds the test binaries, boots the guest and fails t unless every
// test passed in it. It skips (or fails, with MPSA_REQUIRE_ALL=1) when QEMU,
// a Debian kernel image or busybox-static is missing.
func Run(t testing.TB, opts Options) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	testenv.Binary(t, "qemu-system-x86_64", "apt-get install qemu-system-x86")
	testenv.Binary(t, "cpio", "apt-get install cpio")
	testenv.Binary(t, "depmod", "apt-get install kmod")
	testenv.Binary(t, "python3", "apt-get install python3")
	script := filepath.Join(root, "tests", "vm", "run.sh")
	if err := exec.Command(filepath.Join(root, "tests", "vm", "kver.sh")).Run(); err != nil {
		testenv.Skip(t, "no Debian kernel image with modules (apt-get install linux-image-amd64)")
	}
	if out, err := exec.Command("/bin/busybox", "--list").Output(); err != nil || !bytes.Contains(out, []byte("\nip\n")) {
		testenv.Skip(t, "no busybox-static (apt-get install busybox-static)")
	}

	timeout := 15 * time.Minute
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			timeout = min(timeout, time.Until(dl)-30*time.Second)
		}
	}
	if timeout < time.Minute {
		t.Fatalf("not enough time left to boot the VM (%v)", timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	args := []string{script, "-q", "-t", fmt.Sprint(int(timeout.Seconds())), "-p", strings.Join(opts.Packages, " ")}
	if opts.Run != "" {
		args = append(args, "-r", opts.Run)
	}
	cmd := exec.CommandContext(ctx, "bash", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("tests failed in the VM (%v):\n%s", err, tail(out, 200))
		}
		t.Fatalf("running %s: %v\n%s", script, err, tail(out, 50))
	}
	t.Logf("VM run:\n%s", tail(out, 60))
}

// moduleRoot finds the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("vmtest: no go.mod above the working directory")
		}
		dir = parent
	}
}

func tail(b []byte, lines int) string {
	s := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(s) > lines {
		s = append([]string{fmt.Sprintf("[... %d lines]", len(s)-lines)}, s[len(s)-lines:]...)
	}
	return strings.Join(s, "\n")
}
