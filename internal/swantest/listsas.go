package swantest

import "strings"

// SA is an IKE SA as `swanctl --list-sas --raw` shows it: its name, its
// attributes (state, initiator-spi, nat-remote, ...) and its CHILD_SAs'
// attributes (spi-in, spi-out, local-ts, remote-ts, encap, state, ...).
type SA struct {
	Name     string
	Attrs    map[string]string
	Children []map[string]string
}

// ParseListSAs parses the output of `swanctl --list-sas --raw`, one line
// per IKE SA:
//
//	list-sa event {rw {uniqueid=1 state=ESTABLISHED ... child-sas {net-1 {spi-in=c0ffee01 local-ts=[10.99.1.0/24]}}}}
//
// Lists ([a b]) stay one value. Anything else is ignored.
func ParseListSAs(out string) []SA {
	var sas []SA
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "list-sa event {") {
			continue
		}
		toks := tokenize(strings.TrimPrefix(line, "list-sa event "))
		var sa *SA
		var child map[string]string
		depth := 0
		for i := 0; i < len(toks); i++ {
			tok := toks[i]
			switch {
			case tok == "{":
				depth++
			case tok == "}":
				if depth == 4 && sa != nil && child != nil {
					sa.Children = append(sa.Children, child)
					child = nil
				}
				depth--
			case i+1 < len(toks) && toks[i+1] == "{":
				if depth == 1 {
					sas = append(sas, SA{Name: tok, Attrs: map[string]string{}})
					sa = &sas[len(sas)-1]
				}
				if depth == 3 {
					child = map[string]string{}
				}
			default:
				k, v, _ := strings.Cut(tok, "=")
				if depth == 2 && sa != nil {
					sa.Attrs[k] = v
				} else if depth == 4 && child != nil {
					child[k] = v
				}
			}
		}
	}
	return sas
}

// tokenize splits the raw VICI text into braces and key=value items.
func tokenize(s string) []string {
	var out []string
	var cur strings.Builder
	inList := false
	flush := func() {
		if t := strings.TrimSpace(cur.String()); t != "" {
			out = append(out, t)
		}
		cur.Reset()
	}
	for _, r := range s {
		switch {
		case r == '[':
			inList = true
			cur.WriteRune(r)
		case r == ']':
			inList = false
			cur.WriteRune(r)
		case !inList && (r == '{' || r == '}'):
			flush()
			out = append(out, string(r))
		case !inList && r == ' ':
			flush()
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	return out
}
