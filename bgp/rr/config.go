package rr

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// EndpointPolicy says what the hub does with a CPE route whose ESP endpoint
// (Tunnel Egress Endpoint, or NEXT_HOP without the attribute) is not the
// address and port the hub sees on the CPE's IKE SA.
type EndpointPolicy uint8

const (
	// EndpointRewrite replaces the endpoint with the one the hub sees (a
	// CPE behind NAT does not know its public address and port).
	EndpointRewrite EndpointPolicy = iota
	// EndpointReject drops the route.
	EndpointReject
)

func (p EndpointPolicy) String() string {
	if p == EndpointReject {
		return "reject"
	}
	return "rewrite"
}

// Default values for Config and GroupConfig fields left zero.
const (
	DefaultHoldTime     = 90 * time.Second
	DefaultRestartTime  = 120 * time.Second
	DefaultDeferralTime = 60 * time.Second
	DefaultBGPPort      = 179
	DefaultLogRate      = 20 // filter log lines per second per group, beyond which they are only counted
	DefaultMaxRoutes    = 1024
	DefaultLocalPref    = 100 // RoutePolicy.LocalPref if zero
	// hardLimitFactor: GoBGP closes a CPE's session when its Adj-RIB-In
	// (every route it sent, accepted or not) exceeds this many times
	// MaxRoutesPerCPE per family, which bounds the memory a CPE can take.
	hardLimitFactor = 4
	peerGroupCPE    = "cpe"
	peerGroupOther  = "peers"
)

// Config configures a Hub.
type Config struct {
	ASN       uint32     // the hub's and the CPEs' AS (iBGP)
	RouterID  netip.Addr // IPv4 BGP Identifier of the hub
	ClusterID netip.Addr // route reflector cluster ID; RouterID if zero

	HoldTime    time.Duration // hold time offered to CPEs; DefaultHoldTime if zero
	RestartTime time.Duration // graceful restart time; DefaultRestartTime if zero

	// Endpoint is what happens to a route whose ESP endpoint is not the
	// one the hub sees on the CPE's IKE SA (default: rewrite).
	Endpoint EndpointPolicy

	// MaxRoutesPerCPE bounds the routes the hub re-originates for one CPE
	// (more specifics of an authorised prefix are otherwise unbounded);
	// announcements beyond it are dropped and counted. A CPE whose session
	// carries more than 4 times as many routes per family is disconnected.
	// DefaultMaxRoutes if zero.
	MaxRoutesPerCPE int

	// LogRate bounds the lines per second a group logs about filtered
	// routes; the rest are counted only. DefaultLogRate if zero.
	LogRate int

	Logger *slog.Logger
}

// PeerConfig is a configured BGP peer of a group, such as a data-center
// router that announces the prefixes behind the hub. Its routes are
// accepted as they are (RFC 5565: NEXT_HOP is the endpoint, or their own
// Tunnel Encapsulation attribute) and reflected to the group's CPEs; it
// receives the CPEs' routes.
type PeerConfig struct {
	Address  netip.Addr
	ASN      uint32 // the hub's ASN for iBGP (then a non-client), another for eBGP
	Port     uint16 // remote port; DefaultBGPPort if zero
	Passive  bool   // wait for the peer to connect
	RRClient bool   // reflect iBGP routes to it as to a client
	Multihop uint32 // eBGP multihop TTL, 0 = directly connected
}

