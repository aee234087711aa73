package ike

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/transform"
)

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// async runs f in the background and returns its error channel.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func wait(t testing.TB, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(stepTimeout):
		t.Fatal("call did not return")
	}
	return nil
}

func firstChild(sa *SA) ChildSA { return sa.Info().Children[0] }

func TestRekeyChild(t *testing.T) {
	for _, fromResponder := range []bool{false, true} {
		t.Run(map[bool]string{false: "initiator", true: "responder"}[fromResponder], func(t *testing.T) {
			p := newPair(t, nil)
			isa, rsa := p.establish(defaultConn())
			a, b, ea, eb := isa, rsa, p.i, p.r
			if fromResponder {
				a, b, ea, eb = rsa, isa, p.r, p.i
			}
			old := firstChild(a)
			done := async(func() error { return a.RekeyChild(ctx(t), old.InSPI) })
			m := p.expect(wire.CreateChildSA, false)
			if m.IsInitiator() == fromResponder {
				t.Fatal("I flag wrong on the rekey request")
			}
			p.expect(wire.CreateChildSA, true)
			p.expect(wire.Informational, false) // delete old
			p.expect(wire.Informational, true)
			if err := wait(t, done); err != nil {
				t.Fatal(err)
			}
			for _, e := range []*endpoint{ea, eb} {
				ev := e.event(EventChildRekeyed)
				if ev.Child.Replaces == 0 || ev.Child.In.SPI != ev.Child.InSPI || len(ev.Child.In.EncKey) == 0 {
					t.Fatalf("%s: rekeyed event %+v", e.name, ev.Child)
				}
				if down := e.event(EventChildDown); down.Child.InSPI != ev.Child.Replaces {
					t.Fatalf("%s: deleted %08x, want %08x", e.name, down.Child.InSPI, ev.Child.Replaces)
				}
			}
			if len(a.Info().Children) != 1 || firstChild(a).InSPI == old.InSPI {
				t.Fatalf("children after rekey: %s", children(a))
			}
			mirrored(t, a, b)
			p.quiet()
		})
	}
}

// TestRekeyChildPFS rekeys with a new DH exchange; the responder wants
// another group than the initiator's first, so the initiator retries after
// INVALID_KE_PAYLOAD.
func TestRekeyChildPFS(t *testing.T) {
	p := newPair(t, func(i, r *Config) {
		i.Proposals = DefaultProposals()
		i.Proposals.PFS = []transform.DH{transform.DHCurve25519, transform.DHECP256}
		r.Proposals = DefaultProposals()
		r.Proposals.PFS = []transform.DH{transform.DHECP256}
	})
	isa, rsa := p.establish(defaultConn())
	old := firstChild(isa)
	done := async(func() error { return isa.RekeyChild(ctx(t), old.InSPI) })
	p.expect(wire.CreateChildSA, false)
	resp := p.expect(wire.CreateChildSA, true) // INVALID_KE_PAYLOAD
	if resp.MessageID != 2 {
		t.Fatalf("first try has message ID %d", resp.MessageID)
	}
	req := p.expect(wire.CreateChildSA, false)
	if req.MessageID != 3 {
		t.Fatalf("retry has message ID %d", req.MessageID)
	}
	p.expect(wire.CreateChildSA, true)
	p.expect(wire.Informational, false)
	p.expect(wire.Informational, true)
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	ic := p.i.event(EventChildRekeyed).Child
	rc := p.r.event(EventChildRekeyed).Child
	if !bytes.Equal(ic.In.EncKey, rc.Out.EncKey) {
		t.Fatal("keys differ after PFS rekey")
	}
	p.i.event(EventChildDown)
	p.r.event(EventChildDown)
	mirrored(t, isa, rsa)
}

