package routing

import (
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"
)

// The FIB keeps, besides the two lookup tables readers use (see
// leftright.go), the writer's view of every path:
//
//   - A group is one set of path attributes (next hop, endpoint, tunnel,
//     peer, source, local preference), interned: all the LAN prefixes a CPE
//     advertises in one UPDATE share it. A group resolves once, and every
//     prefix whose only path it is points the lookup table at the group's
//     slot, so an endpoint change moves 100k prefixes by rewriting one slot.
//   - A dest is a prefix that needs its own slot: it has several paths (best
//     path and multipath are per prefix), or next hops resolve through it
//     (a target: loops are decided per prefix, see resolve.go).
//   - A track is one next-hop address that some group resolves
//     recursively, with its target: the longest prefix holding it.
//
// A prefix is in exactly one of two places: the lookup tables if it
// resolves, the unres table if it does not.

// resolution is where a path or a prefix leads. It is never modified once
// published.
type resolution struct {
	hops   []NextHop // empty: unresolved
	via    netip.Prefix
	depth  int
	reason Reason
}

func (r *resolution) ok() bool { return r != nil && len(r.hops) > 0 }

// sameValue reports whether a and b forward the same way: what dependents
// and readers see. Unresolved values are all alike.
func sameValue(a, b *resolution) bool {
	if a.ok() != b.ok() {
		return false
	}
	return !a.ok() || a.depth == b.depth && slices.Equal(a.hops, b.hops)
}

// slot is a resolution that prefixes point at: a group's (shared by its
// members) or a dest's. The lookup tables hold its small id; readers find
// what to forward to in their side's dense published array at that index,
// one memory access past the table.
type slot struct {
	id   slotID
	g    *group // owner if shared by a group's members
	d    *dest  // owner if the prefix has its own slot
	gen  uint64 // batch that queued it for publication
	born uint64 // batch that created it
}

type slotID uint32

// published is what the readers of one side see for a slot.
type published struct {
	hop NextHop // the best next hop, if n > 0
	n   uint32  // number of next hops
}

// side is one of the two copies readers use (see leftright.go): the lookup
// table and, by slot id, what each slot forwards to. The writer changes a
// side only while no reader uses it.
type side struct {
	tbl   *bart.Table[slotID]
	pub   []published
	multi []*resolution // the full published value (all next hops)
}

func (s *slot) res() *resolution {
	if s.d != nil {
		return s.d.res
	}
	return s.g.res
}

// pathKey is the interning key of a group.
type pathKey struct {
	nextHop   netip.Addr
	endpoint  netip.AddrPort
	tunnel    Tunnel
	peer      netip.Addr
	source    Source
	localPref uint32
}

type group struct {
	key     pathKey
	slot    *slot
	res     *resolution // current value (context free)
	refs    int         // paths using it
	members members     // prefixes pointing at slot
	dests   map[*dest]struct{}
	track   *track // nil for a path that resolves without a lookup
	gen     uint64 // batch that listed it as changed
	peerIdx int    // index in writer.peers[key.peer]
	dead    bool
}

func (g *group) route(p netip.Prefix) Route {
	k := &g.key
	return Route{Prefix: p, NextHop: k.nextHop, Endpoint: k.endpoint, Tunnel: k.tunnel,
		Peer: k.peer, Source: k.source, LocalPref: k.localPref}
}

func (g *group) routeRef() Route { return g.route(netip.Prefix{}) }

type dest struct {
	slot     *slot
	prefix   netip.Prefix
	paths    []*group // most preferred first
	res      *resolution
	trackers map[*track]struct{} // tracks whose target this is
	scc      int                 // strongly connected component, while a target
	inHeap   bool
	dead     bool
}

func (d *dest) target() bool { return len(d.trackers) > 0 }

type track struct {
	addr   netip.Addr
	target *dest
	res    *resolution // what the groups using it resolve to
	groups map[*group]struct{}
	gen    uint64 // batch that re-targeted it
}

