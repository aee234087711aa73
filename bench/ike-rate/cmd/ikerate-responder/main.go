// Command ikerate-responder is the IKE responder of the ike-rate
// benchmark: package ike as the hub uses it (PSK, IPv4 and IPv6 virtual
// IPs from a pool, one CHILD_SA per IKE SA, installed nowhere), listening
// for strongSwan's load-tester. run.sh starts it in the responder's
// network namespace; it prints "ready" once its sockets are open and its
// counters when SIGTERM or SIGINT stops it.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	ikerate "github.com/mpsa-vpn/mpsa/bench/ike-rate"
	"github.com/mpsa-vpn/mpsa/ike/auth"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ikerate-responder:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		listen   = flag.String("listen", "192.0.2.1", "local address")
		port     = flag.Uint("port", 500, "IKE port")
		nattPort = flag.Uint("natt-port", 4500, "NAT-T port")
		id       = flag.String("id", ikerate.DefaultResponderID, "our identity")
		peers    = flag.String("peers", ikerate.DefaultPeerPattern, "accepted initiator identities (pattern)")
		psk      = flag.String("psk", ikerate.DefaultPSK, "pre-shared key of every initiator")
		ikeProps = flag.String("ike", ikerate.DefaultIKE, "accepted IKE proposals (strongSwan names, comma separated)")
		espProps = flag.String("esp", ikerate.DefaultESP, "accepted ESP proposals")
		pool4    = flag.String("pool4", ikerate.DefaultPool4, "IPv4 virtual IP pool (empty: none)")
		pool6    = flag.String("pool6", ikerate.DefaultPool6, "IPv6 virtual IP pool (empty: none)")
		localTS  = flag.String("local-ts", ikerate.DefaultLocalTS, "our traffic selectors (comma separated prefixes)")
		rcvbuf   = flag.Int("rcvbuf", 0, "SO_RCVBUF of both sockets (0: system default)")
		logLevel = flag.String("log", "warn", "log level: debug, info, warn, error")
		cpuprof  = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
		memprof  = flag.String("memprofile", "", "write a heap profile at exit to this file")
	)
	flag.Parse()

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return err
	}
	cfg := ikerate.ResponderConfig{Peers: *peers, PSK: []byte(*psk),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))}
	var err error
	if cfg.ID, err = auth.ParseID(*id); err != nil {
		return err
	}
	if cfg.IKE, err = ikerate.ParseIKEList(*ikeProps); err != nil {
		return err
	}
	if cfg.ESP, err = ikerate.ParseESPList(*espProps); err != nil {
		return err
	}
	if *pool4 != "" {
		if cfg.Pool4, err = netip.ParsePrefix(*pool4); err != nil {
			return err
		}
	}
	if *pool6 != "" {
		if cfg.Pool6, err = netip.ParsePrefix(*pool6); err != nil {
			return err
		}
	}
	for _, s := range strings.Split(*localTS, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		cfg.LocalTS = append(cfg.LocalTS, p)
	}
	addr, err := netip.ParseAddr(*listen)
	if err != nil {
		return err
	}
	if *port > 65535 || *nattPort > 65535 {
		return fmt.Errorf("port out of range")
	}

	r, err := ikerate.NewResponder(cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	a500, a4500, err := r.Listen(addr, uint16(*port), uint16(*nattPort), *rcvbuf)
	if err != nil {
		return err
	}
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	fmt.Printf("ready %v %v pid %d\n", a500, a4500, os.Getpid())
	<-sig

	c, st := r.Counts(), r.Manager.Stats()
	fmt.Printf("counts ike_up %d ike_down %d child_up %d child_down %d pool_in_use %d\n",
		c.IKEUp, c.IKEDown, c.ChildUp, c.ChildDown, r.Pool.InUse())
	fmt.Printf("stats %+v\n", st)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		fmt.Printf("rusage user %.3fs sys %.3fs maxrss %d KiB\n", tv(ru.Utime), tv(ru.Stime), ru.Maxrss)
	}
	if *memprof != "" {
		f, err := os.Create(*memprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			return err
		}
	}
	return nil
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
