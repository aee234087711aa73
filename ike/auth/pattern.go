package auth

import (
	"fmt"
	"net/netip"
	"strings"
)

// Pattern selects peer identities in configuration (see the package
// documentation for the syntax). The zero Pattern matches nothing.
type Pattern struct {
	src    string
	any    bool
	exact  ID           // exact identity (no wildcard)
	typ    IDType       // for wildcards
	suffix string       // fqdn "*.example.net" -> ".example.net"; rfc822 "*@x" -> "@x"; "" with typ = any of that type
	prefix netip.Prefix // ipv4/ipv6 ranges
	dn     dn           // DN with "*" values
}

// ParsePattern reads an identity pattern.
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{src: s}
	switch s {
	case "any", "%any", "*":
		p.any = true
		return p, nil
	}
	typ, val, ok := splitPrefix(s)
	if !ok {
		typ, val = guessType(s), s
		if strings.Contains(s, "/") {
			if pfx, err := netip.ParsePrefix(s); err == nil {
				typ = IDIPv6
				if pfx.Addr().Is4() {
					typ = IDIPv4
				}
			}
		}
	}
	p.typ = typ
	switch typ {
	case IDFQDN, IDRFC822:
		if val == "*" {
			return p, nil
		}
		sep := "."
		if typ == IDRFC822 {
			sep = "@"
		}
		if rest, ok := strings.CutPrefix(val, "*"+sep); ok {
			if rest == "" || strings.Contains(rest, "*") {
				return Pattern{}, fmt.Errorf("%w: pattern %q", ErrBadID, s)
			}
			p.suffix = sep + rest
			return p, nil
		}
	case IDIPv4, IDIPv6:
		if strings.Contains(val, "/") {
			pfx, err := netip.ParsePrefix(val)
			if err != nil || pfx.Addr().Is4() != (typ == IDIPv4) {
				return Pattern{}, fmt.Errorf("%w: pattern %q", ErrBadID, s)
			}
			p.prefix = pfx.Masked()
			return p, nil
		}
	case IDDN:
		if strings.Contains(val, "*") {
			d, err := parseDN(val)
			if err != nil {
				return Pattern{}, fmt.Errorf("%w: pattern %q: %v", ErrBadID, s, err)
			}
			p.dn = d
			return p, nil
		}
	}
	id, err := ParseID(s)
	if err != nil {
		return Pattern{}, err
	}
	p.exact = id
	return p, nil
}

// MustParsePattern is ParsePattern that panics on error, for tests.
func MustParsePattern(s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// Match reports whether id is selected by p.
func (p Pattern) Match(id ID) bool {
	switch {
	case p.any:
		return !id.IsZero()
	case !p.exact.IsZero():
		return p.exact.Equal(id)
	case id.Type != p.typ:
		return false
	case p.prefix.IsValid():
		a, ok := id.Addr()
		return ok && p.prefix.Contains(a)
	case p.dn != nil:
		d, err := decodeDN([]byte(id.data))
		return err == nil && dnEqual(p.dn, d, true)
	case p.typ == IDFQDN || p.typ == IDRFC822:
		if p.suffix == "" {
			return true
		}
		return len(id.data) > len(p.suffix) && strings.EqualFold(id.data[len(id.data)-len(p.suffix):], p.suffix)
	}
	return false
}

// Exact returns the identity of a pattern without wildcards.
func (p Pattern) Exact() (ID, bool) { return p.exact, !p.exact.IsZero() }

// String returns the pattern as it was parsed.
func (p Pattern) String() string { return p.src }
