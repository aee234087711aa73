package mpsa

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"time"
)

// KeyServer defaults.
const (
	DefaultRetryMin = 2 * time.Second
	DefaultRetryMax = 2 * time.Minute

	// MaxCPENameLen bounds CPE names (IKE identities as the daemon names
	// them).
	MaxCPENameLen = 1024

	// sidBlock is how many Sender-IDs are reserved in the store at a time.
	sidBlock = 256
)

// KeyServerConfig configures a KeyServer. Every field is optional.
type KeyServerConfig struct {
	Logger *slog.Logger     // slog.Default() if nil; gets component=mpsa
	Now    func() time.Time // time.Now if nil
	Rand   io.Reader        // crypto/rand.Reader if nil: SPIs, Nonces, SK_d
	Store  Store            // nil keeps state in memory only (mpsa/store keeps it in a file)

	// RetryMin and RetryMax bound the backoff before MPSA_PUT is sent again
	// after a failed INFORMATIONAL exchange (the IKE SA still up): RetryMin,
	// doubling up to RetryMax.
	RetryMin, RetryMax time.Duration
}

// KeyServer is the hub's group key server (draft §3.3.1): it generates each
// group's SA, sends it to every connected CPE of the group in MPSA_PUT,
// rekeys before LIFE ends and when a CPE is revoked, and keeps the state in
// a Store. It has no goroutines or timers: the daemon calls Tick when
// NextDeadline is due, and reports IKE SAs with Connected, SessionRekeyed
// and Disconnected. Its methods are safe for concurrent use; Session.Inform
// is never called with the key server's lock held.
type KeyServer struct {
	log      *slog.Logger
	now      func() time.Time
	rand     io.Reader
	store    *records // nil without a Store
	retryMin time.Duration
	retryMax time.Duration

	// mu guards all following fields.
	mu     sync.Mutex
	closed bool
	groups map[string]*group
	cpes   map[string]*cpe
	retry  map[*cpe]struct{} // CPEs waiting for nextTry
	spis   map[uint32]struct{}
	// revoked holds groups not added yet that lost a CPE: AddGroup rekeys
	// them instead of restoring their stored SA. Group name → CPE name.
	revoked map[string]string
}

// group is one group's state.
type group struct {
	cfg       GroupConfig
	rekeyWait time.Time // after a failed generation, no new try before this
	epochs    []*epoch  // live epochs, oldest first; the last is the one sent
	lastEpoch uint64
	members   map[*cpe]struct{}
	connected int
}

func (g *group) newest() *epoch {
	if len(g.epochs) == 0 {
		return nil
	}
	return g.epochs[len(g.epochs)-1]
}

// epoch is one generation of a group's SA: what the store keeps
// (epochRecord: superseded is when the next epoch was generated, dies is set
// then to min(expires, next.created+Roll2), Sender-IDs below reservedSID are
// reserved in the store) and the bookkeeping around it.
type epoch struct {
	epochRecord

	nextSID uint32 // next Sender-ID to hand out

	sent, acked     int
	ackMax, ackSum  time.Duration
	announcedAllAck bool
}

func (e *epoch) wipe() {
	clear(e.nonce)
	clear(e.skd)
}

func (e *epoch) deadline() time.Time {
	if !e.dies.IsZero() {
		return e.dies
	}
	return e.expires
}

// cpe is one provisioned CPE.
type cpe struct {
	name      string
	groupName string
	group     *group // nil while its group is not added

	sess Session // nil while not connected
	gen  uint64  // bumps whenever sess changes: late callbacks are ignored

	// Delivery of the group's newest epoch over sess.
	epoch    *epoch // epoch being delivered or delivered; nil: none yet
	senderID uint32 // in epoch, for this session
	inflight bool
	acked    bool
	attempts int
	sentAt   time.Time
	nextTry  time.Time

	ackedEpoch uint64 // newest epoch acknowledged over sess
	ackLatency time.Duration
}

