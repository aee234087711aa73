package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mpsa-vpn/mpsa/configs"
)

// LeaseFile is the name of the overlay address store in the state
// directory, next to the MPSA group store.
const LeaseFile = "leases.db"

// leaseBucket holds one record per CPE name: its group and addresses.
var leaseBucket = []byte("leases")

// maxLeaseRecord bounds a stored record (a group name and two addresses).
const maxLeaseRecord = 512

// leaseRecord is a CPE's stored lease, and whether the CPE was connected
// (Live) with which ESP endpoint, for the route reflector after a restart.
type leaseRecord struct {
	Group    string         `json:"group"`
	Addrs    []netip.Addr   `json:"addrs"`
	Endpoint netip.AddrPort `json:"endpoint,omitzero"`
	Live     bool           `json:"live,omitempty"`
}

// pools hands out overlay addresses (IKEv2 CP, RFC 7296 §3.15) from each
// group's pool and remembers them: a CPE keeps its address across reconnects
// and hub restarts, and gives it back only when it leaves the provisioning or
// its group. Pinned addresses (configs.HubCPE.Overlay) are reserved for their
// CPE whether it is connected or not. Safe for concurrent use.
type pools struct {
	db   *bolt.DB // nil keeps leases in memory only
	log  *slog.Logger
	wake chan struct{}
	done chan struct{} // closed when routineWrite ends

	mu     sync.Mutex // guards the following
	groups map[string]*groupPool
	leases map[string]*lease // by CPE name
	dirty  map[string]bool   // live flags routineWrite has to store
	closed bool
}

type groupPool struct {
	prefixes [2]netip.Prefix // [v4, v6]; invalid when the family is not pooled
	hub      [2]netip.Addr
	used     map[netip.Addr]string // address → CPE name
	cursor   [2]netip.Addr         // next address to try
}

type lease struct {
	group    string
	addrs    []netip.Addr
	endpoint netip.AddrPort
	live     bool
}

