package speaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/mpsa-vpn/mpsa/routing"
)

// RouteSink receives the routes the speaker learns. The routing FIB
// satisfies it. A route is identified by (Prefix, Peer): Upsert adds or
// replaces it, Withdraw removes it, WithdrawPeer removes every route of the
// peer. The speaker never calls two methods at the same time.
type RouteSink interface {
	Upsert(routing.Route) error
	Withdraw(prefix netip.Prefix, peer netip.Addr) error
	WithdrawPeer(peer netip.Addr)
}

// Default values for Config fields left zero.
const (
	DefaultHoldTime             = 90 * time.Second
	DefaultOpenHoldTime         = 240 * time.Second // RFC 4271 §8.2.2: "large value" in OpenSent
	DefaultRestartTime          = 120 * time.Second
	DefaultStalePathTime        = 360 * time.Second
	DefaultMinBackoff           = 1 * time.Second
	DefaultMaxBackoff           = 60 * time.Second
	DefaultMaxRoutes            = 1 << 20
	DefaultWriteTimeout         = 30 * time.Second
	DefaultLocalPref            = 100
	minHoldTime                 = 3 * time.Second // RFC 4271 §4.2
	maxRestartTime              = 4095 * time.Second
	maxMessageLen               = 4096 // RFC 4271 §4.1; we do not offer RFC 8654
	headerLen                   = 19
	asTrans              uint16 = 23456 // RFC 6793
)

// Config configures a Speaker. ASN, RouterID, Dial and Sink are required.
type Config struct {
	// ASN is the AS number of the CPE and of the hub (the session is iBGP).
	ASN uint32
	// RouterID is the CPE's BGP Identifier, an IPv4 address unique in the
	// group (the CPE's overlay address is a good choice).
	RouterID netip.Addr

	// Dial opens the transport to the hub: TCP from the CPE's overlay
	// address to the hub's overlay address, port 179, inside the CHILD_SA.
	Dial func(ctx context.Context) (net.Conn, error)

	// Prefixes are the LAN prefixes to advertise; Endpoint is the CPE's ESP
	// endpoint advertised with them (port 0 = raw ESP, 4500 = ESP in UDP).
	// Both can be changed later with SetPrefixes and SetEndpoint. Without a
	// valid Endpoint the routes are sent in the plain RFC 5565 form, with
	// the session's local address as NEXT_HOP and no Tunnel Encapsulation.
	Prefixes []netip.Prefix
	Endpoint netip.AddrPort

	// Sink receives learned routes; Tunnel is put into every one of them.
	Sink   RouteSink
	Tunnel routing.Tunnel

	HoldTime      time.Duration // proposed hold time; 0 = DefaultHoldTime; minimum 3 s
	OpenHoldTime  time.Duration // hold time while waiting for OPEN; 0 = DefaultOpenHoldTime
	RestartTime   time.Duration // GR restart time we advertise; 0 = DefaultRestartTime
	StalePathTime time.Duration // how long stale routes may wait for End-of-RIB; 0 = DefaultStalePathTime
	MinBackoff    time.Duration // first reconnect delay; 0 = DefaultMinBackoff
	MaxBackoff    time.Duration // reconnect delay ceiling; 0 = DefaultMaxBackoff
	WriteTimeout  time.Duration // bound on one write to the hub; 0 = DefaultWriteTimeout
	MaxRoutes     int           // bound on learned routes; 0 = DefaultMaxRoutes

	// NoForwardingPreserved clears the F bit in our GR capability: set it
	// when the CPE's data plane does not survive a restart of this speaker.
	NoForwardingPreserved bool

	// DeferEndOfRIB holds back our End-of-RIB markers until SendEndOfRIB
	// is called. A GR-restarting reflector waits for every peer's
	// End-of-RIB before it selects and sends routes (RFC 4724 §4.1); the hub
	// uses a speaker with this set to keep that deferral open until every
	// live CPE is back.
	DeferEndOfRIB bool

	// OnState, if set, is called with every FSM state change, from the
	// session goroutine; it must not block.
	OnState func(State)

	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.ASN == 0 {
		return errors.New("speaker: ASN is required")
	}
	if !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		return fmt.Errorf("speaker: RouterID %v is not a non-zero IPv4 address", c.RouterID)
	}
	if c.Dial == nil || c.Sink == nil {
		return errors.New("speaker: Dial and Sink are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HoldTime, DefaultHoldTime)
	def(&c.OpenHoldTime, DefaultOpenHoldTime)
	def(&c.RestartTime, DefaultRestartTime)
	def(&c.StalePathTime, DefaultStalePathTime)
	def(&c.MinBackoff, DefaultMinBackoff)
	def(&c.MaxBackoff, DefaultMaxBackoff)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	if c.MaxRoutes == 0 {
		c.MaxRoutes = DefaultMaxRoutes
	}
	if c.HoldTime < minHoldTime || c.HoldTime > 65535*time.Second {
		return fmt.Errorf("speaker: hold time %v out of range [3s, 65535s]", c.HoldTime)
	}
	if c.RestartTime > maxRestartTime {
		c.RestartTime = maxRestartTime
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
