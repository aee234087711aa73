package ikerate

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

const (
	anchorLabel  = "charon-fake aes128-sha256-x25519"
	subjectLabel = "mpsa aes128-sha256-x25519"
)

// testdata/results.tsv is the output of one run of run.sh --runs 1 (an
// earlier version of the script, without the RSS columns).
func TestReadResultsRecorded(t *testing.T) {
	f, err := os.Open("testdata/results.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, err := ReadResults(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("%d runs, want 2", len(rs))
	}
	c := rs[0]
	if c.Label != anchorLabel || c.N != 2000 || c.Established != 2000 || c.Rate != 682 || c.RespMsPerSA != 0.585 ||
		c.Seconds != 2.933 || c.IKE != "aes128-sha256-x25519" || c.ESP != "aes128gcm16" || c.RespWaitMsPerSA != 0.906 {
		t.Fatalf("anchor run parsed as %+v", c)
	}
	a, err := Summarize(rs, anchorLabel, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(rs, subjectLabel, 3)
	if err != nil {
		t.Fatal(err)
	}
	cmp := Compare(a, s)
	if got := cmp.CPURatio; got < 0.589 || got > 0.591 {
		t.Fatalf("CPU ratio %v, want 0.345/0.585", got)
	}
	if got := cmp.RateRatio; got < 1.083 || got > 1.084 {
		t.Fatalf("rate ratio %v, want 739/682", got)
	}
	var out bytes.Buffer
	if _, err := cmp.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"0.59x the anchor's", "1.08x", "739 [739-739]", "0.585 [0.585-0.585]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := Summarize(rs, "nobody", 0); !errors.Is(err, ErrNoRuns) {
		t.Fatalf("unknown label: %v", err)
	}
}

func TestSummarizeMediansAndLast(t *testing.T) {
	head := strings.Join(append(append([]string(nil), resultColumns...), "resp_rss0_kib", "resp_rss1_kib"), "\t")
	line := func(label, n, est, rate, ms, rss0, rss1 string) string {
		f := make([]string, len(resultColumns)+2)
		for i := range f {
			f[i] = "0"
		}
		set := func(name, v string) {
			for i, c := range resultColumns {
				if c == name {
					f[i] = v
				}
			}
		}
		set("label", label)
		set("N", n)
		set("established", est)
		set("rate_per_s", rate)
		set("resp_cpu_ms_per_sa", ms)
		set("seconds", "1")
		f[len(f)-2], f[len(f)-1] = rss0, rss1
		return strings.Join(f, "\t")
	}
	in := strings.Join([]string{head,
		line("a", "100", "100", "900", "9", "0", "0"), // dropped by last=3
		line("a", "100", "100", "100", "1", "1000", "2000"),
		"",
		line("a", "100", "50", "300", "3", "1000", "1500"),
		line("a", "100", "100", "200", "2", "1000", "3000"),
	}, "\n")
	rs, err := ReadResults(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(rs, "a", 3)
	if err != nil {
		t.Fatal(err)
	}
	if s.Runs != 3 || s.Complete != 2 || s.Rate != (Stat{100, 200, 300}) || s.RespMsPerSA != (Stat{1, 2, 3}) ||
		s.RSSPerSA != (Stat{10, 10, 20}) {
		t.Fatalf("summary %+v", s)
	}
	all, _ := Summarize(rs, "a", 0)
	if all.Runs != 4 || all.Rate.Median != 250 {
		t.Fatalf("all runs: %+v (median of an even count is the mean of the middle two)", all)
	}
}

func TestReadResultsRejects(t *testing.T) {
	head := strings.Join(resultColumns, "\t")
	for name, in := range map[string]string{
		"empty":          "",
		"missing column": "date\tlabel\n",
		"short line":     head + "\nx\ty\n",
		"not a number":   head + "\n" + strings.Repeat("x\t", len(resultColumns)-1) + "x\n",
		"huge line":      head + "\n" + strings.Repeat("1", 2*maxResultLine) + "\n",
	} {
		if rs, err := ReadResults(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted as %+v", name, rs)
		}
	}
}

func FuzzReadResults(f *testing.F) {
	rec, err := os.ReadFile("testdata/results.tsv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(rec))
	f.Add(strings.Join(resultColumns, "\t") + "\n" + strings.Repeat("1\t", len(resultColumns)))
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := ReadResults(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, r := range rs {
			s, err := Summarize(rs, r.Label, 0)
			if err != nil || s.Runs == 0 {
				t.Fatalf("label %q of a parsed run not summarised: %v", r.Label, err)
			}
			var b bytes.Buffer
			if _, err := Compare(s, s).WriteTo(&b); err != nil {
				t.Fatal(err)
			}
		}
	})
}
