package ikerate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Result is one run of strongswan-loadtest.sh: a line of its TSV output.
type Result struct {
	Date, Label, Target string
	IKE, ESP            string
	N, Established      int
	Seconds             float64 // first initiation to last establishment
	Rate                float64 // established IKE SAs per second
	RespCPU, InitCPU    float64 // CPU seconds of the responder and the load-tester
	RespMsPerSA         float64
	InitMsPerSA         float64
	LatP50, LatP90      float64 // per-SA setup latency, ms
	DropsResp           int     // UDP receive buffer drops in the responder's namespace
	OtherLoad           float64 // % of the machine used by other processes
	// Optional columns (0 when absent): run-queue wait of the responder's
	// threads per SA, and its resident set before and after the run.
	RespWaitMsPerSA          float64
	RespRSS0KiB, RespRSS1KiB float64
}

// Limits of ReadResults: the file is ours, but a parser takes nothing on
// trust.
const (
	maxResultLine = 4096
	maxResults    = 100000
)

// resultColumns are the columns ReadResults needs.
var resultColumns = []string{"date", "label", "target", "ike", "esp", "N", "established", "seconds", "rate_per_s",
	"resp_cpu_s", "init_cpu_s", "resp_cpu_ms_per_sa", "init_cpu_ms_per_sa", "lat_p50_ms", "lat_p90_ms",
	"udp_drops_resp", "other_load_pct"}

// ReadResults parses the TSV that strongswan-loadtest.sh appends to: a
// header line naming the columns, then one line per run.
func ReadResults(r io.Reader) ([]Result, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxResultLine)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("ikerate: results: %w", err)
		}
		return nil, errors.New("ikerate: results: empty")
	}
	col := map[string]int{}
	for i, name := range strings.Split(sc.Text(), "\t") {
		col[name] = i
	}
	for _, c := range resultColumns {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("ikerate: results: no column %q", c)
		}
	}
	var out []Result
	for line := 2; sc.Scan(); line++ {
		if sc.Text() == "" {
			continue
		}
		if len(out) >= maxResults {
			return nil, fmt.Errorf("ikerate: results: more than %d runs", maxResults)
		}
		f := strings.Split(sc.Text(), "\t")
		var perr error
		str := func(name string) string {
			if i := col[name]; i < len(f) {
				return f[i]
			}
			if perr == nil {
				perr = fmt.Errorf("ikerate: results line %d: no %s", line, name)
			}
			return ""
		}
		num := func(name string) float64 {
			s := str(name)
			if s == "" {
				return 0
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil && perr == nil {
				perr = fmt.Errorf("ikerate: results line %d: %s: %w", line, name, err)
			}
			return v
		}
		integer := func(name string) int {
			s := str(name)
			if s == "" {
				return 0
			}
			v, err := strconv.Atoi(s)
			if err != nil && perr == nil {
				perr = fmt.Errorf("ikerate: results line %d: %s: %w", line, name, err)
			}
			return v
		}
		res := Result{
			Date: str("date"), Label: str("label"), Target: str("target"), IKE: str("ike"), ESP: str("esp"),
			N: integer("N"), Established: integer("established"), Seconds: num("seconds"), Rate: num("rate_per_s"),
			RespCPU: num("resp_cpu_s"), InitCPU: num("init_cpu_s"), RespMsPerSA: num("resp_cpu_ms_per_sa"),
			InitMsPerSA: num("init_cpu_ms_per_sa"), LatP50: num("lat_p50_ms"), LatP90: num("lat_p90_ms"),
			DropsResp: integer("udp_drops_resp"), OtherLoad: num("other_load_pct"),
		}
		for name, dst := range map[string]*float64{"resp_wait_ms_per_sa": &res.RespWaitMsPerSA,
			"resp_rss0_kib": &res.RespRSS0KiB, "resp_rss1_kib": &res.RespRSS1KiB} {
			if _, ok := col[name]; ok {
				*dst = num(name)
			}
		}
		if perr != nil {
			return nil, perr
		}
		out = append(out, res)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ikerate: results: %w", err)
	}
	return out, nil
}

// Stat is the spread of one figure over runs.
type Stat struct{ Min, Median, Max float64 }

func stat(v []float64) Stat {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return Stat{}
	}
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Stat{Min: s[0], Median: med, Max: s[n-1]}
}

func (s Stat) String() string {
	return fmt.Sprintf("%s [%s-%s]", fmtNum(s.Median), fmtNum(s.Min), fmtNum(s.Max))
}

