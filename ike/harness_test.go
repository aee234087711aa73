package ike

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/iketest"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
)

// testPSK is the pre-shared key of the in-process pairs.
var testPSK = []byte("interop-psk-0123456789")

const stepTimeout = 5 * time.Second

// endpoint is one Manager on an iketest.Net.
type endpoint struct {
	t      testing.TB
	name   string
	m      *Manager
	addr   netip.Addr
	c500   *iketest.Conn
	c4500  *iketest.Conn
	events chan Event

	keysMu sync.Mutex
	keys   map[[2]uint64]*suite.IKEKeys // copies of every IKE SA's keys, from Config.KeyLog
}

// pair is an initiator (CPE) and a responder (hub) on one network and clock.
type pair struct {
	t    testing.TB
	net  *iketest.Net
	clk  *iketest.Clock
	i, r *endpoint
}

var (
	hubAddr = netip.MustParseAddr("192.0.2.1")
	cpeAddr = netip.MustParseAddr("192.0.2.2")
	hubID   = auth.MustParseID("fqdn:hub.example.net")
	cpeID   = auth.MustParseID("fqdn:cpe1.example.net")
)

func testLogger(t testing.TB, name string) *slog.Logger {
	if os.Getenv("IKE_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("side", name)
}

// baseConfig is a PSK configuration for id that accepts any peer with the
// same key.
func baseConfig(id auth.ID) Config {
	return Config{
		Local: auth.Local{ID: id, PSK: testPSK},
		Peers: auth.Static(auth.Rule{Pattern: auth.MustParsePattern("any"), Peer: &auth.Peer{PSK: testPSK}}),
	}
}

func newEndpoint(t testing.TB, n *iketest.Net, clk *iketest.Clock, name string, addr netip.Addr, cfg Config, seed uint64) *endpoint {
	t.Helper()
	e := &endpoint{t: t, name: name, addr: addr, events: make(chan Event, 1024)}
	cfg.Clock = clk
	cfg.Rand = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t, name)
	}
	cfg.Events = func(ev Event) { e.events <- ev }
	e.keys = make(map[[2]uint64]*suite.IKEKeys)
	keyLog := cfg.KeyLog
	cfg.KeyLog = func(spiI, spiR uint64, k *suite.IKEKeys) {
		c := *k
		for _, b := range []*[]byte{&c.SKd, &c.SKai, &c.SKar, &c.SKei, &c.SKer, &c.SKpi, &c.SKpr} {
			*b = bytes.Clone(*b)
		}
		e.keysMu.Lock()
		e.keys[[2]uint64{spiI, spiR}] = &c
		e.keysMu.Unlock()
		if keyLog != nil {
			keyLog(spiI, spiR, k)
		}
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	e.c500 = n.Listen(netip.AddrPortFrom(addr, 500))
	e.c4500 = n.Listen(netip.AddrPortFrom(addr, 4500))
	m.AddConn(e.c500, false)
	m.AddConn(e.c4500, true)
	t.Cleanup(m.Close)
	return e
}

// newPair builds a CPE (initiator) and a hub (responder). mod may change
// either configuration.
func newPair(t testing.TB, mod func(i, r *Config)) *pair {
	t.Helper()
	if _, fuzz := t.(*testing.F); !fuzz {
		// Fuzzing runs inputs in worker processes; count only in tests.
		checkGoroutines(t)
	}
	p := &pair{t: t, net: iketest.NewNet(), clk: iketest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	ci, cr := baseConfig(cpeID), baseConfig(hubID)
	cr.LocalTS = []netip.Prefix{netip.MustParsePrefix("10.99.1.0/24")}
	if mod != nil {
		mod(&ci, &cr)
	}
	p.r = newEndpoint(t, p.net, p.clk, "hub", hubAddr, cr, 1)
	p.i = newEndpoint(t, p.net, p.clk, "cpe", cpeAddr, ci, 2)
	return p
}

func defaultConn() Connection {
	return Connection{
		Remote:   []netip.AddrPort{netip.AddrPortFrom(hubAddr, 500)},
		RemoteID: hubID,
		RemoteTS: []netip.Prefix{netip.MustParsePrefix("10.99.1.0/24")},
	}
}

// initiate starts Initiate in the background.
func (p *pair) initiate(c Connection) <-chan initResult {
	ch := make(chan initResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sa, err := p.i.m.Initiate(ctx, c)
		ch <- initResult{sa, err}
	}()
	return ch
}

type initResult struct {
	sa  *SA
	err error
}

// next returns the next datagram on the network.
func (p *pair) next() iketest.Datagram {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	d, err := p.net.Next(ctx)
	if err != nil {
		p.t.Fatalf("no datagram: %v", err)
	}
	return d
}

// step delivers the next datagram, waits until both sides have processed
// it, and returns its decoded header and outer payloads.
func (p *pair) step() *wire.Message {
	p.t.Helper()
	d := p.next()
	p.net.Deliver(d)
	p.settle()
	return decodeDatagram(p.t, d)
}

// settle waits until both endpoints have read what was delivered and their
// SAs have run everything queued so far.
func (p *pair) settle() {
	p.t.Helper()
	for _, e := range []*endpoint{p.i, p.r} {
		e.settle()
	}
}

func (e *endpoint) settle() {
	e.t.Helper()
	c, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	for _, conn := range []*iketest.Conn{e.c500, e.c4500} {
		if err := conn.Idle(c); err != nil {
			e.t.Fatalf("%s: reader busy: %v", e.name, err)
		}
	}
	for _, h := range e.m.Handles() {
		_ = h.call(c, func() error { return nil })
	}
}

// expect steps one datagram and checks its exchange and direction.
func (p *pair) expect(ex wire.ExchangeType, response bool) *wire.Message {
	p.t.Helper()
	m := p.step()
	if m.Exchange != ex || m.IsResponse() != response {
		p.t.Fatalf("got %v, want %v response=%v", m, ex, response)
	}
	return m
}

func decodeDatagram(t testing.TB, d iketest.Datagram) *wire.Message {
	t.Helper()
	b := d.Data
	if d.Dst.Port() == 4500 || d.Src.Port() == 4500 {
		if len(b) < 4 || b[0]|b[1]|b[2]|b[3] != 0 {
			t.Fatalf("datagram on 4500 without non-ESP marker: %v", d)
		}
		b = b[4:]
	}
	m, err := wire.Decode(append([]byte(nil), b...))
	if err != nil {
		t.Fatalf("undecodable datagram %v: %v", d, err)
	}
	return m
}

// quiet checks that nothing is sent (after the executors settle).
func (p *pair) quiet() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if d, err := p.net.Next(ctx); err == nil {
		p.t.Fatalf("unexpected datagram %v: %v", d, decodeDatagram(p.t, d))
	}
}

