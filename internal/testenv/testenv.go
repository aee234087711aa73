// Package testenv lets tests ask for what they need from the machine (root,
// network namespaces, an installed peer such as charon or bird) and skip,
// saying why, when it is missing. With MPSA_REQUIRE_ALL=1 (set by .ci/run) a
// missing requirement fails the test instead, so CI can never pass by
// skipping.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireAllEnv is the environment variable that turns skips into failures.
const RequireAllEnv = "MPSA_REQUIRE_ALL"

// RequireAll reports whether skipping is forbidden in this run.
func RequireAll() bool { return os.Getenv(RequireAllEnv) == "1" }

// Skip skips the test with the reason, or fails it when RequireAll.
func Skip(tb testing.TB, reason string) {
	tb.Helper()
	if RequireAll() {
		tb.Fatalf("%s=1 forbids skipping: %s", RequireAllEnv, reason)
	}
	tb.Skip(reason)
}

// Root skips unless the test runs as root.
func Root(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Skip(tb, "needs root (network namespaces, TUN, raw sockets)")
	}
}

// Binary skips unless name is on PATH (or is an absolute path that exists)
// and returns its path. hint says how to install it.
func Binary(tb testing.TB, name, hint string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	Skip(tb, name+" not installed ("+hint+")")
	return ""
}

// Short skips long-running tests under -short, unless RequireAll.
func Short(tb testing.TB) {
	tb.Helper()
	if testing.Short() && !RequireAll() {
		tb.Skip("long test; skipped with -short")
	}
}
