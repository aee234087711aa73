package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/ops"
	"github.com/mpsa-vpn/mpsa/mpsa"
)

// RekeyReason is what the key server logs as the reason of an operator's
// rekey (`mpsa-hub rekey GROUP`).
const RekeyReason = "operator request"

// RekeyView is the answer to `mpsa-hub rekey GROUP`.
type RekeyView struct {
	Now       time.Time `json:"now"`
	Group     string    `json:"group"`
	Epoch     uint64    `json:"epoch"`
	SPI       string    `json:"spi"`
	Previous  uint64    `json:"previous_epoch,omitempty"`
	OldDies   time.Time `json:"previous_dies,omitzero"` // when the previous SA stops being accepted (ROLL2)
	Connected int       `json:"connected"`              // CPEs the new SA is being sent to
}

// RenderText implements ops.TextRenderer.
func (v *RekeyView) RenderText(t *ops.Text) {
	t.Line("%s: epoch %d, esp_spi %s generated, sending it to %d connected CPEs", v.Group, v.Epoch, v.SPI, v.Connected)
	if v.Previous != 0 {
		t.Indent(func() {
			t.Line("epoch %d accepted until %s (roll2)", v.Previous, ops.In(v.Now, v.OldDies))
		})
	}
}

// Rekey rolls a group over to a new group SA now, as a lifetime rekey does:
// the key server generates the next SA and sends it to every connected CPE
// of the group; the CPEs use it outbound after ROLL1 and drop the previous
// one after ROLL2. No IKE SA changes and no other group is touched. It is
// the status socket's rekey command. Follow the distribution with Groups
// (or wait on Changed).
func (h *Hub) Rekey(group string) (*RekeyView, error) {
	e, err := h.ks.Rekey(group, RekeyReason)
	if err != nil {
		if errors.Is(err, mpsa.ErrUnknownGroup) {
			return nil, fmt.Errorf("hub: no group %q", group)
		}
		return nil, fmt.Errorf("hub: rekey of group %s: %w", group, err)
	}
	h.wakeKeyServer() // the previous epoch now dies at ROLL2
	h.notifyChanged()
	v := &RekeyView{Now: h.clock.Now(), Group: group, Epoch: e.Epoch, SPI: ops.SPI32(e.SPI)}
	for _, g := range h.ks.Status() {
		if g.Name != group {
			continue
		}
		v.Connected = g.Connected
		for _, old := range g.Epochs {
			if old.Epoch < e.Epoch && old.Epoch > v.Previous {
				v.Previous, v.OldDies = old.Epoch, old.Dies
			}
		}
	}
	return v, nil
}

// rekeyCommand is the status socket's rekey command: exactly one group.
func (h *Hub) rekeyCommand(_ context.Context, args []string) (any, error) {
	if len(args) != 1 || args[0] == "" {
		return nil, errors.New("usage: rekey GROUP")
	}
	return h.Rekey(args[0])
}
