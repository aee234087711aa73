// Command mpsa-lab builds an mpsa network out of Linux network namespaces —
// an underlay bridge, one hub, N CPEs with a LAN host behind each — runs
// the real mpsa-hub and mpsa-cpe in it, waits for convergence, pings every
// LAN host from every other, shows that CPE-to-CPE traffic bypasses the hub
// and leaves the lab up until `mpsa-lab down`. See package lab.
//
//	mpsa-lab up [-cpes 3] [-v6=true] [-underlay v4|v6] [-bin DIR]
//	mpsa-lab status
//	mpsa-lab down [-all]
//
// It needs root.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mpsa-vpn/mpsa/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := lab.RunCLI(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
