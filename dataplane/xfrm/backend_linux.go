package xfrm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/routing"
)

var _ dataplane.Backend = (*Backend)(nil)

// Backend programs the kernel's XFRM in one network namespace.
//
// Lock order: Backend.mu only; the route routine takes it per batch.
type Backend struct {
	cfg    Config
	log    *slog.Logger
	h      *netlink.Handle
	xs     *xfrmSocket   // for adding states (see nladd_linux.go)
	stat   *os.File      // /proc/net/xfrm_stat of the namespace; nil if the kernel has none
	cancel func()        // ends the route subscription
	done   chan struct{} // closed when routineFollowRoutes returns

	mu sync.Mutex // guards the fields below

	closed       bool
	sas          []dataplane.SA // the current State's SAs; their keys are our copies
	eng          *engine        // the FIB's entries and the incremental reconciliation
	reqids       *reqids
	inst         *installed
	retired      counters // counters of states already removed
	lastProblems int
}

type counters struct{ rxPackets, rxBytes, txPackets, txBytes uint64 }

// New opens the namespace, removes what a previous backend left in the
// same bands, subscribes to the routes and installs their policies (every
// tunnelled prefix blocked until a State brings its SAs).
func New(cfg Config) (*Backend, error) {
	b := &Backend{
		cfg:    cfg,
		log:    cfg.Logger,
		eng:    newEngine(cfg.Bypass),
		reqids: newReqids(cfg.reqIDBase(), ReqIDSpan),
		inst:   newInstalled(),
		done:   make(chan struct{}),
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.log = b.log.With("component", "dataplane")
	if err := checkEndpoints(cfg.Endpoints); err != nil {
		return nil, err
	}
	b.cfg.Endpoints = slices.Clone(cfg.Endpoints)
	for _, p := range cfg.Bypass {
		if !p.IsValid() || p != p.Masked() {
			return nil, fmt.Errorf("xfrm: bypass %v is not a masked prefix", p)
		}
	}

	ns, err := openNetns(cfg.Netns)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	b.h, err = netlink.NewHandleAt(ns, unix.NETLINK_XFRM, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("xfrm: netlink in namespace %q: %w", cfg.Netns, err)
	}
	b.xs, err = openXfrmSocket(ns)
	if err != nil {
		b.h.Close()
		return nil, fmt.Errorf("xfrm: netlink in namespace %q: %w", cfg.Netns, err)
	}
	b.stat, err = openXfrmStat(ns)
	if err != nil {
		b.log.Debug("xfrm: no xfrm_stat; drop counters come from the states", "err", err)
	}
	if err := b.flushStale(); err != nil {
		b.closeHandles()
		return nil, err
	}

	b.cancel = func() {}
	var sub *routing.Subscription
	ctx, cancel := context.WithCancel(context.Background())
	if cfg.Routes != nil {
		sub = cfg.Routes.Subscribe()
		b.cancel = func() { cancel(); sub.Close() }
		// The first update is the snapshot, ready at once.
		u, err := sub.Next(ctx)
		if err != nil {
			b.cancel()
			b.closeHandles()
			return nil, fmt.Errorf("xfrm: reading the FIB: %w", err)
		}
		b.applyUpdate(u)
	} else {
		cancel()
	}
	b.mu.Lock()
	err = b.reconcileLocked(b.sas)
	b.mu.Unlock()
	if err != nil {
		b.cancel()
		b.mu.Lock()
		b.removeAllLocked()
		b.mu.Unlock()
		b.closeHandles()
		return nil, err
	}
	if sub == nil {
		close(b.done)
	} else {
		go b.routineFollowRoutes(ctx, sub)
	}
	return b, nil
}

func openNetns(name string) (netns.NsHandle, error) {
	var (
		ns  netns.NsHandle
		err error
	)
	switch {
	case name == "":
		ns, err = netns.Get()
	case strings.Contains(name, "/"):
		ns, err = netns.GetFromPath(name)
	default:
		ns, err = netns.GetFromName(name)
	}
	if err != nil {
		return netns.None(), fmt.Errorf("xfrm: network namespace %q: %w", name, err)
	}
	return ns, nil
}

// openXfrmStat opens the namespace's /proc/net/xfrm_stat. An open proc
// file keeps reporting the namespace it was opened in.
func openXfrmStat(ns netns.NsHandle) (*os.File, error) {
	var f *os.File
	err := inNetns(ns, func() error {
		var err error
		f, err = os.Open("/proc/thread-self/net/xfrm_stat")
		return err
	})
	return f, err
}

// inNetns runs f on a locked OS thread that has joined ns.
func inNetns(ns netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace: leave it locked so the
		// runtime ends it with this goroutine.
		return fmt.Errorf("xfrm: restoring the network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

func (b *Backend) routineFollowRoutes(ctx context.Context, sub *routing.Subscription) {
	defer close(b.done)
	b.log.Debug("xfrm: following FIB changes")
	defer b.log.Debug("xfrm: stopped following FIB changes")
	for {
		u, err := sub.Next(ctx)
		if err != nil {
			return
		}
		b.applyUpdate(u)
		// Fold what else is already pending into one reconciliation.
		for {
			u, ok, err := sub.TryNext()
			if err != nil || !ok {
				break
			}
			b.applyUpdate(u)
		}
		b.mu.Lock()
		if b.closed {
			err = net.ErrClosed
		} else {
			err = b.reconcileLocked(b.sas)
		}
		b.mu.Unlock()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			b.log.Warn("xfrm: applying FIB changes", "err", err)
		}
		if b.cfg.Applied != nil {
			b.cfg.Applied(err)
		}
	}
}

// applyUpdate folds one FIB update into the backend's copy of the
// forwarding entries.
func (b *Backend) applyUpdate(u routing.Update) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.eng.update(u)
}

// Set installs st: see the package doc for what it becomes. It returns
// once the kernel holds it, or with the errors of the changes the kernel
// refused (the rest is installed, and the next Set or FIB change retries).
// A State the kernel cannot express (ErrSenderID, no local address) is
// refused as a whole and the previous one stays.
func (b *Backend) Set(st *dataplane.State) error {
	if st == nil {
		return errors.New("xfrm: nil State")
	}
	if err := st.Validate(); err != nil {
		return err
	}
	sas := make([]dataplane.SA, len(st.SAs))
	for i := range st.SAs {
		sas[i] = st.SAs[i]
		sas[i].Keys = st.SAs[i].Keys.Clone()
		sas[i].RemoteSelectors = slices.Clone(st.SAs[i].RemoteSelectors)
		sas[i].LocalSelectors = slices.Clone(st.SAs[i].LocalSelectors)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		wipeSAs(sas)
		return net.ErrClosed
	}
	b.eng.changeSAs()
	err := b.reconcileLocked(sas)
	var refused *refusedError
	if errors.As(err, &refused) {
		wipeSAs(sas)
		return refused.err
	}
	wipeSAs(b.sas)
	b.sas = sas
	return err
}

// SetEndpoints replaces Config.Endpoints, this node's own ESP endpoints
// (after a WAN address change, a MOBIKE move), and brings the kernel to
// what the current State and FIB then need, make-before-break: the group
// SAs' inbound states at the new addresses and the states and policies
// whose outer source changed are installed before the inbound states at
// the old addresses go; the rest is left alone. Endpoints the current
// State cannot be installed with (a group SA with no endpoint of its
// family left) are refused and the previous ones stay.
func (b *Backend) SetEndpoints(eps []netip.AddrPort) error {
	if err := checkEndpoints(eps); err != nil {
		return err
	}
	eps = slices.Clone(eps)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return net.ErrClosed
	}
	old := b.cfg.Endpoints
	b.cfg.Endpoints = eps
	b.eng.changeSAs()
	err := b.reconcileLocked(b.sas)
	var refused *refusedError
	if errors.As(err, &refused) {
		b.cfg.Endpoints = old
		return refused.err
	}
	if !slices.Equal(old, eps) {
		b.log.Info("xfrm: ESP endpoints changed", "endpoint", fmt.Sprint(eps))
	}
	return err
}

