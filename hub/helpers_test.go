package hub

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/memory"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/mpsa"
	"github.com/mpsa-vpn/mpsa/routing"
	"github.com/mpsa-vpn/mpsa/transform"
)

var (
	hubID  = auth.MustParseID("fqdn:hub.example.net")
	loop4  = netip.MustParseAddr("127.0.0.1")
	waitOK = 20 * time.Second
)

// testPSK is a CPE's PSK: distinct per identity.
func testPSK(id string) string { return "psk of " + id + " 0123456789" }

// logBuffer collects log records (text) for assertions, and checks field
// names through ops.FieldCheck.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if os.Getenv("HUB_TEST_LOG") != "" {
		os.Stderr.Write(p)
	}
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the log lines that contain every one of parts.
func (l *logBuffer) lines(parts ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		ok := line != ""
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// loopbackPools gives baseConfig's two groups overlay pools in 127/8, so
// that the CPEs' overlay addresses are local and their BGP sessions reach
// the route reflector over loopback.
func loopbackPools(cfg *configs.Hub) {
	cfg.Groups[0].Pool = configs.Pool{IPv4: mustPrefix("127.100.0.0/24")}
	cfg.Groups[1].Pool = configs.Pool{IPv4: mustPrefix("127.101.0.0/24")}
}

// baseConfig is a hub with two groups: acme (AES-CBC, no Sender-IDs) and
// globex (AES-GCM with Sender-IDs), and CPEs cpe1, cpe2 in acme and cpe3 in
// globex, all with PSKs.
func baseConfig(t testing.TB) *configs.Hub {
	t.Helper()
	cfg := &configs.Hub{
		Identity: hubID,
		IKE:      configs.HubIKE{Listen: []netip.Addr{loop4}},
		Groups: []configs.Group{
			{Name: "acme", Lifetime: time.Hour, RekeyMargin: 10 * time.Minute, Roll1: 10 * time.Second, Roll2: 30 * time.Second,
				Pool: configs.Pool{IPv4: netip.MustParsePrefix("100.64.0.0/24"), IPv6: netip.MustParsePrefix("fd00:64::/64")}},
			{Name: "globex", ESP: transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 256},
				Pool: configs.Pool{IPv4: netip.MustParsePrefix("100.64.1.0/24")}},
		},
		BGP:      configs.HubBGP{RouterID: netip.MustParseAddr("192.0.2.1")},
		StateDir: t.TempDir(),
		Status:   configs.StatusConfig{Socket: filepath.Join(shortTempDir(t), "hub.sock")},
	}
	addCPE(cfg, "fqdn:cpe1.acme.example", "acme", "10.1.0.0/24")
	addCPE(cfg, "fqdn:cpe2.acme.example", "acme", "10.2.0.0/24")
	addCPE(cfg, "rfc822:cpe3@globex.example", "globex", "10.1.0.0/24")
	return cfg
}

// shortTempDir is a temporary directory with a short path, for Unix
// sockets (at most 107 octets).
func shortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "hub")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func addCPE(cfg *configs.Hub, id, group string, prefixes ...string) {
	c := configs.HubCPE{Identity: auth.MustParseID(id), Group: group, PSK: configs.NewSecret([]byte(testPSK(id)))}
	for _, p := range prefixes {
		c.Prefixes = append(c.Prefixes, netip.MustParsePrefix(p))
	}
	cfg.CPEs = append(cfg.CPEs, c)
}

func removeCPE(cfg *configs.Hub, id string) {
	for i, c := range cfg.CPEs {
		if c.Identity.String() == id {
			cfg.CPEs = append(cfg.CPEs[:i], cfg.CPEs[i+1:]...)
			return
		}
	}
	panic("no CPE " + id)
}

// copyConfig is a deep enough copy for reload tests (lists are copied).
func copyConfig(cfg *configs.Hub) *configs.Hub {
	c := *cfg
	c.Groups = append([]configs.Group(nil), cfg.Groups...)
	c.CPEs = append([]configs.HubCPE(nil), cfg.CPEs...)
	return &c
}

func checkConfig(t testing.TB, cfg *configs.Hub) *configs.Hub {
	t.Helper()
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	return cfg
}

// testHub is a running hub on loopback with an in-memory data plane.
type testHub struct {
	t    testing.TB
	h    *Hub
	cfg  *configs.Hub
	dp   *memory.Backend
	logs *logBuffer
	fc   *ops.FieldCheck
	ike  netip.AddrPort // port 500's stand-in
	natt netip.AddrPort
	done chan error
	once sync.Once
}

// startHub runs a hub without its route reflector (see startHubBGP).
func startHub(t testing.TB, cfg *configs.Hub, opts ...Option) *testHub {
	t.Helper()
	return startHubBGP(t, cfg, append([]Option{WithoutBGP()}, opts...)...)
}

// startHubBGP runs a hub with whatever opts say about BGP.
func startHubBGP(t testing.TB, cfg *configs.Hub, opts ...Option) *testHub {
	t.Helper()
	return startHubLogging(t, cfg, func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewTextHandler(w, o) }, opts...)
}

