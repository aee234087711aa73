package ike

// Interoperability with strongSwan's charon (Debian 12: 5.9.8), the
// acceptance test of issue 2. Each test builds two network namespaces joined
// by a veth pair: charon in one (192.0.2.1, inner 10.99.1.1), our manager's
// UDP sockets in the other (192.0.2.2, inner 10.99.2.1). charon runs with
// kernel-libipsec (userspace ESP over TUN; this kernel has no ESP), which
// pretends a NAT so both sides float to 4500 and ESP is UDP-encapsulated.
// After each step the SAs we hold are compared with `swanctl --list-sas`.
// charon runs through internal/swantest.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/internal/swantest"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/transform"
)

const swanPSK = "interop-psk-0123456789"

var (
	swanAddr   = swantest.AddrR
	ourAddr    = swantest.AddrI
	swanInner  = swantest.InnerR
	ourInner   = swantest.InnerI
	interopCtx = swantest.Timeout
)

// interopSuite pairs a strongSwan proposal string with our suite.
type interopSuite struct {
	swan string
	our  suite.Suite
}

var (
	suiteCBC = interopSuite{"aes256-sha256-x25519", suite.Suite{Encr: transform.EncrAESCBC, KeyBits: 256,
		PRF: transform.PRFHMACSHA2256, Integ: transform.IntegHMACSHA256128, DH: transform.DHCurve25519}}
	suiteGCM = interopSuite{"aes128gcm16-prfsha256-ecp256", suite.Suite{Encr: transform.EncrAESGCM16, KeyBits: 128,
		PRF: transform.PRFHMACSHA2256, DH: transform.DHECP256}}
	suiteModp = interopSuite{"aes256-sha384-modp2048", suite.Suite{Encr: transform.EncrAESCBC, KeyBits: 256,
		PRF: transform.PRFHMACSHA2384, Integ: transform.IntegHMACSHA384192, DH: transform.DHMODP2048}}
)

// lab is the two namespaces: charon in R, our manager in I.
type lab struct {
	t *testing.T
	*swantest.Lab
}

func newLab(t *testing.T) *lab {
	t.Helper()
	swantest.Require(t)
	testenv.Short(t)
	return &lab{t: t, Lab: swantest.NewLab(t, "iks", "iko")}
}

// ours is our manager in the lab.
type ours struct {
	m      *Manager
	events chan Event
}

// manager starts our manager with sockets on 192.0.2.2:500 and :4500 in our
// namespace.
func (l *lab) manager(cfg Config) *ours {
	return l.managerOn(cfg, ourAddr)
}

