package ike

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/iketest"
	"github.com/mpsa-vpn/mpsa/ike/wire"
)

// TestHostileInput: malformed and unauthenticated datagrams are dropped and
// counted, never answered, except the IKE_SA_INIT notifies RFC 7296
// §2.21.1 allows (and §2.5 requires, for an unknown critical payload),
// which are rate limited.
func TestHostileInput(t *testing.T) {
	p := newPair(t, func(i, r *Config) {
		// Four tokens: the IKE_SA_INIT of the real CPE takes one, the
		// unknown critical payload another.
		r.UnauthReplyRate, r.UnauthReplyBurst = 1, 4
	})
	_, hubSA := p.establish(defaultConn())
	hi := hubSA.Info()
	evil := p.net.Listen(netip.MustParseAddrPort("203.0.113.66:500"))
	evil4500 := p.net.Listen(netip.MustParseAddrPort("203.0.113.66:4500"))
	hub500, hub4500 := netip.AddrPortFrom(hubAddr, 500), netip.AddrPortFrom(hubAddr, 4500)
	send := func(c *iketest.Conn, dst netip.AddrPort, b []byte) {
		t.Helper()
		p.net.Deliver(iketest.Datagram{Src: c.LocalAddr(), Dst: dst, Data: b})
		p.settle()
	}
	before := p.r.m.Stats()
	// Garbage and truncation.
	send(evil, hub500, []byte("not an IKE message at all, not even close"))
	send(evil, hub500, []byte{1, 2, 3})
	// A valid header naming an SA that does not exist.
	stray := wire.Message{Header: wire.Header{SPIi: 1, SPIr: 2, Exchange: wire.Informational, Flags: wire.FlagInitiator, MessageID: 5},
		Payloads: []wire.Payload{&wire.Encrypted{Inner: wire.PayloadN, Body: make([]byte, 64)}}}
	b, _ := stray.Encode()
	send(evil, hub500, b)
	// Forged INFORMATIONAL on the real SA: fails authentication.
	forged := stray
	forged.SPIi, forged.SPIr, forged.MessageID = hi.SPIi, hi.SPIr, 2
	b, _ = forged.Encode()
	send(evil, hub500, b)
	// The same with a message ID outside the window.
	forged.MessageID = 1000
	b, _ = forged.Encode()
	send(evil, hub500, b)
	// ESP-looking and marker-less datagrams on the NAT-T port, and a
	// keepalive.
	send(evil4500, hub4500, []byte{0xc0, 0xff, 0xee, 0x01, 0, 0, 0, 1, 1, 2, 3, 4})
	send(evil4500, hub4500, []byte{0xff})
	// An IKE_SA_INIT request over 8 KiB: dropped.
	initReq := func(ps ...wire.Payload) []byte {
		m := wire.Message{Header: wire.Header{SPIi: 0x1122334455667788, Exchange: wire.IKESAInit, Flags: wire.FlagInitiator}, Payloads: ps}
		b, _ := m.Encode()
		return b
	}
	send(evil, hub500, initReq(&wire.Nonce{Data: make([]byte, 32)}, &wire.Vendor{Data: make([]byte, 9000)}))
	p.quiet()
	st := p.r.m.Stats()
	want := Stats{DroppedMalformed: 3, DroppedUnknownSPI: 1, DroppedIntegrity: 1, DroppedMessageID: 1, DroppedNonIKE: 1, Keepalives: 1}
	got := Stats{DroppedMalformed: st.DroppedMalformed - before.DroppedMalformed, DroppedUnknownSPI: st.DroppedUnknownSPI - before.DroppedUnknownSPI,
		DroppedIntegrity: st.DroppedIntegrity - before.DroppedIntegrity, DroppedMessageID: st.DroppedMessageID - before.DroppedMessageID,
		DroppedNonIKE: st.DroppedNonIKE - before.DroppedNonIKE, Keepalives: st.Keepalives - before.Keepalives}
	if got != want {
		t.Fatalf("counted %+v, want %+v", got, want)
	}
	if st.Sent != before.Sent {
		t.Fatalf("the hub answered hostile input (%d datagrams)", st.Sent-before.Sent)
	}
	// IKE_SA_INIT with an unknown critical payload: UNSUPPORTED_CRITICAL_
	// PAYLOAD naming its type, counted as malformed, no state.
	b = initReq(&wire.Nonce{Data: make([]byte, 32)})
	b = append(b, 0, 0x80, 0, 4)
	b[wire.HeaderLen] = 222
	binary.BigEndian.PutUint32(b[24:], uint32(len(b)))
	send(evil, hub500, b)
	if m := decodeDatagram(t, p.next()); len(m.Payloads) != 1 || m.SPIr != 0 || !m.IsResponse() ||
		wire.FindNotify(m.Payloads, wire.NotifyUnsupportedCriticalPayload) == nil ||
		!bytes.Equal(wire.FindNotify(m.Payloads, wire.NotifyUnsupportedCriticalPayload).Data, []byte{222}) {
		t.Fatalf("reply to an unknown critical payload: %v", m)
	}
	if got := p.r.m.Stats().DroppedMalformed - st.DroppedMalformed; got != 1 || len(p.r.m.Handles()) != 1 {
		t.Fatalf("%d more malformed, %d SAs", got, len(p.r.m.Handles()))
	}
	// IKE_SA_INIT without an acceptable proposal: NO_PROPOSAL_CHOSEN for
	// the two tokens left, then nothing until tokens refill.
	sa := &wire.SA{Proposals: []wire.Proposal{{Num: 1, Protocol: wire.ProtoIKE, Transforms: []wire.Transform{wire.NewTransform(1, 3, 0)}}}}
	bad := initReq(sa, &wire.KE{Group: 31, Data: make([]byte, 32)}, &wire.Nonce{Data: make([]byte, 32)})
	for range 5 {
		send(evil, hub500, bad)
	}
	replies := 0
	for p.net.Held() > 0 {
		m := decodeDatagram(t, p.next())
		if n := wire.FindNotify(m.Payloads, wire.NotifyNoProposalChosen); n == nil || len(m.Payloads) != 1 || m.SPIr != 0 {
			t.Fatalf("unexpected reply %v", m)
		}
		replies++
	}
	if replies != 2 || p.r.m.Stats().DroppedRateLimited != 3 {
		t.Fatalf("%d replies, %d rate limited", replies, p.r.m.Stats().DroppedRateLimited)
	}
	p.clk.Advance(time.Second)
	send(evil, hub500, bad)
	if p.net.Held() != 1 {
		t.Fatal("no reply after the bucket refilled")
	}
	// The established SA is unharmed.
	done := async(func() error { return hubSA.SendInformational(ctx(t), nil) })
	p.next() // the reply above
	p.expect(wire.Informational, false)
	p.expect(wire.Informational, true)
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	// A version 3 IKE_SA_INIT request gets INVALID_MAJOR_VERSION.
	v3 := initReq(&wire.Nonce{Data: make([]byte, 32)})
	v3[17] = 0x30
	p.clk.Advance(time.Second)
	send(evil, hub500, v3)
	if m := decodeDatagram(t, p.next()); wire.FindNotify(m.Payloads, wire.NotifyInvalidMajorVersion) == nil {
		t.Fatalf("reply %v", m)
	}
}

