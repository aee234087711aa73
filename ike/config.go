package ike

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/transform"
)

// Retransmission, as strongSwan's charon.retransmit_* knobs: a request is
// sent, then retransmitted RetransmitTries times, the n-th retransmission
// RetransmitTimeout × RetransmitBase^(n-1) after the previous send; the
// exchange gives up RetransmitTimeout × RetransmitBase^RetransmitTries after
// the last one (about 165 s with the defaults).
const (
	DefaultRetransmitTimeout = 4 * time.Second
	DefaultRetransmitBase    = 1.8
	DefaultRetransmitTries   = 5
)

// Implementation defaults.
const (
	DefaultHalfOpenTimeout  = 30 * time.Second // responder drops an SA not authenticated by then
	DefaultCookieThreshold  = 128              // half-open SAs before COOKIE is demanded
	DefaultMaxHalfOpen      = 8192             // half-open SAs before IKE_SA_INIT is dropped
	DefaultUnauthReplyRate  = 10000            // replies per second to unauthenticated peers
	DefaultUnauthReplyBurst = 1000
	DefaultFragmentSize     = 1232 // IKE message octets: IPv6 minimum MTU minus IPv6 and UDP headers
	DefaultNATKeepalive     = 20 * time.Second
	DefaultIKERekeyTime     = 4 * time.Hour
	DefaultChildRekeyTime   = time.Hour
	DefaultNATTPort         = 4500
	DefaultIKEPort          = 500
	DefaultNonceLen         = 32
	// DefaultRetryDelay is how long a side waits before trying again an
	// exchange the peer refused with TEMPORARY_FAILURE (jitter added).
	DefaultRetryDelay = 2 * time.Second
)

// Proposals lists what this side offers (as initiator) or accepts (as
// responder), in order of preference.
type Proposals struct {
	// IKE suites; the DH group of the first is used for the first KE
	// payload of an initiator.
	IKE []suite.Suite
	// ESP suites of CHILD_SAs.
	ESP []transform.ESP
	// PFS lists DH groups for CREATE_CHILD_SA (new and rekeyed CHILD_SAs).
	// Empty: no PFS. A responder accepts a proposal without KE only when
	// PFS is empty.
	PFS []transform.DH
}

// DefaultProposals are the suites of the acceptance tests: AES-256-CBC /
// SHA-256 / X25519 and AES-128-GCM / SHA-256 / P-256 for IKE, AES-GCM and
// AES-CBC for ESP.
func DefaultProposals() Proposals {
	return Proposals{
		IKE: []suite.Suite{
			{Encr: transform.EncrAESCBC, KeyBits: 256, PRF: transform.PRFHMACSHA2256, Integ: transform.IntegHMACSHA256128, DH: transform.DHCurve25519},
			{Encr: transform.EncrAESGCM16, KeyBits: 128, PRF: transform.PRFHMACSHA2256, DH: transform.DHECP256},
		},
		ESP: []transform.ESP{
			{Encr: transform.EncrAESGCM16, KeyBits: 256},
			{Encr: transform.EncrAESGCM16, KeyBits: 128},
			{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128},
		},
	}
}

// PeerInfo describes the peer of an IKE SA to policy hooks.
type PeerInfo struct {
	ID     auth.ID
	Tag    any // auth.Peer.Tag from the lookup
	Remote netip.AddrPort
	Local  netip.AddrPort
	// VendorIDs the peer sent in IKE_SA_INIT.
	VendorIDs [][]byte
}

