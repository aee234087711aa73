//go:build linux

package xfrm

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
)

// These tests program a real kernel in a namespace of their own. Policies
// need no ESP, so they run on any Linux as root; what needs ESP states is
// in kernel_test.go.

// applied collects the results of the backend's own reconciliations.
type applied chan error

// hook never blocks the backend: when the channel is full, waitFor has
// events left to wake on, and it re-checks the live state each time.
func (a applied) hook(err error) {
	select {
	case a <- err:
	default:
	}
}

// waitFor re-checks cond after every reconciliation until it holds.
func (a applied) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case err := <-a:
			if err != nil {
				t.Errorf("reconciliation: %v", err)
			}
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// noRoutines fails the test if a backend's goroutine outlived Close.
func noRoutines(t *testing.T) {
	t.Cleanup(func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		if strings.Contains(string(buf), "xfrm.(*Backend).routineFollowRoutes") {
			t.Errorf("a backend goroutine is still running after Close:\n%s", buf)
		}
	})
}

func upsert(t *testing.T, fib *routing.FIB, prefix, endpoint string, tunnel routing.Tunnel) {
	t.Helper()
	r := routing.Route{Prefix: netip.MustParsePrefix(prefix), Tunnel: tunnel, Source: routing.SourceBGP,
		Peer: netip.MustParseAddr("198.51.100.1"), LocalPref: 100}
	if endpoint != "" {
		r.Endpoint = netip.MustParseAddrPort(endpoint)
	}
	if err := fib.Upsert(r); err != nil {
		t.Fatal(err)
	}
}

func connected(t *testing.T, fib *routing.FIB, prefix string) {
	t.Helper()
	if err := fib.Upsert(routing.Route{Prefix: netip.MustParsePrefix(prefix), Source: routing.SourceConnected}); err != nil {
		t.Fatal(err)
	}
}

// kernelPolicies lists every policy of the namespace, through a handle of
// the test's own.
func kernelPolicies(t *testing.T, ns *testenv.Netns) []netlink.XfrmPolicy {
	t.Helper()
	h := nsHandle(t, ns)
	pols, err := h.XfrmPolicyList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	return pols
}

