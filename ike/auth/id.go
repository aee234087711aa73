package auth

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// IDType is the ID Type of an IDi/IDr payload (RFC 7296 §3.5). The values are
// the IANA numbers the codec (ike/wire) uses.
type IDType uint8

// Identity types this package implements.
const (
	IDIPv4   IDType = 1  // ID_IPV4_ADDR: 4 octets
	IDFQDN   IDType = 2  // ID_FQDN: a domain name, no terminator
	IDRFC822 IDType = 3  // ID_RFC822_ADDR: an email address
	IDIPv6   IDType = 5  // ID_IPV6_ADDR: 16 octets
	IDDN     IDType = 9  // ID_DER_ASN1_DN: a DER Name
	IDKeyID  IDType = 11 // ID_KEY_ID: opaque octets
)

func (t IDType) String() string {
	switch t {
	case IDIPv4:
		return "ID_IPV4_ADDR"
	case IDFQDN:
		return "ID_FQDN"
	case IDRFC822:
		return "ID_RFC822_ADDR"
	case IDIPv6:
		return "ID_IPV6_ADDR"
	case IDDN:
		return "ID_DER_ASN1_DN"
	case IDKeyID:
		return "ID_KEY_ID"
	}
	return "ID(" + strconv.Itoa(int(t)) + ")"
}

// MaxIDLen bounds the Identification Data this package accepts, in octets.
const MaxIDLen = 2048

// ErrBadID is wrapped by every identity parsing error.
var ErrBadID = errors.New("auth: invalid identity")

// ID is an IKE identity: a type and its Identification Data exactly as sent
// in the IDi/IDr payload. IDs are comparable with ==, which compares the
// octets; Equal compares as the protocol means it (case-insensitive FQDN,
// attribute-wise DN). The zero ID is "no identity".
type ID struct {
	Type IDType
	data string
}

// NewID validates Identification Data received in an IDi/IDr payload (or
// taken from a certificate) and returns the ID. Addresses must have their
// exact length, DNs must be well-formed DER, and text must be non-empty
// without control characters.
func NewID(t IDType, data []byte) (ID, error) {
	if len(data) == 0 {
		return ID{}, fmt.Errorf("%w: empty %v", ErrBadID, t)
	}
	if len(data) > MaxIDLen {
		return ID{}, fmt.Errorf("%w: %v of %d octets exceeds %d", ErrBadID, t, len(data), MaxIDLen)
	}
	switch t {
	case IDIPv4:
		if len(data) != 4 {
			return ID{}, fmt.Errorf("%w: ID_IPV4_ADDR of %d octets", ErrBadID, len(data))
		}
	case IDIPv6:
		if len(data) != 16 {
			return ID{}, fmt.Errorf("%w: ID_IPV6_ADDR of %d octets", ErrBadID, len(data))
		}
	case IDFQDN, IDRFC822:
		if err := checkText(string(data)); err != nil {
			return ID{}, fmt.Errorf("%w: %v: %v", ErrBadID, t, err)
		}
	case IDDN:
		if _, err := decodeDN(data); err != nil {
			return ID{}, fmt.Errorf("%w: %v", ErrBadID, err)
		}
	case IDKeyID:
	default:
		return ID{}, fmt.Errorf("%w: unsupported ID type %v", ErrBadID, t)
	}
	return ID{Type: t, data: string(data)}, nil
}

// AddrID returns the ipv4 or ipv6 identity of an address.
func AddrID(a netip.Addr) ID {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return ID{Type: IDIPv4, data: string(b[:])}
	}
	b := a.As16()
	return ID{Type: IDIPv6, data: string(b[:])}
}

func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return errors.New("control character")
		}
	}
	return nil
}

// ParseID reads an identity in the configuration syntax described in the
// package documentation.
func ParseID(s string) (ID, error) {
	typ, val, ok := splitPrefix(s)
	if !ok {
		typ, val = guessType(s), s
	}
	if val == "" {
		return ID{}, fmt.Errorf("%w: %q has no value", ErrBadID, s)
	}
	switch typ {
	case IDIPv4, IDIPv6:
		a, err := netip.ParseAddr(val)
		if err != nil || a.Zone() != "" {
			return ID{}, fmt.Errorf("%w: %q is not an IP address", ErrBadID, s)
		}
		if (typ == IDIPv4) != a.Is4() {
			return ID{}, fmt.Errorf("%w: %q: address family does not match the type", ErrBadID, s)
		}
		return AddrID(a), nil
	case IDFQDN, IDRFC822:
		return NewID(typ, []byte(val))
	case IDDN:
		rdns, err := parseDN(val)
		if err != nil {
			return ID{}, fmt.Errorf("%w: %q: %v", ErrBadID, s, err)
		}
		der, err := encodeDN(rdns)
		if err != nil {
			return ID{}, fmt.Errorf("%w: %q: %v", ErrBadID, s, err)
		}
		return NewID(IDDN, der)
	case IDKeyID:
		b, err := hex.DecodeString(strings.ReplaceAll(val, ":", ""))
		if err != nil {
			return ID{}, fmt.Errorf("%w: %q: key id must be hex", ErrBadID, s)
		}
		return NewID(IDKeyID, b)
	}
	return ID{}, fmt.Errorf("%w: %q", ErrBadID, s)
}

