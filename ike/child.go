package ike

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/transform"
)

// childState is the state of a CHILD_SA.
//
//	installed ──rekey request sent──▶ rekeying ──response──▶ rekeyed ──D──▶ deleted
//	    │                                 │ failure                ▲
//	    │                                 ▼                        │
//	    │                             installed                    │
//	    ├──peer rekeyed it────────────────────────────────────────┘
//	    └──D sent──▶ deleting ──response──▶ deleted
type childState uint8

const (
	childInstalled childState = iota + 1
	childRekeying
	childRekeyed
	childDeleting
	childDeleted
)

// child is one CHILD_SA. The engine keeps no key material: keys go out in
// the CHILD_SA's events and belong to their receiver.
type child struct {
	inSPI, outSPI uint32
	suite         transform.ESP
	dh            transform.DH // PFS group of the last exchange (DHNone without)
	localTS       []wire.Selector
	remoteTS      []wire.Selector
	state         childState
	established   time.Time
	rekeyAt       time.Time
	replaces      uint32
	// collision records the CHILD_SA the peer created by rekeying this one
	// while our own rekey of it was in flight (RFC 7296 §2.8.1).
	collision *childCollision
}

type childCollision struct {
	child  *child
	ni, nr []byte // the peer's exchange: its Ni, our Nr
}

// lowestIsOurs reports whether, of the four nonces of two colliding
// exchanges, the lowest belongs to the exchange we initiated (ourNi, peerNr):
// the SA that exchange created is the redundant one (RFC 7296 §2.8.1/§2.8.2).
func lowestIsOurs(ourNi, peerNr, peerNi, ourNr []byte) bool {
	ours := ourNi
	if bytes.Compare(peerNr, ours) < 0 {
		ours = peerNr
	}
	theirs := peerNi
	if bytes.Compare(ourNr, theirs) < 0 {
		theirs = ourNr
	}
	return bytes.Compare(ours, theirs) < 0
}

func (h *SA) childInfo(c *child) ChildSA {
	return ChildSA{InSPI: c.inSPI, OutSPI: c.outSPI, Suite: c.suite, LocalTS: c.localTS, RemoteTS: c.remoteTS,
		Local: h.local, Remote: h.remote, Encap: h.encap(), Replaces: c.replaces, Established: c.established}
}

func (h *SA) childInfoPtr(c *child) *ChildSA {
	ci := h.childInfo(c)
	return &ci
}

func (h *SA) findChildIn(spi uint32) *child {
	for _, c := range h.children {
		if c.inSPI == spi && c.state != childDeleted {
			return c
		}
	}
	return nil
}

func (h *SA) findChildOut(spi uint32) *child {
	for _, c := range h.children {
		if c.outSPI == spi && c.state != childDeleted {
			return c
		}
	}
	return nil
}

// addChild records a new CHILD_SA and emits its event with the keys.
func (h *SA) addChild(c *child, keys suite.ChildSAKeys, initiator bool) {
	now := h.m.clock.Now()
	c.state, c.established = childInstalled, now
	if h.m.cfg.ChildRekeyTime > 0 {
		c.rekeyAt = now.Add(h.m.jitter(h.m.cfg.ChildRekeyTime))
	}
	h.children = append(h.children, c)
	h.changed()
	in, out := keys.InOut(initiator)
	ci := h.childInfoPtr(c)
	ci.In, ci.Out = *in, *out
	kind := EventChildUp
	if c.replaces != 0 {
		kind = EventChildRekeyed
	}
	h.log.Info("CHILD_SA up", "esp_spi", fmt.Sprintf("%08x", c.inSPI), "state", kind, "peer", h.remote)
	h.emit(kind, ci, nil)
}

// removeChild deletes a CHILD_SA locally and emits its down event.
func (h *SA) removeChild(c *child, reason error) {
	if c.state == childDeleted {
		return
	}
	c.state = childDeleted
	h.changed()
	h.m.releaseChildSPI(c.inSPI)
	for i, x := range h.children {
		if x == c {
			h.children = append(h.children[:i], h.children[i+1:]...)
			break
		}
	}
	h.log.Info("CHILD_SA down", "esp_spi", fmt.Sprintf("%08x", c.inSPI), "reason", errString(reason))
	h.emit(EventChildDown, h.childInfoPtr(c), reason)
}

// newChildSPI draws an inbound ESP SPI unique on this manager (>= 256, RFC
// 4303 §2.1).
func (m *Manager) newChildSPI() (uint32, error) {
	var b [4]byte
	for {
		if _, err := io.ReadFull(m.rand, b[:]); err != nil {
			return 0, err
		}
		spi := binary.BigEndian.Uint32(b[:])
		if spi < 256 {
			continue
		}
		m.mu.Lock()
		if m.childSPIs == nil {
			m.childSPIs = make(map[uint32]struct{})
		}
		if _, used := m.childSPIs[spi]; !used {
			m.childSPIs[spi] = struct{}{}
			m.mu.Unlock()
			return spi, nil
		}
		m.mu.Unlock()
	}
}

func (m *Manager) releaseChildSPI(spi uint32) {
	if spi == 0 {
		return
	}
	m.mu.Lock()
	delete(m.childSPIs, spi)
	m.mu.Unlock()
}

// nonce draws a fresh nonce.
func (m *Manager) nonce() ([]byte, error) {
	n := make([]byte, DefaultNonceLen)
	if _, err := io.ReadFull(m.rand, n); err != nil {
		return nil, fmt.Errorf("ike: nonce: %w", err)
	}
	if f := m.nonceFirst.Load(); f != 0 {
		// Tests choose which of colliding exchanges holds the lowest
		// nonce (strongSwan's exchange tests do the same).
		n[0] = byte(f - 1)
	}
	return n, nil
}

// jitter shortens d by up to 10 %, so peers do not rekey in lockstep.
func (m *Manager) jitter(d time.Duration) time.Duration {
	var b [8]byte
	if _, err := io.ReadFull(m.rand, b[:]); err != nil {
		return d
	}
	return d - time.Duration(binary.BigEndian.Uint64(b[:])%uint64(d/10+1))
}
