package firmware

import "fmt"

// SizeBudget is issue 7's target for a stripped mpsa-cpe: a 16 MB flash
// holds the OS, the overlay filesystem and this. It is not met yet (see
// Target.MaxSize and docs/BENCHMARKS.md, "firmware"); the build reports
// each binary against it.
const SizeBudget = 6 << 20

// Target is one architecture we build for.
type Target struct {
	Name   string // short name used in file names, e.g. "mipsle"
	GOOS   string
	GOARCH string
	Env    []string // extra GO* environment (GOMIPS, GOARM)
	// Tags are the build tags of this target's default build (Tailscale's
	// ts_omit_* idea: FeatureTags lists what can be left out).
	Tags []string
	// MaxSize is the ceiling the build enforces on the stripped binary:
	// just above what the target reached with all features, so that growth
	// fails the build instead of creeping towards the flash size. Raising
	// it is a decision recorded in docs/BENCHMARKS.md, not a fix.
	MaxSize int64
	// OpenWrtArch is the opkg architecture of the most common OpenWrt
	// target for this CPU; override with -arch-map when building for another.
	OpenWrtArch string
	// QEMU is the qemu-user binary that runs it on an x86-64 build host;
	// empty for amd64.
	QEMU string
}

// Targets are the supported CPE architectures. The ceilings are about 1.5 %
// above the sizes reached with go1.26 (docs/BENCHMARKS.md, "firmware");
// the linker aligns segments to 64 KiB, so sizes move in 64 KiB steps.
var Targets = []Target{
	{Name: "mipsle", GOOS: "linux", GOARCH: "mipsle", Env: []string{"GOMIPS=softfloat"}, MaxSize: mib(9.15), OpenWrtArch: "mipsel_24kc", QEMU: "qemu-mipsel-static"},
	{Name: "mips", GOOS: "linux", GOARCH: "mips", Env: []string{"GOMIPS=softfloat"}, MaxSize: mib(9.15), OpenWrtArch: "mips_24kc", QEMU: "qemu-mips-static"},
	{Name: "armv7", GOOS: "linux", GOARCH: "arm", Env: []string{"GOARM=7"}, MaxSize: mib(7.95), OpenWrtArch: "arm_cortex-a7_neon-vfpv4", QEMU: "qemu-arm-static"},
	{Name: "arm64", GOOS: "linux", GOARCH: "arm64", MaxSize: mib(7.75), OpenWrtArch: "aarch64_cortex-a53", QEMU: "qemu-aarch64-static"},
	{Name: "amd64", GOOS: "linux", GOARCH: "amd64", MaxSize: mib(8.40), OpenWrtArch: "x86_64"},
}

// FeatureTags are the build tags that leave an optional feature out of
// mpsa-cpe, for carriers who build for a board that cannot use it (pass
// them to mkfirmware -tags). The dependency test checks every target with
// each of them too.
var FeatureTags = map[string]string{
	"mpsa_omit_xfrm":      "no kernel (XFRM) data plane: ESP in userspace over TUN only",
	"mpsa_omit_userspace": "no userspace (TUN) data plane: kernel XFRM only",
}

// mib converts mebibytes to octets, rounded down.
func mib(x float64) int64 { return int64(x * (1 << 20)) }

// TargetByName returns the target called name.
func TargetByName(name string) (Target, error) {
	for _, t := range Targets {
		if t.Name == name {
			return t, nil
		}
	}
	return Target{}, fmt.Errorf("firmware: unknown target %q", name)
}
