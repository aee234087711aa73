package ike

import (
	"errors"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/transform"
)

// TestDeleteChildDuringRekey: A rekeys a CHILD_SA while B deletes it (RFC
// 7296 §2.25.1). B refuses the rekey with TEMPORARY_FAILURE, A answers the
// delete with its own SPI; no CHILD_SA is left.
func TestDeleteChildDuringRekey(t *testing.T) {
	p := newPair(t, nil)
	a, b := p.establish(defaultConn())
	ea, eb := p.i, p.r
	c := firstChild(a)
	doneA := async(func() error { return a.RekeyChild(ctx(t), c.InSPI) })
	rekey := p.nextFrom(ea)
	doneB := async(func() error { return b.DeleteChild(ctx(t), c.OutSPI) })
	del := p.nextFrom(eb)
	p.deliverExpect(rekey, wire.CreateChildSA, false)
	tempFail := p.nextFrom(eb)
	p.deliverExpect(del, wire.Informational, false)
	p.deliverExpect(p.nextFrom(ea), wire.Informational, true)
	p.deliverExpect(tempFail, wire.CreateChildSA, true)
	if err := wait(t, doneB); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, doneA); err != nil {
		t.Fatal(err)
	}
	ea.event(EventChildDown)
	eb.event(EventChildDown)
	if eb.lastResponseNotify(t, b) != wire.NotifyTemporaryFailure {
		t.Fatal("B did not answer the rekey with TEMPORARY_FAILURE")
	}
	p.quiet()
	if len(a.Info().Children)+len(b.Info().Children) != 0 {
		t.Fatalf("children left: %s / %s", children(a), children(b))
	}
}

// TestDeleteIKEDuringRekey: A rekeys the IKE SA while B deletes it (RFC
// 7296 §2.25.2): B refuses the rekey, A answers the delete and forgets its
// rekey; both SAs are gone.
func TestDeleteIKEDuringRekey(t *testing.T) {
	p := newPair(t, nil)
	a, b := p.establish(defaultConn())
	ea, eb := p.i, p.r
	doneA := async(func() error { return a.RekeyIKE(ctx(t)) })
	rekey := p.nextFrom(ea)
	doneB := async(func() error { return b.Close(ctx(t)) })
	del := p.nextFrom(eb)
	p.deliverExpect(rekey, wire.CreateChildSA, false)
	tempFail := p.nextFrom(eb)
	p.deliverExpect(del, wire.Informational, false)
	p.deliverExpect(p.nextFrom(ea), wire.Informational, true)
	p.net.Deliver(tempFail) // to a dead SA: dropped
	if err := wait(t, doneB); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, doneA); err == nil {
		t.Fatal("rekey of a deleted IKE SA succeeded")
	}
	if ev := ea.event(EventIKEDown); !errors.Is(ev.Err, ErrDeleted) {
		t.Fatalf("A down with %v", ev.Err)
	}
	if ev := eb.event(EventIKEDown); ev.Err != nil {
		t.Fatalf("B down with %v", ev.Err)
	}
	<-a.Done()
	<-b.Done()
	p.quiet()
	if len(ea.m.SAs())+len(eb.m.SAs()) != 0 {
		t.Fatal("SAs left")
	}
}

// TestRetransmit: a lost IKE_AUTH response is recovered by retransmitting
// the request after RetransmitTimeout; the responder answers from its cache
// without processing the request again.
func TestRetransmit(t *testing.T) {
	p := newPair(t, nil)
	res := p.initiate(defaultConn())
	p.expect(wire.IKESAInit, false)
	p.expect(wire.IKESAInit, true)
	req := p.next()
	p.net.Deliver(req)
	lost := p.next() // IKE_AUTH response, lost
	p.r.event(EventIKEUp)
	if m := decodeDatagram(t, lost); m.Exchange != wire.IKEAuth || !m.IsResponse() {
		t.Fatalf("%v", m)
	}
	p.quiet()
	p.clk.Advance(DefaultRetransmitTimeout - time.Millisecond)
	p.quiet()
	p.clk.Advance(time.Millisecond)
	again := p.next()
	if string(again.Data) != string(req.Data) {
		t.Fatal("retransmission differs from the request")
	}
	p.net.Deliver(again)
	resent := p.next()
	if string(resent.Data) != string(lost.Data) {
		t.Fatal("responder did not resend its cached response")
	}
	p.net.Deliver(resent)
	if r := <-res; r.err != nil {
		t.Fatal(r.err)
	}
	if st := p.r.m.Stats(); st.ResponsesResent != 1 {
		t.Fatalf("responder stats %+v", st)
	}
	if st := p.i.m.Stats(); st.Retransmits != 1 {
		t.Fatalf("initiator stats %+v", st)
	}
	p.quiet()
}

