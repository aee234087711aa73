package auth

import (
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Distinguished names (ID_DER_ASN1_DN, certificate subjects) are handled as
// a sequence of RDNs, each a set of attribute type and value pairs whose
// values stay raw DER, so that nothing is lost between the wire and a
// comparison.

type atv struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// rdnSET is a RelativeDistinguishedName; the "SET" suffix makes
// encoding/asn1 encode it as SET OF.
type rdnSET []atv

type dn []rdnSET

var attrNames = []struct {
	name string
	oid  asn1.ObjectIdentifier
}{
	{"C", asn1.ObjectIdentifier{2, 5, 4, 6}},
	{"ST", asn1.ObjectIdentifier{2, 5, 4, 8}},
	{"L", asn1.ObjectIdentifier{2, 5, 4, 7}},
	{"O", asn1.ObjectIdentifier{2, 5, 4, 10}},
	{"OU", asn1.ObjectIdentifier{2, 5, 4, 11}},
	{"CN", asn1.ObjectIdentifier{2, 5, 4, 3}},
	{"SN", asn1.ObjectIdentifier{2, 5, 4, 4}},
	{"GN", asn1.ObjectIdentifier{2, 5, 4, 42}},
	{"T", asn1.ObjectIdentifier{2, 5, 4, 12}},
	{"SERIALNUMBER", asn1.ObjectIdentifier{2, 5, 4, 5}},
	{"STREET", asn1.ObjectIdentifier{2, 5, 4, 9}},
	{"DC", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}},
	{"UID", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}},
	{"E", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}},
}

var attrAliases = map[string]string{"EMAILADDRESS": "E", "EMAIL": "E", "SERIALNUMBER": "SERIALNUMBER", "S": "ST"}

// maxDNAttrs bounds the attributes of one DN (input is hostile).
const maxDNAttrs = 64

func oidOf(name string) (asn1.ObjectIdentifier, bool) {
	u := strings.ToUpper(name)
	if a, ok := attrAliases[u]; ok {
		u = a
	}
	for _, a := range attrNames {
		if a.name == u {
			return a.oid, true
		}
	}
	// dotted OID
	parts := strings.Split(name, ".")
	if len(parts) < 2 || len(parts) > 32 {
		return nil, false
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n := 0
		if p == "" || len(p) > 9 {
			return nil, false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return nil, false
			}
			n = n*10 + int(c-'0')
		}
		oid[i] = n
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] > 39) {
		return nil, false
	}
	return oid, true
}

func nameOf(oid asn1.ObjectIdentifier) string {
	for _, a := range attrNames {
		if a.oid.Equal(oid) {
			return a.name
		}
	}
	return oid.String()
}

// decodeDN parses a DER Name (RFC 5280 §4.1.2.4).
func decodeDN(der []byte) (dn, error) {
	var d dn
	rest, err := asn1.Unmarshal(der, &d)
	if err != nil {
		return nil, fmt.Errorf("DN: %v", err)
	}
	if len(rest) != 0 {
		return nil, errors.New("DN: trailing data")
	}
	n := 0
	for _, rdn := range d {
		if len(rdn) == 0 {
			return nil, errors.New("DN: empty RDN")
		}
		for _, a := range rdn {
			if len(a.Type) == 0 {
				return nil, errors.New("DN: empty attribute type")
			}
			n++
		}
	}
	if n > maxDNAttrs {
		return nil, fmt.Errorf("DN: more than %d attributes", maxDNAttrs)
	}
	return d, nil
}

func encodeDN(d dn) ([]byte, error) {
	if len(d) == 0 {
		return nil, errors.New("empty DN")
	}
	return asn1.Marshal(d)
}

// valueString decodes the string types a Name uses; ok is false for other
// types (compared by their DER encoding).
func valueString(v asn1.RawValue) (string, bool) {
	if v.Class != asn1.ClassUniversal || v.IsCompound {
		return "", false
	}
	switch v.Tag {
	case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, asn1.TagNumericString, 26: // 26: VisibleString
		if !utf8.Valid(v.Bytes) {
			return "", false
		}
		return string(v.Bytes), true
	case asn1.TagT61String: // taken as Latin-1, as most software does
		r := make([]rune, len(v.Bytes))
		for i, c := range v.Bytes {
			r[i] = rune(c)
		}
		return string(r), true
	case asn1.TagBMPString:
		if len(v.Bytes)%2 != 0 {
			return "", false
		}
		u := make([]uint16, len(v.Bytes)/2)
		for i := range u {
			u[i] = uint16(v.Bytes[2*i])<<8 | uint16(v.Bytes[2*i+1])
		}
		return string(utf16.Decode(u)), true
	}
	return "", false
}

