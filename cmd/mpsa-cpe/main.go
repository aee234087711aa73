// Command mpsa-cpe is the mpsa CPE daemon: it connects to the hub with
// IKEv2, installs the group SA and the CHILD_SA, runs the iBGP speaker and
// forwards LAN traffic straight to the other CPEs (package cpe).
//
//	mpsa-cpe [-config FILE] [-key.path VALUE ...]     run
//	mpsa-cpe -test [-config FILE]                     check the configuration
//	mpsa-cpe -version                                 print the version
//	mpsa-cpe [-config FILE] status [-socket PATH] [-json] [sas|mpsa|bgp|routes]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/configs/liteconf"
	"github.com/mpsa-vpn/mpsa/cpe"
	"github.com/mpsa-vpn/mpsa/internal/ops"
)

// Set at link time by firmware/ (-X main.version=... -X main.commit=...).
var version, commit string

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("mpsa-cpe", flag.ContinueOnError)
	file := fs.String("config", "/etc/mpsa/cpe.yaml", "configuration file")
	test := fs.Bool("test", false, "check the configuration and exit (non-zero when it is bad)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	socket := fs.String("socket", "", "status socket for the status command (default: the configuration's status.socket)")
	asJSON := fs.Bool("json", false, "status: print the view's data as JSON")
	liteconf.AddCPEFlags(fs)
	if fs.Parse(args) != nil {
		return 2
	}
	if *showVersion {
		fmt.Println(ops.Version("mpsa-cpe", strings.TrimSuffix(version+" ("+commit+")", " ()")))
		return 0
	}
	opts := liteconf.Options{File: *file, Flags: fs}
	if fs.Arg(0) == "status" {
		if fs.Parse(fs.Args()[1:]) != nil { // flags after the subcommand too
			return 2
		}
		args := fs.Args()
		if *asJSON {
			args = append([]string{"-json"}, args...)
		}
		path := *socket
		if cfg, _, err := liteconf.LoadCPE(opts); path == "" && err == nil {
			path = cfg.Status.Socket
		}
		if path == "" {
			path = configs.DefaultCPEStatusPath
		}
		return ops.StatusCommand(context.Background(), path, args, "overview", os.Stdout, os.Stderr)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "mpsa-cpe: unknown command %q (expected status)\n", fs.Arg(0))
		return 2
	}
	reloader, warns, err := configs.NewCPEReloader(liteconf.CPELoader(opts))
	for _, w := range warns {
		fmt.Fprintf(os.Stderr, "mpsa-cpe: %s: warning: %s\n", *file, w)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mpsa-cpe:", err)
		return 1
	}
	if *test {
		fmt.Printf("mpsa-cpe: %s: configuration OK\n", *file)
		return 0
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cpe.DefaultMemoryLimit)
	}
	cfg := reloader.Current()
	log, err := ops.NewLogger(os.Stderr, cfg.Log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mpsa-cpe:", err)
		return 1
	}
	c, err := cpe.New(cfg, log.Logger)
	if err != nil {
		log.Error("cannot start", "component", "cpe", "err", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx); cancel() }()
	ops.WaitSignals(ctx, func() {
		if cfg, _ := c.ReloadFrom(reloader); cfg != nil { // logs what it cannot apply
			_ = log.SetLevel(cfg.Log.Level)
		}
	})
	cancel()
	if err := <-done; err != nil {
		log.Error("stopped", "component", "cpe", "err", err)
		return 1
	}
	return 0
}