// GroupConfig configures one CPE group (a customer VPN). Every group gets
// its own GoBGP instance (see the package comment).
type GroupConfig struct {
	Name string

	// Listen are the hub's overlay addresses in this group where CPEs open
	// their sessions (port DefaultBGPPort if zero). Addresses must be unique
	// across groups.
	Listen []netip.AddrPort

	// GRPC, if set, serves GoBGP's gRPC API for the stock gobgp CLI on this
	// address: "127.0.0.1:50051", or "unix:///run/mpsa/bgp-acme.sock". It
	// has no authentication; keep it on loopback or a private socket.
	GRPC string

	// Peers are configured peers (data-center routers).
	Peers []PeerConfig

	// Restarting starts the group as a restarting speaker (RFC 4724): the
	// CPEs keep the routes they had (the hub's OPEN sets the Forwarding
	// bit) and the hub sends routes only once every CPE registered with
	// CPEUp has sent End-of-RIB, or DeferralTime has passed. A hub that
	// restarts should set it and register its live CPEs right after
	// AddGroup. It also packs the initial table into few UPDATEs per CPE.
	Restarting   bool
	DeferralTime time.Duration // DefaultDeferralTime if zero

	// Policy is the group's policy on CPE routes (configuration
	// groups[].bgp); Hub.SetRoutePolicy changes it while the group runs.
	// Nil keeps what rr did before group policies: any prefix within an
	// authorised one, the CPE's own LOCAL_PREF, Config.MaxRoutesPerCPE
	// routes per CPE. The hub daemon always sets one.
	Policy *RoutePolicy

	// SyncAddress is the loopback address from which the hub's own
	// deferral-holding session connects while Restarting (127.0.0.1, or ::1
	// if the group listens only on IPv6). It shows in `gobgp neighbor`
	// while the deferral lasts.
	SyncAddress netip.Addr
}

// RoutePolicy is what a group accepts from its CPEs and how it passes it
// on. Drops are counted in Stats (ForeignPrefix, TooManyRoutes) and logged
// at a bounded rate.
type RoutePolicy struct {
	// MaxPrefixes bounds the routes the hub re-originates for one CPE of
	// the group; announcements beyond it are dropped. Config.MaxRoutesPerCPE
	// if zero. Raising it at run time above the larger of the two values
	// the group started with needs a restart of the group
	// (ErrRestartNeeded): GoBGP's session-closing bound is fixed then.
	MaxPrefixes int
	// AcceptMoreSpecifics accepts prefixes inside an authorised one. By
	// default a CPE may announce only its authorised prefixes themselves.
	AcceptMoreSpecifics bool
	// LocalPref is the LOCAL_PREF of the group's CPE routes, whatever the
	// CPE sent; DefaultLocalPref if zero.
	LocalPref uint32
}

// policy is a group's RoutePolicy as applied.
type policy struct {
	max           int
	moreSpecifics bool
	localPref     uint32 // 0: the CPE's own (no RoutePolicy)
}

func (c *Config) policy(p *RoutePolicy) policy {
	if p == nil {
		return policy{max: c.MaxRoutesPerCPE, moreSpecifics: true}
	}
	out := policy{max: p.MaxPrefixes, moreSpecifics: p.AcceptMoreSpecifics, localPref: p.LocalPref}
	if out.max <= 0 {
		out.max = c.MaxRoutesPerCPE
	}
	if out.localPref == 0 {
		out.localPref = DefaultLocalPref
	}
	return out
}

// CPE is what the hub knows about a CPE from IKE.
type CPE struct {
	ID    string // unique name, e.g. the IKE identity
	Group string
	// Overlay is the CPE's overlay address: its BGP session must come from
	// it. Overlay addresses are unique across the hub.
	Overlay netip.Addr
	// Endpoint is the CPE's ESP endpoint as the hub sees it on the IKE SA:
	// the outer source address, and the UDP port when ESP is UDP
	// encapsulated (port 0 = raw ESP).
	Endpoint netip.AddrPort
	// Prefixes are the LAN prefixes the CPE may advertise: an advertised
	// prefix must be one of them, or lie within one if the group's
	// RoutePolicy accepts more specifics.
	Prefixes []netip.Prefix
}