func (l *lease) record() leaseRecord {
	return leaseRecord{Group: l.group, Addrs: append([]netip.Addr(nil), l.addrs...), Endpoint: l.endpoint, Live: l.live}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// openPools opens (creating, mode 0600) the lease store at path; "" keeps
// leases in memory.
func openPools(path string, log *slog.Logger) (*pools, error) {
	p := &pools{log: log, groups: map[string]*groupPool{}, leases: map[string]*lease{}, dirty: map[string]bool{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	if path == "" {
		close(p.done)
		return p, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("hub: lease store %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("hub: lease store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(leaseBucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			rec, err := decodeLease(v)
			if err != nil {
				log.Warn("stored overlay lease dropped", "id", string(k), "reason", "malformed record", "err", err)
				return nil
			}
			p.leases[string(k)] = &lease{group: rec.Group, addrs: rec.Addrs, endpoint: rec.Endpoint, live: rec.Live}
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("hub: lease store %s: %w", path, err)
	}
	p.db = db
	go p.routineWrite()
	return p, nil
}

func decodeLease(v []byte) (leaseRecord, error) {
	var rec leaseRecord
	if len(v) > maxLeaseRecord {
		return rec, errors.New("record too long")
	}
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, err
	}
	if rec.Group == "" || len(rec.Addrs) == 0 || len(rec.Addrs) > 2 {
		return rec, errors.New("record without group or with a wrong number of addresses")
	}
	for _, a := range rec.Addrs {
		if !a.IsValid() || a.Zone() != "" {
			return rec, errors.New("invalid address")
		}
	}
	if rec.Endpoint.IsValid() && rec.Endpoint.Addr().Zone() != "" {
		return rec, errors.New("invalid endpoint")
	}
	if rec.Live && !rec.Endpoint.IsValid() {
		return rec, errors.New("live without an endpoint")
	}
	return rec, nil
}

// close stores what is pending and closes the store.
func (p *pools) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	<-p.done
	if p.db == nil {
		return nil
	}
	return p.db.Close()
}

// markLive records whether a CPE is connected, and with which ESP
// endpoint; routineWrite stores it.
func (p *pools) markLive(name string, ep netip.AddrPort, live bool) {
	p.mu.Lock()
	l := p.leases[name]
	if l == nil || (l.live == live && (!live || l.endpoint == ep)) {
		p.mu.Unlock()
		return
	}
	l.live = live
	if live {
		l.endpoint = ep
	}
	p.dirty[name] = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// live returns the leases of CPEs that were connected (in this run, or
// when the last run ended).
func (p *pools) live() map[string]lease {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]lease{}
	for name, l := range p.leases {
		if l.live && l.endpoint.IsValid() {
			out[name] = lease{group: l.group, addrs: append([]netip.Addr(nil), l.addrs...), endpoint: l.endpoint, live: true}
		}
	}
	return out
}

// routineWrite stores the live flags markLive changed, many per
// transaction, until close.
func (p *pools) routineWrite() {
	defer close(p.done)
	for {
		<-p.wake
		p.mu.Lock()
		put := map[string]*lease{}
		for name := range p.dirty {
			if l := p.leases[name]; l != nil {
				c := *l
				put[name] = &c
			}
		}
		clear(p.dirty)
		closed := p.closed
		p.mu.Unlock()
		if len(put) > 0 {
			p.write(put, nil)
		}
		if closed {
			return
		}
	}
}

// sync adopts a (new) provisioning: the pools of its groups, its pinned
// addresses, and the leases that still fit. A lease is released (and deleted
// from the store) when its CPE is gone or moved to another group; one of its
// addresses is released when it left the pool or another CPE pins it. A
// pinned address replaces the lease of its family.
func (p *pools) sync(cfg *configs.Hub, cpes map[string]*configs.HubCPE) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.groups = map[string]*groupPool{}
	for _, g := range cfg.Groups {
		gp := &groupPool{used: map[netip.Addr]string{}}
		for i, pf := range []netip.Prefix{g.Pool.IPv4, g.Pool.IPv6} {
			if !pf.IsValid() {
				continue
			}
			pf = pf.Masked()
			gp.prefixes[i] = pf
			gp.hub[i] = pf.Addr().Next()
			gp.cursor[i] = gp.hub[i].Next()
		}
		p.groups[g.Name] = gp
	}
	leases := map[string]*lease{}
	for name, c := range cpes {
		if gp := p.groups[c.Group]; gp != nil && len(c.Overlay) > 0 {
			leases[name] = &lease{group: c.Group, addrs: append([]netip.Addr(nil), c.Overlay...)}
			for _, a := range c.Overlay {
				gp.used[a] = name
			}
		}
	}
	var drop []string
	put := map[string]*lease{}
	for _, name := range sortedKeys(p.leases) {
		old := p.leases[name]
		c := cpes[name]
		why := ""
		switch {
		case c == nil:
			why = "CPE removed"
		case c.Group != old.group:
			why = "CPE moved to another group"
		case p.groups[old.group] == nil:
			why = "group removed"
		}
		if why != "" {
			p.log.Info("overlay lease released", "id", name, "group", old.group, "reason", why)
			drop = append(drop, name)
			continue
		}
		gp := p.groups[old.group]
		l := leases[name]
		if l == nil {
			l = &lease{group: old.group}
		}
		l.endpoint, l.live = old.endpoint, old.live
		for _, a := range old.addrs {
			fam := family(a)
			pf := gp.prefixes[fam]
			switch {
			case l.has(fam):
				continue // pinned now
			case !pf.IsValid() || !pf.Contains(a) || a == pf.Addr() || a == gp.hub[fam]:
				why = "address outside the group's pool"
			case gp.used[a] != "":
				why = "address pinned or leased by " + gp.used[a]
			default:
				gp.used[a] = name
				l.addrs = append(l.addrs, a)
				continue
			}
			p.log.Info("overlay address released", "id", name, "group", old.group, "prefix", netip.PrefixFrom(a, a.BitLen()), "reason", why)
		}
		if len(l.addrs) == 0 {
			drop = append(drop, name)
			continue
		}
		leases[name] = l
		if !slicesEqual(l.addrs, old.addrs) {
			put[name] = l
		}
	}
	for name, l := range leases {
		if p.leases[name] == nil {
			put[name] = l
		}
	}
	p.leases = leases
	p.write(put, drop)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func slicesEqual(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// write stores put and deletes drop in one transaction. It does not need
// p.mu: the records are the caller's copies.
func (p *pools) write(put map[string]*lease, drop []string) {
	if p.db == nil || len(put)+len(drop) == 0 {
		return
	}
	err := p.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(leaseBucket)
		for _, n := range drop {
			if err := b.Delete([]byte(n)); err != nil {
				return err
			}
		}
		for n, l := range put {
			v, err := json.Marshal(l.record())
			if err != nil {
				return err
			}
			if err := b.Put([]byte(n), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		p.log.Error("overlay lease store not updated", "err", err)
	}
}

func (l *lease) has(fam int) bool {
	for _, a := range l.addrs {
		if family(a) == fam {
			return true
		}
	}
	return false
}

func (l *lease) addr(fam int) (netip.Addr, bool) {
	for _, a := range l.addrs {
		if family(a) == fam {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// assign returns the CPE's overlay address of each requested family (0 for
// IPv4, 1 for IPv6) that its group pools: its pinned or leased address, or a
// new lease, stored before it is returned. Families the group does not pool
// are left out; an error means none could be given.
func (p *pools) assign(name, group string, fams []int) ([]netip.Addr, error) {
	p.mu.Lock()
	gp := p.groups[group]
	if gp == nil {
		p.mu.Unlock()
		return nil, fmt.Errorf("hub: group %q has no pool", group)
	}
	l := p.leases[name]
	if l != nil && l.group != group {
		p.mu.Unlock()
		return nil, fmt.Errorf("hub: CPE holds a lease in group %q", l.group)
	}
	if l == nil {
		l = &lease{group: group}
	}
	var out []netip.Addr
	changed := false
	for _, fam := range fams {
		if !gp.prefixes[fam].IsValid() {
			continue
		}
		if a, ok := l.addr(fam); ok {
			if !containsAddr(out, a) {
				out = append(out, a)
			}
			continue
		}
		a, ok := gp.allocate(fam)
		if !ok {
			p.mu.Unlock()
			return nil, fmt.Errorf("hub: the %s pool %s of group %q is full", famName(fam), gp.prefixes[fam], group)
		}
		gp.used[a] = name
		l.addrs = append(l.addrs, a)
		out = append(out, a)
		changed = true
	}
	p.leases[name] = l
	rec := l.record()
	store := changed && p.db != nil
	p.mu.Unlock()
	if len(out) == 0 {
		return nil, fmt.Errorf("hub: group %q pools none of the requested address families", group)
	}
	if store {
		v, err := json.Marshal(rec)
		if err == nil {
			err = p.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(leaseBucket).Put([]byte(name), v) })
		}
		if err != nil {
			// The CPE gets its address; after a restart it may get another.
			p.log.Error("overlay lease not stored", "id", name, "group", group, "err", err)
		}
	}
	return out, nil
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

func famName(fam int) string {
	if fam == 0 {
		return "IPv4"
	}
	return "IPv6"
}

// allocate finds a free address of the family, from the cursor on.
func (gp *groupPool) allocate(fam int) (netip.Addr, bool) {
	pf := gp.prefixes[fam]
	// At most len(used)+2 addresses can be in the way before a free one.
	for range len(gp.used) + 3 {
		a := gp.cursor[fam]
		if !a.IsValid() || !pf.Contains(a) {
			a = pf.Addr()
		}
		gp.cursor[fam] = a.Next()
		if a == pf.Addr() || a == gp.hub[fam] || gp.used[a] != "" {
			continue
		}
		return a, true
	}
	return netip.Addr{}, false
}

// addrs returns the addresses a CPE holds (pinned or leased), sorted.
func (p *pools) addrs(name string) []netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.leases[name]
	if l == nil {
		return nil
	}
	out := append([]netip.Addr(nil), l.addrs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// hubAddrs returns the hub's own overlay prefixes: in each pool, the first
// address after the network address, with the pool's length.
func (p *pools) hubAddrs() []netip.Prefix {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []netip.Prefix
	for _, gp := range p.groups {
		for i, pf := range gp.prefixes {
			if pf.IsValid() {
				out = append(out, netip.PrefixFrom(gp.hub[i], pf.Bits()))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr().Less(out[j].Addr()) })
	return out
}

// groupHubAddrs returns the hub's overlay addresses in one group's pools.
func (p *pools) groupHubAddrs(group string) []netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	gp := p.groups[group]
	if gp == nil {
		return nil
	}
	var out []netip.Addr
	for i, pf := range gp.prefixes {
		if pf.IsValid() {
			out = append(out, gp.hub[i])
		}
	}
	return out
}
