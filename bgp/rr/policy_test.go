package rr

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/routing"
)

// syncBuffer is a bytes.Buffer for a logger written from several
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitPrefs waits until the CPE holds exactly the prefixes given, each
// with the LOCAL_PREF given.
func (c *cpeSpeaker) waitPrefs(t *testing.T, want map[string]uint32) {
	t.Helper()
	err := c.sink.Wait(within(t, 20*time.Second), func(rs map[netip.Prefix]routing.Route) bool {
		if len(rs) != len(want) {
			return false
		}
		for p, lp := range want {
			r, ok := rs[netip.MustParsePrefix(p)]
			if !ok || r.LocalPref != lp {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("routes: want %v (prefix: LOCAL_PREF), have:\n%s", want, c.sink)
	}
}

// TestRoutePolicy: a group's route policy. By default a CPE may announce
// only its authorised prefixes themselves: a more specific is dropped,
// counted (ForeignPrefix) and logged; routes beyond MaxPrefixes are
// dropped and counted (TooManyRoutes); the other CPEs get the group's
// LOCAL_PREF. SetRoutePolicy changes all three on the running group: the
// more specific is accepted from what the CPE sent, the limit lifted,
// LOCAL_PREF re-advertised, and back again, without a new session.
func TestRoutePolicy(t *testing.T) {
	leakCheck(t)
	var logs syncBuffer
	g := acme("127.0.0.1")
	g.Policy = &RoutePolicy{MaxPrefixes: 2, LocalPref: 250}
	h := startHub(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, g)
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/24", "10.1.1.0/24", "10.1.2.0/24"))
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:4500", "10.2.0.0/24"))
	// 10.1.0.128/25 is a more specific of an authorised prefix; three
	// authorised prefixes are one more than MaxPrefixes.
	a := runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.0.0/24", "10.1.0.128/25", "10.1.1.0/24", "10.1.2.0/24")
	b := runCPE(t, addr(3), hub, "198.51.100.3:4500", "10.2.0.0/24")

	a.waitPrefs(t, map[string]uint32{"10.2.0.0/24": 250})
	waitStats(t, h, "acme", func(s Stats) bool { return s.ForeignPrefix == 1 && s.TooManyRoutes == 1 && s.Routes == 3 })
	b.waitFor(t, "b has two of a's routes", func() bool { return b.sink.Len() == 2 })
	exact := map[string]bool{"10.1.0.0/24": true, "10.1.1.0/24": true, "10.1.2.0/24": true}
	for _, r := range b.sink.Routes() {
		if !exact[r.Prefix.String()] || r.LocalPref != 250 {
			t.Errorf("b got %v with LOCAL_PREF %d; want one of a's authorised prefixes with 250", r.Prefix, r.LocalPref)
		}
	}
	for _, want := range []string{`msg="CPE route dropped: prefix not authorised"`, "id=a", "prefix=10.1.0.128/25",
		`reason="more specific of an authorised prefix"`, `msg="CPE route dropped: too many routes"`, `reason="route limit"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}

	ctx := context.Background()
	if err := h.SetRoutePolicy(ctx, "acme", RoutePolicy{MaxPrefixes: 4, AcceptMoreSpecifics: true, LocalPref: 300}); err != nil {
		t.Fatal(err)
	}
	b.waitPrefs(t, map[string]uint32{"10.1.0.0/24": 300, "10.1.0.128/25": 300, "10.1.1.0/24": 300, "10.1.2.0/24": 300})
	a.waitPrefs(t, map[string]uint32{"10.2.0.0/24": 300})

	// The defaults: exact prefixes only, Config.MaxRoutesPerCPE, 100.
	if err := h.SetRoutePolicy(ctx, "acme", RoutePolicy{}); err != nil {
		t.Fatal(err)
	}
	b.waitPrefs(t, map[string]uint32{"10.1.0.0/24": 100, "10.1.1.0/24": 100, "10.1.2.0/24": 100})
	st := stats(t, h, "acme")
	if st.ForeignPrefix != 1 || st.TooManyRoutes != 1 || st.Sessions != 2 {
		t.Errorf("stats after the policy changes %+v: a re-check counted drops again, or a session dropped", st)
	}
	if n := a.Stats().Established; n != 1 {
		t.Errorf("a's session established %d times; a policy change must not reset it", n)
	}

	err := h.SetRoutePolicy(ctx, "acme", RoutePolicy{MaxPrefixes: 5000})
	if !errors.Is(err, ErrRestartNeeded) {
		t.Errorf("MaxPrefixes above the start bound: %v, want ErrRestartNeeded", err)
	}
	if err := h.SetRoutePolicy(ctx, "nope", RoutePolicy{}); !errors.Is(err, ErrNoGroup) {
		t.Errorf("unknown group: %v", err)
	}
}

// TestRoutePolicyLimitAtStart: with the more specifics accepted from the
// start, MaxPrefixes still bounds them; the limit lowered at run time
// withdraws the surplus.
func TestRoutePolicyLimitAtStart(t *testing.T) {
	leakCheck(t)
	g := acme("127.0.0.1")
	g.Policy = &RoutePolicy{MaxPrefixes: 3, AcceptMoreSpecifics: true}
	h := startHub(t, Config{}, g)
	hub := listenOf(h, "acme")
	mustUp(t, h, cpe("a", "acme", addr(2), "198.51.100.2:4500", "10.1.0.0/16"))
	mustUp(t, h, cpe("b", "acme", addr(3), "198.51.100.3:4500", "10.2.0.0/24"))
	runCPE(t, addr(2), hub, "198.51.100.2:4500", "10.1.1.0/24", "10.1.2.0/24", "10.1.3.0/24", "10.1.4.0/24", "10.1.5.0/24")
	b := runCPE(t, addr(3), hub, "198.51.100.3:4500", "10.2.0.0/24")
	waitStats(t, h, "acme", func(s Stats) bool { return s.TooManyRoutes == 2 && s.Routes == 4 })
	b.waitFor(t, "b has three of a's routes", func() bool { return b.sink.Len() == 3 })
	for _, r := range b.sink.Routes() {
		if r.LocalPref != DefaultLocalPref {
			t.Errorf("b got %v with LOCAL_PREF %d, want %d", r.Prefix, r.LocalPref, DefaultLocalPref)
		}
	}
	if err := h.SetRoutePolicy(context.Background(), "acme", RoutePolicy{MaxPrefixes: 1, AcceptMoreSpecifics: true}); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "b has one of a's routes", func() bool { return b.sink.Len() == 1 })
	waitStats(t, h, "acme", func(s Stats) bool { return s.Routes == 2 })
}
