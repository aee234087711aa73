package ops

import (
	"fmt"
	"strings"
	"time"
)

// Text builds the human rendering of a view, in the style of
// `swanctl --list-sas`: a line per object, its details indented below it.
// The zero value is ready to use.
type Text struct {
	b      strings.Builder
	indent int
}

// Line writes one line at the current indentation.
func (t *Text) Line(format string, args ...any) {
	for range t.indent {
		t.b.WriteString("  ")
	}
	fmt.Fprintf(&t.b, format, args...)
	t.b.WriteByte('\n')
}

// Indent runs f with the indentation one level deeper.
func (t *Text) Indent(f func()) {
	t.indent++
	defer func() { t.indent-- }()
	f()
}

// Table writes tab a table at the current indentation.
func (t *Text) Table(tab *Table) {
	for _, l := range tab.lines() {
		t.Line("%s", l)
	}
}

// String returns what was written.
func (t *Text) String() string { return t.b.String() }

// Table is a view made of aligned columns, for lists (routes, peers).
type Table struct {
	Header []string   `json:"header"`
	Rows   [][]string `json:"rows"`
}

// RenderText implements TextRenderer.
func (tab *Table) RenderText(t *Text) { t.Table(tab) }

func (tab *Table) lines() []string {
	widths := make([]int, len(tab.Header))
	grow := func(row []string) {
		for i, c := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(c))
		}
	}
	grow(tab.Header)
	for _, r := range tab.Rows {
		grow(r)
	}
	var out []string
	format := func(row []string) string {
		var b strings.Builder
		for i, c := range row {
			if i == len(row)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", widths[i]-len(c)+2))
		}
		return strings.TrimRight(b.String(), " ")
	}
	if len(tab.Header) > 0 {
		out = append(out, format(tab.Header))
	}
	for _, r := range tab.Rows {
		out = append(out, format(r))
	}
	return out
}

// Ago renders how long ago t was, as swanctl does ("120s ago"); "never" for
// the zero time.
func Ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return Seconds(now.Sub(t)) + " ago"
}

// In renders how long until t ("in 3600s"); "now" when it is past, "never"
// for the zero time.
func In(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := t.Sub(now)
	if d <= 0 {
		return "now"
	}
	return "in " + Seconds(d)
}

// Seconds renders a duration in whole seconds, as swanctl does ("42s").
func Seconds(d time.Duration) string {
	return fmt.Sprintf("%ds", int64(d.Round(time.Second)/time.Second))
}
