package ike

import (
	"errors"

	"github.com/mpsa-vpn/mpsa/ike/wire"
)

// deleteIKETask deletes the IKE SA it runs on (RFC 7296 §1.4.1):
//
//	HDR, SK {D(IKE)}  -->  <--  HDR, SK {}
//
// Deleting the current IKE SA ends the handle; deleting a replaced or
// redundant one after a rekey only forgets it.
type deleteIKETask struct {
	done chan error
}

func (t *deleteIKETask) exchange() wire.ExchangeType { return wire.Informational }

func (t *deleteIKETask) build(sa *ikeSA) ([]wire.Payload, error) {
	if sa.state == StateDead {
		return nil, errSkip
	}
	if sa.h.cur == sa {
		sa.setState(StateDeleting, "deleting")
	}
	return []wire.Payload{&wire.Delete{Protocol: wire.ProtoIKE}}, nil
}

func (t *deleteIKETask) process(sa *ikeSA, in *inMsg) error {
	t.gone(sa, nil)
	return nil
}

func (t *deleteIKETask) gone(sa *ikeSA, err error) {
	if sa.h.cur == sa {
		sa.h.die(nil)
	} else if sa.state != StateDead {
		sa.h.dropOther(sa)
	}
	if t.done != nil {
		t.done <- err
		t.done = nil
	}
}

func (t *deleteIKETask) abort(sa *ikeSA, err error) {
	if errors.Is(err, ErrClosed) || err == nil {
		if t.done != nil {
			t.done <- err
			t.done = nil
		}
		return
	}
	t.gone(sa, err)
}

// deleteChildTask deletes a CHILD_SA (RFC 7296 §1.4.1):
//
//	HDR, SK {D(ESP, our inbound SPI)}  -->  <--  HDR, SK {D(ESP, peer's inbound SPI)}
type deleteChildTask struct {
	c    *child
	done chan error
}

func (t *deleteChildTask) exchange() wire.ExchangeType { return wire.Informational }

func (t *deleteChildTask) build(sa *ikeSA) ([]wire.Payload, error) {
	if t.c.state == childDeleted {
		return nil, errSkip
	}
	t.c.state = childDeleting
	return []wire.Payload{&wire.Delete{Protocol: wire.ProtoESP, SPIs: []uint32{t.c.inSPI}}}, nil
}

func (t *deleteChildTask) process(sa *ikeSA, in *inMsg) error {
	sa.h.removeChild(t.c, nil)
	if t.done != nil {
		t.done <- nil
		t.done = nil
	}
	return nil
}

func (t *deleteChildTask) abort(sa *ikeSA, err error) {
	if !errors.Is(err, ErrClosed) {
		sa.h.removeChild(t.c, err)
	}
	if t.done != nil {
		t.done <- err
		t.done = nil
	}
}
