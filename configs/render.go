package configs

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/mpsa-vpn/mpsa/transform"
)

// Redacted renders the effective configuration (defaults applied) as YAML
// with every secret replaced by "[redacted]": safe to log or print for
// `-test -v`. Unset fields are left out.
func (h *Hub) Redacted() string { return render(reflect.ValueOf(h).Elem()) }

// Redacted renders the CPE configuration as Hub.Redacted does.
func (c *CPE) Redacted() string { return render(reflect.ValueOf(c).Elem()) }

// String summarises the hub configuration on one line, without secrets.
func (h *Hub) String() string {
	return fmt.Sprintf("hub %v: %d groups, %d CPEs, IKE %v port %d/%d, AS %d",
		h.Identity, len(h.Groups), len(h.CPEs), h.IKE.Listen, h.IKE.Port, h.IKE.NATTPort, h.BGP.ASN)
}

// String summarises the CPE configuration on one line, without secrets.
func (c *CPE) String() string {
	return fmt.Sprintf("cpe %v: hubs %v, LAN %v, AS %d", c.Identity, c.Hubs, c.LAN.Prefixes, c.BGP.ASN)
}

// LogValue summarises the hub configuration for slog.
func (h *Hub) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", h.Identity.String()), slog.Int("groups", len(h.Groups)), slog.Int("cpes", len(h.CPEs)))
}

// LogValue summarises the CPE configuration for slog.
func (c *CPE) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", c.Identity.String()), slog.Int("hubs", len(c.Hubs)), slog.Int("prefixes", len(c.LAN.Prefixes)))
}

// Format makes every fmt verb print "[redacted]" (%#v: GoString), so not
// even %d or %x can reach the octets.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, s.GoString())
		return
	}
	io.WriteString(f, s.String())
}

// Format makes every fmt verb print the summary, never the key.
func (m *CertMaterial) Format(f fmt.State, verb rune) { io.WriteString(f, m.String()) }

func render(v reflect.Value) string {
	var b strings.Builder
	renderStruct(&b, v, "", "")
	return b.String()
}

// renderStruct writes the fields of struct v, the first line prefixed with
// first and the others with indent.
func renderStruct(b *strings.Builder, v reflect.Value, first, indent string) bool {
	wrote := false
	lead := func() string {
		if !wrote {
			wrote = true
			return first
		}
		return indent
	}
	for _, f := range fieldsOf(v.Type()) {
		fv := v.FieldByIndex(f.index)
		if fv.IsZero() {
			continue
		}
		ft := fv.Type()
		if s, ok := scalarText(fv); ok {
			fmt.Fprintf(b, "%s%s: %s\n", lead(), f.name, s)
			continue
		}
		switch ft.Kind() {
		case reflect.Struct:
			var sub strings.Builder
			if renderStruct(&sub, fv, indent+"  ", indent+"  ") {
				fmt.Fprintf(b, "%s%s:\n%s", lead(), f.name, sub.String())
			}
		case reflect.Slice:
			if _, ok := scalarText(reflect.Zero(ft.Elem())); ok {
				items := make([]string, fv.Len())
				for i := range items {
					items[i], _ = scalarText(fv.Index(i))
				}
				fmt.Fprintf(b, "%s%s: [%s]\n", lead(), f.name, strings.Join(items, ", "))
				continue
			}
			fmt.Fprintf(b, "%s%s:\n", lead(), f.name)
			for i := range fv.Len() {
				if !renderStruct(b, fv.Index(i), indent+"  - ", indent+"    ") {
					fmt.Fprintf(b, "%s  - {}\n", indent)
				}
			}
		}
	}
	return wrote
}

// scalarText formats a scalar field as YAML, or reports that v is not one.
func scalarText(v reflect.Value) (string, bool) {
	switch x := v.Interface().(type) {
	case Secret:
		return strconv.Quote(x.String()), true
	case transform.ESP:
		return ESPName(x), true
	case transform.PRF:
		return PRFName(x), true
	case time.Duration:
		return x.String(), true
	case Identity:
		return strconv.Quote(x.String()), true
	case netip.Addr, netip.Prefix, netip.AddrPort:
		return strconv.Quote(fmt.Sprint(x)), true
	}
	switch v.Kind() {
	case reflect.String:
		return strconv.Quote(v.String()), true
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10), true
	}
	return "", false
}
