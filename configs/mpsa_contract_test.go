package configs_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/mpsa"
)

// groupConfig is how the hub daemon hands a configured group to mpsa.
func groupConfig(g configs.Group) mpsa.GroupConfig {
	return mpsa.GroupConfig{Name: g.Name, Suite: g.ESP, PRF: g.PRF, SenderIDBits: g.SenderIDBits,
		Lifetime: g.Lifetime, RekeyMargin: g.RekeyMargin, Roll1: g.Roll1, Roll2: g.Roll2}
}

// Every group that configs accepts, mpsa accepts too: a configuration that
// passes `-test` never fails when the hub starts its key server.
func TestGroupsSatisfyMPSA(t *testing.T) {
	base := configs.Group{Name: "acme"}
	groups := []configs.Group{base}
	for _, esp := range configs.ESPNames() {
		for _, prf := range configs.PRFNames() {
			g := base
			g.ESP, _ = configs.ParseESP(esp)
			g.PRF, _ = configs.ParsePRF(prf)
			groups = append(groups, g)
		}
	}
	// The tightest timings validation allows.
	groups = append(groups,
		configs.Group{Name: "tight", Lifetime: configs.MinLifetime, RekeyMargin: 30 * time.Second, Roll1: time.Second, Roll2: 29 * time.Second},
		configs.Group{Name: "long", Lifetime: configs.MaxLifetime, RekeyMargin: configs.MaxLifetime / 2, Roll1: time.Hour, Roll2: 2 * time.Hour},
		configs.Group{Name: "ids", ESP: configs.DefaultESP, SenderIDBits: configs.MinSenderIDBits},
		configs.Group{Name: "ids32", SenderIDBits: configs.MaxSenderIDBits},
	)
	for _, g := range groups {
		h := configs.Hub{Identity: configs.Identity{}, Groups: []configs.Group{g}}
		h.Identity, _ = configs.ParseIdentity("fqdn:hub.example.net")
		h.Groups[0].Pool.IPv4 = mustPrefix("100.64.0.0/24")
		h.BGP.RouterID = mustAddr("192.0.2.1")
		h.SetDefaults()
		if err := h.Validate(); err != nil {
			t.Fatalf("%s: configs refuses: %v", g.Name, err)
		}
		mc := groupConfig(h.Groups[0]).WithDefaults()
		if err := mc.Validate(); err != nil {
			t.Errorf("%s (%s): configs accepts what mpsa refuses: %v", g.Name, configs.ESPName(h.Groups[0].ESP), err)
		}
		if mc.Lifetime != h.Groups[0].Lifetime || mc.Roll2 != h.Groups[0].Roll2 || mc.SenderIDBits != h.Groups[0].SenderIDBits {
			t.Errorf("%s: defaults differ between configs and mpsa", g.Name)
		}
	}
	// Both packages default a group the same way.
	if configs.DefaultLifetime != mpsa.DefaultLifetime || configs.DefaultRekeyMargin != mpsa.DefaultRekeyMargin ||
		configs.DefaultRoll1 != mpsa.DefaultRoll1 || configs.DefaultRoll2 != mpsa.DefaultRoll2 ||
		configs.DefaultESP != mpsa.DefaultSuite || configs.DefaultPRF != mpsa.DefaultPRF || configs.DefaultSenderIDBits != mpsa.DefaultSenderIDBits {
		t.Error("group defaults differ between configs and mpsa")
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
