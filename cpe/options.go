package cpe

import (
	"io"
	"log/slog"
	"net/netip"

	"github.com/mpsa-vpn/mpsa/bgp/speaker"
	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/routing"
)

// Option configures New. Options inject what tests and the lab replace:
// the network namespace, the data plane, time, randomness and engine knobs.
type Option func(*options)

type options struct {
	buffers   UserspaceBuffers
	netns     string
	dataplane DataplaneFactory
	clock     ike.Clock
	rand      io.Reader
	ike       func(*ike.Config)
	bgp       func(*speaker.Config)
	noSysctl  bool
	ikeAddrs  []netip.AddrPort
}

// DataplaneEnv is what a DataplaneFactory gets to build a data plane.
type DataplaneEnv struct {
	// FIB is the routing table the CPE shares between the data plane and
	// the BGP speaker; the backend asks it where packets go.
	FIB *routing.FIB
	// Config is the CPE's configuration when Run starts.
	Config *configs.CPE
	// Logger is the CPE's logger without a component; backends add theirs.
	Logger *slog.Logger
	// Netns is the namespace given with WithNetns ("" for the caller's).
	Netns string
	// InNetns runs f in the CPE's network namespace (WithNetns), for
	// factories that open sockets or devices.
	InNetns func(f func() error) error
	// Buffers sizes the userspace data plane's packet buffers:
	// WithUserspaceBuffers, else DefaultUserspaceBuffers.
	Buffers UserspaceBuffers
	// Changed, called by the data plane (from any goroutine, without
	// blocking), makes the CPE look at it again: Dataplane.Ready may
	// have changed (the xfrm backend applied a FIB update).
	Changed func()
}

// DataplaneFactory builds the CPE's data plane when Run starts.
type DataplaneFactory func(DataplaneEnv) (*Dataplane, error)

// WithNetns runs the CPE in a network namespace: a name under /run/netns
// or a path such as /proc/PID/ns/net. Every socket, device and netlink
// handle the CPE opens is opened there, so several CPEs can run in one
// process. Empty means the caller's namespace.
func WithNetns(name string) Option { return func(o *options) { o.netns = name } }

// WithDataplane replaces the data plane the configuration selects, for
// tests (dataplane/memory) and special deployments.
func WithDataplane(f DataplaneFactory) Option { return func(o *options) { o.dataplane = f } }

// WithClock sets the clock of the IKE engine and of the group SA rollover.
func WithClock(c ike.Clock) Option { return func(o *options) { o.clock = c } }

// WithRand sets the source of randomness for IKE (SPIs, nonces, DH keys).
func WithRand(r io.Reader) Option { return func(o *options) { o.rand = r } }

// WithIKEConfig lets the caller adjust the IKE engine's configuration after
// the CPE filled it in (retransmission and DPD timers in tests).
func WithIKEConfig(f func(*ike.Config)) Option { return func(o *options) { o.ike = f } }

// WithBGPConfig lets the caller adjust the speaker's configuration after
// the CPE filled it in (hold and restart times in tests).
func WithBGPConfig(f func(*speaker.Config)) Option { return func(o *options) { o.bgp = f } }

// WithIKEAddrs sets where the CPE's IKE sockets (not NAT-T) listen. The
// default is port 500 on the IPv4 and IPv6 wildcard addresses, or an
// ephemeral port when 500 is taken; tests on a shared host use
// 127.0.0.1:0.
func WithIKEAddrs(addrs ...netip.AddrPort) Option { return func(o *options) { o.ikeAddrs = addrs } }

// WithoutSysctl leaves IP forwarding as it is (tests that run without
// root, where /proc/sys cannot be written).
func WithoutSysctl() Option { return func(o *options) { o.noSysctl = true } }

// UserspaceBuffers sizes the packet buffer pools of the userspace data
// plane (dataplane/userspace.Config's fields of the same names): batches
// in flight each way, datagrams per inbound batch, and a TUN without
// offloads (MTU-sized buffers, one packet per read). Zero fields take
// DefaultUserspaceBuffers' values.
type UserspaceBuffers struct {
	TxBatches, RxBatches, RxBatchSize int
	NoOffloads                        bool
}

// DefaultUserspaceBuffers are a CPE's buffer pools: a router with 64–128 MB
// of RAM whose CPU, not its buffers, limits what it forwards. With
// offloads the pools take about 1 MiB instead of the backend's 10; the
// throughput they cost is in docs/BENCHMARKS.md ("cpe").
var DefaultUserspaceBuffers = UserspaceBuffers{TxBatches: 2, RxBatches: 6, RxBatchSize: 8}

// withDefaults fills zero fields from DefaultUserspaceBuffers.
func (b UserspaceBuffers) withDefaults() UserspaceBuffers {
	d := DefaultUserspaceBuffers
	if b.TxBatches == 0 {
		b.TxBatches = d.TxBatches
	}
	if b.RxBatches == 0 {
		b.RxBatches = d.RxBatches
	}
	if b.RxBatchSize == 0 {
		b.RxBatchSize = d.RxBatchSize
	}
	return b
}

// WithUserspaceBuffers sizes the userspace data plane's buffer pools
// (zero fields: DefaultUserspaceBuffers); larger pools buy throughput on
// a router with memory and cores to spare.
func WithUserspaceBuffers(b UserspaceBuffers) Option { return func(o *options) { o.buffers = b } }
