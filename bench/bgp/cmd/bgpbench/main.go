// Command bgpbench runs the BGP load test against one route reflector:
// bare GoBGP (rr-gobgp), our hub (rr-hub, plain or restarting) or BIRD 2.
// The reflector runs as its own process so its CPU time and RSS are its
// own; the simulated CPEs (package loadgen) run in this one. It prints one
// result line.
//
//	bgpbench -rr gobgp -bin ./bin -n 1000 -k 4
//
// For diagnosis: -bird-log has BIRD log its protocols' states and events,
// -cpe-log logs the simulated CPEs' sessions, -inflight sets how many of
// them may be connecting at once.
//
// -count runs the load generator's counting CPEs (loadgen.Config.Count)
// instead of bgp/speakers, for N beyond what N full RIBs fit in memory.
// Every -progress interval a progress line goes to stderr (sessions,
// converged CPEs, routes delivered, reflector CPU and RSS so far); a run that
// fails, times out, is interrupted (SIGINT/SIGTERM) or whose reflector passes
// -max-rr-rss prints a result line with "FAILED" and the figures up to then.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mpsa-vpn/mpsa/bench/bgp/loadgen"
	"github.com/mpsa-vpn/mpsa/bench/bgp/scenario"
)

func main() {
	kind := flag.String("rr", "gobgp", "route reflector: gobgp, gobgp2 (two meshed instances), hub, hub-restarting, bird")
	bin := flag.String("bin", "./bin", "directory with rr-gobgp and rr-hub")
	n := flag.Int("n", 1000, "simulated CPEs")
	k := flag.Int("k", 4, "prefixes per CPE (half IPv4, half IPv6)")
	port := flag.Int("port", 11179, "route reflector port on 127.0.0.1")
	timeout := flag.Duration("timeout", 15*time.Minute, "give up after")
	phased := flag.Bool("phased", false, "establish every session first, then let every CPE announce at once")
	flag.StringVar(&rrProfile, "rr-cpuprofile", "", "have rr-gobgp / rr-hub write a CPU profile here")
	flag.StringVar(&rrMemProfile, "rr-memprofile", "", "have rr-gobgp / rr-hub write a heap profile here at the end")
	flag.IntVar(&inFlight, "inflight", 128, "concurrent connection attempts of the simulated CPEs")
	flag.BoolVar(&cpeLog, "cpe-log", false, "log the simulated CPEs' sessions (Debug) to stderr")
	flag.StringVar(&birdLog, "bird-log", "", "have BIRD log protocol states and events to this file")
	flag.BoolVar(&countMode, "count", false, "counting CPEs: received routes counted in a bitset, not stored (for large N)")
	flag.DurationVar(&progressEvery, "progress", 30*time.Second, "progress line to stderr this often (0: none)")
	flag.Float64Var(&maxRRRSS, "max-rr-rss", 6144, "stop when the reflector's RSS passes this many MiB (0: no limit)")
	flag.Parse()
	if err := run(*kind, *bin, *n, *k, *port, *timeout, *phased); err != nil {
		fmt.Fprintln(os.Stderr, "bgpbench:", err)
		os.Exit(1)
	}
}

var (
	rrProfile, rrMemProfile, birdLog string
	inFlight                         int
	cpeLog, countMode                bool
	progressEvery                    time.Duration
	maxRRRSS                         float64
)

type rrProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	dir   string
}