// Where a touched prefix currently is.
const (
	locAbsent = iota
	locTable  // the standby lookup table (and the other one after replay)
	locUnres
)

// touch remembers, for a prefix changed by the current batch, what readers
// saw before it (old: nil if not forwarded) and where the prefix is now.
type touch struct {
	p   netip.Prefix
	old []NextHop
	s   *slot
	loc uint8
}

// touchSlab hands out batch records from chunks that are reused by the
// next batch (records never move, so pointers to them stay valid).
type touchSlab struct {
	chunks []*[256]touch
	n      int
}

func (ts *touchSlab) alloc() *touch {
	c := ts.n >> 8
	if c == len(ts.chunks) {
		ts.chunks = append(ts.chunks, new([256]touch))
	}
	t := &ts.chunks[c][ts.n&0xff]
	*t = touch{}
	ts.n++
	return t
}

// each calls fn for every record, in allocation order.
func (ts *touchSlab) each(fn func(*touch)) {
	for i := range ts.n {
		fn(&ts.chunks[i>>8][i&0xff])
	}
}

func (ts *touchSlab) reset() {
	for i := 0; i < ts.n; i += 256 {
		clear(ts.chunks[i>>8][:])
	}
	ts.n = 0
	if len(ts.chunks) > 16 {
		clear(ts.chunks[16:])
		ts.chunks = ts.chunks[:16]
	}
}

type replayOp struct {
	p   netip.Prefix
	id  slotID
	del bool
}

// writer is the FIB's writer-side state, guarded by FIB.mu.
type writer struct {
	cfg   *config
	sides *[2]side
	side  int // the standby side: readers are on the other one
	unres bart.Table[*slot]
	slots []*slot // by id; nil when free (id 0 is never used)
	free  []slotID
	dying []slotID // freed once both sides have dropped them

	groups   map[pathKey]*group
	last     *group                  // the group intern returned last
	peers    map[netip.Addr][]*group // groups by peer; group.peerIdx is the index
	tracks   map[netip.Addr]*track
	trackTbl bart.Table[*track] // tracked next hops as host prefixes
	targets  map[*dest]struct{}
	loops    map[netip.Prefix]struct{} // targets in a resolution loop, last logged
	dests    map[*dest]struct{}
	paths    int
	batches  uint64

	// State of the batch being applied.
	gen       uint64
	replay    []replayOp
	touched   map[netip.Prefix]*touch
	touchBuf  touchSlab
	changed   []*group
	pubs      []*slot
	heap      []*dest
	moved     []netip.Prefix
	coreDirty bool
}

func newWriter(cfg *config, sides *[2]side) *writer {
	return &writer{
		cfg:     cfg,
		sides:   sides,
		slots:   []*slot{nil},
		groups:  make(map[pathKey]*group),
		peers:   make(map[netip.Addr][]*group),
		tracks:  make(map[netip.Addr]*track),
		targets: make(map[*dest]struct{}),
		dests:   make(map[*dest]struct{}),
		touched: make(map[netip.Prefix]*touch),
		gen:     1,
	}
}

func (w *writer) standby() *bart.Table[slotID] { return w.sides[w.side].tbl }

// newSlot allocates a slot for g or d.
func (w *writer) newSlot(g *group, d *dest) *slot {
	s := &slot{g: g, d: d, born: w.gen}
	if n := len(w.free); n > 0 {
		s.id = w.free[n-1]
		w.free = w.free[:n-1]
		w.slots[s.id] = s
	} else {
		s.id = slotID(len(w.slots))
		w.slots = append(w.slots, s)
	}
	w.queuePub(s)
	return s
}

// freeSlot retires s; its id is reused after the next publication.
func (w *writer) freeSlot(s *slot) {
	w.dying = append(w.dying, s.id)
}

// publishedRes is what readers see for s now (nil for a new slot).
func (w *writer) publishedRes(s *slot) *resolution {
	m := w.sides[w.side].multi
	if s.born != w.gen && int(s.id) < len(m) {
		return m[s.id]
	}
	return nil
}