func nsHandle(t *testing.T, ns *testenv.Netns) *netlink.Handle {
	t.Helper()
	n, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	h, err := netlink.NewHandleAt(n, unix.NETLINK_XFRM)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// TestPoliciesInKernel follows a FIB without SAs: every tunnelled prefix is
// blocked, which the kernel holds exactly as rendered.
func TestPoliciesInKernel(t *testing.T) {
	noRoutines(t)
	ns := testenv.NewNetns(t, "xfp")
	fib := routing.New()
	upsert(t, fib, "10.2.0.0/24", "192.0.2.2:4500", 1)
	upsert(t, fib, "fd00:0:0:2::/64", "[2001:db8::2]:4500", 1)
	upsert(t, fib, "10.0.0.0/8", "192.0.2.3:0", 1)
	connected(t, fib, "10.1.0.0/24")
	got := make(applied, 16)
	b, err := New(Config{Netns: ns.Name, Routes: fib, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:4500")},
		PriorityBase: 1000, ReqIDBase: 0x100, Applied: got.hook})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	want := `policy fwd src 10.0.0.0/8 dst 0.0.0.0/0 prio 1024 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy fwd src 10.1.0.0/24 dst 0.0.0.0/0 prio 1008 allow
policy fwd src 10.2.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy fwd src fd00:0:0:2::/64 dst ::/0 prio 1064 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src 10.0.0.0/8 dst 0.0.0.0/0 prio 1024 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src 10.1.0.0/24 dst 0.0.0.0/0 prio 1008 allow
policy in src 10.2.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy in src fd00:0:0:2::/64 dst ::/0 prio 1064 tmpl src 0.0.0.0 dst 192.0.2.1 reqid 0x100
policy out src 0.0.0.0/0 dst 10.0.0.0/8 prio 1024 block
policy out src 0.0.0.0/0 dst 10.1.0.0/24 prio 1008 allow
policy out src 0.0.0.0/0 dst 10.2.0.0/24 prio 1008 block
policy out src ::/0 dst fd00:0:0:2::/64 prio 1064 block
`
	checkGolden(t, "backend records", b.Text(), want)
	kt, err := b.KernelText()
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "kernel", kt, want)

	// The FIB moves on; the backend follows.
	if err := fib.Withdraw(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParseAddr("198.51.100.1")); err != nil {
		t.Fatal(err)
	}
	upsert(t, fib, "10.3.0.0/24", "192.0.2.3:0", 1)
	got.waitFor(t, "10.0.0.0/8 withdrawn and 10.3.0.0/24 added", func() bool {
		kt, err := b.KernelText()
		return err == nil && !strings.Contains(kt, "10.0.0.0/8") && !strings.Contains(kt, "10.1.0.0/24") &&
			strings.Contains(kt, "policy out src 0.0.0.0/0 dst 10.3.0.0/24 prio 1008 block")
	})
	if kt, _ := b.KernelText(); kt != b.Text() {
		t.Errorf("kernel and records differ:\n%s\nrecords:\n%s", kt, b.Text())
	}

	// Idempotence: an empty State again changes nothing.
	if err := b.Set(&dataplane.State{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if pols := kernelPolicies(t, ns); len(pols) != 0 {
		t.Errorf("%d policies left after Close", len(pols))
	}
	if err := b.Set(&dataplane.State{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Set after Close: %v", err)
	}
}

// TestStaleObjectsFlushed: a backend that died without Close leaves its
// policies; the next one in the same band removes them, and leaves other
// bands alone.
func TestStaleObjectsFlushed(t *testing.T) {
	noRoutines(t)
	ns := testenv.NewNetns(t, "xfs")
	fib := routing.New()
	upsert(t, fib, "10.2.0.0/24", "192.0.2.2:4500", 1)
	ep := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:4500")}
	first, err := New(Config{Netns: ns.Name, Routes: fib, Endpoints: ep})
	if err != nil {
		t.Fatal(err)
	}
	otherFIB := routing.New()
	upsert(t, otherFIB, "10.5.0.0/24", "192.0.2.5:4500", 1)
	other, err := New(Config{Netns: ns.Name, Routes: otherFIB, Endpoints: ep, PriorityBase: 5000, ReqIDBase: 0x5000})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// Forget the first backend without removing anything, as a crash would.
	first.cancel()
	<-first.done
	first.closeHandles()
	if n := len(kernelPolicies(t, ns)); n != 6 {
		t.Fatalf("%d policies before the restart, want 6", n)
	}

	second, err := New(Config{Netns: ns.Name, Endpoints: ep})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(kernelPolicies(t, ns)); n != 3 {
		t.Errorf("%d policies after the restart, want the other band's 3", n)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	otherText, err := other.KernelText()
	if err != nil || otherText != other.Text() || otherText == "" {
		t.Errorf("the other band was touched: %v\n%s", err, otherText)
	}
}

func TestSetRefuses(t *testing.T) {
	noRoutines(t)
	ns := testenv.NewNetns(t, "xfr")
	b, err := New(Config{Netns: ns.Name, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:4500")}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Set(nil); err == nil {
		t.Error("Set(nil) accepted")
	}
	bad := &dataplane.State{SAs: []dataplane.SA{{Keys: testKeys(0x1001, suiteCBC, 1), Dir: dataplane.Out}}}
	if err := b.Set(bad); err == nil || !strings.Contains(err.Error(), "without a tunnel") {
		t.Errorf("invalid State: %v", err)
	}
	sender := &dataplane.State{SAs: []dataplane.SA{{Keys: testKeys(0x1001, suiteGCM, 1), Dir: dataplane.Both, Tunnel: 1, SenderIDBits: 8, SenderID: 1}}}
	if err := b.Set(sender); !errors.Is(err, ErrSenderID) {
		t.Errorf("Sender-ID State: %v, want ErrSenderID", err)
	}
	if b.Text() != "" {
		t.Errorf("a refused State installed something:\n%s", b.Text())
	}
	if _, err := New(Config{Netns: "/nonexistent/ns"}); err == nil {
		t.Error("New in a namespace that does not exist")
	}
	if _, err := New(Config{Netns: ns.Name, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:4500")}}); err == nil {
		t.Error("New with an unspecified endpoint")
	}
}

// TestProbe runs the probe in a fresh namespace: it either succeeds and
// leaves nothing behind, or says why the kernel cannot do ESP.
func TestProbe(t *testing.T) {
	ns := testenv.NewNetns(t, "xfq")
	err := Probe(ns.Name)
	switch {
	case err == nil:
		h := nsHandle(t, ns)
		states, lerr := h.XfrmStateList(netlink.FAMILY_ALL)
		if lerr != nil || len(states) != 0 {
			t.Errorf("probe left %d states (%v)", len(states), lerr)
		}
	case errors.Is(err, ErrNoKernelESP):
		t.Logf("this kernel has no ESP: %v", err)
		if inVM() {
			t.Errorf("the VM's kernel must have ESP: %v", err)
		}
	default:
		t.Fatalf("probe could not tell: %v", err)
	}
	if err := Probe("/nonexistent/ns"); err == nil || errors.Is(err, ErrNoKernelESP) {
		t.Errorf("probe of a missing namespace: %v", err)
	}
}

func TestPrepareIKESocket(t *testing.T) {
	ns := testenv.NewNetns(t, "xfk")
	for _, network := range []string{"udp4", "udp6"} {
		var conn *net.UDPConn
		err := ns.Do(func() error {
			var err error
			conn, err = net.ListenUDP(network, nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := PrepareIKESocket(conn); err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		rc, _ := conn.SyscallConn()
		var v int
		var gerr error
		rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_ENCAP) })
		if gerr != nil || v != unix.UDP_ENCAP_ESPINUDP {
			t.Errorf("%s: UDP_ENCAP = %d (%v), want ESPINUDP", network, v, gerr)
		}
	}
}

func TestParseXfrmStat(t *testing.T) {
	in := "XfrmInError             \t0\nXfrmInNoStates          \t7\nXfrmInStateProtoError   \t2\nXfrmInTmplMismatch\t3\nXfrmInPolBlock\t1\nXfrmOutPolBlock\t4\nXfrmAcquireError\t5\n"
	drops := make(map[string]uint64)
	if err := parseXfrmStat([]byte(in), drops); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"unknown_spi": 7, "bad_icv": 2, "selector": 4, "no_sa": 4, "other": 5}
	if len(drops) != len(want) {
		t.Errorf("drops %v, want %v", drops, want)
	}
	for k, v := range want {
		if drops[k] != v {
			t.Errorf("drops[%s] = %d, want %d", k, drops[k], v)
		}
	}
	for _, bad := range []string{"XfrmInError\n", "XfrmInError\tx\n", "XfrmInError\t-1\n"} {
		if err := parseXfrmStat([]byte(bad), map[string]uint64{}); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

// FuzzParseXfrmStat: the kernel's file is trusted, but the parser must not
// panic or allocate without bound whatever it reads.
func FuzzParseXfrmStat(f *testing.F) {
	f.Add([]byte("XfrmInNoStates\t7\nXfrmOutPolBlock \t 4\n"))
	f.Add([]byte("XfrmInNoStates 99999999999999999999\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		drops := make(map[string]uint64)
		if err := parseXfrmStat(b, drops); err == nil && len(drops) > len(xfrmStatDrops)+1 {
			t.Fatalf("%d drop reasons from %q", len(drops), b)
		}
	})
}

// TestReadXfrmStat reads a namespace's real file through an open handle.
func TestReadXfrmStat(t *testing.T) {
	ns := testenv.NewNetns(t, "xft")
	n, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	f, err := openXfrmStat(n)
	if err != nil {
		testenv.Skip(t, "kernel without CONFIG_XFRM_STATISTICS: "+err.Error())
	}
	defer f.Close()
	for range 2 { // the open file can be read again from the start
		drops := make(map[string]uint64)
		if err := readXfrmStat(f, drops); err != nil {
			t.Fatal(err)
		}
		if len(drops) != 0 {
			t.Errorf("a fresh namespace has drops: %v", drops)
		}
	}
}
