package main

import (
	"strings"
	"testing"
)

// TestBadArguments: arguments are checked before anything is built.
func TestBadArguments(t *testing.T) {
	out := t.TempDir()
	for _, c := range []struct {
		only, tags, archMap, want string
	}{
		{"sparc", "", "", `unknown target "sparc"`},
		{"", "mpsa_omit_everything", "", `unknown feature tag "mpsa_omit_everything"`},
		{"", "", "mipsle", `-arch-map "mipsle"`},
		{"arm64", "", "mipsle=mipsel_74kc", `-arch-map "mipsle=mipsel_74kc"`}, // not being built
		{"", "", "mipsle=", `-arch-map "mipsle="`},
	} {
		err := run(out, c.only, c.tags, c.archMap)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("run(-targets %q -tags %q -arch-map %q) = %v, want an error with %s", c.only, c.tags, c.archMap, err, c.want)
		}
	}
}
