package configs

import (
	"reflect"
	"strings"
)

// EnvPrefix starts the name of every environment variable that overrides a
// configuration key: bgp.router_id is MPSA_BGP_ROUTER_ID.
const EnvPrefix = "MPSA"

// Key is a configuration key that environment variables and flags can
// override: a scalar, or a list of scalars (written comma-separated), that
// is not inside a list of mappings (groups, cpes and bgp.peers entries can
// only come from the file).
type Key struct {
	Path   string // "bgp.router_id", also the flag name
	Env    string // "MPSA_BGP_ROUTER_ID"
	List   bool   // comma-separated list
	Secret bool   // holds a secret (a PSK)
}

// EnvName returns the environment variable for a key path.
func EnvName(path string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(path))
}

// HubKeys lists the hub's overridable keys, in file order.
func HubKeys() []Key { return keysOf(reflect.TypeFor[Hub](), "") }

// CPEKeys lists the CPE's overridable keys, in file order.
func CPEKeys() []Key { return keysOf(reflect.TypeFor[CPE](), "") }

func keysOf(t reflect.Type, prefix string) []Key {
	var out []Key
	for _, f := range fieldsOf(t) {
		ft := t.FieldByIndex(f.index).Type
		path := join(prefix, f.name)
		list := false
		if ft.Kind() == reflect.Slice {
			list = true
			ft = ft.Elem()
		}
		_, isScalar := scalars[ft]
		if !isScalar && ft.Kind() == reflect.Struct {
			if !list {
				out = append(out, keysOf(ft, path)...)
			}
			continue
		}
		out = append(out, Key{Path: path, Env: EnvName(path), List: list, Secret: ft == reflect.TypeFor[Secret]()})
	}
	return out
}

// SetKey stores value at a dotted key path in a configuration tree,
// creating the mappings on the way (and replacing a non-mapping in the way).
// Loaders use it to lay environment and flag overrides over the file.
func SetKey(tree map[string]any, path string, value any) {
	parts := strings.Split(path, ".")
	m := tree
	for _, p := range parts[:len(parts)-1] {
		next, ok := lookupFold(m, p).(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	last := parts[len(parts)-1]
	for k := range m {
		if strings.EqualFold(k, last) {
			delete(m, k)
		}
	}
	m[last] = value
}

func lookupFold(m map[string]any, key string) any {
	if v, ok := m[key]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			// Re-key it so later writes land in the same place.
			delete(m, k)
			m[key] = v
			return v
		}
	}
	return nil
}
