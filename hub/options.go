package hub

import (
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/ike"
	"github.com/mpsa-vpn/mpsa/routing"
)

// Option changes how New builds the hub: tests inject the data plane,
// clocks, randomness and ports; the daemon uses the defaults.
type Option func(*options)

// DataplaneFactory builds the data plane for the hub's CHILD_SAs. It gets
// the FIB the backend must ask for every outbound packet and the hub's
// overlay prefixes (its address in each group's pool, with the pool's
// length) to put on its device. A backend with an `IKEConn() net.PacketConn`
// method (userspace) owns the NAT-T port and lends it to IKE; otherwise the
// hub opens the NAT-T port itself.
type DataplaneFactory func(fib *routing.FIB, addrs []netip.Prefix) (dataplane.Backend, error)

type options struct {
	dataplane       DataplaneFactory
	prepareNATT     func(*net.UDPConn) error
	clock           ike.Clock
	ikeClock        ike.Clock
	rand            io.Reader
	ports           *[2]uint16
	ikeConfig       func(*ike.Config)
	noBGP           bool
	bgpPort         uint16
	grpc            *netip.AddrPort
	noStatus        bool
	noMetrics       bool
	retryMin        time.Duration
	retryMax        time.Duration
	shutdownTimeout time.Duration
}

func defaultOptions() options {
	return options{clock: ike.SystemClock{}, shutdownTimeout: DefaultShutdownTimeout}
}

// WithDataplane replaces the data plane the configuration names.
func WithDataplane(f DataplaneFactory) Option { return func(o *options) { o.dataplane = f } }

// WithClock sets the clock of the key server and the hub's timers (group
// rekeys, rollovers, MPSA_PUT retries). The IKE engine keeps its own unless
// WithIKEClock sets it.
func WithClock(c ike.Clock) Option { return func(o *options) { o.clock = c } }

// WithIKEClock sets the IKE engine's clock.
func WithIKEClock(c ike.Clock) Option { return func(o *options) { o.ikeClock = c } }

// WithRand sets the randomness of the key server and the IKE engine (SPIs,
// nonces, keys). Tests only: the default is crypto/rand.
func WithRand(r io.Reader) Option { return func(o *options) { o.rand = r } }

// WithIKEPorts overrides ike.port and ike.natt_port; 0 picks a free port
// (see IKEAddrs), so tests can run hubs side by side on loopback.
func WithIKEPorts(port, natt uint16) Option {
	return func(o *options) { o.ports = &[2]uint16{port, natt} }
}

// WithIKEConfig lets f adjust the IKE engine's configuration before it is
// built (retransmission and DPD timings in tests).
func WithIKEConfig(f func(*ike.Config)) Option { return func(o *options) { o.ikeConfig = f } }

// WithoutBGP runs the hub without its route reflector (benchmarks of the
// key server, tests of IKE alone).
func WithoutBGP() Option { return func(o *options) { o.noBGP = true } }

// WithBGPPort makes the route reflector listen on port instead of 179, so
// unprivileged tests can run it on loopback.
func WithBGPPort(port uint16) Option { return func(o *options) { o.bgpPort = port } }

// WithGRPC overrides bgp.grpc_listen; the zero AddrPort serves no gRPC.
func WithGRPC(a netip.AddrPort) Option { return func(o *options) { o.grpc = &a } }

// WithoutStatusSocket and WithoutMetrics leave out the status socket and the
// metrics listener whatever the configuration says (tests that run many
// hubs).
func WithoutStatusSocket() Option { return func(o *options) { o.noStatus = true } }

// WithoutMetrics: see WithoutStatusSocket.
func WithoutMetrics() Option { return func(o *options) { o.noMetrics = true } }

// WithMPSARetry bounds the key server's backoff between MPSA_PUT attempts
// (mpsa.KeyServerConfig.RetryMin/RetryMax).
func WithMPSARetry(min, max time.Duration) Option {
	return func(o *options) { o.retryMin, o.retryMax = min, max }
}

// WithShutdownTimeout bounds how long Close waits for CPEs to acknowledge
// the deletes of their IKE SAs.
func WithShutdownTimeout(d time.Duration) Option { return func(o *options) { o.shutdownTimeout = d } }
