package wire

import "log/slog"

// Protocol numbers log by name in every slog handler (the JSON handler
// would print a Stringer's number): docs/LOGGING.md's exchange and reason
// fields are names.

// LogValue implements slog.LogValuer.
func (e ExchangeType) LogValue() slog.Value { return slog.StringValue(e.String()) }

// LogValue implements slog.LogValuer.
func (t NotifyType) LogValue() slog.Value { return slog.StringValue(t.String()) }

// LogValue implements slog.LogValuer.
func (t PayloadType) LogValue() slog.Value { return slog.StringValue(t.String()) }
