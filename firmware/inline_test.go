package firmware

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// hotPackages are the packages on the packet path (and the runtime under
// them): ColdPackages must leave them alone, and their code must be the
// same with and without the firmware's -gcflags. A trailing "/..." also
// matches the packages below.
var hotPackages = []string{
	"github.com/mpsa-vpn/mpsa/esp/...",
	"github.com/mpsa-vpn/mpsa/dataplane",
	"github.com/mpsa-vpn/mpsa/dataplane/userspace",
	"github.com/mpsa-vpn/mpsa/routing",
	"github.com/mpsa-vpn/mpsa/transform",
	"github.com/gaissmai/bart/...",
	"golang.zx2c4.com/wireguard/...",
	"golang.org/x/net/...",
	"golang.org/x/sys/...",
	"golang.org/x/crypto/chacha20",
	"golang.org/x/crypto/chacha20poly1305",
	"golang.org/x/crypto/internal/poly1305",
	"crypto/aes",
	"crypto/cipher",
	"crypto/hmac",
	"crypto/sha1",
	"crypto/sha256",
	"crypto/sha512",
	"crypto/subtle",
	"crypto/internal/fips140/aes/...",
	"crypto/internal/fips140/sha256",
	"crypto/internal/fips140/sha512",
	"crypto/internal/fips140/hmac",
	"crypto/internal/fips140/subtle",
	"net/netip",
	"runtime/...",
	"internal/runtime/...",
	"sync/...",
	"syscall",
	"fmt",
	"log/slog/...",
}

// instantiators hold the FIB's types: compiled without inlining, their
// copies of bart's generic table methods would replace the FIB's (the
// linker keeps the larger duplicate). See ColdPackages.
var instantiators = []string{
	"github.com/mpsa-vpn/mpsa/cpe",
	"github.com/mpsa-vpn/mpsa/cmd/mpsa-cpe",
	"github.com/mpsa-vpn/mpsa/dataplane/xfrm",
}

// callsCold are functions of hot packages that call a cold package, so
// that their code differs with the firmware's flags; none is on the packet
// path.
var callsCold = map[string]string{
	"github.com/mpsa-vpn/mpsa/dataplane/userspace.(*Backend).openTUN":                       "configures the TUN device through netlink, once",
	"github.com/mpsa-vpn/mpsa/dataplane/userspace.(*Backend).routineWatchRoutes.deferwrap2": "closes the netlink route subscription",
}

// initFunc matches package initialisers and their closures.
var initFunc = regexp.MustCompile(`^[^(\[]*\.init(\.func\d+|\.\d+)*$`)

// matchPattern reports whether the import path matches a go package
// pattern of the simple kind used here: exact, or "dir/..." for dir and
// everything below it.
func matchPattern(pattern, path string) bool {
	if dir, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == dir || strings.HasPrefix(path, dir+"/")
	}
	return path == pattern
}

func matchAny(patterns []string, path string) bool {
	for _, p := range patterns {
		if matchPattern(p, path) {
			return true
		}
	}
	return false
}

// cpeDeps lists mpsa-cpe's dependencies for t.
func cpeDeps(t *testing.T, tg Target) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "./cmd/mpsa-cpe")
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), GoEnv(tg)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func TestMatchPattern(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"regexp/...", "regexp", true},
		{"regexp/...", "regexp/syntax", true},
		{"regexp/...", "regexpx", false},
		{"fmt", "fmt", true},
		{"fmt", "fmt/x", false},
	} {
		if got := matchPattern(c.pattern, c.path); got != c.want {
			t.Errorf("matchPattern(%q, %q) = %v", c.pattern, c.path, got)
		}
	}
}

// TestColdPackages: every cold pattern names packages mpsa-cpe links (no
// stale entries), and none is on the packet path or instantiates its
// generic code.
func TestColdPackages(t *testing.T) {
	deps := cpeDeps(t, Targets[0])
	for _, p := range ColdPackages {
		n := 0
		for _, d := range deps {
			if matchPattern(p, d) {
				n++
				if matchAny(hotPackages, d) || matchAny(instantiators, d) {
					t.Errorf("cold pattern %q covers %s, which must keep inlining", p, d)
				}
			}
		}
		if n == 0 {
			t.Errorf("cold pattern %q matches nothing mpsa-cpe links", p)
		}
	}
	for _, h := range append(hotPackages, instantiators...) {
		if !slices.ContainsFunc(deps, func(d string) bool { return matchPattern(h, d) }) {
			t.Errorf("pattern %q matches nothing mpsa-cpe links", h)
		}
	}
}

// funcSizes returns the size of every function in the symbol table of the
// ELF binary at path.
func funcSizes(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]uint64)
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			m[s.Name] = s.Size
		}
	}
	return m
}

// symbolPackage returns the import path of a Go function symbol.
func symbolPackage(name string) string {
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i] // type arguments hold dots and slashes
	}
	slash := strings.LastIndexByte(name, '/')
	if dot := strings.IndexByte(name[slash+1:], '.'); dot >= 0 {
		return name[:slash+1+dot]
	}
	return name
}

// TestHotPathUnchanged builds mpsa-cpe with and without ColdGCFlags and
// compares the functions of the packet-path packages: each that exists in
// both builds must have the same size. Functions that exist in only one
// are out-of-line copies of small functions that the cold packages can no
// longer inline; the hot packages still inline them.
func TestHotPathUnchanged(t *testing.T) {
	testenv.Short(t)
	for _, name := range []string{"amd64", "mipsle"} {
		tg, err := TargetByName(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			build := func(out string, flags []string) map[string]uint64 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				args := append(append([]string{"build", "-trimpath", "-buildvcs=false"}, flags...), "-o", out, "./cmd/mpsa-cpe")
				cmd := exec.CommandContext(ctx, "go", args...)
				cmd.Dir = moduleRoot(t)
				cmd.Env = append(os.Environ(), GoEnv(tg)...)
				if b, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("go build: %v\n%s", err, b)
				}
				return funcSizes(t, out)
			}
			inlined := build(filepath.Join(dir, "inlined"), nil)
			firmware := build(filepath.Join(dir, "firmware"), ColdGCFlags())
			compared, total := 0, 0
			for fn, size := range inlined {
				if !matchAny(hotPackages, symbolPackage(fn)) {
					continue
				}
				other, ok := firmware[fn]
				if !ok {
					continue
				}
				compared++
				total += int(size)
				if size != other {
					if initFunc.MatchString(fn) {
						continue // package initialisation, once at start
					}
					if why, ok := callsCold[fn]; ok {
						t.Logf("%s: %d → %d octets (%s)", fn, size, other, why)
						continue
					}
					t.Errorf("%s: %d octets inlined, %d with the firmware's -gcflags: a cold package "+
						"changed packet-path code (see ColdPackages)", fn, size, other)
				}
			}
			if compared < 1000 {
				t.Fatalf("compared only %d functions: symbol names not understood?", compared)
			}
			t.Logf("%d functions of the hot packages (%d octets) compared", compared, total)
		})
	}
}