// TestRetransmitGiveUp: an unanswered request is retransmitted
// RetransmitTries times with exponential backoff (4 s × 1.8^n), then the SA
// is given up.
func TestRetransmitGiveUp(t *testing.T) {
	p := newPair(t, nil)
	a, _ := p.establish(defaultConn())
	done := async(func() error { return a.SendInformational(ctx(t), nil) })
	p.next() // lost
	p.exhaustRetransmits()
	if err := wait(t, done); !errors.Is(err, ErrTimeout) {
		t.Fatalf("SendInformational: %v", err)
	}
	if ev := p.i.event(EventIKEDown); !errors.Is(ev.Err, ErrTimeout) {
		t.Fatalf("down with %v", ev.Err)
	}
	if st := p.i.m.Stats(); st.Retransmits != DefaultRetransmitTries {
		t.Fatalf("retransmits %d", st.Retransmits)
	}
	p.quiet()
}

// TestResponderCacheInformational: a retransmitted INFORMATIONAL request is
// answered from the cache; the notify hook sees it once.
func TestResponderCacheInformational(t *testing.T) {
	seen := make(chan []*wire.Notify, 4)
	p := newPair(t, func(i, r *Config) {
		i.Policy.Informational = func(sa *SA, ns []*wire.Notify) { seen <- ns }
	})
	_, b := p.establish(defaultConn())
	n := &wire.Notify{NotifyType: 40961, Data: []byte("hello")}
	done := async(func() error { return b.SendInformational(ctx(t), []*wire.Notify{n}) })
	req := p.next()
	p.net.Deliver(req)
	p.next() // response lost
	p.net.Deliver(req)
	p.net.Deliver(p.next())
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	got := <-seen
	if len(got) != 1 || got[0].NotifyType != 40961 || string(got[0].Data) != "hello" {
		t.Fatalf("hook got %v", got)
	}
	select {
	case <-seen:
		t.Fatal("hook called twice")
	case <-time.After(50 * time.Millisecond):
	}
	if st := p.i.m.Stats(); st.ResponsesResent != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestCookie: above CookieThreshold half-open SAs the responder answers
// IKE_SA_INIT with a COOKIE and no state; the initiator repeats its request
// with the cookie and gets through.
func TestCookie(t *testing.T) {
	p := newPair(t, func(i, r *Config) { r.CookieThreshold = 1 })
	// One half-open SA: IKE_SA_INIT done, IKE_AUTH held back.
	first := p.initiate(defaultConn())
	p.expect(wire.IKESAInit, false)
	p.expect(wire.IKESAInit, true)
	held := p.next()
	if st := p.r.m.Stats(); st.HalfOpen != 1 {
		t.Fatalf("half-open %d", st.HalfOpen)
	}
	c2 := defaultConn()
	c2.Name = "second"
	second := p.initiate(c2)
	req := p.expect(wire.IKESAInit, false)
	if wire.FindNotify(req.Payloads, wire.NotifyCookie) != nil {
		t.Fatal("first request carries a cookie")
	}
	resp := p.expect(wire.IKESAInit, true)
	ck := wire.FindNotify(resp.Payloads, wire.NotifyCookie)
	if ck == nil || len(resp.Payloads) != 1 || resp.SPIr != 0 {
		t.Fatalf("expected a lone COOKIE: %v", resp)
	}
	if st := p.r.m.Stats(); st.HalfOpen != 1 || st.CookiesSent != 1 {
		t.Fatalf("responder kept state for the cookie request: %+v", st)
	}
	retry := p.expect(wire.IKESAInit, false)
	if n, ok := retry.Payloads[0].(*wire.Notify); !ok || n.NotifyType != wire.NotifyCookie || string(n.Data) != string(ck.Data) {
		t.Fatalf("retry does not start with our cookie: %v", retry)
	}
	p.expect(wire.IKESAInit, true)
	p.expect(wire.IKEAuth, false)
	p.expect(wire.IKEAuth, true)
	if r := <-second; r.err != nil {
		t.Fatal(r.err)
	}
	p.net.Deliver(held)
	p.expect(wire.IKEAuth, true)
	if r := <-first; r.err != nil {
		t.Fatal(r.err)
	}
	if p.r.m.cookies.verify(ck.Data, []byte("other nonce....."), cpeAddr, req.SPIi) {
		t.Fatal("cookie verifies for another nonce")
	}
}

// TestInvalidKE: the responder prefers another DH group than the one the
// initiator guessed; the initiator retries with it.
func TestInvalidKE(t *testing.T) {
	p := newPair(t, func(i, r *Config) {
		r.Proposals = DefaultProposals()
		r.Proposals.IKE = []suite.Suite{r.Proposals.IKE[1], r.Proposals.IKE[0]}
	})
	res := p.initiate(defaultConn())
	req := p.expect(wire.IKESAInit, false)
	if ke := wire.Find(req.Payloads, wire.PayloadKE).(*wire.KE); ke.Group != transform.DHCurve25519 {
		t.Fatalf("first KE group %v", ke.Group)
	}
	resp := p.expect(wire.IKESAInit, true)
	n := wire.FindNotify(resp.Payloads, wire.NotifyInvalidKEPayload)
	if n == nil || string(n.Data) != "\x00\x13" {
		t.Fatalf("expected INVALID_KE_PAYLOAD(19): %v", resp)
	}
	req2 := p.expect(wire.IKESAInit, false)
	if ke := wire.Find(req2.Payloads, wire.PayloadKE).(*wire.KE); ke.Group != transform.DHECP256 || req2.SPIi != req.SPIi {
		t.Fatalf("retry: %v", req2)
	}
	p.expect(wire.IKESAInit, true)
	p.expect(wire.IKEAuth, false)
	p.expect(wire.IKEAuth, true)
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if s := r.sa.Info().Suite; s.Encr != transform.EncrAESGCM16 || s.DH != transform.DHECP256 {
		t.Fatalf("suite %v", s)
	}
	if st := p.r.m.Stats(); st.InvalidKESent != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestNoProposalChosen: no IKE proposal in common; the responder answers
// NO_PROPOSAL_CHOSEN and keeps no state. With IKE in common but no ESP, the
// IKE SA comes up without CHILD_SA.
func TestNoProposalChosen(t *testing.T) {
	t.Run("IKE", func(t *testing.T) {
		p := newPair(t, func(i, r *Config) {
			i.Proposals = DefaultProposals()
			i.Proposals.IKE = i.Proposals.IKE[:1]
			r.Proposals = DefaultProposals()
			r.Proposals.IKE = r.Proposals.IKE[1:]
		})
		res := p.initiate(defaultConn())
		p.expect(wire.IKESAInit, false)
		p.expect(wire.IKESAInit, true)
		r := <-res
		var pe *ProtocolError
		if !errors.As(r.err, &pe) || pe.Type != wire.NotifyNoProposalChosen {
			t.Fatalf("Initiate: %v", r.err)
		}
		if len(p.i.m.SAs())+len(p.r.m.SAs()) != 0 || p.r.m.Stats().HalfOpen != 0 {
			t.Fatal("state left behind")
		}
		p.quiet()
	})
	t.Run("ESP", func(t *testing.T) {
		p := newPair(t, func(i, r *Config) {
			i.Proposals = DefaultProposals()
			i.Proposals.ESP = []transform.ESP{{Encr: transform.EncrChaCha20Poly1305}}
		})
		res := p.initiate(defaultConn())
		p.expect(wire.IKESAInit, false)
		p.expect(wire.IKESAInit, true)
		p.expect(wire.IKEAuth, false)
		p.expect(wire.IKEAuth, true)
		r := <-res
		var ce *ChildError
		var pe *ProtocolError
		if !errors.As(r.err, &ce) || !errors.As(r.err, &pe) || pe.Type != wire.NotifyNoProposalChosen {
			t.Fatalf("Initiate: %v", r.err)
		}
		if r.sa.Info().State != StateEstablished || len(r.sa.Info().Children) != 0 {
			t.Fatalf("SA %+v", r.sa.Info())
		}
	})
}

// TestAuthFailure: a wrong PSK gets AUTHENTICATION_FAILED and no SA is left
// on either side; so does an identity the responder does not know.
func TestAuthFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(i, r *Config)
	}{
		{"wrong PSK", func(i, r *Config) { i.Local.PSK = []byte("wrong-psk-0123456789") }},
		{"unknown identity", func(i, r *Config) {
			r.Peers = auth.Static(auth.Rule{Pattern: auth.MustParsePattern("fqdn:*.other.net"), Peer: &auth.Peer{PSK: testPSK}})
		}},
		{"wrong responder", func(i, r *Config) { r.Local.ID = auth.MustParseID("fqdn:evil.example.net") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, tc.mod)
			res := p.initiate(defaultConn())
			p.expect(wire.IKESAInit, false)
			p.expect(wire.IKESAInit, true)
			p.expect(wire.IKEAuth, false)
			resp := p.step()
			r := <-res
			if !errors.Is(r.err, ErrAuthFailed) {
				t.Fatalf("Initiate: %v", r.err)
			}
			if resp.Exchange == wire.Informational {
				// The initiator rejected the responder and told it.
				p.quiet()
			}
			waitNoSAs(t, p.r.m)
			if len(p.i.m.SAs()) != 0 {
				t.Fatal("initiator kept an SA")
			}
			if p.r.m.Stats().AuthFailures+p.i.m.Stats().AuthFailures == 0 {
				t.Fatal("no authentication failure counted")
			}
		})
	}
}

