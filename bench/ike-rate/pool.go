package ikerate

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sync"
)

// ErrPoolExhausted is returned when every address of a Pool is taken.
var ErrPoolExhausted = errors.New("ikerate: address pool exhausted")

// Pool hands out virtual IPs as the hub would: an IPv4 and an IPv6
// address of the same index, one pair per IKE SA. Its bookkeeping is one
// bit per address, so it adds next to nothing to the heap measured per SA.
// It is safe for concurrent use.
type Pool struct {
	v4, v6 netip.Prefix
	size   int

	mu   sync.Mutex // guards the following
	used []uint64   // bit i set: index i is handed out
	next int        // where the search for a free index starts
	n    int        // indexes handed out
}

// NewPool returns a pool over v4 and v6 (either may be the zero Prefix when
// that family is not handed out). Its size is that of the smaller prefix,
// at most 1<<20 addresses; the first address (index 0) is not used.
func NewPool(v4, v6 netip.Prefix) (*Pool, error) {
	if !v4.IsValid() && !v6.IsValid() {
		return nil, errors.New("ikerate: pool without a prefix")
	}
	size := 1 << 20
	for _, p := range []netip.Prefix{v4, v6} {
		if !p.IsValid() {
			continue
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("ikerate: pool prefix %v has host bits", p)
		}
		if hb := p.Addr().BitLen() - p.Bits(); hb < 20 {
			size = min(size, 1<<hb)
		}
	}
	if v4.IsValid() && !v4.Addr().Is4() || v6.IsValid() && !v6.Addr().Is6() {
		return nil, errors.New("ikerate: pool prefixes of the wrong family")
	}
	if size < 2 {
		return nil, errors.New("ikerate: pool too small")
	}
	return &Pool{v4: v4, v6: v6, size: size, used: make([]uint64, (size+63)/64)}, nil
}

// Size is the number of address pairs the pool can hand out.
func (p *Pool) Size() int { return p.size - 1 }

// InUse is the number of address pairs handed out.
func (p *Pool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// Assign picks a free index and returns the addresses of the families in
// requested (an unspecified address asks for any of its family; a specific
// one is treated the same way, as strongSwan's pools do for addresses they
// cannot honour). It fails when the pool is full or nothing it serves was
// asked for.
func (p *Pool) Assign(requested []netip.Addr) ([]netip.Prefix, error) {
	want4, want6 := false, false
	for _, a := range requested {
		if a.Is4() && p.v4.IsValid() {
			want4 = true
		}
		if a.Is6() && p.v6.IsValid() {
			want6 = true
		}
	}
	if !want4 && !want6 {
		return nil, errors.New("ikerate: no address family of the pool requested")
	}
	i, err := p.take()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, 2)
	if want4 {
		out = append(out, netip.PrefixFrom(addrAt(p.v4.Addr(), i), 32))
	}
	if want6 {
		out = append(out, netip.PrefixFrom(addrAt(p.v6.Addr(), i), 128))
	}
	return out, nil
}

// Release gives back what Assign handed out. Addresses outside the pool
// and indexes not in use are ignored.
func (p *Pool) Release(addrs []netip.Prefix) {
	for _, a := range addrs {
		var base netip.Prefix
		switch {
		case p.v4.IsValid() && p.v4.Contains(a.Addr()):
			base = p.v4
		case p.v6.IsValid() && p.v6.Contains(a.Addr()):
			base = p.v6
		default:
			continue
		}
		i := indexOf(base.Addr(), a.Addr())
		if i <= 0 || i >= p.size {
			continue
		}
		p.mu.Lock()
		if p.used[i/64]&(1<<(i%64)) != 0 {
			p.used[i/64] &^= 1 << (i % 64)
			p.n--
		}
		p.mu.Unlock()
	}
}

// take marks the next free index used (index 0, the network address,
// never).
func (p *Pool) take() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n >= p.size-1 {
		return 0, ErrPoolExhausted
	}
	for range len(p.used) + 1 {
		if p.next >= p.size {
			p.next = 1
		}
		if p.next == 0 {
			p.next = 1
		}
		w := p.next / 64
		free := ^p.used[w] &^ (1<<(p.next%64) - 1)
		if free != 0 {
			i := w*64 + bits.TrailingZeros64(free)
			if i < p.size {
				p.used[w] |= 1 << (i % 64)
				p.n++
				p.next = i + 1
				return i, nil
			}
		}
		p.next = (w + 1) * 64
	}
	return 0, ErrPoolExhausted
}

// addrAt is base + i (i < 1<<20, so only the low 32 bits change).
func addrAt(base netip.Addr, i int) netip.Addr {
	b := base.As16()
	carry := uint32(i)
	for k := 15; k >= 0 && carry != 0; k-- {
		s := uint32(b[k]) + carry&0xff
		b[k] = byte(s)
		carry = carry>>8 + s>>8
	}
	a := netip.AddrFrom16(b)
	if base.Is4() {
		return a.Unmap()
	}
	return a
}

// indexOf is a - base for a inside a pool prefix; -1 when it does not fit
// in an int of 32 bits.
func indexOf(base, a netip.Addr) int {
	x, y := base.As16(), a.As16()
	var borrow int
	var d [16]byte
	for k := 15; k >= 0; k-- {
		v := int(y[k]) - int(x[k]) - borrow
		borrow = 0
		if v < 0 {
			v += 256
			borrow = 1
		}
		d[k] = byte(v)
	}
	for k := 0; k < 12; k++ {
		if d[k] != 0 {
			return -1
		}
	}
	return int(d[12])<<24 | int(d[13])<<16 | int(d[14])<<8 | int(d[15])
}