func (c *Config) setDefaults() error {
	if c.ASN == 0 {
		return errors.New("rr: ASN is required")
	}
	if !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		return fmt.Errorf("rr: router ID %v is not a non-zero IPv4 address", c.RouterID)
	}
	if !c.ClusterID.IsValid() {
		c.ClusterID = c.RouterID
	}
	if !c.ClusterID.Is4() {
		return fmt.Errorf("rr: cluster ID %v is not an IPv4 address", c.ClusterID)
	}
	if c.HoldTime == 0 {
		c.HoldTime = DefaultHoldTime
	}
	if c.HoldTime < 3*time.Second || c.HoldTime > 65535*time.Second {
		return fmt.Errorf("rr: hold time %v out of range", c.HoldTime)
	}
	if c.RestartTime == 0 {
		c.RestartTime = DefaultRestartTime
	}
	if c.RestartTime > 4095*time.Second {
		c.RestartTime = 4095 * time.Second
	}
	if c.LogRate == 0 {
		c.LogRate = DefaultLogRate
	}
	if c.MaxRoutesPerCPE <= 0 {
		c.MaxRoutesPerCPE = DefaultMaxRoutes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (g *GroupConfig) check() error {
	if g.Name == "" {
		return errors.New("rr: group name is required")
	}
	if len(g.Listen) == 0 {
		return fmt.Errorf("rr: group %s: no listen address", g.Name)
	}
	v4 := false
	for i, l := range g.Listen {
		if !l.Addr().IsValid() {
			return fmt.Errorf("rr: group %s: invalid listen address %v", g.Name, l)
		}
		if l.Port() == 0 {
			g.Listen[i] = netip.AddrPortFrom(l.Addr(), DefaultBGPPort)
		}
		if g.Listen[i].Port() != g.Listen[0].Port() {
			return fmt.Errorf("rr: group %s: listen addresses must share one port", g.Name)
		}
		v4 = v4 || l.Addr().Unmap().Is4()
	}
	for _, p := range g.Peers {
		if !p.Address.IsValid() || p.ASN == 0 {
			return fmt.Errorf("rr: group %s: peer %v needs an address and an ASN", g.Name, p.Address)
		}
	}
	if g.DeferralTime == 0 {
		g.DeferralTime = DefaultDeferralTime
	}
	if !g.SyncAddress.IsValid() {
		g.SyncAddress = netip.MustParseAddr("::1")
		if v4 {
			g.SyncAddress = netip.MustParseAddr("127.0.0.1")
		}
	}
	return nil
}

func (c *CPE) check() error {
	if c.ID == "" || c.Group == "" {
		return errors.New("rr: CPE needs an ID and a group")
	}
	if !c.Overlay.IsValid() || c.Overlay.IsUnspecified() {
		return fmt.Errorf("rr: CPE %s: invalid overlay address %v", c.ID, c.Overlay)
	}
	c.Overlay = c.Overlay.Unmap()
	ep := c.Endpoint.Addr().Unmap()
	if !ep.IsValid() || ep.IsUnspecified() || ep.IsMulticast() {
		return fmt.Errorf("rr: CPE %s: invalid endpoint %v", c.ID, c.Endpoint)
	}
	c.Endpoint = netip.AddrPortFrom(ep, c.Endpoint.Port())
	for i, p := range c.Prefixes {
		if !p.IsValid() {
			return fmt.Errorf("rr: CPE %s: invalid prefix %v", c.ID, p)
		}
		c.Prefixes[i] = p.Masked()
	}
	return nil
}

// authorised reports whether p is one of the CPE's prefixes, or lies
// within one if moreSpecifics.
func (c *CPE) authorised(p netip.Prefix, moreSpecifics bool) bool {
	for _, a := range c.Prefixes {
		if a == p || moreSpecifics && a.Addr().Is4() == p.Addr().Is4() && a.Bits() <= p.Bits() && a.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// within reports whether p lies within one of the CPE's prefixes
// (equal or more specific).
func (c *CPE) within(p netip.Prefix) bool { return c.authorised(p, true) }
