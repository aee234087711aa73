package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Metrics endpoints the lab configures (each daemon in its own namespace).
const (
	HubMetrics = "127.0.0.1:9470"
	CPEMetrics = "127.0.0.1:9471"
	// MaxMetricsSize bounds a scraped page.
	MaxMetricsSize = 4 << 20
)

// Metrics scrapes the named daemon's Prometheus endpoint (inside its
// namespace) and returns each sample by its name with labels, as written
// (`mpsa_hub_ike_sas{state="established"}`).
func (l *Lab) Metrics(ctx context.Context, name string) (map[string]float64, error) {
	ns, addr := "", CPEMetrics
	if name == "hub" {
		ns, addr = l.Hub().NS, HubMetrics
	} else if c, ok := l.CPE(name); ok {
		ns = c.NS
	} else {
		return nil, fmt.Errorf("lab: no node %s", name)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			var c net.Conn
			err := doInNS(ns, func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, a)
				return err
			})
			return c, err
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lab: metrics of %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("lab: metrics of %s: %s", name, resp.Status)
	}
	return ParseMetrics(io.LimitReader(resp.Body, MaxMetricsSize))
}

// ParseMetrics reads the Prometheus text format: one sample per line,
// "name{labels} value [timestamp]"; comments and blank lines are skipped,
// malformed lines are errors.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		var name, rest string
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				return nil, fmt.Errorf("lab: metrics line %d: %q", n, line)
			}
			name, rest = line[:j+1], line[j+1:]
		} else {
			sp := strings.IndexAny(line, " \t")
			if sp < 0 {
				return nil, fmt.Errorf("lab: metrics line %d: %q", n, line)
			}
			name, rest = line[:sp], line[sp:]
		}
		fields := strings.Fields(rest) // value [timestamp]
		if len(fields) < 1 || len(fields) > 2 {
			return nil, fmt.Errorf("lab: metrics line %d: %q", n, line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("lab: metrics line %d: %q: %w", n, line, err)
		}
		out[name] = v
	}
	return out, s.Err()
}
