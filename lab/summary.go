package lab

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Summary renders the lab for a person: nodes, the hub's IKE SAs, the
// group SA, every CPE's BGP routes with their ESP endpoints, and, when
// given, the ping matrix and the directness check.
func (l *Lab) Summary(snap *Snapshot, pings []PingResult, d *Directness) string {
	var b strings.Builder
	cfg, h := l.Config(), l.Hub()
	fmt.Fprintf(&b, "lab %s: %v underlay %v, hub %v (%s)\n", cfg.Name, cfg.Underlay, underlayPrefix(cfg.Underlay), h.WAN, h.NS)
	tw := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
	for _, c := range l.CPEs() {
		state := "running"
		switch {
		case c.Removed:
			state = "removed"
		case !l.Running(c.Name):
			state = "stopped"
		}
		fmt.Fprintf(tw, "  %s\t%s\tWAN %v\tLAN %s\thost %s\t%s\n", c.Name, c.Identity, c.WAN, joinPrefixes(c.Prefixes), c.HostNS, state)
	}
	tw.Flush()
	if snap == nil {
		return b.String()
	}
	for _, e := range snap.Errors {
		fmt.Fprintf(&b, "  (no answer: %s)\n", e)
	}

	b.WriteString("\nIKE SAs at the hub:\n")
	if snap.SAs == nil || len(snap.SAs.SAs) == 0 {
		b.WriteString("  none\n")
	} else {
		tw = tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
		for _, s := range snap.SAs.SAs {
			fmt.Fprintf(tw, "  %s\t%s\t%s\toverlay %s\t%s_i %s_r\tepoch %d\n", s.CPE, s.State, s.Remote,
				strings.Join(s.Overlay, " "), s.SPIi, s.SPIr, s.AckedEpoch)
		}
		tw.Flush()
	}

	if g := snap.Group(); g != nil {
		fmt.Fprintf(&b, "\ngroup SA (MPSA) %s: epoch %d, esp_spi %s, %s, %d/%d CPEs on it\n",
			g.Name, g.Epoch, g.SPI, g.Suite, g.OnCurrent, g.Connected)
		for _, name := range sortedNames(snap.CPEs) {
			st := snap.CPEs[name].Status
			var sas []string
			for _, sa := range st.Group.SAs {
				dir := "in"
				if sa.Outbound {
					dir = "in+out"
				}
				sas = append(sas, sa.SPI+" "+dir)
			}
			fmt.Fprintf(&b, "  %s holds %s (%s)\n", name, strings.Join(sas, ", "), st.Group.Phase)
		}
	}

	b.WriteString("\nBGP routes learned by each CPE (prefix -> ESP endpoint):\n")
	for _, name := range sortedNames(snap.CPEs) {
		rs := snap.BGPRoutes(name)
		var ps []netip.Prefix
		for p := range rs {
			ps = append(ps, p)
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].Addr().Less(ps[j].Addr()) })
		var parts []string
		for _, p := range ps {
			parts = append(parts, fmt.Sprintf("%v -> %v", p, rs[p].Endpoint))
		}
		if len(parts) == 0 {
			parts = []string{"none"}
		}
		fmt.Fprintf(&b, "  %s: %s\n", name, strings.Join(parts, ", "))
	}

	if len(pings) > 0 {
		b.WriteString("\nping matrix (LAN host to LAN host):\n")
		b.WriteString(pingMatrix(pings))
	}
	if d != nil {
		verdict := "direct"
		if !d.OK() {
			verdict = "NOT DIRECT"
		}
		fmt.Fprintf(&b, "\nCPE-to-CPE traffic %s: %s\n", verdict, d)
	}
	return b.String()
}

// pingMatrix renders the results as a table: rows are sources, columns
// destinations, each cell the families that got every reply.
func pingMatrix(pings []PingResult) string {
	names := map[string]bool{}
	cells := map[[2]string][]string{}
	for _, p := range pings {
		names[p.From], names[p.To] = true, true
		mark := "ok"
		if !p.OK() {
			mark = fmt.Sprintf("FAIL(%d/%d)", p.Stats.Received, p.Stats.Sent)
		}
		fam := "v4"
		if p.Dst.Is6() {
			fam = "v6"
		}
		k := [2]string{p.From, p.To}
		cells[k] = append(cells[k], fam+" "+mark)
	}
	order := sortedNames(names)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 8, 3, ' ', 0)
	fmt.Fprint(tw, "  from \\ to")
	for _, n := range order {
		fmt.Fprintf(tw, "\t%s", n)
	}
	fmt.Fprintln(tw)
	for _, from := range order {
		fmt.Fprintf(tw, "  %s", from)
		for _, to := range order {
			c := "-"
			if from != to {
				c = strings.Join(cells[[2]string{from, to}], ", ")
			}
			fmt.Fprintf(tw, "\t%s", c)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	var bad []string
	for _, p := range pings {
		if !p.OK() {
			why := p.Stats.String()
			if p.Err != nil {
				why = p.Err.Error()
			}
			bad = append(bad, fmt.Sprintf("  %s -> %s %v: %s", p.From, p.To, p.Dst, why))
		}
	}
	if len(bad) > 0 {
		b.WriteString(strings.Join(bad, "\n") + "\n")
	}
	return b.String()
}

// sortedNames returns a map's keys in natural order (cpe2 before cpe10).
func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return naturalLess(out[i], out[j]) })
	return out
}

// naturalLess orders names by their non-digit prefix, then the number that
// ends them.
func naturalLess(a, b string) bool {
	pa, na := splitNum(a)
	pb, nb := splitNum(b)
	if pa != pb {
		return pa < pb
	}
	if na != nb {
		return na < nb
	}
	return a < b
}

func splitNum(s string) (string, int) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	n, _ := strconv.Atoi(s[i:])
	return s[:i], n
}

func joinPrefixes(ps []netip.Prefix) string {
	return strings.Join(prefixStrings(ps), " ")
}
