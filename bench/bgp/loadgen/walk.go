package loadgen

import (
	"encoding/binary"
	"errors"

	"github.com/mpsa-vpn/mpsa/bgp/tunnelencap"
)

// Walking an UPDATE for counting: the counting load generator does not
// decode received UPDATEs into paths, it only needs the prefixes announced
// and withdrawn (IPv4 unicast in the body, IPv4/IPv6 unicast in
// MP_REACH_NLRI / MP_UNREACH_NLRI), End-of-RIB markers and whether the
// Tunnel Encapsulation attribute came along. WalkUpdate does that without
// allocating. No ADD-PATH: the load generator never offers it.

// Path attribute type codes (RFC 4271 §5, RFC 4760; the Tunnel
// Encapsulation attribute's is tunnelencap.AttrType).
const (
	attrMPReach   = 14
	attrMPUnreach = 15
	attrExtended  = 0x10

	afiIPv4     = 1
	afiIPv6     = 2
	safiUnicast = 1
)

// Walk errors; each makes the whole UPDATE malformed (nothing is applied).
var (
	ErrUpdateShort     = errors.New("loadgen: UPDATE shorter than its length fields")
	ErrUpdateLong      = errors.New("loadgen: UPDATE longer than a BGP message")
	ErrUpdateAttr      = errors.New("loadgen: malformed path attribute")
	ErrUpdatePrefix    = errors.New("loadgen: malformed prefix")
	ErrUpdateRepeated  = errors.New("loadgen: repeated MP_REACH_NLRI or MP_UNREACH_NLRI")
	ErrUpdateNLRIAlone = errors.New("loadgen: NLRI without path attributes")
)

// PrefixVisitor receives the prefixes WalkUpdate finds. addr holds the
// prefix's significant octets ((bits+7)/8 of them) and aliases the
// message: it is only valid during the call.
type PrefixVisitor interface {
	Prefix(ipv6 bool, bits int, addr []byte, withdraw bool)
}

// UpdateInfo sums up one UPDATE.
type UpdateInfo struct {
	Announced, Withdrawn int  // prefixes of IPv4/IPv6 unicast
	OtherFamily          bool // an MP attribute of another AFI/SAFI (skipped)
	EndOfRIB             bool // an End-of-RIB marker (RFC 4724 §2), of any family
	TunnelEncap          bool // the Tunnel Encapsulation attribute is present
}

// WalkUpdate checks the body of an UPDATE (the message without its 19-octet
// header, at most 4096-19 octets: RFC 4271 §4.1, no extended messages) and,
// when it is well formed, hands every unicast prefix to v (v may be nil:
// check only). A malformed UPDATE hands nothing to v.
func WalkUpdate(body []byte, v PrefixVisitor) (UpdateInfo, error) {
	if len(body) > maxMsgLen-headerLen {
		return UpdateInfo{}, ErrUpdateLong
	}
	info, err := walk(body, nil)
	if err != nil || v == nil {
		return info, err
	}
	return walk(body, v)
}

func walk(body []byte, v PrefixVisitor) (info UpdateInfo, err error) {
	if len(body) < 4 {
		return info, ErrUpdateShort
	}
	wl := int(binary.BigEndian.Uint16(body))
	if 2+wl+2 > len(body) {
		return info, ErrUpdateShort
	}
	withdrawn := body[2 : 2+wl]
	rest := body[2+wl:]
	al := int(binary.BigEndian.Uint16(rest))
	if 2+al > len(rest) {
		return info, ErrUpdateShort
	}
	attrs := rest[2 : 2+al]
	nlri := rest[2+al:]
	if len(nlri) > 0 && al == 0 {
		return info, ErrUpdateNLRIAlone
	}
	n, err := prefixes(withdrawn, false, true, v)
	if err != nil {
		return info, err
	}
	info.Withdrawn += n
	var reach, unreach, others int
	emptyUnreach := false // MP_UNREACH_NLRI with no prefixes: End-of-RIB candidate
	for a := attrs; len(a) > 0; {
		if len(a) < 3 {
			return info, ErrUpdateAttr
		}
		hdr, l := 3, int(a[2])
		if a[0]&attrExtended != 0 {
			if len(a) < 4 {
				return info, ErrUpdateAttr
			}
			hdr, l = 4, int(binary.BigEndian.Uint16(a[2:]))
		}
		if hdr+l > len(a) {
			return info, ErrUpdateAttr
		}
		val := a[hdr : hdr+l]
		switch a[1] {
		case attrMPReach:
			reach++
			// AFI (2), SAFI (1), next hop length (1), next hop, reserved (1), NLRI.
			if len(val) < 5 || 5+int(val[3]) > len(val) {
				return info, ErrUpdateAttr
			}
			ipv6, ok := family(val)
			if !ok {
				info.OtherFamily = true
				break
			}
			n, err := prefixes(val[5+int(val[3]):], ipv6, false, v)
			if err != nil {
				return info, err
			}
			info.Announced += n
		case attrMPUnreach:
			unreach++
			if len(val) < 3 {
				return info, ErrUpdateAttr
			}
			emptyUnreach = len(val) == 3
			ipv6, ok := family(val)
			if !ok {
				info.OtherFamily = true
				break
			}
			n, err := prefixes(val[3:], ipv6, true, v)
			if err != nil {
				return info, err
			}
			info.Withdrawn += n
		case tunnelencap.AttrType:
			info.TunnelEncap = true
			others++
		default:
			others++
		}
		a = a[hdr+l:]
	}
	if reach > 1 || unreach > 1 {
		return info, ErrUpdateRepeated
	}
	n, err = prefixes(nlri, false, false, v)
	if err != nil {
		return info, err
	}
	info.Announced += n
	switch {
	case wl == 0 && al == 0 && len(nlri) == 0:
		info.EndOfRIB = true
	case wl == 0 && len(nlri) == 0 && reach == 0 && unreach == 1 && others == 0 && emptyUnreach:
		info.EndOfRIB = true
	}
	return info, nil
}

// family reads AFI and SAFI: ipv6 and ok=true for IPv4/IPv6 unicast.
func family(val []byte) (ipv6, ok bool) {
	if val[2] != safiUnicast {
		return false, false
	}
	switch binary.BigEndian.Uint16(val) {
	case afiIPv4:
		return false, true
	case afiIPv6:
		return true, true
	}
	return false, false
}

// prefixes walks a list of (length, prefix) pairs (RFC 4271 §4.3).
func prefixes(b []byte, ipv6, withdraw bool, v PrefixVisitor) (int, error) {
	maxBits := 32
	if ipv6 {
		maxBits = 128
	}
	n := 0
	for len(b) > 0 {
		bits := int(b[0])
		if bits > maxBits {
			return n, ErrUpdatePrefix
		}
		octets := (bits + 7) / 8
		if 1+octets > len(b) {
			return n, ErrUpdatePrefix
		}
		if v != nil {
			v.Prefix(ipv6, bits, b[1:1+octets], withdraw)
		}
		n++
		b = b[1+octets:]
	}
	return n, nil
}