// Endpoints returns this node's ESP endpoints (Config.Endpoints, as last
// set).
func (b *Backend) Endpoints() []netip.AddrPort {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.cfg.Endpoints)
}

func checkEndpoints(eps []netip.AddrPort) error {
	for _, ep := range eps {
		if !ep.Addr().IsValid() || ep.Addr().Is4In6() || ep.Addr().IsUnspecified() {
			return fmt.Errorf("xfrm: endpoint %v is not a usable local address", ep)
		}
	}
	return nil
}

// refusedError marks a State that cannot be computed at all.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }

func wipeSAs(sas []dataplane.SA) {
	for i := range sas {
		sas[i].Keys.Wipe()
	}
}

// reconcileLocked brings the kernel to what sas and the current routes
// need, recomputing only what changed since the last round (see engine).
func (b *Backend) reconcileLocked(sas []dataplane.SA) error {
	r := b.reqids.clone()
	p, err := b.eng.reconcile(&inputs{
		sas:       sas,
		endpoints: b.cfg.Endpoints,
		bypass:    b.cfg.Bypass,
		prioBase:  b.cfg.priorityBase(),
		reqids:    r,
		source:    b.sourceFor,
	}, b.inst)
	if err != nil {
		return &refusedError{err}
	}
	b.reqids = r
	if n := b.eng.problemCount(); n != b.lastProblems {
		_, top := b.eng.report()
		b.log.Info(fmt.Sprintf("xfrm: %d FIB entries not tunnelled as asked", n), "reason", strings.Join(top, "; "))
		b.lastProblems = n
	}
	if p.empty() {
		return nil
	}
	return b.applyLocked(p)
}

