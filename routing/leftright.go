package routing

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Readers never wait for writers: the FIB keeps two copies of the lookup
// table and uses the Left-Right technique (Ramalhete and Correia, 2015).
// Readers announce themselves on a read indicator, read the copy leftRight
// names, and leave. The writer changes the other copy, points readers at it,
// waits until no reader can still be on the old one, and repeats the same
// changes there. Reads are wait-free; a writer waits at most for lookups
// already in progress. Slots (resolutions shared by many prefixes) carry one
// value per copy and follow the same protocol, so a batch becomes visible
// all at once.

// stripes spreads readers over cache lines so that concurrent lookups do
// not contend on one counter.
const stripes = 64

type paddedCounter struct {
	n atomic.Int64
	_ [56]byte
}

type readIndicator [stripes]paddedCounter

func (ri *readIndicator) empty() bool {
	for i := range ri {
		if ri[i].n.Load() != 0 {
			return false
		}
	}
	return true
}

// waitEmpty waits for the readers counted on ri to leave. Lookups are
// short; the writer yields while it waits.
func waitEmpty(ri *readIndicator) {
	for !ri.empty() {
		runtime.Gosched()
	}
}

type leftRight struct {
	versionIndex atomic.Uint32
	leftRight    atomic.Uint32
	_            [56]byte
	ri           [2]readIndicator
}

// arrive registers a reader and returns the counter to release and the
// table side to read.
func (lr *leftRight) arrive(stripe uint32) (*atomic.Int64, int) {
	c := &lr.ri[lr.versionIndex.Load()&1][stripe%stripes].n
	c.Add(1)
	return c, int(lr.leftRight.Load() & 1)
}

// flip points readers at side next and waits until none is left on the
// other side.
func (lr *leftRight) flip(next int) {
	lr.leftRight.Store(uint32(next))
	prev := lr.versionIndex.Load() & 1
	waitEmpty(&lr.ri[prev^1])
	lr.versionIndex.Store(prev ^ 1)
	waitEmpty(&lr.ri[prev])
}

// stripeHint returns a stripe that stays the same for the calling goroutine
// and differs between goroutines: a hash of where its stack is. A reader
// that keeps its stripe keeps its counter's cache line to itself. (The
// address is only hashed, never turned back into a pointer.)
func stripeHint() uint32 {
	var x byte
	a := uint64(uintptr(unsafe.Pointer(&x)))
	return uint32((a >> 13) * 0x9e3779b97f4a7c15 >> 58)
}
