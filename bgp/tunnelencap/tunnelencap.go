// Package tunnelencap encodes and decodes the ESP endpoint that mpsa carries
// in the BGP Tunnel Encapsulation attribute (RFC 9012, path attribute 23).
//
// # What goes on the wire
//
// A route advertised by a CPE carries exactly one Tunnel TLV (FRR 8.4 resets
// the session on two TLVs or on extended-length sub-TLVs, so we keep to one
// TLV and sub-TLV types below 128):
//
//	Tunnel TLV   type TunnelType (25), 2-octet length
//	  sub-TLV 6  Tunnel Egress Endpoint: Reserved (4 octets, zero),
//	             Address Family (1 = IPv4, 2 = IPv6), Address  (RFC 9012 §3.1)
//	  sub-TLV 8  UDP Destination Port, 2 octets; only when the endpoint
//	             receives ESP in UDP (RFC 3948), normally 4500  (RFC 9012 §3.3.2)
//
// No sub-TLV carries keys or SPIs: every CPE of a group uses the group's
// multi-point SA (draft-yamaya-ipsecme-mpsa), keyed through IKE.
//
// # Tunnel type codepoint
//
// RFC 9012 deprecated the IPsec tunnel types 3-6 of RFC 5566, and its IANA
// registry of tunnel types has no experimental range (every value is First
// Come First Served). We use 25, "SD-WAN-Hybrid", the codepoint IANA assigned
// to draft-ietf-idr-sdwan-edge-discovery: that draft describes the same
// arrangement as ours (edge routers behind a route reflector advertise the
// underlay address at which they terminate IPsec tunnels to peers of the
// same overlay). We use only the generic RFC 9012 sub-TLVs 6 and 8 with it,
// not the draft's IPsec SA sub-TLVs, because keys come from MPSA. The value
// is the constant TunnelType; changing it is a one-line change here.
//
// # Reading
//
// Decode looks for the first TLV of TunnelType and ignores TLVs of other
// tunnel types and sub-TLVs it does not know (RFC 9012 §13). A TLV of our type
// without an egress endpoint sub-TLV, or with address family 0, names no
// address: Endpoint then has no address and the caller uses the route's
// NEXT_HOP, which is also how routes from speakers that do not send the
// attribute at all resolve (the RFC 5565 softwire-mesh model). A structural
// error anywhere in the attribute, or a malformed egress endpoint or UDP
// port sub-TLV in our TLV, makes the attribute malformed; the caller treats
// the route as withdrawn (RFC 7606 §2, as RFC 9012 §13 asks).
package tunnelencap

import (
	"errors"
	"net/netip"

	"golang.org/x/crypto/cryptobyte"
)

// Specification numbers.
const (
	// AttrType is the BGP path attribute type code of the Tunnel
	// Encapsulation attribute (RFC 9012 §2).
	AttrType = 23
	// AttrFlags are the attribute's flags: optional, transitive.
	AttrFlags = 0xC0
	// attrFlagExtended is the Extended Length flag (RFC 4271 §4.3).
	attrFlagExtended = 0x10

	subTLVEgressEndpoint = 6 // RFC 9012 §3.1
	subTLVUDPDestPort    = 8 // RFC 9012 §3.3.2

	afiIPv4 = 1
	afiIPv6 = 2
)

// TunnelType is the tunnel type mpsa emits and reads: 25, SD-WAN-Hybrid
// (see the package comment for why).
const TunnelType uint16 = 25

// MaxValueLen bounds the attribute value we build; the attribute always fits
// in a 4096-octet BGP message.
const MaxValueLen = 4 + 2 + 2 + 4 + 2 + 16 + 2 + 2

// Errors. ErrMalformed wraps every decode failure.
var (
	ErrMalformed = errors.New("tunnelencap: malformed Tunnel Encapsulation attribute")
	ErrEndpoint  = errors.New("tunnelencap: endpoint has no valid address")
)

// Endpoint is the ESP endpoint of a route: the egress address and the UDP
// destination port (0 = raw ESP, IP protocol 50). An Endpoint with no
// address means "the route's NEXT_HOP".
type Endpoint = netip.AddrPort

// AppendValue appends the attribute value (the Tunnel TLV, without the
// attribute header) that advertises ep to b. ep must have a valid address;
// a zone is dropped and an IPv4-mapped IPv6 address is sent as IPv4.
func AppendValue(b []byte, ep Endpoint) ([]byte, error) {
	addr := ep.Addr().Unmap().WithZone("")
	if !addr.IsValid() || addr.IsUnspecified() {
		return b, ErrEndpoint
	}
	var bld cryptobyte.Builder
	bld.AddUint16(TunnelType)
	bld.AddUint16LengthPrefixed(func(tlv *cryptobyte.Builder) {
		tlv.AddUint8(subTLVEgressEndpoint)
		tlv.AddUint8LengthPrefixed(func(s *cryptobyte.Builder) {
			s.AddUint32(0) // Reserved
			if addr.Is4() {
				s.AddUint16(afiIPv4)
			} else {
				s.AddUint16(afiIPv6)
			}
			s.AddBytes(addr.AsSlice())
		})
		if ep.Port() != 0 {
			tlv.AddUint8(subTLVUDPDestPort)
			tlv.AddUint8LengthPrefixed(func(s *cryptobyte.Builder) {
				s.AddUint16(ep.Port())
			})
		}
	})
	v, err := bld.Bytes()
	if err != nil {
		return b, err
	}
	return append(b, v...), nil
}

