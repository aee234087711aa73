package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Module is the Go module the daemons are built from.
const Module = "github.com/mpsa-vpn/mpsa"

// Daemon binary names.
const (
	HubBinary = "mpsa-hub"
	CPEBinary = "mpsa-cpe"
)

// Locate finds mpsa-hub and mpsa-cpe in dir (if not empty), else next to
// the running executable, else on PATH.
func Locate(dir string) (hubBin, cpeBin string, err error) {
	var dirs []string
	if dir != "" {
		dirs = append(dirs, dir)
	} else if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	find := func(name string) string {
		for _, d := range dirs {
			p := filepath.Join(d, name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p
			}
		}
		if dir == "" {
			if p, err := exec.LookPath(name); err == nil {
				if abs, err := filepath.Abs(p); err == nil {
					return abs
				}
			}
		}
		return ""
	}
	hubBin, cpeBin = find(HubBinary), find(CPEBinary)
	if hubBin == "" || cpeBin == "" {
		where := "next to this program or on PATH"
		if dir != "" {
			where = "in " + dir
		}
		return "", "", fmt.Errorf("lab: %s and %s not found %s", HubBinary, CPEBinary, where)
	}
	return hubBin, cpeBin, nil
}

// ModuleRoot returns the directory of the mpsa module's go.mod at or above
// dir.
func ModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if isModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("lab: no %s source tree at or above the current directory", Module)
		}
		dir = parent
	}
}

func isModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module")) == Module
		}
	}
	return false
}

// Build compiles mpsa-hub and mpsa-cpe from the module at src into out with
// `go build`.
func Build(ctx context.Context, src, out string) (hubBin, cpeBin string, err error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", "", errors.New("lab: the go command is needed to build the daemons (or give their directory)")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", "", fmt.Errorf("lab: %w", err)
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", out+string(filepath.Separator), "./cmd/"+HubBinary, "./cmd/"+CPEBinary)
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("lab: go build in %s: %v\n%s", src, err, b)
	}
	return filepath.Join(out, HubBinary), filepath.Join(out, CPEBinary), nil
}
