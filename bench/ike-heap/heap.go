package ikeheap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"

	ikerate "github.com/mpsa-vpn/mpsa/bench/ike-rate"
)

// childEnv carries the initiators' job to the child process:
// "TARGET NATT COUNT MANAGERS WINDOW IKE".
const childEnv = "MPSA_IKEHEAP_INITIATORS"

// Result is one measurement.
type Result struct {
	SAs int
	// HeapPerSA is the growth of live heap (HeapAlloc after GC) per
	// established SA; StackPerSA the growth of goroutine stacks
	// (StackInuse); GoroutinesPerSA the growth of the goroutine count.
	HeapPerSA, StackPerSA, GoroutinesPerSA float64
	// HeapObjectsPerSA is the growth of live heap objects per SA.
	HeapObjectsPerSA float64
	Before, After    runtime.MemStats
}

func (r Result) String() string {
	return fmt.Sprintf("%d SAs: heap %.0f B/SA (%.1f objects), stacks %.0f B/SA, %.3f goroutines/SA",
		r.SAs, r.HeapPerSA, r.HeapObjectsPerSA, r.StackPerSA, r.GoroutinesPerSA)
}

// Options of Measure.
type Options struct {
	SAs      int // default 10,000
	Managers int // initiator managers (identities, socket pairs); default SAs/100
	Window   int // SAs being set up at a time; default 64
	// IKE is the suite both sides use, in strongSwan's spelling
	// (default ikerate.DefaultIKE).
	IKE string
	// MemProfile, when set, receives a heap profile of the established
	// state (runtime.MemProfileRate must be set before the responder is
	// built for it to see every allocation).
	MemProfile io.Writer
}

func settle() runtime.MemStats {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms
}

// Measure builds the responder, has a child process (this test binary,
// see RunChildIfAsked) establish o.SAs IKE SAs with it, and returns the
// responder's memory growth per SA.
func Measure(ctx context.Context, o Options) (Result, error) {
	if o.SAs <= 0 {
		o.SAs = 10000
	}
	if o.Managers <= 0 {
		o.Managers = max(1, o.SAs/100)
	}
	if o.Window <= 0 {
		o.Window = 64
	}
	if o.IKE == "" {
		o.IKE = ikerate.DefaultIKE
	}
	suites, err := ikerate.ParseIKEList(o.IKE)
	if err != nil {
		return Result{}, err
	}
	r, err := ikerate.NewResponder(ikerate.ResponderConfig{
		IKE: suites,
		// One pair of addresses per SA: a /17 and a /108 hold 32,767.
		Pool4: netip.MustParsePrefix("10.64.0.0/17"), Pool6: netip.MustParsePrefix("fd99::/108"),
	})
	if err != nil {
		return Result{}, err
	}
	defer r.Close()
	target, natt, err := r.Listen(netip.MustParseAddr("127.0.0.1"), 0, 0, 4<<20)
	if err != nil {
		return Result{}, err
	}
	res := Result{SAs: o.SAs}
	g0 := runtime.NumGoroutine()
	res.Before = settle()

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%v %v %d %d %d %s", childEnv, target, natt, o.SAs, o.Managers, o.Window, o.IKE))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return Result{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, err
	}
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	defer func() {
		stdin.Close() // the child drops its SAs and exits
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return Result{}, fmt.Errorf("ikeheap: initiators: %w", err)
	}
	if want := fmt.Sprintf("up %d\n", o.SAs); line != want {
		return Result{}, fmt.Errorf("ikeheap: initiators said %q, want %q", line, want)
	}
	n := int64(o.SAs)
	if err := r.WaitEstablished(ctx, n); err != nil {
		return Result{}, err
	}
	if c, st := r.Counts(), r.Manager.Stats(); c.IKEDown != 0 || st.Established != n || st.HalfOpen != 0 {
		return Result{}, fmt.Errorf("ikeheap: responder not in the steady state: %+v, %+v", c, st)
	}
	res.After = settle()
	g1 := runtime.NumGoroutine()
	f := float64(o.SAs)
	res.HeapPerSA = (float64(res.After.HeapAlloc) - float64(res.Before.HeapAlloc)) / f
	res.HeapObjectsPerSA = (float64(res.After.HeapObjects) - float64(res.Before.HeapObjects)) / f
	res.StackPerSA = (float64(res.After.StackInuse) - float64(res.Before.StackInuse)) / f
	res.GoroutinesPerSA = float64(g1-g0) / f
	if o.MemProfile != nil {
		if err := pprof.Lookup("heap").WriteTo(o.MemProfile, 0); err != nil {
			return Result{}, err
		}
	}
	return res, nil
}

// RunChildIfAsked runs the initiators when this process is Measure's
// child, and exits; otherwise it returns. TestMain calls it first.
func RunChildIfAsked() {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	if err := runChild(spec); err != nil {
		fmt.Fprintln(os.Stderr, "ikeheap initiators:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(spec string) error {
	f := strings.Fields(spec)
	if len(f) != 6 {
		return fmt.Errorf("bad job %q", spec)
	}
	target, err1 := netip.ParseAddrPort(f[0])
	natt, err2 := netip.ParseAddrPort(f[1])
	count, err3 := strconv.Atoi(f[2])
	managers, err4 := strconv.Atoi(f[3])
	window, err5 := strconv.Atoi(f[4])
	suites, err6 := ikerate.ParseIKEList(f[5])
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
		return err
	}
	in, err := ikerate.StartInitiators(context.Background(), ikerate.InitiatorConfig{
		Target: target, TargetNATT: natt, Count: count, Managers: managers, Window: window, IKE: suites})
	if err != nil {
		return err
	}
	defer in.Close()
	fmt.Printf("up %d\n", in.Up())
	// Hold the SAs until the parent closes our stdin.
	_, err = io.Copy(io.Discard, os.Stdin)
	return err
}