// MustParseID is ParseID that panics on error, for constants in tests and
// examples.
func MustParseID(s string) ID {
	id, err := ParseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

var prefixes = map[string]IDType{
	"fqdn": IDFQDN, "rfc822": IDRFC822, "email": IDRFC822,
	"ipv4": IDIPv4, "ipv6": IDIPv6, "dn": IDDN, "asn1dn": IDDN, "keyid": IDKeyID,
}

// splitPrefix splits "type:value" when type is one of the known prefixes.
func splitPrefix(s string) (IDType, string, bool) {
	p, v, ok := strings.Cut(s, ":")
	if !ok {
		return 0, "", false
	}
	t, ok := prefixes[strings.ToLower(p)]
	return t, v, ok
}

func guessType(s string) IDType {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Is4() {
			return IDIPv4
		}
		return IDIPv6
	}
	switch {
	case strings.Contains(s, "="):
		return IDDN
	case strings.Contains(s, "@"):
		return IDRFC822
	}
	return IDFQDN
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id.Type == 0 && id.data == "" }

// Data returns the Identification Data as sent on the wire (a fresh slice).
func (id ID) Data() []byte { return []byte(id.data) }

// Addr returns the address of an ipv4/ipv6 identity.
func (id ID) Addr() (netip.Addr, bool) {
	switch id.Type {
	case IDIPv4, IDIPv6:
		return netip.AddrFromSlice([]byte(id.data))
	}
	return netip.Addr{}, false
}

// AppendBody appends the ID payload body — ID Type, three RESERVED octets,
// Identification Data — to b. It is RestOfInitIDPayload /
// RestOfRespIDPayload of RFC 7296 §2.15.
func (id ID) AppendBody(b []byte) []byte {
	b = append(b, byte(id.Type), 0, 0, 0)
	return append(b, id.data...)
}

// Equal reports whether id and o name the same identity: same type and
// same data, FQDNs compared case-insensitively and DNs attribute by
// attribute (string types ignored, values case-insensitive).
func (id ID) Equal(o ID) bool {
	if id.Type != o.Type {
		return false
	}
	switch id.Type {
	case IDFQDN:
		return strings.EqualFold(id.data, o.data)
	case IDDN:
		if id.data == o.data {
			return true
		}
		a, err1 := decodeDN([]byte(id.data))
		b, err2 := decodeDN([]byte(o.data))
		return err1 == nil && err2 == nil && dnEqual(a, b, false)
	}
	return id.data == o.data
}

// LogValue makes slog print the identity as String does, with every handler
// (the JSON handler would otherwise show only the exported Type field).
func (id ID) LogValue() slog.Value { return slog.StringValue(id.String()) }

// String prints the identity in configuration syntax ("fqdn:cpe1.example.net"),
// suitable for the `id` log field. Text received from the network is quoted
// when it holds characters a log line should not carry.
func (id ID) String() string {
	switch id.Type {
	case 0:
		if id.data == "" {
			return "none"
		}
	case IDIPv4, IDIPv6:
		if a, ok := id.Addr(); ok {
			if id.Type == IDIPv4 {
				return "ipv4:" + a.String()
			}
			return "ipv6:" + a.String()
		}
	case IDFQDN:
		return "fqdn:" + printable(id.data)
	case IDRFC822:
		return "rfc822:" + printable(id.data)
	case IDDN:
		if rdns, err := decodeDN([]byte(id.data)); err == nil {
			return "dn:" + formatDN(rdns)
		}
	case IDKeyID:
		return "keyid:" + hex.EncodeToString([]byte(id.data))
	}
	return fmt.Sprintf("%v:%x", id.Type, id.data)
}

func printable(s string) string {
	for _, r := range s {
		if r < 0x21 || r == 0x7f || r == utf8.RuneError || r == '"' {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}