// send is one MPSA_PUT to hand to a Session once the lock is released.
type send struct {
	c      *cpe
	sess   Session
	gen    uint64
	epochN uint64
	n      Notify
}

// NewKeyServer returns a key server. With a Store it loads the provisioned
// CPEs; groups come back from the store when AddGroup names them.
func NewKeyServer(cfg KeyServerConfig) (*KeyServer, error) {
	ks := &KeyServer{
		log:      cfg.Logger,
		now:      cfg.Now,
		rand:     cfg.Rand,
		retryMin: cfg.RetryMin,
		retryMax: cfg.RetryMax,
		groups:   make(map[string]*group),
		cpes:     make(map[string]*cpe),
		retry:    make(map[*cpe]struct{}),
		spis:     make(map[uint32]struct{}),
		revoked:  make(map[string]string),
	}
	if cfg.Store != nil {
		ks.store = &records{cfg.Store}
	}
	if ks.log == nil {
		ks.log = slog.Default()
	}
	ks.log = ks.log.With("component", "mpsa")
	if ks.now == nil {
		ks.now = time.Now
	}
	if ks.rand == nil {
		ks.rand = rand.Reader
	}
	if ks.retryMin <= 0 {
		ks.retryMin = DefaultRetryMin
	}
	if ks.retryMax < ks.retryMin {
		ks.retryMax = max(DefaultRetryMax, ks.retryMin)
	}
	if ks.store != nil {
		members, err := ks.store.loadMembers()
		if err != nil {
			return nil, err
		}
		for name, g := range members {
			ks.cpes[name] = &cpe{name: name, groupName: g}
		}
	}
	return ks, nil
}

// AddGroup adds a group, or updates its configuration. A new group takes its
// live epochs from the store, with what is left of their lifetimes computed
// from the stored absolute times; it generates a first SA only when none is
// left (or the suite, PRF or Sender-ID width changed). Updating a group
// whose suite, PRF or Sender-ID width changed rolls it over to a new SA at
// once; other changes apply from the next epoch.
func (ks *KeyServer) AddGroup(cfg GroupConfig) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	ks.mu.Lock()
	sends, err := ks.addGroupLocked(cfg)
	ks.mu.Unlock()
	ks.dispatch(sends)
	return err
}

func (ks *KeyServer) addGroupLocked(cfg GroupConfig) ([]send, error) {
	if ks.closed {
		return nil, ErrClosed
	}
	now := ks.now()
	if g, ok := ks.groups[cfg.Name]; ok {
		old := g.cfg
		g.cfg = cfg
		if e := g.newest(); e == nil || e.params != cfg.keyParams() {
			sends, err := ks.rekeyLocked(g, now, "configuration changed")
			if err != nil {
				g.cfg = old
			}
			return sends, err
		}
		return nil, nil
	}

	g := &group{cfg: cfg, members: make(map[*cpe]struct{})}
	if ks.store != nil {
		rec, err := ks.store.loadGroup(cfg.Name)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			ks.restoreLocked(g, rec, now)
		}
	}
	ks.groups[cfg.Name] = g
	for _, c := range ks.cpes {
		if c.groupName == cfg.Name {
			c.group = g
			g.members[c] = struct{}{}
		}
	}
	who, lost := ks.revoked[cfg.Name]
	delete(ks.revoked, cfg.Name)
	if e := g.newest(); e != nil && e.params == cfg.keyParams() && !lost {
		ks.log.Info("group SA restored", "group", cfg.Name, "epoch", e.n, "esp_spi", hex32(e.spi),
			"reason", fmt.Sprintf("%ds of lifetime left", int64(e.expires.Sub(now)/time.Second)))
		return nil, nil
	}
	reason := "new group"
	switch {
	case lost:
		reason = "revocation of " + who
	case len(g.epochs) > 0:
		reason = "configuration changed"
	}
	sends, err := ks.rekeyLocked(g, now, reason)
	if err != nil {
		delete(ks.groups, cfg.Name)
		for c := range g.members {
			c.group = nil
		}
		for _, e := range g.epochs {
			delete(ks.spis, e.spi)
			e.wipe()
		}
		if lost {
			ks.revoked[cfg.Name] = who // the next AddGroup must still rekey
		}
	}
	return sends, err
}

