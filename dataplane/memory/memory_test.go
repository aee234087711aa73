package memory

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/transform"
)

var (
	cbc = transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128}
	gcm = transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}
)

func keys(spi uint32, suite transform.ESP, fill byte) esp.Keys {
	el, il, err := suite.KeyLens()
	if err != nil {
		panic(err)
	}
	return esp.Keys{SPI: spi, Suite: suite, EncKey: bytes.Repeat([]byte{fill}, el), IntegKey: bytes.Repeat([]byte{fill + 1}, il)}
}

// groupState is a CPE's state: the group SA both ways on tunnel 1 and a
// CHILD_SA pair with the hub on tunnel 2.
func groupState(groupSPI uint32) *dataplane.State {
	hub := netip.MustParseAddrPort("192.0.2.1:4500")
	return &dataplane.State{SAs: []dataplane.SA{
		{Keys: keys(0xc2000002, gcm, 0x20), Dir: dataplane.Out, Tunnel: 2, Peer: hub,
			Local: netip.MustParseAddr("192.0.2.10")},
		{Keys: keys(groupSPI, cbc, 0x10), Dir: dataplane.Both, Tunnel: 1},
		{Keys: keys(0xc2000001, gcm, 0x30), Dir: dataplane.In, Tunnel: 2, Peer: hub, ReplayWindow: 64,
			RemoteSelectors: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")},
			LocalSelectors:  []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("fd00:1::/64")}},
	}}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestText(t *testing.T) {
	b := New()
	if got := b.Text(); got != "" {
		t.Fatalf("empty backend renders %q", got)
	}
	if err := b.Set(groupState(0x1001)); err != nil {
		t.Fatal(err)
	}
	want := `sa 00001001 both tunnel 1 AES_CBC_128/HMAC_SHA2_256_128 replay 0
sa c2000001 in tunnel 2 AES_GCM_16_128 replay 64 peer 192.0.2.1:4500 remote-ts 100.64.0.1/32 local-ts 10.1.0.0/24,fd00:1::/64
sa c2000002 out tunnel 2 AES_GCM_16_128 replay 0 peer 192.0.2.1:4500 local 192.0.2.10
`
	if got := b.Text(); got != want {
		t.Errorf("Text:\n%s\nwant:\n%s", got, want)
	}
	sender := groupState(0x1001)
	sender.SAs[1].SenderIDBits, sender.SAs[1].SenderID = 8, 5
	if err := b.Set(sender); err != nil {
		t.Fatal(err)
	}
	if got := b.Snapshot().Text(); !bytes.Contains([]byte(got), []byte("sa 00001001 both tunnel 1 AES_CBC_128/HMAC_SHA2_256_128 replay 0 sender-id 5/8\n")) {
		t.Errorf("Sender-ID not rendered:\n%s", got)
	}
}

func TestIdempotentAndHistory(t *testing.T) {
	b := New()
	st := groupState(0x1001)
	for range 3 {
		if err := b.Set(st); err != nil {
			t.Fatal(err)
		}
	}
	// The same State with its SAs in another order is still the same State.
	shuffled := groupState(0x1001)
	shuffled.SAs[0], shuffled.SAs[2] = shuffled.SAs[2], shuffled.SAs[0]
	if err := b.Set(shuffled); err != nil {
		t.Fatal(err)
	}
	if g := b.Gen(); g != 1 {
		t.Errorf("generation %d after four equal Sets, want 1", g)
	}
	bad := groupState(0x1001)
	bad.SAs[1].Keys.EncKey = bad.SAs[1].Keys.EncKey[:3]
	if err := b.Set(bad); err == nil {
		t.Fatal("Set accepted a short key")
	}
	if err := b.Set(groupState(0x1002)); err != nil {
		t.Fatal(err)
	}
	calls := b.Calls()
	if len(calls) != 6 {
		t.Fatalf("%d calls recorded, want 6", len(calls))
	}
	wantChanged := []bool{true, false, false, false, false, true}
	for i, c := range calls {
		if c.Changed != wantChanged[i] {
			t.Errorf("call %d: Changed %v, want %v", i, c.Changed, wantChanged[i])
		}
		if (c.Err != nil) != (i == 4) {
			t.Errorf("call %d: err %v", i, c.Err)
		}
	}
	if calls[5].Gen != 2 || !bytes.Contains([]byte(calls[5].Text), []byte("sa 00001002 both")) {
		t.Errorf("last call: gen %d text\n%s", calls[5].Gen, calls[5].Text)
	}
	if _, ok := b.Inbound(0x1001); ok {
		t.Error("the replaced group SA is still installed")
	}
}

func TestKeysCopiedAndWiped(t *testing.T) {
	b := New()
	st := groupState(0x1001)
	if err := b.Set(st); err != nil {
		t.Fatal(err)
	}
	// The caller wipes its keys once Set returns: the backend's copy stays.
	for i := range st.SAs {
		st.SAs[i].Keys.Wipe()
	}
	sa, ok := b.Inbound(0x1001)
	if !ok || !bytes.Equal(sa.Keys.EncKey, bytes.Repeat([]byte{0x10}, 16)) {
		t.Fatalf("installed key changed with the caller's copy: ok=%v", ok)
	}
	b.mu.Lock()
	var installed [][]byte
	for _, sa := range b.sas {
		installed = append(installed, sa.Keys.EncKey, sa.Keys.IntegKey)
	}
	b.mu.Unlock()
	// Removing the SAs wipes the backend's copies.
	if err := b.Set(&dataplane.State{}); err != nil {
		t.Fatal(err)
	}
	for i, k := range installed {
		if !bytes.Equal(k, make([]byte, len(k))) {
			t.Errorf("key %d not wiped after its SA was removed", i)
		}
	}
}

