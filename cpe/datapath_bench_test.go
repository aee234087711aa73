//go:build !mpsa_omit_userspace

package cpe

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
	"github.com/mpsa-vpn/mpsa/transform"
)

// BenchmarkCPEDatapath measures what the CPE's buffer pools
// (DefaultUserspaceBuffers) cost in CPE-to-CPE throughput against the
// userspace backend's own defaults, the anchor, in the same run: two
// namespaces over a veth, each with a userspace backend holding a static
// group SA (AES-128-GCM-16 with Sender-IDs, ESP-in-UDP), iperf3 TCP a→b
// through them. Variants alternate within each repetition, so load from
// other tenants falls on all of them alike. It reports per variant the
// median throughput and the median throughput per CPU second the two
// backends used (on a CPE the CPU is the limit), and the buffer memory.
//
//	go test -run '^$' -bench CPEDatapath -benchtime 1x ./cpe
//
// MPSA_BENCH_REPS (default 3) and MPSA_BENCH_SECONDS (default 5) set the
// repetitions and the length of each iperf3 run.
func BenchmarkCPEDatapath(b *testing.B) {
	testenv.Root(b)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Skip(b, "no /dev/net/tun")
	}
	testenv.Binary(b, "iperf3", "apt-get install iperf3")
	reps, secs := envInt("MPSA_BENCH_REPS", 3), envInt("MPSA_BENCH_SECONDS", 5)
	nsA, nsB := testenv.NewNetns(b, "dpa"), testenv.NewNetns(b, "dpb")
	testenv.Veth(b, nsA, "va", nsB, "vb")
	nsA.MustIP("addr", "add", "10.98.0.1/24", "dev", "va")
	nsB.MustIP("addr", "add", "10.98.0.2/24", "dev", "vb")

	variants := []struct {
		name string
		bufs UserspaceBuffers
	}{
		{"backend defaults (anchor)", UserspaceBuffers{TxBatches: 8, RxBatches: 8, RxBatchSize: 64}},
		{"cpe defaults", DefaultUserspaceBuffers},
		{"cpe defaults, no offloads", withNoOffloads(DefaultUserspaceBuffers)},
	}
	if extra := os.Getenv("MPSA_BENCH_BUFFERS"); extra != "" {
		// "tx,rx,rxsize[,nooff]", e.g. 4,4,32
		var v UserspaceBuffers
		var off string
		fmt.Sscanf(strings.ReplaceAll(extra, ",", " "), "%d %d %d %s", &v.TxBatches, &v.RxBatches, &v.RxBatchSize, &off)
		v.NoOffloads = off == "nooff"
		variants = append(variants, struct {
			name string
			bufs UserspaceBuffers
		}{"MPSA_BENCH_BUFFERS=" + extra, v})
	}
	var lines []string // per repetition, logged after the summary (the log is cut at 10 lines)
	gbps := make([][]float64, len(variants))
	perCPU := make([][]float64, len(variants))
	bufBytes := make([]int, len(variants))
	for range b.N {
		for r := range reps {
			for i, v := range variants {
				bits, cpu, bb := datapathRun(b, nsA, nsB, v.bufs, secs)
				gbps[i] = append(gbps[i], bits/1e9)
				perCPU[i] = append(perCPU[i], bits/1e9/cpu.Seconds())
				bufBytes[i] = bb
				lines = append(lines, fmt.Sprintf("rep %d %-28s %.2f Gbit/s, %.2f Gbit per CPU second (%v CPU)",
					r+1, v.name, bits/1e9, bits/1e9/cpu.Seconds(), cpu.Round(time.Millisecond)))
			}
		}
	}
	anchor, anchorCPU := median(gbps[0]), median(perCPU[0])
	for i, v := range variants {
		m, mc := median(gbps[i]), median(perCPU[i])
		b.Logf("%-28s median %.2f Gbit/s (%.2fx the anchor), %.2f Gbit per CPU second (%.2fx), buffers %.1f MiB",
			v.name, m, m/anchor, mc, mc/anchorCPU, float64(bufBytes[i])/(1<<20))
	}
	for _, l := range lines {
		b.Log(l)
	}
	b.ReportMetric(anchor, "Gbit/s-anchor")
	b.ReportMetric(median(gbps[1]), "Gbit/s-cpe")
	b.ReportMetric(median(gbps[1])/anchor, "ratio-cpe")
	b.ReportMetric(median(perCPU[1])/anchorCPU, "ratio-per-cpu-cpe")
}

func withNoOffloads(b UserspaceBuffers) UserspaceBuffers {
	b.NoOffloads = true
	return b
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// datapathRun brings up a userspace backend with bufs in each namespace,
// runs iperf3 a→b through them for secs seconds and returns the bits per
// second received, the CPU time this process (both backends) used during
// the transfer and the buffer memory of one backend.
func datapathRun(b *testing.B, nsA, nsB *testenv.Netns, bufs UserspaceBuffers, secs int) (float64, time.Duration, int) {
	b.Helper()
	s := transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}
	el, _, _ := s.KeyLens()
	key := make([]byte, el)
	for i := range key {
		key[i] = byte(i*7 + 1)
	}
	var be [2]*userspace.Backend
	for i, side := range []struct {
		ns            *testenv.Netns
		inner, remote string
		peer          string
		senderID      uint32
	}{
		{nsA, "10.98.3.1/24", "10.98.3.2/32", "10.98.0.2", 1},
		{nsB, "10.98.3.2/24", "10.98.3.1/32", "10.98.0.1", 2},
	} {
		fib := routing.New()
		err := fib.Upsert(routing.Route{Prefix: netip.MustParsePrefix(side.remote),
			Endpoint: netip.AddrPortFrom(netip.MustParseAddr(side.peer), esp.UDPEncapPort), Tunnel: 1, Source: routing.SourceStatic})
		if err != nil {
			b.Fatal(err)
		}
		// Raw ESP sockets as a CPE on wan.encapsulation auto opens them
		// (their readers wait with a batch each); the traffic is in UDP.
		cfg := userspace.Config{FIB: fib, TUNName: "cpe0", Addresses: []netip.Prefix{netip.MustParsePrefix(side.inner)}, RawESP: true,
			Logger: slog.New(slog.DiscardHandler)}
		bufs.apply(&cfg)
		err = side.ns.Do(func() error {
			var err error
			be[i], err = userspace.New(cfg)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		k := esp.Keys{SPI: 0xbe7c0001, Suite: s, EncKey: append([]byte(nil), key...)}
		err = be[i].Set(&dataplane.State{SAs: []dataplane.SA{{Keys: k, Dir: dataplane.Both, Tunnel: 1,
			SenderIDBits: 8, SenderID: side.senderID, ReplayWindow: 4096}}})
		k.Wipe()
		if err != nil {
			b.Fatal(err)
		}
	}
	defer func() {
		for _, x := range be {
			x.Close()
		}
	}()

	cpu0 := processCPU()
	bits := iperf3(b, nsB, nsA, "10.98.3.2", secs)
	cpu := processCPU() - cpu0
	return bits, cpu, be[0].BufferBytes()
}

// processCPU is the user and system time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
