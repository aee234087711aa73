package ikerate

import (
	"context"

	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/suite"
)

// InitiatorConfig describes simulated CPEs: Managers ike.Managers, each
// with its own UDP sockets (so distinct source ports) and identity
// ("c<k>-r1.strongswan.org"), establishing Count IKE SAs in all, each with
// a CHILD_SA and virtual IPs, at most Window at a time.
type InitiatorConfig struct {
	// Target is the responder's IKE address, TargetNATT its NAT-T
	// address (the initiators offer MOBIKE, so, like strongSwan, they move
	// there for IKE_AUTH).
	Target, TargetNATT netip.AddrPort
	// Local is the address the initiators' sockets bind to (port 0).
	Local netip.Addr
	// Managers, Count and Window: defaults 1, 1, 64.
	Managers, Count, Window int
	// ResponderID, PSK: defaults DefaultResponderID, DefaultPSK.
	ResponderID auth.ID
	PSK         []byte
	// VirtualIPs asked for (default: any IPv4 and any IPv6 address).
	VirtualIPs []netip.Addr
	// IKE suites offered (default: DefaultIKE).
	IKE []suite.Suite
}

// Initiators are running simulated CPEs.
type Initiators struct {
	managers []*ike.Manager
	up       atomic.Int64
	mu       sync.Mutex // guards sas
	sas      []*ike.SA
}

// StartInitiators establishes cfg.Count IKE SAs with the responder and
// returns once all are up, or with the first error (then nothing is left
// running).
func StartInitiators(ctx context.Context, cfg InitiatorConfig) (*Initiators, error) {
	cfg.Managers, cfg.Count, cfg.Window = max(cfg.Managers, 1), max(cfg.Count, 1), max(cfg.Window, 1)
	if cfg.Window == 1 && cfg.Count > 1 {
		cfg.Window = 64
	}
	if cfg.ResponderID.IsZero() {
		cfg.ResponderID = auth.MustParseID(DefaultResponderID)
	}
	if cfg.PSK == nil {
		cfg.PSK = []byte(DefaultPSK)
	}
	if cfg.VirtualIPs == nil {
		cfg.VirtualIPs = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	}
	if len(cfg.IKE) == 0 {
		s, err := ParseIKE(DefaultIKE)
		if err != nil {
			return nil, err
		}
		cfg.IKE = []suite.Suite{s}
	}
	if !cfg.Local.IsValid() {
		cfg.Local = cfg.Target.Addr()
	}
	esp, err := ParseESPList(DefaultESP)
	if err != nil {
		return nil, err
	}
	pattern, err := auth.ParsePattern(cfg.ResponderID.String())
	if err != nil {
		return nil, err
	}
	in := &Initiators{}
	for k := range cfg.Managers {
		m, err := ike.New(ike.Config{
			Local:     auth.Local{ID: auth.MustParseID(fmt.Sprintf("fqdn:c%d-r1.strongswan.org", k+1)), PSK: cfg.PSK},
			Peers:     auth.Static(auth.Rule{Pattern: pattern, Peer: &auth.Peer{PSK: cfg.PSK}}),
			Proposals: ike.Proposals{IKE: cfg.IKE, ESP: esp},
			MOBIKE:    true,
			NATTPort:  cfg.TargetNATT.Port(),
			// Rekeying and DPD are not part of the measurement.
			IKERekeyTime: -1, ChildRekeyTime: -1,
		})
		if err != nil {
			in.Close()
			return nil, err
		}
		in.managers = append(in.managers, m)
		for _, natt := range []bool{false, true} {
			c, err := ike.ListenUDP("udp", netip.AddrPortFrom(cfg.Local, 0))
			if err != nil {
				in.Close()
				return nil, err
			}
			m.AddConn(c, natt)
		}
	}
	conn := ike.Connection{Remote: []netip.AddrPort{cfg.Target}, RemoteID: cfg.ResponderID, VirtualIPs: cfg.VirtualIPs}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		sem     = make(chan struct{}, cfg.Window)
	)
	fail := func(err error) {
		errOnce.Do(func() { first = err; cancel() })
	}
	initiate := func(m *ike.Manager) bool {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		defer func() { <-sem }()
		sa, err := m.Initiate(ctx, conn)
		if err != nil {
			fail(err)
			return false
		}
		in.mu.Lock()
		in.sas = append(in.sas, sa)
		in.mu.Unlock()
		in.up.Add(1)
		return true
	}
	// Manager k makes SAs k, k+Managers, ...; its first one alone, so
	// that only the first IKE_AUTH of an identity carries INITIAL_CONTACT
	// (which would make the responder drop that identity's other SAs).
	for k, m := range in.managers {
		n := cfg.Count / cfg.Managers
		if k < cfg.Count%cfg.Managers {
			n++
		}
		if n == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !initiate(m) {
				return
			}
			var inner sync.WaitGroup
			for range n - 1 {
				inner.Add(1)
				go func() {
					defer inner.Done()
					initiate(m)
				}()
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	if first != nil {
		in.Close()
		return nil, fmt.Errorf("ikerate: %d of %d IKE SAs up: %w", in.up.Load(), cfg.Count, first)
	}
	return in, nil
}

// Up is the number of IKE SAs established.
func (in *Initiators) Up() int { return int(in.up.Load()) }

// SAs returns the established SAs.
func (in *Initiators) SAs() []*ike.SA {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]*ike.SA(nil), in.sas...)
}

// Close drops every SA without telling the responder and stops the
// managers.
func (in *Initiators) Close() {
	for _, m := range in.managers {
		m.Close()
	}
}
