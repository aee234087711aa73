package speaker

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// TestDeps keeps the CPE speaker's import graph free of GoBGP's server,
// its gRPC API and their dependencies (the 17 MB that pkg/server adds to a
// binary), in the spirit of Tailscale's deptest. It checks the graph for
// the CPE targets as well as the host.
func TestDeps(t *testing.T) {
	goBin := testenv.Binary(t, "go", "the Go toolchain")
	banned := []string{
		"github.com/osrg/gobgp/v3/pkg/server",
		"github.com/osrg/gobgp/v3/api",
		"github.com/osrg/gobgp/v3/pkg/apiutil",
		"github.com/osrg/gobgp/v3/internal/",
		"github.com/osrg/gobgp/v3/pkg/config",
		"github.com/osrg/gobgp/v3/pkg/log",
		"google.golang.org/grpc",
		"google.golang.org/protobuf",
		"github.com/golang/protobuf",
		"github.com/sirupsen/logrus",
		"github.com/spf13/viper",
	}
	for _, target := range []string{"linux/amd64", "linux/mipsle", "linux/arm64"} {
		goos, goarch, _ := strings.Cut(target, "/")
		cmd := exec.Command(goBin, "list", "-deps", ".", "./speakertest")
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list (%s): %v\n%s", target, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list (%s) listed only %v", target, deps)
		}
		found := false
		for _, d := range deps {
			if d == "github.com/osrg/gobgp/v3/pkg/packet/bgp" {
				found = true
			}
			for _, b := range banned {
				if d == b || strings.HasPrefix(d, b+"/") || strings.HasSuffix(b, "/") && strings.HasPrefix(d, b) {
					t.Errorf("%s: the speaker imports %s", target, d)
				}
			}
		}
		if !found {
			t.Errorf("%s: pkg/packet/bgp not in the import graph; is the check looking at the right package?", target)
		}
	}
}
