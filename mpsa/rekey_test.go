package mpsa

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestOperatorRekey: Rekey rolls one group over at once (the other group
// keeps its SA), every connected CPE of the group gets the new SA and ends
// on it after ROLL2, the reason is logged; an unknown group and a closed key
// server are errors.
func TestOperatorRekey(t *testing.T) {
	h := newHub(t, nil, []GroupConfig{acme, beta}, map[string]string{"a1": "acme", "a2": "acme", "b1": "beta"})
	h.connectAll()
	st := h.ks.Status()
	oldSPI, betaSPI := st[0].Epochs[0].SPI, st[1].Epochs[0].SPI

	e, err := h.ks.Rekey("acme", "operator request")
	if err != nil {
		t.Fatal(err)
	}
	st = h.ks.Status()
	if len(st[0].Epochs) != 2 || e.Epoch != 2 || e.SPI != st[0].Epochs[1].SPI || e.SPI == oldSPI || e.Created != h.clock.Now() {
		t.Fatalf("after Rekey %+v: %+v", e, st[0].Epochs)
	}
	if len(st[1].Epochs) != 1 || st[1].Epochs[0].SPI != betaSPI {
		t.Errorf("Rekey of acme touched beta: %+v", st[1].Epochs)
	}
	if !strings.Contains(h.log.String(), `reason="operator request"`) {
		t.Errorf("no rekey reason in the log:\n%s", h.log)
	}
	if n := h.w.flush(); n != 2 {
		t.Errorf("%d MPSA_PUT sent, want one per acme CPE", n)
	}
	for i := 0; i < 200; i++ {
		h.step(time.Second)
	}
	for _, n := range []string{"a1", "a2"} {
		if got := h.cpes[n].spis(); got != hex32(e.SPI)+"/both " {
			t.Errorf("%s after the rollover: %s", n, got)
		}
	}
	if got := h.cpes["b1"].spis(); got != hex32(betaSPI)+"/both " {
		t.Errorf("b1: %s", got)
	}

	if _, err := h.ks.Rekey("nope", "operator request"); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("Rekey of an unknown group: %v", err)
	}
	h.ks.Close()
	if _, err := h.ks.Rekey("acme", "operator request"); !errors.Is(err, ErrClosed) {
		t.Errorf("Rekey after Close: %v", err)
	}
}
