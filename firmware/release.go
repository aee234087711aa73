package firmware

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// ReleaseOptions says what Release builds.
type ReleaseOptions struct {
	ModuleDir string   // the module root
	OutDir    string   // created if missing
	Targets   []Target // Targets if nil
	Stamp     Stamp
	Tags      []string // extra build tags (FeatureTags) for every target
}

// Artifact is what Release made for one target (paths under OutDir).
type Artifact struct {
	Target  Target
	Binary  string
	Size    int64 // of the binary
	IPK     string
	Tarball string
}

// Release builds every target into OutDir: binaries under
// OutDir/<target>/, packages and tarballs in OutDir, and OutDir/SHA256SUMS.
// It stops at the first target that fails to build or exceeds its ceiling.
// This is what `make firmware` runs (through mkfirmware).
func Release(ctx context.Context, o ReleaseOptions) ([]Artifact, error) {
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	targets := o.Targets
	if targets == nil {
		targets = Targets
	}
	var arts []Artifact
	for _, t := range targets {
		bin, size, err := Build(ctx, t, BuildOptions{ModuleDir: o.ModuleDir, Package: "./cmd/mpsa-cpe", OutDir: o.OutDir, Stamp: o.Stamp, Tags: o.Tags})
		if err != nil {
			return arts, err
		}
		a := Artifact{Target: t, Binary: bin, Size: size}
		in := PackageInput{Target: t, Binary: bin, ConfigFile: filepath.Join(o.ModuleDir, "configs", "cpe.yaml"), Stamp: o.Stamp}
		ipk, err := IPK(in)
		if err != nil {
			return arts, fmt.Errorf("firmware: ipk for %s: %w", t.Name, err)
		}
		a.IPK = filepath.Join(o.OutDir, IPKName(in))
		if err := os.WriteFile(a.IPK, ipk, 0o644); err != nil {
			return arts, err
		}
		tgz, err := Tarball(in)
		if err != nil {
			return arts, fmt.Errorf("firmware: tarball for %s: %w", t.Name, err)
		}
		a.Tarball = filepath.Join(o.OutDir, TarballName(in))
		if err := os.WriteFile(a.Tarball, tgz, 0o644); err != nil {
			return arts, err
		}
		arts = append(arts, a)
	}
	return arts, WriteManifest(o.OutDir)
}
