package mpsa

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/transform"
)

// hub is a key server and its CPEs in one process.
type hub struct {
	t     *testing.T
	clock *testClock
	log   *logBuffer
	ks    *KeyServer
	w     *wire
	cpes  map[string]*testCPE
}

func newHub(t *testing.T, store Store, groups []GroupConfig, members map[string]string) *hub {
	t.Helper()
	h := &hub{t: t, clock: newClock(), log: &logBuffer{}, cpes: make(map[string]*testCPE)}
	h.w = &wire{t: t, clock: h.clock}
	h.ks = newTestKeyServer(t, h.clock, store, h.log)
	for _, g := range groups {
		if err := h.ks.AddGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.ks.Sync(nil, members); err != nil {
		t.Fatal(err)
	}
	for name := range members {
		h.cpes[name] = newTestCPE(t, name, h.log.logger())
	}
	return h
}

func (h *hub) connectAll() {
	h.t.Helper()
	for _, c := range h.cpes {
		if err := c.connect(h.ks, h.w, fullCaps); err != nil {
			h.t.Fatal(err)
		}
	}
	h.w.flush()
}

// step advances the clock by d and runs every Tick, delivering what they
// send at once.
func (h *hub) step(d time.Duration) time.Time {
	now := h.clock.Advance(d)
	h.ks.Tick()
	h.w.flush()
	for _, c := range h.cpes {
		c.tick(now)
	}
	return now
}

func (h *hub) keysOf(name string, spi uint32) dataplane.SA {
	h.t.Helper()
	sa, ok := h.cpes[name].inbound(spi)
	if !ok {
		h.t.Fatalf("%s has no SA %08x: %s", name, spi, h.cpes[name].spis())
	}
	h.t.Cleanup(func() { sa.Keys.Wipe() })
	return sa
}

func sameKeys(a, b dataplane.SA) bool {
	return a.Keys.SPI == b.Keys.SPI && a.Keys.Suite == b.Keys.Suite &&
		bytes.Equal(a.Keys.EncKey, b.Keys.EncKey) && bytes.Equal(a.Keys.IntegKey, b.Keys.IntegKey)
}

var (
	acme = GroupConfig{Name: "acme"}
	beta = GroupConfig{Name: "beta", Suite: transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 256}}
)

func TestGroupsShareKeys(t *testing.T) {
	h := newHub(t, nil, []GroupConfig{acme, beta},
		map[string]string{"a1": "acme", "a2": "acme", "a3": "acme", "b1": "beta", "b2": "beta"})
	h.connectAll()

	st := h.ks.Status()
	if len(st) != 2 || len(st[0].Epochs) != 1 || len(st[1].Epochs) != 1 {
		t.Fatalf("status %+v", st)
	}
	acmeSPI, betaSPI := st[0].Epochs[0].SPI, st[1].Epochs[0].SPI
	if acmeSPI == betaSPI {
		t.Fatal("two groups share an SPI")
	}
	a1 := h.keysOf("a1", acmeSPI)
	if a1.Dir != dataplane.Both || a1.ReplayWindow != 0 || a1.SenderIDBits != 0 || a1.Keys.Suite != DefaultSuite || a1.Tunnel != testTunnel {
		t.Errorf("acme SA on a1: %+v", a1)
	}
	for _, n := range []string{"a2", "a3"} {
		if sa := h.keysOf(n, acmeSPI); !sameKeys(a1, sa) || sa.Dir != dataplane.Both {
			t.Errorf("%s holds other keys or direction than a1", n)
		}
	}
	b1 := h.keysOf("b1", betaSPI)
	b2 := h.keysOf("b2", betaSPI)
	if !sameKeys(b1, b2) {
		t.Error("b1 and b2 hold different keys")
	}
	if b1.SenderIDBits != 16 || b1.SenderID == 0 || b1.SenderID == b2.SenderID || b1.ReplayWindow != DefaultReplayWindow {
		t.Errorf("beta Sender-IDs %d/%d bits %d, window %d", b1.SenderID, b2.SenderID, b1.SenderIDBits, b1.ReplayWindow)
	}
	if bytes.Equal(b1.Keys.EncKey[:32], a1.Keys.EncKey) {
		t.Error("beta's key equals acme's")
	}
	for _, n := range []string{"b1", "b2"} {
		if _, ok := h.cpes[n].inbound(acmeSPI); ok {
			t.Errorf("%s of beta holds acme's SA", n)
		}
	}
	for _, n := range []string{"a1", "a2", "a3"} {
		if _, ok := h.cpes[n].inbound(betaSPI); ok {
			t.Errorf("%s of acme holds beta's SA", n)
		}
	}
	for _, g := range st {
		if g.Connected != len(g.CPEs) {
			t.Errorf("%s: %d connected of %d", g.Name, g.Connected, len(g.CPEs))
		}
		for _, c := range g.CPEs {
			if !c.Connected || c.AckedEpoch != 1 || c.Pending != 0 {
				t.Errorf("%s/%s: %+v", g.Name, c.Name, c)
			}
		}
		if e := g.Epochs[0]; e.Sent != len(g.CPEs) || e.Acked != len(g.CPEs) {
			t.Errorf("%s epoch: sent %d acked %d", g.Name, e.Sent, e.Acked)
		}
	}
	if !strings.Contains(h.log.String(), `msg="group SA distributed" component=mpsa group=acme epoch=1`) {
		t.Errorf("no distribution log line:\n%s", h.log)
	}
}

