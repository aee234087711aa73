package ike

import (
	"bytes"
	"testing"

	"github.com/mpsa-vpn/mpsa/ike/wire"
)

func TestEstablish(t *testing.T) {
	p := newPair(t, nil)
	isa, rsa := p.establish(defaultConn())
	ii, ri := isa.Info(), rsa.Info()
	if ii.SPIi != ri.SPIi || ii.SPIr != ri.SPIr || ii.SPIr == 0 {
		t.Fatalf("SPIs differ: %v / %v", isa, rsa)
	}
	if !ii.RemoteID.Equal(hubID) || !ri.RemoteID.Equal(cpeID) {
		t.Fatalf("identities %v %v", ii.RemoteID, ri.RemoteID)
	}
	if ii.State != StateEstablished || ri.State != StateEstablished {
		t.Fatalf("states %v %v", ii.State, ri.State)
	}
	ic := p.i.event(EventChildUp).Child
	rc := p.r.event(EventChildUp).Child
	if ic.InSPI != rc.OutSPI || ic.OutSPI != rc.InSPI {
		t.Fatalf("CHILD_SA SPIs: %08x/%08x vs %08x/%08x", ic.InSPI, ic.OutSPI, rc.InSPI, rc.OutSPI)
	}
	if !bytes.Equal(ic.Out.EncKey, rc.In.EncKey) || !bytes.Equal(ic.In.EncKey, rc.Out.EncKey) || bytes.Equal(ic.In.EncKey, ic.Out.EncKey) {
		t.Fatal("CHILD_SA keys do not match across the pair")
	}
	if err := ic.In.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := rc.LocalTS[0].String(); got != "10.99.1.0-10.99.1.255" {
		t.Fatalf("responder's local TS %s", got)
	}
	if got := rc.RemoteTS[0].String(); got != "192.0.2.2-192.0.2.2" {
		t.Fatalf("responder's remote TS %s", got)
	}
	mirrored(t, isa, rsa)
	p.quiet()
	_ = wire.IKEAuth
}