// event waits for the next event of kind on e, skipping others.
func (e *endpoint) event(kind EventKind) Event {
	e.t.Helper()
	deadline := time.After(stepTimeout)
	for {
		select {
		case ev := <-e.events:
			if ev.Kind == kind {
				return ev
			}
		case <-deadline:
			e.t.Fatalf("%s: no %v event", e.name, kind)
		}
	}
}

// drainEvents returns every queued event once the endpoint is idle.
func (e *endpoint) drainEvents() []Event {
	var out []Event
	for {
		select {
		case ev := <-e.events:
			out = append(out, ev)
		case <-time.After(50 * time.Millisecond):
			return out
		}
	}
}

// establish runs IKE_SA_INIT and IKE_AUTH step by step.
func (p *pair) establish(c Connection) (isa, rsa *SA) {
	p.t.Helper()
	res := p.initiate(c)
	p.expect(wire.IKESAInit, false)
	p.expect(wire.IKESAInit, true)
	p.expect(wire.IKEAuth, false)
	p.expect(wire.IKEAuth, true)
	r := <-res
	if r.err != nil {
		p.t.Fatalf("Initiate: %v", r.err)
	}
	ev := p.r.event(EventIKEUp)
	p.i.event(EventIKEUp)
	return r.sa, ev.SA
}

// children returns the SPIs (in, out) of an SA's CHILD_SAs, sorted.
func children(sa *SA) string {
	var s []string
	for _, c := range sa.Info().Children {
		s = append(s, fmt.Sprintf("%08x/%08x", c.InSPI, c.OutSPI))
	}
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return strings.Join(s, " ")
}

// mirrored checks that both sides see the same CHILD_SAs, each side's in
// SPI being the other's out SPI.
func mirrored(t testing.TB, a, b *SA) {
	t.Helper()
	ac, bc := a.Info().Children, b.Info().Children
	if len(ac) != len(bc) {
		t.Fatalf("children: %s vs %s", children(a), children(b))
	}
	for _, x := range ac {
		found := false
		for _, y := range bc {
			if x.InSPI == y.OutSPI && x.OutSPI == y.InSPI {
				found = true
			}
		}
		if !found {
			t.Fatalf("children do not mirror: %s vs %s", children(a), children(b))
		}
	}
}

// checkGoroutines fails the test if goroutines started during it are still
// running after cleanup (wireguard-go's goroutineLeakCheck).
func checkGoroutines(t testing.TB) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines leaked: %d > %d\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				return
			}
			runtime.Gosched()
			time.Sleep(time.Millisecond)
		}
	})
}

// lastResponseNotify decrypts the response e last sent for h and returns
// its first notify type (0 if none).
func (e *endpoint) lastResponseNotify(t testing.TB, h *SA) wire.NotifyType {
	t.Helper()
	var out wire.NotifyType
	err := h.call(context.Background(), func() error {
		for _, sa := range h.ikeSAs() {
			c := sa.cache
			if !c.valid {
				continue
			}
			msg, err := wire.Decode(append([]byte(nil), c.pkts[0]...))
			if err != nil {
				return err
			}
			sk, prefix := msg.Encrypted()
			// Our own response is sealed for the peer: open it with the
			// peer's direction keys, as KeyLog reported them.
			e.keysMu.Lock()
			k := e.keys[[2]uint64{sa.spiI, sa.spiR}]
			e.keysMu.Unlock()
			if k == nil {
				return fmt.Errorf("no keys logged for %016x_i %016x_r", sa.spiI, sa.spiR)
			}
			_, in, err := k.SKCiphers(!sa.initiator, sa.h.m.rand)
			if err != nil {
				return err
			}
			plain, err := in.OpenInPlace(msg.Raw, len(prefix))
			if err != nil {
				return err
			}
			ps, err := wire.DecodePayloads(sk.Inner, plain)
			if err != nil {
				return err
			}
			for _, p := range ps {
				if n, ok := p.(*wire.Notify); ok {
					out = n.NotifyType
					return nil
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// exhaustRetransmits steps the clock through the retransmission schedule of
// a request just sent (4 s × 1.8^n): each retransmission must come exactly
// on time, and is lost; after the last one the exchange gives up.
func (p *pair) exhaustRetransmits() {
	p.t.Helper()
	gap := DefaultRetransmitTimeout
	for i := 0; i <= DefaultRetransmitTries; i++ {
		p.clk.Advance(gap - time.Millisecond)
		p.quiet()
		p.clk.Advance(time.Millisecond)
		if i < DefaultRetransmitTries {
			p.next() // retransmission i+1, lost
		}
		gap = time.Duration(float64(gap) * DefaultRetransmitBase)
	}
}