func startRR(kind, bin string, n, port int) (*rrProc, error) {
	p := &rrProc{}
	switch kind {
	case "gobgp":
		p.cmd = exec.Command(filepath.Join(bin, "rr-gobgp"), "-port", strconv.Itoa(port))
	case "gobgp-a":
		p.cmd = exec.Command(filepath.Join(bin, "rr-gobgp"), "-port", strconv.Itoa(port), "-listen", "127.0.0.1",
			"-dynamic", "127.1.0.0/16", "-mesh", "127.0.0.2", "-id", "10.255.255.1")
	case "gobgp-b":
		p.cmd = exec.Command(filepath.Join(bin, "rr-gobgp"), "-port", strconv.Itoa(port), "-listen", "127.0.0.2",
			"-dynamic", "127.1.0.0/16", "-mesh", "127.0.0.1", "-id", "10.255.255.2")
	case "hub", "hub-restarting":
		p.cmd = exec.Command(filepath.Join(bin, "rr-hub"), "-listen", fmt.Sprintf("127.0.0.1:%d", port),
			"-n", strconv.Itoa(n), "-restarting="+strconv.FormatBool(kind == "hub-restarting"))
	case "bird":
		dir, err := os.MkdirTemp("", "bgpbench-bird")
		if err != nil {
			return nil, err
		}
		p.dir = dir
		logConf := ""
		if birdLog != "" {
			logConf = fmt.Sprintf("log %q all;\ndebug protocols { states, events };\n", birdLog)
		}
		conf := logConf + scenario.BirdConfig(port)
		if err := os.WriteFile(filepath.Join(dir, "bird.conf"), []byte(conf), 0o600); err != nil {
			return nil, err
		}
		p.cmd = exec.Command("bird", "-f", "-c", filepath.Join(dir, "bird.conf"), "-s", filepath.Join(dir, "bird.ctl"))
	default:
		return nil, fmt.Errorf("unknown route reflector %q", kind)
	}
	if rrProfile != "" && kind != "bird" {
		p.cmd.Args = append(p.cmd.Args, "-cpuprofile", rrProfile)
	}
	if rrMemProfile != "" && kind != "bird" {
		p.cmd.Args = append(p.cmd.Args, "-memprofile", rrMemProfile)
	}
	p.cmd.Stderr = os.Stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	if kind == "bird" {
		go io.Copy(io.Discard, out)
		// BIRD has no readiness signal: wait for its listener.
		deadline := time.Now().Add(30 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				p.stop()
				return nil, fmt.Errorf("bird does not listen: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return p, nil
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		p.stop()
		return nil, fmt.Errorf("%s did not start: %q %v", kind, line, err)
	}
	go io.Copy(io.Discard, out)
	return p, nil
}

func (p *rrProc) stop() {
	p.stdin.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

// procCPU returns the process's user+system CPU time.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// procRSS returns VmRSS and VmHWM in MiB.
func procRSS(pid int) (cur, peak float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			cur = v / 1024
		case "VmHWM:":
			peak = v / 1024
		}
	}
	return cur, peak
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func run(kind, bin string, n, k, port int, timeout time.Duration, phased bool) error {
	kinds := []string{kind}
	hubs := []string{fmt.Sprintf("127.0.0.1:%d", port)}
	if kind == "gobgp2" {
		kinds = []string{"gobgp-a", "gobgp-b"}
		hubs = append(hubs, fmt.Sprintf("127.0.0.2:%d", port))
	}
	var pids []int
	for _, k := range kinds {
		rr, err := startRR(k, bin, n, port)
		if err != nil {
			return err
		}
		defer rr.stop()
		pids = append(pids, rr.cmd.Process.Pid)
	}
	cpu := func() time.Duration {
		var t time.Duration
		for _, p := range pids {
			c, _ := procCPU(p)
			t += c
		}
		return t
	}
	rss := func() (cur, peak float64) {
		for _, p := range pids {
			c, h := procRSS(p)
			cur, peak = cur+c, peak+h
		}
		return cur, peak
	}
	cpu0 := cpu()
	self0 := selfCPU()
	mode := "storm"
	if phased {
		mode = "phased"
	}
	lmode := "speaker"
	if countMode {
		lmode = "count"
	}

	lcfg := loadgen.Config{N: n, K: k, Hubs: hubs, Phased: phased, MaxInFlight: inFlight, Count: countMode}
	if countMode { // lost sessions of counting CPEs (Warn)
		lcfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if cpeLog {
		lcfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cpes, err := loadgen.Start(lcfg)
	if err != nil {
		return err
	}
	defer cpes.Stop()
	t0 := time.Now()
	sigCtx, stopSig := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSig()
	tctx, cancel := context.WithTimeout(sigCtx, timeout)
	defer cancel()
	ctx, abort := context.WithCancelCause(tctx)
	defer abort(nil)

	// Measured interval: from the start (storm) or from Advertise (phased).
	var mu sync.Mutex
	var phase = "setup"
	measureFrom := time.Now()
	report := func(prefix string) string {
		mu.Lock()
		ph, from, c0, s0 := phase, measureFrom, cpu0, self0
		mu.Unlock()
		p := cpes.Progress()
		rc := cpu() - c0
		cur, hwm := rss()
		per := 0.0
		if p.Delivered > 0 {
			per = float64(rc.Microseconds()) / float64(p.Delivered)
		}
		line := fmt.Sprintf("%s phase=%s t=%.0fs since_measure=%.0fs established=%d up=%d converged=%d delivered=%d of=%d updates_in=%d rr_cpu=%.1fs rr_cpu_per_delivered=%.2fus rr_rss=%.0fMiB rr_hwm=%.0fMiB loadgen_cpu=%.1fs",
			prefix, ph, time.Since(t0).Seconds(), time.Since(from).Seconds(), p.Established, p.Up, p.Converged,
			p.Delivered, int64(n)*int64(n-1)*int64(k), p.UpdatesIn, rc.Seconds(), per, cur, hwm, (selfCPU() - s0).Seconds())
		return line + countFields(p)
	}
	go func() {
		watch := time.NewTicker(5 * time.Second)
		defer watch.Stop()
		last := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-watch.C:
			}
			if cur, _ := rss(); maxRRRSS > 0 && cur > maxRRRSS {
				abort(fmt.Errorf("reflector RSS %.0f MiB passed -max-rr-rss %.0f MiB", cur, maxRRRSS))
				return
			}
			if progressEvery > 0 && time.Since(last) >= progressEvery {
				last = time.Now()
				fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().UTC().Format(time.TimeOnly), report("progress rr="+kind+" mode="+mode+" loadgen="+lmode))
			}
		}
	}()
	fail := func(err error) error {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, err) {
			err = fmt.Errorf("%w (%v)", err, c)
		}
		fmt.Printf("rr=%s mode=%s n=%d k=%d loadgen=%s FAILED partial: %s\n", kind, mode, n, k, lmode, report("at_failure"))
		return err
	}

	var up time.Duration
	if phased {
		if up, err = cpes.WaitEstablished(ctx); err != nil {
			return fail(err)
		}
		mu.Lock()
		cpu0 = cpu()
		self0 = selfCPU()
		phase, measureFrom = "mesh", time.Now()
		mu.Unlock()
		cpes.Advertise()
	} else {
		mu.Lock()
		phase = "mesh"
		mu.Unlock()
	}
	up2, mesh, err := cpes.WaitFullMesh(ctx)
	if err != nil {
		return fail(err)
	}
	if !phased {
		up = up2
	}
	cpu1 := cpu()
	self1 := selfCPU()
	updates := cpes.UpdatesIn()
	rssMesh, _ := rss()
	mu.Lock()
	phase = "incremental"
	mu.Unlock()
	inc, err := cpes.Incremental(ctx)
	if err != nil {
		return fail(err)
	}
	rssNow, hwm := rss()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	extra := countFields(cpes.Progress())
	fmt.Printf("rr=%s mode=%s n=%d k=%d established=%.2fs fullmesh=%.2fs incremental=%.1fms rr_cpu=%.1fs rr_cpu_per_delivery=%.2fus rr_rss=%.0fMiB rr_rss_after_inc=%.0fMiB rr_hwm=%.0fMiB loadgen_cpu=%.1fs updates_in=%d loadgen=%s loadgen_heap=%.0fMiB%s\n",
		kind, mode, n, k, up.Seconds(), mesh.Seconds(), float64(inc.Microseconds())/1000,
		(cpu1 - cpu0).Seconds(), float64((cpu1-cpu0).Microseconds())/float64(n*(n-1)*k),
		rssMesh, rssNow, hwm, (self1 - self0).Seconds(), updates, lmode, float64(ms.HeapSys)/(1<<20), extra)
	return nil
}

// countFields are the counting CPEs' own figures for a result or progress
// line (none in speaker mode).
func countFields(p loadgen.Progress) string {
	if !countMode {
		return ""
	}
	return fmt.Sprintf(" lost=%d eor=%d malformed=%d foreign=%d no_encap=%d other_family=%d",
		p.Lost, p.EndOfRIB, p.Malformed, p.Foreign, p.NoEncap, p.OtherFamily)
}
