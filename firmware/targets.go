package firmware

import "fmt"

// SizeBudget is the largest stripped mpsa-cpe binary we ship: a 16 MB flash
// holds the OS, the overlay filesystem and this.
const SizeBudget = 6 << 20

// Target is one architecture we build for.
type Target struct {
	Name   string // short name used in file names, e.g. "mipsle"
	GOOS   string
	GOARCH string
	Env    []string // extra GO* environment (GOMIPS, GOARM)
	// OpenWrtArch is the opkg architecture of the most common OpenWrt
	// target for this CPU; override with -arch-map when building for another.
	OpenWrtArch string
	// QEMU is the qemu-user binary that runs it on an x86-64 build host;
	// empty for amd64.
	QEMU string
}

// Targets are the supported CPE architectures.
var Targets = []Target{
	{Name: "mipsle", GOOS: "linux", GOARCH: "mipsle", Env: []string{"GOMIPS=softfloat"}, OpenWrtArch: "mipsel_24kc", QEMU: "qemu-mipsel-static"},
	{Name: "mips", GOOS: "linux", GOARCH: "mips", Env: []string{"GOMIPS=softfloat"}, OpenWrtArch: "mips_24kc", QEMU: "qemu-mips-static"},
	{Name: "armv7", GOOS: "linux", GOARCH: "arm", Env: []string{"GOARM=7"}, OpenWrtArch: "arm_cortex-a7_neon-vfpv4", QEMU: "qemu-arm-static"},
	{Name: "arm64", GOOS: "linux", GOARCH: "arm64", OpenWrtArch: "aarch64_cortex-a53", QEMU: "qemu-aarch64-static"},
	{Name: "amd64", GOOS: "linux", GOARCH: "amd64", OpenWrtArch: "x86_64"},
}

// TargetByName returns the target called name.
func TargetByName(name string) (Target, error) {
	for _, t := range Targets {
		if t.Name == name {
			return t, nil
		}
	}
	return Target{}, fmt.Errorf("firmware: unknown target %q", name)
}