// startHubLogging runs a hub that logs through the handler newHandler
// builds (text or JSON) into th.logs.
func startHubLogging(t testing.TB, cfg *configs.Hub, newHandler func(io.Writer, *slog.HandlerOptions) slog.Handler, opts ...Option) *testHub {
	t.Helper()
	checkConfig(t, cfg)
	th := &testHub{t: t, cfg: cfg, dp: memory.New(), logs: &logBuffer{}, done: make(chan error, 1)}
	th.fc = ops.NewFieldCheck(newHandler(th.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]Option{
		WithDataplane(func(*routing.FIB, []netip.Prefix) (dataplane.Backend, error) { return th.dp, nil }),
		WithIKEPorts(0, 0),
		WithoutMetrics(),
		WithShutdownTimeout(500 * time.Millisecond),
	}, opts...)
	h, err := New(cfg, slog.New(th.fc), opts...)
	if err != nil {
		t.Fatal(err)
	}
	th.h = h
	a, n := h.IKEAddrs()
	if len(a) != 1 || len(n) != 1 {
		t.Fatalf("IKE sockets %v %v", a, n)
	}
	th.ike, th.natt = a[0], n[0]
	go func() { th.done <- h.Run(context.Background()) }()
	t.Cleanup(th.stop)
	return th
}

func (th *testHub) stop() {
	th.once.Do(func() {
		th.h.Close()
		select {
		case err := <-th.done:
			if err != nil {
				th.t.Errorf("Run: %v", err)
			}
		case <-time.After(waitOK):
			th.t.Error("Run did not return after Close")
		}
	})
}

