package configs

import (
	"math/big"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	"github.com/mpsa-vpn/mpsa/transform"
)

// Hub defaults.
var (
	// DefaultESP is the group transform: AES-CBC-256 with HMAC-SHA2-256-128.
	// Counter-mode ciphers need Sender-IDs on a shared key (see Group.SenderIDBits).
	DefaultESP = transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128}
	// DefaultPRF derives the group SA's KEYMAT from SK_d and the Nonce.
	DefaultPRF = transform.PRFHMACSHA2256
	// DefaultIKEListen is every address, IPv4 and IPv6.
	DefaultIKEListen = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
)

// Group defaults and limits.
const (
	// The group SA timings match mpsa's defaults (mpsa.GroupConfig).
	DefaultLifetime     = 8 * time.Hour
	DefaultRekeyMargin  = 15 * time.Minute
	DefaultRoll1        = 30 * time.Second
	DefaultRoll2        = 2 * time.Minute
	DefaultSenderIDBits = 16
	DefaultMaxPrefixes  = 100
	DefaultLocalPref    = 100

	MinLifetime     = 60 * time.Second
	MaxLifetime     = 7 * 24 * time.Hour
	MinRoll         = time.Second
	MinSenderIDBits = 8
	MaxSenderIDBits = 32 // the low 32 bits of the 64-bit IV stay a per-sender counter
	MaxGroupName    = 32
)

// validGroupName reports whether s is lower-case letters, digits, '-' and
// '_', starting with a letter or digit.
func validGroupName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_')) {
			return false
		}
	}
	return s != ""
}

// Hub is the configuration of mpsa-hub. The zero value is not valid; call
// SetDefaults then Validate, or load it with a loader (configs/viperconf).
type Hub struct {
	// IKE says where the IKEv2 responder listens.
	IKE HubIKE `config:"ike"`
	// Identity is the hub's IKE identity (IDr), e.g. "fqdn:hub.example.net".
	Identity Identity `config:"identity"`
	// Credentials are the hub's certificate, key and CA. Required when any
	// CPE authenticates with a certificate; CPEs using PSKs are
	// authenticated, and the hub authenticates to them, with their PSK.
	Credentials CertFiles `config:"credentials"`
	// Groups are the MPSA groups (one per customer VPN).
	Groups []Group `config:"groups"`
	// CPEs are the provisioned CPEs. Adding or removing one is a reload.
	CPEs []HubCPE `config:"cpes"`
	// BGP configures the route reflector.
	BGP HubBGP `config:"bgp"`
	// Dataplane carries the hub's CHILD_SAs (its iBGP sessions).
	Dataplane DataplaneConfig `config:"dataplane"`
	// StateDir holds the group SA store (0700 directory, 0600 files), so a
	// restart does not force a rekey. Default DefaultStateDir.
	StateDir  string          `config:"state_dir"`
	Metrics   MetricsConfig   `config:"metrics"`
	Status    StatusConfig    `config:"status"`
	Log       LogConfig       `config:"log"`
	KeyExport KeyExportConfig `config:"key_export"`
}

// HubIKE says where the hub's IKEv2 responder listens.
type HubIKE struct {
	// Listen are the local addresses (IPv4 and/or IPv6; unspecified for
	// all). Default DefaultIKEListen.
	Listen []netip.Addr `config:"listen"`
	// Port is the IKE port, default DefaultIKEPort.
	Port uint16 `config:"port"`
	// NATTPort is the NAT-T port shared with ESP-in-UDP, default DefaultNATTPort.
	NATTPort uint16 `config:"natt_port"`
}

