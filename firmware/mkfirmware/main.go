// Command mkfirmware builds mpsa-cpe for every CPE target, with OpenWrt
// packages, tarballs and a checksum manifest, and prints each binary's size
// against its ceiling and the 6 MiB target:
//
//	go run ./firmware/mkfirmware -out dist [-targets mipsle,arm64] [-tags mpsa_omit_xfrm]
//	    [-arch-map mipsle=mipsel_74kc]
//
// With -print-gcflags it only prints the -gcflags of a firmware build, for
// measuring other builds the same way:
//
//	go test $(go run ./firmware/mkfirmware -print-gcflags) -bench Ratio ./esp
//
// `make firmware` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/mpsa-vpn/mpsa/firmware"
)

func main() {
	out := flag.String("out", "dist", "output directory")
	only := flag.String("targets", "", "comma-separated targets (default all: mipsle,mips,armv7,arm64,amd64)")
	tags := flag.String("tags", "", "comma-separated build tags leaving features out (mpsa_omit_xfrm, mpsa_omit_userspace)")
	archMap := flag.String("arch-map", "", "comma-separated target=opkg-architecture overrides, e.g. mipsle=mipsel_74kc")
	printGCFlags := flag.Bool("print-gcflags", false, "print the -gcflags of a firmware build (ColdPackages without inlining) and exit")
	flag.Parse()
	if *printGCFlags {
		fmt.Println(strings.Join(firmware.ColdGCFlags(), " "))
		return
	}
	if err := run(*out, *only, *tags, *archMap); err != nil {
		fmt.Fprintln(os.Stderr, "mkfirmware:", err)
		os.Exit(1)
	}
}

func run(out, only, tags, archMap string) error {
	targets := slices.Clone(firmware.Targets)
	if only != "" {
		targets = nil
		for _, name := range strings.Split(only, ",") {
			t, err := firmware.TargetByName(strings.TrimSpace(name))
			if err != nil {
				return err
			}
			targets = append(targets, t)
		}
	}
	if archMap != "" {
		for _, kv := range strings.Split(archMap, ",") {
			name, arch, ok := strings.Cut(strings.TrimSpace(kv), "=")
			found := false
			for i := range targets {
				if ok && arch != "" && targets[i].Name == name {
					targets[i].OpenWrtArch, found = arch, true
				}
			}
			if !found {
				return fmt.Errorf("-arch-map %q: expected target=arch for a target being built", kv)
			}
		}
	}
	var extra []string
	for _, tag := range strings.Split(tags, ",") {
		if tag = strings.TrimSpace(tag); tag == "" {
			continue
		}
		if _, ok := firmware.FeatureTags[tag]; !ok {
			return fmt.Errorf("unknown feature tag %q", tag)
		}
		extra = append(extra, tag)
	}
	ctx := context.Background()
	stamp, err := firmware.StampFromGit(ctx, ".")
	if err != nil {
		return err
	}
	arts, err := firmware.Release(ctx, firmware.ReleaseOptions{ModuleDir: ".", OutDir: out, Targets: targets, Stamp: stamp, Tags: extra})
	for _, a := range arts {
		met := "not met"
		if a.Size <= firmware.SizeBudget {
			met = "met"
		}
		fmt.Printf("%-7s %s  %.2f MiB (ceiling %.2f MiB; %.0f MiB target %s)\n", a.Target.Name, a.IPK,
			firmware.MiB(a.Size), firmware.MiB(a.Target.MaxSize), firmware.MiB(firmware.SizeBudget), met)
	}
	if err != nil {
		return err
	}
	fmt.Printf("built %s for %d targets into %s (see %s/SHA256SUMS)\n", stamp.Version, len(arts), out, out)
	return nil
}
