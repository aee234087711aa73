// Command mpsa-hub is the hub of an mpsa overlay VPN: it authenticates the
// CPEs with IKEv2, hands each group's CPEs their shared ESP SA (MPSA) and
// reflects their routes over BGP. See package hub; this is its thin main.
//
//	mpsa-hub [-config /etc/mpsa/hub.yaml] [--bgp.router_id=...]   run
//	mpsa-hub -test [-config FILE]                                 check the configuration
//	mpsa-hub status [-socket PATH] [-json] [sas|groups|cpes|bgp [GROUP...]|routes [GROUP...]]
//	mpsa-hub rekey [-socket PATH] [-json] GROUP                  roll a group over to a new SA now
//	mpsa-hub -version
//
// SIGHUP reloads the configuration (a bad one is reported and the running
// one kept); SIGINT and SIGTERM stop the hub.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/configs/viperconf"
	"github.com/mpsa-vpn/mpsa/hub"
	"github.com/mpsa-vpn/mpsa/internal/ops"
)

// build is set at link time: -ldflags "-X main.build=v1.2.3".
var build string

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) > 0 && args[0] == "status":
		return ops.StatusMain("mpsa-hub", args[1:], configs.DefaultHubStatusPath, "sas", stdout, stderr)
	case len(args) > 0 && args[0] == "rekey":
		return ops.CommandMain("mpsa-hub", "rekey", args[1:], configs.DefaultHubStatusPath, stdout, stderr)
	}
	// -config and --config alike (pflag reads -config as shorthands).
	for i, a := range args {
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			args[i] = "-" + a
		}
	}
	fs := pflag.NewFlagSet("mpsa-hub", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "/etc/mpsa/hub.yaml", "configuration file")
	test := fs.Bool("test", false, "check the configuration, report every problem and exit")
	version := fs.Bool("version", false, "print the version and exit")
	viperconf.AddHubFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version {
		fmt.Fprintln(stdout, ops.Version("mpsa-hub", build))
		return 0
	}
	rl, warns, err := configs.NewHubReloader(viperconf.HubLoader(viperconf.Options{File: *file, Flags: fs}))
	for _, w := range warns {
		fmt.Fprintf(stderr, "%s: warning: %s\n", *file, w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *file, err)
		return 1
	}
	if *test {
		fmt.Fprintf(stdout, "%s: configuration OK: %v\n", *file, rl.Current())
		return 0
	}
	logger, err := ops.NewLogger(stderr, rl.Current().Log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	h, err := hub.New(rl.Current(), logger.Logger)
	if err != nil {
		logger.Error("hub not started", "err", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		sig := ops.WaitSignals(ctx, func() {
			if _, err := h.ReloadFrom(rl); err == nil {
				logger.SetLevel(rl.Current().Log.Level)
			}
		})
		if sig != nil {
			logger.Info("stopping", "reason", sig.String())
			cancel()
		}
	}()
	if err := h.Run(ctx); err != nil {
		logger.Error("hub failed", "err", err)
		return 1
	}
	return 0
}