// TestRollover steps a group through a scheduled rekey one second at a time
// and checks each CPE follows ROLL1 and ROLL2 within a tick, including a CPE
// whose MPSA_PUT arrives late.
func TestRollover(t *testing.T) {
	cfg := GroupConfig{Name: "acme", Lifetime: 600 * time.Second, RekeyMargin: 120 * time.Second, Roll1: 30 * time.Second, Roll2: 60 * time.Second}
	h := newHub(t, nil, []GroupConfig{cfg}, map[string]string{"c1": "acme", "c2": "acme", "late": "acme"})
	t0 := h.clock.Now()
	h.connectAll()
	old := h.ks.Status()[0].Epochs[0].SPI
	oldSKd, oldNonce := h.ks.groups["acme"].epochs[0].skd, h.ks.groups["acme"].epochs[0].nonce
	for _, c := range h.cpes {
		if c.spis() != hex32(old)+"/both " {
			t.Fatalf("%s after connect: %s", c.name, c.spis())
		}
	}
	if d := h.ks.NextDeadline(); !d.Equal(t0.Add(480 * time.Second)) {
		t.Fatalf("next deadline %v, want rekey at +480s", d.Sub(t0))
	}

	var newSPI uint32
	var lateHeld []*request
	events := map[string]map[string]time.Duration{} // cpe → event → time since t0
	note := func(c, ev string, now time.Time) {
		if events[c] == nil {
			events[c] = map[string]time.Duration{}
		}
		if _, seen := events[c][ev]; !seen {
			events[c][ev] = now.Sub(t0)
		}
	}
	for now := t0; now.Sub(t0) < 600*time.Second; {
		now = h.clock.Advance(time.Second)
		h.ks.Tick()
		for _, r := range h.w.take() {
			if r.to.name == "late" && now.Sub(t0) < 490*time.Second {
				lateHeld = append(lateHeld, r) // lost; the engine gives up after 8 s
				continue
			}
			h.w.deliver(r)
		}
		if now.Sub(t0) == 488*time.Second {
			for _, r := range lateHeld {
				r.done(errLost) // retried 2 s later, at +490
			}
			lateHeld = nil
		}
		h.w.flush()
		for _, c := range h.cpes {
			c.tick(now)
		}
		if st := h.ks.Status()[0]; newSPI == 0 && len(st.Epochs) == 2 {
			newSPI = st.Epochs[1].SPI
			note("hub", "rekey", now)
		}
		if newSPI == 0 {
			continue
		}
		for _, c := range h.cpes {
			if _, ok := c.inbound(newSPI); ok {
				note(c.name, "new in", now)
			}
			if c.outSPI() == newSPI {
				note(c.name, "new out", now)
			}
			if _, ok := c.inbound(old); !ok {
				note(c.name, "old gone", now)
			}
		}
		if st := h.ks.Status()[0]; len(st.Epochs) == 1 && st.Epochs[0].SPI == newSPI {
			note("hub", "old retired", now)
		}
	}
	want := map[string]map[string]time.Duration{
		"hub":  {"rekey": 480 * time.Second, "old retired": 540 * time.Second},
		"c1":   {"new in": 480 * time.Second, "new out": 510 * time.Second, "old gone": 540 * time.Second},
		"c2":   {"new in": 480 * time.Second, "new out": 510 * time.Second, "old gone": 540 * time.Second},
		"late": {"new in": 490 * time.Second, "new out": 510 * time.Second, "old gone": 540 * time.Second},
	}
	for who, evs := range want {
		for ev, at := range evs {
			got, ok := events[who][ev]
			if !ok {
				t.Errorf("%s: %s never happened", who, ev)
				continue
			}
			if d := got - at; d < 0 || d > time.Second {
				t.Errorf("%s: %s at +%v, want +%v within a tick", who, ev, got, at)
			}
		}
	}
	// The late CPE got ROLL1/ROLL2 shortened by the 10 s its first
	// exchange and the retry backoff took.
	late := h.cpes["late"].received
	if p := late[len(late)-1]; p.SPI != newSPI || p.Roll1 != 20*time.Second || p.Roll2 != 50*time.Second || p.Life != 590*time.Second {
		t.Errorf("late CPE's MPSA_PUT: %v roll1 %v roll2 %v", p, p.Roll1, p.Roll2)
	}
	if p := h.cpes["c1"].received[1]; p.Roll1 != 30*time.Second || p.Roll2 != 60*time.Second || p.Life != 600*time.Second {
		t.Errorf("c1's MPSA_PUT: %v roll1 %v roll2 %v", p, p.Roll1, p.Roll2)
	}
	if e := h.ks.Status()[0].Epochs[0]; e.Acked != 3 || e.AckMax != 10*time.Second || e.Sent != 3 {
		t.Errorf("epoch 2 bookkeeping: %+v", e)
	}
	if !bytes.Equal(oldSKd, make([]byte, len(oldSKd))) || !bytes.Equal(oldNonce, make([]byte, len(oldNonce))) {
		t.Error("the hub did not wipe the retired epoch's SK_d and Nonce")
	}
}

