package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/mpsa"
)

// metrics are the hub's Prometheus metrics, on a registry of its own (no
// package-level state: two hubs in one test binary do not collide).
// Counters the hub sees happen are kept here; everything else is read from
// the components when scraped.
type metrics struct {
	h   *Hub
	reg *prometheus.Registry

	ackLatency         prometheus.Histogram
	putFailures        prometheus.Counter
	rekeys             *prometheus.CounterVec
	unexpectedNotifies prometheus.Counter

	srv *http.Server
	ln  net.Listener

	// mu guards epochBase: per group, the epoch of its SA when the hub
	// added it; the group's rekeys since are the current epoch minus it.
	mu        sync.Mutex
	epochBase map[string]uint64
}

const ns = "mpsa_hub"

func newMetrics(h *Hub) *metrics {
	m := &metrics{h: h, reg: prometheus.NewRegistry(), epochBase: map[string]uint64{}}
	m.ackLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Name: "mpsa_put_ack_seconds",
		Help:    "Time from sending an MPSA_PUT INFORMATIONAL request to the CPE's empty SK{} acknowledgement.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	m.putFailures = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "mpsa_put_failures_total",
		Help: "MPSA_PUT exchanges that failed (retransmissions exhausted, IKE SA gone); the key server retries."})
	m.rekeys = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rekeys_total",
		Help: "Rekeys seen: kind ike (IKE SA) or child (CHILD_SA)."}, []string{"kind"})
	m.unexpectedNotifies = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "unexpected_notifies_total",
		Help: "MPSA_PUT notifies received from CPEs (only the hub sends them); ignored."})
	m.reg.MustRegister(m.ackLatency, m.putFailures, m.rekeys, m.unexpectedNotifies, (*snapshotCollector)(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) ikeEvent(k ike.EventKind) {
	switch k {
	case ike.EventIKERekeyed:
		m.rekeys.WithLabelValues("ike").Inc()
	case ike.EventChildRekeyed:
		m.rekeys.WithLabelValues("child").Inc()
	}
}

// groupsAdded records the current epoch of groups the hub has not seen
// before (at start, on a reload), the base of mpsa_rekeys_total, and forgets
// groups that are gone.
func (m *metrics) groupsAdded(gs []mpsa.GroupStatus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[string]bool, len(gs))
	for _, g := range gs {
		seen[g.Name] = true
		if _, ok := m.epochBase[g.Name]; !ok && len(g.Epochs) > 0 {
			m.epochBase[g.Name] = g.Epochs[len(g.Epochs)-1].Epoch
		}
	}
	for name := range m.epochBase {
		if !seen[name] {
			delete(m.epochBase, name)
		}
	}
}

// groupRekeys is how many times a group was rekeyed since the hub added it,
// given its current epoch.
func (m *metrics) groupRekeys(group string, epoch uint64) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	base, ok := m.epochBase[group]
	if !ok || epoch < base {
		m.epochBase[group] = epoch
		return 0
	}
	return epoch - base
}

func (m *metrics) putAcked(d time.Duration) { m.ackLatency.Observe(d.Seconds()) }
func (m *metrics) putFailed()               { m.putFailures.Inc() }

// Handler serves the metrics in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *metrics) listen(addr netip.AddrPort) error {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return fmt.Errorf("hub: metrics.listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.handler())
	m.ln = ln
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.h.log.Error("metrics listener failed", "local", addr, "err", err)
		}
	}()
	return nil
}

