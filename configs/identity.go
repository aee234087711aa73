package configs

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
)

// IDType is an IKEv2 identification type (RFC 7296 §3.5); the values are
// the IANA numbers, so ike/ can convert with a plain cast.
type IDType uint8

// Identification types the product supports.
const (
	IDIPv4   IDType = 1  // ID_IPV4_ADDR
	IDFQDN   IDType = 2  // ID_FQDN
	IDRFC822 IDType = 3  // ID_RFC822_ADDR (an e-mail address)
	IDIPv6   IDType = 5  // ID_IPV6_ADDR
	IDDN     IDType = 9  // ID_DER_ASN1_DN, written as a string DN "CN=cpe1,O=Acme"
	IDKeyID  IDType = 11 // ID_KEY_ID, opaque octets written in hex
)

// MaxIdentityLen bounds the length of an identity's value as written.
const MaxIdentityLen = 255

// idPrefixes maps the "type:" prefixes accepted in configuration files to ID
// types. The first name of each type is the one String prints.
var idPrefixes = []struct {
	name string
	t    IDType
}{
	{"fqdn", IDFQDN},
	{"email", IDRFC822},
	{"rfc822", IDRFC822},
	{"ipv4", IDIPv4},
	{"ipv6", IDIPv6},
	{"dn", IDDN},
	{"asn1dn", IDDN},
	{"keyid", IDKeyID},
}

func (t IDType) String() string {
	for _, p := range idPrefixes {
		if p.t == t {
			return p.name
		}
	}
	return fmt.Sprintf("id(%d)", uint8(t))
}

// Identity is an IKE identity: an ID type and its value as written
// ("fqdn:cpe1.example.net", "dn:CN=cpe1,O=Acme", "ipv4:192.0.2.7"). The
// zero value means "not set".
type Identity struct {
	Type  IDType
	Value string
}

// ParseIdentity parses "type:value". Without a known type prefix the type is
// guessed as strongSwan does: an IP address is ipv4/ipv6, a string with '@'
// an e-mail address, one with '=' a DN, anything else an FQDN. Key IDs are
// hex digits and are stored in lower case.
func ParseIdentity(s string) (Identity, error) {
	var id Identity
	if name, rest, ok := strings.Cut(s, ":"); ok {
		for _, p := range idPrefixes {
			if strings.EqualFold(name, p.name) {
				id = Identity{Type: p.t, Value: rest}
				break
			}
		}
	}
	if id.Type == 0 {
		id.Value = s
		switch a, err := netip.ParseAddr(s); {
		case err == nil && a.Is4():
			id.Type = IDIPv4
		case err == nil:
			id.Type = IDIPv6
		case strings.Contains(s, "@"):
			id.Type = IDRFC822
		case strings.Contains(s, "="):
			id.Type = IDDN
		default:
			id.Type = IDFQDN
		}
	}
	if id.Type == IDKeyID {
		id.Value = strings.ToLower(strings.TrimPrefix(id.Value, "0x"))
	}
	if err := id.check(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// IsZero reports whether the identity is unset.
func (id Identity) IsZero() bool { return id == Identity{} }

// String formats the identity as "type:value", the form ParseIdentity reads
// and the form logs use for the `id` field.
func (id Identity) String() string {
	if id.IsZero() {
		return ""
	}
	return id.Type.String() + ":" + id.Value
}

// MarshalText formats the identity as String does.
func (id Identity) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses the identity as ParseIdentity does.
func (id *Identity) UnmarshalText(b []byte) error {
	v, err := ParseIdentity(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Validate reports whether the identity is well formed for its type.
func (id Identity) Validate() error {
	if id.IsZero() {
		return fmt.Errorf("identity is not set")
	}
	return id.check()
}

func (id Identity) check() error {
	v := id.Value
	if v == "" {
		return fmt.Errorf("%v identity has an empty value", id.Type)
	}
	if len(v) > MaxIdentityLen {
		return fmt.Errorf("identity is longer than %d characters", MaxIdentityLen)
	}
	switch id.Type {
	case IDIPv4, IDIPv6:
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" || a.Is4() != (id.Type == IDIPv4) || a.Is4In6() {
			return fmt.Errorf("%v identity needs an %s address", id.Type, map[bool]string{true: "IPv4", false: "IPv6"}[id.Type == IDIPv4])
		}
	case IDFQDN:
		return checkFQDN(v)
	case IDRFC822:
		local, domain, ok := strings.Cut(v, "@")
		if !ok || local == "" || strings.ContainsAny(local, " \t\"") || checkFQDN(domain) != nil {
			return fmt.Errorf("email identity needs the form user@domain")
		}
	case IDDN:
		for rdn := range strings.SplitSeq(v, ",") {
			k, val, ok := strings.Cut(rdn, "=")
			if !ok || strings.TrimSpace(k) == "" || strings.TrimSpace(val) == "" {
				return fmt.Errorf("dn identity needs the form CN=name,O=org (attribute=value, comma separated)")
			}
		}
	case IDKeyID:
		if _, err := hex.DecodeString(v); err != nil {
			return fmt.Errorf("keyid identity needs an even number of hex digits")
		}
	default:
		return fmt.Errorf("unsupported identity type %v", id.Type)
	}
	return nil
}

// checkFQDN accepts host names: dot-separated labels of 1–63 letters,
// digits, '-' or '_' (no leading or trailing '-'), at most 253 characters.
func checkFQDN(s string) error {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return fmt.Errorf("fqdn identity needs a host name of 1 to 253 characters")
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("fqdn identity needs dot-separated labels of 1 to 63 characters")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("fqdn identity may hold only letters, digits, '-', '_' and '.'")
			}
		}
	}
	return nil
}
