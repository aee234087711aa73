package ops

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Limits of the status server.
const (
	MaxRequestSize = 64 << 10
	RequestTimeout = 10 * time.Second
	MaxConns       = 8
	// SocketMode is the permission of the status socket.
	SocketMode fs.FileMode = 0o600
)

// Formats a Request may ask for.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Request is what a client sends: one JSON object on one line.
type Request struct {
	Command string   `json:"command"`
	Args    []string `json:"args,omitempty"`
	Format  string   `json:"format,omitempty"` // FormatText (default) or FormatJSON
}

// Response is what the server answers: one JSON object on one line.
type Response struct {
	OK    bool            `json:"ok"`
	Error string          `json:"error,omitempty"`
	Text  string          `json:"text,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// TextRenderer is implemented by views that render themselves for humans.
// A view that does not is printed as indented JSON.
type TextRenderer interface {
	RenderText(w *Text)
}

// Handler answers one command: it returns the view (any value that encodes
// to JSON, ideally a TextRenderer too) or an error shown to the client.
type Handler func(ctx context.Context, args []string) (any, error)

// StatusServer serves views on a Unix socket (see the package doc for the
// protocol).
type StatusServer struct {
	path string
	log  *slog.Logger
	ln   *net.UnixListener
	sem  chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex // guards the following
	handlers map[string]commandHandler
	conns    map[net.Conn]struct{}
	closed   bool
}

type commandHandler struct {
	h    Handler
	help string
}

// ListenStatus creates the socket at path (its directory is created with
// mode 0750 if missing) and starts serving. A stale socket left by a daemon
// that died is replaced; one that still answers is an error: another
// instance runs. The socket is removed on Close.
func ListenStatus(path string, log *slog.Logger) (*StatusServer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("ops: status socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	// The socket is created with the umask applied to 0777: create it under
	// a restrictive umask so it is never reachable by others, even briefly.
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("ops: status socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, SocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("ops: status socket: %w", err)
	}
	s := &StatusServer{path: path, log: log, ln: ln, sem: make(chan struct{}, MaxConns),
		handlers: map[string]commandHandler{}, conns: map[net.Conn]struct{}{}}
	s.Handle("help", "list the commands", func(context.Context, []string) (any, error) { return s.helpView(), nil })
	s.wg.Add(1)
	go s.routineAccept()
	return s, nil
}

// removeStale removes a socket file nobody listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ops: status socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("ops: status socket %s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("ops: status socket %s: another daemon is running", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ops: stale status socket: %w", err)
	}
	return nil
}

// Path returns the socket's path.
func (s *StatusServer) Path() string { return s.path }

// Handle registers (or replaces) the handler of a command. help is one line
// for the help command.
func (s *StatusServer) Handle(command, help string, h Handler) {
	s.mu.Lock()
	s.handlers[command] = commandHandler{h: h, help: help}
	s.mu.Unlock()
}

// helpView lists the commands.
func (s *StatusServer) helpView() *Table {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.handlers))
	for n := range s.handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	t := &Table{Header: []string{"COMMAND", "DESCRIPTION"}}
	for _, n := range names {
		t.Rows = append(t.Rows, []string{n, s.handlers[n].help})
	}
	return t
}

// Close stops accepting, ends the connections being served and removes the
// socket.
func (s *StatusServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// routineAccept accepts connections until Close.
func (s *StatusServer) routineAccept() {
	defer s.wg.Done()
	s.log.Debug("status server started", "local", s.path)
	defer s.log.Debug("status server stopped", "local", s.path)
	for {
		s.sem <- struct{}{}
		c, err := s.ln.Accept()
		if err != nil {
			<-s.sem
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Error("status socket accept failed", "err", err)
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			<-s.sem
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

// serve answers one request on c.
func (s *StatusServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
		<-s.sem
	}()
	c.SetDeadline(time.Now().Add(RequestTimeout))
	resp := s.answer(c)
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(Response{Error: "ops: cannot encode the answer: " + err.Error()})
	}
	c.Write(append(b, '\n'))
}

func (s *StatusServer) answer(c net.Conn) Response {
	line, err := bufio.NewReader(io.LimitReader(c, MaxRequestSize+1)).ReadBytes('\n')
	if len(line) > MaxRequestSize {
		return Response{Error: "request too long"}
	}
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return Response{Error: "incomplete request"}
	}
	req, err := ParseRequest(line)
	if err != nil {
		return Response{Error: err.Error()}
	}
	s.mu.Lock()
	ch, ok := s.handlers[req.Command]
	s.mu.Unlock()
	if !ok {
		return Response{Error: fmt.Sprintf("unknown command %q (try help)", req.Command)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	view, err := ch.h(ctx, req.Args)
	if err != nil {
		return Response{Error: err.Error()}
	}
	return Render(view, req.Format)
}

// ParseRequest decodes one request line. It refuses unknown fields, an empty
// command and an unknown format.
func ParseRequest(line []byte) (Request, error) {
	var req Request
	if len(line) > MaxRequestSize {
		return req, errors.New("request too long")
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, fmt.Errorf("bad request: %v", err)
	}
	if dec.More() {
		return Request{}, errors.New("bad request: data after the request")
	}
	if req.Command == "" {
		return Request{}, errors.New("bad request: no command")
	}
	if len(req.Args) > 64 {
		return Request{}, errors.New("bad request: too many arguments")
	}
	switch req.Format {
	case "", FormatText, FormatJSON:
	default:
		return Request{}, fmt.Errorf("bad request: format %q: expected text or json", req.Format)
	}
	return req, nil
}

// Render builds the Response for a view in a format.
func Render(view any, format string) Response {
	if format == FormatJSON {
		b, err := json.Marshal(view)
		if err != nil {
			return Response{Error: "cannot encode the view: " + err.Error()}
		}
		return Response{OK: true, Data: b}
	}
	if r, ok := view.(TextRenderer); ok {
		var t Text
		r.RenderText(&t)
		return Response{OK: true, Text: t.String()}
	}
	b, err := json.MarshalIndent(view, "", "  ")
	if err != nil {
		return Response{Error: "cannot encode the view: " + err.Error()}
	}
	return Response{OK: true, Text: string(b) + "\n"}
}

// Query sends req to the status socket at path and returns the answer. An
// answer with OK false is returned as an error.
func Query(ctx context.Context, path string, req Request) (*Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("ops: status socket: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(RequestTimeout + 5*time.Second))
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("ops: status socket: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("ops: status answer: %w", err)
	}
	if !resp.OK {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}

// QueryJSON runs command with args and decodes the view's data into v.
func QueryJSON(ctx context.Context, path, command string, v any, args ...string) error {
	resp, err := Query(ctx, path, Request{Command: command, Args: args, Format: FormatJSON})
	if err != nil {
		return err
	}
	return json.Unmarshal(resp.Data, v)
}

// StatusCommand runs the `status` subcommand of a daemon's binary: args are
// the words after "status" (a view and its arguments; none means
// defaultView). It prints the view's text (or JSON with -json as first
// word) to out, errors to errOut, and returns the exit code.
func StatusCommand(ctx context.Context, path string, args []string, defaultView string, out, errOut io.Writer) int {
	format := FormatText
	if len(args) > 0 && (args[0] == "-json" || args[0] == "--json") {
		format, args = FormatJSON, args[1:]
	}
	cmd := defaultView
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	return queryAndPrint(ctx, path, Request{Command: cmd, Args: args, Format: format}, "status "+strings.TrimSpace(cmd), out, errOut)
}

// queryAndPrint sends req and prints the answer's text (or its JSON data) to out, or
// the error, after label, to errOut; it returns the exit code.
func queryAndPrint(ctx context.Context, path string, req Request, label string, out, errOut io.Writer) int {
	resp, err := Query(ctx, path, req)
	if err != nil {
		fmt.Fprintf(errOut, "%s: %v\n", label, err)
		return 1
	}
	if req.Format == FormatJSON {
		out.Write(append(bytes.TrimSpace(resp.Data), '\n'))
		return 0
	}
	io.WriteString(out, resp.Text)
	return 0
}

// StatusMain runs the `status` subcommand of a daemon's binary:
//
//	NAME status [-socket PATH] [-json] [view [args...]]
//
// args are the words after "status"; socket is the default socket path and
// defaultView the view shown without one. It returns the exit code.
func StatusMain(name string, args []string, socket, defaultView string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name+" status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("socket", socket, "status socket of the running daemon")
	asJSON := fs.Bool("json", false, "print the view's data as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if *asJSON {
		rest = append([]string{"-json"}, rest...)
	}
	return StatusCommand(context.Background(), *path, rest, defaultView, stdout, stderr)
}

// CommandMain runs a subcommand of a daemon's binary that sends one command
// to the running daemon's status socket (mpsa-hub rekey):
//
//	NAME COMMAND [-socket PATH] [-json] [args...]
//
// args are the words after the command's name; socket is the default socket
// path. It prints the answer's text (or JSON) and returns the exit code: 0,
// 1 when the daemon refused or did not answer, 2 for bad flags.
func CommandMain(name, command string, args []string, socket string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name+" "+command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("socket", socket, "status socket of the running daemon")
	asJSON := fs.Bool("json", false, "print the answer's data as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	format := FormatText
	if *asJSON {
		format = FormatJSON
	}
	return queryAndPrint(context.Background(), *path, Request{Command: command, Args: fs.Args(), Format: format}, name+" "+command, stdout, stderr)
}
