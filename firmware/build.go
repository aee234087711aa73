package firmware

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
// tags gets version "0.0.0-<n>-g<short>".
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
	return Stamp{Version: version, Commit: commit, Time: time.Unix(secs, 0).UTC()}, nil
}

// BuildOptions says what to build and where.
type BuildOptions struct {
	ModuleDir string // the module root (where go.mod is)
	Package   string // e.g. "./cmd/mpsa-cpe"
	OutDir    string
	Stamp     Stamp
	Tags      []string // build tags for optional features
	Env       []string // extra environment, e.g. GOCACHE for a clean-cache rebuild
}

// Build cross-compiles the package for t and returns the binary's path. It
// fails when the binary exceeds SizeBudget.
func Build(ctx context.Context, t Target, o BuildOptions) (string, error) {
	name := filepath.Base(o.Package)
	out := filepath.Join(o.OutDir, t.Name, name)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	ldflags := fmt.Sprintf("-s -w -buildid= -X main.version=%s -X main.commit=%s", o.Stamp.Version, o.Stamp.Commit)
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out}
	if len(o.Tags) > 0 {
		args = append(args, "-tags", strings.Join(o.Tags, ","))
	}
	args = append(args, o.Package)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = o.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+t.GOOS, "GOARCH="+t.GOARCH, "GOFLAGS=")
	cmd.Env = append(cmd.Env, t.Env...)
	cmd.Env = append(cmd.Env, o.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("firmware: build %s for %s: %v\n%s", o.Package, t.Name, err, stderr.Bytes())
	}
	if err := CheckSize(out); err != nil {
		return out, err
	}
	return out, nil
}

// CheckSize fails when the file at path exceeds SizeBudget.
func CheckSize(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() > SizeBudget {
		return fmt.Errorf("firmware: %s is %.2f MiB, over the %.0f MiB budget", path,
			float64(fi.Size())/(1<<20), float64(SizeBudget)/(1<<20))
	}
	return nil
}