func fmtNum(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

// Summary is the spread of a label's runs.
type Summary struct {
	Label string
	Runs  int
	// Complete counts the runs in which every SA was established.
	Complete    int
	Rate        Stat // IKE SAs per second
	RespMsPerSA Stat // responder CPU ms per established SA
	InitMsPerSA Stat // load-tester CPU ms per established SA
	RespCores   Stat // responder CPU seconds per wall second
	RespWait    Stat // responder run-queue wait ms per SA
	RSSPerSA    Stat // responder resident set growth, KiB per SA
	OtherLoad   Stat // % of the machine used by others
	DropsResp   int  // sum over runs
}

// ErrNoRuns is returned by Summarize when no run has the label.
var ErrNoRuns = errors.New("ikerate: no runs with that label")

// Summarize takes the last runs (all when last <= 0) with label.
func Summarize(rs []Result, label string, last int) (Summary, error) {
	var sel []Result
	for _, r := range rs {
		if r.Label == label {
			sel = append(sel, r)
		}
	}
	if last > 0 && len(sel) > last {
		sel = sel[len(sel)-last:]
	}
	if len(sel) == 0 {
		return Summary{}, fmt.Errorf("%w: %q", ErrNoRuns, label)
	}
	s := Summary{Label: label, Runs: len(sel)}
	var rate, resp, init, cores, wait, rss, other []float64
	for _, r := range sel {
		if r.Established >= r.N && r.N > 0 {
			s.Complete++
		}
		rate = append(rate, r.Rate)
		resp = append(resp, r.RespMsPerSA)
		init = append(init, r.InitMsPerSA)
		if r.Seconds > 0 {
			cores = append(cores, r.RespCPU/r.Seconds)
		}
		other = append(other, r.OtherLoad)
		wait = append(wait, r.RespWaitMsPerSA)
		if r.Established > 0 {
			rss = append(rss, (r.RespRSS1KiB-r.RespRSS0KiB)/float64(r.Established))
		}
		s.DropsResp += r.DropsResp
	}
	s.Rate, s.RespMsPerSA, s.InitMsPerSA, s.RespCores = stat(rate), stat(resp), stat(init), stat(cores)
	s.RespWait, s.RSSPerSA, s.OtherLoad = stat(wait), stat(rss), stat(other)
	return s, nil
}

// Comparison sets a subject's medians against an anchor's.
type Comparison struct {
	Anchor, Subject Summary
	// CPURatio is subject / anchor responder CPU per SA (target ≤ 0.5),
	// RateRatio subject / anchor setups per second (target ≥ 1.5).
	CPURatio, RateRatio float64
}

// Compare divides the subject's medians by the anchor's.
func Compare(anchor, subject Summary) Comparison {
	c := Comparison{Anchor: anchor, Subject: subject}
	if anchor.RespMsPerSA.Median > 0 {
		c.CPURatio = subject.RespMsPerSA.Median / anchor.RespMsPerSA.Median
	}
	if anchor.Rate.Median > 0 {
		c.RateRatio = subject.Rate.Median / anchor.Rate.Median
	}
	return c
}

// WriteTo prints the comparison as a table: one row per figure, medians
// with the range of the runs, and the subject/anchor ratio of the medians.
func (c Comparison) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	a, s := c.Anchor, c.Subject
	row := func(name string, x, y Stat) {
		ratio := "-"
		if x.Median > 0 {
			ratio = fmt.Sprintf("%.2f", y.Median/x.Median)
		}
		fmt.Fprintf(&b, "%-28s %-34s %-34s %s\n", name, x, y, ratio)
	}
	fmt.Fprintf(&b, "%-28s %-34s %-34s %s\n", "median [min-max]", a.Label, s.Label, "ratio")
	fmt.Fprintf(&b, "%-28s %-34s %-34s\n", "runs (all SAs up)", fmt.Sprintf("%d (%d)", a.Runs, a.Complete), fmt.Sprintf("%d (%d)", s.Runs, s.Complete))
	row("IKE_SA/s", a.Rate, s.Rate)
	row("responder CPU ms/SA", a.RespMsPerSA, s.RespMsPerSA)
	row("responder cores busy", a.RespCores, s.RespCores)
	row("load-tester CPU ms/SA", a.InitMsPerSA, s.InitMsPerSA)
	row("responder run-queue ms/SA", a.RespWait, s.RespWait)
	row("responder RSS KiB/SA", a.RSSPerSA, s.RSSPerSA)
	row("other load % of machine", a.OtherLoad, s.OtherLoad)
	fmt.Fprintf(&b, "%-28s %-34d %-34d\n", "UDP receive drops", a.DropsResp, s.DropsResp)
	fmt.Fprintf(&b, "responder CPU per SA: %.2fx the anchor's (target <= 0.5); setups per second: %.2fx (target >= 1.5)\n",
		c.CPURatio, c.RateRatio)
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}
