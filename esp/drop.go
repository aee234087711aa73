package esp

import "sync/atomic"

// Drop says why a packet was dropped. The zero value means "not dropped".
// Its String is the reason name exported in dataplane.Stats.Drops.
type Drop uint8

// Drop reasons.
const (
	DropNone         Drop = iota
	DropMalformed         // too short, misaligned, bad inner header, unknown next header
	DropUnknownSPI        // no inbound SA has this SPI
	DropBadICV            // integrity check failed
	DropBadPadding        // padding bytes or length wrong (RFC 4303 §2.4)
	DropReplay            // sequence number seen or left of the window
	DropSelector          // inner addresses outside the SA's traffic selectors
	DropNoRoute           // no FIB route for the inner destination
	DropNoSA              // route's tunnel has no outbound SA
	DropSeqExhausted      // outbound sequence numbers used up: rekey first
	DropDummy             // dummy packet (next header 59, RFC 4303 §2.6)
	DropTooBig            // inner packet does not fit the buffer
	DropOverload          // queue full
	DropNotIP             // inner packet is neither IPv4 nor IPv6
	DropTUNWrite          // the TUN refused a batch of inner packets
	numDrops
)

var dropNames = [numDrops]string{
	DropNone:         "none",
	DropMalformed:    "malformed",
	DropUnknownSPI:   "unknown_spi",
	DropBadICV:       "bad_icv",
	DropBadPadding:   "bad_padding",
	DropReplay:       "replay",
	DropSelector:     "selector",
	DropNoRoute:      "no_route",
	DropNoSA:         "no_sa",
	DropSeqExhausted: "seq_exhausted",
	DropDummy:        "dummy",
	DropTooBig:       "too_big",
	DropOverload:     "overload",
	DropNotIP:        "not_ip",
	DropTUNWrite:     "tun_write",
}

func (d Drop) String() string {
	if d < numDrops {
		return dropNames[d]
	}
	return "unknown"
}

// Counters counts drops by reason without allocating. The zero value is
// ready; it is safe for concurrent use.
type Counters struct {
	c [numDrops]atomic.Uint64
}

// Add counts one packet dropped for d (DropNone is ignored).
func (c *Counters) Add(d Drop) {
	if d != DropNone && d < numDrops {
		c.c[d].Add(1)
	}
}

// AddN counts n packets dropped for d.
func (c *Counters) AddN(d Drop, n uint64) {
	if d != DropNone && d < numDrops {
		c.c[d].Add(n)
	}
}

// Get returns the count for d.
func (c *Counters) Get(d Drop) uint64 {
	if d >= numDrops {
		return 0
	}
	return c.c[d].Load()
}

// Map returns the non-zero counters by reason name.
func (c *Counters) Map() map[string]uint64 {
	m := make(map[string]uint64)
	for d := DropMalformed; d < numDrops; d++ {
		if v := c.c[d].Load(); v != 0 {
			m[d.String()] = v
		}
	}
	return m
}
