package configs

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// HubDiff is what changed between two hub configurations, in the terms the
// hub applies them: CPEs are matched by identity and groups by name.
// Changed lists the other fields that differ (leaf paths such as
// "log.level"; lists as a whole, such as "bgp.peers"); it is up to the
// daemon which of those it can apply without a restart.
type HubDiff struct {
	CPEsAdded     []HubCPE
	CPEsRemoved   []HubCPE
	CPEsChanged   []CPEChange
	GroupsAdded   []string
	GroupsRemoved []string
	GroupsChanged []GroupChange
	Changed       []string
}

// CPEChange is a CPE present in both configurations whose settings differ.
// Fields names them ("group", "psk", "prefixes", ...).
type CPEChange struct {
	Old, New HubCPE
	Fields   []string
}

// GroupChange is a group present in both configurations whose settings
// differ. Fields names them ("esp", "lifetime", "pool.ipv4", ...).
type GroupChange struct {
	Name   string
	Fields []string
}

// Empty reports whether nothing changed.
func (d *HubDiff) Empty() bool {
	return len(d.CPEsAdded)+len(d.CPEsRemoved)+len(d.CPEsChanged)+
		len(d.GroupsAdded)+len(d.GroupsRemoved)+len(d.GroupsChanged)+len(d.Changed) == 0
}

// String summarises the diff on one line, without secrets.
func (d *HubDiff) String() string {
	if d.Empty() {
		return "no changes"
	}
	var parts []string
	ids := func(cs []HubCPE) string {
		s := make([]string, len(cs))
		for i, c := range cs {
			s[i] = c.Identity.String()
		}
		return strings.Join(s, " ")
	}
	if len(d.GroupsAdded) > 0 {
		parts = append(parts, "groups added: "+strings.Join(d.GroupsAdded, " "))
	}
	if len(d.GroupsRemoved) > 0 {
		parts = append(parts, "groups removed: "+strings.Join(d.GroupsRemoved, " "))
	}
	for _, g := range d.GroupsChanged {
		parts = append(parts, fmt.Sprintf("group %s changed: %s", g.Name, strings.Join(g.Fields, " ")))
	}
	if len(d.CPEsAdded) > 0 {
		parts = append(parts, "CPEs added: "+ids(d.CPEsAdded))
	}
	if len(d.CPEsRemoved) > 0 {
		parts = append(parts, "CPEs removed: "+ids(d.CPEsRemoved))
	}
	for _, c := range d.CPEsChanged {
		parts = append(parts, fmt.Sprintf("CPE %v changed: %s", c.New.Identity, strings.Join(c.Fields, " ")))
	}
	if len(d.Changed) > 0 {
		parts = append(parts, "changed: "+strings.Join(d.Changed, " "))
	}
	return strings.Join(parts, "; ")
}

// DiffHub compares two hub configurations. Lists in the result follow the
// order of the configuration they come from.
func DiffHub(old, new *Hub) HubDiff {
	var d HubDiff
	oldG := map[string]*Group{}
	for i := range old.Groups {
		oldG[old.Groups[i].Name] = &old.Groups[i]
	}
	newG := map[string]bool{}
	for i := range new.Groups {
		g := &new.Groups[i]
		newG[g.Name] = true
		o, ok := oldG[g.Name]
		if !ok {
			d.GroupsAdded = append(d.GroupsAdded, g.Name)
			continue
		}
		if f := diffFields("", reflect.ValueOf(o).Elem(), reflect.ValueOf(g).Elem(), nil); len(f) > 0 {
			d.GroupsChanged = append(d.GroupsChanged, GroupChange{Name: g.Name, Fields: f})
		}
	}
	for _, g := range old.Groups {
		if !newG[g.Name] {
			d.GroupsRemoved = append(d.GroupsRemoved, g.Name)
		}
	}

	oldC := map[Identity]*HubCPE{}
	for i := range old.CPEs {
		oldC[old.CPEs[i].Identity] = &old.CPEs[i]
	}
	newC := map[Identity]bool{}
	for i := range new.CPEs {
		c := &new.CPEs[i]
		newC[c.Identity] = true
		o, ok := oldC[c.Identity]
		if !ok {
			d.CPEsAdded = append(d.CPEsAdded, *c)
			continue
		}
		if f := diffFields("", reflect.ValueOf(o).Elem(), reflect.ValueOf(c).Elem(), nil); len(f) > 0 {
			d.CPEsChanged = append(d.CPEsChanged, CPEChange{Old: *o, New: *c, Fields: f})
		}
	}
	for _, c := range old.CPEs {
		if !newC[c.Identity] {
			d.CPEsRemoved = append(d.CPEsRemoved, c)
		}
	}

	skip := map[string]bool{"groups": true, "cpes": true}
	d.Changed = diffFields("", reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem(), skip)
	return d
}

// CPEDiff is what changed between two CPE configurations: leaf paths such
// as "log.level" or "credentials.psk", lists as a whole ("hubs",
// "lan.prefixes").
type CPEDiff struct {
	Changed []string
}

// Empty reports whether nothing changed.
func (d *CPEDiff) Empty() bool { return len(d.Changed) == 0 }

// Has reports whether path or anything under it changed: Has("credentials").
func (d *CPEDiff) Has(path string) bool {
	return slices.ContainsFunc(d.Changed, func(p string) bool { return p == path || strings.HasPrefix(p, path+".") })
}

func (d *CPEDiff) String() string {
	if d.Empty() {
		return "no changes"
	}
	return "changed: " + strings.Join(d.Changed, " ")
}

// DiffCPE compares two CPE configurations.
func DiffCPE(old, new *CPE) CPEDiff {
	return CPEDiff{Changed: diffFields("", reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem(), nil)}
}

// diffFields lists the leaf paths where structs a and b differ, leaving out
// top-level keys in skip.
func diffFields(prefix string, a, b reflect.Value, skip map[string]bool) []string {
	var out []string
	for _, f := range fieldsOf(a.Type()) {
		path := join(prefix, f.name)
		if skip[path] {
			continue
		}
		fa, fb := a.FieldByIndex(f.index), b.FieldByIndex(f.index)
		switch x := fa.Interface().(type) {
		case Secret:
			if !x.Equal(fb.Interface().(Secret)) {
				out = append(out, path)
			}
			continue
		case CertFiles:
			y := fb.Interface().(CertFiles)
			out = append(out, diffFields(path, fa, fb, nil)...)
			if x.Certificate == y.Certificate && x.PrivateKey == y.PrivateKey && x.CA == y.CA && !sameMaterial(x.material, y.material) {
				out = append(out, join(path, "contents"))
			}
			continue
		}
		if _, scalar := scalars[fa.Type()]; !scalar && fa.Kind() == reflect.Struct {
			out = append(out, diffFields(path, fa, fb, nil)...)
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			out = append(out, path)
		}
	}
	return out
}

// sameMaterial compares what was read from certificate files (the key goes
// with the certificate).
func sameMaterial(a, b *CertMaterial) bool {
	if a == nil || b == nil {
		return a == b
	}
	eq := func(x, y []*x509.Certificate) bool {
		return slices.EqualFunc(x, y, func(c, d *x509.Certificate) bool { return bytes.Equal(c.Raw, d.Raw) })
	}
	return eq(a.Chain, b.Chain) && eq(a.CAs, b.CAs)
}
