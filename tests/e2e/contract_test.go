package e2e

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/cpe"
	"github.com/mpsa-vpn/mpsa/hub"
	"github.com/mpsa-vpn/mpsa/lab"
)

// TestViewsContract: the lab reads the daemons' status views as JSON into
// its own types (lab/views.go). Every field it reads must exist, under the
// same name, in what the daemons' view types write.
func TestViewsContract(t *testing.T) {
	for _, tc := range []struct {
		daemon, lab any
	}{
		{&hub.GroupView{}, lab.HubGroups{}},
		{&hub.SAView{}, lab.HubSAs{}},
		{&hub.CPEView{}, lab.HubCPEs{}},
		{&cpe.Status{}, lab.CPEStatus{}},
	} {
		fill(reflect.ValueOf(tc.daemon).Elem())
		b, err := json.Marshal(tc.daemon)
		if err != nil {
			t.Fatal(err)
		}
		var tree any
		if err := json.Unmarshal(b, &tree); err != nil {
			t.Fatal(err)
		}
		for _, miss := range missing(reflect.TypeOf(tc.lab), tree, reflect.TypeOf(tc.lab).Name()) {
			t.Errorf("%T has no %s (the lab reads it)", tc.daemon, miss)
		}
		// And it decodes.
		v := reflect.New(reflect.TypeOf(tc.lab))
		if err := json.Unmarshal(b, v.Interface()); err != nil {
			t.Errorf("%T does not decode into %T: %v", tc.daemon, tc.lab, err)
		}
	}
}

// fill sets every exported field to a non-zero value (one element per
// slice), so that omitempty fields are written too.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Unix(1700000000, 0)))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	}
}

// missing lists the JSON keys of the lab's type t that the decoded tree
// lacks.
func missing(t reflect.Type, tree any, path string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			arr, ok := tree.([]any)
			if !ok || len(arr) == 0 {
				return []string{path + " (not a list)"}
			}
			tree = arr[0]
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeOf(lab.HubGroups{}).PkgPath() && t.Name() != "" {
		return nil // a leaf (netip, time, ...)
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return []string{path + " (not an object)"}
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := strings.Split(f.Tag.Get("json"), ",")[0]
		if key == "" {
			key = f.Name
		}
		sub, ok := obj[key]
		if !ok {
			out = append(out, path+"."+key)
			continue
		}
		out = append(out, missing(f.Type, sub, path+"."+key)...)
	}
	return out
}