// managerOn is manager with sockets bound to addr (the wildcard: sockets
// that serve every local address).
func (l *lab) managerOn(cfg Config, addr netip.Addr) *ours {
	l.t.Helper()
	o := &ours{events: make(chan Event, 256)}
	cfg.Events = func(ev Event) { o.events <- ev }
	cfg.Logger = testLogger(l.t, "ours")
	m, err := New(cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	var c500, c4500 *UDPConn
	err = l.I.Do(func() error {
		var err error
		if c500, err = ListenUDP("udp4", netip.AddrPortFrom(addr, 500)); err != nil {
			return err
		}
		c4500, err = ListenUDP("udp4", netip.AddrPortFrom(addr, 4500))
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	m.AddConn(c500, false)
	m.AddConn(c4500, true)
	l.t.Cleanup(m.Close)
	o.m = m
	return o
}

func (o *ours) event(t *testing.T, kind EventKind) Event {
	t.Helper()
	deadline := time.After(interopCtx)
	for {
		select {
		case ev := <-o.events:
			if ev.Kind == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %v event", kind)
		}
	}
}

// swanConf is what varies between charon configurations.
type swanConf struct {
	initiator bool
	ike       string // proposals
	esp       string
	psk       string
	vip       bool // initiator: ask for a virtual IP; responder: hand them out
	encap     bool
	certs     *pki // pubkey authentication instead of PSK
	rsa       bool // with certs: the RSA chain
	pss       bool // with rsa: charon signs with RSASSA-PSS (charon.rsa_pss)
}

func (c swanConf) swanctlConf() string {
	if c.esp == "" {
		c.esp = "aes256gcm16,aes128gcm16,aes256-sha256"
	}
	if c.psk == "" {
		c.psk = swanPSK
	}
	localID, remoteID := "hub.example.net", "%any"
	remote, lts, rts := "%any", swanInner.String(), "dynamic"
	name := "rw"
	if !c.vip {
		rts = ourInner.String()
	}
	if c.initiator {
		localID, remoteID, remote, rts, name = "cpe1.example.net", "hub.example.net", ourAddr.String(), ourInner.String(), "hub"
		if c.vip {
			lts = "dynamic"
		}
	}
	authLine := "auth = psk"
	localCert := ""
	if c.certs != nil {
		authLine = "auth = pubkey"
		localCert = "certs = swan.pem"
	}
	extra := ""
	if c.vip && !c.initiator {
		extra = "pools = vpool"
	}
	if c.vip && c.initiator {
		extra = "vips = 0.0.0.0"
	}
	if c.encap {
		extra += "\n\t\tencap = yes"
	}
	return fmt.Sprintf(`connections {
	%[1]s {
		version = 2
		local_addrs = %[2]s
		remote_addrs = %[3]s
		proposals = %[4]s
		unique = never
		rekey_time = 0
		%[5]s
		local {
			%[6]s
			id = %[7]s
			%[8]s
		}
		remote {
			%[6]s
			id = %[9]s
		}
		children {
			net {
				local_ts = %[10]s
				remote_ts = %[11]s
				esp_proposals = %[12]s
				mode = tunnel
				start_action = none
				rekey_time = 0
			}
		}
	}
}
pools {
	vpool {
		addrs = 10.99.100.0/24
	}
}
secrets {
	ike-lab {
		id-local = %[7]s
		secret = "%[13]s"
	}
}
`, name, swanAddr, remote, c.ike, extra, authLine, localID, localCert, remoteID, lts, rts, c.esp, c.psk)
}

// startSwan starts charon in the lab's charon namespace with c.
func (l *lab) startSwan(c swanConf) *swantest.Charon {
	t := l.t
	t.Helper()
	sc := swantest.Config{
		Name:    "charon",
		Swanctl: c.swanctlConf(),
		Charon: `retransmit_timeout = 1.0
	retransmit_tries = 3
	# drop rekeyed CHILD_SAs at once, so --list-sas shows the new state
	delete_rekeyed_delay = 0
	# small enough that certificate-bearing IKE_AUTH messages are
	# fragmented (RFC 7383) in both directions
	fragment_size = 576`,
		Log: map[string]int{"ike": 2, "enc": 1, "net": 1},
	}
	if c.pss {
		sc.Charon += "\n\t# sign with RSASSA-PSS (RFC 7427)\n\trsa_pss = yes"
	}
	if c.certs != nil {
		ch := c.certs.ecdsa
		if c.rsa {
			ch = c.certs.rsa
		}
		who := ch.hub
		if c.initiator {
			who = ch.cpe
		}
		der, err := x509.MarshalPKCS8PrivateKey(who.key)
		if err != nil {
			t.Fatal(err)
		}
		sc.Files = map[string][]byte{
			"x509ca/ca.pem":  pemCert(c.certs.ca),
			"x509/swan.pem":  pemCert(who.cert),
			"pkcs8/swan.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		}
	}
	return swantest.Start(t, l.R, sc)
}

// matchSwan checks that charon holds exactly one IKE SA, ESTABLISHED, with
// our SPIs, and CHILD_SAs that mirror ours (its in SPI is our out SPI) with
// the same traffic selectors and encapsulation.
func matchSwan(t *testing.T, s *swantest.Charon, sa *SA) {
	t.Helper()
	var why string
	deadline := time.Now().Add(interopCtx)
	for {
		why = swanMismatch(sa.Info(), s.ListSAs())
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("charon does not match our SAs: %s", why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// swanMismatch says how charon's SAs differ from ours ("" if they match).
func swanMismatch(info SAInfo, sas []swantest.SA) string {
	if len(sas) != 1 {
		return fmt.Sprintf("charon holds %d IKE SAs", len(sas))
	}
	got := sas[0]
	if got.Attrs["state"] != "ESTABLISHED" {
		return "charon's IKE SA is " + got.Attrs["state"]
	}
	if got.Attrs["initiator-spi"] != fmt.Sprintf("%016x", info.SPIi) || got.Attrs["responder-spi"] != fmt.Sprintf("%016x", info.SPIr) {
		return fmt.Sprintf("IKE SPIs: charon %s_i %s_r, ours %016x_i %016x_r", got.Attrs["initiator-spi"], got.Attrs["responder-spi"], info.SPIi, info.SPIr)
	}
	if len(got.Children) != len(info.Children) {
		return fmt.Sprintf("charon has %d CHILD_SAs, we %d", len(got.Children), len(info.Children))
	}
	for _, c := range info.Children {
		found := false
		for _, sc := range got.Children {
			if sc["spi-in"] != fmt.Sprintf("%08x", c.OutSPI) || sc["spi-out"] != fmt.Sprintf("%08x", c.InSPI) {
				continue
			}
			found = true
			switch {
			case sc["state"] != "INSTALLED":
				return "charon's CHILD_SA is " + sc["state"]
			case sc["local-ts"] != tsList(c.RemoteTS):
				return fmt.Sprintf("charon local-ts %s, our remote TS %s", sc["local-ts"], tsList(c.RemoteTS))
			case sc["remote-ts"] != tsList(c.LocalTS):
				return fmt.Sprintf("charon remote-ts %s, our local TS %s", sc["remote-ts"], tsList(c.LocalTS))
			case (sc["encap"] == "yes") != c.Encap:
				return fmt.Sprintf("charon encap=%s, ours %v", sc["encap"], c.Encap)
			}
		}
		if !found {
			return fmt.Sprintf("no charon CHILD_SA for ours %08x_i %08x_o: %v", c.InSPI, c.OutSPI, got.Children)
		}
	}
	return ""
}

func tsList(ss []wire.Selector) string {
	var ps []string
	for _, s := range ss {
		for _, p := range SelectorPrefixes(s) {
			ps = append(ps, p.String())
		}
	}
	return "[" + strings.Join(ps, " ") + "]"
}

func interopConfig(id auth.ID, su interopSuite) Config {
	cfg := Config{
		Local: auth.Local{ID: id, PSK: []byte(swanPSK)},
		Peers: auth.Static(auth.Rule{Pattern: auth.MustParsePattern("any"), Peer: &auth.Peer{PSK: []byte(swanPSK)}}),
	}
	cfg.Proposals = DefaultProposals()
	cfg.Proposals.IKE = []suite.Suite{su.our}
	return cfg
}

func tctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), interopCtx)
	t.Cleanup(cancel)
	return c
}

// TestInteropInitiator: our initiator against a charon responder.
func TestInteropInitiator(t *testing.T) {
	for _, su := range []interopSuite{suiteCBC, suiteGCM} {
		t.Run(su.swan, func(t *testing.T) {
			l := newLab(t)
			s := l.startSwan(swanConf{ike: su.swan, vip: true})
			o := l.manager(interopConfig(cpeID, su))
			sa, err := o.m.Initiate(tctx(t), Connection{
				Remote: []netip.AddrPort{netip.AddrPortFrom(swanAddr, 500)}, Local: netip.AddrPortFrom(ourAddr, 500),
				RemoteID: hubID, VirtualIPs: []netip.Addr{netip.IPv4Unspecified()}, RemoteTS: []netip.Prefix{swanInner},
			})
			if err != nil {
				t.Fatal(err)
			}
			info := sa.Info()
			if info.Suite != su.our || len(info.VIPs) != 1 || !strings.HasPrefix(info.VIPs[0].String(), "10.99.100.") {
				t.Fatalf("SA %+v", info)
			}
			if !info.Encap || !info.NATRemote {
				t.Fatalf("charon with libipsec fakes a NAT; we saw %+v", info)
			}
			matchSwan(t, s, sa)

			// Rekey the CHILD_SA and the IKE SA from our side, then
			// from charon's.
			o.rekeyOurs(t, s, sa)
			o.rekeySwan(t, s, sa, "rw")

			// A liveness check and a notify charon does not know.
			if err := sa.SendInformational(tctx(t), []*wire.Notify{{NotifyType: 40960, Data: []byte("mpsa")}}); err != nil {
				t.Fatal(err)
			}
			if err := sa.Close(tctx(t)); err != nil {
				t.Fatal(err)
			}
			s.WaitNoSA()
			if len(o.m.SAs()) != 0 {
				t.Fatal("we hold an SA after Close")
			}
		})
	}
}

// TestInteropResponder: a charon initiator against our responder.
func TestInteropResponder(t *testing.T) {
	for _, su := range []interopSuite{suiteCBC, suiteGCM} {
		t.Run(su.swan, func(t *testing.T) {
			l := newLab(t)
			pool := &vipPool{}
			cfg := interopConfig(hubID, su)
			cfg.LocalTS = []netip.Prefix{ourInner}
			cfg.Policy.AssignAddresses, cfg.Policy.ReleaseAddresses = pool.assign, pool.release
			o := l.manager(cfg)
			s := l.startSwan(swanConf{initiator: true, ike: su.swan, vip: true})
			s.MustSwanctl("--initiate", "--ike", "hub", "--child", "net")
			ev := o.event(t, EventIKEUp)
			sa := ev.SA
			o.event(t, EventChildUp)
			if sa.Info().Suite != su.our || !sa.Info().NATRemote {
				t.Fatalf("SA %+v", sa.Info())
			}
			matchSwan(t, s, sa)

			o.rekeySwan(t, s, sa, "hub")
			o.rekeyOurs(t, s, sa)
			o.terminateSwan(t, s, "hub")
			pool.mu.Lock()
			released := len(pool.released)
			pool.mu.Unlock()
			if released != 1 {
				t.Fatalf("virtual IP not released (%d)", released)
			}
		})
	}
}

// rekeyOurs rekeys the CHILD_SA and then the IKE SA from our side and
// checks charon's view after each.
func (o *ours) rekeyOurs(t *testing.T, s *swantest.Charon, sa *SA) {
	t.Helper()
	if err := sa.RekeyChild(tctx(t), firstChild(sa).InSPI); err != nil {
		t.Fatal(err)
	}
	o.event(t, EventChildDown)
	matchSwan(t, s, sa)
	if err := sa.RekeyIKE(tctx(t)); err != nil {
		t.Fatal(err)
	}
	o.event(t, EventIKERekeyed)
	matchSwan(t, s, sa)
}

// rekeySwan has charon rekey the CHILD_SA and then the IKE SA (its
// connection ike) and checks that we follow.
func (o *ours) rekeySwan(t *testing.T, s *swantest.Charon, sa *SA, ike string) {
	t.Helper()
	s.MustSwanctl("--rekey", "--child", "net")
	o.event(t, EventChildRekeyed)
	o.event(t, EventChildDown)
	matchSwan(t, s, sa)
	s.MustSwanctl("--rekey", "--ike", ike)
	o.event(t, EventIKERekeyed)
	matchSwan(t, s, sa)
}

// terminateSwan has charon delete the IKE SA (connection ike); ours goes
// down as deleted by the peer and charon holds nothing.
func (o *ours) terminateSwan(t *testing.T, s *swantest.Charon, ike string) {
	t.Helper()
	s.MustSwanctl("--terminate", "--ike", ike)
	if ev := o.event(t, EventIKEDown); !errors.Is(ev.Err, ErrDeleted) {
		t.Fatalf("down with %v", ev.Err)
	}
	s.WaitNoSA()
}

// TestInteropWrongPSK: AUTHENTICATION_FAILED and no SA on either side, in
// both directions.
func TestInteropWrongPSK(t *testing.T) {
	t.Run("our initiator", func(t *testing.T) {
		l := newLab(t)
		s := l.startSwan(swanConf{ike: suiteCBC.swan})
		cfg := interopConfig(cpeID, suiteCBC)
		cfg.Local.PSK = []byte("not-the-interop-psk-0123")
		o := l.manager(cfg)
		_, err := o.m.Initiate(tctx(t), Connection{Remote: []netip.AddrPort{netip.AddrPortFrom(swanAddr, 500)},
			RemoteID: hubID, RemoteTS: []netip.Prefix{swanInner}, LocalTS: []netip.Prefix{ourInner}})
		var pe *ProtocolError
		if !errors.Is(err, ErrAuthFailed) || !errors.As(err, &pe) || pe.Type != wire.NotifyAuthenticationFailed {
			t.Fatalf("Initiate: %v", err)
		}
		s.WaitNoSA()
		if len(o.m.SAs()) != 0 {
			t.Fatal("we hold an SA")
		}
	})
	t.Run("charon initiator", func(t *testing.T) {
		l := newLab(t)
		cfg := interopConfig(hubID, suiteCBC)
		cfg.LocalTS = []netip.Prefix{ourInner}
		cfg.RemoteTS = []netip.Prefix{swanInner}
		o := l.manager(cfg)
		s := l.startSwan(swanConf{initiator: true, ike: suiteCBC.swan, psk: "not-the-interop-psk-0123"})
		if _, err := s.Swanctl("--initiate", "--ike", "hub", "--child", "net"); err == nil {
			t.Fatal("charon established with a wrong PSK")
		}
		if !strings.Contains(s.Log(), "received AUTHENTICATION_FAILED notify error") {
			t.Fatal("charon did not get AUTHENTICATION_FAILED")
		}
		s.WaitNoSA()
		for _, h := range o.m.Handles() {
			<-h.Done()
		}
		if o.m.Stats().AuthFailures != 1 {
			t.Fatalf("stats %+v", o.m.Stats())
		}
	})
}

// TestInteropNoProposal: NO_PROPOSAL_CHOSEN in both directions.
func TestInteropNoProposal(t *testing.T) {
	t.Run("our initiator", func(t *testing.T) {
		l := newLab(t)
		s := l.startSwan(swanConf{ike: suiteCBC.swan})
		o := l.manager(interopConfig(cpeID, suiteGCM))
		_, err := o.m.Initiate(tctx(t), Connection{Remote: []netip.AddrPort{netip.AddrPortFrom(swanAddr, 500)}, RemoteID: hubID})
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Type != wire.NotifyNoProposalChosen {
			t.Fatalf("Initiate: %v", err)
		}
		s.WaitNoSA()
	})
	t.Run("charon initiator", func(t *testing.T) {
		l := newLab(t)
		o := l.manager(interopConfig(hubID, suiteGCM))
		s := l.startSwan(swanConf{initiator: true, ike: suiteCBC.swan})
		if _, err := s.Swanctl("--initiate", "--ike", "hub", "--child", "net"); err == nil {
			t.Fatal("charon established without a common proposal")
		}
		if !strings.Contains(s.Log(), "received NO_PROPOSAL_CHOSEN notify error") {
			t.Fatal("charon did not get NO_PROPOSAL_CHOSEN")
		}
		if st := o.m.Stats(); st.NoProposalSent != 1 || len(o.m.SAs()) != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestInteropForcedEncap: charon forcing UDP encapsulation (encap = yes)
// without virtual IPs is accepted, with a UDP-encapsulated CHILD_SA.
func TestInteropForcedEncap(t *testing.T) {
	l := newLab(t)
	cfg := interopConfig(hubID, suiteGCM)
	cfg.LocalTS = []netip.Prefix{ourInner}
	cfg.RemoteTS = []netip.Prefix{swanInner}
	o := l.manager(cfg)
	s := l.startSwan(swanConf{initiator: true, ike: suiteGCM.swan, encap: true})
	s.MustSwanctl("--initiate", "--ike", "hub", "--child", "net")
	sa := o.event(t, EventIKEUp).SA
	c := o.event(t, EventChildUp).Child
	if !c.Encap || c.Remote.Port() != 4500 || !sa.Info().NATRemote {
		t.Fatalf("CHILD_SA %+v", c)
	}
	matchSwan(t, s, sa)
	if err := sa.Close(tctx(t)); err != nil {
		t.Fatal(err)
	}
	s.WaitNoSA()
}

// pki is a CA with end-entity certificates for both sides, ECDSA P-256
// and RSA 2048.
type pki struct {
	ca         *x509.Certificate
	ecdsa, rsa chains
}

type chains struct{ hub, cpe leaf }

type leaf struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mpsa test CA", Organization: []string{"mpsa"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	serial := int64(2)
	issue := func(name string, key crypto.Signer) leaf {
		serial++
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name, Organization: []string{"mpsa"}},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{name},
			KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return leaf{cert: c, key: key}
	}
	ec := func() crypto.Signer {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rs := func() crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	return &pki{ca: ca,
		ecdsa: chains{hub: issue("hub.example.net", ec()), cpe: issue("cpe1.example.net", ec())},
		rsa:   chains{hub: issue("hub.example.net", rs()), cpe: issue("cpe1.example.net", rs())}}
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func certConfig(t *testing.T, p *pki, l leaf, id auth.ID, su interopSuite) Config {
	pool, err := auth.NewCAPool(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Local:      auth.Local{ID: id, Signer: l.key, Certs: []*x509.Certificate{l.cert}},
		Peers:      auth.Static(auth.Rule{Pattern: auth.MustParsePattern("any"), Peer: &auth.Peer{CAs: pool}}),
		CertReqCAs: pool,
		// Certificates make IKE_AUTH big: fragment ours (RFC 7383);
		// charon fragments its own above 1280 octets.
		Fragmentation: true,
		FragmentSize:  576,
	}
	cfg.Proposals = DefaultProposals()
	cfg.Proposals.IKE = []suite.Suite{su.our}
	return cfg
}

// TestInteropCertificates: RFC 7427 signature authentication with ECDSA and
// RSA certificates and aes256-sha384-modp2048, both directions: the IKE
// SA and its CHILD_SA match charon's, both are rekeyed from either side,
// and the IKE SA is deleted cleanly.
func TestInteropCertificates(t *testing.T) {
	p := newPKI(t)
	for _, v := range []struct {
		name     string
		rsa, pss bool // the RSA chain; both sides sign with RSASSA-PSS
	}{{"ECDSA", false, false}, {"RSA", true, false}, {"RSA-PSS", true, true}} {
		ch, rsaKeys, name := p.ecdsa, v.rsa, v.name
		if rsaKeys {
			ch = p.rsa
		}
		t.Run(name+"/our initiator", func(t *testing.T) {
			l := newLab(t)
			s := l.startSwan(swanConf{ike: suiteModp.swan, certs: p, rsa: rsaKeys, pss: v.pss})
			cfg := certConfig(t, p, ch.cpe, cpeID, suiteModp)
			cfg.Local.RSAPSS = v.pss
			o := l.manager(cfg)
			sa, err := o.m.Initiate(tctx(t), Connection{Remote: []netip.AddrPort{netip.AddrPortFrom(swanAddr, 500)},
				RemoteID: hubID, RemoteTS: []netip.Prefix{swanInner}, LocalTS: []netip.Prefix{ourInner}})
			if err != nil {
				t.Fatal(err)
			}
			matchSwan(t, s, sa)
			if !strings.Contains(s.Log(), "authentication of 'cpe1.example.net' with") {
				t.Fatal("charon did not log our signature authentication")
			}
			if v.pss != strings.Contains(s.Log(), "authentication of 'cpe1.example.net' with RSA_EMSA_PSS") {
				t.Fatalf("charon did not see RSASSA-PSS = %v from us", v.pss)
			}
			if !sa.Info().Fragmentation || !strings.Contains(s.Log(), "received fragment #1") ||
				!strings.Contains(s.Log(), "splitting IKE message") {
				t.Fatal("IKE_AUTH was not fragmented both ways")
			}
			o.rekeyOurs(t, s, sa)
			o.rekeySwan(t, s, sa, "rw")
			if err := sa.Close(tctx(t)); err != nil {
				t.Fatal(err)
			}
			s.WaitNoSA()
		})
		t.Run(name+"/charon initiator", func(t *testing.T) {
			l := newLab(t)
			cfg := certConfig(t, p, ch.hub, hubID, suiteModp)
			cfg.Local.RSAPSS = v.pss
			cfg.LocalTS = []netip.Prefix{ourInner}
			cfg.RemoteTS = []netip.Prefix{swanInner}
			o := l.manager(cfg)
			s := l.startSwan(swanConf{initiator: true, ike: suiteModp.swan, certs: p, rsa: rsaKeys, pss: v.pss})
			s.MustSwanctl("--initiate", "--ike", "hub", "--child", "net")
			sa := o.event(t, EventIKEUp).SA
			matchSwan(t, s, sa)
			if sa.Info().Suite != suiteModp.our {
				t.Fatalf("suite %v", sa.Info().Suite)
			}
			if v.pss != strings.Contains(s.Log(), "authentication of 'cpe1.example.net' (myself) with RSA_EMSA_PSS") {
				t.Fatalf("charon did not sign with RSASSA-PSS = %v", v.pss)
			}
			o.rekeySwan(t, s, sa, "hub")
			o.rekeyOurs(t, s, sa)
			o.terminateSwan(t, s, "hub")
		})
	}
}

// TestInteropWildcardInitiator: our initiator on wildcard sockets (no
// Connection.Local) learns its address by route lookup and from packet
// info, so neither side claims a NAT that is not there: charon does not
// see us behind one (RFC 7296 §2.23). charon itself fakes one (libipsec
// forces UDP encapsulation), which we must see.
func TestInteropWildcardInitiator(t *testing.T) {
	l := newLab(t)
	s := l.startSwan(swanConf{ike: suiteCBC.swan, vip: true})
	o := l.managerOn(interopConfig(cpeID, suiteCBC), netip.IPv4Unspecified())
	sa, err := o.m.Initiate(tctx(t), Connection{
		Remote:   []netip.AddrPort{netip.AddrPortFrom(swanAddr, 500)},
		RemoteID: hubID, VirtualIPs: []netip.Addr{netip.IPv4Unspecified()}, RemoteTS: []netip.Prefix{swanInner},
	})
	if err != nil {
		t.Fatal(err)
	}
	info := sa.Info()
	if info.NATLocal || !info.NATRemote || info.Local != netip.AddrPortFrom(ourAddr, 4500) {
		t.Fatalf("our view: NAT here %v, NAT there %v, local %v", info.NATLocal, info.NATRemote, info.Local)
	}
	matchSwan(t, s, sa)
	if a := s.ListSAs()[0].Attrs; a["nat-remote"] == "yes" || a["nat-local"] == "yes" || a["remote-host"] != ourAddr.String() {
		t.Fatalf("charon sees a NAT: %v", a)
	}
	if err := sa.Close(tctx(t)); err != nil {
		t.Fatal(err)
	}
	s.WaitNoSA()
}