// sourceFor asks the namespace's routing table for the source address
// towards dst.
func (b *Backend) sourceFor(dst netip.Addr) (netip.Addr, bool) {
	routes, err := b.h.RouteGet(dst.AsSlice())
	if err != nil || len(routes) == 0 {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(routes[0].Src)
	if !ok {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func (b *Backend) applyLocked(p *plan) error {
	var errs []error
	var statesFailed bool
	stateErr := func(err error) {
		if err != nil {
			errs = append(errs, err)
			statesFailed = true
		}
	}
	for _, s := range p.replace {
		if err := b.delStateLocked(s.stateID); err != nil {
			stateErr(err)
			continue
		}
		stateErr(b.addStateLocked(s))
	}
	for _, s := range p.addStates {
		err := b.addStateLocked(s)
		if errors.Is(err, syscall.EEXIST) {
			// Not ours by our records (a stale state the band flush
			// missed): take the place.
			if derr := b.h.XfrmStateDel(netlinkStateID(s.stateID)); derr == nil {
				err = b.addStateLocked(s)
			}
		}
		stateErr(err)
	}
	// Policies the kernel refused are retried in the next round (states
	// are compared whole every round).
	var failed []netip.Prefix
	var lost bool
	refused := func(id policyID) {
		if pfx, ok := id.prefix(); ok {
			failed = append(failed, pfx)
		} else {
			lost = true
		}
	}
	for _, pol := range p.policies {
		if err := b.h.XfrmPolicyUpdate(netlinkPolicy(pol)); err != nil {
			errs = append(errs, fmt.Errorf("xfrm: policy %v %v -> %v: %w", pol.dir, pol.src, pol.dst, err))
			refused(pol.policyID)
			continue
		}
		b.inst.policies[pol.policyID] = pol.pval
	}
	for _, id := range p.delPolicies {
		if err := b.delPolicyLocked(id); err != nil {
			errs = append(errs, err)
			refused(id)
		}
	}
	for _, id := range p.delStates {
		stateErr(b.delStateLocked(id))
	}
	b.eng.retry(failed, lost, statesFailed)
	return errors.Join(errs...)
}

func (b *Backend) addStateLocked(s *kstate) error {
	x, err := netlinkState(s)
	if err != nil {
		return err
	}
	if err := b.xs.addState(x); err != nil {
		return fmt.Errorf("xfrm: add state SPI %08x to %v: %w", s.spi, s.dst, err)
	}
	c := *s
	k := s.keys.Clone()
	c.keys = &k
	b.inst.states[s.stateID] = &c
	return nil
}

// delStateLocked removes a state we installed, keeping its counters and
// wiping our copy of its keys.
func (b *Backend) delStateLocked(id stateID) error {
	s := b.inst.states[id]
	if x, err := b.h.XfrmStateGet(netlinkStateID(id)); err == nil {
		b.retired.add(s.in, x)
		wipeNetlinkState(x)
	}
	if err := b.h.XfrmStateDel(netlinkStateID(id)); err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("xfrm: delete state SPI %08x to %v: %w", id.spi, id.dst, err)
	}
	if s != nil {
		s.keys.Wipe()
	}
	delete(b.inst.states, id)
	return nil
}

func (b *Backend) delPolicyLocked(id policyID) error {
	err := b.h.XfrmPolicyDel(&netlink.XfrmPolicy{Src: ipnet(id.src), Dst: ipnet(id.dst), Dir: netlink.Dir(id.dir)})
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("xfrm: delete policy %v %v -> %v: %w", id.dir, id.src, id.dst, err)
	}
	delete(b.inst.policies, id)
	return nil
}

// wipeNetlinkState zeroes the key copies netlink made of a state it read.
func wipeNetlinkState(x *netlink.XfrmState) {
	for _, a := range []*netlink.XfrmStateAlgo{x.Aead, x.Crypt, x.Auth} {
		if a != nil {
			clear(a.Key)
		}
	}
}

func (c *counters) add(in bool, x *netlink.XfrmState) {
	if in {
		c.rxPackets += x.Statistics.Packets
		c.rxBytes += x.Statistics.Bytes
	} else {
		c.txPackets += x.Statistics.Packets
		c.txBytes += x.Statistics.Bytes
	}
}

// kernelObjects lists the states and policies in the namespace that lie
// in the backend's bands, with their families.
func (b *Backend) kernelObjects() (states []*netlink.XfrmState, stateIs4 []bool, pols []*netlink.XfrmPolicy, polIs4 []bool, err error) {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		is4 := fam == netlink.FAMILY_V4
		ss, err := b.h.XfrmStateList(fam)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("xfrm: listing states: %w", err)
		}
		for i := range ss {
			if b.reqids.owns(uint32(ss[i].Reqid)) {
				states, stateIs4 = append(states, &ss[i]), append(stateIs4, is4)
			} else {
				wipeNetlinkState(&ss[i])
			}
		}
		ps, err := b.h.XfrmPolicyList(fam)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("xfrm: listing policies: %w", err)
		}
		base := b.cfg.priorityBase()
		for i := range ps {
			if uint32(ps[i].Priority)-base < PrioritySpan && ps[i].Dir <= netlink.XFRM_DIR_FWD {
				pols, polIs4 = append(pols, &ps[i]), append(polIs4, is4)
			}
		}
	}
	return states, stateIs4, pols, polIs4, nil
}

