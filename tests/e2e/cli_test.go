package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/lab"
)

// TestCLI runs the main job as a user does: mpsa-lab up (here with two
// CPEs on an IPv6 underlay; TestThreeCPEs covers the IPv4 one), status
// from another "process" (the lab's state file), and down, which must
// leave nothing behind.
func TestCLI(t *testing.T) {
	testenv.Root(t)
	if err := lab.Check(); err != nil {
		testenv.Skip(t, err.Error())
	}
	hubBin, _ := binaries(t)
	name := fmt.Sprintf("c%d", os.Getpid()%100000)
	dir, err := os.MkdirTemp("", "mlab")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	t.Cleanup(func() { lab.Sweep(name, dir) })
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := lab.RunCLI(ctx, args, &out, &errOut)
		return code, out.String() + errOut.String()
	}

	code, out := run("up", "-name", name, "-dir", dir, "-cpes", "2", "-underlay", "v6", "-bin", filepath.Dir(hubBin), "-pings", "3")
	t.Logf("mpsa-lab up: exit %d\n%s", code, out)
	if code != 0 {
		t.Fatalf("mpsa-lab up failed")
	}
	for _, want := range []string{"IKE SAs at the hub", "group SA (MPSA) lab: epoch 1", "-> [2001:db8::2]", "v4 ok, v6 ok",
		"CPE-to-CPE traffic direct", "mpsa-lab down -name " + name + " -dir " + dir} {
		if !strings.Contains(out, want) {
			t.Errorf("mpsa-lab up output lacks %q", want)
		}
	}
	if code, out := run("up", "-name", name, "-dir", dir, "-bin", filepath.Dir(hubBin)); code == 0 || !strings.Contains(out, "is up") {
		t.Errorf("a second up of the same lab: exit %d: %s", code, out)
	}
	code, out = run("status", "-name", name, "-dir", dir)
	if code != 0 || !strings.Contains(out, "cpe2  fqdn:cpe2.lab") || strings.Contains(out, "not converged") {
		t.Errorf("mpsa-lab status: exit %d\n%s", code, out)
	}
	start := time.Now()
	code, out = run("down", "-name", name, "-dir", dir)
	if code != 0 {
		t.Errorf("mpsa-lab down: exit %d: %s", code, out)
	}
	t.Logf("down took %v", time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat(filepath.Join(dir, "lab.json")); !os.IsNotExist(err) {
		t.Errorf("lab directory left: %v", err)
	}
	l, _ := lab.Load(dir)
	if l != nil {
		t.Errorf("lab.json still loads")
	}
	if code, out := run("status", "-name", name, "-dir", dir); code == 0 || !strings.Contains(out, "no lab named") {
		t.Errorf("status after down: exit %d: %s", code, out)
	}
}
