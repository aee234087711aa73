package cpe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/internal/ops"
)

// The metrics endpoint speaks just enough HTTP/1.1 for a Prometheus scrape
// (GET /metrics, text exposition format 0.0.4): net/http alone would add
// about 2 MB to the CPE binary, the Prometheus client about 4.6 MB
// (docs/BENCHMARKS.md, "cpe").
const (
	// MaxMetricsRequest bounds the request line and headers of a scrape.
	MaxMetricsRequest = 8 << 10
	// MaxMetricsHeaders bounds the number of header lines.
	MaxMetricsHeaders = 64
	// MetricsTimeout bounds one scrape (reading the request and writing
	// the answer).
	MetricsTimeout = 10 * time.Second
	// MaxMetricsConns bounds the scrapes served at once; more wait in the
	// listen queue.
	MaxMetricsConns = 4
	metricsPath     = "/metrics"
	metricsType     = "text/plain; version=0.0.4; charset=utf-8"
)

// Errors of the request parser.
var (
	errRequestTooLarge = errors.New("cpe: metrics request too large")
	errBadRequest      = errors.New("cpe: malformed metrics request")
)

// httpRequest is what the metrics endpoint reads of a request.
type httpRequest struct {
	Method, Path, Proto string
}

// readRequest reads one HTTP/1.x request head (request line and headers,
// RFC 9112 §2-§5) from r, at most MaxMetricsRequest octets and
// MaxMetricsHeaders header lines. It keeps only the method, the path
// (without query) and the version; the body, if any, is not read.
func readRequest(r *bufio.Reader) (httpRequest, error) {
	var req httpRequest
	budget := MaxMetricsRequest
	line := func() (string, error) {
		var b []byte
		for {
			frag, err := r.ReadSlice('\n')
			b = append(b, frag...)
			if len(b) > budget {
				return "", errRequestTooLarge
			}
			if err == nil {
				break
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return "", err
			}
		}
		budget -= len(b)
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	first, err := line()
	if err != nil {
		return req, err
	}
	parts := strings.Split(first, " ")
	if len(parts) != 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") || !strings.HasPrefix(parts[2], "HTTP/1.") {
		return req, errBadRequest
	}
	for _, ch := range parts[0] {
		if ch < 'A' || ch > 'Z' {
			return req, errBadRequest
		}
	}
	req.Method, req.Proto = parts[0], parts[2]
	req.Path, _, _ = strings.Cut(parts[1], "?")
	for n := 0; ; n++ {
		h, err := line()
		if err != nil {
			return req, err
		}
		if h == "" {
			return req, nil
		}
		if n >= MaxMetricsHeaders {
			return req, errRequestTooLarge
		}
		if name, _, ok := strings.Cut(h, ":"); !ok || name == "" || strings.ContainsAny(name, " \t") {
			return req, errBadRequest
		}
	}
}

// metricsServer serves GET /metrics on a TCP listener.
type metricsServer struct {
	ln    net.Listener
	write func(io.Writer)
	sem   chan struct{}
	wg    sync.WaitGroup
}

func (c *CPE) listenMetrics(ap netip.AddrPort) (*metricsServer, error) {
	var ln net.Listener
	err := c.inNetns(func() error {
		var err error
		ln, err = net.Listen("tcp", ap.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cpe: metrics listener: %w", err)
	}
	m := &metricsServer{ln: ln, write: c.WriteMetrics, sem: make(chan struct{}, MaxMetricsConns)}
	m.wg.Add(1)
	go m.routineAccept()
	return m, nil
}

// Addr is the address the endpoint listens on.
func (m *metricsServer) Addr() net.Addr { return m.ln.Addr() }

func (m *metricsServer) close() {
	m.ln.Close()
	m.wg.Wait()
}

func (m *metricsServer) routineAccept() {
	defer m.wg.Done()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		m.sem <- struct{}{}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer func() { <-m.sem }()
			m.serve(conn)
		}()
	}
}