// Group is one MPSA group: the CPEs that share one multi-point ESP SA.
type Group struct {
	// Name identifies the group in logs (`group` field), in CPE entries and
	// in BGP peers: lower-case letters, digits, '-' and '_'.
	Name string `config:"name"`
	// ESP is the group SA's transform, default DefaultESP. AEAD transforms
	// (aes*gcm16, chacha20poly1305) require Sender-IDs.
	ESP transform.ESP `config:"esp"`
	// PRF is the prf of KEYMAT = prf+(SK_d, Nonce) carried in MPSA_PUT:
	// prfsha256 (default), prfsha384, prfsha512 or prfsha1.
	PRF transform.PRF `config:"prf"`
	// SenderIDBits is the width of the per-CPE Sender-ID in the IV (RFC
	// 6054), which keeps counter-mode nonces unique across senders and gives
	// receivers a replay window per sender. 0 disables Sender-IDs (only for
	// AES-CBC); with an AEAD transform an unset value means
	// DefaultSenderIDBits.
	SenderIDBits uint8 `config:"sender_id_bits"`
	// Lifetime is the group SA's LIFE (whole seconds, MinLifetime..MaxLifetime).
	Lifetime time.Duration `config:"lifetime"`
	// RekeyMargin is how long before Lifetime ends the hub generates and
	// distributes the next SA; greater than Roll2, at most half the lifetime.
	RekeyMargin time.Duration `config:"rekey_margin"`
	// Roll1 (ROLL1): the new SA is used outbound this long after it was
	// distributed (until then CPEs keep sending on the old one), so every
	// CPE has the new one inbound before anyone sends on it.
	Roll1 time.Duration `config:"roll1"`
	// Roll2 (ROLL2): the old inbound SA is removed this long after the new
	// one was distributed; greater than Roll1.
	Roll2 time.Duration `config:"roll2"`
	// Pool is the overlay address pool. CPEs get their overlay (virtual)
	// address from it; the hub takes the pool's first address.
	Pool Pool `config:"pool"`
	// BGP holds the route policy defaults applied to the group's CPEs.
	BGP GroupBGP `config:"bgp"`
}

// Pool is a group's overlay address pool; at least one family is set.
type Pool struct {
	IPv4 netip.Prefix `config:"ipv4"`
	IPv6 netip.Prefix `config:"ipv6"`
}

// HubAddrs returns the hub's own overlay addresses: the first address after
// the network address of each pool that is set.
func (p Pool) HubAddrs() []netip.Addr {
	var out []netip.Addr
	for _, pf := range []netip.Prefix{p.IPv4, p.IPv6} {
		if pf.IsValid() {
			out = append(out, pf.Masked().Addr().Next())
		}
	}
	return out
}

// GroupBGP is the route policy applied to a group's CPEs.
type GroupBGP struct {
	// MaxPrefixes is how many prefixes one CPE may advertise; more are
	// dropped and counted. Default DefaultMaxPrefixes.
	MaxPrefixes int `config:"max_prefixes"`
	// AcceptMoreSpecifics lets a CPE advertise prefixes inside its
	// authorised ones; by default only the authorised prefixes themselves
	// are accepted.
	AcceptMoreSpecifics bool `config:"accept_more_specifics"`
	// LocalPref is the LOCAL_PREF set on the group's CPE routes, default
	// DefaultLocalPref.
	LocalPref uint32 `config:"local_pref"`
}

// HubCPE is one provisioned CPE.
type HubCPE struct {
	// Identity is the CPE's IKE identity (IDi); unique across all groups.
	Identity Identity `config:"identity"`
	// Group is the name of the CPE's group.
	Group string `config:"group"`
	// Auth is psk or cert; default psk when PSK or PSKFile is set, else cert.
	Auth AuthMethod `config:"auth"`
	// PSK is the CPE's pre-shared key (at least MinPSKLen octets; "0x" for
	// hex). A config file holding PSKs must not be world-readable.
	PSK Secret `config:"psk"`
	// PSKFile names a file holding the PSK instead (not world-readable).
	// The loader reads it into PSK.
	PSKFile string `config:"psk_file"`
	// Prefixes are the LAN prefixes this CPE is authorised to advertise.
	// They may not overlap another CPE's prefixes in the same group.
	Prefixes []netip.Prefix `config:"prefixes"`
	// Overlay optionally pins the CPE's overlay addresses (one per pool
	// family) instead of taking them from the pool dynamically.
	Overlay []netip.Addr `config:"overlay"`
}

