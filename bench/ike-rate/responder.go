package ikerate

import (
	"context"

	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/transform"
)

// Defaults of strongSwan's load-tester as strongswan-loadtest.sh drives it.
const (
	DefaultResponderID = "fqdn:srv.strongswan.org"
	DefaultPeerPattern = "*.strongswan.org"
	DefaultPSK         = "loadtest-psk-0123456789"
	DefaultIKE         = "aes128-sha256-x25519"
	DefaultESP         = "aes128gcm16"
	DefaultLocalTS     = "10.99.1.0/24"
	DefaultPool4       = "10.99.128.0/17"
	DefaultPool6       = "fd99::/108"
)

// ResponderConfig describes the benchmark responder. Zero fields take the
// load-tester's defaults above.
type ResponderConfig struct {
	// ID is the responder's identity, Peers the pattern of the initiator
	// identities it accepts (auth.ParsePattern), PSK the key of all of them.
	ID    auth.ID
	Peers string
	PSK   []byte
	// IKE and ESP are the accepted proposals.
	IKE []suite.Suite
	ESP []transform.ESP
	// Pool4 and Pool6 are where virtual IPs come from.
	Pool4, Pool6 netip.Prefix
	// LocalTS is the responder's side of the CHILD_SA (the hub's LAN).
	LocalTS []netip.Prefix
	// Logger receives the engine's logs (nil: discarded).
	Logger *slog.Logger
}

func (c *ResponderConfig) setDefaults() error {
	var err error
	if c.ID.IsZero() {
		c.ID = auth.MustParseID(DefaultResponderID)
	}
	if c.Peers == "" {
		c.Peers = DefaultPeerPattern
	}
	if c.PSK == nil {
		c.PSK = []byte(DefaultPSK)
	}
	if len(c.IKE) == 0 {
		if c.IKE, err = ParseIKEList(DefaultIKE); err != nil {
			return err
		}
	}
	if len(c.ESP) == 0 {
		if c.ESP, err = ParseESPList(DefaultESP); err != nil {
			return err
		}
	}
	if !c.Pool4.IsValid() && !c.Pool6.IsValid() {
		c.Pool4, c.Pool6 = netip.MustParsePrefix(DefaultPool4), netip.MustParsePrefix(DefaultPool6)
	}
	if len(c.LocalTS) == 0 {
		c.LocalTS = []netip.Prefix{netip.MustParsePrefix(DefaultLocalTS)}
	}
	return nil
}

// Responder is an ike.Manager set up as the benchmark responder. CHILD_SA
// keys are wiped as they arrive and installed nowhere, as charon's fake
// kernel interface does; the counters say what happened.
type Responder struct {
	Manager *ike.Manager
	Pool    *Pool

	ikeUp, ikeDown, childUp, childDown atomic.Int64

	mu      sync.Mutex    // guards changed
	changed chan struct{} // closed and replaced on every counted event
}

// Counts are the responder's event counters.
type Counts struct {
	IKEUp, IKEDown, ChildUp, ChildDown int64
}

