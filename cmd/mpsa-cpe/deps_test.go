package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// forbidden are packages that must never be linked into mpsa-cpe, with
// why (Tailscale's deptest idea). The CPE's budget is 6 MiB stripped on
// linux/mipsle (issue 7, firmware.SizeBudget); docs/BENCHMARKS.md, "cpe",
// has what each costs.
var forbidden = map[string]string{
	"github.com/osrg/gobgp/v3/pkg/server":         "GoBGP's daemon: the CPE speaker uses only pkg/packet/bgp",
	"github.com/osrg/gobgp/v3/api":                "GoBGP's gRPC API types",
	"google.golang.org/grpc":                      "gRPC",
	"google.golang.org/protobuf":                  "protobuf (GoBGP's API)",
	"github.com/spf13/viper":                      "Viper: the CPE loads its configuration with configs/liteconf",
	"github.com/spf13/pflag":                      "Viper's flags",
	"github.com/prometheus/client_golang":         "the Prometheus client (4.6 MB on mipsle): the CPE writes the text format itself",
	"github.com/prometheus/client_model":          "the Prometheus client's model",
	"net/http":                                    "net/http (2.0 MB on mipsle): the metrics endpoint speaks the little HTTP it needs",
	"text/template":                               "templates keep every exported method reachable (no dead code elimination)",
	"html/template":                               "templates keep every exported method reachable (no dead code elimination)",
	"github.com/sirupsen/logrus":                  "GoBGP's logger",
	"github.com/osrg/gobgp/v3/internal/pkg/table": "GoBGP's RIB",
}

// TestDeps fails when a forbidden package enters mpsa-cpe's import graph,
// for the CPE targets' GOOS/GOARCH and with the build tags firmware uses.
func TestDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command") // the go tool runs the test: cannot happen under go test
	}
	for _, target := range [][2]string{{"linux", "mipsle"}, {"linux", "arm"}, {"linux", "amd64"}} {
		cmd := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}}", ".")
		cmd.Env = append(os.Environ(), "GOOS="+target[0], "GOARCH="+target[1], "CGO_ENABLED=0", "GOMIPS=softfloat")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s/%s: go list: %v\n%s", target[0], target[1], err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 50 {
			t.Fatalf("%s/%s: only %d dependencies listed: %q", target[0], target[1], len(deps), out)
		}
		for _, d := range deps {
			for bad, why := range forbidden {
				if d == bad || strings.HasPrefix(d, bad+"/") {
					t.Errorf("%s/%s: mpsa-cpe imports %s: %s", target[0], target[1], d, why)
				}
			}
		}
	}
}

// TestDepsCatches makes sure the check can fail: a package that imports a
// forbidden one is reported.
func TestDepsCatches(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "net/http/httptest").Output()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range strings.Fields(string(out)) {
		if _, bad := forbidden[d]; bad {
			found = true
		}
	}
	if !found {
		t.Fatal("the forbidden list does not catch net/http")
	}
}
