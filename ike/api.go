package ike

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/wire"
)

// Connection says how to initiate an IKE SA.
type Connection struct {
	// Name is a label for logs and listings.
	Name string
	// Remote lists the responder's addresses, tried in order until one
	// answers (port 0 means 500).
	Remote []netip.AddrPort
	// Local is the source address (zero: the socket's, or what routing
	// chooses); it is used for NAT detection.
	Local netip.AddrPort
	// RemoteID is sent as IDr and must be the identity the responder
	// proves. Zero: any identity the lookup accepts.
	RemoteID auth.ID
	// Peer says how the responder must authenticate; nil asks
	// Config.Peers with the responder's identity.
	Peer *auth.Peer
	// VirtualIPs asks for INTERNAL_IP4/IP6_ADDRESS in a CP request;
	// unspecified addresses (0.0.0.0, ::) ask for any of that family.
	VirtualIPs []netip.Addr
	// LocalTS and RemoteTS are proposed as TSi and TSr. Defaults: the
	// whole family when asking for a virtual IP, else our address; all of
	// the peer's family.
	LocalTS, RemoteTS []netip.Prefix
	// Childless establishes the IKE SA without a CHILD_SA (RFC 6023).
	Childless bool
	// Notifies are added to our IKE_AUTH request, besides those of
	// Policy.AuthNotifies.
	Notifies []*wire.Notify
}

// Initiate establishes an IKE SA (and, unless Childless, a CHILD_SA) with
// the first of c.Remote that answers. It returns when IKE_AUTH is done. If
// the IKE SA came up but its CHILD_SA did not, it returns the SA and a
// *ChildError.
func (m *Manager) Initiate(ctx context.Context, c Connection) (*SA, error) {
	if len(c.Remote) == 0 {
		return nil, errors.New("ike: Initiate without a remote address")
	}
	var lastErr error
	for _, remote := range c.Remote {
		if remote.Port() == 0 {
			remote = netip.AddrPortFrom(remote.Addr(), DefaultIKEPort)
		}
		h, err := m.startInitiator(c, remote)
		if err != nil {
			return nil, err
		}
		done := make(chan error, 1)
		if !h.run(func() {
			h.waiters = append(h.waiters, done)
			h.cur.enqueue(&ikeInitTask{})
		}) {
			return nil, ErrClosed
		}
		select {
		case err = <-done:
			// Let the job that answered finish, so Info shows the SA.
			_ = h.call(ctx, func() error { return nil })
		case <-ctx.Done():
			h.run(func() { h.die(ctx.Err()) })
			return nil, ctx.Err()
		}
		var ce *ChildError
		if err == nil || errors.As(err, &ce) {
			return h, err
		}
		lastErr = err
		if !errors.Is(err, ErrTimeout) {
			break
		}
	}
	return nil, lastErr
}

func (m *Manager) startInitiator(c Connection, remote netip.AddrPort) (*SA, error) {
	h, err := m.newHandle(c.Name, true)
	if err != nil {
		return nil, err
	}
	spi, err := m.newSPI()
	if err != nil {
		m.removeHandle(h)
		return nil, err
	}
	cc := c
	h.conn = &cc
	h.local, h.remote = c.Local, remote
	h.cur = h.newIKESA(true, spi, 0)
	h.cur.deadline = time.Time{}
	h.publish()
	return h, nil
}

// Close deletes the IKE SA with the peer (INFORMATIONAL with D(IKE)) and
// waits for the answer; the SA is gone when Close returns, also on error.
func (h *SA) Close(ctx context.Context) error {
	err := h.wait(ctx, func() (<-chan error, error) {
		cur := h.cur
		if cur == nil {
			return nil, ErrClosed
		}
		if cur.state != StateEstablished {
			h.die(ErrClosed)
			ch := make(chan error, 1)
			ch <- nil
			return ch, nil
		}
		t := &deleteIKETask{done: make(chan error, 1)}
		cur.enqueue(t)
		return t.done, nil
	})
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		h.run(func() { h.die(ErrClosed) })
	}
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// SendInformational sends notifies to the peer in an INFORMATIONAL request
// and returns when the response arrives (nil), the peer answers with an
// error notify (*ProtocolError) or the SA dies.
func (h *SA) SendInformational(ctx context.Context, notifies []*wire.Notify) error {
	return h.wait(ctx, func() (<-chan error, error) {
		cur := h.cur
		if cur == nil || cur.state == StateDead {
			return nil, ErrNotEstablished
		}
		t := &infoTask{notifies: notifies, done: make(chan error, 1)}
		cur.enqueue(t)
		return t.done, nil
	})
}

