package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// MaxLogLine bounds one log line the lab reads; longer lines are skipped.
const MaxLogLine = 64 << 10

// pollInterval is how often the lab looks again at a condition it waits
// for (a log line, a status view, a socket).
const pollInterval = 100 * time.Millisecond

// LogRecord is one JSON log line of a daemon (docs/LOGGING.md).
type LogRecord struct {
	Time   time.Time
	Level  string
	Msg    string
	Fields map[string]any // every attribute, component and the rest
	Raw    string
	Offset int64 // where the line starts in the file
}

// Str returns the field as a string ("" if absent).
func (r LogRecord) Str(key string) string {
	switch v := r.Fields[key].(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// ParseLogLine decodes one JSON log line. Lines that are not JSON objects
// (a panic's stack, a Go runtime message) are errors.
func ParseLogLine(line []byte) (LogRecord, error) {
	var r LogRecord
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return r, errors.New("lab: not a JSON log line")
	}
	if len(line) > MaxLogLine {
		return r, errors.New("lab: log line too long")
	}
	if err := json.Unmarshal(line, &r.Fields); err != nil {
		return r, fmt.Errorf("lab: log line: %w", err)
	}
	r.Raw = string(line)
	r.Level, _ = r.Fields["level"].(string)
	r.Msg, _ = r.Fields["msg"].(string)
	if t, ok := r.Fields["time"].(string); ok {
		r.Time, _ = time.Parse(time.RFC3339Nano, t)
	}
	return r, nil
}

// ReadLog returns the JSON records of a log file from offset on, and the
// offset after the last complete line.
func ReadLog(path string, offset int64) ([]LogRecord, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, offset, fmt.Errorf("lab: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, offset, fmt.Errorf("lab: %w", err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	var out []LogRecord
	pos := offset
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Skip the rest of an overlong line.
			n := int64(len(line))
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				n += int64(len(line))
			}
			if err != nil {
				return out, pos, nil
			}
			pos += n
			continue
		}
		if err != nil { // EOF: an incomplete last line is read next time
			return out, pos, nil
		}
		if r, perr := ParseLogLine(line); perr == nil {
			r.Offset = pos
			out = append(out, r)
		}
		pos += int64(len(line))
	}
}

// WaitLog waits until a record matching match appears in the log file at
// or after offset, and returns it.
func WaitLog(ctx context.Context, path string, offset int64, match func(LogRecord) bool) (LogRecord, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		recs, next, err := ReadLog(path, offset)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return LogRecord{}, err
		}
		for _, r := range recs {
			if match(r) {
				return r, nil
			}
		}
		offset = next
		select {
		case <-ctx.Done():
			return LogRecord{}, fmt.Errorf("no such line in %s: %w", path, ctx.Err())
		case <-t.C:
		}
	}
}

// fileSize is the size of a file (0 if it does not exist): the offset from
// which to watch a log for what happens next.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// LogOffset returns the current end of the named daemon's log.
func (l *Lab) LogOffset(name string) int64 { return fileSize(l.logPath(name)) }

// Logs returns the named daemon's JSON log records from offset on.
func (l *Lab) Logs(name string, offset int64) ([]LogRecord, error) {
	recs, _, err := ReadLog(l.logPath(name), offset)
	return recs, err
}

// WaitLog waits for a record of the named daemon's log (from offset on)
// that matches.
func (l *Lab) WaitLog(ctx context.Context, name string, offset int64, match func(LogRecord) bool) (LogRecord, error) {
	return WaitLog(ctx, l.logPath(name), offset, match)
}

// LogTail returns the last n lines of the named daemon's log, as text, for
// error reports.
func (l *Lab) LogTail(name string, n int) string {
	b, err := os.ReadFile(l.logPath(name))
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func (l *Lab) logPath(name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if name == "hub" {
		return l.st.Hub.Log
	}
	if c := l.cpeLocked(name); c != nil {
		return c.Log
	}
	return ""
}