// AuthMethod says how a CPE authenticates.
type AuthMethod string

// Authentication methods.
const (
	AuthPSK  AuthMethod = "psk"
	AuthCert AuthMethod = "cert" // certificate chained to the hub's CA, identity in its subject or SAN
)

// HubBGP configures the hub's route reflector.
type HubBGP struct {
	// ASN is the AS of the hub and every CPE (iBGP), default DefaultASN.
	ASN uint32 `config:"asn"`
	// RouterID is the hub's BGP identifier (an IPv4 address); required.
	RouterID netip.Addr `config:"router_id"`
	// ClusterID is the route reflector cluster ID (RFC 4456), default RouterID.
	ClusterID netip.Addr `config:"cluster_id"`
	// GRPCListen is where GoBGP's gRPC API listens for the gobgp CLI,
	// default DefaultGRPCListen. It has no authentication: keep it on loopback.
	GRPCListen netip.AddrPort `config:"grpc_listen"`
	// Peers are optional configured BGP peers (e.g. data-center routers)
	// for prefixes behind the hub.
	Peers []BGPPeer `config:"peers"`
}

// BGPPeer is a configured BGP neighbour of the hub.
type BGPPeer struct {
	Address netip.Addr `config:"address"`
	Port    uint16     `config:"port"` // default DefaultBGPPort
	ASN     uint32     `config:"asn"`  // the peer's AS; equal to bgp.asn for iBGP
	// Group is the MPSA group whose routes this peer exchanges.
	Group       string `config:"group"`
	Description string `config:"description"`
}

// SetDefaults replaces zero fields with their defaults.
func (h *Hub) SetDefaults() {
	if len(h.IKE.Listen) == 0 {
		h.IKE.Listen = slices.Clone(DefaultIKEListen)
	}
	if h.IKE.Port == 0 {
		h.IKE.Port = DefaultIKEPort
	}
	if h.IKE.NATTPort == 0 {
		h.IKE.NATTPort = DefaultNATTPort
	}
	for i := range h.Groups {
		g := &h.Groups[i]
		if g.ESP == (transform.ESP{}) {
			g.ESP = DefaultESP
		}
		if g.PRF == 0 {
			g.PRF = DefaultPRF
		}
		if g.SenderIDBits == 0 && g.ESP.Encr.IsAEAD() {
			g.SenderIDBits = DefaultSenderIDBits
		}
		if g.Lifetime == 0 {
			g.Lifetime = DefaultLifetime
		}
		if g.RekeyMargin == 0 {
			g.RekeyMargin = DefaultRekeyMargin
		}
		if g.Roll1 == 0 {
			g.Roll1 = DefaultRoll1
		}
		if g.Roll2 == 0 {
			g.Roll2 = DefaultRoll2
		}
		if g.BGP.MaxPrefixes == 0 {
			g.BGP.MaxPrefixes = DefaultMaxPrefixes
		}
		if g.BGP.LocalPref == 0 {
			g.BGP.LocalPref = DefaultLocalPref
		}
	}
	for i := range h.CPEs {
		c := &h.CPEs[i]
		if c.Auth == "" {
			c.Auth = AuthCert
			if !c.PSK.IsZero() || c.PSKFile != "" {
				c.Auth = AuthPSK
			}
		}
	}
	if h.BGP.ASN == 0 {
		h.BGP.ASN = DefaultASN
	}
	if !h.BGP.ClusterID.IsValid() {
		h.BGP.ClusterID = h.BGP.RouterID
	}
	if h.BGP.GRPCListen == (netip.AddrPort{}) {
		h.BGP.GRPCListen = netip.MustParseAddrPort(DefaultGRPCListen)
	}
	for i := range h.BGP.Peers {
		if h.BGP.Peers[i].Port == 0 {
			h.BGP.Peers[i].Port = DefaultBGPPort
		}
	}
	h.Dataplane.setDefaults()
	if h.StateDir == "" {
		h.StateDir = DefaultStateDir
	}
	if h.Status.Socket == "" {
		h.Status.Socket = DefaultHubStatusPath
	}
	h.Log.setDefaults()
}

