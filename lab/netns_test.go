package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// TestNamespaces builds a switch and two hosts with the lab's primitives,
// pings across (IPv4 and IPv6) while capturing on one link, and sweeps it
// all away.
func TestNamespaces(t *testing.T) {
	testenv.Root(t)
	if err := Check(); err != nil {
		testenv.Skip(t, err.Error())
	}
	name := fmt.Sprintf("t%d", os.Getpid()%100000)
	t.Cleanup(func() { Sweep(name, "") })
	sw, h1, h2 := nsName(name, "sw"), nsName(name, "h1"), nsName(name, "h2")
	for _, ns := range []string{sw, h1, h2} {
		if err := createNS(ns); err != nil {
			t.Fatal(err)
		}
	}
	if err := addBridge(sw, "br0"); err != nil {
		t.Fatal(err)
	}
	a4, b4 := netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24")
	a6, b6 := netip.MustParsePrefix("2001:db8::1/64"), netip.MustParsePrefix("2001:db8::2/64")
	for _, h := range []struct {
		ns, port string
		addrs    []netip.Prefix
	}{{h1, "p1", []netip.Prefix{a4, a6}}, {h2, "p2", []netip.Prefix{b4, b6}}} {
		if err := veth(sw, h.port, h.ns, "eth0", "br0"); err != nil {
			t.Fatal(err)
		}
		if err := addrAdd(h.ns, "eth0", h.addrs...); err != nil {
			t.Fatal(err)
		}
	}
	if got := nsPIDs(h1); len(got) != 0 {
		t.Errorf("processes in a fresh namespace: %v", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	capt, err := StartCapture(h2, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	rx0, _, err := linkStats(h2, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range []netip.Addr{b4.Addr(), b6.Addr()} {
		st, err := Ping(ctx, h1, dst, 5, 20*time.Millisecond, 10*time.Second)
		if err != nil || st.Sent != 5 || st.Received != 5 || len(st.Lost) != 0 {
			t.Errorf("ping %v: %v %v", dst, st, err)
		}
	}
	pkts := capt.Stop()
	rx1, _, _ := linkStats(h2, "eth0")
	echo := map[Family]int{}
	for _, p := range pkts {
		if p.Info.Src == a4.Addr() && p.Info.Proto == 1 || p.Info.Src == a6.Addr() && p.Info.Proto == 58 {
			echo[p.Info.Family]++
		}
	}
	// At least the 5 counted requests of each family (plus PingUntil's).
	if echo[IPv4] < 5 || echo[IPv6] < 5 {
		t.Errorf("captured %v echo requests from h1, want at least 5 of each family (of %d frames)", echo, len(pkts))
	}
	if rx1-rx0 < 10 {
		t.Errorf("eth0 counters grew by %d packets", rx1-rx0)
	}

	// A pinger to an address nobody has accounts for every loss.
	p, err := NewPinger(h1, netip.MustParseAddr("192.0.2.99"))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		p.Send()
	}
	st := p.Settle(ctx, 200*time.Millisecond)
	p.Close()
	if st.Sent != 3 || len(st.Lost) != 3 || st.Received != 0 {
		t.Errorf("unanswered pings: %v", st)
	}

	if err := Sweep(name, ""); err != nil {
		t.Fatal(err)
	}
	if left := listNS(nsName(name, "")); len(left) != 0 {
		t.Errorf("left after Sweep: %v", left)
	}
}
