package ike

import (
	"fmt"
	"testing"

	"github.com/mpsa-vpn/mpsa/ike/iketest"
	"github.com/mpsa-vpn/mpsa/ike/wire"
)

// nonceCase sets the first octet of the four nonces of two colliding
// exchanges: Ni of A's request, Ni of B's request, A's Nr (in B's exchange),
// B's Nr (in A's exchange). The exchange holding the lowest creates the
// redundant SA.
type nonceCase struct {
	niA, niB, nrA, nrB byte
	aRedundant         bool
}

var nonceCases = []nonceCase{
	{0x00, 0xff, 0xff, 0xff, true},
	{0xff, 0x00, 0xff, 0xff, false},
	{0xff, 0xff, 0x00, 0xff, false},
	{0xff, 0xff, 0xff, 0x00, true},
}

func (c nonceCase) String() string {
	return fmt.Sprintf("niA=%02x niB=%02x nrA=%02x nrB=%02x", c.niA, c.niB, c.nrA, c.nrB)
}

func setNonce(e *endpoint, b byte) { e.m.nonceFirst.Store(uint32(b) + 1) }

// nextFrom returns the next datagram, which must come from e.
func (p *pair) nextFrom(e *endpoint) iketest.Datagram {
	p.t.Helper()
	d := p.next()
	if d.Src.Addr() != e.addr {
		p.t.Fatalf("datagram %v not from %s", d, e.name)
	}
	return d
}

// deliverExpect delivers d and checks what it is.
func (p *pair) deliverExpect(d iketest.Datagram, ex wire.ExchangeType, response bool) {
	p.t.Helper()
	m := decodeDatagram(p.t, d)
	if m.Exchange != ex || m.IsResponse() != response {
		p.t.Fatalf("got %v, want %v response=%v", m, ex, response)
	}
	p.net.Deliver(d)
	p.settle()
}

// TestChildRekeyCollision: both sides rekey the same CHILD_SA at once
// (RFC 7296 §2.8.1). Each answers the other's request; the CHILD_SA created
// with the lowest of the four nonces is deleted by the side that initiated
// its exchange, the other side deletes the old one.
//
//	A: rekey ----\    /---- B: rekey
//	              \  /
//	A: answer <----\/-----> B: answer
//	A: delete (redundant or old) <--> B: delete (old or redundant)
func TestChildRekeyCollision(t *testing.T) {
	for _, tc := range nonceCases {
		t.Run(tc.String(), func(t *testing.T) {
			p := newPair(t, nil)
			isa, rsa := p.establish(defaultConn())
			a, b, ea, eb := isa, rsa, p.i, p.r
			old := firstChild(a)

			setNonce(ea, tc.niA)
			doneA := async(func() error { return a.RekeyChild(ctx(t), old.InSPI) })
			reqA := p.nextFrom(ea)
			setNonce(eb, tc.niB)
			doneB := async(func() error { return b.RekeyChild(ctx(t), old.OutSPI) })
			reqB := p.nextFrom(eb)

			setNonce(ea, tc.nrA)
			p.deliverExpect(reqB, wire.CreateChildSA, false)
			respA := p.nextFrom(ea) // A answers B
			setNonce(eb, tc.nrB)
			p.deliverExpect(reqA, wire.CreateChildSA, false)
			respB := p.nextFrom(eb) // B answers A
			// On each side the first rekeyed CHILD_SA comes from the
			// peer's exchange, the second from its own.
			fromB := ea.event(EventChildRekeyed).Child // on A, made by B's exchange
			fromA := eb.event(EventChildRekeyed).Child // on B, made by A's exchange
			p.deliverExpect(respA, wire.CreateChildSA, true)
			p.deliverExpect(respB, wire.CreateChildSA, true)
			ownA := ea.event(EventChildRekeyed).Child
			ownB := eb.event(EventChildRekeyed).Child
			if ownA.InSPI != fromA.OutSPI || ownB.InSPI != fromB.OutSPI {
				t.Fatalf("SAs of one exchange do not mirror: %08x/%08x, %08x/%08x", ownA.InSPI, fromA.OutSPI, ownB.InSPI, fromB.OutSPI)
			}
			if err := wait(t, doneA); err != nil {
				t.Fatal(err)
			}
			if err := wait(t, doneB); err != nil {
				t.Fatal(err)
			}
			// Two deletes cross, each answered.
			for range 2 {
				p.expect(wire.Informational, false)
			}
			for range 2 {
				p.expect(wire.Informational, true)
			}
			survivor := ownB.InSPI // on B
			if !tc.aRedundant {
				survivor = fromA.InSPI
			}
			for _, e := range []*endpoint{ea, eb} {
				e.event(EventChildDown)
				e.event(EventChildDown)
			}
			mirrored(t, a, b)
			if got := firstChild(b).InSPI; len(b.Info().Children) != 1 || got != survivor {
				t.Fatalf("B keeps %s, want %08x", children(b), survivor)
			}
			p.quiet()
		})
	}
}