// SendInformationalAsync is SendInformational without waiting: it queues
// the INFORMATIONAL request and returns at once; then is called exactly
// once with what SendInformational would have returned (nil when the
// peer's answer arrived, a *ProtocolError, ErrTimeout after the last
// retransmission, the SA's end). It starts no goroutine and makes no
// channel per call, for a hub that sends one request to each of thousands
// of SAs. then runs on the SA's goroutine, so like a Policy hook it must
// return quickly and must not call blocking methods of this SA; if the SA
// is already gone it runs before SendInformationalAsync returns.
func (h *SA) SendInformationalAsync(notifies []*wire.Notify, then func(error)) {
	if !h.run(func() {
		cur := h.cur
		if cur == nil || cur.state == StateDead {
			then(ErrNotEstablished)
			return
		}
		cur.enqueue(&infoTask{notifies: notifies, then: then})
	}) {
		then(h.deadErr())
	}
}

// SendInformational is sa.SendInformational, for callers that hold the
// manager.
func (m *Manager) SendInformational(ctx context.Context, sa *SA, notifies []*wire.Notify) error {
	return sa.SendInformational(ctx, notifies)
}

// RekeyIKE rekeys the IKE SA now (CREATE_CHILD_SA, RFC 7296 §1.3.2).
func (h *SA) RekeyIKE(ctx context.Context) error {
	return h.wait(ctx, h.startRekeyIKE)
}

func (h *SA) startRekeyIKE() (<-chan error, error) {
	cur := h.cur
	if cur == nil || cur.state != StateEstablished {
		return nil, ErrNotEstablished
	}
	t := &ikeRekeyTask{done: make(chan error, 1)}
	cur.enqueue(t)
	return t.done, nil
}

// RekeyChild rekeys the CHILD_SA with inbound SPI spi (RFC 7296 §1.3.3).
func (h *SA) RekeyChild(ctx context.Context, spi uint32) error {
	return h.wait(ctx, func() (<-chan error, error) { return h.startRekeyChild(spi) })
}

func (h *SA) startRekeyChild(spi uint32) (<-chan error, error) {
	return h.startOnChild(spi, func(c *child, done chan error) task { return &childTask{rekey: c, done: done} })
}

// startOnChild queues the task newTask makes for the CHILD_SA with inbound
// SPI spi on the established IKE SA. Executor only.
func (h *SA) startOnChild(spi uint32, newTask func(*child, chan error) task) (<-chan error, error) {
	cur := h.cur
	if cur == nil || cur.state != StateEstablished {
		return nil, ErrNotEstablished
	}
	c := h.findChildIn(spi)
	if c == nil {
		return nil, ErrNoChild
	}
	done := make(chan error, 1)
	cur.enqueue(newTask(c, done))
	return done, nil
}

// CreateChild negotiates an additional CHILD_SA (CREATE_CHILD_SA, RFC 7296
// §1.3.1) with the given traffic selectors and returns its inbound SPI.
func (h *SA) CreateChild(ctx context.Context, localTS, remoteTS []netip.Prefix) (uint32, error) {
	var t *childTask
	err := h.wait(ctx, func() (<-chan error, error) {
		cur := h.cur
		if cur == nil || cur.state != StateEstablished {
			return nil, ErrNotEstablished
		}
		t = &childTask{tsi: selectors(localTS), tsr: selectors(remoteTS), done: make(chan error, 1)}
		cur.enqueue(t)
		return t.done, nil
	})
	if err != nil {
		return 0, err
	}
	return t.created, nil
}

// DeleteChild deletes the CHILD_SA with inbound SPI spi (INFORMATIONAL
// with D(ESP)).
func (h *SA) DeleteChild(ctx context.Context, spi uint32) error {
	return h.wait(ctx, func() (<-chan error, error) { return h.startDeleteChild(spi) })
}

func (h *SA) startDeleteChild(spi uint32) (<-chan error, error) {
	return h.startOnChild(spi, func(c *child, done chan error) task { return &deleteChildTask{c: c, done: done} })
}

// UpdateAddresses moves the IKE SA and its CHILD_SAs to a new local (and,
// if valid, remote) address with MOBIKE (RFC 4555 §3.5): it sends
// UPDATE_SA_ADDRESSES from the new address and returns once the peer
// answered. A zero local address means the one the kernel chooses now
// (looked up on a SourceAddrConn). Only the original initiator may do so.
func (h *SA) UpdateAddresses(ctx context.Context, local, remote netip.AddrPort) error {
	return h.wait(ctx, func() (<-chan error, error) {
		cur := h.cur
		if cur == nil || cur.state != StateEstablished {
			return nil, ErrNotEstablished
		}
		if !h.mobike {
			return nil, errors.New("ike: MOBIKE not negotiated")
		}
		if !h.origInitiator {
			return nil, errors.New("ike: only the initiator may update addresses (RFC 4555 §3.5)")
		}
		t := &mobikeTask{local: local, remote: remote, done: make(chan error, 1)}
		cur.enqueue(t)
		return t.done, nil
	})
}

func (h *SA) String() string {
	i := h.Info()
	return fmt.Sprintf("%s %016x_i %016x_r %v", i.Name, i.SPIi, i.SPIr, i.State)
}
