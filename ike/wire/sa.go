package wire

import (
	"golang.org/x/crypto/cryptobyte"

	"github.com/mpsa-vpn/mpsa/transform"
)

// SA is the Security Association payload (RFC 7296 §3.3): a list of
// proposals, each a protocol with an SPI and a set of transforms.
type SA struct {
	Proposals []Proposal
}

// Proposal is a Proposal substructure (RFC 7296 §3.3.1):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Last Substruc |   RESERVED    |         Proposal Length       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                        SPI (variable)                         ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                        <Transforms>                           ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Proposal struct {
	Num        uint8
	Protocol   ProtocolID
	SPI        []byte // empty in IKE_SA_INIT, 8 octets for an IKE rekey, 4 for ESP/AH
	Transforms []Transform
}

// Transform is a Transform substructure (RFC 7296 §3.3.2):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Last Substruc |   RESERVED    |        Transform Length       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Transform Type |   RESERVED    |          Transform ID         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                      Transform Attributes                     ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Transform struct {
	Type  transform.Type
	ID    uint16
	Attrs []Attribute
}

// Attribute is a transform attribute (RFC 7296 §3.3.5). TV attributes (the
// AF bit set) carry a 16-bit Value; TLV attributes carry Data.
type Attribute struct {
	Type  uint16 // 15 bits
	TV    bool
	Value uint16
	Data  []byte
}

// KeyLength returns the Key Length attribute in bits, if present.
func (t *Transform) KeyLength() (uint16, bool) {
	for _, a := range t.Attrs {
		if a.Type == transform.AttrKeyLength && a.TV {
			return a.Value, true
		}
	}
	return 0, false
}

// NewTransform returns a transform with a Key Length attribute when keyBits
// is not zero.
func NewTransform(t transform.Type, id uint16, keyBits uint16) Transform {
	tr := Transform{Type: t, ID: id}
	if keyBits != 0 {
		tr.Attrs = []Attribute{{Type: transform.AttrKeyLength, TV: true, Value: keyBits}}
	}
	return tr
}

// Substructure markers (Last Substruc field).
const (
	lastSubstruc     = 0
	moreProposals    = 2
	moreTransforms   = 3
	proposalHdrLen   = 8
	transformHdrLen  = 8
	attrFormatTV     = 0x8000
	attrTypeMask     = 0x7fff
	maxAttrsPerTrans = 16
)

// Type implements Payload.
func (p *SA) Type() PayloadType { return PayloadSA }

func (p *SA) marshal(b *builder) {
	for i := range p.Proposals {
		pr := &p.Proposals[i]
		last := uint8(moreProposals)
		if i == len(p.Proposals)-1 {
			last = lastSubstruc
		}
		if len(pr.SPI) > 255 || len(pr.Transforms) > 255 {
			b.SetError(ErrTooLarge)
			return
		}
		b.AddUint8(last)
		b.AddUint8(0)
		addLength16(b, 4, func(b *builder) {
			b.AddUint8(pr.Num)
			b.AddUint8(uint8(pr.Protocol))
			b.AddUint8(uint8(len(pr.SPI)))
			b.AddUint8(uint8(len(pr.Transforms)))
			b.AddBytes(pr.SPI)
			for j := range pr.Transforms {
				tr := &pr.Transforms[j]
				last := uint8(moreTransforms)
				if j == len(pr.Transforms)-1 {
					last = lastSubstruc
				}
				b.AddUint8(last)
				b.AddUint8(0)
				addLength16(b, 4, func(b *builder) {
					b.AddUint8(uint8(tr.Type))
					b.AddUint8(0)
					b.AddUint16(tr.ID)
					for _, a := range tr.Attrs {
						a.marshal(b)
					}
				})
			}
		})
	}
}

func (a *Attribute) marshal(b *builder) {
	if a.TV {
		b.AddUint16(attrFormatTV | a.Type&attrTypeMask)
		b.AddUint16(a.Value)
		return
	}
	b.AddUint16(a.Type & attrTypeMask)
	b.AddUint16LengthPrefixed(func(b *builder) { b.AddBytes(a.Data) })
}

func (p *SA) unmarshal(s cryptobyte.String) error {
	p.Proposals = nil
	for !s.Empty() {
		var last, res uint8
		var plen uint16
		var body cryptobyte.String
		if !s.ReadUint8(&last) || !s.ReadUint8(&res) || !s.ReadUint16(&plen) ||
			plen < proposalHdrLen || !s.ReadBytes((*[]byte)(&body), int(plen)-4) {
			return syntaxError("truncated proposal")
		}
		if (last == lastSubstruc) != s.Empty() || (last != lastSubstruc && last != moreProposals) {
			return syntaxError("bad Last Substruc %d in proposal", last)
		}
		var pr Proposal
		var proto, spiSize, nTrans uint8
		if !body.ReadUint8(&pr.Num) || !body.ReadUint8(&proto) || !body.ReadUint8(&spiSize) ||
			!body.ReadUint8(&nTrans) || !body.ReadBytes(&pr.SPI, int(spiSize)) {
			return syntaxError("truncated proposal header")
		}
		pr.Protocol = ProtocolID(proto)
		if err := pr.unmarshalTransforms(body, int(nTrans)); err != nil {
			return err
		}
		p.Proposals = append(p.Proposals, pr)
	}
	if len(p.Proposals) == 0 {
		return syntaxError("SA without proposals")
	}
	return nil
}

func (pr *Proposal) unmarshalTransforms(s cryptobyte.String, n int) error {
	// Each transform takes at least 8 octets: bound the allocation by both.
	if n*transformHdrLen > len(s) {
		return syntaxError("proposal announces %d transforms in %d octets", n, len(s))
	}
	pr.Transforms = make([]Transform, 0, n)
	for !s.Empty() {
		var last, res, ttype, res2 uint8
		var tlen uint16
		var body cryptobyte.String
		var tr Transform
		if !s.ReadUint8(&last) || !s.ReadUint8(&res) || !s.ReadUint16(&tlen) ||
			tlen < transformHdrLen || !s.ReadBytes((*[]byte)(&body), int(tlen)-4) ||
			!body.ReadUint8(&ttype) || !body.ReadUint8(&res2) || !body.ReadUint16(&tr.ID) {
			return syntaxError("truncated transform")
		}
		if (last == lastSubstruc) != s.Empty() || (last != lastSubstruc && last != moreTransforms) {
			return syntaxError("bad Last Substruc %d in transform", last)
		}
		tr.Type = transform.Type(ttype)
		for !body.Empty() {
			if len(tr.Attrs) == maxAttrsPerTrans {
				return syntaxError("more than %d transform attributes", maxAttrsPerTrans)
			}
			var a Attribute
			var t uint16
			if !body.ReadUint16(&t) {
				return syntaxError("truncated transform attribute")
			}
			a.Type = t & attrTypeMask
			if t&attrFormatTV != 0 {
				a.TV = true
				if !body.ReadUint16(&a.Value) {
					return syntaxError("truncated transform attribute")
				}
			} else if !body.ReadUint16LengthPrefixed((*cryptobyte.String)(&a.Data)) {
				return syntaxError("truncated transform attribute")
			}
			tr.Attrs = append(tr.Attrs, a)
		}
		pr.Transforms = append(pr.Transforms, tr)
	}
	if len(pr.Transforms) != n {
		return syntaxError("proposal announces %d transforms, carries %d", n, len(pr.Transforms))
	}
	return nil
}
