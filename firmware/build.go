package firmware

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Stamp identifies a build: it is compiled into the binary and written into
// the packages.
type Stamp struct {
	Version string    // e.g. "0.1.0-12-gabcdef0"
	Commit  string    // full commit hash
	Time    time.Time // commit time: modification time of every package member
}

// StampFromGit reads the stamp of the checkout at dir. A checkout with no
// tags gets version "0.0.0-<n>-g<short>". A checkout whose tracked files
// differ from the commit gets "-dirty" appended: its build cannot be
// reproduced from the commit.
func StampFromGit(ctx context.Context, dir string) (Stamp, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("firmware: git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	commit, err := git("rev-parse", "HEAD")
	if err != nil {
		return Stamp{}, err
	}
	ct, err := git("log", "-1", "--format=%ct", "HEAD")
	if err != nil {
		return Stamp{}, err
	}
	secs, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return Stamp{}, fmt.Errorf("firmware: commit time %q: %w", ct, err)
	}
	version, err := git("describe", "--tags", "--match", "v[0-9]*", "--always")
	if err != nil {
		return Stamp{}, err
	}
	if !strings.HasPrefix(version, "v") {
		// No release tag yet: count commits so versions still increase.
		n, err := git("rev-list", "--count", "HEAD")
		if err != nil {
			return Stamp{}, err
		}
		version = "0.0.0-" + n + "-g" + commit[:7]
	} else {
		version = strings.TrimPrefix(version, "v")
	}
	status, err := git("status", "--porcelain", "--untracked-files=no")
	if err != nil {
		return Stamp{}, err
	}
	if status != "" {
		version += "-dirty"
	}
	return Stamp{Version: version, Commit: commit, Time: time.Unix(secs, 0).UTC()}, nil
}

// ColdPackages are compiled without inlining (-gcflags=PATTERN=-l) in
// firmware builds: code that runs at start, on a config reload, once per
// IKE exchange or BGP update, or when an operator asks for status, where
// inlined copies (and the pclntab and funcdata they carry) cost flash and
// buy nothing. Everything else keeps inlining, in particular the packet
// path: esp, dataplane and its userspace backend, wireguard-go's TUN, all
// of crypto (the data path's AEAD, CBC and HMAC share packages with IKE's),
// routing and bart (lookups), x/net and x/sys (batch I/O), net/netip, the
// runtime and the rest of the standard library.
//
// Two rules keep the packet path as it is (TestHotPathUnchanged checks it
// by comparing the hot packages' functions with and without these flags):
//
//   - A package compiled with -l exports no inline bodies, so a hot package
//     must not call a cold one on the packet path (fmt and log/slog stay
//     inlined for that reason: everyone calls them).
//   - Generic code is compiled into every package that instantiates it, and
//     of duplicate copies the linker keeps the larger, which is usually the
//     one compiled without inlining. A cold package must therefore not
//     instantiate hot generic code: cpe, cmd/mpsa-cpe and dataplane/xfrm
//     hold the FIB's types and would replace bart's table methods, so they
//     stay inlined.
//
// docs/BENCHMARKS.md, "firmware", has what this saves per target.
var ColdPackages = []string{
	// Configuration: YAML, decoding, validation, key and certificate files.
	"github.com/mpsa-vpn/mpsa/configs/...",
	"go.yaml.in/yaml/v3",
	"regexp/...",
	"flag",
	// Certificates and ASN.1 (IKE authentication, config checks).
	"crypto/x509",
	"crypto/x509/pkix",
	"encoding/asn1",
	"encoding/pem",
	"golang.org/x/crypto/cryptobyte/...",
	"vendor/golang.org/x/crypto/cryptobyte/...",
	"math/big",
	"net/url",
	// BGP: the speaker and GoBGP's wire codec.
	"github.com/mpsa-vpn/mpsa/bgp/...",
	"github.com/osrg/gobgp/v3/pkg/packet/bgp",
	// Netlink (routes, links, XFRM states: the kernel moves the packets).
	"github.com/vishvananda/...",
	// Status socket, metrics, JSON.
	"github.com/mpsa-vpn/mpsa/internal/ops",
	"encoding/json",
	"encoding/base64",
	"encoding/hex",
	// The control plane: IKEv2 and MPSA key handling.
	"github.com/mpsa-vpn/mpsa/ike/...",
	"github.com/mpsa-vpn/mpsa/mpsa",
}

