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

// natdNotifies returns NAT_DETECTION_SOURCE_IP for our address src and
// NAT_DETECTION_DESTINATION_IP for the peer's dst. forceEncap replaces the
// source hash by random octets, so the peer believes we are behind a NAT.
func natdNotifies(spiI, spiR uint64, src, dst netip.AddrPort, forceEncap bool, r io.Reader) []wire.Payload {
	s := natHash(spiI, spiR, src)
	if forceEncap {
		_, _ = io.ReadFull(r, s)
	}
	return []wire.Payload{
		&wire.Notify{NotifyType: wire.NotifyNATDetectionSourceIP, Data: s},
		&wire.Notify{NotifyType: wire.NotifyNATDetectionDestinationIP, Data: natHash(spiI, spiR, dst)},
	}
}

// checkNATD compares the peer's NAT-D notifies with the addresses of the
// datagram (src: the peer as we see it, dst: us as we were reached).
// present is false when the peer sent none.
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
	if !sawDst {
		natLocal = false
	}
	return natRemote, natLocal, sawSrc || sawDst
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
	if p.dst.Addr().IsValid() && h.local != p.dst && (changed || force || !h.local.Addr().IsValid() || h.local.Addr().IsUnspecified()) {
		h.local = p.dst
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