// TestChildRekeyCollisionDelayed: B's rekey request arrives at A only
// after A's rekey completed and A deleted the old CHILD_SA; A answers
// TEMPORARY_FAILURE (or CHILD_SA_NOT_FOUND once deleted) and B keeps A's SA.
func TestChildRekeyCollisionDelayed(t *testing.T) {
	for _, notFound := range []bool{false, true} {
		t.Run(map[bool]string{false: "TEMPORARY_FAILURE", true: "CHILD_SA_NOT_FOUND"}[notFound], func(t *testing.T) {
			p := newPair(t, nil)
			a, b := p.establish(defaultConn())
			ea, eb := p.i, p.r
			old := firstChild(a)
			doneA := async(func() error { return a.RekeyChild(ctx(t), old.InSPI) })
			reqA := p.nextFrom(ea)
			doneB := async(func() error { return b.RekeyChild(ctx(t), old.OutSPI) })
			reqB := p.nextFrom(eb) // held back
			p.deliverExpect(reqA, wire.CreateChildSA, false)
			p.deliverExpect(p.nextFrom(eb), wire.CreateChildSA, true)
			if err := wait(t, doneA); err != nil {
				t.Fatal(err)
			}
			delA := p.nextFrom(ea) // A deletes the old SA
			if notFound {
				p.deliverExpect(delA, wire.Informational, false)
				p.deliverExpect(p.nextFrom(eb), wire.Informational, true)
				ea.event(EventChildDown)
			}
			p.deliverExpect(reqB, wire.CreateChildSA, false)
			want := wire.NotifyTemporaryFailure
			if notFound {
				want = wire.NotifyChildSANotFound
			}
			resp := p.nextFrom(ea)
			p.deliverExpect(resp, wire.CreateChildSA, true)
			if got := p.r.m.Stats(); got.DroppedMalformed != 0 {
				t.Fatalf("stats %+v", got)
			}
			if err := wait(t, doneB); err != nil {
				t.Fatal(err)
			}
			if !notFound {
				p.deliverExpect(delA, wire.Informational, false)
				p.deliverExpect(p.nextFrom(eb), wire.Informational, true)
				ea.event(EventChildDown)
			}
			eb.event(EventChildDown)
			mirrored(t, a, b)
			if len(a.Info().Children) != 1 {
				t.Fatalf("children %s", children(a))
			}
			p.quiet()
			if n := ea.lastResponseNotify(t, a); n != want {
				t.Fatalf("A answered %v, want %v", n, want)
			}
		})
	}
}

// TestIKERekeyCollision: both sides rekey the IKE SA at once (RFC 7296
// §2.8.2). The IKE SA created with the lowest nonce is deleted by its
// creator; the winner deletes the old IKE SA; the CHILD_SA survives on the
// winning IKE SA.
func TestIKERekeyCollision(t *testing.T) {
	for _, tc := range nonceCases {
		t.Run(tc.String(), func(t *testing.T) {
			p := newPair(t, nil)
			a, b := p.establish(defaultConn())
			ea, eb := p.i, p.r
			childBefore := children(a)

			setNonce(ea, tc.niA)
			doneA := async(func() error { return a.RekeyIKE(ctx(t)) })
			reqA := p.nextFrom(ea)
			setNonce(eb, tc.niB)
			doneB := async(func() error { return b.RekeyIKE(ctx(t)) })
			reqB := p.nextFrom(eb)
			setNonce(ea, tc.nrA)
			p.deliverExpect(reqB, wire.CreateChildSA, false)
			respA := p.nextFrom(ea)
			setNonce(eb, tc.nrB)
			p.deliverExpect(reqA, wire.CreateChildSA, false)
			respB := p.nextFrom(eb)
			p.deliverExpect(respA, wire.CreateChildSA, true)
			p.deliverExpect(respB, wire.CreateChildSA, true)
			if err := wait(t, doneA); err != nil {
				t.Fatal(err)
			}
			if err := wait(t, doneB); err != nil {
				t.Fatal(err)
			}
			// The loser deletes its redundant SA, the winner the old one.
			for range 2 {
				p.expect(wire.Informational, false)
			}
			for range 2 {
				p.expect(wire.Informational, true)
			}
			p.quiet()
			ai, bi := a.Info(), b.Info()
			if ai.SPIi != bi.SPIi || ai.SPIr != bi.SPIr || ai.Initiator == bi.Initiator {
				t.Fatalf("sides disagree on the IKE SA: %+v / %+v", ai, bi)
			}
			// The survivor was initiated by the side whose exchange did
			// not hold the lowest nonce.
			if ai.Initiator != !tc.aRedundant {
				t.Fatalf("A initiated the survivor: %v, want %v", ai.Initiator, !tc.aRedundant)
			}
			for _, e := range []*endpoint{ea, eb} {
				e.m.mu.Lock()
				n := len(e.m.sas)
				e.m.mu.Unlock()
				if n != 1 {
					t.Fatalf("%s holds %d IKE SAs", e.name, n)
				}
			}
			if children(a) != childBefore {
				t.Fatalf("children %s, want %s", children(a), childBefore)
			}
			// The surviving IKE SA works.
			done := async(func() error { return a.SendInformational(ctx(t), nil) })
			p.expect(wire.Informational, false)
			p.expect(wire.Informational, true)
			if err := wait(t, done); err != nil {
				t.Fatal(err)
			}
		})
	}
}
