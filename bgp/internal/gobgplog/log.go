// Package gobgplog adapts GoBGP v3's logger interface (pkg/log.Logger) to
// log/slog, so the embedded route reflector logs through the daemon's
// logger with component=bgp.
//
// GoBGP logs every peer event at Info; with thousands of CPEs that is noise,
// so its Info maps to slog Debug. Its Fatal (a failed gRPC listen) must not
// end the hub: it is logged at Error and returns.
package gobgplog

import (
	"context"
	"log/slog"
	"sort"
	"sync/atomic"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// Logger implements gobgplog.Logger on top of a *slog.Logger.
type Logger struct {
	l     *slog.Logger
	level atomic.Uint32 // a gobgplog.LogLevel
	hook  func(msg string, f gobgplog.Fields)
	quiet map[string]bool // messages logged at Debug whatever GoBGP's level
}

var _ gobgplog.Logger = (*Logger)(nil)

// New returns an adapter that writes to l. GoBGP messages at or below
// level are passed on (GoBGP checks GetLevel before costly logging).
func New(l *slog.Logger, level gobgplog.LogLevel) *Logger {
	a := &Logger{l: l}
	a.level.Store(uint32(level))
	return a
}

func (a *Logger) log(lvl slog.Level, msg string, f gobgplog.Fields) {
	if !a.l.Enabled(context.Background(), lvl) {
		return
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, "gobgp_"+k, f[k])
	}
	a.l.Log(context.Background(), lvl, msg, args...)
}

// WithHook returns the adapter after setting a function that sees every
// Warn and Info message before level filtering, to count events GoBGP only
// reports in its log (such as a refused connection).
func (a *Logger) WithHook(h func(msg string, f gobgplog.Fields)) *Logger {
	a.hook = h
	return a
}

// WithQuiet returns the adapter after setting messages that are logged at
// Debug only: GoBGP warns about things that are normal in the hub's use.
func (a *Logger) WithQuiet(msgs ...string) *Logger {
	a.quiet = map[string]bool{}
	for _, m := range msgs {
		a.quiet[m] = true
	}
	return a
}

// Panic logs at Error; GoBGP calls it only for programming errors.
func (a *Logger) Panic(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }

// Fatal logs at Error and returns (see the package comment).
func (a *Logger) Fatal(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }

// Error logs at Error.
func (a *Logger) Error(msg string, f gobgplog.Fields) {
	if a.GetLevel() >= gobgplog.ErrorLevel {
		a.log(slog.LevelError, msg, f)
	}
}

// Warn logs at Warn.
func (a *Logger) Warn(msg string, f gobgplog.Fields) {
	if a.hook != nil {
		a.hook(msg, f)
	}
	if a.quiet[msg] {
		a.log(slog.LevelDebug, msg, f)
		return
	}
	if a.GetLevel() >= gobgplog.WarnLevel {
		a.log(slog.LevelWarn, msg, f)
	}
}

// Info logs at Debug.
func (a *Logger) Info(msg string, f gobgplog.Fields) {
	if a.hook != nil {
		a.hook(msg, f)
	}
	if a.GetLevel() >= gobgplog.InfoLevel {
		a.log(slog.LevelDebug, msg, f)
	}
}

// Debug logs at Debug.
func (a *Logger) Debug(msg string, f gobgplog.Fields) {
	if a.GetLevel() >= gobgplog.DebugLevel {
		a.log(slog.LevelDebug, msg, f)
	}
}

// SetLevel sets the level GoBGP reads back with GetLevel.
func (a *Logger) SetLevel(level gobgplog.LogLevel) { a.level.Store(uint32(level)) }

// GetLevel returns the level.
func (a *Logger) GetLevel() gobgplog.LogLevel { return gobgplog.LogLevel(a.level.Load()) }
