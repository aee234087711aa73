// Package gobgptest starts a bare embedded GoBGP v3 route reflector for
// tests and benchmarks: dynamic neighbors for a prefix, one peer group of
// route-reflector clients, IPv4 and IPv6 unicast, optional graceful restart.
// It is the reference peer our own code is measured and tested against.
package gobgptest

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	gblog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/mpsa-vpn/mpsa/bgp/internal/gobgplog"
)

// Options configure the reflector; zero fields take the defaults noted.
type Options struct {
	ASN          uint32   // 65000
	RouterID     string   // "10.255.255.1"
	ListenAddr   string   // "127.0.0.1"
	Port         int      // a free port
	Dynamic      string   // dynamic neighbor prefix, "127.0.0.0/8"
	Neighbors    []string // configured (passive) neighbors instead of a dynamic range
	HoldTime     uint64   // 90
	GR           bool     // offer graceful restart (helper and restarting speaker)
	RestartTime  uint32   // GR restart time, 120
	Restarting   bool     // start as a restarting speaker (F bit set, deferral)
	DeferralTime uint32   // GR selection deferral, 360
	GRPC         string   // gRPC listen address, none if empty
	Logger       *slog.Logger
}

// Families are the address families the reflector serves.
var Families = []*api.Family{
	{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST},
	{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST},
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// FreePortMin and FreePortMax bound the ports FreePort draws from: below the kernel's ephemeral
// range (32768–60999 by default), where no socket bound to port 0 and no
// outgoing connection of a test running at the same time, in this package or
// another, is given a port; and apart from the range cpe's tests draw from
// (20000–29999).
const (
	FreePortMin = 12000
	FreePortMax = 19999
)

// FreePort returns a TCP port, drawn at random from FreePortMin–FreePortMax,
// that was free on 127.0.0.1 a moment ago and that it has not returned
// before in this process (a daemon that binds a port right after an earlier
// test's daemon died can find it still held by connections closing). It
// cannot keep a port for the caller: a test that starts a foreign daemon on
// it runs that daemon in a namespace of its own instead (package peertest).
func FreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := FreePortMin + rand.IntN(FreePortMax-FreePortMin+1)
		if ports[p] {
			continue
		}
		l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		ports[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("gobgptest: no free port in %d-%d", FreePortMin, FreePortMax)
}

// Start starts the reflector; Stop it when done.
func Start(ctx context.Context, o Options) (*server.BgpServer, Options, error) {
	if o.ASN == 0 {
		o.ASN = 65000
	}
	if o.RouterID == "" {
		o.RouterID = "10.255.255.1"
	}
	if o.ListenAddr == "" {
		o.ListenAddr = "127.0.0.1"
	}
	if o.Dynamic == "" {
		o.Dynamic = "127.0.0.0/8"
	}
	if o.HoldTime == 0 {
		o.HoldTime = 90
	}
	if o.RestartTime == 0 {
		o.RestartTime = 120
	}
	if o.DeferralTime == 0 {
		o.DeferralTime = 360
	}
	if o.Port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, o, err
		}
		o.Port = p
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	opts := []server.ServerOption{server.LoggerOption(gobgplog.New(lg, gblog.WarnLevel))}
	if o.GRPC != "" {
		opts = append(opts, server.GrpcListenAddress(o.GRPC))
	}
	s := server.NewBgpServer(opts...)
	go s.Serve()
	err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: o.ASN, RouterId: o.RouterID, ListenPort: int32(o.Port), ListenAddresses: []string{o.ListenAddr},
	}})
	if err != nil {
		s.Stop()
		return nil, o, fmt.Errorf("gobgptest: StartBgp: %w", err)
	}
	var afis []*api.AfiSafi
	for _, f := range Families {
		a := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: f, Enabled: true}}
		if o.GR {
			a.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		afis = append(afis, a)
	}
	pg := &api.PeerGroup{
		Conf:           &api.PeerGroupConf{PeerGroupName: "cpe", PeerAsn: o.ASN},
		RouteReflector: &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: o.RouterID},
		AfiSafis:       afis,
		Timers:         &api.Timers{Config: &api.TimersConfig{HoldTime: o.HoldTime, KeepaliveInterval: o.HoldTime / 3}},
		Transport:      &api.Transport{PassiveMode: true},
	}
	if o.GR {
		pg.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: o.RestartTime,
			NotificationEnabled: true, DeferralTime: o.DeferralTime, LocalRestarting: o.Restarting}
	}
	if err := s.AddPeerGroup(ctx, &api.AddPeerGroupRequest{PeerGroup: pg}); err != nil {
		s.Stop()
		return nil, o, fmt.Errorf("gobgptest: AddPeerGroup: %w", err)
	}
	if len(o.Neighbors) > 0 {
		// Configured neighbors, unlike dynamic ones, carry the restarting
		// state (GoBGP copies only Config, not State, from the group).
		for _, n := range o.Neighbors {
			p := &api.Peer{Conf: &api.PeerConf{NeighborAddress: n, PeerGroup: "cpe"}}
			if o.GR {
				p.GracefulRestart = &api.GracefulRestart{LocalRestarting: o.Restarting}
			}
			if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: p}); err != nil {
				s.Stop()
				return nil, o, fmt.Errorf("gobgptest: AddPeer: %w", err)
			}
		}
		return s, o, nil
	}
	if err := s.AddDynamicNeighbor(ctx, &api.AddDynamicNeighborRequest{DynamicNeighbor: &api.DynamicNeighbor{
		Prefix: o.Dynamic, PeerGroup: "cpe"}}); err != nil {
		s.Stop()
		return nil, o, fmt.Errorf("gobgptest: AddDynamicNeighbor: %w", err)
	}
	return s, o, nil
}

// StartT is Start for tests: it fails the test on error and stops the
// reflector when the test ends.
func StartT(tb testing.TB, o Options) (*server.BgpServer, Options) {
	tb.Helper()
	s, o, err := Start(context.Background(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s, o
}

// WaitPaths waits until the reflector's global RIB holds at least n best
// paths, following best-path events (no polling).
func WaitPaths(ctx context.Context, s *server.BgpServer, n int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reached := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	best := map[string]bool{}
	err := s.WatchEvent(ctx, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true}}}},
		func(r *api.WatchEventResponse) {
			mu.Lock()
			defer mu.Unlock()
			for _, p := range r.GetTable().GetPaths() {
				key := fmt.Sprint(p.GetFamily(), p.GetNlri().GetValue())
				if p.IsWithdraw {
					delete(best, key)
				} else {
					best[key] = true
				}
			}
			if len(best) >= n {
				once.Do(func() { close(reached) })
			}
		})
	if err != nil {
		return err
	}
	select {
	case <-reached:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("gobgptest: %d best paths not reached: %w", n, ctx.Err())
	}
}
