package wire

import (
	"net/netip"

	"golang.org/x/crypto/cryptobyte"
)

// CP is the Configuration payload (RFC 7296 §3.15):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   CFG Type    |                    RESERVED                   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                   Configuration Attributes                    ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// each attribute being
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|R|         Attribute Type      |            Length             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                             Value                             ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type CP struct {
	CfgType CfgType
	Attrs   []CfgAttr
}

// CfgAttr is one configuration attribute. An empty Value in a request asks
// for any value of that type.
type CfgAttr struct {
	Type  CfgAttrType // 15 bits
	Value []byte
}

// maxCfgAttrs bounds the attributes of one CP payload.
const maxCfgAttrs = 64

// Type implements Payload.
func (p *CP) Type() PayloadType { return PayloadCP }

func (p *CP) marshal(b *builder) {
	b.AddUint8(uint8(p.CfgType))
	b.AddBytes([]byte{0, 0, 0})
	for _, a := range p.Attrs {
		b.AddUint16(uint16(a.Type) & 0x7fff)
		b.AddUint16LengthPrefixed(func(b *builder) { b.AddBytes(a.Value) })
	}
}

func (p *CP) unmarshal(s cryptobyte.String) error {
	var t uint8
	if !s.ReadUint8(&t) || !s.Skip(3) {
		return syntaxError("truncated CP")
	}
	p.CfgType, p.Attrs = CfgType(t), nil
	for !s.Empty() {
		if len(p.Attrs) == maxCfgAttrs {
			return syntaxError("more than %d configuration attributes", maxCfgAttrs)
		}
		var at uint16
		var a CfgAttr
		if !s.ReadUint16(&at) || !s.ReadUint16LengthPrefixed((*cryptobyte.String)(&a.Value)) {
			return syntaxError("truncated configuration attribute")
		}
		a.Type = CfgAttrType(at & 0x7fff)
		p.Attrs = append(p.Attrs, a)
	}
	return nil
}

// Addr returns the address in an INTERNAL_IP4_ADDRESS (4 octets) or
// INTERNAL_IP6_ADDRESS (16 octets plus a prefix length octet, RFC 7296
// §3.15.1) attribute. ok is false for an empty (requesting) or malformed value.
func (a CfgAttr) Addr() (netip.Prefix, bool) {
	switch {
	case a.Type == AttrInternalIP4Address && len(a.Value) == 4:
		ad, _ := netip.AddrFromSlice(a.Value)
		return netip.PrefixFrom(ad, 32), true
	case a.Type == AttrInternalIP6Address && len(a.Value) == 17 && a.Value[16] <= 128:
		ad, _ := netip.AddrFromSlice(a.Value[:16])
		return netip.PrefixFrom(ad, int(a.Value[16])), true
	}
	return netip.Prefix{}, false
}

// AddrAttr returns the INTERNAL_IP4_ADDRESS or INTERNAL_IP6_ADDRESS attribute
// for p (an IPv4 prefix length is not sent; INTERNAL_IP4_NETMASK would carry it).
func AddrAttr(p netip.Prefix) CfgAttr {
	a := p.Addr()
	if a.Is4() {
		return CfgAttr{Type: AttrInternalIP4Address, Value: a.AsSlice()}
	}
	return CfgAttr{Type: AttrInternalIP6Address, Value: append(a.AsSlice(), byte(p.Bits()))}
}
