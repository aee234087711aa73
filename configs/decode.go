package configs

import (
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mpsa-vpn/mpsa/transform"
)

// The decoder turns a generic tree (what a YAML or JSON parser, or Viper's
// AllSettings, produces: map[string]any, []any, string, bool, int, float64)
// into the typed structs, naming the path of every value it cannot use.
// Fields are matched by their `config:"name"` tag, case-insensitively; an
// untagged embedded struct contributes its fields to the parent.

const tagName = "config"

// scalar describes how a text value becomes a typed one.
type scalar struct {
	expect string // "an IP address": what the error says was expected
	parse  func(string) (any, error)
}

var scalars = map[reflect.Type]scalar{
	reflect.TypeFor[netip.Addr](): {"an IPv4 or IPv6 address", func(s string) (any, error) {
		return netip.ParseAddr(s)
	}},
	reflect.TypeFor[netip.Prefix](): {"an IP prefix such as 10.1.0.0/24", func(s string) (any, error) {
		return netip.ParsePrefix(s)
	}},
	reflect.TypeFor[netip.AddrPort](): {"an address or address:port ([v6]:port)", func(s string) (any, error) {
		if a, err := netip.ParseAddr(s); err == nil {
			return netip.AddrPortFrom(a, 0), nil
		}
		return netip.ParseAddrPort(s)
	}},
	reflect.TypeFor[time.Duration](): {"a duration such as 30s, 5m or 1h", func(s string) (any, error) {
		return time.ParseDuration(s)
	}},
	reflect.TypeFor[Identity](): {"an identity such as fqdn:cpe1.example.net", func(s string) (any, error) {
		return ParseIdentity(s)
	}},
	reflect.TypeFor[Secret](): {"a secret string", func(s string) (any, error) {
		return ParseSecret(s)
	}},
	reflect.TypeFor[transform.PRF](): {"a PRF (" + strings.Join(PRFNames(), ", ") + ")", func(s string) (any, error) {
		return ParsePRF(s)
	}},
	reflect.TypeFor[transform.ESP](): {"an ESP transform (" + strings.Join(ESPNames(), ", ") + ")", func(s string) (any, error) {
		return ParseESP(s)
	}},
}

// field is one decodable struct field.
type field struct {
	name  string // tag name
	index []int  // reflect index path (through embedded structs)
}

var fieldCache sync.Map // reflect.Type → []field

func fieldsOf(t reflect.Type) []field {
	if v, ok := fieldCache.Load(t); ok {
		return v.([]field)
	}
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get(tagName)
		if tag == "-" {
			continue
		}
		if tag == "" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			for _, sub := range fieldsOf(f.Type) {
				out = append(out, field{sub.name, append([]int{i}, sub.index...)})
			}
			continue
		}
		if tag == "" {
			continue
		}
		out = append(out, field{tag, []int{i}})
	}
	fieldCache.Store(t, out)
	return out
}

type decoder struct {
	errs  Errors
	warns []Warning
}

