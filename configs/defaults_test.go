package configs

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/mpsa-vpn/mpsa/transform"
)

func TestHubDefaults(t *testing.T) {
	h, _, err := BuildHub(hubTree(), Source{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(h.IKE.Listen, DefaultIKEListen) || h.IKE.Port != 500 || h.IKE.NATTPort != 4500 {
		t.Errorf("ike: %+v", h.IKE)
	}
	g := h.Groups[0]
	if g.ESP != DefaultESP || g.ESP != (transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128}) {
		t.Errorf("esp %v", g.ESP)
	}
	if g.PRF != transform.PRFHMACSHA2256 {
		t.Errorf("prf %v", g.PRF)
	}
	if g.SenderIDBits != 0 || h.Groups[1].SenderIDBits != DefaultSenderIDBits {
		t.Errorf("sender id bits: cbc %d, gcm %d", g.SenderIDBits, h.Groups[1].SenderIDBits)
	}
	if g.Lifetime != DefaultLifetime || g.RekeyMargin != DefaultRekeyMargin || g.Roll1 != DefaultRoll1 || g.Roll2 != DefaultRoll2 {
		t.Errorf("times %v %v %v %v", g.Lifetime, g.RekeyMargin, g.Roll1, g.Roll2)
	}
	if g.BGP.MaxPrefixes != DefaultMaxPrefixes || g.BGP.LocalPref != DefaultLocalPref || g.BGP.AcceptMoreSpecifics {
		t.Errorf("group bgp %+v", g.BGP)
	}
	if got := g.Pool.HubAddrs(); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("fd00:64::1")}) {
		t.Errorf("hub addresses %v", got)
	}
	if h.CPEs[0].Auth != AuthPSK {
		t.Errorf("auth %q", h.CPEs[0].Auth)
	}
	if h.BGP.ASN != DefaultASN || h.BGP.ClusterID != h.BGP.RouterID || h.BGP.GRPCListen.String() != DefaultGRPCListen {
		t.Errorf("bgp %+v", h.BGP)
	}
	if h.Dataplane.Backend != BackendAuto || h.Dataplane.TUN.Name != DefaultTUNName || h.Dataplane.TUN.MTU != DefaultTUNMTU {
		t.Errorf("dataplane %+v", h.Dataplane)
	}
	if h.StateDir != DefaultStateDir || h.Status.Socket != DefaultHubStatusPath || h.Log.Level != LogInfo || h.Log.Format != LogText {
		t.Errorf("misc %q %q %+v", h.StateDir, h.Status.Socket, h.Log)
	}
	if h.Metrics.Listen.IsValid() {
		t.Errorf("metrics on by default: %v", h.Metrics.Listen)
	}
	if h.Group("globex") != &h.Groups[1] || h.Group("nope") != nil {
		t.Error("Group lookup")
	}
	if c := h.CPE(MustParseIdentityForTest("fqdn:CPE2.acme.example")); c == nil || c.Group != "acme" {
		t.Error("CPE lookup is not case-insensitive for FQDNs")
	}
}

func TestCPEDefaults(t *testing.T) {
	c, _, err := BuildCPE(cpeTree(), Source{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Hubs[0] != netip.MustParseAddrPort("192.0.2.1:500") {
		t.Errorf("hub port default: %v", c.Hubs)
	}
	if c.WAN.Encapsulation != EncapAuto || c.BGP.ASN != DefaultASN || c.BGP.RouterID.IsValid() {
		t.Errorf("wan %+v bgp %+v", c.WAN, c.BGP)
	}
	if c.Reconnect.Min != DefaultReconnectMin || c.Reconnect.Max != DefaultReconnectMax {
		t.Errorf("reconnect %+v", c.Reconnect)
	}
	if c.Status.Socket != DefaultCPEStatusPath || !c.Credentials.UsesPSK() {
		t.Errorf("status %q", c.Status.Socket)
	}
	// Code-built configurations get the same defaults and validation.
	var d CPE
	d.Hubs = []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::1]:0")}
	d.Identity = MustParseIdentityForTest("ipv4:192.0.2.7")
	d.Credentials.PSK = NewSecret([]byte("0123456789abcdef"))
	d.LAN.Prefixes = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}
	d.SetDefaults()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Hubs[0].Port() != DefaultIKEPort {
		t.Errorf("hub %v", d.Hubs[0])
	}
}

func MustParseIdentityForTest(s string) Identity {
	id, err := ParseIdentity(s)
	if err != nil {
		panic(err)
	}
	return id
}
