package ikerate

import (
	"context"
	"errors"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/wire"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// checkGoroutines fails the test if goroutines started during it are still
// running a few seconds after its cleanups.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Fatalf("%d goroutines left behind:\n%s", runtime.NumGoroutine()-before, buf[:runtime.Stack(buf, true)])
			}
			runtime.Gosched()
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func startResponder(t *testing.T, cfg ResponderConfig) (*Responder, netip.AddrPort, netip.AddrPort) {
	t.Helper()
	r, err := NewResponder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, n, err := r.Listen(netip.MustParseAddr("127.0.0.1"), 0, 0, 1<<20)
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	return r, a, n
}

// TestResponderLoopback establishes IKE SAs from several simulated CPEs on
// loopback UDP, as the heap benchmark does, and checks what the responder
// hands out: a CHILD_SA and an IPv4 and an IPv6 virtual IP per SA from the
// pool, traffic selectors narrowed to them, everything given back when the
// SAs go.
func TestResponderLoopback(t *testing.T) {
	checkGoroutines(t)
	r, target, natt := startResponder(t, ResponderConfig{})
	defer r.Close()
	const count = 24
	in, err := StartInitiators(testCtx(t), InitiatorConfig{Target: target, TargetNATT: natt, Managers: 3, Count: count, Window: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := r.WaitEstablished(testCtx(t), count); err != nil {
		t.Fatal(err)
	}
	if in.Up() != count || r.Pool.InUse() != count {
		t.Fatalf("initiators up %d, pool in use %d, want %d", in.Up(), r.Pool.InUse(), count)
	}
	pool4, pool6 := netip.MustParsePrefix(DefaultPool4), netip.MustParsePrefix(DefaultPool6)
	hubLAN := wire.SelectorFromPrefix(netip.MustParsePrefix(DefaultLocalTS))
	seen := map[netip.Prefix]bool{}
	for _, sa := range in.SAs() {
		i := sa.Info()
		if i.State != ike.StateEstablished || len(i.VIPs) != 2 || !pool4.Contains(i.VIPs[0].Addr()) || !pool6.Contains(i.VIPs[1].Addr()) {
			t.Fatalf("initiator SA %v: state %v, VIPs %v", sa, i.State, i.VIPs)
		}
		if i.Remote != natt {
			t.Errorf("SA %v did not move to the NAT-T port (MOBIKE offered): remote %v", sa, i.Remote)
		}
		for _, v := range i.VIPs {
			if seen[v] {
				t.Fatalf("%v assigned twice", v)
			}
			seen[v] = true
		}
		if len(i.Children) != 1 {
			t.Fatalf("SA %v has %d CHILD_SAs", sa, len(i.Children))
		}
		c := i.Children[0]
		if len(c.RemoteTS) != 1 || c.RemoteTS[0] != hubLAN || len(c.LocalTS) != 2 ||
			c.LocalTS[0] != wire.SelectorFromPrefix(i.VIPs[0]) || c.LocalTS[1] != wire.SelectorFromPrefix(i.VIPs[1]) {
			t.Fatalf("CHILD_SA selectors %v === %v, want the VIPs %v and %v", c.LocalTS, c.RemoteTS, i.VIPs, hubLAN)
		}
	}
	if got := r.Counts(); got.ChildUp != count || got.IKEDown != 0 {
		t.Fatalf("responder counts %+v", got)
	}
	if st := r.Manager.Stats(); st.Retransmits != 0 || st.AuthFailures != 0 || st.Established != count {
		t.Fatalf("responder stats %+v", st)
	}
	// A delete from one CPE, then the responder going away: every
	// address comes back and every SA is reported down.
	if err := in.SAs()[0].Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	in.Close()
	r.Close()
	if got := r.Counts(); got.IKEDown != count || got.ChildDown != count || r.Pool.InUse() != 0 {
		t.Fatalf("after close: counts %+v, pool in use %d", got, r.Pool.InUse())
	}
}

// TestResponderRefusesWrongPSK: an initiator with another key gets
// AUTHENTICATION_FAILED and leaves nothing behind.
func TestResponderRefusesWrongPSK(t *testing.T) {
	checkGoroutines(t)
	r, target, natt := startResponder(t, ResponderConfig{})
	defer r.Close()
	_, err := StartInitiators(testCtx(t), InitiatorConfig{Target: target, TargetNATT: natt, PSK: []byte("not-the-loadtest-psk-0123")})
	var pe *ike.ProtocolError
	if !errors.As(err, &pe) || pe.Type != wire.NotifyAuthenticationFailed {
		t.Fatalf("wrong PSK: %v, want AUTHENTICATION_FAILED", err)
	}
	if st := r.Manager.Stats(); st.AuthFailures != 1 || st.Established != 0 || r.Pool.InUse() != 0 {
		t.Fatalf("responder after a failed AUTH: %+v, pool %d", st, r.Pool.InUse())
	}
}

// TestResponderSuites: the responder takes the proposals it is given and
// refuses others with NO_PROPOSAL_CHOSEN.
func TestResponderSuites(t *testing.T) {
	checkGoroutines(t)
	gcm, err := ParseIKEList("aes128gcm16-prfsha256-ecp256")
	if err != nil {
		t.Fatal(err)
	}
	r, target, natt := startResponder(t, ResponderConfig{IKE: gcm})
	defer r.Close()
	in, err := StartInitiators(testCtx(t), InitiatorConfig{Target: target, TargetNATT: natt, IKE: gcm})
	if err != nil {
		t.Fatal(err)
	}
	if got := in.SAs()[0].Info().Suite; got != gcm[0] {
		t.Fatalf("negotiated %v, want %v", got, gcm[0])
	}
	in.Close()
	_, err = StartInitiators(testCtx(t), InitiatorConfig{Target: target, TargetNATT: natt})
	var pe *ike.ProtocolError
	if !errors.As(err, &pe) || pe.Type != wire.NotifyNoProposalChosen {
		t.Fatalf("aes128-sha256-x25519 against a GCM-only responder: %v, want NO_PROPOSAL_CHOSEN", err)
	}
}
