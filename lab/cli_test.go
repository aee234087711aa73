package lab

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCLIArguments: bad invocations fail with the usage exit code or a
// message naming the problem, before anything is built.
func TestCLIArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage:"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"up", "-nosuchflag"}, 2, "flag provided but not defined"},
		{[]string{"up", "-underlay", "v5"}, 1, `unknown address family "v5"`},
		{[]string{"up", "-cpes", "0"}, 1, "-cpes 0: expected 1 to 50"},
		{[]string{"up", "-cpes", "51"}, 1, "-cpes 51"},
		{[]string{"help"}, 0, "mpsa-lab down"},
	} {
		var out, errOut bytes.Buffer
		code := RunCLI(context.Background(), tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.want) {
			t.Errorf("mpsa-lab %v: exit %d, want %d; output %q, want %q", tc.args, code, tc.code, out.String()+errOut.String(), tc.want)
		}
	}
}
