// Command rr-gobgp is the bare GoBGP v3 route reflector of the BGP
// benchmark: an embedded BgpServer with a dynamic-neighbor range of route
// reflector clients for IPv4 and IPv6 unicast, GoBGP's own logger at Warn,
// nothing of ours. It prints "ready" when listening and runs until its
// standard input closes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	api "github.com/osrg/gobgp/v3/api"
	gblog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
)

func main() {
	listen := flag.String("listen", "127.0.0.1", "listen address")
	port := flag.Int("port", 11179, "listen port")
	dynamic := flag.String("dynamic", "127.0.0.0/8", "dynamic neighbor range")
	mesh := flag.String("mesh", "", "address of another rr-gobgp to mesh with as a non-client iBGP peer (same port)")
	routerID := flag.String("id", "10.255.255.1", "router ID")
	flag.StringVar(&memprofile, "memprofile", "", "write a heap profile here when stdin closes")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*listen, *port, *dynamic, *mesh, *routerID); err != nil {
		fmt.Fprintln(os.Stderr, "rr-gobgp:", err)
		os.Exit(1)
	}
}

var memprofile string

func run(listen string, port int, dynamic, mesh, routerID string) error {
	lg := gblog.NewDefaultLogger()
	lg.SetLevel(gblog.WarnLevel)
	s := server.NewBgpServer(server.LoggerOption(lg))
	go s.Serve()
	ctx := context.Background()
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: 65000, RouterId: routerID, ListenPort: int32(port), ListenAddresses: []string{listen}}}); err != nil {
		return err
	}
	var afis []*api.AfiSafi
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		afis = append(afis, &api.AfiSafi{Config: &api.AfiSafiConfig{
			Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true}})
	}
	if err := s.AddPeerGroup(ctx, &api.AddPeerGroupRequest{PeerGroup: &api.PeerGroup{
		Conf:           &api.PeerGroupConf{PeerGroupName: "cpe", PeerAsn: 65000},
		RouteReflector: &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: "10.255.255.1"},
		AfiSafis:       afis,
		Timers:         &api.Timers{Config: &api.TimersConfig{HoldTime: 240, KeepaliveInterval: 80}},
	}}); err != nil {
		return err
	}
	if err := s.AddDynamicNeighbor(ctx, &api.AddDynamicNeighborRequest{DynamicNeighbor: &api.DynamicNeighbor{
		Prefix: dynamic, PeerGroup: "cpe"}}); err != nil {
		return err
	}
	if mesh != "" {
		// One reflector per core, meshed: routes of this instance's clients
		// go to the other instance, which reflects them to its clients.
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: mesh, PeerAsn: 65000},
			AfiSafis:  afis,
			Transport: &api.Transport{RemotePort: uint32(port), LocalAddress: listen},
			Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 240, KeepaliveInterval: 80, ConnectRetry: 1}},
		}}); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	if memprofile != "" {
		if f, err := os.Create(memprofile); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	s.Stop()
	return nil
}