// restoreLocked rebuilds g's live epochs from its stored record.
func (ks *KeyServer) restoreLocked(g *group, rec *groupRecord, now time.Time) {
	g.lastEpoch = rec.lastEpoch
	for i := range rec.epochs {
		r := &rec.epochs[i]
		_, taken := ks.spis[r.spi]
		if taken || !now.Before(r.expires) || (!r.dies.IsZero() && !now.Before(r.dies)) {
			clear(r.nonce)
			clear(r.skd)
			continue
		}
		// IDs below the reservation may have been handed out before the
		// restart: never again in this epoch.
		e := &epoch{epochRecord: *r, nextSID: r.reservedSID}
		if e.nextSID == 0 {
			e.nextSID = 1
		}
		ks.spis[e.spi] = struct{}{}
		g.epochs = append(g.epochs, e)
	}
}

// RemoveGroup forgets a group: its keys are wiped and removed from the
// store, its CPEs stay provisioned but get nothing until it is added again.
func (ks *KeyServer) RemoveGroup(name string) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	g, ok := ks.groups[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownGroup, name)
	}
	for c := range g.members {
		ks.detachLocked(c)
		c.group = nil
	}
	for _, e := range g.epochs {
		delete(ks.spis, e.spi)
		e.wipe()
	}
	g.epochs = nil
	delete(ks.groups, name)
	ks.log.Info("group removed", "group", name)
	if ks.store != nil {
		return ks.store.deleteGroup(name)
	}
	return nil
}

// Provision puts a CPE into a group, or moves it. Moving it out of a group
// revokes it there (that group is rekeyed at once); the daemon deletes its
// IKE SA so that it reconnects into the new group.
func (ks *KeyServer) Provision(name, group string) error {
	return ks.Sync(nil, map[string]string{name: group})
}

// Revoke removes a CPE from the provisioning: it is never sent another SA,
// and its group is rekeyed at once so it cannot read the group's traffic
// after the rollover (draft §5.3's "MAY", made the rule). The daemon
// deletes the CPE's IKE SA. Revoking an unknown CPE does nothing.
func (ks *KeyServer) Revoke(name string) error {
	return ks.Sync([]string{name}, nil)
}

// Sync applies provisioning changes in one step: it revokes the CPEs in
// revoke, then provisions those in provision (CPE name → group name), and
// rekeys each group that lost a CPE once, however many it lost. When the
// daemon starts or reloads its config it passes every stored CPE that is no
// longer configured (see Provisioned) and every configured one.
func (ks *KeyServer) Sync(revoke []string, provision map[string]string) error {
	for name, g := range provision {
		if name == "" || len(name) > MaxCPENameLen || g == "" || len(g) > MaxGroupNameLen {
			return fmt.Errorf("mpsa: bad provisioning %q → %q", name, g)
		}
	}
	ks.mu.Lock()
	sends, err := ks.syncLocked(revoke, provision)
	ks.mu.Unlock()
	ks.dispatch(sends)
	return err
}