// FuzzInput feeds arbitrary datagrams to a responder that holds an
// established SA, as if they arrived on port 500 or 4500. Seeds are the
// messages of a real exchange (IKE_SA_INIT through a CHILD_SA rekey, IKE
// rekey and delete), so the fuzzer reaches SK decryption and the
// exchanges. Nothing may panic or allocate without bound.
func FuzzInput(f *testing.F) {
	seeds, spis := recordExchange(f)
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(append(make([]byte, 4), s...), true)
	}
	p := newPair(f, nil)
	_, hubSA := p.establish(defaultConn())
	p.net.SetAuto(true)
	info := hubSA.Info()
	src := netip.AddrPortFrom(cpeAddr, 500)
	f.Fuzz(func(t *testing.T, b []byte, natt bool) {
		// Aim datagrams that look like IKE at the live SA.
		if len(b) >= wire.HeaderLen && bytes.Equal(b[:16], spis) {
			binary.BigEndian.PutUint64(b[0:], info.SPIi)
			binary.BigEndian.PutUint64(b[8:], info.SPIr)
		}
		mc := &managedConn{c: p.r.c500, natt: natt}
		p.r.m.input(b, src, netip.AddrPortFrom(hubAddr, 500), mc)
		ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
		defer cancel()
		for _, h := range p.r.m.Handles() {
			_ = h.call(ctx, func() error { return nil })
		}
	})
}

// recordExchange runs an exchange sequence and returns every datagram sent
// (non-ESP marker removed) and the IKE SPIs of the first SA.
func recordExchange(tb testing.TB) ([][]byte, []byte) {
	p := newPair(tb, nil)
	var out [][]byte
	res := p.initiate(defaultConn())
	for range 4 {
		d := p.next()
		p.net.Deliver(d)
		out = append(out, d.Data)
	}
	r := <-res
	if r.err != nil {
		tb.Fatal(r.err)
	}
	spis := append([]byte(nil), out[2][:16]...)
	step := func(f func() error) {
		done := async(f)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			d, err := p.net.Next(ctx)
			cancel()
			if err != nil {
				break
			}
			p.net.Deliver(d)
			out = append(out, d.Data)
		}
		if err := wait(tb, done); err != nil {
			tb.Fatal(err)
		}
	}
	spi := firstChild(r.sa).InSPI
	step(func() error { return r.sa.RekeyChild(context.Background(), spi) })
	step(func() error {
		return r.sa.SendInformational(context.Background(), []*wire.Notify{{NotifyType: 40960, Data: []byte("x")}})
	})
	step(func() error { return r.sa.RekeyIKE(context.Background()) })
	step(func() error { return r.sa.Close(context.Background()) })
	return out, spis
}