// dnEqual compares two DNs attribute by attribute, the members of a
// multi-valued RDN in any order (it is a SET). With wildcards, a value "*"
// in pattern p matches any value of that attribute in d.
func dnEqual(p, d dn, wildcards bool) bool {
	if len(p) != len(d) {
		return false
	}
	for i := range p {
		if len(p[i]) != len(d[i]) {
			return false
		}
		var used uint64 // len(d[i]) <= maxDNAttrs = 64
		for _, a := range p[i] {
			found := false
			for j, b := range d[i] {
				if used&(1<<j) == 0 && atvEqual(a, b, wildcards) {
					used |= 1 << j
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
	}
	return true
}

func atvEqual(a, b atv, wildcards bool) bool {
	if !a.Type.Equal(b.Type) {
		return false
	}
	sa, oka := valueString(a.Value)
	if wildcards && oka && sa == "*" {
		return true
	}
	sb, okb := valueString(b.Value)
	switch {
	case oka && okb:
		return strings.EqualFold(strings.TrimSpace(sa), strings.TrimSpace(sb))
	case !oka && !okb:
		return string(a.Value.FullBytes) == string(b.Value.FullBytes)
	}
	return false
}

// formatDN prints d in the package's DN syntax (DER order).
func formatDN(d dn) string {
	var sb strings.Builder
	for i, rdn := range d {
		if i > 0 {
			sb.WriteString(", ")
		}
		for j, a := range rdn {
			if j > 0 {
				sb.WriteByte('+')
			}
			sb.WriteString(nameOf(a.Type))
			sb.WriteByte('=')
			if s, ok := valueString(a.Value); ok {
				sb.WriteString(escapeDNValue(s))
			} else {
				sb.WriteByte('#')
				sb.WriteString(hex.EncodeToString(a.Value.FullBytes))
			}
		}
	}
	return sb.String()
}

func escapeDNValue(s string) string {
	var sb strings.Builder
	for i, r := range s {
		switch {
		case strings.ContainsRune(`,+"\<>;=`, r),
			(r == ' ' || r == '#') && i == 0,
			r == ' ' && i == len(s)-1:
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r < 0x20 || r == 0x7f || r == utf8.RuneError:
			var buf [utf8.UTFMax]byte
			n := utf8.EncodeRune(buf[:], r)
			for _, c := range buf[:n] {
				fmt.Fprintf(&sb, `\%02x`, c)
			}
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// parseDN reads the package's DN syntax into a DN with its string values
// encoded as strongSwan and OpenSSL do: PrintableString for C, IA5String for
// E and DC, UTF8String otherwise.
func parseDN(s string) (dn, error) {
	var d dn
	var cur rdnSET
	n := 0
	i := 0
	for {
		// attribute type
		j := strings.IndexByte(s[i:], '=')
		if j < 0 {
			return nil, fmt.Errorf("missing '=' after %q", strings.TrimSpace(s[i:]))
		}
		name := strings.TrimSpace(s[i : i+j])
		oid, ok := oidOf(name)
		if !ok {
			return nil, fmt.Errorf("unknown attribute %q", name)
		}
		i += j + 1
		val, next, sep, err := readDNValue(s, i)
		if err != nil {
			return nil, err
		}
		i = next
		if val.FullBytes == nil {
			val.Tag = stringTagFor(oid, val.Bytes)
		}
		if n++; n > maxDNAttrs {
			return nil, fmt.Errorf("more than %d attributes", maxDNAttrs)
		}
		cur = append(cur, atv{Type: oid, Value: val})
		if sep != '+' {
			d = append(d, cur)
			cur = nil
		}
		if sep == 0 {
			break
		}
	}
	return d, nil
}

// readDNValue reads one attribute value starting at s[i] and returns it, the
// index after its separator and the separator (0 at the end).
func readDNValue(s string, i int) (asn1.RawValue, int, byte, error) {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i < len(s) && s[i] == '#' {
		end := i + 1
		for end < len(s) && !strings.ContainsRune(",;+", rune(s[end])) {
			end++
		}
		b, err := hex.DecodeString(strings.TrimSpace(s[i+1 : end]))
		if err != nil {
			return asn1.RawValue{}, 0, 0, fmt.Errorf("bad hex value: %v", err)
		}
		var rv asn1.RawValue
		if rest, err := asn1.Unmarshal(b, &rv); err != nil || len(rest) != 0 {
			return asn1.RawValue{}, 0, 0, errors.New("'#' value is not one DER element")
		}
		next, sep := len(s), byte(0)
		if end < len(s) {
			next, sep = end+1, s[end]
		}
		return rv, next, sep, nil
	}
	var buf []byte
	trailing := 0 // unescaped trailing spaces to trim
	for i < len(s) {
		c := s[i]
		if c == ',' || c == ';' || c == '+' {
			break
		}
		if c == '\\' {
			if i+1 >= len(s) {
				return asn1.RawValue{}, 0, 0, errors.New("dangling '\\'")
			}
			if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
				b, _ := hex.DecodeString(s[i+1 : i+3])
				buf = append(buf, b[0])
				i += 3
			} else {
				buf = append(buf, s[i+1])
				i += 2
			}
			trailing = 0
			continue
		}
		buf = append(buf, c)
		if c == ' ' {
			trailing++
		} else {
			trailing = 0
		}
		i++
	}
	buf = buf[:len(buf)-trailing]
	if len(buf) == 0 {
		return asn1.RawValue{}, 0, 0, errors.New("empty attribute value")
	}
	if !utf8.Valid(buf) {
		return asn1.RawValue{}, 0, 0, errors.New("value is not UTF-8")
	}
	rv := asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagUTF8String, Bytes: buf}
	next, sep := len(s), byte(0)
	if i < len(s) {
		next, sep = i+1, s[i]
	}
	return rv, next, sep, nil
}

var (
	oidC      = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidSerial = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidE      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	oidDC     = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
)

// stringTagFor picks the string type OpenSSL and strongSwan use for an
// attribute: PrintableString for C and serialNumber, IA5String for
// emailAddress and DC (when the value allows), UTF8String otherwise.
func stringTagFor(oid asn1.ObjectIdentifier, v []byte) int {
	switch {
	case (oid.Equal(oidC) || oid.Equal(oidSerial)) && isPrintableString(v):
		return asn1.TagPrintableString
	case (oid.Equal(oidE) || oid.Equal(oidDC)) && isASCII(v):
		return asn1.TagIA5String
	}
	return asn1.TagUTF8String
}

func isPrintableString(v []byte) bool {
	for _, c := range v {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte(" '()+,-./:=?", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

func isASCII(v []byte) bool {
	for _, c := range v {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