// ColdGCFlags returns the -gcflags arguments that turn inlining off in
// ColdPackages.
func ColdGCFlags() []string {
	var args []string
	for _, p := range ColdPackages {
		args = append(args, "-gcflags="+p+"=-l")
	}
	return args
}

// GoFlags returns the go build flags of a firmware build of t with the
// extra tags (reproducible, stripped, cold packages without inlining), up
// to but not including -o and the package.
func GoFlags(t Target, stamp Stamp, tags []string) []string {
	ldflags := fmt.Sprintf("-s -w -buildid= -X main.version=%s -X main.commit=%s", stamp.Version, stamp.Commit)
	args := append([]string{"-trimpath", "-buildvcs=false", "-ldflags", ldflags}, ColdGCFlags()...)
	if all := append(slices.Clone(t.Tags), tags...); len(all) > 0 {
		args = append(args, "-tags", strings.Join(all, ","))
	}
	return args
}

// GoEnv returns the environment a firmware build of t adds to the
// caller's: no cgo, the target, no GOFLAGS from the user's environment.
func GoEnv(t Target) []string {
	env := []string{"CGO_ENABLED=0", "GOOS=" + t.GOOS, "GOARCH=" + t.GOARCH, "GOFLAGS="}
	return append(env, t.Env...)
}

// BuildOptions says what to build and where.
type BuildOptions struct {
	ModuleDir string // the module root (where go.mod is)
	Package   string // e.g. "./cmd/mpsa-cpe"
	OutDir    string
	Stamp     Stamp
	Tags      []string // build tags beyond the target's, e.g. FeatureTags
	Env       []string // extra environment, e.g. GOCACHE for a clean-cache rebuild
}

// Build cross-compiles the package for t and returns the binary's path and
// size. It fails when the binary exceeds t.MaxSize.
func Build(ctx context.Context, t Target, o BuildOptions) (string, int64, error) {
	name := filepath.Base(o.Package)
	out := filepath.Join(o.OutDir, t.Name, name)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", 0, err
	}
	args := append([]string{"build"}, GoFlags(t, o.Stamp, o.Tags)...)
	args = append(args, "-o", out, o.Package)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = o.ModuleDir
	cmd.Env = append(os.Environ(), GoEnv(t)...)
	cmd.Env = append(cmd.Env, o.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", 0, fmt.Errorf("firmware: build %s for %s: %v\n%s", o.Package, t.Name, err, stderr.Bytes())
	}
	fi, err := os.Stat(out)
	if err != nil {
		return "", 0, err
	}
	return out, fi.Size(), CheckSize(t, out, fi.Size())
}

// CheckSize fails when size, the size of the binary at path built for t,
// exceeds t.MaxSize.
func CheckSize(t Target, path string, size int64) error {
	if t.MaxSize <= 0 {
		return fmt.Errorf("firmware: target %s has no size ceiling", t.Name)
	}
	if size > t.MaxSize {
		return fmt.Errorf("firmware: %s is %d octets (%.2f MiB), over %s's ceiling of %d (%.2f MiB); "+
			"the target is %.0f MiB (docs/BENCHMARKS.md, \"firmware\")", path, size, MiB(size),
			t.Name, t.MaxSize, MiB(t.MaxSize), MiB(SizeBudget))
	}
	return nil
}

// MiB converts octets to mebibytes.
func MiB(n int64) float64 { return float64(n) / (1 << 20) }