func TestMemberLifeExpiresWithoutSuccessor(t *testing.T) {
	lb := &logBuffer{}
	c := newTestCPE(t, "c", lb.logger())
	now := newClock().Now()
	p := draftExample()
	p.Life, p.Roll1, p.Roll2 = 10*time.Second, 0, 0
	n, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	c.receive(n, now)
	if c.spis() != "12345678/both " {
		t.Fatalf("installed %q", c.spis())
	}
	if d := c.m.NextDeadline(); !d.Equal(now.Add(10 * time.Second)) {
		t.Errorf("deadline %v", d.Sub(now))
	}
	c.m.mu.Lock()
	held := c.m.sas[0].keys.EncKey
	c.m.mu.Unlock()
	c.tick(now.Add(9 * time.Second))
	if c.spis() == "" {
		t.Fatal("removed before LIFE")
	}
	c.tick(now.Add(10 * time.Second))
	if c.spis() != "" || len(c.m.SAs()) != 0 {
		t.Fatalf("still installed after LIFE: %q", c.spis())
	}
	if !bytes.Equal(held, make([]byte, len(held))) {
		t.Error("keys of the expired SA not wiped")
	}
	if !strings.Contains(lb.String(), `reason="LIFE expired"`) {
		t.Errorf("no expiry log:\n%s", lb)
	}
}

func TestMemberRefusesBadPut(t *testing.T) {
	lb := &logBuffer{}
	c := newTestCPE(t, "c", lb.logger())
	now := newClock().Now()
	good := draftExample()
	n, _ := good.Encode()
	c.receive(n, now)
	before := c.spis()
	gen := c.dp.Gen()

	cases := map[string]struct {
		data  []byte
		field string
	}{
		"LIFE 0": {rawData(0x2000, append(cbcTransforms()[:5], rawTransform{243, 1, tlvAttr(16386, u32(0))},
			cbcTransforms()[6], cbcTransforms()[7])), "LIFE"},
		"unknown transform": {rawData(0x2000, append(cbcTransforms(), rawTransform{250, 1, nil})), "transform 250"},
		"SK_d wrong size":   {rawData(0x2000, append(cbcTransforms()[:4], rawTransform{242, 1, tlvAttr(16385, seq(20, 0))}, cbcTransforms()[5], cbcTransforms()[6], cbcTransforms()[7])), "SK_d"},
		"truncated":         {rawData(0x2000, cbcTransforms())[:50], "Proposal Length"},
	}
	for name, tc := range cases {
		changed, err := c.m.Handle(Notify{Protocol: 3, Type: NotifyPut, SPI: u32(0x2000), Data: tc.data}, now.Add(time.Second))
		if err == nil || changed || Field(err) != tc.field {
			t.Errorf("%s: changed %v err %v, want field %s", name, changed, err, tc.field)
		}
		if !strings.Contains(lb.String(), `reason="`+tc.field+`"`) && !strings.Contains(lb.String(), "reason="+tc.field+" ") {
			t.Errorf("%s: no log line naming %s:\n%s", name, tc.field, lb)
		}
	}
	// Same SPI with other keys: refused too.
	other := draftExample()
	other.SKd = seq(20, 0x50)
	n2, _ := other.Encode()
	if _, err := c.m.Handle(n2, now.Add(time.Second)); Field(err) != "SPI" {
		t.Errorf("same SPI, other keys: %v", err)
	}
	c.tick(now.Add(2 * time.Second))
	if c.spis() != before || c.dp.Gen() != gen {
		t.Errorf("bad MPSA_PUTs changed the installed SAs: %q", c.spis())
	}
	// Other notify types are not ours.
	if changed, err := c.m.Handle(Notify{Type: 16384}, now); changed || err != nil {
		t.Errorf("foreign notify: %v %v", changed, err)
	}
}

