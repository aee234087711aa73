package wire

import (
	"fmt"
	"net/netip"

	"golang.org/x/crypto/cryptobyte"
)

// TS is the TSi or TSr payload (RFC 7296 §3.13):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Number of TSs |                 RESERVED                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                       <Traffic Selectors>                     ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Responder selects TSr over TSi.
type TS struct {
	Responder bool
	Selectors []Selector
}

// Selector is one traffic selector (RFC 7296 §3.13.1):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   TS Type     |IP Protocol ID*|       Selector Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Start Port*         |           End Port*           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                         Starting Address*                     ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                         Ending Address*                       ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The TS type follows from the address family: Start and End must both be
// IPv4 (TS_IPV4_ADDR_RANGE) or both IPv6 (TS_IPV6_ADDR_RANGE). IPProto 0
// means any protocol; ports 0-65535 any port.
type Selector struct {
	IPProto   uint8
	StartPort uint16
	EndPort   uint16
	Start     netip.Addr
	End       netip.Addr
}

// SelectorFromPrefix returns the selector covering every address of p, any
// protocol and port.
func SelectorFromPrefix(p netip.Prefix) Selector {
	p = p.Masked()
	start := p.Addr()
	end := start.AsSlice()
	bits := p.Bits()
	for i := range end {
		for bit := 0; bit < 8; bit++ {
			if i*8+bit >= bits {
				end[i] |= 0x80 >> bit
			}
		}
	}
	e, _ := netip.AddrFromSlice(end)
	return Selector{StartPort: 0, EndPort: 0xffff, Start: start, End: e}
}

// TSType returns the selector's type.
func (s Selector) TSType() TSType {
	if s.Start.Is4() {
		return TSIPv4Range
	}
	return TSIPv6Range
}

func (s Selector) String() string {
	r := fmt.Sprintf("%v-%v", s.Start, s.End)
	if s.IPProto != 0 || s.StartPort != 0 || s.EndPort != 0xffff {
		r += fmt.Sprintf("[%d/%d-%d]", s.IPProto, s.StartPort, s.EndPort)
	}
	return r
}

// Type implements Payload.
func (p *TS) Type() PayloadType {
	if p.Responder {
		return PayloadTSr
	}
	return PayloadTSi
}

func (p *TS) marshal(b *builder) {
	if len(p.Selectors) > 255 {
		b.SetError(ErrTooLarge)
		return
	}
	b.AddUint8(uint8(len(p.Selectors)))
	b.AddBytes([]byte{0, 0, 0})
	for _, s := range p.Selectors {
		if !s.Start.IsValid() || s.Start.Is4() != s.End.Is4() || s.Start.Is4In6() || s.End.Is4In6() {
			b.SetError(fmt.Errorf("ike/wire: traffic selector %v: mixed or invalid addresses", s))
			return
		}
		b.AddUint8(uint8(s.TSType()))
		b.AddUint8(s.IPProto)
		addLength16(b, 4, func(b *builder) {
			b.AddUint16(s.StartPort)
			b.AddUint16(s.EndPort)
			b.AddBytes(s.Start.AsSlice())
			b.AddBytes(s.End.AsSlice())
		})
	}
}

func (p *TS) unmarshal(s cryptobyte.String) error {
	var n uint8
	if !s.ReadUint8(&n) || !s.Skip(3) {
		return syntaxError("truncated TS")
	}
	// A selector takes at least 16 octets: bound the allocation.
	if int(n)*16 > len(s) {
		return syntaxError("TS announces %d selectors in %d octets", n, len(s))
	}
	p.Selectors = make([]Selector, 0, n)
	for i := 0; i < int(n); i++ {
		var t uint8
		var sel Selector
		var slen uint16
		var body cryptobyte.String
		if !s.ReadUint8(&t) || !s.ReadUint8(&sel.IPProto) || !s.ReadUint16(&slen) ||
			slen < 8 || !s.ReadBytes((*[]byte)(&body), int(slen)-4) ||
			!body.ReadUint16(&sel.StartPort) || !body.ReadUint16(&sel.EndPort) {
			return syntaxError("truncated traffic selector")
		}
		alen := 0
		switch TSType(t) {
		case TSIPv4Range:
			alen = 4
		case TSIPv6Range:
			alen = 16
		default:
			return syntaxError("traffic selector type %d", t)
		}
		var a, e []byte
		if !body.ReadBytes(&a, alen) || !body.ReadBytes(&e, alen) || !body.Empty() {
			return syntaxError("traffic selector of %d octets for type %d", slen, t)
		}
		sel.Start, _ = netip.AddrFromSlice(a)
		sel.End, _ = netip.AddrFromSlice(e)
		p.Selectors = append(p.Selectors, sel)
	}
	if !s.Empty() {
		return syntaxError("%d octets after the traffic selectors", len(s))
	}
	return nil
}