// find returns the slot of p and where it is.
func (w *writer) find(p netip.Prefix) (*slot, uint8) {
	if t, ok := w.touched[p]; ok {
		return t.s, t.loc
	}
	if id, ok := w.standby().Get(p); ok {
		return w.slots[id], locTable
	}
	if w.unres.Size() > 0 {
		if s, ok := w.unres.Get(p); ok {
			return s, locUnres
		}
	}
	return nil, locAbsent
}

// touchRec returns p's batch record, creating it from p's slot s (as found
// by find) the first time.
func (w *writer) touchRec(p netip.Prefix, s *slot, loc uint8) *touch {
	if t, ok := w.touched[p]; ok {
		return t
	}
	t := w.touchBuf.alloc()
	t.p, t.s, t.loc = p, s, loc
	if loc == locTable {
		t.old = w.publishedRes(s).hops
	}
	w.touched[p] = t
	return t
}

// put makes s the slot of p, keeping p where it is (new prefixes go where
// their current resolution says; the end of the batch moves what must move).
func (w *writer) put(p netip.Prefix, s *slot, t *touch) {
	t.s = s
	switch t.loc {
	case locTable:
		w.tableInsert(p, s)
	case locUnres:
		w.unres.Insert(p, s)
	default:
		if s.res().ok() {
			w.tableInsert(p, s)
			t.loc = locTable
		} else {
			w.unres.Insert(p, s)
			t.loc = locUnres
		}
	}
}

// drop removes p from wherever it is.
func (w *writer) drop(p netip.Prefix, t *touch) {
	switch t.loc {
	case locTable:
		w.tableDelete(p)
	case locUnres:
		w.unres.Delete(p)
	}
	t.s, t.loc = nil, locAbsent
}

func (w *writer) tableInsert(p netip.Prefix, s *slot) {
	w.standby().Insert(p, s.id)
	w.replay = append(w.replay, replayOp{p: p, id: s.id})
}

func (w *writer) tableDelete(p netip.Prefix) {
	w.standby().Delete(p)
	w.replay = append(w.replay, replayOp{p: p, del: true})
}

// queuePub schedules s's resolution for publication to readers.
func (w *writer) queuePub(s *slot) {
	if s.gen != w.gen {
		s.gen = w.gen
		w.pubs = append(w.pubs, s)
	}
}

// markChanged lists g for the walk over its members at the end of the batch.
func (w *writer) markChanged(g *group) {
	if g.gen != w.gen {
		g.gen = w.gen
		w.changed = append(w.changed, g)
	}
}

// intern returns the group for r's attributes, creating it.
func (w *writer) intern(r *Route) *group {
	k := pathKey{nextHop: r.NextHop, endpoint: r.Endpoint, tunnel: r.Tunnel, peer: r.Peer,
		source: r.Source, localPref: r.LocalPref}
	if g := w.last; g != nil && !g.dead && g.key == k {
		return g // consecutive routes of an UPDATE share their attributes
	}
	if g := w.groups[k]; g != nil {
		w.last = g
		return g
	}
	g := &group{key: k}
	g.slot = w.newSlot(g, nil)
	if nh, ok := w.cfg.terminal(r); ok {
		g.res = &resolution{hops: []NextHop{nh}}
	} else {
		t := w.tracks[r.NextHop]
		if t == nil {
			t = w.newTrack(r.NextHop)
		}
		t.groups[g] = struct{}{}
		g.track = t
		g.res = t.res
	}
	w.groups[k] = g
	w.last = g
	pg := w.peers[k.peer]
	g.peerIdx = len(pg)
	w.peers[k.peer] = append(pg, g)
	return g
}

