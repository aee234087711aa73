package lab

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// CLIUsage is the usage text of mpsa-lab.
const CLIUsage = `usage:
  mpsa-lab up [-cpes N] [-v6=true|false] [-underlay v4|v6] [-name NAME] [-bin DIR] [-timeout D] ...
      build the lab, start the daemons, wait for convergence, ping every LAN
      host from every other, check that CPE-to-CPE traffic bypasses the hub,
      print a summary and leave the lab up
  mpsa-lab status [-name NAME]     show a running lab
  mpsa-lab down [-name NAME|-all]  stop its daemons and remove its namespaces
`

// RunCLI runs mpsa-lab with its arguments (without the program name) and
// returns the exit code. ctx ends on SIGINT/SIGTERM.
func RunCLI(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, CLIUsage)
		return 2
	}
	var err error
	switch args[0] {
	case "up":
		err = cliUp(ctx, args[1:], stdout, stderr)
	case "status":
		err = cliStatus(ctx, args[1:], stdout, stderr)
	case "down":
		err = cliDown(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, CLIUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "mpsa-lab: unknown command %q\n%s", args[0], CLIUsage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		fmt.Fprintf(stderr, "mpsa-lab: %v\n", err)
		return 1
	}
}

type usageError struct{ error }

func nameFlags(fs *flag.FlagSet) (name, dir *string) {
	name = fs.String("name", "default", "lab name (lower-case letters and digits)")
	dir = fs.String("dir", "", "lab directory (default "+DefaultDir+"/NAME)")
	return name, dir
}

func labDir(name, dir string) string {
	if dir != "" {
		return dir
	}
	return filepath.Join(DefaultDir, name)
}

func cliUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mpsa-lab up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name, dir := nameFlags(fs)
	cpes := fs.Int("cpes", 3, "number of CPEs (1.."+fmt.Sprint(MaxCPEs)+")")
	v6 := fs.Bool("v6", true, "give the LANs IPv6 prefixes too (and ping over IPv6)")
	underlay := fs.String("underlay", "v4", "underlay address family: v4 or v6")
	bin := fs.String("bin", "", "directory holding mpsa-hub and mpsa-cpe (default: next to mpsa-lab, else built from the source tree, else PATH)")
	backend := fs.String("backend", "auto", "data plane backend of the daemons: auto, userspace or xfrm")
	logLevel := fs.String("log-level", "info", "daemons' log level")
	pings := fs.Int("pings", 5, "echo requests per pair and family")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for convergence")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	fam, err := ParseFamily(*underlay)
	if err != nil {
		return err
	}
	if *cpes < 1 || *cpes > MaxCPEs {
		return fmt.Errorf("-cpes %d: expected 1 to %d", *cpes, MaxCPEs)
	}
	if err := Check(); err != nil {
		return err
	}
	hubBin, cpeBin, err := findDaemons(ctx, *bin, stderr)
	if err != nil {
		return err
	}
	cfg := Config{Name: *name, Dir: labDir(*name, *dir), CPEs: *cpes, Underlay: fam, IPv4Only: !*v6,
		HubBin: hubBin, CPEBin: cpeBin, Backend: *backend, LogLevel: *logLevel, Progress: stderr}
	l, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			fmt.Fprintln(stderr, "mpsa-lab: interrupted, removing the lab")
			l.Down(context.WithoutCancel(ctx))
		}
	}()
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	snap, err := l.WaitConverged(cctx)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	keep = true
	if err != nil {
		fmt.Fprint(stdout, l.Summary(snap, nil, nil))
		for _, n := range l.Daemons() {
			fmt.Fprintf(stderr, "--- %s log (last lines) ---\n%s\n", n, l.LogTail(n, 15))
		}
		which := "-name " + cfg.Name
		if cfg.Dir != labDir(cfg.Name, "") {
			which += " -dir " + cfg.Dir
		}
		return fmt.Errorf("%w\nthe lab stays up for inspection (logs in %s); mpsa-lab down %s removes it", err, cfg.Dir, which)
	}
	var results []PingResult
	d, derr := l.CheckDirect(ctx, func(ctx context.Context) error {
		results = l.PingMatrix(ctx, *pings)
		return nil
	})
	if ctx.Err() != nil {
		keep = false
		return ctx.Err()
	}
	fmt.Fprint(stdout, l.Summary(l.Snapshot(ctx), results, d))
	h := l.Hub()
	which := "-name " + cfg.Name
	if cfg.Dir != labDir(cfg.Name, "") {
		which += " -dir " + cfg.Dir
	}
	fmt.Fprintf(stdout, "\nthe lab is up: logs and configurations in %s\n", cfg.Dir)
	fmt.Fprintf(stdout, "  mpsa-lab status %s; %s status -socket %s groups\n", which, HubBinary, h.Socket)
	if cs := l.CPEs(); len(cs) > 1 {
		fmt.Fprintf(stdout, "  ip netns exec %s ping %v\n", cs[0].HostNS, cs[1].Hosts[0])
	}
	fmt.Fprintf(stdout, "  mpsa-lab down %s removes it\n", which)
	failed := 0
	for _, r := range results {
		if !r.OK() {
			failed++
		}
	}
	switch {
	case derr != nil:
		return derr
	case failed > 0:
		return fmt.Errorf("%d of %d ping pairs failed", failed, len(results))
	case d == nil || !d.OK():
		return errors.New("CPE-to-CPE traffic was not seen going directly between the CPEs")
	}
	return nil
}

