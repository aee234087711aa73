// Command cpe-bench runs one CPE's userspace data plane with a static group
// SA, for datapath-bench.sh: a TUN with an inner address, a route for the
// peer's inner prefix through the peer's ESP endpoint, and the backend
// between them. No IKE, no BGP: the SA and the route are given on the
// command line, so the figure is the data plane's alone.
//
// The keys are derived from -seed: this binary is for benchmarks only.
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/routing"
	"github.com/mpsa-vpn/mpsa/transform"
)

func main() {
	var (
		tunName  = flag.String("tun", "cpe0", "TUN device name")
		mtu      = flag.Int("mtu", userspace.DefaultMTU, "TUN MTU")
		inner    = flag.String("inner", "10.98.3.1/24", "address of the TUN (prefix)")
		remote   = flag.String("remote", "10.98.3.2/32", "peer's inner prefix, routed through the peer")
		peer     = flag.String("peer", "10.98.0.2", "peer's underlay address (ESP endpoint)")
		raw      = flag.Bool("raw", false, "raw ESP (IP protocol 50) instead of UDP 4500")
		suite    = flag.String("suite", "gcm", "gcm (AES-128-GCM-16), cbc (AES-128-CBC/HMAC-SHA2-256-128), chacha")
		senderID = flag.Uint("sender-id", 1, "our Sender-ID (AEAD suites)")
		seed     = flag.String("seed", "mpsa-datapath-bench", "key seed (both peers must agree)")
		workers  = flag.Int("workers", 0, "crypto goroutines (0: GOMAXPROCS)")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(log, *tunName, *mtu, *inner, *remote, *peer, *raw, *suite, uint32(*senderID), *seed, *workers); err != nil {
		log.Error("cpe-bench failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, tunName string, mtu int, inner, remote, peer string, raw bool, suiteName string, senderID uint32, seed string, workers int) error {
	innerP, err := netip.ParsePrefix(inner)
	if err != nil {
		return err
	}
	remoteP, err := netip.ParsePrefix(remote)
	if err != nil {
		return err
	}
	peerA, err := netip.ParseAddr(peer)
	if err != nil {
		return err
	}
	var s transform.ESP
	switch suiteName {
	case "gcm":
		s = transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}
	case "cbc":
		s = transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128}
	case "chacha":
		s = transform.ESP{Encr: transform.EncrChaCha20Poly1305}
	default:
		return fmt.Errorf("unknown suite %q", suiteName)
	}
	keys, err := benchKeys(s, seed)
	if err != nil {
		return err
	}
	port := uint16(esp.UDPEncapPort)
	if raw {
		port = 0
	}
	fib := routing.New()
	if err := fib.Upsert(routing.Route{Prefix: remoteP.Masked(), Endpoint: netip.AddrPortFrom(peerA, port), Tunnel: 1, Source: routing.SourceStatic}); err != nil {
		return err
	}
	b, err := userspace.New(userspace.Config{FIB: fib, TUNName: tunName, MTU: mtu, Addresses: []netip.Prefix{innerP}, RawESP: raw, Workers: workers, Logger: log})
	if err != nil {
		return err
	}
	defer b.Close()
	sa := dataplane.SA{Keys: keys, Dir: dataplane.Both, Tunnel: 1}
	if s.Encr.IsAEAD() {
		sa.SenderIDBits, sa.SenderID, sa.ReplayWindow = 8, senderID, 4096
	}
	if err := b.Set(&dataplane.State{SAs: []dataplane.SA{sa}}); err != nil {
		return err
	}
	keys.Wipe()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sub := fib.Subscribe()
	defer sub.Close()
	go b.FollowRoutes(ctx, sub)
	log.Info("cpe-bench up", "prefix", remoteP.String(), "endpoint", netip.AddrPortFrom(peerA, port).String())
	<-ctx.Done()
	st := b.Stats()
	log.Info("cpe-bench stats", "tx_packets", st.TxPackets, "rx_packets", st.RxPackets, "drops", fmt.Sprint(st.Drops))
	return nil
}

// benchKeys expands seed into the suite's key material (SHA-256 in counter
// mode). Benchmarks only: real keys come from IKE or MPSA.
func benchKeys(s transform.ESP, seed string) (esp.Keys, error) {
	el, il, err := s.KeyLens()
	if err != nil {
		return esp.Keys{}, err
	}
	var stream []byte
	for i := 0; len(stream) < el+il; i++ {
		h := sha256.Sum256(fmt.Appendf(nil, "%s/%d", seed, i))
		stream = append(stream, h[:]...)
	}
	return esp.Keys{SPI: 0xbe7c0001, Suite: s, EncKey: stream[:el], IntegKey: stream[el : el+il]}, nil
}
