// Command cpe-rss measures the CPE speaker's memory with many received
// routes. It starts a route reflector (rr-gobgp), feeds it R routes from a
// feeder speaker, then starts itself as a child process that runs one CPE
// speaker (package bgp/speaker, whose sink only counts) until it holds all
// R routes, and reports the child's RSS.
//
//	cpe-rss -bin ./bin -routes 100000
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/routing"
)

func main() {
	bin := flag.String("bin", "./bin", "directory with rr-gobgp")
	routes := flag.Int("routes", 100000, "routes the CPE receives (half IPv4, half IPv6)")
	port := flag.Int("port", 11279, "route reflector port on 127.0.0.1")
	child := flag.Bool("child", false, "run as the measured CPE (internal)")
	fib := flag.Bool("fib", false, "child keeps every route in a map, a stand-in for the FIB, to show its share")
	flag.Parse()
	var err error
	if *child {
		err = runChild(*port, *routes, *fib)
	} else {
		err = runDriver(*bin, *port, *routes, *fib)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpe-rss:", err)
		os.Exit(1)
	}
}

// feedPrefixes are the routes the feeder announces: IPv4 /28s in 10/8 and
// IPv6 /64s in fd00::/16, alternating.
func feedPrefixes(n int) []netip.Prefix {
	out := make([]netip.Prefix, 0, n)
	for i := range n {
		v := uint32(i / 2)
		if i%2 == 0 {
			a := 10<<24 | v<<4
			out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), 28))
		} else {
			var b [16]byte
			b[0], b[4], b[5], b[6], b[7] = 0xfd, byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
			out = append(out, netip.PrefixFrom(netip.AddrFrom16(b), 64))
		}
	}
	return out
}

type countSink struct {
	sp     *speaker.Speaker
	want   int
	done   chan struct{}
	closed atomic.Bool
	fib    map[netip.Prefix]routing.Route
}

func (s *countSink) Upsert(r routing.Route) error {
	if s.fib != nil {
		s.fib[r.Prefix] = r
	}
	if s.sp.Routes() >= s.want && s.closed.CompareAndSwap(false, true) {
		close(s.done)
	}
	return nil
}
func (s *countSink) Withdraw(p netip.Prefix, _ netip.Addr) error {
	if s.fib != nil {
		delete(s.fib, p)
	}
	return nil
}
func (s *countSink) WithdrawPeer(netip.Addr) {}

func speakerFrom(addr string, port int, prefixes []netip.Prefix, sink speaker.RouteSink) (*speaker.Speaker, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}}
	return speaker.New(speaker.Config{
		ASN: 65000, RouterID: netip.MustParseAddr(addr),
		Dial: func(ctx context.Context) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		},
		Prefixes: prefixes, Endpoint: netip.MustParseAddrPort("198.18.0.1:4500"), Sink: sink,
		HoldTime: 240 * time.Second, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
	})
}

func runDriver(bin string, port, routes int, fib bool) error {
	rr := exec.Command(filepath.Join(bin, "rr-gobgp"), "-port", strconv.Itoa(port))
	rr.Stderr = os.Stderr
	out, _ := rr.StdoutPipe()
	in, _ := rr.StdinPipe()
	if err := rr.Start(); err != nil {
		return err
	}
	defer func() { in.Close(); rr.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		return fmt.Errorf("rr-gobgp: %q %v", line, err)
	}
	go io.Copy(io.Discard, out)

	// The feeder: its routes reach the reflector before the CPE connects,
	// so the CPE gets them in the reflector's packed initial dump, as a
	// CPE joining a large group does.
	established := make(chan struct{})
	var once atomic.Bool
	feeder, err := speaker.New(speaker.Config{
		ASN: 65000, RouterID: netip.MustParseAddr("127.2.0.1"),
		Dial: func(ctx context.Context) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.2.0.1")}}
			return d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		},
		Prefixes: feedPrefixes(routes), Endpoint: netip.MustParseAddrPort("198.18.9.9:4500"),
		Sink: &countSink{want: 1 << 30, done: make(chan struct{})}, HoldTime: 240 * time.Second,
		OnState: func(s speaker.State) {
			if s == speaker.StateEstablished && once.CompareAndSwap(false, true) {
				close(established)
			}
		},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go feeder.Run(ctx)
	<-established
	// The feeder's UPDATEs are written in order at Established; give the
	// reflector's RIB time to fill: the child retries until it has all.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-child", "-port", strconv.Itoa(port), "-routes", strconv.Itoa(routes)}
	if fib {
		args = append(args, "-fib")
	}
	c := exec.Command(self, args...)
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	return c.Run()
}

func status(field string) float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v / 1024
		}
	}
	return 0
}

func runChild(port, routes int, fib bool) error {
	sink := &countSink{want: routes, done: make(chan struct{})}
	if fib {
		sink.fib = make(map[netip.Prefix]routing.Route)
	}
	sp, err := speakerFrom("127.2.0.2", port, nil, sink)
	if err != nil {
		return err
	}
	sink.sp = sp
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t0 := time.Now()
	go func() { sp.Run(ctx); close(done) }()
	select {
	case <-sink.done:
	case <-time.After(5 * time.Minute):
		cancel()
		return fmt.Errorf("only %d of %d routes", sp.Routes(), routes)
	}
	took := time.Since(t0)
	rss := status("VmRSS")
	hwm := status("VmHWM")
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("cpe routes=%d fib_map=%v learn=%.2fs rss=%.1fMiB hwm=%.1fMiB rss_after_gc=%.1fMiB heap_inuse=%.1fMiB go_sys=%.1fMiB\n",
		sp.Routes(), fib, took.Seconds(), rss, hwm, status("VmRSS"), float64(ms.HeapInuse)/(1<<20), float64(ms.Sys)/(1<<20))
	cancel()
	<-done
	return nil
}