func TestRekeyIKE(t *testing.T) {
	for _, fromResponder := range []bool{false, true} {
		t.Run(map[bool]string{false: "initiator", true: "responder"}[fromResponder], func(t *testing.T) {
			p := newPair(t, nil)
			isa, rsa := p.establish(defaultConn())
			a, b, ea, eb := isa, rsa, p.i, p.r
			if fromResponder {
				a, b, ea, eb = rsa, isa, p.r, p.i
			}
			before := a.Info()
			childBefore := children(a)
			done := async(func() error { return a.RekeyIKE(ctx(t)) })
			p.expect(wire.CreateChildSA, false)
			p.expect(wire.CreateChildSA, true)
			del := p.expect(wire.Informational, false)
			if del.SPIi != before.SPIi {
				t.Fatalf("DELETE not on the old IKE SA: %v", del)
			}
			p.expect(wire.Informational, true)
			if err := wait(t, done); err != nil {
				t.Fatal(err)
			}
			for _, e := range []*endpoint{ea, eb} {
				ev := e.event(EventIKERekeyed)
				if ev.Info.OldSPIi != before.SPIi || ev.Info.OldSPIr != before.SPIr || ev.Info.SPIi == before.SPIi {
					t.Fatalf("%s: rekeyed event %+v", e.name, ev.Info)
				}
			}
			ai, bi := a.Info(), b.Info()
			if ai.SPIi != bi.SPIi || ai.SPIr != bi.SPIr || !ai.Initiator || bi.Initiator {
				t.Fatalf("new IKE SA: %+v / %+v", ai, bi)
			}
			if children(a) != childBefore {
				t.Fatalf("children changed: %s -> %s", childBefore, children(a))
			}
			// Old SA gone on both sides: only the new SPIs are known.
			p.quiet()
			for _, e := range []*endpoint{ea, eb} {
				e.m.mu.Lock()
				n := len(e.m.sas)
				e.m.mu.Unlock()
				if n != 1 {
					t.Fatalf("%s holds %d IKE SAs", e.name, n)
				}
			}
			// The new IKE SA works in both directions, from message ID 0.
			for _, x := range []*SA{b, a} {
				done := async(func() error { return x.SendInformational(ctx(t), nil) })
				if m := p.expect(wire.Informational, false); m.MessageID != 0 || m.SPIi != ai.SPIi {
					t.Fatalf("request on new SA: %v", m)
				}
				p.expect(wire.Informational, true)
				if err := wait(t, done); err != nil {
					t.Fatal(err)
				}
			}
			spi := firstChild(b).InSPI
			done = async(func() error { return b.RekeyChild(ctx(t), spi) })
			p.expect(wire.CreateChildSA, false)
			p.expect(wire.CreateChildSA, true)
			p.expect(wire.Informational, false)
			p.expect(wire.Informational, true)
			if err := wait(t, done); err != nil {
				t.Fatal(err)
			}
			ea.event(EventChildDown)
			eb.event(EventChildDown)
			mirrored(t, a, b)
		})
	}
}

// TestCreateChild: an additional CHILD_SA from either side
// (CREATE_CHILD_SA without REKEY_SA), then its deletion.
func TestCreateChild(t *testing.T) {
	p := newPair(t, func(i, r *Config) {
		r.RemoteTS = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("10.99.2.0/24")}
	})
	c := defaultConn()
	c.LocalTS = []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32"), netip.MustParsePrefix("10.99.2.0/24")}
	a, b := p.establish(c)
	for _, tc := range []struct {
		from          *SA
		local, remote string
	}{{a, "10.99.2.0/24", "10.99.1.0/24"}, {b, "10.99.1.0/25", "10.99.2.0/24"}} {
		var spi uint32
		done := async(func() (err error) {
			spi, err = tc.from.CreateChild(ctx(t), []netip.Prefix{netip.MustParsePrefix(tc.local)}, []netip.Prefix{netip.MustParsePrefix(tc.remote)})
			return err
		})
		p.expect(wire.CreateChildSA, false)
		p.expect(wire.CreateChildSA, true)
		if err := wait(t, done); err != nil {
			t.Fatal(err)
		}
		var got *ChildSA
		for _, ch := range tc.from.Info().Children {
			if ch.InSPI == spi {
				got = &ch
			}
		}
		if got == nil || len(got.LocalTS) != 1 || SelectorPrefixes(got.LocalTS[0])[0].String() != tc.local {
			t.Fatalf("new CHILD_SA %+v", got)
		}
		mirrored(t, a, b)
		done = async(func() error { return tc.from.DeleteChild(ctx(t), spi) })
		p.expect(wire.Informational, false)
		p.expect(wire.Informational, true)
		if err := wait(t, done); err != nil {
			t.Fatal(err)
		}
		mirrored(t, a, b)
	}
}