func (ks *KeyServer) syncLocked(revoke []string, provision map[string]string) ([]send, error) {
	if ks.closed {
		return nil, ErrClosed
	}
	now := ks.now()
	var del []string
	set := make(map[string]string)
	lost := make(map[*group]string) // group → a revoked CPE, for the log
	remove := func(c *cpe, reason string) {
		ks.detachLocked(c)
		if c.group != nil {
			delete(c.group.members, c)
			lost[c.group] = c.name
		} else {
			ks.revoked[c.groupName] = c.name
		}
		ks.log.Info("CPE revoked", "id", c.name, "group", c.groupName, "reason", reason)
		delete(ks.cpes, c.name)
		del = append(del, c.name)
	}
	for _, name := range revoke {
		if c, ok := ks.cpes[name]; ok {
			remove(c, "removed from provisioning")
		}
	}
	for name, gname := range provision {
		if c, ok := ks.cpes[name]; ok {
			if c.groupName == gname {
				continue
			}
			remove(c, "moved to group "+gname)
		}
		c := &cpe{name: name, groupName: gname}
		if g, ok := ks.groups[gname]; ok {
			c.group = g
			g.members[c] = struct{}{}
		}
		ks.cpes[name] = c
		set[name] = gname
	}
	var firstErr error
	if ks.store != nil && (len(set) > 0 || len(del) > 0) {
		firstErr = ks.store.updateMembers(set, del)
	}
	var sends []send
	for g, who := range lost {
		s, err := ks.rekeyLocked(g, now, "revocation of "+who)
		sends = append(sends, s...)
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return sends, firstErr
}

// Provisioned returns the provisioning as the key server holds it (loaded
// from the store at start): CPE name → group name.
func (ks *KeyServer) Provisioned() map[string]string {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	m := make(map[string]string, len(ks.cpes))
	for name, c := range ks.cpes {
		m[name] = c.groupName
	}
	return m
}

// Connected reports that a provisioned CPE completed IKE_AUTH on sess with
// the capabilities it announced; the key server starts sending it its
// group's SA. A CPE without the MPSA Vendor ID gets ErrNotCapable; one
// without Sender-ID support in a group that uses Sender-IDs gets
// ErrNoSenderID and a log line saying why. A second Connected for the same
// CPE replaces the first session (the CPE may have restarted): it gets a
// fresh Sender-ID. sess is compared with == by Disconnected and
// SessionRekeyed, so it must be of a comparable type (a pointer).
func (ks *KeyServer) Connected(name string, sess Session, caps Capabilities) error {
	if sess == nil || !reflect.TypeOf(sess).Comparable() {
		return fmt.Errorf("mpsa: CPE %s: session of non-comparable type %T", name, sess)
	}
	ks.mu.Lock()
	sends, err := ks.connectedLocked(name, sess, caps)
	ks.mu.Unlock()
	ks.dispatch(sends)
	return err
}

func (ks *KeyServer) connectedLocked(name string, sess Session, caps Capabilities) ([]send, error) {
	if ks.closed {
		return nil, ErrClosed
	}
	c, ok := ks.cpes[name]
	if !ok {
		ks.log.Warn("CPE refused", "id", name, "reason", "not provisioned in any group")
		return nil, fmt.Errorf("%w: %s", ErrUnknownCPE, name)
	}
	g := c.group
	if g == nil {
		ks.log.Warn("CPE refused", "id", name, "group", c.groupName, "reason", "its group is not configured")
		return nil, fmt.Errorf("%w %q for CPE %s", ErrUnknownGroup, c.groupName, name)
	}
	if !caps.MPSA {
		ks.log.Warn("CPE refused", "id", name, "group", g.cfg.Name, "reason", "no multi-point SA Vendor ID in IKE_SA_INIT")
		return nil, fmt.Errorf("%w: %s", ErrNotCapable, name)
	}
	if g.cfg.SenderIDBits > 0 && !caps.SenderID {
		ks.log.Warn("CPE refused", "id", name, "group", g.cfg.Name,
			"reason", fmt.Sprintf("group uses %v with Sender-IDs and the CPE did not announce Sender-ID support (notify %d in IKE_AUTH)", g.cfg.Suite, NotifySenderIDSupported))
		return nil, fmt.Errorf("%w: %s in group %s", ErrNoSenderID, name, g.cfg.Name)
	}
	ks.detachLocked(c)
	c.sess = sess
	g.connected++
	return ks.deliverLocked(c, ks.now()), nil
}

// SessionRekeyed reports that the CPE's IKE SA old was rekeyed into new
// (RFC 7296 §2.18): same CPE, same data plane, so it keeps its Sender-ID and
// whatever it acknowledged; an MPSA_PUT in flight on old is sent again on
// new.
func (ks *KeyServer) SessionRekeyed(name string, old, new Session) {
	if new == nil || !reflect.TypeOf(new).Comparable() {
		return
	}
	ks.mu.Lock()
	var sends []send
	if c, ok := ks.cpes[name]; ok && c.sess != nil && c.sess == old && !ks.closed {
		c.sess = new
		c.gen++
		if c.inflight {
			c.inflight = false
			c.nextTry = time.Time{}
			sends = ks.deliverLocked(c, ks.now())
		}
	}
	ks.mu.Unlock()
	ks.dispatch(sends)
}

// Disconnected reports that the CPE's IKE SA sess is gone. The CPE stays
// provisioned; its group SA keeps working on the CPE until LIFE ends.
func (ks *KeyServer) Disconnected(name string, sess Session) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if c, ok := ks.cpes[name]; ok && c.sess != nil && c.sess == sess {
		ks.detachLocked(c)
	}
}

