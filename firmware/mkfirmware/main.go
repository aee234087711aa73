// Command mkfirmware builds mpsa-cpe for every CPE target, with OpenWrt
// packages, tarballs and a checksum manifest:
//
//	go run ./firmware/mkfirmware -out dist
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/mpsa-vpn/mpsa/firmware"
)

func main() {
	out := flag.String("out", "dist", "output directory")
	only := flag.String("targets", "", "comma-separated targets (default all: mipsle,mips,armv7,arm64,amd64)")
	flag.Parse()

	targets := firmware.Targets
	if *only != "" {
		targets = nil
		for _, name := range strings.Split(*only, ",") {
			t, err := firmware.TargetByName(strings.TrimSpace(name))
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			targets = append(targets, t)
		}
	}
	ctx := context.Background()
	stamp, err := firmware.StampFromGit(ctx, ".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := firmware.Release(ctx, ".", *out, targets, stamp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("built %s for %d targets into %s (see %s/SHA256SUMS)\n", stamp.Version, len(targets), *out, *out)
}