// waitNoSAs waits until every SA of m is gone.
func waitNoSAs(t testing.TB, m *Manager) {
	t.Helper()
	deadline := time.After(stepTimeout)
	for _, h := range m.Handles() {
		select {
		case <-h.Done():
		case <-deadline:
			t.Fatalf("SA %v still there", h)
		}
	}
}

var _ = netip.Addr{}

// TestSendInformationalAsync: requests queued without waiting go out one at
// a time (window 1), each callback runs once with the outcome, on no
// goroutine of its own; the last one, left unanswered, gets ErrTimeout
// after the retransmissions, and a call on the dead SA gets its end at
// once.
func TestSendInformationalAsync(t *testing.T) {
	seen := make(chan []*wire.Notify, 16)
	p := newPair(t, func(i, r *Config) {
		i.Policy.Informational = func(sa *SA, ns []*wire.Notify) { seen <- ns }
	})
	_, hub := p.establish(defaultConn())
	const n = 50
	results := make(chan error, n+1)
	g0 := runtime.NumGoroutine()
	for k := range n {
		hub.SendInformationalAsync([]*wire.Notify{{NotifyType: 40961, Data: []byte{byte(k)}}}, func(err error) { results <- err })
	}
	if g := runtime.NumGoroutine() - g0; g > 4 {
		t.Fatalf("%d goroutines for %d queued requests", g, n)
	}
	for k := range n - 1 {
		p.expect(wire.Informational, false)
		p.expect(wire.Informational, true)
		if err := <-results; err != nil {
			t.Fatalf("request %d: %v", k, err)
		}
		if ns := <-seen; len(ns) != 1 || ns[0].Data[0] != byte(k) {
			t.Fatalf("request %d carried %v", k, ns)
		}
	}
	// The last request: the CPE never answers.
	p.next()
	p.exhaustRetransmits()
	select {
	case err := <-results:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("unanswered request: %v", err)
		}
	case <-time.After(stepTimeout):
		t.Fatal("no outcome for the unanswered request")
	}
	<-hub.Done()
	hub.SendInformationalAsync(nil, func(err error) { results <- err })
	if err := <-results; !errors.Is(err, ErrTimeout) {
		t.Fatalf("request on the dead SA: %v", err)
	}
	if len(results) != 0 {
		t.Fatal("a callback ran twice")
	}
}
