package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/mpsa"
)

// peerView is a view with a text rendering, as the daemons register them.
type peerView struct {
	Peers []string `json:"peers"`
	Since time.Time
}

func (v *peerView) RenderText(t *Text) {
	for _, p := range v.Peers {
		t.Line("%s: ESTABLISHED", p)
		t.Indent(func() { t.Line("established %s", Ago(v.Since.Add(time.Minute), v.Since)) })
	}
}

func testServer(t *testing.T) *StatusServer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "d.sock")
	s, err := ListenStatus(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	since := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	s.Handle("peers", "list peers", func(ctx context.Context, args []string) (any, error) {
		return &peerView{Peers: append([]string{"cpe1", "cpe2"}, args...), Since: since}, nil
	})
	s.Handle("fail", "always fails", func(context.Context, []string) (any, error) {
		return nil, errors.New("no such group")
	})
	s.Handle("plain", "a view without text rendering", func(context.Context, []string) (any, error) {
		return map[string]int{"sas": 3}, nil
	})
	return s
}

func TestStatusServer(t *testing.T) {
	s := testServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != SocketMode {
		t.Errorf("socket mode %v, want %v", fi.Mode().Perm(), SocketMode)
	}

	resp, err := Query(ctx, s.Path(), Request{Command: "peers", Args: []string{"cpe3"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "cpe1: ESTABLISHED\n  established 60s ago\ncpe2: ESTABLISHED\n  established 60s ago\ncpe3: ESTABLISHED\n  established 60s ago\n"
	if resp.Text != want {
		t.Errorf("text:\n%s\nwant:\n%s", resp.Text, want)
	}

	var v peerView
	if err := QueryJSON(ctx, s.Path(), "peers", &v); err != nil {
		t.Fatal(err)
	}
	if strings.Join(v.Peers, ",") != "cpe1,cpe2" {
		t.Errorf("json view: %+v", v)
	}

	if _, err := Query(ctx, s.Path(), Request{Command: "fail"}); err == nil || err.Error() != "no such group" {
		t.Errorf("failing handler: %v", err)
	}
	if _, err := Query(ctx, s.Path(), Request{Command: "nope"}); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: %v", err)
	}
	resp, err = Query(ctx, s.Path(), Request{Command: "plain"})
	if err != nil || !strings.Contains(resp.Text, `"sas": 3`) {
		t.Errorf("plain view: %v %q", err, resp.Text)
	}
	resp, err = Query(ctx, s.Path(), Request{Command: "help"})
	if err != nil || !strings.Contains(resp.Text, "peers    list peers") {
		t.Errorf("help: %v %q", err, resp.Text)
	}
}

// rawExchange sends raw octets and returns the decoded answer.
func rawExchange(t *testing.T, path string, req []byte, closeWrite bool) Response {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(RequestTimeout + 5*time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		c.(*net.UnixConn).CloseWrite()
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestStatusServerBadRequests(t *testing.T) {
	s := testServer(t)
	for _, tc := range []struct {
		name  string
		req   []byte
		close bool
		want  string
	}{
		{"not json", []byte("status sas\n"), false, "bad request"},
		{"unknown field", []byte(`{"command":"peers","key":"x"}` + "\n"), false, "unknown field"},
		{"no command", []byte(`{"args":["x"]}` + "\n"), false, "no command"},
		{"bad format", []byte(`{"command":"peers","format":"xml"}` + "\n"), false, "format"},
		{"two objects", []byte(`{"command":"peers"}{"command":"peers"}` + "\n"), false, "data after"},
		{"too long", append(bytes.Repeat([]byte(" "), MaxRequestSize+10), '\n'), false, "too long"},
		{"no newline, closed", []byte(`{"command":"peers"}`), true, ""},
		{"empty, closed", nil, true, "incomplete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawExchange(t, s.Path(), tc.req, tc.close)
			if tc.want == "" {
				if !resp.OK {
					t.Errorf("refused: %s", resp.Error)
				}
				return
			}
			if resp.OK || !strings.Contains(resp.Error, tc.want) {
				t.Errorf("answer %+v, want an error with %q", resp, tc.want)
			}
		})
	}
}

func TestStatusServerSocketLife(t *testing.T) {
	s := testServer(t)
	if _, err := ListenStatus(s.Path(), nil); err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Fatalf("second server on a live socket: %v", err)
	}
	s.Close()
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}

	// A socket file nobody listens on (a daemon killed with -9) is replaced.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.Path(), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(s.Path()); err != nil {
		t.Fatalf("stale socket not there: %v", err)
	}
	s2, err := ListenStatus(s.Path(), nil)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	s2.Close()

	// A regular file in the way is not removed.
	if err := os.WriteFile(s.Path(), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenStatus(s.Path(), nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("file in the way: %v", err)
	}
}

// TestStatusServerSlowClients checks that clients that never send a request
// do not stop others beyond MaxConns' worth of waiting, and that Close ends
// them.
func TestStatusServerSlowClients(t *testing.T) {
	s := testServer(t)
	var idle []net.Conn
	for range MaxConns - 1 {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Query(ctx, s.Path(), Request{Command: "peers"}); err != nil {
		t.Fatalf("query beside %d idle clients: %v", len(idle), err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Close did not end idle connections")
	}
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		if _, err := c.Read(b[:]); err == nil {
			t.Error("idle connection still open after Close")
		}
	}
}

func TestStatusCommand(t *testing.T) {
	s := testServer(t)
	ctx := context.Background()
	var out, errOut bytes.Buffer
	if code := StatusCommand(ctx, s.Path(), nil, "peers", &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "cpe1: ESTABLISHED") {
		t.Errorf("default view: code %d out %q err %q", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := StatusCommand(ctx, s.Path(), []string{"-json", "peers", "x"}, "help", &out, &errOut); code != 0 || !strings.Contains(out.String(), `"peers":["cpe1","cpe2","x"]`) {
		t.Errorf("json: code %d out %q", code, out.String())
	}
	out.Reset()
	errOut.Reset()
	if code := StatusCommand(ctx, s.Path(), []string{"fail"}, "help", &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "no such group") {
		t.Errorf("failing view: code %d err %q", code, errOut.String())
	}
	errOut.Reset()
	if code := StatusCommand(ctx, filepath.Join(t.TempDir(), "none.sock"), nil, "peers", &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "status socket") {
		t.Errorf("no daemon: code %d err %q", code, errOut.String())
	}
	out.Reset()
	if code := StatusMain("d", []string{"-socket", s.Path(), "-json", "peers"}, "/nonexistent", "help", &out, &errOut); code != 0 || !strings.Contains(out.String(), `"peers":["cpe1","cpe2"]`) {
		t.Errorf("StatusMain: code %d out %q", code, out.String())
	}
	if code := StatusMain("d", []string{"-bogus"}, s.Path(), "help", &out, &errOut); code != 2 {
		t.Errorf("StatusMain with a bad flag: code %d", code)
	}

	// A command as a subcommand of its own (mpsa-hub rekey GROUP).
	out.Reset()
	if code := CommandMain("d", "peers", []string{"-socket", s.Path(), "x", "y"}, "/nonexistent", &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "cpe1: ESTABLISHED") {
		t.Errorf("CommandMain: code %d out %q", code, out.String())
	}
	out.Reset()
	if code := CommandMain("d", "peers", []string{"-json", "x"}, s.Path(), &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), `{"peers":["cpe1","cpe2","x"],`) || !strings.HasSuffix(out.String(), "}\n") {
		t.Errorf("CommandMain -json: code %d out %q", code, out.String())
	}
	errOut.Reset()
	if code := CommandMain("d", "fail", nil, s.Path(), &out, &errOut); code != 1 || !strings.HasPrefix(errOut.String(), "d fail: ") || !strings.Contains(errOut.String(), "no such group") {
		t.Errorf("CommandMain refused: code %d err %q", code, errOut.String())
	}
	if code := CommandMain("d", "peers", []string{"-bogus"}, s.Path(), &out, &errOut); code != 2 {
		t.Errorf("CommandMain with a bad flag: code %d", code)
	}
}

func TestTable(t *testing.T) {
	tab := &Table{Header: []string{"PREFIX", "ENDPOINT", "GROUP"}, Rows: [][]string{
		{"10.1.0.0/24", "192.0.2.7:4500", "acme"},
		{"fd01:1::/64", "192.0.2.7", ""},
	}}
	var txt Text
	txt.Line("routes:")
	txt.Indent(func() { txt.Table(tab) })
	want := "routes:\n" +
		"  PREFIX       ENDPOINT        GROUP\n" +
		"  10.1.0.0/24  192.0.2.7:4500  acme\n" +
		"  fd01:1::/64  192.0.2.7\n"
	if txt.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", txt.String(), want)
	}
}

func TestTimes(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ got, want string }{
		{Ago(now, now.Add(-90*time.Second)), "90s ago"},
		{Ago(now, time.Time{}), "never"},
		{In(now, now.Add(3600*time.Second)), "in 3600s"},
		{In(now, now.Add(-time.Second)), "now"},
		{In(now, time.Time{}), "never"},
		{Seconds(1499 * time.Millisecond), "1s"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(&buf, configs.LogConfig{Level: configs.LogWarn, Format: configs.LogJSON})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", IKESPIs(0x3cfdee58e0750b5e, 1)...)
	if err := l.SetLevel(configs.LogDebug); err != nil {
		t.Fatal(err)
	}
	l.With("component", "hub").Debug("now shown", "esp_spi", SPI32(0xc0ffee01))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q", lines)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["ike_spi_i"] != "3cfdee58e0750b5e" || rec["ike_spi_r"] != "0000000000000001" {
		t.Errorf("record %v", rec)
	}
	if !strings.Contains(lines[1], `"component":"hub"`) || !strings.Contains(lines[1], `"esp_spi":"c0ffee01"`) {
		t.Errorf("record %s", lines[1])
	}
	buf.Reset()
	tl, err := NewLogger(&buf, configs.LogConfig{})
	if err != nil {
		t.Fatal(err)
	}
	tl.Debug("hidden")
	tl.Info("text", "group", "acme")
	if got := buf.String(); !strings.Contains(got, "level=INFO msg=text group=acme") || strings.Contains(got, "hidden") {
		t.Errorf("text logger: %q", got)
	}
	if _, err := NewLogger(&buf, configs.LogConfig{Level: "loud"}); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := NewLogger(&buf, configs.LogConfig{Format: "xml"}); err == nil {
		t.Error("bad format accepted")
	}
	if err := tl.SetLevel("loud"); err == nil || tl.Level() != slog.LevelInfo {
		t.Errorf("bad SetLevel: %v, level %v", err, tl.Level())
	}
}

// TestFieldsMatchLoggingDoc keeps Fields equal to the table of
// docs/LOGGING.md.
func TestFieldsMatchLoggingDoc(t *testing.T) {
	b, err := os.ReadFile("../../docs/LOGGING.md")
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "| `") {
			cell := strings.Split(line, "|")[1]
			for _, f := range strings.Split(cell, ",") {
				doc = append(doc, strings.Trim(strings.TrimSpace(f), "`"))
			}
		}
	}
	if strings.Join(doc, " ") != strings.Join(Fields, " ") {
		t.Errorf("docs/LOGGING.md fields %v, ops.Fields %v", doc, Fields)
	}
}