// TestUnsupportedCriticalPayload: an authenticated request carrying an
// unknown payload with the critical bit gets UNSUPPORTED_CRITICAL_PAYLOAD
// with the payload type; an unknown non-critical one is ignored.
func TestUnsupportedCriticalPayload(t *testing.T) {
	p := newPair(t, nil)
	a, _ := p.establish(defaultConn())
	send := func(critical bool) *wire.Message {
		var raw []byte
		err := a.call(ctx(t), func() error {
			sa := a.cur
			h := sa.header(wire.Informational, sa.nextReqID, false)
			sa.nextReqID++
			var err error
			raw, err = wire.EncodeEncrypted(&h, []wire.Payload{&wire.Unknown{PType: 222, Critical: critical, Body: []byte{1, 2}}}, sa.out)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		p.net.Deliver(iketest.Datagram{Src: netip.AddrPortFrom(cpeAddr, 500), Dst: netip.AddrPortFrom(hubAddr, 500), Data: raw})
		p.settle()
		m := decodeDatagram(t, p.next())
		if !m.IsResponse() || m.Exchange != wire.Informational {
			t.Fatalf("%v", m)
		}
		return m
	}
	send(true)
	hub := p.r.m.Handles()[0]
	if n := p.r.lastResponseNotify(t, hub); n != wire.NotifyUnsupportedCriticalPayload {
		t.Fatalf("answered %v", n)
	}
	send(false)
	if n := p.r.lastResponseNotify(t, hub); n != 0 {
		t.Fatalf("answered %v to a non-critical unknown payload", n)
	}
}

// TestReplayedRequest: the responder's cache answers a retransmitted
// request, but a copy of it from another address (a forged source aiming
// the response at a victim) only within the unauthenticated replies' rate
// limit, and a forged first fragment (SKF) with the cached message ID,
// which cannot be compared with the reassembled request, only if it passes
// the integrity check.
func TestReplayedRequest(t *testing.T) {
	p := newPair(t, func(i, r *Config) {
		// Two tokens: the IKE_SA_INIT of the real CPE takes one.
		r.UnauthReplyRate, r.UnauthReplyBurst = 1, 2
		i.Fragmentation, r.Fragmentation = true, true
	})
	a, hub := p.establish(defaultConn())
	done := async(func() error { return a.SendInformational(ctx(t), nil) })
	req := p.next()
	p.net.Deliver(req)
	p.net.Deliver(p.next())
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	victim := netip.MustParseAddrPort("198.51.100.99:500")
	replay := func(src netip.AddrPort, data []byte) int {
		t.Helper()
		p.net.Deliver(iketest.Datagram{Src: src, Dst: req.Dst, Data: data})
		p.settle()
		n := 0
		for p.net.Held() > 0 {
			if d := p.next(); d.Dst != src {
				t.Fatalf("response to %v, the request came from %v", d.Dst, src)
			}
			n++
		}
		return n
	}
	before := p.r.m.Stats()
	if n := replay(victim, req.Data); n != 1 {
		t.Fatalf("first replay from elsewhere: %d responses, want 1 (one token left)", n)
	}
	for range 3 {
		if n := replay(victim, req.Data); n != 0 {
			t.Fatal("replays beyond the rate limit answered")
		}
	}
	if n := replay(req.Src, req.Data); n != 1 {
		t.Fatal("a retransmission from the request's own source not answered")
	}
	st := p.r.m.Stats()
	if st.ResponsesResent-before.ResponsesResent != 2 || st.DroppedRateLimited-before.DroppedRateLimited != 3 {
		t.Fatalf("resent %d, rate limited %d", st.ResponsesResent-before.ResponsesResent, st.DroppedRateLimited-before.DroppedRateLimited)
	}

	// A forged first fragment with the cached message ID.
	hi := hub.Info()
	forged := wire.Message{Header: wire.Header{SPIi: hi.SPIi, SPIr: hi.SPIr, Exchange: wire.Informational, Flags: wire.FlagInitiator, MessageID: 2},
		Payloads: []wire.Payload{&wire.Fragment{Inner: wire.PayloadN, Number: 1, Total: 2, Body: make([]byte, 64)}}}
	b, err := forged.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if n := replay(req.Src, b); n != 0 {
		t.Fatal("a forged first fragment was answered")
	}
	if st2 := p.r.m.Stats(); st2.DroppedIntegrity-st.DroppedIntegrity != 1 || st2.ResponsesResent != st.ResponsesResent {
		t.Fatalf("forged fragment: %+v", st2)
	}
}