// detachLocked drops c's session, if any. Callbacks still due for it are
// ignored.
func (ks *KeyServer) detachLocked(c *cpe) {
	if c.sess != nil && c.group != nil {
		c.group.connected--
	}
	c.sess = nil
	c.gen++
	c.epoch = nil
	c.senderID = 0
	c.inflight, c.acked = false, false
	c.attempts = 0
	c.nextTry = time.Time{}
	c.ackedEpoch = 0
	delete(ks.retry, c)
}

// deliverLocked starts sending g's newest epoch to c if nothing is in the
// way, and returns the send to dispatch.
func (ks *KeyServer) deliverLocked(c *cpe, now time.Time) []send {
	g := c.group
	if c.sess == nil || g == nil {
		return nil
	}
	e := g.newest()
	if e == nil {
		return nil
	}
	if c.epoch != e {
		c.epoch, c.acked, c.attempts = e, false, 0
		c.senderID = 0
		c.nextTry = time.Time{}
		delete(ks.retry, c)
	}
	if c.acked || c.inflight {
		return nil
	}
	if now.Before(c.nextTry) {
		ks.retry[c] = struct{}{}
		return nil
	}
	delete(ks.retry, c)
	if e.params.senderIDBits > 0 && c.senderID == 0 {
		id, err := ks.allocSenderIDLocked(g, e)
		if err == errSenderIDsExhausted && uint64(g.connected) > uint64(1)<<e.params.senderIDBits-1 {
			ks.log.Error("CPE gets no SA", "id", c.name, "group", g.cfg.Name, "epoch", e.n,
				"reason", fmt.Sprintf("%d connected CPEs do not fit %d-bit Sender-IDs", g.connected, e.params.senderIDBits))
			ks.scheduleRetryLocked(c, now)
			return nil
		}
		if err == errSenderIDsExhausted {
			// A new epoch starts a fresh ID space; rekeyLocked delivers
			// it to c as to every other connected CPE.
			sends, err := ks.rekeyLocked(g, now, "Sender-ID space exhausted")
			if err != nil {
				ks.scheduleRetryLocked(c, now)
			}
			return sends
		}
		if err != nil {
			ks.log.Error("Sender-ID reservation failed; will retry", "id", c.name, "group", g.cfg.Name, "epoch", e.n, "err", err)
			ks.scheduleRetryLocked(c, now)
			return nil
		}
		c.senderID = id
	}
	life := e.expires.Sub(now)
	if life < time.Second {
		return nil // about to die; Tick generates the successor
	}
	p := Put{
		SPI: e.spi, Suite: e.params.suite, PRF: e.params.prf, Nonce: e.nonce, SKd: e.skd,
		Life:         life.Truncate(time.Second),
		Roll1:        max(0, e.created.Add(g.cfg.Roll1).Sub(now)).Truncate(time.Second),
		Roll2:        max(0, e.created.Add(g.cfg.Roll2).Sub(now)).Truncate(time.Second),
		SenderIDBits: e.params.senderIDBits, SenderID: c.senderID,
	}
	if p.Roll2 >= p.Life { // only when the config shrank below the epoch's
		p.Roll1, p.Roll2 = min(p.Roll1, p.Life-time.Second), p.Life-time.Second
	}
	n, err := p.Encode()
	if err != nil {
		ks.log.Error("cannot encode MPSA_PUT", "id", c.name, "group", g.cfg.Name, "epoch", e.n, "err", err)
		return nil
	}
	c.inflight = true
	c.attempts++
	if c.attempts == 1 {
		c.sentAt = now
		e.sent++
	}
	return []send{{c: c, sess: c.sess, gen: c.gen, epochN: e.n, n: n}}
}

