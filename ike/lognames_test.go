package ike

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/ike/wire"
)

// TestLogNames: with slog's JSON handler, states, event kinds, exchanges
// and notify types log as the names docs/LOGGING.md gives, not numbers.
func TestLogNames(t *testing.T) {
	var out lockedBuffer
	p := newPair(t, func(i, r *Config) {
		for _, c := range []*Config{i, r} {
			c.Logger = slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	})
	a, _ := p.establish(defaultConn())
	done := async(func() error { return a.Close(ctx(t)) })
	p.expect(wire.Informational, false)
	p.expect(wire.Informational, true)
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	seen := map[string]map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		for _, k := range []string{"state", "exchange", "reason"} {
			v, ok := rec[k]
			if !ok {
				continue
			}
			s, isString := v.(string)
			if !isString {
				t.Fatalf("%s logged as %T %v: %s", k, v, v, line)
			}
			if seen[k] == nil {
				seen[k] = map[string]bool{}
			}
			seen[k][s] = true
		}
	}
	for k, v := range map[string]string{"state": "ESTABLISHED", "exchange": "IKE_AUTH"} {
		if !seen[k][v] {
			t.Errorf("no %s=%s in the log; saw %v", k, v, seen[k])
		}
	}
	if !seen["state"]["CHILD_UP"] || !seen["state"]["DEAD"] {
		t.Errorf("CHILD_SA up / IKE SA down states missing: %v", seen["state"])
	}
}
