package cpe

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// iperf3 runs one iperf3 TCP test: a one-off server bound to addr in
// server, a client in client for secs seconds (extra client flags, such
// as --bidir, are appended), and returns the bits per second received
// (both directions added up with --bidir).
func iperf3(tb testing.TB, server, client *testenv.Netns, addr string, secs int, extra ...string) float64 {
	tb.Helper()
	testenv.Binary(tb, "iperf3", "apt-get install iperf3")
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+30)*time.Second)
	defer cancel()
	srv := server.Command(ctx, "iperf3", "-s", "-1", "-B", addr, "--forceflush")
	out, err := srv.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	defer srv.Wait()
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), "Server listening") {
				seen = true
				close(listening)
			}
		}
	}()
	select {
	case <-listening:
	case <-ctx.Done():
		tb.Fatal("iperf3 server not listening")
	}
	args := append([]string{"-c", addr, "-t", fmt.Sprint(secs), "-O", "1", "-J"}, extra...)
	res, err := client.Run("iperf3", args...)
	if err != nil {
		tb.Fatalf("iperf3: %v\n%s", err, res)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			SumReceivedBidir struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received_bidir_reverse"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(res), &r); err != nil || r.End.SumReceived.BitsPerSecond == 0 {
		tb.Fatalf("iperf3 output (%v):\n%s", err, res)
	}
	return r.End.SumReceived.BitsPerSecond + r.End.SumReceivedBidir.BitsPerSecond
}

// envInt reads a positive integer from the environment, else def.
func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err != nil || v <= 0 {
		return def
	}
	return v
}
