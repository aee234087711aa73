// Command rr-hub runs our hub's route reflector (package bgp/rr) for the
// BGP benchmark: one group on the listen address, with the benchmark's N
// CPEs registered as if IKE had brought them up (scenario addresses,
// endpoints and authorised prefixes). It prints "ready" once they are
// registered and runs until its standard input closes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime/pprof"
	"time"

	"github.com/mpsa-vpn/mpsa/bench/bgp/scenario"
	"github.com/mpsa-vpn/mpsa/bgp/rr"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:11179", "listen address:port")
	n := flag.Int("n", 1000, "CPEs to register")
	restarting := flag.Bool("restarting", false, "start the group as a restarting speaker (deferral until every CPE sent End-of-RIB)")
	verbose := flag.Bool("v", false, "log at Info to stderr")
	memprofile := flag.String("memprofile", "", "write a heap profile here when stdin closes")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*listen, *n, *restarting, *verbose, *memprofile); err != nil {
		fmt.Fprintln(os.Stderr, "rr-hub:", err)
		os.Exit(1)
	}
}

func run(listen string, n int, restarting, verbose bool, memprofile string) error {
	lg := slog.New(slog.DiscardHandler)
	if verbose {
		lg = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	h, err := rr.New(rr.Config{ASN: scenario.ASN, RouterID: netip.MustParseAddr("10.255.255.1"), HoldTime: 240 * time.Second, Logger: lg})
	if err != nil {
		return err
	}
	ctx := context.Background()
	lp, err := netip.ParseAddrPort(listen)
	if err != nil {
		return err
	}
	if err := h.AddGroup(ctx, rr.GroupConfig{Name: "bench", Listen: []netip.AddrPort{lp},
		Restarting: restarting, DeferralTime: 600 * time.Second}); err != nil {
		return err
	}
	for i := range n {
		if err := h.CPEUp(ctx, rr.CPE{ID: scenario.ID(i), Group: "bench", Overlay: scenario.CPEAddr(i),
			Endpoint: scenario.Endpoint(i), Prefixes: scenario.Authorised(i)}); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	if memprofile != "" {
		if f, err := os.Create(memprofile); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	if st, err := h.Stats(""); err == nil {
		fmt.Fprintf(os.Stderr, "rr-hub: %+v\n", st)
	}
	return h.Close()
}