// serve answers one request and closes the connection.
func (m *metricsServer) serve(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(MetricsTimeout))
	req, err := readRequest(bufio.NewReaderSize(conn, 1024))
	if err != nil {
		status := "400 Bad Request"
		if errors.Is(err, errRequestTooLarge) {
			status = "431 Request Header Fields Too Large"
		} else if !errors.Is(err, errBadRequest) {
			return // the client went away
		}
		respond(conn, status, "text/plain", []byte(status+"\n"), false)
		return
	}
	switch {
	case req.Path != metricsPath:
		respond(conn, "404 Not Found", "text/plain", []byte("404 page not found\n"), false)
	case req.Method != "GET" && req.Method != "HEAD":
		respond(conn, "405 Method Not Allowed", "text/plain", []byte("405 method not allowed\n"), false)
	default:
		var b bytes.Buffer
		m.write(&b)
		respond(conn, "200 OK", metricsType, b.Bytes(), req.Method == "HEAD")
	}
}

func respond(w io.Writer, status, ctype string, body []byte, head bool) {
	h := "HTTP/1.1 " + status + "\r\nContent-Type: " + ctype + "\r\nContent-Length: " + strconv.Itoa(len(body)) +
		"\r\nConnection: close\r\n\r\n"
	if head {
		body = nil
	}
	_, _ = io.WriteString(w, h)
	_, _ = w.Write(body)
}

// expo writes the Prometheus text exposition format.
type expo struct {
	w    *bufio.Writer
	last string
}

// metric writes a sample, with HELP and TYPE lines before the first sample
// of a family. labels alternate names and values.
func (e *expo) metric(name, typ, help string, v float64, labels ...string) {
	if name != e.last {
		fmt.Fprintf(e.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		e.last = name
	}
	e.w.WriteString(name)
	if len(labels) > 0 {
		e.w.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				e.w.WriteByte(',')
			}
			e.w.WriteString(labels[i])
			e.w.WriteString(`="`)
			e.w.WriteString(escapeLabel(labels[i+1]))
			e.w.WriteByte('"')
		}
		e.w.WriteByte('}')
	}
	e.w.WriteByte(' ')
	if v == float64(int64(v)) {
		e.w.WriteString(strconv.FormatInt(int64(v), 10))
	} else {
		e.w.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	}
	e.w.WriteByte('\n')
}

