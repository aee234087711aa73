package testenv

import (
	"net"
	"os"
	"testing"
)

// TestRunInNetns: the child runs in a namespace of its own, where a port
// the parent holds on loopback is free.
func TestRunInNetns(t *testing.T) {
	const portEnv = "MPSA_TESTENV_HELD"
	if os.Getenv(NetnsEnv) == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		t.Setenv(portEnv, l.Addr().String())
	}
	if RunInNetns(t) {
		return
	}
	if !InTestNetns() {
		t.Fatal("InTestNetns false in the child")
	}
	l, err := net.Listen("tcp", os.Getenv(portEnv))
	if err != nil {
		t.Fatalf("port held by the parent is taken in the child: %v", err)
	}
	l.Close()
}

func TestChildLog(t *testing.T) {
	out := "=== RUN   TestX\n    x_test.go:9: hello\n--- PASS: TestX (0.01s)\nPASS\n"
	if got := childLog([]byte(out)); got != "    x_test.go:9: hello\n" {
		t.Errorf("childLog = %q", got)
	}
	if InTestNetns() {
		t.Error("InTestNetns outside a child")
	}
}
