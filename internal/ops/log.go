package ops

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/mpsa-vpn/mpsa/configs"
)

// Fields are the attribute keys docs/LOGGING.md fixes, besides slog's own
// time, level and msg. Add a field there before logging it. A name ending
// in "*" stands for every key with that prefix.
var Fields = []string{
	"component", "ike_spi_i", "ike_spi_r", "msgid", "exchange", "esp_spi",
	"peer", "local", "id", "group", "epoch", "prefix", "endpoint", "reason",
	"err", "state", "payloads", "routes", "hold_time", "restart_time", "gobgp_*",
}

// IsField reports whether key is one of Fields.
func IsField(key string) bool {
	return slices.ContainsFunc(Fields, func(f string) bool {
		if p, ok := strings.CutSuffix(f, "*"); ok {
			return strings.HasPrefix(key, p)
		}
		return f == key
	})
}

// Logger is a daemon's root logger with a level that can change at run time
// (on reload).
type Logger struct {
	*slog.Logger
	level *slog.LevelVar
}

// NewLogger returns a logger writing cfg.Format (text or JSON) to w at
// cfg.Level. Unset fields take configs' defaults.
func NewLogger(w io.Writer, cfg configs.LogConfig) (*Logger, error) {
	lv := new(slog.LevelVar)
	l, err := ParseLevel(cfg.Level)
	if err != nil {
		return nil, err
	}
	lv.Set(l)
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch cfg.Format {
	case configs.LogText, "":
		h = slog.NewTextHandler(w, opts)
	case configs.LogJSON:
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("ops: log format %q: expected text or json", cfg.Format)
	}
	return &Logger{Logger: slog.New(h), level: lv}, nil
}

// SetLevel changes the level of every logger derived from l.
func (l *Logger) SetLevel(level configs.LogLevel) error {
	v, err := ParseLevel(level)
	if err != nil {
		return err
	}
	l.level.Set(v)
	return nil
}

// Level returns the current level.
func (l *Logger) Level() slog.Level { return l.level.Level() }

// ParseLevel maps a configuration level name to its slog.Level; "" is info.
func ParseLevel(level configs.LogLevel) (slog.Level, error) {
	switch level {
	case configs.LogDebug:
		return slog.LevelDebug, nil
	case configs.LogInfo, "":
		return slog.LevelInfo, nil
	case configs.LogWarn:
		return slog.LevelWarn, nil
	case configs.LogError:
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("ops: log level %q: expected debug, info, warn or error", level)
}

// SPI64 formats an IKE SPI as docs/LOGGING.md wants it: 16 hex digits.
func SPI64(v uint64) string { return fmt.Sprintf("%016x", v) }

// SPI32 formats an ESP SPI: 8 hex digits.
func SPI32(v uint32) string { return fmt.Sprintf("%08x", v) }

// IKESPIs returns the ike_spi_i and ike_spi_r attributes of an IKE SA.
func IKESPIs(spiI, spiR uint64) []any {
	return []any{slog.String("ike_spi_i", SPI64(spiI)), slog.String("ike_spi_r", SPI64(spiR))}
}

// FieldCheck is a slog.Handler that passes records on to another handler and
// notes every attribute key that is not one of Fields (groups by their name),
// with the component of the logger that used it, so a test can hold a daemon
// to docs/LOGGING.md.
type FieldCheck struct {
	next      slog.Handler
	component string // from WithAttrs("component", ...)
	shared    *fieldCheckState
}

type fieldCheckState struct {
	mu      sync.Mutex
	unknown map[string]map[string]string // component → key → first message
}

// NewFieldCheck wraps next (nil: discard).
func NewFieldCheck(next slog.Handler) *FieldCheck {
	if next == nil {
		next = slog.DiscardHandler
	}
	return &FieldCheck{next: next, shared: &fieldCheckState{unknown: map[string]map[string]string{}}}
}

// Unknown returns the keys seen that are not Fields, each with the message
// of the first record that carried it, from loggers of any component.
func (f *FieldCheck) Unknown() map[string]string {
	f.shared.mu.Lock()
	defer f.shared.mu.Unlock()
	out := map[string]string{}
	for _, m := range f.shared.unknown {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// UnknownIn is Unknown for the loggers of one component ("" for loggers
// without one).
func (f *FieldCheck) UnknownIn(component string) map[string]string {
	f.shared.mu.Lock()
	defer f.shared.mu.Unlock()
	out := map[string]string{}
	for k, v := range f.shared.unknown[component] {
		out[k] = v
	}
	return out
}

func (f *FieldCheck) note(component, key, msg string) {
	if IsField(key) {
		return
	}
	f.shared.mu.Lock()
	m := f.shared.unknown[component]
	if m == nil {
		m = map[string]string{}
		f.shared.unknown[component] = m
	}
	if _, ok := m[key]; !ok {
		m[key] = msg
	}
	f.shared.mu.Unlock()
}

// Enabled implements slog.Handler.
func (f *FieldCheck) Enabled(ctx context.Context, l slog.Level) bool { return true }

// Handle implements slog.Handler.
func (f *FieldCheck) Handle(ctx context.Context, r slog.Record) error {
	component := f.component
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "component" {
			component = a.Value.String()
		}
		return true
	})
	r.Attrs(func(a slog.Attr) bool {
		f.note(component, a.Key, r.Message)
		return true
	})
	if !f.next.Enabled(ctx, r.Level) {
		return nil
	}
	return f.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (f *FieldCheck) WithAttrs(as []slog.Attr) slog.Handler {
	component := f.component
	for _, a := range as {
		if a.Key == "component" {
			component = a.Value.String()
		}
	}
	for _, a := range as {
		f.note(component, a.Key, "(logger attribute)")
	}
	return &FieldCheck{next: f.next.WithAttrs(as), component: component, shared: f.shared}
}

// WithGroup implements slog.Handler.
func (f *FieldCheck) WithGroup(name string) slog.Handler {
	f.note(f.component, name, "(logger group)")
	return &FieldCheck{next: f.next.WithGroup(name), component: f.component, shared: f.shared}
}
