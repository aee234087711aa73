package main

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
)

// TestDaemonDataplane: mpsa-hub with the userspace data plane in one
// namespace, a CPE in another behind a veth pair. The CPE's CHILD_SA
// carries a ping from its overlay address to the hub's: the hub installed
// the CHILD_SA (raw ESP, no NAT), routes the CPE's overlay address into it
// and holds its own overlay address on its TUN.
func TestDaemonDataplane(t *testing.T) {
	testenv.Root(t)
	testenv.Binary(t, "ping", "apt-get install iputils-ping")
	hubNS := testenv.NewNetns(t, "hubdp")
	cpeNS := testenv.NewNetns(t, "cpedp")
	testenv.Veth(t, hubNS, "wan0", cpeNS, "wan0")
	hubNS.MustIP("addr", "add", "192.0.2.1/24", "dev", "wan0")
	cpeNS.MustIP("addr", "add", "192.0.2.2/24", "dev", "wan0")

	dir, err := os.MkdirTemp("", "hubdp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "hub.yaml")
	writeConfig(t, cfg, hubYAMLAt("192.0.2.1", dir, "", "cpe1.acme.example"))
	d := startDaemon(t, hubNS, cfg)
	d.waitLog("hub ready")

	// The CPE's data plane: a TUN in its namespace, ESP raw and in UDP.
	fib := routing.New(routing.WithLogger(slog.New(slog.DiscardHandler)))
	var dp *userspace.Backend
	if err := cpeNS.Do(func() (err error) {
		dp, err = userspace.New(userspace.Config{FIB: fib, TUNName: "cpe0", MTU: 1380, RawESP: true,
			Logger: slog.New(slog.DiscardHandler)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	const tunnel = routing.Tunnel(1)
	var mu sync.Mutex
	var sas []dataplane.SA
	childUp := make(chan ike.ChildSA, 1)
	puts := make(chan error, 8)
	m := newCPE(t, cpeNS, "fqdn:cpe1.acme.example", puts, "192.0.2.2:0", func(ev ike.Event) {
		if ev.Kind != ike.EventChildUp {
			return
		}
		peer := netip.AddrPortFrom(ev.Child.Remote.Addr(), 0)
		if ev.Child.Encap {
			peer = ev.Child.Remote
		}
		mu.Lock()
		sas = []dataplane.SA{
			{Keys: ev.Child.In.Clone(), Dir: dataplane.In, Tunnel: tunnel, Peer: peer},
			{Keys: ev.Child.Out.Clone(), Dir: dataplane.Out, Tunnel: tunnel, Peer: peer},
		}
		err := dp.Set(&dataplane.State{SAs: sas})
		mu.Unlock()
		if err == nil {
			err = fib.Upsert(routing.Route{Prefix: netip.MustParsePrefix("100.64.0.1/32"), Endpoint: peer, Tunnel: tunnel, Source: routing.SourceStatic})
		}
		if err != nil {
			t.Errorf("CPE data plane: %v", err)
		}
		childUp <- *ev.Child
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitOK)
	defer cancel()
	sa, err := m.Initiate(ctx, ike.Connection{Remote: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:500")},
		RemoteID: auth.MustParseID("fqdn:hub.example.net"), VirtualIPs: []netip.Addr{netip.IPv4Unspecified()}})
	if err != nil {
		t.Fatalf("CPE: %v\n%s", err, d.log.String())
	}
	var child ike.ChildSA
	select {
	case child = <-childUp:
	case <-time.After(waitOK):
		t.Fatal("no CHILD_SA")
	}
	if child.Encap {
		t.Errorf("ESP UDP-encapsulated without a NAT")
	}
	vip := sa.Info().VIPs[0]
	cpeNS.MustIP("addr", "add", vip.String(), "dev", "cpe0")
	cpeNS.MustIP("route", "add", "100.64.0.1/32", "dev", "cpe0", "src", vip.Addr().String())
	d.waitLog("CPE connected", "id=fqdn:cpe1.acme.example")

	out, err := cpeNS.Run("ping", "-c", "3", "-i", "0.2", "-W", "5", "-I", vip.Addr().String(), "100.64.0.1")
	if err != nil || !strings.Contains(out, "3 received") {
		t.Fatalf("ping over the CHILD_SA: %v\n%s\nhub log:\n%s", err, out, d.log.String())
	}
	if st := dp.Stats(); st.RxPackets < 3 || st.TxPackets < 3 {
		t.Errorf("CPE data plane counters %+v", st)
	}
	// Three echo requests in, three replies out: 84 inner octets each.
	metrics := scrape(t, hubNS, "127.0.0.1:9470")
	for _, want := range []string{`mpsa_hub_dataplane_bytes_total{dir="in"} 252`, `mpsa_hub_dataplane_bytes_total{dir="out"} 252`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("hub metrics lack %q:\n%s", want, grepLines(metrics, "dataplane"))
		}
	}
	mu.Lock()
	for i := range sas {
		sas[i].Keys.Wipe()
	}
	mu.Unlock()
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