func escapeLabel(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WriteMetrics writes the CPE's metrics in the Prometheus text format:
// SAs, rekeys, the group SA, the BGP session and routes, and the data
// plane's packet and drop counters by reason.
func (c *CPE) WriteMetrics(w io.Writer) {
	st := c.Status()
	e := &expo{w: bufio.NewWriter(w)}
	defer e.w.Flush()
	const p = "mpsa_cpe_"
	est := 0
	children := 0
	for _, sa := range st.IKE {
		if sa.State == "ESTABLISHED" {
			est++
		}
		children += len(sa.Children)
	}
	e.metric(p+"ike_sas", "gauge", "IKE SAs with the hub that are established.", float64(est))
	e.metric(p+"child_sas", "gauge", "CHILD_SAs with the hub.", float64(children))
	e.metric(p+"tunnel_up", "gauge", "1 when the path to the hub's BGP port is up.", b2f(st.Tunnel.Up))
	e.metric(p+"ike_connects_total", "counter", "IKE SAs established with the hub.", float64(c.counters.connects.Load()))
	e.metric(p+"ike_connect_failures_total", "counter", "Failed attempts to reach the hub.", float64(c.counters.connectFailures.Load()))
	e.metric(p+"rekeys_total", "counter", "Rekeys of SAs with the hub.", float64(c.counters.ikeRekeys.Load()), "sa", "ike")
	e.metric(p+"rekeys_total", "counter", "", float64(c.counters.childRekeys.Load()), "sa", "child")
	e.metric(p+"mobike_updates_total", "counter", "MOBIKE address updates by outcome.", float64(c.counters.mobike.Load()), "outcome", "ok")
	e.metric(p+"mobike_updates_total", "counter", "", float64(c.counters.mobikeFailures.Load()), "outcome", "failed")
	e.metric(p+"reloads_total", "counter", "Configuration reloads by outcome.", float64(c.counters.reloads.Load()), "outcome", "ok")
	e.metric(p+"reloads_total", "counter", "", float64(c.counters.reloadFailures.Load()), "outcome", "failed")

	g := st.Group
	e.metric(p+"group_sas", "gauge", "Group SAs held (current and rolling over).", float64(len(g.SAs)))
	var outSPI float64
	for _, sa := range g.SAs {
		if sa.Outbound {
			if v, err := strconv.ParseUint(sa.SPI, 16, 32); err == nil {
				outSPI = float64(v)
			}
		}
	}
	e.metric(p+"group_sa_spi", "gauge", "SPI of the group SA used outbound (0: none).", outSPI)
	e.metric(p+"group_epochs_total", "counter", "Group SAs (epochs) accepted from the hub.", float64(g.Accepted))
	e.metric(p+"mpsa_puts_total", "counter", "MPSA_PUT notifies by outcome.", float64(g.Accepted), "outcome", "accepted")
	e.metric(p+"mpsa_puts_total", "counter", "", float64(g.Refreshed), "outcome", "refreshed")
	e.metric(p+"mpsa_puts_total", "counter", "", float64(g.Refused), "outcome", "refused")
	for _, ph := range []string{"none", "steady", "roll1", "roll2"} {
		e.metric(p+"group_rollover_phase", "gauge", "1 for the group SA's rollover phase.", b2f(g.Phase == ph), "phase", ph)
	}

	b := st.BGP
	e.metric(p+"bgp_session_up", "gauge", "1 when the BGP session with the hub is established.", b2f(b.Established))
	e.metric(p+"bgp_routes", "gauge", "Routes learned from the hub.", float64(b.Routes), "state", "all")
	e.metric(p+"bgp_routes", "gauge", "", float64(b.Stale), "state", "stale")
	e.metric(p+"bgp_sessions_total", "counter", "BGP sessions that reached Established.", float64(b.Stats.Established))
	e.metric(p+"bgp_updates_total", "counter", "BGP UPDATE messages.", float64(b.Stats.UpdatesIn), "dir", "in")
	e.metric(p+"bgp_updates_total", "counter", "", float64(b.Stats.UpdatesOut), "dir", "out")
	e.metric(p+"bgp_notifications_total", "counter", "BGP NOTIFICATION messages.", float64(b.Stats.NotifyRecv), "dir", "in")
	e.metric(p+"bgp_notifications_total", "counter", "", float64(b.Stats.NotifySent), "dir", "out")
	e.metric(p+"bgp_routes_ignored_total", "counter", "Learned routes refused because they lie inside our LAN prefixes.", float64(c.counters.ownRoutes.Load()))
	e.metric(p+"fib_prefixes", "gauge", "Prefixes in the FIB.", float64(st.FIB.Prefixes4), "family", "ipv4")
	e.metric(p+"fib_prefixes", "gauge", "", float64(st.FIB.Prefixes6), "family", "ipv6")
	e.metric(p+"fib_unresolved", "gauge", "Prefixes none of whose paths resolves.", float64(st.FIB.Unresolved))

	d := st.Dataplane.Stats
	e.metric(p+"dataplane_packets_total", "counter", "Data plane packets.", float64(d.RxPackets), "dir", "rx")
	e.metric(p+"dataplane_packets_total", "counter", "", float64(d.TxPackets), "dir", "tx")
	e.metric(p+"dataplane_bytes_total", "counter", "Data plane inner bytes.", float64(d.RxBytes), "dir", "rx")
	e.metric(p+"dataplane_bytes_total", "counter", "", float64(d.TxBytes), "dir", "tx")
	reasons := make([]string, 0, len(d.Drops))
	for r := range d.Drops {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	help := "Data plane packets dropped, by reason."
	for _, r := range reasons {
		e.metric(p+"dataplane_drops_total", "counter", help, float64(d.Drops[r]), "reason", r)
	}

	c.mu.Lock()
	eng := c.eng
	c.mu.Unlock()
	if eng != nil {
		s := eng.mgr.Stats()
		help := "IKE datagrams dropped, by reason."
		for _, x := range []struct {
			r string
			v uint64
		}{{"malformed", s.DroppedMalformed}, {"unknown_spi", s.DroppedUnknownSPI}, {"integrity", s.DroppedIntegrity},
			{"message_id", s.DroppedMessageID}, {"unexpected", s.DroppedUnexpected}, {"queue_full", s.DroppedQueueFull},
			{"rate_limited", s.DroppedRateLimited}, {"non_ike", s.DroppedNonIKE}} {
			e.metric(p+"ike_drops_total", "counter", help, float64(x.v), "reason", x.r)
		}
		e.metric(p+"ike_retransmits_total", "counter", "IKE requests sent again after a timeout.", float64(s.Retransmits))
	}
}

// opsRun holds the status socket and the metrics endpoint.
type opsRun struct {
	status  *ops.StatusServer
	metrics *metricsServer
	cfgSock string
	cfgMet  netip.AddrPort
}

func (o *opsRun) close() {
	if o == nil {
		return
	}
	if o.status != nil {
		o.status.Close()
	}
	if o.metrics != nil {
		o.metrics.close()
	}
}

// startOps opens the status socket and the metrics endpoint the
// configuration names.
func (c *CPE) startOps(_ context.Context, cfg *configs.CPE) (*opsRun, error) {
	c.opsMu.Lock()
	defer c.opsMu.Unlock()
	o := &opsRun{}
	if err := c.openOps(o, cfg); err != nil {
		o.close()
		return nil, err
	}
	c.mu.Lock()
	c.opsRun = o
	c.mu.Unlock()
	return o, nil
}

// closeOps closes the status socket and the metrics endpoint.
func (c *CPE) closeOps() {
	c.opsMu.Lock()
	defer c.opsMu.Unlock()
	c.mu.Lock()
	o := c.opsRun
	c.opsRun = nil
	c.mu.Unlock()
	o.close()
}

func (c *CPE) openOps(o *opsRun, cfg *configs.CPE) error {
	if cfg.Status.Socket != o.cfgSock {
		if o.status != nil {
			o.status.Close()
			o.status = nil
		}
		o.cfgSock = cfg.Status.Socket
		if cfg.Status.Socket != "" {
			s, err := ops.ListenStatus(cfg.Status.Socket, c.log)
			if err != nil {
				return err
			}
			c.registerViews(s)
			o.status = s
		}
	}
	if cfg.Metrics.Listen != o.cfgMet {
		if o.metrics != nil {
			o.metrics.close()
			o.metrics = nil
		}
		o.cfgMet = cfg.Metrics.Listen
		if cfg.Metrics.Listen.IsValid() {
			m, err := c.listenMetrics(cfg.Metrics.Listen)
			if err != nil {
				return err
			}
			o.metrics = m
		}
	}
	return nil
}

// reopenOps follows changed status and metrics settings (Reload). A
// failure is logged; the old listener is gone then.
func (c *CPE) reopenOps(cfg *configs.CPE) {
	c.opsMu.Lock()
	defer c.opsMu.Unlock()
	c.mu.Lock()
	o := c.opsRun
	c.mu.Unlock()
	if o == nil {
		return
	}
	if err := c.openOps(o, cfg); err != nil {
		c.log.Error("cannot open the status or metrics listener", "err", err)
	}
}

// MetricsAddr returns the address the metrics endpoint listens on, or nil.
func (c *CPE) MetricsAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opsRun == nil || c.opsRun.metrics == nil {
		return nil
	}
	return c.opsRun.metrics.Addr()
}