func TestRevocation(t *testing.T) {
	h := newHub(t, nil, []GroupConfig{acme, beta},
		map[string]string{"a1": "acme", "a2": "acme", "evil": "acme", "b1": "beta"})
	h.connectAll()
	st := h.ks.Status()
	oldSPI, betaSPI := st[0].Epochs[0].SPI, st[1].Epochs[0].SPI
	evil := h.cpes["evil"]
	evilMsgs := len(evil.received)

	if err := h.ks.Revoke("evil"); err != nil {
		t.Fatal(err)
	}
	// The new epoch is generated at once, before any tick.
	st = h.ks.Status()
	if len(st[0].Epochs) != 2 {
		t.Fatalf("no rekey on revocation: %+v", st[0].Epochs)
	}
	newSPI := st[0].Epochs[1].SPI
	if len(st[1].Epochs) != 1 || st[1].Epochs[0].SPI != betaSPI {
		t.Error("revocation in acme rekeyed beta")
	}
	for _, c := range st[0].CPEs {
		if c.Name == "evil" {
			t.Error("revoked CPE still in status")
		}
	}
	if !strings.Contains(h.log.String(), `reason="revocation of evil"`) {
		t.Errorf("no rekey reason in log:\n%s", h.log)
	}
	h.w.flush()
	for i := 0; i < 200; i++ {
		h.step(time.Second)
	}
	for _, n := range []string{"a1", "a2"} {
		if got := h.cpes[n].spis(); got != hex32(newSPI)+"/both " {
			t.Errorf("%s after rollover: %s", n, got)
		}
	}
	if len(evil.received) != evilMsgs {
		t.Errorf("revoked CPE received %d more MPSA_PUT", len(evil.received)-evilMsgs)
	}
	if _, ok := evil.inbound(newSPI); ok {
		t.Error("revoked CPE holds the new SA")
	}
	if _, ok := evil.inbound(oldSPI); !ok {
		t.Error("revoked CPE lost the old SA (it had no reason to)")
	}
	// The revoked CPE can no longer connect.
	if err := evil.connect(h.ks, h.w, fullCaps); !errors.Is(err, ErrUnknownCPE) {
		t.Errorf("revoked CPE connects: %v", err)
	}
	if h.w.pending() != 0 {
		t.Error("something was sent to the revoked CPE")
	}
}

// TestRevocationIgnoresLateAck revokes a CPE while its MPSA_PUT is in flight.
func TestRevocationIgnoresLateAck(t *testing.T) {
	h := newHub(t, nil, []GroupConfig{acme}, map[string]string{"a1": "acme", "a2": "acme"})
	for _, c := range h.cpes {
		if err := c.connect(h.ks, h.w, fullCaps); err != nil {
			t.Fatal(err)
		}
	}
	q := h.w.take()
	if err := h.ks.Revoke("a2"); err != nil {
		t.Fatal(err)
	}
	for _, r := range q {
		h.w.deliver(r) // the ack of a2 comes after its revocation
	}
	h.w.flush()
	st := groupStatus(t, h.ks, "acme")
	if len(st.CPEs) != 1 || st.CPEs[0].Name != "a1" || st.CPEs[0].AckedEpoch != 2 {
		t.Errorf("status after revocation: %+v", st.CPEs)
	}
	if e := st.Epochs[1]; e.Sent != 1 || e.Acked != 1 {
		t.Errorf("epoch 2: %+v", e)
	}
}

func TestConnectRefusals(t *testing.T) {
	h := newHub(t, nil, []GroupConfig{acme, beta}, map[string]string{"a1": "acme", "b1": "beta"})
	if err := h.cpes["b1"].connect(h.ks, h.w, Capabilities{MPSA: true}); !errors.Is(err, ErrNoSenderID) {
		t.Errorf("GCM group without Sender-ID support: %v", err)
	}
	if !strings.Contains(h.log.String(), "did not announce Sender-ID support") || !strings.Contains(h.log.String(), "id=b1") {
		t.Errorf("refusal not logged with the reason:\n%s", h.log)
	}
	if err := h.cpes["a1"].connect(h.ks, h.w, Capabilities{}); !errors.Is(err, ErrNotCapable) {
		t.Errorf("plain IKEv2 peer: %v", err)
	}
	// A CBC group takes CPEs without Sender-ID support.
	if err := h.cpes["a1"].connect(h.ks, h.w, Capabilities{MPSA: true}); err != nil {
		t.Errorf("CBC group: %v", err)
	}
	if err := h.ks.Connected("stranger", &memSession{w: h.w}, fullCaps); !errors.Is(err, ErrUnknownCPE) {
		t.Errorf("unprovisioned CPE: %v", err)
	}
	if err := h.ks.Connected("a1", BlockingSession(func([]Notify) error { return nil }), fullCaps); err != nil {
		t.Errorf("BlockingSession refused: %v", err)
	}
	h.ks.Disconnected("a1", nil)
	if h.w.flush() != 1 {
		t.Error("refused CPEs were sent something")
	}
}