// MetricsAddr returns where /metrics is served, if it is.
func (h *Hub) MetricsAddr() (netip.AddrPort, bool) {
	if h.metrics.ln == nil {
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddrPort(h.metrics.ln.Addr().String())
	return a, err == nil
}

func (m *metrics) close() {
	if m == nil || m.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m.srv.Shutdown(ctx)
}

// snapshotCollector reads the components' own counters when scraped.
type snapshotCollector metrics

var (
	descIKESAs       = prometheus.NewDesc(ns+"_ike_sas", "IKE SAs by state (established, half_open).", []string{"state"}, nil)
	descIKEDrops     = prometheus.NewDesc(ns+"_ike_dropped_total", "IKE datagrams dropped, by reason.", []string{"reason"}, nil)
	descIKEPackets   = prometheus.NewDesc(ns+"_ike_datagrams_total", "IKE datagrams by direction.", []string{"dir"}, nil)
	descIKEAuthFail  = prometheus.NewDesc(ns+"_ike_auth_failures_total", "Peers refused in IKE_AUTH.", nil, nil)
	descCPEs         = prometheus.NewDesc(ns+"_cpes", "Provisioned CPEs per group, and those connected.", []string{"group", "state"}, nil)
	descEpoch        = prometheus.NewDesc(ns+"_mpsa_epoch", "Generation of the group SA being distributed.", []string{"group"}, nil)
	descGroupRekeys  = prometheus.NewDesc(ns+"_mpsa_rekeys_total", "Group SAs generated since the hub started (lifetime, revocation, operator, configuration), per group.", []string{"group"}, nil)
	descOnCurrent    = prometheus.NewDesc(ns+"_mpsa_current_epoch_ratio", "Share of connected CPEs that acknowledged the group's current SA.", []string{"group"}, nil)
	descAckMax       = prometheus.NewDesc(ns+"_mpsa_epoch_ack_max_seconds", "Slowest acknowledgement of the current group SA.", []string{"group"}, nil)
	descDPPackets    = prometheus.NewDesc(ns+"_dataplane_packets_total", "Data plane packets by direction.", []string{"dir"}, nil)
	descDPBytes      = prometheus.NewDesc(ns+"_dataplane_bytes_total", "Data plane bytes by direction.", []string{"dir"}, nil)
	descDPDrops      = prometheus.NewDesc(ns+"_dataplane_dropped_total", "Data plane packets dropped, by reason.", []string{"reason"}, nil)
	descBGPPeers     = prometheus.NewDesc(ns+"_bgp_sessions", "Established CPE BGP sessions, per group.", []string{"group"}, nil)
	descBGPRoutes    = prometheus.NewDesc(ns+"_bgp_routes", "CPE routes the route reflector reflects, per group.", []string{"group"}, nil)
	descBGPFiltered  = prometheus.NewDesc(ns+"_bgp_filtered_total", "CPE route announcements dropped or rewritten, by reason.", []string{"group", "reason"}, nil)
	descBGPRefused   = prometheus.NewDesc(ns+"_bgp_refused_sessions_total", "BGP connections refused: not from a live CPE's overlay address.", []string{"group"}, nil)
	descFIBPrefixes  = prometheus.NewDesc(ns+"_overlay_routes", "Overlay routes of the hub (one per connected CPE address).", nil, nil)
	descDataplaneErr = prometheus.NewDesc(ns+"_dataplane_set_error", "1 when the data plane refused the last state.", nil, nil)
)

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descIKESAs, descIKEDrops, descIKEPackets, descIKEAuthFail, descCPEs, descEpoch,
		descGroupRekeys, descOnCurrent, descAckMax, descDPPackets, descDPBytes, descDPDrops, descBGPPeers, descBGPRoutes, descBGPFiltered,
		descBGPRefused, descFIBPrefixes, descDataplaneErr} {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.h
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if h.ike != nil {
		s := h.ike.Stats()
		gauge(descIKESAs, float64(s.Established), "established")
		gauge(descIKESAs, float64(s.HalfOpen), "half_open")
		counter(descIKEPackets, s.Received, "in")
		counter(descIKEPackets, s.Sent, "out")
		counter(descIKEAuthFail, s.AuthFailures)
		for reason, v := range map[string]uint64{
			"malformed": s.DroppedMalformed, "unknown_spi": s.DroppedUnknownSPI, "integrity": s.DroppedIntegrity,
			"message_id": s.DroppedMessageID, "unexpected": s.DroppedUnexpected, "queue_full": s.DroppedQueueFull,
			"rate_limited": s.DroppedRateLimited, "half_open": s.DroppedHalfOpen, "non_ike": s.DroppedNonIKE,
		} {
			counter(descIKEDrops, v, reason)
		}
	}
	if h.ks != nil {
		for _, g := range h.ks.Status() {
			gauge(descCPEs, float64(len(g.CPEs)), g.Name, "provisioned")
			gauge(descCPEs, float64(g.Connected), g.Name, "connected")
			if len(g.Epochs) == 0 {
				continue
			}
			cur := g.Epochs[len(g.Epochs)-1]
			gauge(descEpoch, float64(cur.Epoch), g.Name)
			counter(descGroupRekeys, (*metrics)(c).groupRekeys(g.Name, cur.Epoch), g.Name)
			gauge(descAckMax, cur.AckMax.Seconds(), g.Name)
			on, connected := 0, 0
			for _, cs := range g.CPEs {
				if cs.Connected {
					connected++
					if cs.AckedEpoch == cur.Epoch {
						on++
					}
				}
			}
			ratio := 1.0
			if connected > 0 {
				ratio = float64(on) / float64(connected)
			}
			gauge(descOnCurrent, ratio, g.Name)
		}
	}
	if h.dp != nil {
		s := h.dp.Stats()
		counter(descDPPackets, s.RxPackets, "in")
		counter(descDPPackets, s.TxPackets, "out")
		counter(descDPBytes, s.RxBytes, "in")
		counter(descDPBytes, s.TxBytes, "out")
		for reason, v := range s.Drops {
			counter(descDPDrops, v, reason)
		}
	}
	if h.fib != nil {
		s := h.fib.Stats()
		gauge(descFIBPrefixes, float64(s.Prefixes4+s.Prefixes6))
	}
	h.mu.Lock()
	setErr := h.applied.err != nil
	h.mu.Unlock()
	gauge(descDataplaneErr, map[bool]float64{true: 1, false: 0}[setErr])
	if h.rr != nil {
		if v, err := h.BGP(context.Background()); err == nil {
			for _, g := range v.Groups {
				gauge(descBGPPeers, float64(g.Sessions), g.Name)
				gauge(descBGPRoutes, float64(g.Routes), g.Name)
				for reason, n := range map[string]uint64{"foreign_prefix": g.ForeignPrefix, "endpoint_rewritten": g.EndpointRewrite,
					"endpoint_refused": g.EndpointReject, "unusable": g.BadRoute, "too_many_routes": g.TooManyRoutes} {
					counter(descBGPFiltered, n, g.Name, reason)
				}
				counter(descBGPRefused, g.RefusedSessions, g.Name)
			}
		}
	}
}
