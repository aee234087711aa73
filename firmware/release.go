package firmware

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Release builds every target into outDir: binaries under outDir/<target>/,
// packages and tarballs in outDir, and outDir/SHA256SUMS.
func Release(ctx context.Context, moduleDir, outDir string, targets []Target, stamp Stamp) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	for _, t := range targets {
		bin, err := Build(ctx, t, BuildOptions{ModuleDir: moduleDir, Package: "./cmd/mpsa-cpe", OutDir: outDir, Stamp: stamp})
		if err != nil {
			return err
		}
		in := PackageInput{Target: t, Binary: bin, ConfigFile: filepath.Join(moduleDir, "configs", "cpe.yaml"), Stamp: stamp}
		ipk, err := IPK(in)
		if err != nil {
			return fmt.Errorf("firmware: ipk for %s: %w", t.Name, err)
		}
		if err := os.WriteFile(filepath.Join(outDir, IPKName(in)), ipk, 0o644); err != nil {
			return err
		}
		tgz, err := Tarball(in)
		if err != nil {
			return fmt.Errorf("firmware: tarball for %s: %w", t.Name, err)
		}
		if err := os.WriteFile(filepath.Join(outDir, TarballName(in)), tgz, 0o644); err != nil {
			return err
		}
	}
	return WriteManifest(outDir)
}