func TestRetryUntilAckedOrGone(t *testing.T) {
	h := newHub(t, nil, []GroupConfig{acme}, map[string]string{"a1": "acme"})
	c := h.cpes["a1"]
	if err := c.connect(h.ks, h.w, fullCaps); err != nil {
		t.Fatal(err)
	}
	t0 := h.clock.Now()
	var tries []time.Duration
	for i := 0; i < 3; i++ { // three failed exchanges
		q := h.w.take()
		if len(q) != 1 {
			t.Fatalf("try %d: %d requests", i, len(q))
		}
		tries = append(tries, h.clock.Now().Sub(t0))
		q[0].done(errLost)
		for h.w.pending() == 0 {
			next := h.ks.NextDeadline()
			h.clock.Advance(next.Sub(h.clock.Now()))
			h.ks.Tick()
		}
	}
	tries = append(tries, h.clock.Now().Sub(t0))
	want := []time.Duration{0, 2 * time.Second, 6 * time.Second, 14 * time.Second}
	for i := range want {
		if tries[i] != want[i] {
			t.Errorf("attempt %d at +%v, want +%v (backoff %v)", i, tries[i], want[i], tries)
		}
	}
	if st := groupStatus(t, h.ks, "acme"); st.CPEs[0].Attempts != 4 || st.CPEs[0].Pending != 1 {
		t.Errorf("status: %+v", st.CPEs[0])
	}
	h.w.flush()
	if st := groupStatus(t, h.ks, "acme"); st.CPEs[0].AckedEpoch != 1 || st.CPEs[0].AckLatency != 14*time.Second {
		t.Errorf("status after ack: %+v", st.CPEs[0])
	}

	// A failed exchange on an IKE SA that then dies is not retried.
	h.ks.Revoke("nobody")
	if err := c.connect(h.ks, h.w, fullCaps); err != nil {
		t.Fatal(err)
	}
	q := h.w.take()
	q[0].done(errLost)
	h.ks.Disconnected("a1", c.sess)
	if d := h.ks.NextDeadline(); d.Before(t0.Add(time.Hour)) {
		t.Errorf("a retry is still scheduled at %v", d)
	}
}

func TestSessionRekeyed(t *testing.T) {
	h := newHub(t, nil, []GroupConfig{beta}, map[string]string{"b1": "beta"})
	c := h.cpes["b1"]
	if err := c.connect(h.ks, h.w, fullCaps); err != nil {
		t.Fatal(err)
	}
	oldSess := c.sess
	q := h.w.take() // in flight on the old IKE SA
	newSess := &memSession{w: h.w, cpe: c}
	h.ks.SessionRekeyed("b1", oldSess, newSess)
	q2 := h.w.take()
	if len(q2) != 1 || q2[0].sess != newSess {
		t.Fatalf("not resent on the new IKE SA: %v", q2)
	}
	oldSess.dead = true
	h.w.deliver(q[0]) // the old exchange fails late: ignored
	h.w.deliver(q2[0])
	h.w.flush()
	p1, _ := DecodePut(q[0].n)
	st := groupStatus(t, h.ks, "beta").CPEs[0]
	if st.AckedEpoch != 1 || st.SenderID != 1 || len(c.received) != 1 || c.received[0].SenderID != 1 || p1 != nil {
		t.Errorf("after IKE rekey: %+v, received %d", st, len(c.received))
	}
	// Disconnected with the old session does nothing now.
	h.ks.Disconnected("b1", oldSess)
	if !groupStatus(t, h.ks, "beta").CPEs[0].Connected {
		t.Error("stale Disconnected dropped the new IKE SA")
	}
}

// TestSenderIDs checks that a reconnecting CPE gets a fresh Sender-ID, that
// an exhausted ID space rolls the group to a new epoch, and that a group
// with more CPEs than IDs does not rekey in a loop.
func TestSenderIDs(t *testing.T) {
	g := GroupConfig{Name: "tiny", Suite: beta.Suite, SenderIDBits: 2} // IDs 1..3
	h := newHub(t, nil, []GroupConfig{g}, map[string]string{"c1": "tiny", "c2": "tiny"})
	h.connectAll()
	ids := map[uint32]bool{}
	for _, c := range h.cpes {
		ids[c.received[0].SenderID] = true
	}
	if len(ids) != 2 {
		t.Fatalf("Sender-IDs %v", ids)
	}
	c1 := h.cpes["c1"]
	if err := c1.connect(h.ks, h.w, fullCaps); err != nil { // reconnect: ID 3
		t.Fatal(err)
	}
	h.w.flush()
	if id := c1.received[1].SenderID; ids[id] || id != 3 {
		t.Errorf("reconnected CPE got Sender-ID %d again", id)
	}
	if sa := h.keysOf("c1", c1.received[1].SPI); sa.SenderID != 3 {
		t.Errorf("data plane Sender-ID %d", sa.SenderID)
	}
	if err := c1.connect(h.ks, h.w, fullCaps); err != nil { // exhausted: epoch 2
		t.Fatal(err)
	}
	h.w.flush()
	st := groupStatus(t, h.ks, "tiny")
	if len(st.Epochs) != 2 || !strings.Contains(h.log.String(), "Sender-ID space exhausted") {
		t.Fatalf("no rekey on exhaustion: %+v", st.Epochs)
	}
	for _, c := range h.cpes {
		if p := c.received[len(c.received)-1]; p.SPI != st.Epochs[1].SPI || p.SenderID == 0 || p.SenderID > 2 {
			t.Errorf("%s: %v Sender-ID %d", c.name, p, p.SenderID)
		}
	}

	// Four CPEs cannot fit 2-bit IDs: the fourth is refused its SA, once.
	h2 := newHub(t, nil, []GroupConfig{g}, map[string]string{"c1": "tiny", "c2": "tiny", "c3": "tiny", "c4": "tiny"})
	h2.connectAll()
	st = groupStatus(t, h2.ks, "tiny")
	if len(st.Epochs) > 2 || !strings.Contains(h2.log.String(), "do not fit 2-bit Sender-IDs") {
		t.Errorf("epochs %d; log:\n%s", len(st.Epochs), h2.log)
	}
}