// Group returns the group named name, or nil.
func (h *Hub) Group(name string) *Group {
	for i := range h.Groups {
		if h.Groups[i].Name == name {
			return &h.Groups[i]
		}
	}
	return nil
}

// CPE returns the CPE with identity id (compared as auth.ID.Equal does), or nil.
func (h *Hub) CPE(id Identity) *HubCPE {
	for i := range h.CPEs {
		if h.CPEs[i].Identity.Equal(id) {
			return &h.CPEs[i]
		}
	}
	return nil
}

// Validate checks every field and returns an Errors listing each problem
// with its path, or nil. It does not touch the file system (Load* does).
func (h *Hub) Validate() error {
	var ck checker
	h.validate(&ck)
	return ck.errs.err()
}

func (h *Hub) validate(ck *checker) {
	if len(h.IKE.Listen) == 0 {
		ck.add("ike.listen", "expected at least one address")
	}
	seen := map[netip.Addr]bool{}
	for i, a := range h.IKE.Listen {
		p := index("ike.listen", i)
		switch {
		case !a.IsValid():
			ck.add(p, "expected an IPv4 or IPv6 address")
		case a.IsMulticast() || a.Is4In6():
			ck.add(p, "expected a unicast IPv4 or IPv6 address, got %q", a)
		case seen[a]:
			ck.add(p, "expected each address once, got %q again", a)
		}
		seen[a] = true
	}
	if h.IKE.Port == 0 {
		ck.add("ike.port", "expected a port in 1..65535, got 0")
	}
	if h.IKE.NATTPort == 0 || h.IKE.NATTPort == h.IKE.Port {
		ck.add("ike.natt_port", "expected a port in 1..65535 other than ike.port, got %d", h.IKE.NATTPort)
	}
	if h.Identity.IsZero() {
		ck.add("identity", "expected the hub's identity, such as fqdn:hub.example.net")
	}
	needCA := slices.ContainsFunc(h.CPEs, func(c HubCPE) bool { return c.Auth == AuthCert })
	h.Credentials.validate(ck, "credentials", needCA)
	if needCA && h.Credentials.Certificate == "" && h.Credentials.PrivateKey == "" {
		ck.add("credentials.certificate", "expected the hub's certificate and private_key: some CPEs use auth: cert")
	}

	h.validateGroups(ck)
	h.validateCPEs(ck)
	h.validateBGP(ck)
	h.Dataplane.validate(ck, "dataplane")
	if !filepath.IsAbs(h.StateDir) {
		ck.add("state_dir", "expected an absolute directory path, got %q", h.StateDir)
	}
	h.Metrics.validate(ck, "metrics")
	h.Status.validate(ck, "status")
	h.Log.validate(ck, "log")
	h.KeyExport.validate(ck, "key_export")
}

