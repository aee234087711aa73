package ike

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/transform"
)

// lockedBuffer is a log sink two managers share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestNoKeysInLogs runs every kind of exchange (IKE_SA_INIT, IKE_AUTH,
// CHILD_SA rekey with PFS, IKE rekey, INFORMATIONAL, delete, and an
// initiator with a wrong PSK) with both sides logging at debug level, and
// looks for the PSKs, every IKE SA's SK_* keys and every CHILD_SA key in
// the log: raw, in hex (either case) and in base64.
func TestNoKeysInLogs(t *testing.T) {
	var out lockedBuffer
	var mu sync.Mutex
	secrets := [][]byte{testPSK}
	keep := func(bs ...[]byte) {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bs {
			if len(b) >= 8 {
				secrets = append(secrets, bytes.Clone(b))
			}
		}
	}
	logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	wrongPSK := []byte("not-the-psk-of-this-pair-0123456")
	keep(wrongPSK)
	p := newPair(t, func(i, r *Config) {
		for _, c := range []*Config{i, r} {
			c.Logger = logger
			c.KeyLog = func(_, _ uint64, k *suite.IKEKeys) { keep(k.SKd, k.SKai, k.SKar, k.SKei, k.SKer, k.SKpi, k.SKpr) }
			c.Proposals = DefaultProposals()
			c.Proposals.PFS = []transform.DH{transform.DHCurve25519}
		}
	})
	childKeys := func(e *endpoint) {
		for _, ev := range e.drainEvents() {
			if c := ev.Child; c != nil {
				keep(c.In.EncKey, c.In.IntegKey, c.Out.EncKey, c.Out.IntegKey)
			}
		}
	}
	a, _ := p.establish(defaultConn())
	step := func(f func() error, msgs int) {
		t.Helper()
		done := async(f)
		for range msgs {
			p.step()
		}
		if err := wait(t, done); err != nil {
			t.Fatal(err)
		}
	}
	step(func() error { return a.RekeyChild(ctx(t), firstChild(a).InSPI) }, 4)
	step(func() error { return a.RekeyIKE(ctx(t)) }, 4)
	step(func() error {
		return a.SendInformational(ctx(t), []*wire.Notify{{NotifyType: 40960, Data: []byte("x")}})
	}, 2)
	step(func() error { return a.Close(ctx(t)) }, 2)
	childKeys(p.i)
	childKeys(p.r)

	// A CPE with the wrong PSK.
	p.i.m.cfg.Local.PSK = wrongPSK
	res := p.initiate(defaultConn())
	for range 4 {
		p.step()
	}
	if r := <-res; r.err == nil {
		t.Fatal("established with a wrong PSK")
	}

	log := out.String()
	if !strings.Contains(log, "IKE SA established") || !strings.Contains(log, "authentication failed") {
		t.Fatalf("the log lacks the exchanges:\n%s", log)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(secrets) < 20 {
		t.Fatalf("only %d secrets collected", len(secrets))
	}
	lower := strings.ToLower(log)
	for _, s := range secrets {
		for _, enc := range []string{string(s), hex.EncodeToString(s), base64.StdEncoding.EncodeToString(s), base64.RawStdEncoding.EncodeToString(s)} {
			probe := enc
			hay := log
			if enc == hex.EncodeToString(s) {
				hay = lower
			}
			if len(probe) > 12 {
				probe = probe[:12] // a prefix is enough to find it
			}
			if strings.Contains(hay, probe) {
				t.Fatalf("key material %x in the log:\n%s", s, log)
			}
		}
	}
}