func TestRestartKeepsEpoch(t *testing.T) {
	// The file behind a Store, and a restart with it, is tested in
	// mpsa/store (TestRestartFromFile).
	store := newMemStore()
	cfgs := []GroupConfig{acme, beta}
	members := map[string]string{"a1": "acme", "a2": "acme", "b1": "beta", "gone": "acme"}
	h := newHub(t, store, cfgs, members)
	h.connectAll()
	st1 := h.ks.Status()
	a1Before := h.keysOf("a1", st1[0].Epochs[0].SPI)
	b1ID := h.cpes["b1"].received[0].SenderID
	rekeyAt := h.ks.NextDeadline()
	acmeSKd := h.ks.groups["acme"].epochs[0].skd
	h.ks.Close()
	if !bytes.Equal(acmeSKd, make([]byte, len(acmeSKd))) {
		t.Error("Close did not wipe SK_d")
	}

	// 100 s later the hub comes back; its CPEs kept their SAs.
	store2 := store
	h.clock.Advance(100 * time.Second)
	lb := &logBuffer{}
	ks2 := newTestKeyServer(t, h.clock, store2, lb)
	if got := ks2.Provisioned(); len(got) != len(members) || got["b1"] != "beta" {
		t.Fatalf("provisioning from the store: %v", got)
	}
	for _, g := range cfgs {
		if err := ks2.AddGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	st2 := ks2.Status()
	for i := range st1 {
		a, b := st1[i].Epochs[0], st2[i].Epochs[0]
		if len(st2[i].Epochs) != 1 || a.Epoch != b.Epoch || a.SPI != b.SPI || !a.Expires.Equal(b.Expires) {
			t.Errorf("%s: epoch before %+v after %+v", st1[i].Name, a, b)
		}
	}
	if strings.Contains(lb.String(), "group SA generated") {
		t.Errorf("restart generated an SA:\n%s", lb)
	}
	if err := store2.leftKeys(); err != nil {
		t.Error(err)
	}
	if d := ks2.NextDeadline(); !d.Equal(rekeyAt) {
		t.Errorf("rekey moved from %v to %v", rekeyAt, d)
	}

	// The CPEs reconnect and get the SA they hold, with LIFE recomputed.
	h.ks = ks2
	gens := map[string]uint64{}
	for n, c := range h.cpes {
		if n != "gone" {
			gens[n] = c.dp.Gen()
			if err := c.connect(ks2, h.w, fullCaps); err != nil {
				t.Fatal(err)
			}
		}
	}
	h.w.flush()
	for n, g := range gens {
		c := h.cpes[n]
		p := c.received[len(c.received)-1]
		if p.Life != DefaultLifetime-100*time.Second {
			t.Errorf("%s: LIFE %v after restart", n, p.Life)
		}
		if n != "b1" && c.dp.Gen() != g {
			t.Errorf("%s: data plane changed by the restart: %s", n, c.spis())
		}
	}
	if a1 := h.keysOf("a1", st1[0].Epochs[0].SPI); !sameKeys(a1, a1Before) {
		t.Error("a1's keys changed across the restart")
	}
	// b1 got a fresh Sender-ID beyond the block reserved before the restart.
	if id := h.cpes["b1"].received[1].SenderID; id <= b1ID || id < sidBlock {
		t.Errorf("b1's Sender-ID after restart %d (before %d)", id, b1ID)
	}

	// "gone" was removed from the config while the hub was down: the
	// daemon revokes it, which rekeys acme.
	if err := ks2.Sync([]string{"gone"}, nil); err != nil {
		t.Fatal(err)
	}
	if st := groupStatus(t, ks2, "acme"); len(st.Epochs) != 2 {
		t.Errorf("revocation after restart did not rekey: %+v", st.Epochs)
	}
	h.w.flush()
}

// TestRevokedWhileGroupNotLoaded: after a restart the daemon may sync the
// provisioning before it adds the groups; the revocation still rekeys.
func TestRevokedWhileGroupNotLoaded(t *testing.T) {
	store := newMemStore()
	h := newHub(t, store, []GroupConfig{acme}, map[string]string{"a1": "acme", "gone": "acme"})
	spi := h.ks.Status()[0].Epochs[0].SPI
	h.ks.Close()
	ks2 := newTestKeyServer(t, h.clock, store, &logBuffer{})
	if err := ks2.Revoke("gone"); err != nil {
		t.Fatal(err)
	}
	if err := ks2.AddGroup(acme); err != nil {
		t.Fatal(err)
	}
	st := ks2.Status()[0]
	if len(st.Epochs) != 2 || st.Epochs[0].SPI != spi || len(st.CPEs) != 1 {
		t.Errorf("after restart and revocation: %+v", st)
	}
}

func TestGroupConfigChange(t *testing.T) {
	h := newHub(t, nil, []GroupConfig{acme}, map[string]string{"a1": "acme"})
	h.connectAll()
	// Lifetime change: applies from the next epoch.
	longer := acme
	longer.Lifetime = 24 * time.Hour
	if err := h.ks.AddGroup(longer); err != nil {
		t.Fatal(err)
	}
	if n := len(h.ks.Status()[0].Epochs); n != 1 {
		t.Errorf("lifetime change rekeyed: %d epochs", n)
	}
	// Suite change: rolls over at once.
	gcm := longer
	gcm.Suite = beta.Suite
	if err := h.ks.AddGroup(gcm); err != nil {
		t.Fatal(err)
	}
	h.w.flush()
	st := h.ks.Status()[0]
	if len(st.Epochs) != 2 {
		t.Fatalf("suite change did not rekey: %+v", st.Epochs)
	}
	p := h.cpes["a1"].received[1]
	if p.Suite != beta.Suite || p.SenderIDBits != DefaultSenderIDBits || p.Life != 24*time.Hour {
		t.Errorf("after suite change: %v", p)
	}
	if err := h.ks.RemoveGroup("acme"); err != nil {
		t.Fatal(err)
	}
	if len(h.ks.Status()) != 0 || h.ks.NextDeadline() != (time.Time{}) {
		t.Error("group still there")
	}
}

func TestGroupConfigValidate(t *testing.T) {
	bad := map[string]GroupConfig{
		"no name":           {},
		"GCM no sender IDs": {Name: "x", Suite: beta.Suite, SenderIDBits: 0},
		"sender IDs 33":     {Name: "x", SenderIDBits: 33},
		"roll2 > margin":    {Name: "x", Roll2: time.Hour},
		"roll1 > roll2":     {Name: "x", Roll1: 10 * time.Minute, Roll2: 5 * time.Minute},
		"margin > life":     {Name: "x", RekeyMargin: 10 * time.Hour},
		"fractional":        {Name: "x", Lifetime: 90*time.Minute + time.Millisecond},
		"nonce 8":           {Name: "x", NonceLen: 8},
		"bad PRF":           {Name: "x", PRF: 99},
		"CBC no integ":      {Name: "x", Suite: transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256}},
	}
	for name, c := range bad {
		c = c.WithDefaults()
		if name == "GCM no sender IDs" {
			c.SenderIDBits = 0
		}
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ok := GroupConfig{Name: "x"}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
}

// TestNoKeysInLogs runs a group through connect, rekey and revocation with
// debug logging and looks for any key material in the output.
func TestNoKeysInLogs(t *testing.T) {
	h := newHub(t, nil, []GroupConfig{acme, beta}, map[string]string{"a1": "acme", "a2": "acme", "b1": "beta"})
	h.connectAll()
	var secrets [][]byte
	for _, g := range h.ks.groups {
		for _, e := range g.epochs {
			secrets = append(secrets, bytes.Clone(e.skd), bytes.Clone(e.nonce))
		}
	}
	for _, n := range []string{"a1", "b1"} {
		sa := h.keysOf(n, h.cpes[n].received[0].SPI)
		secrets = append(secrets, sa.Keys.EncKey, sa.Keys.IntegKey)
	}
	h.ks.Revoke("a2")
	for i := 0; i < 200; i++ {
		h.step(time.Second)
	}
	out := h.log.String()
	for _, s := range secrets {
		if len(s) == 0 {
			continue
		}
		for _, enc := range []string{hexString(s[:8]), string(s[:8])} {
			if strings.Contains(strings.ToLower(out), strings.ToLower(enc)) {
				t.Fatalf("key material in the log:\n%s", out)
			}
		}
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	s := make([]byte, 0, 2*len(b))
	for _, x := range b {
		s = append(s, digits[x>>4], digits[x&15])
	}
	return string(s)
}

func TestSyncRekeysOnce(t *testing.T) {
	h := newHub(t, nil, []GroupConfig{acme}, map[string]string{"a1": "acme", "a2": "acme", "a3": "acme", "a4": "acme"})
	h.connectAll()
	if err := h.ks.Sync([]string{"a3", "a4", "unknown"}, map[string]string{"a5": "acme"}); err != nil {
		t.Fatal(err)
	}
	h.w.flush()
	st := groupStatus(t, h.ks, "acme")
	if len(st.Epochs) != 2 || len(st.CPEs) != 3 {
		t.Fatalf("after revoking two: %d epochs, CPEs %+v", len(st.Epochs), st.CPEs)
	}
	for _, n := range []string{"a3", "a4"} {
		if len(h.cpes[n].received) != 1 {
			t.Errorf("%s received the new SA", n)
		}
	}
	// Moving a CPE to another group revokes it in the first.
	if err := h.ks.AddGroup(beta); err != nil {
		t.Fatal(err)
	}
	if err := h.ks.Provision("a2", "beta"); err != nil {
		t.Fatal(err)
	}
	if st := groupStatus(t, h.ks, "acme"); len(st.Epochs) != 3 {
		t.Errorf("move did not rekey the old group: %d epochs", len(st.Epochs))
	}
	if got := h.ks.Provisioned(); got["a2"] != "beta" || len(got) != 3 {
		t.Errorf("provisioning %v", got)
	}
}

func TestBlockingSession(t *testing.T) {
	release := make(chan error)
	var got []Notify
	s := BlockingSession(func(ns []Notify) error {
		got = ns
		return <-release
	})
	done := make(chan error, 2)
	s.Inform([]Notify{{Type: NotifyPut}}, func(err error) { done <- err })
	select {
	case err := <-done:
		t.Fatalf("done before the send returned: %v", err)
	default:
	}
	release <- errLost
	select {
	case err := <-done:
		if err != errLost || len(got) != 1 {
			t.Errorf("done(%v), sent %v", err, got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("done never called")
	}
}

// failingReader returns n random octets, then errors.
type failingReader struct{ n int }

func (f *failingReader) Read(b []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("test: entropy source failed")
	}
	k := min(len(b), f.n)
	for i := range b[:k] {
		b[i] = byte(f.n + i)
	}
	f.n -= k
	return k, nil
}

func TestRekeyFailureBacksOff(t *testing.T) {
	clock := newClock()
	lb := &logBuffer{}
	src := &failingReader{n: 32 + 32 + 4} // one epoch's Nonce, SK_d, SPI
	ks, err := NewKeyServer(KeyServerConfig{Logger: lb.logger(), Now: clock.Now, Rand: src})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	cfg := GroupConfig{Name: "acme", Lifetime: time.Hour, RekeyMargin: 10 * time.Minute}
	if err := ks.AddGroup(cfg); err != nil {
		t.Fatal(err)
	}
	if err := ks.AddGroup(GroupConfig{Name: "other"}); err == nil || len(ks.Status()) != 1 {
		t.Fatal("group added without randomness")
	}
	clock.Advance(50 * time.Minute)
	ks.Tick()
	if !strings.Contains(lb.String(), "entropy source failed") {
		t.Errorf("failure not logged:\n%s", lb)
	}
	if d := ks.NextDeadline(); !d.Equal(clock.Now().Add(DefaultRetryMin)) {
		t.Errorf("next try at %v, want now+%v", d.Sub(clock.Now()), DefaultRetryMin)
	}
	src.n = 1 << 20
	clock.Advance(DefaultRetryMin)
	ks.Tick()
	if n := len(ks.Status()[0].Epochs); n != 2 {
		t.Errorf("no rekey once randomness is back: %d epochs", n)
	}
}

func TestMemberStats(t *testing.T) {
	c := newTestCPE(t, "c", discardLogger())
	now := newClock().Now()
	n, _ := draftExample().Encode()
	c.receive(n, now)
	n, _ = draftExample().Encode()
	c.receive(n, now.Add(time.Second))
	c.m.Handle(Notify{Protocol: 3, Type: NotifyPut, SPI: u32(1)}, now)
	if st := c.m.Stats(); st != (MemberStats{Accepted: 1, Refreshed: 1, Refused: 1}) {
		t.Errorf("stats %+v", st)
	}
}

// FuzzMemberHandle feeds a Member two notifies: whatever they hold, it
// never panics, never holds more than MaxSAs, and what it installs passes
// the data plane's validation.
func FuzzMemberHandle(f *testing.F) {
	a, _ := draftExample().Encode()
	p := draftExample()
	p.SPI, p.Roll1, p.Roll2 = 0x9999, 5*time.Second, 10*time.Second
	b, _ := p.Encode()
	f.Add(a.SPI, a.Data, b.SPI, b.Data, uint16(3))
	f.Fuzz(func(t *testing.T, spi1, d1, spi2, d2 []byte, dt uint16) {
		m, err := NewMember(MemberConfig{Tunnel: 1, MaxSAs: 2, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		now := newClock().Now()
		m.Handle(Notify{Protocol: 3, Type: NotifyPut, SPI: spi1, Data: d1}, now)
		m.Handle(Notify{Protocol: 3, Type: NotifyPut, SPI: spi2, Data: d2}, now.Add(time.Duration(dt)*time.Millisecond))
		m.Tick(now.Add(time.Duration(dt) * time.Second))
		sas := m.SAs()
		defer WipeSAs(sas)
		if len(sas) > 2 {
			t.Fatalf("%d SAs", len(sas))
		}
		if err := (&dataplane.State{SAs: sas}).Validate(); err != nil {
			t.Fatal(err)
		}
		m.Close()
	})
}