// findDaemons locates or builds the daemons (see cliUp's -bin flag).
func findDaemons(ctx context.Context, dir string, progress io.Writer) (string, string, error) {
	if dir != "" {
		return Locate(dir)
	}
	if exe, err := os.Executable(); err == nil {
		if h, c, err := Locate(filepath.Dir(exe)); err == nil {
			return h, c, nil
		}
	}
	if wd, err := os.Getwd(); err == nil {
		if root, err := ModuleRoot(wd); err == nil {
			out := filepath.Join(DefaultDir, "bin")
			fmt.Fprintf(progress, "building %s and %s from %s into %s\n", HubBinary, CPEBinary, root, out)
			return Build(ctx, root, out)
		}
	}
	return Locate("")
}

func cliStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mpsa-lab status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name, dir := nameFlags(fs)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if err := Check(); err != nil {
		return err
	}
	l, err := Load(labDir(*name, *dir))
	if err != nil {
		if ns := listNS(nsName(*name, "")); len(ns) > 0 {
			return fmt.Errorf("%w; namespaces of lab %s remain: %v (mpsa-lab down -name %s)", err, *name, ns, *name)
		}
		return fmt.Errorf("no lab named %s is up", *name)
	}
	fmt.Fprint(stdout, l.Summary(l.Snapshot(ctx), nil, nil))
	if probs := l.Snapshot(ctx).Problems(l.joining()); len(probs) > 0 {
		fmt.Fprintf(stdout, "\nnot converged:\n")
		for _, p := range probs {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
	}
	return nil
}

func cliDown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mpsa-lab down", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name, dir := nameFlags(fs)
	all := fs.Bool("all", false, "remove every lab (every namespace named "+Prefix+"*)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if err := Check(); err != nil {
		return err
	}
	var errs []error
	if *all {
		ents, _ := os.ReadDir(DefaultDir)
		for _, e := range ents {
			d := filepath.Join(DefaultDir, e.Name())
			if l, err := Load(d); err == nil {
				errs = append(errs, l.Down(ctx))
			}
		}
		errs = append(errs, Sweep("", ""))
		fmt.Fprintln(stdout, "every lab removed")
		return errors.Join(errs...)
	}
	d := labDir(*name, *dir)
	if l, err := Load(d); err == nil {
		errs = append(errs, l.Down(ctx))
	}
	errs = append(errs, Sweep(*name, d))
	if left := listNS(nsName(*name, "")); len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces left: %v", left))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lab %s removed\n", *name)
	return nil
}