// flushStale removes the objects a previous backend left in our bands.
func (b *Backend) flushStale() error {
	states, stateIs4, pols, polIs4, err := b.kernelObjects()
	if err != nil {
		return err
	}
	var errs []error
	for i, p := range pols {
		id := policyID{pdir(p.Dir), prefixOf(p.Src, polIs4[i]), prefixOf(p.Dst, polIs4[i])}
		b.inst.policies[id] = pval{}
		errs = append(errs, b.delPolicyLocked(id))
	}
	for i, s := range states {
		wipeNetlinkState(s)
		id := stateID{addrOf(s.Dst, stateIs4[i]), uint32(s.Spi)}
		if err := b.h.XfrmStateDel(netlinkStateID(id)); err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("xfrm: removing stale state SPI %08x to %v: %w", id.spi, id.dst, err))
		}
	}
	if n := len(states) + len(pols); n > 0 {
		b.log.Info(fmt.Sprintf("xfrm: removed %d states and %d policies left by a previous run", len(states), len(pols)))
	}
	return errors.Join(errs...)
}

// KernelText renders the states and policies the kernel holds in the
// backend's bands, as the golden tests render the desired ones, so tests
// can compare what the kernel has with what was meant.
func (b *Backend) KernelText() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return "", net.ErrClosed
	}
	states, stateIs4, pols, polIs4, err := b.kernelObjects()
	if err != nil {
		return "", err
	}
	var sl, pl []string
	for i, s := range states {
		sl = append(sl, renderState(s, stateIs4[i]))
		wipeNetlinkState(s)
	}
	for i, p := range pols {
		pl = append(pl, renderPolicy(p, polIs4[i]))
	}
	slices.Sort(sl)
	slices.Sort(pl)
	return joinLines(append(sl, pl...)), nil
}