// waitFor waits until cond holds, re-checking at every change of the hub.
func (th *testHub) waitFor(what string, cond func() bool) {
	th.t.Helper()
	deadline := time.After(waitOK)
	for {
		ch := th.h.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			th.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// pollFor waits for a condition no event announces, checking it every few
// milliseconds: an IKE SA the engine abandoned before it was established
// (ike emits no EventIKEDown for it, and the hub's Changed does not move),
// and the route reflector's counters in the hub's BGP view (sessions,
// routes, refused sessions, filtered routes: bgp/rr wakes only its own
// internal waiters, and the hub's Changed does not follow BGP). Wait on
// th.waitFor, a sink's Wait or testSpeaker.waitStats wherever they apply.
func pollFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitOK)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// testCPE is a CPE built from the same packages as mpsa-cpe: an IKE
// initiator with the MPSA Vendor ID and Sender-ID support, and an
// mpsa.Member that installs the group SA into an in-memory data plane.
type testCPE struct {
	t      testing.TB
	id     auth.ID
	m      *ike.Manager
	sa     *ike.SA
	member *mpsa.Member
	dp     *memory.Backend
	puts   chan error // result of each MPSA_PUT handled
	events chan ike.Event
}

type cpeOpts struct {
	psk      string
	local    *auth.Local
	hubPeer  *auth.Peer
	noVendor bool
	noSID    bool
}

func newCPE(t testing.TB, th *testHub, id string, o cpeOpts) *testCPE {
	t.Helper()
	c := &testCPE{t: t, id: auth.MustParseID(id), dp: memory.New(), puts: make(chan error, 64), events: make(chan ike.Event, 256)}
	member, err := mpsa.NewMember(mpsa.MemberConfig{Tunnel: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	c.member = member
	psk := o.psk
	if psk == "" {
		psk = testPSK(id)
	}
	local := auth.Local{ID: c.id, PSK: []byte(psk)}
	if o.local != nil {
		local = *o.local
	}
	hubPeer := &auth.Peer{PSK: []byte(psk)}
	if o.hubPeer != nil {
		hubPeer = o.hubPeer
	}
	pol := ike.Policy{
		Informational: func(sa *ike.SA, ns []*wire.Notify) {
			for _, n := range ops.MPSANotifies(ns) {
				if n.Type != mpsa.NotifyPut {
					continue
				}
				changed, err := c.member.Handle(n, time.Now())
				if changed {
					sas := c.member.SAs()
					if serr := c.dp.Set(&dataplane.State{SAs: sas}); serr != nil && err == nil {
						err = serr
					}
					mpsa.WipeSAs(sas)
				}
				c.puts <- err
			}
		},
	}
	if !o.noVendor {
		pol.VendorIDs = mpsa.VendorIDs()
	}
	if !o.noSID {
		pol.AuthNotifies = func(ike.PeerInfo, []*wire.Notify) []*wire.Notify {
			return ops.WireNotifies(mpsa.CPEAuthNotifies())
		}
	}
	m, err := ike.New(ike.Config{
		Local:    local,
		Peers:    auth.Static(auth.Rule{Pattern: auth.MustParsePattern(hubID.String()), Peer: hubPeer}),
		Policy:   pol,
		MOBIKE:   true,
		NATTPort: th.natt.Port(),
		Events:   func(ev ike.Event) { wipeEvent(ev); c.events <- ev },
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.m = m
	for _, natt := range []bool{false, true} {
		conn, err := ike.ListenUDP("udp4", netip.AddrPortFrom(loop4, 0))
		if err != nil {
			t.Fatal(err)
		}
		m.AddConn(conn, natt)
	}
	t.Cleanup(func() {
		m.Close()
		c.member.Close()
		c.dp.Close()
	})
	return c
}

func wipeEvent(ev ike.Event) {
	if ev.Child != nil {
		ev.Child.In.Wipe()
		ev.Child.Out.Wipe()
	}
}

// connect initiates the IKE SA (asking for an IPv4 overlay address and, with
// v6, an IPv6 one too).
func (c *testCPE) connect(th *testHub, v6 bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitOK)
	defer cancel()
	vips := []netip.Addr{netip.IPv4Unspecified()}
	ts := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	if v6 {
		vips = append(vips, netip.IPv6Unspecified())
		ts = append(ts, netip.MustParsePrefix("::/0"))
	}
	sa, err := c.m.Initiate(ctx, ike.Connection{Remote: []netip.AddrPort{th.ike}, RemoteID: hubID, VirtualIPs: vips,
		RemoteTS: ts})
	c.sa = sa
	return err
}

func (c *testCPE) mustConnect(th *testHub, v6 bool) {
	c.t.Helper()
	if err := c.connect(th, v6); err != nil {
		c.t.Fatalf("%v: connect: %v", c.id, err)
	}
}

// joinCPEs connects a CPE of each identity to th over IPv4 and waits until
// each has its group SA.
func joinCPEs(t testing.TB, th *testHub, ids ...string) []*testCPE {
	t.Helper()
	cpes := make([]*testCPE, 0, len(ids))
	for _, id := range ids {
		c := newCPE(t, th, id, cpeOpts{})
		c.mustConnect(th, false)
		if err := c.waitPut(); err != nil {
			t.Fatal(err)
		}
		cpes = append(cpes, c)
	}
	return cpes
}

// vip is the CPE's first overlay address, the source of its BGP session.
func (c *testCPE) vip() netip.AddrPort {
	return netip.AddrPortFrom(c.sa.Info().VIPs[0].Addr(), 0)
}

// waitPut waits for the next MPSA_PUT the CPE handled and returns its
// outcome.
func (c *testCPE) waitPut() error {
	c.t.Helper()
	select {
	case err := <-c.puts:
		return err
	case <-time.After(waitOK):
		c.t.Fatalf("%v: no MPSA_PUT", c.id)
		return nil
	}
}

// groupSA returns the SA the CPE sends on (its Member's outbound group SA).
func (c *testCPE) groupSA() (dataplane.SA, bool) { return c.dp.Outbound(1) }

// pki is a CA with a hub certificate, written to files for the hub's
// configuration, and a way to issue CPE certificates.
type pki struct {
	dir    string
	caKey  *ecdsa.PrivateKey
	ca     *x509.Certificate
	serial int64
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mpsa test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.serial = 1
	return p
}

// issue returns a key and certificate for an FQDN identity, valid from
// notBefore to notAfter.
func (p *pki) issue(t testing.TB, fqdn string, notBefore, notAfter time.Time) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: fqdn},
		DNSNames: []string{fqdn}, NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return key, c
}

// hubFiles writes the hub's certificate, key and the CA as PEM files and
// returns their paths.
func (p *pki) hubFiles(t testing.TB) configs.CertFiles {
	t.Helper()
	key, cert := p.issue(t, "hub.example.net", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	write := func(name, typ string, der []byte, mode os.FileMode) string {
		path := filepath.Join(p.dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return configs.CertFiles{
		Certificate: write("hub.crt", "CERTIFICATE", cert.Raw, 0o644),
		PrivateKey:  write("hub.key", "PRIVATE KEY", kder, 0o600),
		CA:          write("ca.crt", "CERTIFICATE", p.ca.Raw, 0o644),
	}
}

func (p *pki) pool(t testing.TB) *auth.CAPool {
	pool, err := auth.NewCAPool(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// checkGoroutines fails the test if goroutines started during it are still
// running once its cleanups ran (wireguard-go's goroutineLeakCheck). GoBGP
// v3's Serve loop cannot be ended (see bgp/rr): its idle goroutines do not
// count.
func checkGoroutines(t *testing.T) {
	before := countGoroutines()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, stacks := countGoroutinesStacks()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines before, %d after:\n%s", before, n, stacks)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func countGoroutines() int {
	n, _ := countGoroutinesStacks()
	return n
}

func countGoroutinesStacks() (int, string) {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	var keep []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "pkg/server.(*BgpServer).Serve(") {
			continue
		}
		n++
		keep = append(keep, g)
	}
	return n, strings.Join(keep, "\n\n")
}

func sameKeys(a, b dataplane.SA) bool {
	return a.Keys.SPI == b.Keys.SPI && a.Keys.Suite == b.Keys.Suite && bytes.Equal(a.Keys.EncKey, b.Keys.EncKey) &&
		bytes.Equal(a.Keys.IntegKey, b.Keys.IntegKey)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return v
}
