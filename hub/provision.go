package hub

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/mpsa"
)

// provisioning is one configuration as the hub looks things up in it. It is
// replaced as a whole on reload and never modified.
type provisioning struct {
	cfg    *configs.Hub
	cpes   map[string]*configs.HubCPE // by CPE name (the identity as configured)
	byKey  map[string]string          // idKey → CPE name
	groups map[string]*configs.Group
	cas    *auth.CAPool // for CPEs with certificates; nil without hub credentials
}

// cpeTag is what the identity lookup hands IKE as auth.Peer.Tag, so events
// name the CPE and group it authenticated as.
type cpeTag struct {
	name  string
	group string
}

// cpeName is the name of a CPE in the key server, the lease store, logs and
// status: its identity as configured.
func cpeName(id auth.ID) string { return id.String() }

// idKey is an identity as compared for lookups: FQDN and e-mail identities
// are case-insensitive (auth.ID.Equal).
func idKey(id auth.ID) string {
	k := id.String()
	if id.Type == auth.IDFQDN || id.Type == auth.IDRFC822 {
		k = strings.ToLower(k)
	}
	return k
}

func newProvisioning(cfg *configs.Hub) (*provisioning, error) {
	p := &provisioning{cfg: cfg, cpes: map[string]*configs.HubCPE{}, byKey: map[string]string{},
		groups: map[string]*configs.Group{}}
	for i := range cfg.Groups {
		p.groups[cfg.Groups[i].Name] = &cfg.Groups[i]
	}
	for i := range cfg.CPEs {
		c := &cfg.CPEs[i]
		name := cpeName(c.Identity)
		p.cpes[name] = c
		p.byKey[idKey(c.Identity)] = name
	}
	if m := cfg.Credentials.Material(); m != nil && len(m.CAs) > 0 {
		pool, err := auth.NewCAPool(m.CAs...)
		if err != nil {
			return nil, fmt.Errorf("hub: credentials.ca: %w", err)
		}
		p.cas = pool
	}
	return p, nil
}

// find returns the name and configuration of the CPE with identity id.
func (p *provisioning) find(id auth.ID) (string, *configs.HubCPE) {
	if name, ok := p.byKey[idKey(id)]; ok {
		return name, p.cpes[name]
	}
	// DNs compare attribute-wise: a peer may write its DN in another form.
	if id.Type == auth.IDDN {
		for name, c := range p.cpes {
			if c.Identity.Equal(id) {
				return name, c
			}
		}
	}
	return "", nil
}

// local is how the hub authenticates itself.
func (p *provisioning) local() auth.Local {
	l := auth.Local{ID: p.cfg.Identity}
	if m := p.cfg.Credentials.Material(); m != nil && m.Key != nil {
		l.Signer, l.Certs = m.Key, m.Chain
	}
	return l
}

// lookup is the IKE engine's identity lookup (auth.Lookup): provisioned
// CPEs authenticate with their PSK or with a certificate chained to the
// hub's CA; anything else is refused with a log line.
func (h *Hub) lookup(ctx context.Context, id auth.ID) (*auth.Peer, error) {
	p := h.prov.Load()
	name, c := p.find(id)
	if c == nil {
		h.log.Warn("IKE_AUTH refused: unknown identity", "id", id, "reason", "AUTHENTICATION_FAILED")
		return nil, fmt.Errorf("%w: %v", auth.ErrUnknownPeer, id)
	}
	if p.groups[c.Group] == nil {
		h.log.Warn("IKE_AUTH refused: the CPE's group is not configured", "id", id, "group", c.Group, "reason", "AUTHENTICATION_FAILED")
		return nil, fmt.Errorf("%w: %v has no group", auth.ErrUnknownPeer, id)
	}
	peer := &auth.Peer{Tag: &cpeTag{name: name, group: c.Group}}
	switch {
	case c.Auth == configs.AuthCert:
		if p.cas == nil {
			h.log.Warn("IKE_AUTH refused: certificate CPE but the hub has no CA", "id", id, "reason", "AUTHENTICATION_FAILED")
			return nil, fmt.Errorf("%w: no CA for %v", auth.ErrUnknownPeer, id)
		}
		peer.CAs = p.cas
	default:
		peer.PSK = c.PSK.Bytes()
	}
	return peer, nil
}