// release drops one path's reference to g, deleting g with the last.
func (w *writer) release(g *group) {
	g.refs--
	if g.refs > 0 {
		return
	}
	g.dead = true
	w.freeSlot(g.slot)
	delete(w.groups, g.key)
	pg := w.peers[g.key.peer]
	last := pg[len(pg)-1]
	pg[g.peerIdx], last.peerIdx = last, g.peerIdx
	pg[len(pg)-1] = nil
	if pg = pg[:len(pg)-1]; len(pg) == 0 {
		delete(w.peers, g.key.peer)
	} else {
		w.peers[g.key.peer] = pg
	}
	if t := g.track; t != nil {
		delete(t.groups, g)
		if len(t.groups) == 0 {
			w.dropTrack(t)
		}
	}
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func (w *writer) newTrack(a netip.Addr) *track {
	t := &track{addr: a, groups: make(map[*group]struct{}), res: &resolution{reason: ReasonNoRoute}}
	w.tracks[a] = t
	w.trackTbl.Insert(hostPrefix(a), t)
	w.retarget(t, w.lpmDest(a))
	return t
}

func (w *writer) dropTrack(t *track) {
	delete(w.tracks, t.addr)
	w.trackTbl.Delete(hostPrefix(t.addr))
	w.retarget(t, nil)
}

// lpmDest returns the dest of the longest prefix holding a, resolved or
// not, giving that prefix its own slot if it shared one.
func (w *writer) lpmDest(a netip.Addr) *dest {
	h := hostPrefix(a)
	p, id, ok := w.standby().LookupPrefixLPM(h)
	s := w.slots[id]
	if w.unres.Size() > 0 {
		if pu, su, oku := w.unres.LookupPrefixLPM(h); oku && (!ok || pu.Bits() > p.Bits()) {
			p, s, ok = pu, su, true
		}
	}
	if !ok {
		return nil
	}
	if s.d != nil {
		return s.d
	}
	return w.ownSlot(p, s)
}

// ownSlot gives prefix p, now pointing at its group's slot s, a dest.
func (w *writer) ownSlot(p netip.Prefix, s *slot) *dest {
	_, loc := w.find(p)
	t := w.touchRec(p, s, loc)
	g := s.g
	d := &dest{prefix: p, paths: []*group{g}, res: g.res, trackers: make(map[*track]struct{})}
	d.slot = w.newSlot(nil, d)
	if g.dests == nil {
		g.dests = make(map[*dest]struct{})
	}
	g.dests[d] = struct{}{}
	w.dests[d] = struct{}{}
	w.put(p, d.slot, t)
	g.members.remove(p)
	return d
}

// shareSlot points a dest's prefix back at its only group's slot, when it
// is no longer a target and has one path.
func (w *writer) shareSlot(d *dest) {
	if d.dead || d.target() || len(d.paths) != 1 {
		return
	}
	g := d.paths[0]
	s, loc := w.find(d.prefix)
	t := w.touchRec(d.prefix, s, loc)
	delete(g.dests, d)
	delete(w.dests, d)
	d.dead = true
	w.freeSlot(d.slot)
	g.members.add(d.prefix)
	w.put(d.prefix, g.slot, t)
}

// retarget points t at d (nil: no prefix holds t's address).
func (w *writer) retarget(t *track, d *dest) {
	old := t.target
	if old == d {
		return
	}
	w.coreDirty = true
	if old != nil {
		delete(old.trackers, t)
		if !old.target() {
			delete(w.targets, old)
			if len(old.paths) == 1 {
				w.shareSlot(old)
			} else {
				w.reevalDest(old)
			}
		}
	}
	t.target = d
	if d != nil {
		d.trackers[t] = struct{}{}
		w.targets[d] = struct{}{}
	}
	w.trackChanged(t)
}

// upsert applies one valid route.
func (w *writer) upsert(r *Route) {
	g := w.intern(r)
	p := r.Prefix
	s, loc := w.find(p)
	switch {
	case s == nil:
		t := w.touchRec(p, s, loc)
		g.refs++
		w.paths++
		g.members.add(p)
		w.put(p, g.slot, t)
		w.moved = append(w.moved, p)
	case s.d == nil:
		g0 := s.g
		if g0 == g {
			return
		}
		t := w.touchRec(p, s, loc)
		g.refs++
		if g0.key.peer == r.Peer {
			g.members.add(p)
			w.put(p, g.slot, t)
			g0.members.remove(p)
			w.release(g0)
			return
		}
		w.paths++
		d := w.ownSlot(p, s)
		w.addPath(d, g)
		w.destChanged(d, nil, g)
	default:
		d := s.d
		i := slices.IndexFunc(d.paths, func(x *group) bool { return x.key.peer == r.Peer })
		var old *group
		if i >= 0 {
			if d.paths[i] == g {
				return
			}
			old = d.paths[i]
			d.paths = slices.Delete(d.paths, i, i+1)
		} else {
			w.paths++
		}
		w.touchRec(p, s, loc)
		g.refs++
		w.addPath(d, g)
		if old != nil {
			delete(old.dests, d)
			w.release(old)
		}
		w.destChanged(d, old, g)
	}
}

// addPath inserts g into d's paths in preference order.
func (w *writer) addPath(d *dest, g *group) {
	r := g.routeRef()
	i, _ := slices.BinarySearchFunc(d.paths, &r, func(x *group, r *Route) int {
		xr := x.routeRef()
		return comparePaths(&xr, r)
	})
	d.paths = slices.Insert(d.paths, i, g)
	if g.dests == nil {
		g.dests = make(map[*dest]struct{})
	}
	g.dests[d] = struct{}{}
}

// withdraw removes the path (p, peer) if the FIB holds it.
func (w *writer) withdraw(p netip.Prefix, peer netip.Addr) bool {
	s, loc := w.find(p)
	if s == nil {
		return false
	}
	if s.d == nil {
		g := s.g
		if g.key.peer != peer {
			return false
		}
		t := w.touchRec(p, s, loc)
		w.drop(p, t)
		w.paths--
		w.moved = append(w.moved, p)
		g.members.remove(p)
		w.release(g)
		return true
	}
	d := s.d
	i := slices.IndexFunc(d.paths, func(x *group) bool { return x.key.peer == peer })
	if i < 0 {
		return false
	}
	t := w.touchRec(p, s, loc)
	g := d.paths[i]
	d.paths = slices.Delete(d.paths, i, i+1)
	w.paths--
	delete(g.dests, d)
	if len(d.paths) == 0 {
		w.drop(p, t)
		w.moved = append(w.moved, p)
		d.dead = true
		w.freeSlot(d.slot)
		delete(w.dests, d)
	}
	w.release(g)
	w.destChanged(d, g, nil)
	return true
}

// destChanged follows a change of d's paths (old replaced or removed, g
// added).
func (w *writer) destChanged(d *dest, old, g *group) {
	if d.dead {
		return
	}
	if d.target() {
		if old != nil && old.track != nil || g != nil && g.track != nil {
			w.coreDirty = true
		}
		w.push(d)
		return
	}
	if len(d.paths) == 1 {
		w.shareSlot(d)
		return
	}
	w.reevalDest(d)
}

// reevalDest recomputes a dest that is not a target (nothing resolves
// through it, so nothing else changes with it).
func (w *writer) reevalDest(d *dest) {
	if d.dead {
		return
	}
	nr := w.evalDest(d)
	w.setDestRes(d, nr)
}

func (w *writer) setDestRes(d *dest, nr *resolution) bool {
	changed := !sameValue(nr, d.res)
	if changed {
		s, loc := w.find(d.prefix)
		w.touchRec(d.prefix, s, loc)
		w.queuePub(d.slot)
	}
	d.res = nr
	return changed
}

// peerPaths lists the prefixes the peer has a path to.
func (w *writer) peerPaths(peer netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, g := range w.peers[peer] {
		g.members.each(func(p netip.Prefix) { out = append(out, p) })
		for d := range g.dests {
			out = append(out, d.prefix)
		}
	}
	return out
}