func (h *Hub) validateGroups(ck *checker) {
	if len(h.Groups) == 0 {
		ck.add("groups", "expected at least one group")
	}
	names := map[string]int{}
	counts := map[string]int{}
	for _, c := range h.CPEs {
		counts[c.Group]++
	}
	type pool struct {
		p    netip.Prefix
		path string
	}
	var pools []pool
	for i := range h.Groups {
		g := &h.Groups[i]
		p := index("groups", i)
		switch j, dup := names[g.Name]; {
		case g.Name == "":
			ck.add(join(p, "name"), "expected a group name")
		case len(g.Name) > MaxGroupName || !validGroupName(g.Name):
			ck.add(join(p, "name"), "expected 1 to %d lower-case letters, digits, '-' or '_' (starting with a letter or digit), got %q", MaxGroupName, g.Name)
		case dup:
			ck.add(join(p, "name"), "expected a unique group name, got %q again (also groups[%d])", g.Name, j)
		default:
			names[g.Name] = i
		}
		if err := g.ESP.Validate(); err != nil {
			ck.add(join(p, "esp"), "expected one of %v: %v", ESPNames(), err)
		}
		if _, err := g.PRF.KeyLen(); err != nil {
			ck.add(join(p, "prf"), "expected one of %v, got %v", PRFNames(), g.PRF)
		}
		g.validateSenderID(ck, p, counts[g.Name])
		g.validateTimes(ck, p)
		for _, fam := range []struct {
			key  string
			pf   netip.Prefix
			v4   bool
			bits int
		}{{"ipv4", g.Pool.IPv4, true, 30}, {"ipv6", g.Pool.IPv6, false, 126}} {
			if fam.pf == (netip.Prefix{}) {
				continue
			}
			pp := join(p, "pool."+fam.key)
			if !checkPrefix(ck, pp, fam.pf) {
				continue
			}
			if fam.pf.Addr().Is4() != fam.v4 {
				ck.add(pp, "expected an %s prefix, got %q", map[bool]string{true: "IPv4", false: "IPv6"}[fam.v4], fam.pf)
				continue
			}
			if fam.pf.Bits() > fam.bits {
				ck.add(pp, "expected a prefix of length /%d or shorter, got %q", fam.bits, fam.pf)
				continue
			}
			// The network address and the hub's address are not given out.
			size := new(big.Int).Lsh(big.NewInt(1), uint(fam.pf.Addr().BitLen()-fam.pf.Bits()))
			if need := big.NewInt(int64(counts[g.Name] + 2)); size.Cmp(need) < 0 {
				ck.add(pp, "expected room for %d CPEs plus the hub, got %q with %v addresses", counts[g.Name], fam.pf, size)
			}
			for _, o := range pools {
				if o.p.Overlaps(fam.pf) {
					ck.add(pp, "expected a pool not overlapping %s (%s), got %q", o.path, o.p, fam.pf)
				}
			}
			pools = append(pools, pool{fam.pf, pp})
		}
		if !g.Pool.IPv4.IsValid() && !g.Pool.IPv6.IsValid() {
			ck.add(join(p, "pool"), "expected an ipv4 and/or ipv6 prefix for overlay addresses")
		}
		if g.BGP.MaxPrefixes < 1 || g.BGP.MaxPrefixes > MaxListLen {
			ck.add(join(p, "bgp.max_prefixes"), "expected 1..%d, got %d", MaxListLen, g.BGP.MaxPrefixes)
		}
	}
}

func (g *Group) validateSenderID(ck *checker, p string, cpes int) {
	path := join(p, "sender_id_bits")
	if g.SenderIDBits == 0 {
		if g.ESP.Encr.IsAEAD() {
			ck.add(path, "expected %d..%d: %s on a shared key needs Sender-IDs (RFC 6054), got 0", MinSenderIDBits, MaxSenderIDBits, ESPName(g.ESP))
		}
		return
	}
	if g.SenderIDBits < MinSenderIDBits || g.SenderIDBits > MaxSenderIDBits {
		ck.add(path, "expected 0 (off) or %d..%d, got %d", MinSenderIDBits, MaxSenderIDBits, g.SenderIDBits)
		return
	}
	// Sender-ID 0 is reserved for the hub.
	if uint64(cpes) >= uint64(1)<<g.SenderIDBits {
		ck.add(path, "expected room for %d CPEs (Sender-ID 0 is the hub's), got %d bits", cpes, g.SenderIDBits)
	}
}

