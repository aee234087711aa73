// Package replay is the ESP anti-replay window (RFC 4303 §3.4.3) as a bitmap
// ring in the style of RFC 6479: a window of W packets costs W bits and one
// check is a few shifts, with no per-packet shifting of the whole bitmap.
//
// A receiver asks Check before it spends work on a packet and calls Update
// only after the packet's ICV verified: the window moves only for
// authenticated packets, so forged sequence numbers cannot push it forward
// (RFC 4303 §3.4.3: "the receive window is updated only if the integrity
// verification succeeds").
package replay

const (
	blockBitLog = 6                // 1<<6 == 64 bits
	blockBits   = 1 << blockBitLog // bits per ring block
	ringBlocks  = 1 << 6           // ring size in blocks, a power of 2
	bitMask     = blockBits - 1
	blockMask   = ringBlocks - 1

	// MaxWindow is the largest window a Filter keeps: the oldest and the
	// newest counter of a full window are at most ringBlocks-1 blocks apart,
	// so the block cleared for a new counter never holds a live bit.
	MaxWindow = (ringBlocks-1)*blockBits + 1
)

// Filter is one anti-replay window. The zero value is not ready: call Init.
// A Filter is not safe for concurrent use; its owner serialises access.
type Filter struct {
	last   uint64 // highest counter accepted so far (0: none yet)
	window uint64
	ring   [ringBlocks]uint64
}

// Init empties the filter and sets its window in packets, capped at
// MaxWindow. A window below 1 is taken as 1.
func (f *Filter) Init(window int) {
	*f = Filter{}
	switch {
	case window < 1:
		f.window = 1
	case window > MaxWindow:
		f.window = MaxWindow
	default:
		f.window = uint64(window)
	}
}

// Window returns the window size in packets.
func (f *Filter) Window() int { return int(f.window) }

// Check reports whether counter would be accepted now, without changing the
// filter. Counter 0 is never valid: ESP's first sequence number is 1.
func (f *Filter) Check(counter uint64) bool {
	if counter == 0 {
		return false
	}
	if counter > f.last {
		return true
	}
	if f.last-counter >= f.window {
		return false // too old: left of the window
	}
	return f.ring[(counter>>blockBitLog)&blockMask]&(1<<(counter&bitMask)) == 0
}

// Update records counter as received and reports whether it was new and
// inside the window. Call it only for packets whose ICV verified.
func (f *Filter) Update(counter uint64) bool {
	if counter == 0 {
		return false
	}
	index := counter >> blockBitLog
	if counter > f.last { // move the window forward, clearing skipped blocks
		current := f.last >> blockBitLog
		diff := index - current
		if diff > ringBlocks {
			diff = ringBlocks
		}
		for i := current + 1; i <= current+diff; i++ {
			f.ring[i&blockMask] = 0
		}
		f.last = counter
	} else if f.last-counter >= f.window {
		return false
	}
	bit := uint64(1) << (counter & bitMask)
	b := &f.ring[index&blockMask]
	if *b&bit != 0 {
		return false
	}
	*b |= bit
	return true
}

// Last returns the highest counter accepted so far.
func (f *Filter) Last() uint64 { return f.last }
