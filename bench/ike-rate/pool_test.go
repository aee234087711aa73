package ikerate

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
)

func TestPoolPairsAndRelease(t *testing.T) {
	p, err := NewPool(netip.MustParsePrefix("10.0.0.0/29"), netip.MustParsePrefix("fd00::/120"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Size() != 7 {
		t.Fatalf("size %d, want 7 (a /29 without its network address)", p.Size())
	}
	any46 := []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	got, err := p.Assign(any46)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("fd00::1/128")}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("first pair %v, want %v", got, want)
	}
	only6, err := p.Assign([]netip.Addr{netip.IPv6Unspecified()})
	if err != nil || len(only6) != 1 || only6[0] != netip.MustParsePrefix("fd00::2/128") {
		t.Fatalf("IPv6 only: %v %v", only6, err)
	}
	for range 5 {
		if _, err := p.Assign(any46); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Assign(any46); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("8th assignment of a /29: %v, want ErrPoolExhausted", err)
	}
	// Releasing either address of a pair frees the index; foreign and
	// repeated releases change nothing.
	p.Release([]netip.Prefix{want[1]})
	p.Release([]netip.Prefix{want[0], netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("10.0.0.0/32")})
	if p.InUse() != 6 {
		t.Fatalf("in use %d after one release, want 6", p.InUse())
	}
	again, err := p.Assign(any46)
	if err != nil || again[0] != want[0] {
		t.Fatalf("reassigned %v %v, want the freed %v", again, err, want[0])
	}
}

func TestPoolRefusesOtherFamilies(t *testing.T) {
	p, err := NewPool(netip.MustParsePrefix("10.0.0.0/24"), netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Assign([]netip.Addr{netip.IPv6Unspecified()}); err == nil {
		t.Fatal("IPv6 from an IPv4-only pool")
	}
	for _, bad := range [][2]string{{"10.0.0.1/24", ""}, {"10.0.0.0/32", ""}, {"fd00::/64", ""}, {"", ""}} {
		var v4, v6 netip.Prefix
		if bad[0] != "" {
			v4 = netip.MustParsePrefix(bad[0])
		}
		if _, err := NewPool(v4, v6); err == nil {
			t.Errorf("NewPool(%v) accepted", bad)
		}
	}
}

func TestPoolLargeAndConcurrent(t *testing.T) {
	p, err := NewPool(netip.MustParsePrefix("10.64.0.0/10"), netip.MustParsePrefix("fd99::/100"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Size() != 1<<20-1 {
		t.Fatalf("size %d, want 2^20-1 (the cap)", p.Size())
	}
	const workers, each = 8, 500
	var mu sync.Mutex
	seen := map[netip.Prefix]bool{}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				got, err := p.Assign([]netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, a := range got {
					if seen[a] {
						t.Errorf("%v handed out twice", a)
					}
					seen[a] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 2*workers*each || p.InUse() != workers*each {
		t.Fatalf("%d addresses, %d in use", len(seen), p.InUse())
	}
	// Index 300 crosses an octet boundary in both families.
	if !seen[netip.MustParsePrefix("10.64.1.44/32")] || !seen[netip.MustParsePrefix("fd99::12c/128")] {
		t.Fatal("index 300 not mapped to 10.64.1.44 and fd99::12c")
	}
	for a := range seen {
		p.Release([]netip.Prefix{a})
	}
	if p.InUse() != 0 {
		t.Fatalf("%d in use after releasing everything", p.InUse())
	}
}