var errSenderIDsExhausted = fmt.Errorf("mpsa: Sender-ID space exhausted")

// allocSenderIDLocked hands out the next Sender-ID of e, reserving a block
// in the store first when needed so that a restart never hands it out again.
func (ks *KeyServer) allocSenderIDLocked(g *group, e *epoch) (uint32, error) {
	limit := uint64(1)<<e.params.senderIDBits - 1
	if uint64(e.nextSID) > limit || e.nextSID == 0 {
		return 0, errSenderIDsExhausted
	}
	if ks.store != nil && e.nextSID >= e.reservedSID {
		old := e.reservedSID
		e.reservedSID = uint32(min(uint64(e.nextSID)+sidBlock, limit+1))
		if err := ks.store.saveGroup(ks.recordLocked(g)); err != nil {
			e.reservedSID = old
			return 0, err
		}
	}
	id := e.nextSID
	e.nextSID++
	if uint64(e.nextSID) > limit {
		e.nextSID = 0 // exhausted; nextSID 0 is never handed out
	}
	return id, nil
}

func (ks *KeyServer) scheduleRetryLocked(c *cpe, now time.Time) {
	d := ks.retryMin
	for i := 1; i < c.attempts && d < ks.retryMax; i++ {
		d *= 2
	}
	c.nextTry = now.Add(min(d, ks.retryMax))
	ks.retry[c] = struct{}{}
}

// dispatch hands each MPSA_PUT to its session. It runs without the lock.
func (ks *KeyServer) dispatch(sends []send) {
	for _, s := range sends {
		s := s
		s.sess.Inform([]Notify{s.n}, func(err error) { ks.informed(s, err) })
	}
}

// informed is the outcome of one Inform.
func (ks *KeyServer) informed(s send, err error) {
	clear(s.n.Data)
	ks.mu.Lock()
	c := s.c
	if c.gen != s.gen || ks.closed {
		ks.mu.Unlock()
		return
	}
	now := ks.now()
	c.inflight = false
	var sends []send
	switch {
	case err == nil && c.epoch != nil && c.epoch.n == s.epochN:
		e := c.epoch
		c.acked = true
		c.ackedEpoch = e.n
		c.ackLatency = now.Sub(c.sentAt)
		e.acked++
		e.ackSum += c.ackLatency
		e.ackMax = max(e.ackMax, c.ackLatency)
		ks.log.Debug("MPSA_PUT acknowledged", "id", c.name, "group", c.groupName, "epoch", e.n, "esp_spi", hex32(e.spi))
		// e.acked ≥ connected is necessary for all to have acked; only
		// then is the O(n) check worth it.
		if g := c.group; g != nil && !e.announcedAllAck && e == g.newest() && e.acked >= g.connected && ks.allAckedLocked(g, e) {
			e.announcedAllAck = true
			ks.log.Info("group SA distributed", "group", g.cfg.Name, "epoch", e.n, "esp_spi", hex32(e.spi),
				"reason", fmt.Sprintf("all %d connected CPEs acknowledged", g.connected))
		}
	case err == nil:
		// Acknowledged an epoch that has been superseded meanwhile:
		// deliverLocked below sends the newest.
	default:
		ks.log.Debug("MPSA_PUT not acknowledged; will retry", "id", c.name, "group", c.groupName, "epoch", s.epochN, "err", err)
		if c.epoch != nil && c.epoch.n == s.epochN {
			ks.scheduleRetryLocked(c, now)
		}
	}
	sends = ks.deliverLocked(c, now)
	ks.mu.Unlock()
	ks.dispatch(sends)
}