// Policy holds the hooks through which the daemons steer the engine. Every
// hook runs on the goroutine that owns the IKE SA, so it must return quickly
// and must not call blocking methods of that SA (SendInformational, Close,
// Rekey*: they wait for the same goroutine; start them in a new goroutine
// instead); a nil hook has the documented default.
type Policy struct {
	// AssignAddresses answers a CP(CFG_REQUEST) on the responder:
	// requested holds the addresses asked for (unspecified ones mean
	// "any of this family"). Return the prefixes to hand out, or an error
	// to answer INTERNAL_ADDRESS_FAILURE. nil: CP requests are ignored.
	AssignAddresses func(ctx context.Context, peer PeerInfo, requested []netip.Addr) ([]netip.Prefix, error)
	// ReleaseAddresses gives back what AssignAddresses handed out, once
	// the IKE SA is gone.
	ReleaseAddresses func(peer PeerInfo, addrs []netip.Prefix)
	// NarrowTS chooses the responder's traffic selectors from the
	// initiator's proposal (tsi, tsr). vips are the addresses assigned to
	// the peer in this exchange. Return empty results or an error to answer
	// TS_UNACCEPTABLE. nil: NarrowDefault with the manager's LocalTS and
	// RemoteTS.
	NarrowTS func(peer PeerInfo, vips []netip.Prefix, tsi, tsr []wire.Selector) (ni, nr []wire.Selector, err error)
	// Authorize is called on the responder once the peer's AUTH verified,
	// before anything is sent back; an error answers AUTHENTICATION_FAILED.
	Authorize func(ctx context.Context, peer PeerInfo) error

	// VendorIDs are sent in IKE_SA_INIT (both roles).
	VendorIDs [][]byte
	// AuthNotifies returns notifies to add to this side's IKE_AUTH message
	// (request or response). peerNotifies are the peer's status notifies
	// from its IKE_AUTH request (nil when building the request).
	AuthNotifies func(peer PeerInfo, peerNotifies []*wire.Notify) []*wire.Notify
	// Informational receives the notifies of an INFORMATIONAL request that
	// the engine does not handle itself; the engine then answers with an
	// empty SK{} response. It runs on the SA's goroutine.
	Informational func(sa *SA, notifies []*wire.Notify)
}

// Config configures a Manager. Zero fields take the defaults above.
type Config struct {
	// Local is how this side authenticates.
	Local auth.Local
	// Peers returns how a peer must authenticate, by its identity. The
	// responder refuses identities it reports unknown. Required.
	Peers auth.Lookup
	// CertReqCAs, when set, are named in CERTREQ payloads (the responder's
	// IKE_SA_INIT response, the initiator's IKE_AUTH request) so that peers
	// that send certificates only when asked (strongSwan's default) do.
	CertReqCAs *auth.CAPool
	// Proposals offered and accepted.
	Proposals Proposals
	// LocalTS and RemoteTS bound the traffic selectors the default
	// responder narrowing accepts (empty LocalTS: the responder's own
	// address; empty RemoteTS: the peer's address or assigned VIPs).
	LocalTS, RemoteTS []netip.Prefix
	Policy            Policy

	// Events receives SA events in order, from one goroutine; it may
	// block without stalling the engine (events queue up).
	Events func(Event)
	// KeyLog, when set, receives the keys of every IKE SA (first or
	// rekeyed) as soon as they are derived, on the SA's goroutine, for a
	// Wireshark ikev2_decryption_table (package ike/keylog). It must not
	// keep k, which is wiped as soon as the SA no longer needs all of it.
	KeyLog func(spiI, spiR uint64, k *suite.IKEKeys)

	// MOBIKE offers RFC 4555 (MOBIKE_SUPPORTED in IKE_AUTH).
	MOBIKE bool
	// Fragmentation offers RFC 7383; FragmentSize is the largest IKE
	// message (without IP/UDP headers) sent unfragmented.
	Fragmentation bool
	FragmentSize  int
	// NATTPort is the remote port an initiator floats to (RFC 3948).
	NATTPort uint16
	// ForceEncap makes this side claim to be behind a NAT (a random
	// NAT_DETECTION_SOURCE_IP), so ESP is UDP-encapsulated.
	ForceEncap bool

	RetransmitTimeout time.Duration
	RetransmitBase    float64
	RetransmitTries   int
	HalfOpenTimeout   time.Duration
	// DPDInterval: send a liveness check after this long without hearing
	// from the peer. 0 disables.
	DPDInterval time.Duration
	// IKERekeyTime and ChildRekeyTime: rekey after this long (minus up to
	// 10 % jitter). Negative disables rekeying by this side.
	IKERekeyTime, ChildRekeyTime time.Duration
	NATKeepalive                 time.Duration

	CookieThreshold int
	MaxHalfOpen     int
	// UnauthReplyRate (per second) and UnauthReplyBurst bound what is
	// sent to peers that have not authenticated: IKE_SA_INIT responses and
	// the RFC 7296 §2.21.1 notifies (COOKIE, INVALID_KE_PAYLOAD,
	// NO_PROPOSAL_CHOSEN, INVALID_MAJOR_VERSION,
	// UNSUPPORTED_CRITICAL_PAYLOAD), and cached responses resent to an
	// address other than the one their request came from.
	UnauthReplyRate  float64
	UnauthReplyBurst int

	Logger *slog.Logger
	Clock  Clock
	Rand   io.Reader // crypto/rand.Reader when nil
}