// Text renders what the backend has installed, by its own records.
func (b *Backend) Text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := &desired{states: b.inst.states, policies: b.inst.policies}
	text, err := renderDesired(d)
	if err != nil {
		return "error: " + err.Error()
	}
	return text
}

// Stats returns packet counters summed over the backend's states (those
// already removed included) and drop counters from the namespace's
// /proc/net/xfrm_stat, which counts every XFRM drop in the namespace;
// without it, the states' replay and integrity failures.
func (b *Backend) Stats() dataplane.Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.retired
	st := dataplane.Stats{Drops: make(map[string]uint64)}
	if !b.closed {
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			ss, err := b.h.XfrmStateList(fam)
			if err != nil {
				b.log.Debug("xfrm: reading state counters", "err", err)
				continue
			}
			for i := range ss {
				x := &ss[i]
				wipeNetlinkState(x)
				s := b.inst.states[stateID{addrOf(x.Dst, fam == netlink.FAMILY_V4), uint32(x.Spi)}]
				if s == nil || uint32(x.Reqid) != s.reqid {
					continue
				}
				c.add(s.in, x)
				if b.stat == nil {
					st.Drops[DropReplay] += uint64(x.Statistics.Replay)
					st.Drops[DropBadICV] += uint64(x.Statistics.Failed)
				}
			}
		}
	}
	st.RxPackets, st.RxBytes, st.TxPackets, st.TxBytes = c.rxPackets, c.rxBytes, c.txPackets, c.txBytes
	if b.stat != nil {
		if err := readXfrmStat(b.stat, st.Drops); err != nil {
			b.log.Debug("xfrm: reading xfrm_stat", "err", err)
		}
	}
	maps.DeleteFunc(st.Drops, func(_ string, v uint64) bool { return v == 0 })
	return st
}

// Close removes everything the backend installed, wipes its key copies and
// stops following the FIB. Set returns net.ErrClosed afterwards.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.removeAllLocked()
	for id, s := range b.inst.states { // what the kernel refused to remove
		s.keys.Wipe()
		delete(b.inst.states, id)
	}
	wipeSAs(b.sas)
	b.sas = nil
	b.closeHandles()
	return err
}

func (b *Backend) removeAllLocked() error {
	p := diff(b.inst, &desired{states: map[stateID]*kstate{}, policies: map[policyID]pval{}})
	return b.applyLocked(p)
}

func (b *Backend) closeHandles() {
	if b.stat != nil {
		b.stat.Close()
		b.stat = nil
	}
	if b.h != nil {
		b.h.Close()
	}
	if b.xs != nil {
		b.xs.Close()
	}
}
