package firmware

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed openwrt/mpsa-cpe.init openwrt/postinst openwrt/prerm systemd/mpsa-hub.service systemd/mpsa-cpe.service
var assets embed.FS

func asset(name string) []byte {
	b, err := assets.ReadFile(name)
	if err != nil {
		panic("firmware: missing embedded asset " + name) // a build defect, not input
	}
	return b
}

// PackageName is the OpenWrt package name.
const PackageName = "mpsa-cpe"

// Installed paths.
const (
	BinPath    = "/usr/sbin/mpsa-cpe"
	ConfigPath = "/etc/mpsa/cpe.yaml"
	InitPath   = "/etc/init.d/mpsa-cpe"
)

// Depends are the OpenWrt packages mpsa-cpe needs: the TUN driver for the
// userspace data plane. The kernel XFRM modules are optional (the daemon
// falls back to userspace ESP without them).
var Depends = []string{"kmod-tun"}

// PackageInput is what goes into one architecture's packages.
type PackageInput struct {
	Target     Target
	Binary     string // path of the built mpsa-cpe
	ConfigFile string // default config, installed as a conffile
	Stamp      Stamp
}

func (in PackageInput) files() ([]File, error) {
	bin, err := os.ReadFile(in.Binary)
	if err != nil {
		return nil, err
	}
	conf, err := os.ReadFile(in.ConfigFile)
	if err != nil {
		return nil, err
	}
	return []File{
		{Name: "." + BinPath, Mode: 0o755, Data: bin},
		{Name: "." + ConfigPath, Mode: 0o600, Data: conf},
		{Name: "." + InitPath, Mode: 0o755, Data: asset("openwrt/mpsa-cpe.init")},
	}, nil
}

// control returns the opkg control file.
func (in PackageInput) control(installedSize int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "Package: %s\n", PackageName)
	fmt.Fprintf(&b, "Version: %s\n", in.Stamp.Version)
	fmt.Fprintf(&b, "Depends: %s\n", strings.Join(Depends, ", "))
	fmt.Fprintf(&b, "Source: mpsa\n")
	fmt.Fprintf(&b, "SourceDateEpoch: %d\n", in.Stamp.Time.Unix())
	fmt.Fprintf(&b, "License: Proprietary\n")
	fmt.Fprintf(&b, "Section: net\n")
	fmt.Fprintf(&b, "Architecture: %s\n", in.Target.OpenWrtArch)
	fmt.Fprintf(&b, "Installed-Size: %d\n", installedSize)
	fmt.Fprintf(&b, "Maintainer: mpsa maintainers\n")
	fmt.Fprintf(&b, "Description: mpsa CPE: IKEv2 to the hub, multi-point ESP SA, iBGP peer discovery\n")
	fmt.Fprintf(&b, " Joins the customer VPN of its group and sends CPE-to-CPE traffic directly.\n")
	fmt.Fprintf(&b, " Commit %s.\n", in.Stamp.Commit)
	return []byte(b.String())
}

// IPK builds the OpenWrt package: an ar archive of debian-binary,
// control.tar.gz and data.tar.gz, in that order.
func IPK(in PackageInput) ([]byte, error) {
	data, err := in.files()
	if err != nil {
		return nil, err
	}
	size := 0
	for _, f := range data {
		size += len(f.Data)
	}
	control := []File{
		{Name: "./control", Mode: 0o644, Data: in.control(size)},
		{Name: "./conffiles", Mode: 0o644, Data: []byte(ConfigPath + "\n")},
		{Name: "./postinst", Mode: 0o755, Data: asset("openwrt/postinst")},
		{Name: "./prerm", Mode: 0o755, Data: asset("openwrt/prerm")},
	}
	controlTar, err := tarGz(control, in.Stamp.Time)
	if err != nil {
		return nil, err
	}
	dataTar, err := tarGz(data, in.Stamp.Time)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = arArchive(&buf, []File{
		{Name: "debian-binary", Mode: 0o644, Data: []byte("2.0\n")},
		{Name: "control.tar.gz", Mode: 0o644, Data: controlTar},
		{Name: "data.tar.gz", Mode: 0o644, Data: dataTar},
	}, in.Stamp.Time)
	return buf.Bytes(), err
}

// IPKName is the conventional file name of the package.
func IPKName(in PackageInput) string {
	return fmt.Sprintf("%s_%s_%s.ipk", PackageName, in.Stamp.Version, in.Target.OpenWrtArch)
}

// Tarball builds the plain archive for Linux targets without opkg: the same
// files plus systemd units for the CPE and the hub.
func Tarball(in PackageInput) ([]byte, error) {
	files, err := in.files()
	if err != nil {
		return nil, err
	}
	files = append(files,
		File{Name: "./lib/systemd/system/mpsa-cpe.service", Mode: 0o644, Data: asset("systemd/mpsa-cpe.service")},
		File{Name: "./lib/systemd/system/mpsa-hub.service", Mode: 0o644, Data: asset("systemd/mpsa-hub.service")},
	)
	return tarGz(files, in.Stamp.Time)
}

// TarballName is the file name of the plain archive.
func TarballName(in PackageInput) string {
	return fmt.Sprintf("%s_%s_linux-%s.tar.gz", PackageName, in.Stamp.Version, in.Target.Name)
}

// WriteManifest writes SHA256SUMS in dir over every regular file below it
// (sha256sum -c format, sorted by path).
func WriteManifest(dir string) error {
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "SHA256SUMS" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		lines = append(lines, hex.EncodeToString(sum[:])+"  "+filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i][66:] < lines[j][66:] })
	return os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}
