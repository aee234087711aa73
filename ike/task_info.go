package ike

import (
	"bytes"
	"errors"
	"io"
	"net/netip"

	"github.com/mpsa-vpn/mpsa/ike/wire"
)

// infoTask sends an INFORMATIONAL request with notifies, or none at all as
// a liveness check (RFC 7296 §1.4):
//
//	HDR, SK {[N+]}  -->  <--  HDR, SK {[N+]}
type infoTask struct {
	notifies []*wire.Notify
	dpd      bool
	done     chan error
	// then, when set, gets the outcome instead of done, on the executor
	// (SendInformationalAsync).
	then func(error)
}

// finish reports the outcome once.
func (t *infoTask) finish(sa *ikeSA, err error) {
	if t.then != nil {
		if errors.Is(err, ErrClosed) && sa.h.dying {
			err = sa.h.deathErr() // what SendInformational would return
		}
		f := t.then
		t.then = nil
		f(err)
	}
	if t.done != nil {
		t.done <- err
		t.done = nil
	}
}

func (t *infoTask) exchange() wire.ExchangeType { return wire.Informational }

func (t *infoTask) build(sa *ikeSA) ([]wire.Payload, error) {
	if sa.state != StateEstablished {
		return nil, ErrNotEstablished
	}
	ps := make([]wire.Payload, 0, len(t.notifies))
	for _, n := range t.notifies {
		ps = append(ps, n)
	}
	return ps, nil
}

func (t *infoTask) process(sa *ikeSA, in *inMsg) error {
	t.finish(sa, errorNotify(wire.Informational, in.payloads))
	return nil
}

func (t *infoTask) abort(sa *ikeSA, err error) { t.finish(sa, err) }

// respondInformational answers an INFORMATIONAL request: deletes, MOBIKE
// address updates, liveness checks and notifies for the Policy hook.
func (sa *ikeSA) respondInformational(in *inMsg) ([]wire.Payload, func()) {
	h, m := sa.h, sa.h.m
	var resp []wire.Payload
	var afters []func()
	var unhandled []*wire.Notify
	var ourSPIs []uint32
	for _, p := range in.payloads {
		switch p := p.(type) {
		case *wire.Delete:
			switch p.Protocol {
			case wire.ProtoIKE:
				afters = append(afters, func() {
					if h.cur == sa {
						h.log.Info("IKE SA deleted by peer", "reason", "DELETE")
						h.die(ErrDeleted)
					} else {
						h.dropOther(sa)
					}
				})
			case wire.ProtoESP:
				for _, spi := range p.SPIs {
					c := h.findChildOut(spi)
					if c == nil {
						continue
					}
					// §2.25.1: if we are closing it too, answer without it.
					if c.state != childDeleting {
						ourSPIs = append(ourSPIs, c.inSPI)
					}
					afters = append(afters, func() { h.removeChild(c, ErrDeleted) })
				}
			}
		case *wire.Notify:
			switch p.NotifyType {
			case wire.NotifyUpdateSAAddresses:
				if h.mobike && !h.origInitiator {
					local := h.localOf(in.pkt)
					r, l, _ := checkNATD(in.payloads, sa.spiI, sa.spiR, in.pkt.src, local)
					resp = append(resp, natdNotifies(sa.spiI, sa.spiR, local, in.pkt.src, m.cfg.ForceEncap, m.rand)...)
					pkt := in.pkt
					afters = append(afters, func() {
						h.natRemote, h.natLocal = r, l
						h.notePath(pkt, true)
					})
				}
			case wire.NotifyCookie2:
				resp = append(resp, &wire.Notify{NotifyType: wire.NotifyCookie2, Data: bytes.Clone(p.Data)})
			case wire.NotifyNATDetectionSourceIP, wire.NotifyNATDetectionDestinationIP:
			case wire.NotifyAuthenticationFailed:
				afters = append(afters, func() { h.die(ErrAuthFailed) })
			default:
				unhandled = append(unhandled, &wire.Notify{Protocol: p.Protocol, SPI: bytes.Clone(p.SPI), NotifyType: p.NotifyType, Data: bytes.Clone(p.Data)})
			}
		}
	}
	if len(ourSPIs) > 0 {
		resp = append(resp, &wire.Delete{Protocol: wire.ProtoESP, SPIs: ourSPIs})
	}
	if len(unhandled) > 0 && m.cfg.Policy.Informational != nil {
		afters = append(afters, func() { m.cfg.Policy.Informational(h, unhandled) })
	}
	return resp, func() {
		for _, f := range afters {
			f()
		}
	}
}

// mobikeTask moves the IKE SA to a new path (RFC 4555 §3.5):
//
//	(new path) HDR, SK {N(UPDATE_SA_ADDRESSES), N(NAT_DETECTION_*), N(COOKIE2)}  -->
//	                        <--  HDR, SK {N(NAT_DETECTION_*), N(COOKIE2)}
type mobikeTask struct {
	local, remote netip.AddrPort
	cookie2       []byte
	done          chan error
}

func (t *mobikeTask) exchange() wire.ExchangeType { return wire.Informational }

func (t *mobikeTask) build(sa *ikeSA) ([]wire.Payload, error) {
	h, m := sa.h, sa.h.m
	if t.local.IsValid() {
		h.local = t.local
	} else {
		// The kernel's choice now: the old address may be gone.
		h.local = netip.AddrPortFrom(netip.Addr{}, h.local.Port())
	}
	if t.remote.IsValid() {
		h.remote = t.remote
	}
	h.float()
	t.cookie2 = make([]byte, 16)
	if _, err := io.ReadFull(m.rand, t.cookie2); err != nil {
		return nil, err
	}
	ps := []wire.Payload{&wire.Notify{NotifyType: wire.NotifyUpdateSAAddresses}}
	ps = append(ps, natdNotifies(sa.spiI, sa.spiR, h.natdLocal(), h.remote, m.cfg.ForceEncap, m.rand)...)
	return append(ps, &wire.Notify{NotifyType: wire.NotifyCookie2, Data: t.cookie2}), nil
}

func (t *mobikeTask) process(sa *ikeSA, in *inMsg) error {
	h := sa.h
	err := errorNotify(wire.Informational, in.payloads)
	if err == nil {
		if c := wire.FindNotify(in.payloads, wire.NotifyCookie2); c == nil || !bytes.Equal(c.Data, t.cookie2) {
			err = &ProtocolError{Exchange: wire.Informational, Type: wire.NotifyCookie2}
		}
	}
	if err == nil {
		h.natRemote, h.natLocal, _ = checkNATD(in.payloads, sa.spiI, sa.spiR, in.pkt.src, h.localOf(in.pkt))
		if !h.notePath(in.pkt, true) {
			// The move itself happened in build.
			h.log.Info("IKE SA moved", "local", h.local, "peer", h.remote)
			h.emit(EventIKEAddressChanged, nil, nil)
		}
		if h.natLocal {
			h.keepaliveAt = h.m.clock.Now().Add(h.m.cfg.NATKeepalive)
		}
	}
	if t.done != nil {
		t.done <- err
		t.done = nil
	}
	return nil
}

func (t *mobikeTask) abort(sa *ikeSA, err error) {
	if t.done != nil {
		t.done <- err
		t.done = nil
	}
}