func TestRolloverLookups(t *testing.T) {
	b := New()
	old := keys(0x1001, cbc, 1)
	next := keys(0x1002, cbc, 7)
	steps := []struct {
		sas      []dataplane.SA
		outSPI   uint32 // 0: none
		inbound  []uint32
		absentIn []uint32
	}{
		{[]dataplane.SA{{Keys: old, Dir: dataplane.Both, Tunnel: 1}}, 0x1001, []uint32{0x1001}, []uint32{0x1002}},
		{[]dataplane.SA{{Keys: old, Dir: dataplane.Both, Tunnel: 1}, {Keys: next, Dir: dataplane.In, Tunnel: 1}}, 0x1001, []uint32{0x1001, 0x1002}, nil},
		{[]dataplane.SA{{Keys: old, Dir: dataplane.In, Tunnel: 1}, {Keys: next, Dir: dataplane.Both, Tunnel: 1}}, 0x1002, []uint32{0x1001, 0x1002}, nil},
		{[]dataplane.SA{{Keys: next, Dir: dataplane.Both, Tunnel: 1}}, 0x1002, []uint32{0x1002}, []uint32{0x1001}},
		{nil, 0, nil, []uint32{0x1001, 0x1002}},
	}
	for i, s := range steps {
		if err := b.Set(&dataplane.State{SAs: s.sas}); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		out, ok := b.Outbound(1)
		switch {
		case s.outSPI == 0 && ok:
			t.Errorf("step %d: tunnel 1 served by %08x, want none", i, out.Keys.SPI)
		case s.outSPI != 0 && (!ok || out.Keys.SPI != s.outSPI):
			t.Errorf("step %d: tunnel 1 served by %08x (%v), want %08x", i, out.Keys.SPI, ok, s.outSPI)
		}
		snap := b.Snapshot()
		for _, spi := range s.inbound {
			if _, ok := snap.Inbound(spi); !ok {
				t.Errorf("step %d: %08x not inbound", i, spi)
			}
		}
		for _, spi := range s.absentIn {
			if _, ok := snap.Inbound(spi); ok {
				t.Errorf("step %d: %08x still inbound", i, spi)
			}
		}
		if o, ok := snap.Outbound(1); ok != (s.outSPI != 0) || ok && o.Keys.SPI != s.outSPI {
			t.Errorf("step %d: snapshot disagrees on tunnel 1", i)
		}
		snap.Wipe()
	}
	if got := b.Gen(); got != uint64(len(steps)) {
		t.Errorf("generation %d after %d changes", got, len(steps))
	}
}

func TestWait(t *testing.T) {
	b := New()
	var wg sync.WaitGroup
	start := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		for _, spi := range []uint32{0x1001, 0x1002, 0x1003} {
			if err := b.Set(&dataplane.State{SAs: []dataplane.SA{{Keys: keys(spi, cbc, 1), Dir: dataplane.Both, Tunnel: 1}}}); err != nil {
				t.Error(err)
			}
		}
	}()
	changed := b.Changed()
	close(start)
	snap, err := b.Wait(ctxT(t), func(s Snapshot) bool {
		_, ok := s.Inbound(0x1003)
		return ok
	})
	if err != nil {
		t.Fatal(err)
	}
	snap.Wipe()
	select {
	case <-changed:
	default:
		t.Error("Changed channel not closed after a change")
	}
	wg.Wait()
	if err := b.WaitText(ctxT(t), "sa 00001003 both tunnel 1 AES_CBC_128/HMAC_SHA2_256_128 replay 0\n"); err != nil {
		t.Fatal(err)
	}

	// A condition that never holds ends with the context, naming what was seen.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = b.WaitText(ctx, "never")
	if !errors.Is(err, context.Canceled) || !bytes.Contains([]byte(err.Error()), []byte("sa 00001003")) {
		t.Fatalf("WaitText on a cancelled context: %v", err)
	}
}

func TestCloseAndFailures(t *testing.T) {
	b := New()
	injected := errors.New("injected")
	b.FailNextSet(injected)
	if err := b.Set(groupState(0x1001)); !errors.Is(err, injected) {
		t.Fatalf("Set after FailNextSet: %v", err)
	}
	if b.Text() != "" {
		t.Fatal("a failed Set installed something")
	}
	if err := b.Set(groupState(0x1001)); err != nil {
		t.Fatalf("the failure was not one-shot: %v", err)
	}
	if err := b.Set(nil); err == nil {
		t.Error("Set(nil) accepted")
	}
	b.SetStats(dataplane.Stats{RxPackets: 3, Drops: map[string]uint64{"bad_icv": 2}})
	st := b.Stats()
	st.Drops["bad_icv"] = 99 // the caller's map is its own
	if got := b.Stats(); got.RxPackets != 3 || got.Drops["bad_icv"] != 2 {
		t.Errorf("Stats = %+v", got)
	}

	changed := b.Changed()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Error("Close did not signal a change")
	}
	if err := b.Set(groupState(0x1001)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Set after Close: %v, want net.ErrClosed", err)
	}
	if snap := b.Snapshot(); !snap.Closed || len(snap.SAs) != 0 {
		t.Errorf("snapshot after Close: %+v", snap)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
