package mpsa

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/memory"
	"github.com/mpsa-vpn/mpsa/routing"
)

// testClock is a clock tests step by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock { return &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// wire carries INFORMATIONAL requests from the key server to the CPEs in
// memory, one at a time, so a test decides when each is delivered, lost or
// held back.
type wire struct {
	t     *testing.T
	clock *testClock
	mu    sync.Mutex
	queue []*request
}

type request struct {
	to   *testCPE
	sess *memSession
	n    Notify
	done func(error)
}

// memSession is one IKE SA of a test CPE.
type memSession struct {
	w    *wire
	cpe  *testCPE
	dead bool
}

func (s *memSession) Inform(ns []Notify, done func(error)) {
	if len(ns) != 1 {
		s.w.t.Errorf("Inform with %d notifies", len(ns))
	}
	s.w.mu.Lock()
	s.w.queue = append(s.w.queue, &request{to: s.cpe, sess: s, n: ns[0], done: done})
	s.w.mu.Unlock()
}

// take removes and returns the queued requests.
func (w *wire) take() []*request {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue = nil
	return q
}

// pending returns how many requests wait.
func (w *wire) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

var errLost = errors.New("test: no response, retransmissions exhausted")

// deliver hands a request to its CPE (which processes it and answers SK{})
// and reports the response to the key server, or reports a failure when the
// session is dead.
func (w *wire) deliver(r *request) {
	if r.sess.dead {
		r.done(errLost)
		return
	}
	r.to.receive(r.n, w.clock.Now())
	r.done(nil)
}

// flush delivers everything queued, including what the responses trigger.
func (w *wire) flush() int {
	n := 0
	for q := w.take(); len(q) > 0; q = w.take() {
		for _, r := range q {
			w.deliver(r)
			n++
		}
	}
	return n
}

// testCPE is a CPE: a Member feeding an in-memory data plane.
type testCPE struct {
	t        *testing.T
	name     string
	m        *Member
	dp       *memory.Backend
	received []*Put // copies of every MPSA_PUT received (keys wiped)
	sess     *memSession
}

const testTunnel routing.Tunnel = 7

func newTestCPE(t *testing.T, name string, log *slog.Logger) *testCPE {
	m, err := NewMember(MemberConfig{Tunnel: testTunnel, Logger: log.With("id", name)})
	if err != nil {
		t.Fatal(err)
	}
	c := &testCPE{t: t, name: name, m: m, dp: memory.New()}
	t.Cleanup(func() { m.Close(); c.dp.Close() })
	return c
}

func (c *testCPE) receive(n Notify, now time.Time) {
	if p, err := DecodePut(n); err == nil {
		p.Wipe()
		c.received = append(c.received, p)
	}
	changed, err := c.m.Handle(n, now)
	if err != nil {
		c.t.Logf("%s refused MPSA_PUT: %v", c.name, err)
	}
	if changed {
		c.program()
	}
}

func (c *testCPE) tick(now time.Time) {
	if c.m.Tick(now) {
		c.program()
	}
}

func (c *testCPE) program() {
	sas := c.m.SAs()
	defer WipeSAs(sas)
	if err := c.dp.Set(&dataplane.State{SAs: sas}); err != nil {
		c.t.Fatalf("%s: Set: %v", c.name, err)
	}
}

// connect opens a new IKE SA from c to the key server.
func (c *testCPE) connect(ks *KeyServer, w *wire, caps Capabilities) error {
	c.sess = &memSession{w: w, cpe: c}
	return ks.Connected(c.name, c.sess, caps)
}

var fullCaps = Capabilities{MPSA: true, SenderID: true}

// inbound returns the SA c has installed with this SPI.
func (c *testCPE) inbound(spi uint32) (dataplane.SA, bool) {
	sa, ok := c.dp.Inbound(spi)
	return sa, ok
}

// outSPI returns the SPI c sends with on the group tunnel, 0 if none.
func (c *testCPE) outSPI() uint32 {
	sa, ok := c.dp.Outbound(testTunnel)
	if !ok {
		return 0
	}
	defer sa.Keys.Wipe()
	return sa.Keys.SPI
}

// spis renders what c has installed: "spi/dir ..." sorted by SPI.
func (c *testCPE) spis() string {
	snap := c.dp.Snapshot()
	defer snap.Wipe()
	s := ""
	for _, sa := range snap.SAs {
		d := "in"
		if sa.Dir == dataplane.Both {
			d = "both"
		}
		s += fmt.Sprintf("%08x/%s ", sa.Keys.SPI, d)
	}
	return s
}

// seededRand is a deterministic randomness source for a KeyServer.
func seededRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	return rand.NewChaCha8(s)
}

// newTestKeyServer returns a key server on clock with its log in lb.
func newTestKeyServer(t *testing.T, clock *testClock, store Store, lb *logBuffer) *KeyServer {
	t.Helper()
	ks, err := NewKeyServer(KeyServerConfig{Logger: lb.logger(), Now: clock.Now, Rand: seededRand(uint64(len(t.Name()))), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ks.Close)
	return ks
}

func groupStatus(t *testing.T, ks *KeyServer, name string) GroupStatus {
	t.Helper()
	for _, g := range ks.Status() {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("no group %s", name)
	return GroupStatus{}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// memStore is a Store in memory, for key server tests that restart the key
// server (the bbolt file is tested in mpsa/store). It holds the Store
// contract: it keeps copies, and it remembers the slices it exchanged with
// the key server so leftKeys can check that the key server wiped them.
type memStore struct {
	mu        sync.Mutex
	groups    map[string][]byte
	members   map[string]string
	exchanged [][]byte // records handed out by LoadGroup and passed to SaveGroup
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{groups: make(map[string][]byte), members: make(map[string]string)}
}

func (m *memStore) LoadGroup(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.groups[name]
	if !ok {
		return nil, nil
	}
	c := bytes.Clone(v)
	m.exchanged = append(m.exchanged, c)
	return c, nil
}

func (m *memStore) SaveGroup(name string, record []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.groups[name] = bytes.Clone(record)
	m.exchanged = append(m.exchanged, record)
	return nil
}

func (m *memStore) DeleteGroup(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.groups, name)
	return nil
}

func (m *memStore) LoadMembers() (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.members), nil
}

func (m *memStore) UpdateMembers(set map[string]string, del []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range del {
		delete(m.members, n)
	}
	maps.Copy(m.members, set)
	return nil
}

// leftKeys fails when a record the key server loaded or saved is still
// readable in its memory (it must wipe both).
func (m *memStore) leftKeys() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.exchanged) == 0 {
		return errors.New("memStore: no record was exchanged")
	}
	for i, v := range m.exchanged {
		if !bytes.Equal(v, make([]byte, len(v))) {
			return fmt.Errorf("memStore: record %d of %d exchanged with the key server was not wiped", i+1, len(m.exchanged))
		}
	}
	return nil
}