func (c *Config) setDefaults() {
	if len(c.Proposals.IKE) == 0 && len(c.Proposals.ESP) == 0 {
		pfs := c.Proposals.PFS
		c.Proposals = DefaultProposals()
		c.Proposals.PFS = pfs
	}
	if c.FragmentSize == 0 {
		c.FragmentSize = DefaultFragmentSize
	}
	if c.NATTPort == 0 {
		c.NATTPort = DefaultNATTPort
	}
	if c.RetransmitTimeout == 0 {
		c.RetransmitTimeout = DefaultRetransmitTimeout
	}
	if c.RetransmitBase == 0 {
		c.RetransmitBase = DefaultRetransmitBase
	}
	if c.RetransmitTries == 0 {
		c.RetransmitTries = DefaultRetransmitTries
	}
	if c.HalfOpenTimeout == 0 {
		c.HalfOpenTimeout = DefaultHalfOpenTimeout
	}
	if c.IKERekeyTime == 0 {
		c.IKERekeyTime = DefaultIKERekeyTime
	}
	if c.ChildRekeyTime == 0 {
		c.ChildRekeyTime = DefaultChildRekeyTime
	}
	if c.NATKeepalive == 0 {
		c.NATKeepalive = DefaultNATKeepalive
	}
	if c.CookieThreshold == 0 {
		c.CookieThreshold = DefaultCookieThreshold
	}
	if c.MaxHalfOpen == 0 {
		c.MaxHalfOpen = DefaultMaxHalfOpen
	}
	if c.UnauthReplyRate == 0 {
		c.UnauthReplyRate = DefaultUnauthReplyRate
	}
	if c.UnauthReplyBurst == 0 {
		c.UnauthReplyBurst = DefaultUnauthReplyBurst
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
}

func (c *Config) validate() error {
	if c.Peers == nil {
		return errors.New("ike: Config.Peers (identity lookup) is required")
	}
	if err := c.Local.Validate(); err != nil {
		return fmt.Errorf("ike: local credentials: %w", err)
	}
	if len(c.Proposals.IKE) == 0 || len(c.Proposals.ESP) == 0 {
		return errors.New("ike: no IKE or ESP proposals")
	}
	for _, s := range c.Proposals.IKE {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("ike: IKE proposal %v: %w", s, err)
		}
	}
	for _, s := range c.Proposals.ESP {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("ike: ESP proposal %v: %w", s, err)
		}
	}
	for _, g := range c.Proposals.PFS {
		if _, err := suite.DHPublicLen(g); err != nil {
			return fmt.Errorf("ike: PFS group %v: %w", g, err)
		}
	}
	if c.FragmentSize < 576-28 {
		return fmt.Errorf("ike: fragment size %d below 548", c.FragmentSize)
	}
	if c.RetransmitBase < 1 || c.RetransmitTries < 0 {
		return errors.New("ike: retransmit base below 1 or negative tries")
	}
	return nil
}