func (d *decoder) fail(path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// describe shows a value that could not be used, without echoing secrets.
func describe(v any, secret bool) string {
	switch x := v.(type) {
	case map[string]any, map[any]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		if secret {
			return "a string"
		}
		return strconv.Quote(x)
	case bool:
		return strconv.FormatBool(x)
	}
	if secret {
		return "a " + kindName(v)
	}
	return fmt.Sprint(v)
}

func kindName(v any) string {
	switch v.(type) {
	case int, int64, uint64, float64, int32, uint32, float32, uint, int8, int16, uint8, uint16:
		return "number"
	}
	return "value"
}

// decode stores in into out (a settable value), reporting problems under path.
func (d *decoder) decode(path string, in any, out reflect.Value, secret bool) {
	if in == nil {
		return // YAML null or an empty key: leave the default
	}
	t := out.Type()
	if sc, ok := scalars[t]; ok {
		s, isStr := in.(string)
		if !isStr {
			d.fail(path, "expected %s, got %s", sc.expect, describe(in, secret || t == reflect.TypeFor[Secret]()))
			return
		}
		if s == "" {
			out.Set(reflect.Zero(t))
			return
		}
		v, err := sc.parse(s)
		if err != nil {
			switch t {
			case reflect.TypeFor[Secret]():
				d.fail(path, "expected %s: %v", sc.expect, err)
			case reflect.TypeFor[Identity]():
				d.fail(path, "expected %s, got %q: %s", sc.expect, s, identityDetail(err))
			default:
				d.fail(path, "expected %s, got %q", sc.expect, s)
			}
			return
		}
		out.Set(reflect.ValueOf(v))
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.decodeStruct(path, in, out)
	case reflect.Slice:
		d.decodeSlice(path, in, out, secret)
	case reflect.String:
		s, ok := in.(string)
		if !ok {
			d.fail(path, "expected a string, got %s (quote it)", describe(in, secret))
			return
		}
		out.SetString(s)
	case reflect.Bool:
		switch x := in.(type) {
		case bool:
			out.SetBool(x)
		case string:
			b, err := strconv.ParseBool(x)
			if err != nil {
				d.fail(path, "expected true or false, got %q", x)
				return
			}
			out.SetBool(b)
		default:
			d.fail(path, "expected true or false, got %s", describe(in, secret))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := toInt(in)
		lo, hi := intRange(t)
		if !ok || n < lo || n > hi {
			if t.Kind() == reflect.Int || t.Kind() == reflect.Int64 {
				d.fail(path, "expected an integer, got %s", describe(in, secret))
			} else {
				d.fail(path, "expected an integer in %d..%d, got %s", lo, hi, describe(in, secret))
			}
			return
		}
		out.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := toInt(in)
		hi := uint64(1)<<(t.Bits()) - 1
		if t.Bits() == 64 {
			hi = math.MaxInt64
		}
		if !ok || n < 0 || uint64(n) > hi {
			d.fail(path, "expected an integer in 0..%d, got %s", hi, describe(in, secret))
			return
		}
		out.SetUint(uint64(n))
	default:
		d.fail(path, "cannot be set from a configuration file")
	}
}

func intRange(t reflect.Type) (int64, int64) {
	if t.Bits() == 64 {
		return math.MinInt64, math.MaxInt64
	}
	return -(1 << (t.Bits() - 1)), 1<<(t.Bits()-1) - 1
}

// toInt converts the numbers parsers produce (and decimal strings, as
// environment variables and flags give them) to int64.
func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint:
		if uint64(x) > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case float64:
		if x != math.Trunc(x) || x < math.MinInt64 || x >= math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func (d *decoder) decodeStruct(path string, in any, out reflect.Value) {
	var m map[string]any
	switch x := in.(type) {
	case map[string]any:
		m = x
	case map[any]any:
		m = make(map[string]any, len(x))
		for k, v := range x {
			ks, ok := k.(string)
			if !ok {
				d.fail(path, "expected string keys, got %v", describe(k, false))
				continue
			}
			m[ks] = v
		}
	default:
		d.fail(path, "expected a mapping of keys to values, got %s", describe(in, false))
		return
	}
	fields := fieldsOf(out.Type())
	// Visit keys in field order, then unknown keys sorted, so errors and
	// warnings come out in a stable order.
	used := make(map[string]bool, len(m))
	for _, f := range fields {
		for k, v := range m {
			if !strings.EqualFold(k, f.name) || used[k] {
				continue
			}
			used[k] = true
			fv := out.FieldByIndex(f.index)
			d.decode(join(path, f.name), v, fv, fv.Type() == reflect.TypeFor[Secret]())
		}
	}
	var unknown []string
	for k := range m {
		if !used[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		msg := "unknown key, ignored"
		if s := suggest(k, fields); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		d.warns = append(d.warns, Warning{Path: join(path, k), Msg: msg})
	}
}

func (d *decoder) decodeSlice(path string, in any, out reflect.Value, secret bool) {
	var items []any
	switch x := in.(type) {
	case []any:
		items = x
	case string:
		// A comma-separated string, as environment variables and flags give
		// lists of scalars.
		if out.Type().Elem().Kind() == reflect.Struct && scalars[out.Type().Elem()].parse == nil {
			d.fail(path, "expected a list, got %s", describe(in, secret))
			return
		}
		for s := range strings.SplitSeq(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
	default:
		d.fail(path, "expected a list, got %s", describe(in, secret))
		return
	}
	if len(items) > MaxListLen {
		d.fail(path, "expected at most %d entries, got %d", MaxListLen, len(items))
		return
	}
	s := reflect.MakeSlice(out.Type(), len(items), len(items))
	for i, it := range items {
		d.decode(index(path, i), it, s.Index(i), secret)
	}
	out.Set(s)
}

// suggest returns the field name closest to an unknown key, if any is close.
func suggest(key string, fields []field) string {
	best, bestD := "", 3
	for _, f := range fields {
		if dd := editDistance(strings.ToLower(key), f.name); dd < bestD {
			best, bestD = f.name, dd
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// DecodeHub decodes a configuration tree into a Hub without applying
// defaults or validating. It returns the unknown keys as warnings and every
// value of the wrong type as an Errors.
func DecodeHub(tree map[string]any) (*Hub, []Warning, error) {
	var h Hub
	var d decoder
	d.decode("", tree, reflect.ValueOf(&h).Elem(), false)
	return &h, d.warns, d.errs.err()
}

// DecodeCPE decodes a configuration tree into a CPE, as DecodeHub does.
func DecodeCPE(tree map[string]any) (*CPE, []Warning, error) {
	var c CPE
	var d decoder
	d.decode("", tree, reflect.ValueOf(&c).Elem(), false)
	return &c, d.warns, d.errs.err()
}
