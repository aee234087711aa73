package dataplane

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/routing"
	"github.com/mpsa-vpn/mpsa/transform"
)

var cbcSHA256 = transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128}

func testSA(spi uint32, dir Direction, tunnel uint32) SA {
	return SA{
		Keys: esp.Keys{SPI: spi, Suite: cbcSHA256,
			EncKey: bytes.Repeat([]byte{1}, 16), IntegKey: bytes.Repeat([]byte{2}, 32)},
		Dir:    dir,
		Tunnel: routing.Tunnel(tunnel),
	}
}

func TestStateValidate(t *testing.T) {
	peer := netip.MustParseAddrPort("192.0.2.1:4500")
	peer2 := netip.MustParseAddrPort("192.0.2.2:4500")
	with := func(sa SA, f func(*SA)) SA { f(&sa); return sa }
	tests := []struct {
		name string
		sas  []SA
		want string // substring of the error; "" means valid
	}{
		{"empty", nil, ""},
		{"group both", []SA{testSA(0x1001, Both, 1)}, ""},
		{"rollover", []SA{testSA(0x1001, In, 1), testSA(0x1002, Both, 1)}, ""},
		{"child pair", []SA{
			with(testSA(0x2001, In, 2), func(s *SA) { s.Peer = peer }),
			with(testSA(0x2002, Out, 2), func(s *SA) { s.Peer = peer }),
		}, ""},
		{"same out SPI to two peers", []SA{
			with(testSA(0x2002, Out, 2), func(s *SA) { s.Peer = peer }),
			with(testSA(0x2002, Out, 3), func(s *SA) { s.Peer = peer2 }),
		}, ""},
		{"short key", []SA{with(testSA(0x1001, Both, 1), func(s *SA) { s.Keys.EncKey = s.Keys.EncKey[:8] })}, "encryption key"},
		{"reserved SPI", []SA{testSA(0xff, Both, 1)}, "reserved"},
		{"no direction", []SA{testSA(0x1001, 0, 1)}, "direction"},
		{"bad direction", []SA{testSA(0x1001, 4, 1)}, "direction"},
		{"out without tunnel", []SA{testSA(0x1001, Out, 0)}, "without a tunnel"},
		{"in without tunnel", []SA{testSA(0x1001, In, 0)}, ""},
		{"unspecified peer", []SA{with(testSA(0x1001, Out, 1), func(s *SA) { s.Peer = netip.MustParseAddrPort("0.0.0.0:4500") })}, "peer"},
		{"mixed families", []SA{with(testSA(0x1001, Out, 1), func(s *SA) {
			s.Peer = peer
			s.Local = netip.MustParseAddr("2001:db8::1")
		})}, "different families"},
		{"unmasked selector", []SA{with(testSA(0x1001, Both, 1), func(s *SA) {
			s.RemoteSelectors = []netip.Prefix{netip.MustParsePrefix("10.1.2.3/16")}
		})}, "masked"},
		{"negative window", []SA{with(testSA(0x1001, Both, 1), func(s *SA) { s.ReplayWindow = -1 })}, "replay"},
		{"sender bits", []SA{with(testSA(0x1001, Both, 1), func(s *SA) { s.SenderIDBits = 33 })}, "at most 32"},
		{"sender id too big", []SA{with(testSA(0x1001, Both, 1), func(s *SA) { s.SenderIDBits = 4; s.SenderID = 16 })}, "does not fit"},
		{"sender id fits", []SA{with(testSA(0x1001, Both, 1), func(s *SA) { s.SenderIDBits = 32; s.SenderID = 1<<32 - 1 })}, ""},
		{"inbound twice", []SA{testSA(0x1001, Both, 1), testSA(0x1001, In, 2)}, "inbound twice"},
		{"tunnel twice", []SA{testSA(0x1001, Both, 1), testSA(0x1002, Out, 1)}, "served outbound by both"},
		{"group out SPI twice", []SA{testSA(0x1001, Out, 1), testSA(0x1001, Out, 2)}, "outbound twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&State{SAs: tt.sas}).Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate accepted, want error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate: %v, want error containing %q", err, tt.want)
			}
		})
	}
}
