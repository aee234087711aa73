package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/firmware"
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
	"go.etcd.io/bbolt":                            "the hub's key server store (mpsa/store)",
	"github.com/mpsa-vpn/mpsa/mpsa/store":         "the hub's key server store: bbolt",
}

// TestDeps fails when a forbidden package enters mpsa-cpe's import graph,
// for every firmware target's GOOS/GOARCH/GOMIPS/GOARM and build tags, and
// with each optional feature left out too.
func TestDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command") // the go tool runs the test: cannot happen under go test
	}
	variants := [][]string{nil}
	for tag := range firmware.FeatureTags {
		variants = append(variants, []string{tag})
	}
	for _, target := range firmware.Targets {
		for _, extra := range variants {
			tags := append(slices.Clone(target.Tags), extra...)
			name := fmt.Sprintf("%s%v", target.Name, tags)
			args := []string{"list", "-deps", "-f", "{{.ImportPath}}"}
			if len(tags) > 0 {
				args = append(args, "-tags", strings.Join(tags, ","))
			}
			cmd := exec.Command(goBin, append(args, ".")...)
			cmd.Env = append(os.Environ(), firmware.GoEnv(target)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: go list: %v\n%s", name, err, out)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 50 {
				t.Fatalf("%s: only %d dependencies listed: %q", name, len(deps), out)
			}
			for _, d := range deps {
				for bad, why := range forbidden {
					if d == bad || strings.HasPrefix(d, bad+"/") {
						t.Errorf("%s: mpsa-cpe imports %s: %s", name, d, why)
					}
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
