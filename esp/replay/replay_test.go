package replay

import (
	"math/rand/v2"
	"testing"
)

// TestKernelCases ports the Linux kernel's (and wireguard-go's) replay
// window cases. ESP sequence numbers start at 1, so every counter is shifted
// by one against the original table, and 0 is always rejected.
func TestKernelCases(t *testing.T) {
	var f Filter
	const lim = MaxWindow // wireguard-go's windowSize+1
	const big = 1<<32 - 1
	n := 0
	T := func(c uint64, want bool) {
		t.Helper()
		n++
		if got := f.Check(c + 1); got != want && want {
			t.Fatalf("case %d: Check(%d) = %v, want %v", n, c+1, got, want)
		}
		if got := f.Update(c + 1); got != want {
			t.Fatalf("case %d: Update(%d) = %v, want %v", n, c+1, got, want)
		}
	}
	f.Init(MaxWindow)
	T(0, true)              // 1
	T(1, true)              // 2
	T(1, false)             // 3: duplicate
	T(9, true)              // 4
	T(8, true)              // 5: out of order, inside the window
	T(7, true)              // 6
	T(7, false)             // 7
	T(lim, true)            // 8: far ahead
	T(lim-1, true)          // 9
	T(lim-1, false)         // 10
	T(lim-2, true)          // 11
	T(2, true)              // 12: oldest edge still inside
	T(2, false)             // 13
	T(lim+16, true)         // 14
	T(3, false)             // 15: now too old
	T(lim+16, false)        // 16
	T(lim*4, true)          // 17
	T(lim*4-(lim-1), true)  // 18
	T(10, false)            // 19
	T(lim*4-lim, false)     // 20
	T(lim*4-(lim+1), false) // 21
	T(lim*4-(lim-2), true)  // 22
	T(lim*4+1-lim, false)   // 23
	T(0, false)             // 24
	T(big-1, true)          // 25: near the 32-bit top
	T(big-1, false)         // 26
	T(big-2, true)          // 27
	T(big-3, true)          // 28
	T(big-2, false)         // 29

	const ws = MaxWindow - 1 // wireguard-go's windowSize
	bulk := func(name string, f2 func()) {
		t.Log(name)
		f.Init(MaxWindow)
		n = 0
		f2()
	}
	bulk("ascending", func() {
		for i := uint64(1); i <= ws; i++ {
			T(i, true)
		}
		T(0, true)
		T(0, false)
	})
	bulk("ascending-from-2", func() {
		for i := uint64(2); i <= ws+1; i++ {
			T(i, true)
		}
		T(1, true)
		T(0, false)
	})
	bulk("descending", func() {
		for i := uint64(ws + 1); i > 0; i-- {
			T(i, true)
		}
	})
	bulk("descending-past-window", func() {
		for i := uint64(ws + 2); i > 1; i-- {
			T(i, true)
		}
		T(0, false)
	})
	bulk("descending-then-ahead", func() {
		for i := uint64(ws); i > 0; i-- {
			T(i, true)
		}
		T(ws+1, true)
		T(0, false)
	})
}

func TestSmallWindow(t *testing.T) {
	var f Filter
	f.Init(32)
	if f.Window() != 32 {
		t.Fatalf("window %d", f.Window())
	}
	for _, c := range []struct {
		seq  uint64
		want bool
	}{
		{1, true}, {2, true}, {2, false}, {40, true},
		{9, true},   // 40-9 = 31 < 32: inside
		{8, false},  // 40-8 = 32: just left of the window
		{41, true},  // in order
		{9, false},  // duplicate
		{10, true},  // 41-10 = 31
		{200, true}, // far ahead: clears the ring
		{41, false}, // too old now
		{199, true},
		{169, true},
		{168, false},
	} {
		if got := f.Update(c.seq); got != c.want {
			t.Fatalf("Update(%d) = %v, want %v", c.seq, got, c.want)
		}
	}
}

func TestCheckDoesNotMove(t *testing.T) {
	var f Filter
	f.Init(64)
	if !f.Check(1000) {
		t.Fatal("far ahead rejected")
	}
	if f.Last() != 0 {
		t.Fatal("Check moved the window")
	}
	if !f.Update(1) || !f.Check(2) || f.Check(1) || f.Check(0) {
		t.Fatal("Check disagrees with Update")
	}
}

// TestAgainstReference compares with a naive set-based window on random input.
func TestAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, w := range []int{1, 7, 64, 100, 1000, MaxWindow} {
		var f Filter
		f.Init(w)
		seen := map[uint64]bool{}
		var last uint64
		base := uint64(1)
		for i := 0; i < 20000; i++ {
			var c uint64
			switch rng.IntN(4) {
			case 0:
				c = base + uint64(rng.IntN(3*w+10))
			case 1:
				c = last + 1
			case 2:
				c = last - uint64(rng.IntN(w+2))
			default:
				c = last + uint64(rng.IntN(2*MaxWindow))
			}
			if c > 1<<40 {
				c = 0
			}
			want := c != 0 && !seen[c] && (c > last || last-c < uint64(w))
			if got := f.Check(c); got != want {
				t.Fatalf("w=%d i=%d Check(%d) last=%d = %v want %v", w, i, c, last, got, want)
			}
			if got := f.Update(c); got != want {
				t.Fatalf("w=%d i=%d Update(%d) = %v want %v", w, i, c, got, want)
			}
			if want {
				seen[c] = true
				if c > last {
					last = c
				}
			}
			if i%5000 == 0 {
				base = last
			}
		}
	}
}

func BenchmarkUpdate(b *testing.B) {
	var f Filter
	f.Init(MaxWindow)
	for i := 0; b.Loop(); i++ {
		f.Update(uint64(i) + 1)
	}
}