// NewResponder builds the responder; add sockets with Listen or
// Manager.AddConn.
func NewResponder(cfg ResponderConfig) (*Responder, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	pool, err := NewPool(cfg.Pool4, cfg.Pool6)
	if err != nil {
		return nil, err
	}
	pattern, err := auth.ParsePattern(cfg.Peers)
	if err != nil {
		return nil, fmt.Errorf("ikerate: peer pattern: %w", err)
	}
	r := &Responder{Pool: pool, changed: make(chan struct{})}
	peer := &auth.Peer{PSK: cfg.PSK}
	m, err := ike.New(ike.Config{
		Local: auth.Local{ID: cfg.ID, PSK: cfg.PSK},
		Peers: auth.Static(auth.Rule{Pattern: pattern, Peer: peer}),
		Proposals: ike.Proposals{
			IKE: cfg.IKE,
			ESP: cfg.ESP,
		},
		LocalTS: cfg.LocalTS,
		Policy: ike.Policy{
			AssignAddresses: func(_ context.Context, _ ike.PeerInfo, req []netip.Addr) ([]netip.Prefix, error) {
				return pool.Assign(req)
			},
			ReleaseAddresses: func(_ ike.PeerInfo, addrs []netip.Prefix) { pool.Release(addrs) },
		},
		Events: r.event,
		// As the hub (hub.openIKE) and charon's defaults (mobike = yes,
		// fragmentation = yes); no DPD, as the charon responder of the
		// load test has none.
		MOBIKE:        true,
		Fragmentation: true,
		// strongswan-loadtest.sh runs charon with dos_protection = no: no
		// COOKIE challenge and no half-open limit below the engine's
		// bound. The same here.
		CookieThreshold: ike.DefaultMaxHalfOpen,
		Logger:          cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	r.Manager = m
	return r, nil
}

// event consumes the engine's events: keys are wiped at once (the fake
// kernel installs nothing), the rest is counted.
func (r *Responder) event(ev ike.Event) {
	if ev.Child != nil {
		ev.Child.In.Wipe()
		ev.Child.Out.Wipe()
	}
	switch ev.Kind {
	case ike.EventIKEUp:
		r.ikeUp.Add(1)
	case ike.EventIKEDown:
		r.ikeDown.Add(1)
	case ike.EventChildUp:
		r.childUp.Add(1)
	case ike.EventChildDown:
		r.childDown.Add(1)
	default:
		return
	}
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// Counts returns the event counters.
func (r *Responder) Counts() Counts {
	return Counts{IKEUp: r.ikeUp.Load(), IKEDown: r.ikeDown.Load(), ChildUp: r.childUp.Load(), ChildDown: r.childDown.Load()}
}

// WaitEstablished returns once n IKE SAs and n CHILD_SAs came up since the
// start (counting those that went down again), or with ctx's error.
func (r *Responder) WaitEstablished(ctx context.Context, n int64) error {
	return r.WaitFor(ctx, func(c Counts) bool { return c.IKEUp >= n && c.ChildUp >= n })
}

// WaitFor returns once done holds for the counters, or with ctx's error.
func (r *Responder) WaitFor(ctx context.Context, done func(Counts) bool) error {
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if done(r.Counts()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("ikerate: waiting for the responder (%+v): %w", r.Counts(), ctx.Err())
		}
	}
}

// Listen opens the IKE port and the NAT-T port on addr (port 0 for either:
// an ephemeral port) and hands them to the manager. rcvbuf, when positive,
// sets SO_RCVBUF. It returns the bound addresses.
func (r *Responder) Listen(addr netip.Addr, port, nattPort uint16, rcvbuf int) (ikeAddr, nattAddr netip.AddrPort, err error) {
	network := "udp4"
	if addr.Is6() {
		network = "udp6"
	}
	open := func(p uint16) (*ike.UDPConn, error) {
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, p)))
		if err != nil {
			return nil, fmt.Errorf("ikerate: %w", err)
		}
		if rcvbuf > 0 {
			if err := c.SetReadBuffer(rcvbuf); err != nil {
				c.Close()
				return nil, fmt.Errorf("ikerate: SO_RCVBUF: %w", err)
			}
		}
		u, err := ike.NewUDPConn(c)
		if err != nil {
			c.Close()
			return nil, err
		}
		return u, nil
	}
	c500, err := open(port)
	if err != nil {
		return
	}
	c4500, err := open(nattPort)
	if err != nil {
		c500.Close()
		return
	}
	r.Manager.AddConn(c500, false)
	r.Manager.AddConn(c4500, true)
	return c500.LocalAddr(), c4500.LocalAddr(), nil
}

// Close stops the manager at once (peers are not told).
func (r *Responder) Close() { r.Manager.Close() }