// authorize runs once the CPE's AUTH verified: the CPE must still be
// provisioned (a reload may have removed it since the lookup).
func (h *Hub) authorize(ctx context.Context, peer ike.PeerInfo) error {
	t, ok := peer.Tag.(*cpeTag)
	if !ok {
		return errors.New("hub: peer without provisioning")
	}
	if _, c := h.prov.Load().find(peer.ID); c == nil || c.Group != t.group {
		h.log.Warn("IKE_AUTH refused: CPE no longer provisioned", "id", peer.ID, "group", t.group, "reason", "AUTHENTICATION_FAILED")
		return errors.New("hub: CPE no longer provisioned")
	}
	return nil
}

// assignAddresses answers the CPE's CP(CFG_REQUEST) with its overlay
// addresses: pinned, leased before, or newly leased from its group's pool.
func (h *Hub) assignAddresses(ctx context.Context, peer ike.PeerInfo, requested []netip.Addr) ([]netip.Prefix, error) {
	t, ok := peer.Tag.(*cpeTag)
	if !ok {
		return nil, errors.New("hub: peer without provisioning")
	}
	var fams []int
	for _, a := range requested {
		if f := family(a); !containsInt(fams, f) {
			fams = append(fams, f)
		}
	}
	addrs, err := h.pools.assign(t.name, t.group, fams)
	if err != nil {
		h.log.Warn("no overlay address for CPE", "id", peer.ID, "group", t.group, "reason", "INTERNAL_ADDRESS_FAILURE", "err", err)
		return nil, err
	}
	out := make([]netip.Prefix, len(addrs))
	for i, a := range addrs {
		out[i] = netip.PrefixFrom(a, a.BitLen())
	}
	return out, nil
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// narrowTS narrows the CPE's CHILD_SA to (its overlay addresses ↔ the hub's
// overlay addresses in its group): the CHILD_SA carries only the iBGP
// session and control traffic between the two.
func (h *Hub) narrowTS(peer ike.PeerInfo, vips []netip.Prefix, tsi, tsr []wire.Selector) ([]wire.Selector, []wire.Selector, error) {
	t, ok := peer.Tag.(*cpeTag)
	if !ok {
		return nil, nil, errors.New("hub: peer without provisioning")
	}
	if len(vips) == 0 {
		h.log.Warn("CHILD_SA refused: the CPE asked for no overlay address", "id", peer.ID, "reason", "TS_UNACCEPTABLE")
		return nil, nil, errors.New("hub: no overlay address")
	}
	var local []netip.Prefix
	for _, a := range h.pools.groupHubAddrs(t.group) {
		local = append(local, netip.PrefixFrom(a, a.BitLen()))
	}
	ni, nr := ike.NarrowDefault(tsi, tsr, local, nil, vips, peer.Local.Addr(), peer.Remote.Addr())
	if len(ni) == 0 || len(nr) == 0 {
		h.log.Warn("CHILD_SA refused: traffic selectors outside (CPE overlay ↔ hub overlay)", "id", peer.ID, "group", t.group, "reason", "TS_UNACCEPTABLE")
		return nil, nil, errors.New("hub: traffic selectors do not fit")
	}
	return ni, nr, nil
}

// informational receives notifies of INFORMATIONAL requests from CPEs the
// engine does not handle. A CPE has nothing to tell the hub yet; they are
// counted and ignored (the engine answers with an empty SK{}).
func (h *Hub) informational(sa *ike.SA, ns []*wire.Notify) {
	for _, n := range ns {
		if uint16(n.NotifyType) == mpsa.NotifyPut {
			// Only the hub sends MPSA_PUT.
			h.metrics.unexpectedNotifies.Inc()
		}
	}
}

// groupConfig is a configured group as the key server takes it.
func groupConfig(g *configs.Group) mpsa.GroupConfig {
	return mpsa.GroupConfig{Name: g.Name, Suite: g.ESP, PRF: g.PRF, SenderIDBits: g.SenderIDBits,
		Lifetime: g.Lifetime, RekeyMargin: g.RekeyMargin, Roll1: g.Roll1, Roll2: g.Roll2}
}