// AppendAttribute appends the whole path attribute (flags, type 23, length,
// value) advertising ep to b.
func AppendAttribute(b []byte, ep Endpoint) ([]byte, error) {
	v, err := AppendValue(nil, ep)
	if err != nil {
		return b, err
	}
	return append(append(b, AttrFlags, AttrType, byte(len(v))), v...), nil
}

// Decode reads an attribute value (without the attribute header). found is
// false when the attribute holds no TLV of TunnelType; then the route is
// treated as if the attribute were absent. When found is true, ep is the
// endpoint; an ep without address means "use the NEXT_HOP". Any error wraps
// ErrMalformed.
func Decode(value []byte) (ep Endpoint, found bool, err error) {
	s := cryptobyte.String(value)
	for !s.Empty() {
		var typ uint16
		var body cryptobyte.String
		if !s.ReadUint16(&typ) || !s.ReadUint16LengthPrefixed(&body) {
			return Endpoint{}, false, malformed("truncated tunnel TLV")
		}
		subs, err := readSubTLVs(body)
		if err != nil {
			return Endpoint{}, false, err
		}
		if typ != TunnelType || found {
			continue // other tunnel types are not ours; first TLV of ours wins
		}
		found = true
		ep, err = subs.endpoint()
		if err != nil {
			return Endpoint{}, false, err
		}
	}
	return ep, found, nil
}

// subTLVs holds the raw values of the sub-TLVs we understand; the first
// occurrence of each wins.
type subTLVs struct {
	egress, port       []byte
	hasEgress, hasPort bool
}

// readSubTLVs checks the framing of every sub-TLV of one Tunnel TLV
// (1-octet length below type 128, 2-octet length from 128, RFC 9012 §2).
func readSubTLVs(body cryptobyte.String) (subTLVs, error) {
	var out subTLVs
	for !body.Empty() {
		var typ uint8
		var val cryptobyte.String
		if !body.ReadUint8(&typ) {
			return out, malformed("truncated sub-TLV")
		}
		var ok bool
		if typ < 128 {
			ok = body.ReadUint8LengthPrefixed(&val)
		} else {
			ok = body.ReadUint16LengthPrefixed(&val)
		}
		if !ok {
			return out, malformed("sub-TLV length exceeds its TLV")
		}
		switch typ {
		case subTLVEgressEndpoint:
			if !out.hasEgress {
				out.egress, out.hasEgress = val, true
			}
		case subTLVUDPDestPort:
			if !out.hasPort {
				out.port, out.hasPort = val, true
			}
		}
	}
	return out, nil
}

func (st subTLVs) endpoint() (Endpoint, error) {
	var addr netip.Addr
	if st.hasEgress {
		s := cryptobyte.String(st.egress)
		var afi uint16
		if !s.Skip(4) || !s.ReadUint16(&afi) {
			return Endpoint{}, malformed("short egress endpoint sub-TLV")
		}
		switch {
		case afi == 0 && s.Empty():
			// No address: the NEXT_HOP is the endpoint.
		case afi == afiIPv4 && len(s) == 4:
			addr = netip.AddrFrom4([4]byte(s))
		case afi == afiIPv6 && len(s) == 16:
			addr = netip.AddrFrom16([16]byte(s))
			if addr.Is4In6() {
				return Endpoint{}, malformed("IPv4-mapped egress endpoint")
			}
		default:
			return Endpoint{}, malformed("egress endpoint address family or length")
		}
		if addr.IsValid() && (addr.IsUnspecified() || addr.IsMulticast()) {
			return Endpoint{}, malformed("egress endpoint is not a unicast address")
		}
	}
	var port uint16
	if st.hasPort {
		if len(st.port) != 2 {
			return Endpoint{}, malformed("UDP destination port sub-TLV length")
		}
		port = uint16(st.port[0])<<8 | uint16(st.port[1])
	}
	return netip.AddrPortFrom(addr, port), nil
}

// Resolve combines a decoded attribute with the route's NEXT_HOP: the
// endpoint's address when it has one, otherwise the NEXT_HOP (unmapped) with
// the endpoint's port. It returns an Endpoint with no address when neither
// names a usable unicast address.
func Resolve(ep Endpoint, nextHop netip.Addr) Endpoint {
	if ep.Addr().IsValid() {
		return ep
	}
	nh := nextHop.Unmap()
	if !nh.IsValid() || nh.IsUnspecified() || nh.IsMulticast() {
		return Endpoint{}
	}
	return netip.AddrPortFrom(nh, ep.Port())
}

// FindAttribute scans raw BGP path attributes (the Path Attributes field of
// an UPDATE, RFC 4271 §4.3) for attribute 23 and returns its value. The scan
// only follows attribute headers; ok is false if the framing is broken.
func FindAttribute(attrs []byte) (value []byte, present, ok bool) {
	for len(attrs) > 0 {
		if len(attrs) < 3 {
			return nil, false, false
		}
		flags, typ := attrs[0], attrs[1]
		hdr, n := 3, int(attrs[2])
		if flags&attrFlagExtended != 0 {
			if len(attrs) < 4 {
				return nil, false, false
			}
			hdr, n = 4, int(attrs[2])<<8|int(attrs[3])
		}
		if len(attrs) < hdr+n {
			return nil, false, false
		}
		if typ == AttrType && !present {
			value, present = attrs[hdr:hdr+n], true
		}
		attrs = attrs[hdr+n:]
	}
	return value, present, true
}

type malformedError string

func (e malformedError) Error() string { return ErrMalformed.Error() + ": " + string(e) }
func (e malformedError) Unwrap() error { return ErrMalformed }

func malformed(why string) error { return malformedError(why) }
