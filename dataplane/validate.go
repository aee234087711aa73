package dataplane

import (
	"fmt"
	"net/netip"

	"github.com/mpsa-vpn/mpsa/routing"
)

// Validate checks one SA as every backend needs it: keys that fit the
// suite, a direction, a tunnel for an outbound SA, valid addresses and
// selectors, and a Sender-ID that fits its bits. Errors name the SPI, never
// key material.
func (sa *SA) Validate() error {
	if err := sa.Keys.Validate(); err != nil {
		return fmt.Errorf("dataplane: %w", err)
	}
	spi := sa.Keys.SPI
	if sa.Dir == 0 || sa.Dir&^Both != 0 {
		return fmt.Errorf("dataplane: SA %08x: direction %d is not In, Out or Both", spi, sa.Dir)
	}
	if sa.Dir&Out != 0 && sa.Tunnel == 0 {
		return fmt.Errorf("dataplane: SA %08x: outbound SA without a tunnel", spi)
	}
	if sa.Peer.IsValid() && (!sa.Peer.Addr().IsValid() || sa.Peer.Addr().Is4In6() || sa.Peer.Addr().IsUnspecified()) {
		return fmt.Errorf("dataplane: SA %08x: peer %v is not a usable address", spi, sa.Peer)
	}
	if sa.Local.IsValid() && (sa.Local.Is4In6() || sa.Local.IsUnspecified()) {
		return fmt.Errorf("dataplane: SA %08x: local address %v is not usable", spi, sa.Local)
	}
	if sa.Peer.IsValid() && sa.Local.IsValid() && sa.Peer.Addr().Is4() != sa.Local.Is4() {
		return fmt.Errorf("dataplane: SA %08x: peer %v and local %v are of different families", spi, sa.Peer, sa.Local)
	}
	for _, sel := range [][]netip.Prefix{sa.RemoteSelectors, sa.LocalSelectors} {
		for _, p := range sel {
			if !p.IsValid() || p != p.Masked() {
				return fmt.Errorf("dataplane: SA %08x: selector %v is not a masked prefix", spi, p)
			}
		}
	}
	if sa.ReplayWindow < 0 {
		return fmt.Errorf("dataplane: SA %08x: negative replay window", spi)
	}
	if sa.SenderIDBits > 32 {
		return fmt.Errorf("dataplane: SA %08x: %d Sender-ID bits, at most 32", spi, sa.SenderIDBits)
	}
	if sa.SenderIDBits < 32 && sa.SenderID>>sa.SenderIDBits != 0 {
		return fmt.Errorf("dataplane: SA %08x: Sender-ID %d does not fit %d bits", spi, sa.SenderID, sa.SenderIDBits)
	}
	return nil
}

// Validate checks every SA and the rules between them: an inbound SPI is
// installed once, a tunnel has at most one outbound SA, and two outbound SAs
// share an SPI only when they go to different fixed peers (each receiver
// picks its own SPIs, so two peers may pick the same one).
func (s *State) Validate() error {
	inbound := make(map[uint32]bool, len(s.SAs))
	outTunnel := make(map[routing.Tunnel]uint32, len(s.SAs))
	type outID struct {
		spi  uint32
		peer netip.Addr
	}
	outbound := make(map[outID]bool, len(s.SAs))
	for i := range s.SAs {
		sa := &s.SAs[i]
		if err := sa.Validate(); err != nil {
			return err
		}
		spi := sa.Keys.SPI
		if sa.Dir&In != 0 {
			if inbound[spi] {
				return fmt.Errorf("dataplane: SA %08x installed inbound twice", spi)
			}
			inbound[spi] = true
		}
		if sa.Dir&Out != 0 {
			if other, dup := outTunnel[sa.Tunnel]; dup {
				return fmt.Errorf("dataplane: tunnel %d served outbound by both SA %08x and SA %08x", sa.Tunnel, other, spi)
			}
			outTunnel[sa.Tunnel] = spi
			id := outID{spi, sa.Peer.Addr()}
			if outbound[id] {
				return fmt.Errorf("dataplane: SA %08x installed outbound twice to the same peer", spi)
			}
			outbound[id] = true
		}
	}
	return nil
}
