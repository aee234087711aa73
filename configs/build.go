package configs

import (
	"slices"
	"strings"
)

// BuildHub turns a configuration tree into a checked Hub: it decodes the
// tree, applies defaults, validates every field, applies the permission
// rules to src.File, and reads and checks every file the configuration
// names (PSK files, certificates, keys). Unknown keys and other non-fatal
// findings are returned as warnings; every problem is in the Errors.
func BuildHub(tree map[string]any, src Source) (*Hub, []Warning, error) {
	h, warns, derr := DecodeHub(tree)
	h.SetDefaults()
	if derr != nil {
		// Report what validation finds in the fields that did decode too,
		// so one run lists every problem.
		var ck checker
		h.validate(&ck)
		return nil, warns, merge(derr.(Errors), ck.errs)
	}
	w, err := h.resolve(&src)
	warns = append(warns, w...)
	if err != nil {
		return nil, warns, err
	}
	return h, warns, nil
}

// BuildCPE is BuildHub for the CPE.
func BuildCPE(tree map[string]any, src Source) (*CPE, []Warning, error) {
	c, warns, derr := DecodeCPE(tree)
	c.SetDefaults()
	if derr != nil {
		var ck checker
		c.validate(&ck)
		return nil, warns, merge(derr.(Errors), ck.errs)
	}
	w, err := c.resolve(&src)
	warns = append(warns, w...)
	if err != nil {
		return nil, warns, err
	}
	return c, warns, nil
}

// Resolve validates h (already defaulted) and reads the files it names, as
// BuildHub does for a tree: relative paths become absolute (relative to
// src.File's directory), PSK files are read into PSK, certificates are
// parsed (see CertFiles.Material).
func (h *Hub) Resolve(src Source) ([]Warning, error) { return h.resolve(&src) }

// Resolve is Hub.Resolve for the CPE.
func (c *CPE) Resolve(src Source) ([]Warning, error) { return c.resolve(&src) }

func (h *Hub) resolve(src *Source) ([]Warning, error) {
	var ck checker
	checkConfigFile(&ck, src)
	h.validate(&ck)
	if len(ck.errs) > 0 {
		return nil, ck.errs
	}
	warns := h.loadFiles(&ck, src)
	return warns, ck.errs.err()
}

func (c *CPE) resolve(src *Source) ([]Warning, error) {
	var ck checker
	checkConfigFile(&ck, src)
	c.validate(&ck)
	if len(ck.errs) > 0 {
		return nil, ck.errs
	}
	warns := c.loadFiles(&ck, src)
	return warns, ck.errs.err()
}

// Wipe zeroes every PSK held by h. Call it when the daemon no longer uses
// this configuration (after a reload has replaced it and the old one's
// sessions are gone).
func (h *Hub) Wipe() {
	for i := range h.CPEs {
		h.CPEs[i].PSK.Wipe()
	}
}

// Wipe zeroes the PSK held by c.
func (c *CPE) Wipe() { c.Credentials.PSK.Wipe() }

// merge adds validation errors to decoding errors, leaving out those about
// a field that failed to decode (or lies under one): its value was not
// used, so what validation says of it would only confuse.
func merge(decode, validate Errors) Errors {
	out := decode
	for _, v := range validate {
		if !slices.ContainsFunc(decode, func(d *FieldError) bool {
			return v.Path == d.Path || strings.HasPrefix(v.Path, d.Path+".") || strings.HasPrefix(v.Path, d.Path+"[") ||
				strings.HasPrefix(d.Path, v.Path+".") || strings.HasPrefix(d.Path, v.Path+"[")
		}) {
			out = append(out, v)
		}
	}
	return out
}