func (ks *KeyServer) allAckedLocked(g *group, e *epoch) bool {
	for c := range g.members {
		if c.sess != nil && !(c.acked && c.epoch == e) {
			return false
		}
	}
	return true
}

// rekeyLocked generates g's next epoch, persists it and starts sending it to
// every connected CPE of g.
func (ks *KeyServer) rekeyLocked(g *group, now time.Time, reason string) ([]send, error) {
	e, err := ks.newEpochLocked(g, now)
	if err != nil {
		ks.log.Error("group SA generation failed", "group", g.cfg.Name, "reason", reason, "err", err)
		return nil, err
	}
	if prev := g.newest(); prev != nil {
		prev.superseded = now
		prev.dies = now.Add(g.cfg.Roll2)
		if prev.expires.Before(prev.dies) {
			prev.dies = prev.expires
		}
	}
	g.epochs = append(g.epochs, e)
	g.lastEpoch = e.n
	for len(g.epochs) > maxStoredEpochs {
		ks.retireLocked(g, g.epochs[0], "too many epochs")
	}
	ks.log.Info("group SA generated", "group", g.cfg.Name, "epoch", e.n, "esp_spi", hex32(e.spi), "reason", reason)
	if ks.store != nil {
		if err := ks.store.saveGroup(ks.recordLocked(g)); err != nil {
			// Distribute anyway: the CPEs need it before the old SA
			// ends. A restart would then roll the group over once more.
			ks.log.Error("group SA not stored", "group", g.cfg.Name, "epoch", e.n, "err", err)
		}
	}
	var sends []send
	for c := range g.members {
		sends = append(sends, ks.deliverLocked(c, now)...)
	}
	return sends, nil
}

func (ks *KeyServer) newEpochLocked(g *group, now time.Time) (*epoch, error) {
	p := g.cfg.keyParams()
	kl, err := p.prf.KeyLen()
	if err != nil {
		return nil, err
	}
	e := &epoch{epochRecord: epochRecord{
		n: g.lastEpoch + 1, params: p,
		nonce: make([]byte, g.cfg.NonceLen), skd: make([]byte, kl),
		created: now, expires: now.Add(g.cfg.Lifetime),
	}, nextSID: 1}
	if _, err := io.ReadFull(ks.rand, e.nonce); err != nil {
		return nil, fmt.Errorf("mpsa: random Nonce: %w", err)
	}
	if _, err := io.ReadFull(ks.rand, e.skd); err != nil {
		e.wipe()
		return nil, fmt.Errorf("mpsa: random SK_d: %w", err)
	}
	var b [4]byte
	for i := 0; ; i++ {
		if i == 64 {
			e.wipe()
			return nil, fmt.Errorf("mpsa: no free SPI after %d random draws", i)
		}
		if _, err := io.ReadFull(ks.rand, b[:]); err != nil {
			e.wipe()
			return nil, fmt.Errorf("mpsa: random SPI: %w", err)
		}
		spi := binary.BigEndian.Uint32(b[:])
		if _, taken := ks.spis[spi]; spi >= 256 && !taken {
			e.spi = spi
			break
		}
	}
	ks.spis[e.spi] = struct{}{}
	return e, nil
}

