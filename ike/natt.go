package ike

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"io"
	"net/netip"

	"github.com/mpsa-vpn/mpsa/ike/wire"
)

// natHash is the NAT_DETECTION_*_IP data (RFC 7296 §2.23):
// SHA-1(SPIi | SPIr | IP | Port).
func natHash(spiI, spiR uint64, ap netip.AddrPort) []byte {
	h := sha1.New()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], spiI)
	binary.BigEndian.PutUint64(b[8:], spiR)
	h.Write(b[:])
	h.Write(ap.Addr().Unmap().AsSlice())
	binary.BigEndian.PutUint16(b[:2], ap.Port())
	h.Write(b[:2])
	return h.Sum(nil)
}

// known reports whether a is an address of this host that we know: valid
// and not the wildcard a socket bound to all addresses reports.
func known(a netip.Addr) bool { return a.IsValid() && !a.IsUnspecified() }

// natdNotifies returns NAT_DETECTION_SOURCE_IP for our address src and
// NAT_DETECTION_DESTINATION_IP for the peer's dst. forceEncap replaces the
// source hash by random octets, so the peer believes we are behind a NAT.
// When src is not known (a wildcard socket that cannot look up its source
// address) there is no NAT_DETECTION_SOURCE_IP: RFC 7296 §2.23 wants the
// hash of the real address, and a hash of the wildcard would tell the peer
// we are behind a NAT when we may not be. The peer then cannot detect a
// NAT in front of us; it still learns about its own side from ours.
func natdNotifies(spiI, spiR uint64, src, dst netip.AddrPort, forceEncap bool, r io.Reader) []wire.Payload {
	var ps []wire.Payload
	if known(src.Addr()) || forceEncap {
		s := natHash(spiI, spiR, src)
		if forceEncap {
			_, _ = io.ReadFull(r, s)
		}
		ps = append(ps, &wire.Notify{NotifyType: wire.NotifyNATDetectionSourceIP, Data: s})
	}
	return append(ps, &wire.Notify{NotifyType: wire.NotifyNATDetectionDestinationIP, Data: natHash(spiI, spiR, dst)})
}

// checkNATD compares the peer's NAT-D notifies with the addresses of the
// datagram (src: the peer as we see it, dst: us as we were reached).
// present is false when the peer sent none. With dst unknown (not known),
// natLocal is false: we do not claim a NAT we cannot see.
func checkNATD(ps []wire.Payload, spiI, spiR uint64, src, dst netip.AddrPort) (natRemote, natLocal, present bool) {
	srcHash := natHash(spiI, spiR, src)
	dstHash := natHash(spiI, spiR, dst)
	sawSrc, sawDst := false, false
	natRemote, natLocal = true, true
	for _, p := range ps {
		n, ok := p.(*wire.Notify)
		if !ok {
			continue
		}
		switch n.NotifyType {
		case wire.NotifyNATDetectionSourceIP:
			sawSrc = true
			if bytes.Equal(n.Data, srcHash) {
				natRemote = false
			}
		case wire.NotifyNATDetectionDestinationIP:
			sawDst = true
			if bytes.Equal(n.Data, dstHash) {
				natLocal = false
			}
		}
	}
	if !sawSrc {
		natRemote = false
	}
	if !sawDst || !known(dst.Addr()) {
		natLocal = false
	}
	return natRemote, natLocal, sawSrc || sawDst
}

// localOf is our address as datagram p reached it: p.dst when the socket
// told, else the SA's local address (with p's port) when that is known,
// else unknown (the zero AddrPort).
func (h *SA) localOf(p *packet) netip.AddrPort {
	if known(p.dst.Addr()) {
		return p.dst
	}
	if known(h.local.Addr()) {
		return netip.AddrPortFrom(h.local.Addr(), p.dst.Port())
	}
	return netip.AddrPort{}
}

// lookupLocal completes h.local before the SA has a datagram that tells
// it: the socket's port when the port is missing, and, when the address is
// unknown, the socket's address or, on a wildcard socket, the source
// address the kernel would choose to reach the peer (SourceAddrConn).
func (h *SA) lookupLocal() {
	if known(h.local.Addr()) && h.local.Port() != 0 {
		return
	}
	mc := h.m.pickConn(h.natt, h.local, h.remote)
	if mc == nil {
		return
	}
	la := mc.c.LocalAddr()
	port := h.local.Port()
	if port == 0 {
		port = la.Port()
	}
	a := h.local.Addr()
	switch {
	case known(a):
	case known(la.Addr()):
		a = la.Addr()
	default:
		if sc, ok := mc.c.(SourceAddrConn); ok {
			s, err := sc.SourceAddr(h.remote)
			if err == nil && known(s) {
				a = s
			} else {
				h.log.Debug("local address unknown", "peer", h.remote, "err", err)
			}
		}
	}
	h.local = netip.AddrPortFrom(a, port)
}

// natdLocal is our address for NAT_DETECTION_SOURCE_IP before a datagram
// of the SA told it: see lookupLocal. The zero AddrPort means unknown.
func (h *SA) natdLocal() netip.AddrPort {
	h.lookupLocal()
	if known(h.local.Addr()) {
		return h.local
	}
	return netip.AddrPort{}
}

// notePath follows address changes seen in an authenticated message (RFC
// 7296 §2.23, RFC 3948): a float to the NAT-T port always; a new peer
// address when the peer is behind a NAT and MOBIKE is not in use (with MOBIKE
// only UPDATE_SA_ADDRESSES moves the SA, force=true). It reports whether
// anything changed (and then emits EventIKEAddressChanged).
func (h *SA) notePath(p *packet, force bool) bool {
	changed := false
	if p.natt && !h.natt {
		h.natt = true
		changed = true
	}
	if p.src != h.remote && (force || changed || (!h.mobike && h.natRemote)) {
		h.remote = p.src
		changed = true
	}
	// A socket that cannot tell the destination leaves the address as it
	// was; the port is the socket's.
	dst := h.localOf(p)
	if !dst.IsValid() {
		dst = netip.AddrPortFrom(h.local.Addr(), p.dst.Port())
	}
	if h.local != dst && (changed || force || !known(h.local.Addr())) {
		h.local = dst
		changed = true
	}
	if changed && !h.established.IsZero() {
		h.log.Info("IKE SA addresses changed", "local", h.local, "peer", h.remote)
		h.emit(EventIKEAddressChanged, nil, nil)
	}
	return changed
}

// float moves an initiator to the NAT-T port (RFC 7296 §2.23): the peer's
// port becomes Config.NATTPort, ours the NAT-T socket's.
func (h *SA) float() {
	if h.natt {
		return
	}
	h.natt = true
	if h.remote.Port() != h.m.cfg.NATTPort {
		h.remote = netip.AddrPortFrom(h.remote.Addr(), h.m.cfg.NATTPort)
	}
	if mc := h.m.pickConn(true, h.local, h.remote); mc != nil {
		h.local = netip.AddrPortFrom(h.local.Addr(), mc.c.LocalAddr().Port())
	}
}

// encap reports whether ESP of this SA is UDP-encapsulated.
func (h *SA) encap() bool {
	return h.natLocal || h.natRemote || h.m.cfg.ForceEncap
}
