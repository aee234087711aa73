package hub

import (
	"context"
	"net/netip"

	"github.com/mpsa-vpn/mpsa/configs"
)

// Reflector is the BGP route reflector as the hub drives it (package bgp's
// hub side implements it). The hub tells it which CPEs are connected, with
// the overlay address their iBGP session comes from, the ESP endpoint the hub
// enforces for their routes and the prefixes they may advertise; the
// reflector withdraws a CPE's routes when it goes down.
type Reflector interface {
	// Start runs the reflector until ctx ends or Close.
	Start(ctx context.Context)
	// Provision hands over the groups and CPEs (on start and every reload).
	Provision(p ReflectorProvisioning) error
	// CPEUp reports a connected CPE, or new facts about one (address
	// change, reload).
	CPEUp(c ReflectorCPE) error
	// CPEDown reports that the CPE has no IKE SA any more.
	CPEDown(name string)
	// Status returns the views `mpsa-hub status bgp` and the BGP part of
	// `status routes` show.
	Status(ctx context.Context) (ReflectorStatus, error)
	Close() error
}

// ReflectorFactory builds the reflector when the hub starts.
type ReflectorFactory func(ReflectorContext) (Reflector, error)

// ReflectorContext is what a reflector is built from.
type ReflectorContext struct {
	Config       *configs.Hub
	Provisioning ReflectorProvisioning
}

// ReflectorProvisioning is the BGP view of the configuration.
type ReflectorProvisioning struct {
	Groups []ReflectorGroup
	CPEs   []ReflectorCPE // every provisioned CPE; Overlay and Endpoint unset
}

// ReflectorGroup is one group: its CPEs peer with the hub's overlay
// addresses in its pool.
type ReflectorGroup struct {
	Name     string
	HubAddrs []netip.Addr
	Pools    []netip.Prefix
	BGP      configs.GroupBGP
}

// ReflectorCPE is a CPE as the reflector polices it.
type ReflectorCPE struct {
	Name     string
	Group    string
	Overlay  []netip.Addr   // the CPE's overlay addresses (its iBGP session's source)
	Endpoint netip.AddrPort // the ESP endpoint the hub enforces: the IKE SA's outer address, port 0 for raw ESP
	Prefixes []netip.Prefix // authorised LAN prefixes
}

// ReflectorStatus is the reflector's state for status and metrics.
type ReflectorStatus struct {
	Peers  []ReflectorPeer  `json:"peers"`
	Routes []ReflectorRoute `json:"routes"`
}

// ReflectorPeer is one BGP session.
type ReflectorPeer struct {
	Group    string `json:"group"`
	CPE      string `json:"cpe,omitempty"`
	Address  string `json:"address"`
	State    string `json:"state"`
	Uptime   string `json:"uptime,omitempty"`
	Received int    `json:"received"`
	Accepted int    `json:"accepted"`
}

// ReflectorRoute is one route in a group's RIB.
type ReflectorRoute struct {
	Group    string `json:"group"`
	Prefix   string `json:"prefix"`
	NextHop  string `json:"next_hop"`
	Endpoint string `json:"endpoint"`
	From     string `json:"from"`
	Best     bool   `json:"best"`
}

// reflectorProvisioning builds the BGP view of a configuration.
func (h *Hub) reflectorProvisioning(cfg *configs.Hub) ReflectorProvisioning {
	var p ReflectorProvisioning
	for _, g := range cfg.Groups {
		rg := ReflectorGroup{Name: g.Name, HubAddrs: g.Pool.HubAddrs(), BGP: g.BGP}
		for _, pf := range []netip.Prefix{g.Pool.IPv4, g.Pool.IPv6} {
			if pf.IsValid() {
				rg.Pools = append(rg.Pools, pf.Masked())
			}
		}
		p.Groups = append(p.Groups, rg)
	}
	for _, c := range cfg.CPEs {
		p.CPEs = append(p.CPEs, ReflectorCPE{Name: cpeName(c.Identity), Group: c.Group, Prefixes: c.Prefixes})
	}
	return p
}

func (h *Hub) reflectorContext(cfg *configs.Hub) ReflectorContext {
	return ReflectorContext{Config: cfg, Provisioning: h.reflectorProvisioning(cfg)}
}

// reflectorUp tells the reflector about a CPE's newest IKE SA.
func (h *Hub) reflectorUp(name string) {
	if h.rr == nil {
		return
	}
	h.mu.Lock()
	conns := h.connsOfLocked(name)
	var rc ReflectorCPE
	ok := false
	for _, c := range conns {
		if !c.joined {
			continue
		}
		rc = ReflectorCPE{Name: name, Group: c.group, Endpoint: endpoint(c.remote, c.encap)}
		for _, v := range c.vips {
			rc.Overlay = append(rc.Overlay, v.Addr())
		}
		ok = true
		break
	}
	h.mu.Unlock()
	if !ok {
		return
	}
	if c := h.prov.Load().cpes[name]; c != nil {
		rc.Prefixes = c.Prefixes
	}
	if err := h.rr.CPEUp(rc); err != nil {
		h.log.Error("route reflector refused the CPE", "id", name, "group", rc.Group, "err", err)
	}
}

// defaultReflector builds the configured route reflector. Until package
// bgp's hub side is wired in, the hub runs without BGP and says so.
func defaultReflector(rc ReflectorContext) (Reflector, error) { return nil, nil }