// retireLocked removes a dead epoch and wipes its keys.
func (ks *KeyServer) retireLocked(g *group, e *epoch, reason string) {
	for i, x := range g.epochs {
		if x == e {
			g.epochs = append(g.epochs[:i], g.epochs[i+1:]...)
			break
		}
	}
	delete(ks.spis, e.spi)
	e.wipe()
	ks.log.Info("group SA retired", "group", g.cfg.Name, "epoch", e.n, "esp_spi", hex32(e.spi), "reason", reason)
}

func (ks *KeyServer) recordLocked(g *group) *groupRecord {
	r := &groupRecord{name: g.cfg.Name, lastEpoch: g.lastEpoch, epochs: make([]epochRecord, len(g.epochs))}
	for i, e := range g.epochs {
		r.epochs[i] = e.epochRecord // shares the key slices: encode wipes only its own buffer
	}
	return r
}

// Tick does what is due at now: it rekeys groups whose newest SA is within
// RekeyMargin of its LIFE, retires (and wipes) epochs past their rollover or
// LIFE, and resends MPSA_PUT whose retry time came. Call it when
// NextDeadline is reached; calling it more often is harmless.
func (ks *KeyServer) Tick() {
	ks.mu.Lock()
	if ks.closed {
		ks.mu.Unlock()
		return
	}
	now := ks.now()
	var sends []send
	for _, g := range ks.groups {
		changed := false
		for _, e := range append([]*epoch(nil), g.epochs...) {
			if !now.Before(e.deadline()) {
				reason := "rollover done"
				if !now.Before(e.expires) {
					reason = "lifetime expired"
				}
				ks.retireLocked(g, e, reason)
				changed = true
			}
		}
		if ks.rekeyDueLocked(g, now) {
			s, err := ks.rekeyLocked(g, now, "lifetime")
			sends = append(sends, s...)
			if err != nil {
				g.rekeyWait = now.Add(ks.retryMin)
			} else {
				changed = false // rekeyLocked stored it
			}
		}
		if changed && ks.store != nil {
			if err := ks.store.saveGroup(ks.recordLocked(g)); err != nil {
				ks.log.Error("group state not stored", "group", g.cfg.Name, "err", err)
			}
		}
	}
	for c := range ks.retry {
		if !now.Before(c.nextTry) {
			sends = append(sends, ks.deliverLocked(c, now)...)
		}
	}
	ks.mu.Unlock()
	ks.dispatch(sends)
}

// NextDeadline returns when Tick has something to do next: a rekey, an epoch
// to retire or a retry. It is the zero Time when there is nothing.
func (ks *KeyServer) NextDeadline() time.Time {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	var t earliest
	next := t.add
	for _, g := range ks.groups {
		for _, e := range g.epochs {
			next(e.deadline())
		}
		if e := g.newest(); e != nil {
			next(maxTime(e.expires.Add(-g.cfg.RekeyMargin), g.rekeyWait))
		} else {
			next(maxTime(g.rekeyWait, ks.now()))
		}
	}
	for c := range ks.retry {
		next(c.nextTry)
	}
	return t.t
}

// Close wipes every key the key server holds and makes later calls fail
// with ErrClosed; callbacks still due are ignored. It does not close the
// Store.
func (ks *KeyServer) Close() {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.closed {
		return
	}
	ks.closed = true
	for _, g := range ks.groups {
		for _, e := range g.epochs {
			e.wipe()
		}
		g.epochs = nil
	}
	for _, c := range ks.cpes {
		c.gen++
		c.sess = nil
	}
}

func (ks *KeyServer) rekeyDueLocked(g *group, now time.Time) bool {
	if now.Before(g.rekeyWait) {
		return false
	}
	e := g.newest()
	return e == nil || !now.Before(e.expires.Add(-g.cfg.RekeyMargin))
}

// earliest keeps the earliest of the times added; zero until one is.
type earliest struct{ t time.Time }

func (e *earliest) add(t time.Time) {
	if e.t.IsZero() || t.Before(e.t) {
		e.t = t
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

func hex32(v uint32) string { return fmt.Sprintf("%08x", v) }