func (g *Group) validateTimes(ck *checker, p string) {
	whole := func(key string, d time.Duration) bool {
		if d%time.Second != 0 {
			ck.add(join(p, key), "expected a whole number of seconds (MPSA_PUT carries seconds), got %q", d.String())
			return false
		}
		return true
	}
	if g.Lifetime < MinLifetime || g.Lifetime > MaxLifetime {
		ck.add(join(p, "lifetime"), "expected a duration ≥ %s and ≤ %s, got %q", human(MinLifetime), human(MaxLifetime), human(g.Lifetime))
	} else {
		whole("lifetime", g.Lifetime)
	}
	rollOK := true
	for _, r := range []struct {
		key string
		d   time.Duration
	}{{"roll1", g.Roll1}, {"roll2", g.Roll2}} {
		if r.d < MinRoll {
			ck.add(join(p, r.key), "expected a duration ≥ %s, got %q", human(MinRoll), human(r.d))
			rollOK = false
		} else if !whole(r.key, r.d) {
			rollOK = false
		}
	}
	if rollOK && g.Roll2 <= g.Roll1 {
		ck.add(join(p, "roll2"), "expected a duration greater than roll1 (%s), got %q", human(g.Roll1), human(g.Roll2))
	}
	switch {
	case g.RekeyMargin <= 0:
		ck.add(join(p, "rekey_margin"), "expected a positive duration, got %q", human(g.RekeyMargin))
	case rollOK && g.RekeyMargin <= g.Roll2:
		ck.add(join(p, "rekey_margin"), "expected a duration greater than roll2 (%s), so the rollover ends before the old SA's lifetime, got %q", human(g.Roll2), human(g.RekeyMargin))
	case g.RekeyMargin%time.Second != 0:
		ck.add(join(p, "rekey_margin"), "expected a whole number of seconds, got %q", g.RekeyMargin.String())
	case g.Lifetime >= MinLifetime && g.RekeyMargin > g.Lifetime/2:
		ck.add(join(p, "rekey_margin"), "expected a duration ≤ half the lifetime (%s), got %q", human(g.Lifetime/2), human(g.RekeyMargin))
	}
}