func TestFieldCheck(t *testing.T) {
	var buf bytes.Buffer
	fc := NewFieldCheck(slog.NewTextHandler(&buf, nil))
	l := slog.New(fc).With("component", "hub")
	l.Info("ok", "peer", "192.0.2.7:500", "esp_spi", "c0ffee01")
	l.Info("bad", "spi", 7)
	l.WithGroup("extra").Info("grouped", "group", "acme", "gobgp_Topic", "Peer")
	got := fc.Unknown()
	if len(got) != 2 || got["spi"] != "bad" || got["extra"] != "(logger group)" {
		t.Errorf("unknown %v", got)
	}
	slog.New(fc).Info("other", "component", "ike", "pkts", 3)
	if got := fc.UnknownIn("hub"); len(got) != 2 {
		t.Errorf("hub's unknown %v", got)
	}
	if got := fc.UnknownIn("ike"); len(got) != 1 || got["pkts"] != "other" {
		t.Errorf("ike's unknown %v", got)
	}
	if !strings.Contains(buf.String(), "msg=ok") {
		t.Errorf("records not passed on: %q", buf.String())
	}
}

func TestPacketConn(t *testing.T) {
	a, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pc := NewPacketConn(a)
	defer pc.Close()
	bAddr := b.LocalAddr().(*net.UDPAddr).AddrPort()
	if pc.LocalAddr() != a.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("local %v", pc.LocalAddr())
	}
	msg := []byte{0, 0, 0, 0, 1, 2, 3}
	if err := pc.WritePacket(msg, netip.AddrPort{}, bAddr); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := b.ReadFromUDPAddrPort(buf)
	if err != nil || !bytes.Equal(buf[:n], msg) || from != pc.LocalAddr() {
		t.Fatalf("peer read %x from %v: %v", buf[:n], from, err)
	}
	if _, err := b.WriteToUDPAddrPort([]byte("back"), pc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, src, dst, err := pc.ReadPacket(buf)
	if err != nil || string(buf[:n]) != "back" || src != bAddr || dst.IsValid() {
		t.Fatalf("read %q from %v to %v: %v", buf[:n], src, dst, err)
	}
	pc.Close()
	if _, _, _, err := pc.ReadPacket(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
}

func TestNotifyConversion(t *testing.T) {
	in := []*wire.Notify{
		{Protocol: wire.ProtocolID(mpsa.ProtocolESP), SPI: []byte{1, 2, 3, 4}, NotifyType: wire.NotifyType(mpsa.NotifyPut), Data: []byte{9}},
		nil,
		{NotifyType: wire.NotifyType(mpsa.NotifySenderIDSupported)},
	}
	m := MPSANotifies(in)
	if len(m) != 2 || m[0].Type != mpsa.NotifyPut || m[0].Protocol != mpsa.ProtocolESP || !bytes.Equal(m[0].SPI, []byte{1, 2, 3, 4}) || m[1].Type != mpsa.NotifySenderIDSupported {
		t.Fatalf("to mpsa: %+v", m)
	}
	if !mpsa.PeerCapabilities(mpsa.VendorIDs(), m).SenderID {
		t.Error("Sender-ID support lost in conversion")
	}
	back := WireNotifies(m)
	if len(back) != 2 || back[0].NotifyType != in[0].NotifyType || back[0].Protocol != in[0].Protocol || !bytes.Equal(back[0].Data, in[0].Data) {
		t.Fatalf("to wire: %+v", back)
	}
}

func TestVersion(t *testing.T) {
	if v := Version("mpsa-hub", "v1.2.3"); !strings.HasPrefix(v, "mpsa-hub v1.2.3 go") {
		t.Errorf("version %q", v)
	}
	if v := Version("mpsa-hub", ""); !strings.HasPrefix(v, "mpsa-hub ") || strings.Contains(v, "  ") {
		t.Errorf("version %q", v)
	}
}

func TestWaitSignals(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	var got any = "unset"
	go func() {
		defer wg.Done()
		got = WaitSignals(ctx, nil)
	}()
	cancel()
	wg.Wait()
	if got != nil {
		t.Errorf("WaitSignals after cancel returned %v", got)
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"command":"sas","args":["cpe1"],"format":"json"}`))
	f.Add([]byte(`{"command":""}`))
	f.Add([]byte("status sas\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ParseRequest(b)
		if err != nil {
			return
		}
		if req.Command == "" || len(req.Args) > 64 {
			t.Fatalf("accepted %+v", req)
		}
		enc, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseRequest(enc)
		if err != nil || again.Command != req.Command || len(again.Args) != len(req.Args) || again.Format != req.Format {
			t.Fatalf("round trip %+v → %s → %+v, %v", req, enc, again, err)
		}
	})
}

// TestStatusServerNoLeak checks that Close stops every goroutine the server
// started.
func TestStatusServerNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := ListenStatus(filepath.Join(t.TempDir(), "leak.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	idle, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := Query(context.Background(), s.Path(), Request{Command: "help"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines before, %d after Close", before, runtime.NumGoroutine())
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}
