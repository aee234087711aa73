package configs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// The configs package and liteconf must stay free of Viper and its
// dependencies, so the CPE binary can use them within its size budget.
func TestNoViperInCPEPath(t *testing.T) {
	goBin := testenv.Binary(t, "go", "Go toolchain")
	out, err := exec.Command(goBin, "list", "-deps", ".", "./liteconf").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/spf13/", "github.com/fsnotify/", "github.com/go-viper/", "github.com/pelletier/",
			"github.com/sagikazarmark/", "github.com/subosito/", "golang.org/x/text", "google.golang.org/grpc", "github.com/osrg/gobgp"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("configs or configs/liteconf depends on %s", dep)
			}
		}
	}
}

// BenchmarkCPEBinarySize builds the size probes (internal/sizeprobe) for
// the CPE's smallest target, linux/mipsle with GOMIPS=softfloat, stripped,
// and reports each one's size and what each loader adds.
//
//	go test -run '^$' -bench CPEBinarySize -benchtime 1x ./configs/
func BenchmarkCPEBinarySize(b *testing.B) {
	goBin := testenv.Binary(b, "go", "Go toolchain")
	dir := b.TempDir()
	sizes := map[string]float64{}
	for range b.N {
		for _, p := range []string{"base", "auth", "core", "lite", "viper"} {
			out := filepath.Join(dir, p)
			cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./internal/sizeprobe/"+p)
			cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=mipsle", "GOMIPS=softfloat", "CGO_ENABLED=0")
			if msg, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("build %s: %v\n%s", p, err, msg)
			}
			st, err := os.Stat(out)
			if err != nil {
				b.Fatal(err)
			}
			sizes[p] = float64(st.Size()) / (1 << 20)
		}
	}
	b.ReportMetric(sizes["base"], "base-MiB")
	b.ReportMetric(sizes["auth"], "auth-MiB")
	b.ReportMetric(sizes["core"], "core-MiB")
	b.ReportMetric(sizes["core"]-sizes["auth"], "configs-over-auth-MiB")
	b.ReportMetric(sizes["lite"], "lite-MiB")
	b.ReportMetric(sizes["viper"], "viper-MiB")
	b.ReportMetric(sizes["lite"]-sizes["core"], "yaml+env+flags-MiB")
	b.ReportMetric(sizes["viper"]-sizes["core"], "viper-over-core-MiB")
	b.ReportMetric(sizes["viper"]-sizes["lite"], "viper-over-lite-MiB")
}
