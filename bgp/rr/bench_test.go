package rr

import (
	"net/netip"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/mpsa-vpn/mpsa/bgp/tunnelencap"
)

// gobgpTunnelAttr is the Tunnel Encapsulation attribute in GoBGP's own
// types, as rr built it before tunnelAttr (the anchor of
// BenchmarkPathAttrs).
func gobgpTunnelAttr(ep netip.AddrPort) bgp.PathAttributeInterface {
	subs := []bgp.TunnelEncapSubTLVInterface{bgp.NewTunnelEncapSubTLVEgressEndpoint(ep.Addr().String())}
	if ep.Port() != 0 {
		subs = append(subs, bgp.NewTunnelEncapSubTLVUDPDestPort(ep.Port()))
	}
	return bgp.NewPathAttributeTunnelEncap([]*bgp.TunnelEncapTLV{
		bgp.NewTunnelEncapTLV(bgp.TunnelType(tunnelencap.TunnelType), subs)})
}

// BenchmarkPathAttrs is the per-path work of a re-originated CPE route
// around its Tunnel Encapsulation attribute: build the attributes, convert
// them for the API (apiutil.NewPath, as originateLocked does), back to
// GoBGP's types (as AddPath does) and serialize them for one peer.
// "gobgp-types" is the attribute in GoBGP's types (the anchor),
// "unknown-type" the octets tunnelAttr hands over.
func BenchmarkPathAttrs(b *testing.B) {
	ep := netip.MustParseAddrPort("198.51.100.7:4500")
	nlri := codecPrefix(netip.MustParsePrefix("10.1.0.0/24"))
	for _, bc := range []struct {
		name  string
		encap func() bgp.PathAttributeInterface
	}{
		{"gobgp-types", func() bgp.PathAttributeInterface { return gobgpTunnelAttr(ep) }},
		{"unknown-type", func() bgp.PathAttributeInterface { a, _ := tunnelAttr(ep); return a }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeAsPath(nil),
					bgp.NewPathAttributeNextHop("198.51.100.7"), bgp.NewPathAttributeLocalPref(100),
					bgp.NewPathAttributeOriginatorId("10.0.0.2"), bc.encap()}
				p, err := apiutil.NewPath(nlri, false, attrs, time.Time{})
				if err != nil {
					b.Fatal(err)
				}
				native, err := apiutil.GetNativePathAttributes(p)
				if err != nil {
					b.Fatal(err)
				}
				for _, a := range native {
					if _, err := a.Serialize(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