func (h *Hub) validateCPEs(ck *checker) {
	ids := map[string]int{}
	type owned struct {
		p    netip.Prefix
		path string
	}
	prefixes := map[string][]owned{} // per group
	overlays := map[netip.Addr]string{}
	for i := range h.CPEs {
		c := &h.CPEs[i]
		p := index("cpes", i)
		if c.Identity.IsZero() {
			ck.add(join(p, "identity"), "expected the CPE's identity, such as fqdn:cpe1.example.net")
		} else if j, dup := ids[idKey(c.Identity)]; dup {
			ck.add(join(p, "identity"), "expected a unique identity, got %q again (also cpes[%d])", c.Identity, j)
		} else {
			ids[idKey(c.Identity)] = i
		}
		g := h.Group(c.Group)
		if g == nil {
			ck.add(join(p, "group"), "expected the name of a group in groups, got %q", c.Group)
		}
		switch c.Auth {
		case AuthPSK:
			switch {
			case c.PSK.IsZero() && c.PSKFile == "":
				ck.add(join(p, "psk"), "expected psk or psk_file (auth: psk)")
			case !c.PSK.IsZero() && c.PSKFile != "":
				ck.add(join(p, "psk_file"), "expected either psk or psk_file, not both")
			case c.PSKFile == "":
				checkPSK(ck, join(p, "psk"), c.PSK)
			}
		case AuthCert:
			if !c.PSK.IsZero() || c.PSKFile != "" {
				ck.add(join(p, "psk"), "expected no PSK with auth: cert")
			}
		default:
			ck.add(join(p, "auth"), "expected psk or cert, got %q", c.Auth)
		}
		if len(c.Prefixes) == 0 {
			ck.add(join(p, "prefixes"), "expected at least one authorised LAN prefix")
		}
		for k, pf := range c.Prefixes {
			pp := index(join(p, "prefixes"), k)
			if !checkPrefix(ck, pp, pf) {
				continue
			}
			if g != nil {
				for _, pool := range []netip.Prefix{g.Pool.IPv4, g.Pool.IPv6} {
					if pool.IsValid() && pool.Overlaps(pf) {
						ck.add(pp, "expected a prefix outside the group's overlay pool %s, got %q", pool, pf)
					}
				}
			}
			for _, o := range prefixes[c.Group] {
				if o.p.Overlaps(pf) {
					ck.add(pp, "expected a prefix not overlapping %s (%s) in group %q, got %q", o.path, o.p, c.Group, pf)
				}
			}
			prefixes[c.Group] = append(prefixes[c.Group], owned{pf, pp})
		}
		fams := map[bool]bool{}
		for k, a := range c.Overlay {
			pp := index(join(p, "overlay"), k)
			if g == nil {
				break
			}
			pool := g.Pool.IPv6
			if a.Is4() {
				pool = g.Pool.IPv4
			}
			switch {
			case !a.IsValid():
				ck.add(pp, "expected an IP address")
			case !pool.IsValid() || !pool.Contains(a):
				ck.add(pp, "expected an address in the group's %s pool, got %q", map[bool]string{true: "IPv4", false: "IPv6"}[a.Is4()], a)
			case a == pool.Masked().Addr() || a == pool.Masked().Addr().Next():
				ck.add(pp, "expected an address other than the pool's network and hub address, got %q", a)
			case fams[a.Is4()]:
				ck.add(pp, "expected at most one address per family, got a second one %q", a)
			case overlays[a] != "":
				ck.add(pp, "expected a unique overlay address, got %q (also %s)", a, overlays[a])
			}
			fams[a.Is4()] = true
			if overlays[a] == "" {
				overlays[a] = pp
			}
		}
	}
}

func checkPSK(ck *checker, path string, s Secret) {
	if s.Len() < MinPSKLen || s.Len() > MaxPSKLen {
		ck.add(path, "expected a PSK of %d..%d octets, got %d octets", MinPSKLen, MaxPSKLen, s.Len())
	}
}

func (h *Hub) validateBGP(ck *checker) {
	b := &h.BGP
	checkASN(ck, "bgp.asn", b.ASN)
	if !b.RouterID.Is4() || b.RouterID.IsUnspecified() {
		ck.add("bgp.router_id", "expected a non-zero IPv4 address, got %q", addrString(b.RouterID))
	}
	if !b.ClusterID.Is4() || b.ClusterID.IsUnspecified() {
		ck.add("bgp.cluster_id", "expected a non-zero IPv4 address, got %q", addrString(b.ClusterID))
	}
	checkListen(ck, "bgp.grpc_listen", b.GRPCListen)
	seen := map[netip.Addr]int{}
	for i, peer := range b.Peers {
		p := index("bgp.peers", i)
		switch j, dup := seen[peer.Address]; {
		case !peer.Address.IsValid() || peer.Address.IsUnspecified() || peer.Address.IsMulticast():
			ck.add(join(p, "address"), "expected a unicast IP address, got %q", addrString(peer.Address))
		case dup:
			ck.add(join(p, "address"), "expected a unique peer address, got %q again (also bgp.peers[%d])", peer.Address, j)
		default:
			seen[peer.Address] = i
		}
		checkASN(ck, join(p, "asn"), peer.ASN)
		if h.Group(peer.Group) == nil {
			ck.add(join(p, "group"), "expected the name of a group in groups, got %q", peer.Group)
		}
		if peer.Port == 0 {
			ck.add(join(p, "port"), "expected a port in 1..65535, got 0")
		}
	}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
