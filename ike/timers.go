package ike

import "time"

// Each handle has one timer, set to the earliest of its deadlines:
// retransmissions, half-open and cleanup deadlines, IKE and CHILD_SA rekeys,
// liveness checks and NAT-T keepalives.

// reschedule sets the handle's timer to its next deadline. Executor only.
func (h *SA) reschedule() {
	var at time.Time
	for _, sa := range h.ikeSAs() {
		at = earliest(at, sa.nextEvent())
	}
	if cur := h.cur; cur != nil && cur.state == StateEstablished {
		at = earliest(at, cur.rekeyAt)
		if d := h.m.cfg.DPDInterval; d > 0 && cur.active == nil {
			at = earliest(at, h.lastRecv.Add(d))
		}
		if h.natLocal && h.natt {
			at = earliest(at, h.keepaliveAt)
		}
		for _, c := range h.children {
			if c.state == childInstalled {
				at = earliest(at, c.rekeyAt)
			}
		}
	}
	if at.IsZero() {
		if h.timer != nil {
			h.timer()
			h.timer = nil
		}
		return
	}
	if h.timer != nil && at.Equal(h.timerAt) {
		return
	}
	if h.timer != nil {
		h.timer()
	}
	d := at.Sub(h.m.clock.Now())
	if d < 0 {
		d = 0
	}
	h.timerAt = at
	h.timerGen++
	gen := h.timerGen
	h.timer = h.m.clock.AfterFunc(d, func() {
		h.run(func() {
			if h.timerGen == gen {
				h.timer = nil
			}
			h.onTimer()
		})
	})
}

// onTimer runs whatever is due.
func (h *SA) onTimer() {
	now := h.m.clock.Now()
	for _, sa := range h.ikeSAs() {
		sa.tick(now)
		if h.isDead() {
			return
		}
	}
	cur := h.cur
	if cur == nil || cur.state != StateEstablished {
		return
	}
	if !cur.rekeyAt.IsZero() && !now.Before(cur.rekeyAt) {
		cur.rekeyAt = time.Time{}
		cur.enqueue(&ikeRekeyTask{})
	}
	for _, c := range h.children {
		if c.state == childInstalled && !c.rekeyAt.IsZero() && !now.Before(c.rekeyAt) {
			c.rekeyAt = time.Time{}
			cur.enqueue(&childTask{rekey: c})
		}
	}
	if d := h.m.cfg.DPDInterval; d > 0 && cur.active == nil && len(cur.pending) == 0 && !now.Before(h.lastRecv.Add(d)) {
		h.lastRecv = now // the next check counts from here
		cur.enqueue(&infoTask{dpd: true})
	}
	if h.natLocal && h.natt && !now.Before(h.keepaliveAt) {
		h.keepaliveAt = now.Add(h.m.cfg.NATKeepalive)
		h.m.sendKeepalive(h.local, h.remote)
	}
}
