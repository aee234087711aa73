package configs

import (
	"net/netip"
	"time"
)

// CPE is the configuration of mpsa-cpe. The zero value is not valid; call
// SetDefaults then Validate, or load it with a loader.
type CPE struct {
	// Hubs are the hub's addresses (IPv4 and IPv6), tried in order. A bare
	// address means port DefaultIKEPort; "[2001:db8::1]:500" sets the port.
	Hubs []netip.AddrPort `config:"hubs"`
	// HubIdentity, when set, is the identity the hub must prove (IDr).
	HubIdentity Identity `config:"hub_identity"`
	// Identity is the CPE's IKE identity (IDi), as provisioned on the hub.
	Identity Identity `config:"identity"`
	// Credentials are a PSK (inline or file) or a certificate, key and CA.
	Credentials Credentials `config:"credentials"`
	// LAN is the customer side: the prefixes advertised over BGP.
	LAN LANConfig `config:"lan"`
	// WAN is the underlay side.
	WAN       WANConfig       `config:"wan"`
	Dataplane DataplaneConfig `config:"dataplane"`
	BGP       CPEBGP          `config:"bgp"`
	// Reconnect bounds the exponential backoff between attempts to reach a hub.
	Reconnect Backoff         `config:"reconnect"`
	Metrics   MetricsConfig   `config:"metrics"`
	Status    StatusConfig    `config:"status"`
	Log       LogConfig       `config:"log"`
	KeyExport KeyExportConfig `config:"key_export"`
}

// Credentials authenticate a CPE: either a PSK (PSK or PSKFile) or a
// certificate with its key and the CA that the hub's certificate chains to.
type Credentials struct {
	// PSK is the pre-shared key (at least MinPSKLen octets; "0x" for hex).
	// A config file holding a PSK must not be world-readable.
	PSK Secret `config:"psk"`
	// PSKFile names a file holding the PSK (not world-readable); the loader
	// reads it into PSK.
	PSKFile string `config:"psk_file"`
	CertFiles
}

// UsesPSK reports whether the credentials are a PSK.
func (c *Credentials) UsesPSK() bool { return !c.PSK.IsZero() || c.PSKFile != "" }

// LANConfig is the CPE's customer side.
type LANConfig struct {
	// Interface is the LAN interface (e.g. br-lan); optional.
	Interface string `config:"interface"`
	// Prefixes are advertised to the hub; they must be among those the hub
	// authorises for this CPE.
	Prefixes []netip.Prefix `config:"prefixes"`
}

// WANConfig is the CPE's underlay side.
type WANConfig struct {
	// Interface is the WAN interface whose address changes are followed
	// (MOBIKE); unset means the interface of the route to the hub.
	Interface string `config:"interface"`
	// Encapsulation is auto (default), udp or raw.
	Encapsulation Encapsulation `config:"encapsulation"`
}

// CPEBGP configures the CPE's iBGP speaker.
type CPEBGP struct {
	// ASN must equal the hub's bgp.asn; default DefaultASN.
	ASN uint32 `config:"asn"`
	// RouterID is the BGP identifier; unset means the CPE's IPv4 overlay
	// address (or, without one, an ID derived from the identity).
	RouterID netip.Addr `config:"router_id"`
}

// Backoff bounds an exponential backoff.
type Backoff struct {
	Min time.Duration `config:"min"` // first wait, default DefaultReconnectMin
	Max time.Duration `config:"max"` // longest wait, default DefaultReconnectMax
}

// SetDefaults replaces zero fields with their defaults.
func (c *CPE) SetDefaults() {
	for i, h := range c.Hubs {
		if h.Port() == 0 && h.Addr().IsValid() {
			c.Hubs[i] = netip.AddrPortFrom(h.Addr(), DefaultIKEPort)
		}
	}
	if c.WAN.Encapsulation == "" {
		c.WAN.Encapsulation = DefaultEncapsulation
	}
	c.Dataplane.setDefaults()
	if c.BGP.ASN == 0 {
		c.BGP.ASN = DefaultASN
	}
	if c.Reconnect.Min == 0 {
		c.Reconnect.Min = DefaultReconnectMin
	}
	if c.Reconnect.Max == 0 {
		c.Reconnect.Max = max(DefaultReconnectMax, c.Reconnect.Min)
	}
	if c.Status.Socket == "" {
		c.Status.Socket = DefaultCPEStatusPath
	}
	c.Log.setDefaults()
}

// Validate checks every field and returns an Errors listing each problem
// with its path, or nil. It does not touch the file system (Load* does).
func (c *CPE) Validate() error {
	var ck checker
	c.validate(&ck)
	return ck.errs.err()
}

func (c *CPE) validate(ck *checker) {
	switch {
	case len(c.Hubs) == 0:
		ck.add("hubs", "expected at least one hub address")
	case len(c.Hubs) > MaxHubEndpoints:
		ck.add("hubs", "expected at most %d hub addresses, got %d", MaxHubEndpoints, len(c.Hubs))
	}
	seen := map[netip.AddrPort]int{}
	for i, h := range c.Hubs {
		p := index("hubs", i)
		a := h.Addr()
		switch j, dup := seen[h]; {
		case !a.IsValid():
			ck.add(p, "expected an IP address or address:port")
		case a.IsUnspecified() || a.IsMulticast() || a.Is4In6() || a.Zone() != "":
			ck.add(p, "expected a unicast IPv4 or IPv6 address, got %q", h)
		case h.Port() == 0:
			ck.add(p, "expected a port in 1..65535, got 0")
		case dup:
			ck.add(p, "expected each hub address once, got %q again (also hubs[%d])", h, j)
		}
		seen[h] = i
	}
	if c.Identity.IsZero() {
		ck.add("identity", "expected the CPE's identity, such as fqdn:cpe1.example.net")
	}
	cr := &c.Credentials
	switch {
	case cr.UsesPSK() && (cr.Certificate != "" || cr.PrivateKey != ""):
		ck.add("credentials", "expected either a PSK (psk or psk_file) or certificate and private_key, not both")
	case !c.Credentials.PSK.IsZero() && cr.PSKFile != "":
		ck.add("credentials.psk_file", "expected either psk or psk_file, not both")
	case !cr.PSK.IsZero():
		checkPSK(ck, "credentials.psk", cr.PSK)
	case cr.PSKFile != "":
	case cr.Certificate == "" && cr.PrivateKey == "":
		ck.add("credentials", "expected psk, psk_file, or certificate with private_key and ca")
	default:
		cr.CertFiles.validate(ck, "credentials", true)
	}
	checkIfName(ck, "lan.interface", c.LAN.Interface, false)
	if len(c.LAN.Prefixes) == 0 {
		ck.add("lan.prefixes", "expected at least one LAN prefix to advertise")
	}
	for i, pf := range c.LAN.Prefixes {
		p := index("lan.prefixes", i)
		if !checkPrefix(ck, p, pf) {
			continue
		}
		for j := range i {
			if o := c.LAN.Prefixes[j]; o.IsValid() && o.Overlaps(pf) {
				ck.add(p, "expected a prefix not overlapping lan.prefixes[%d] (%s), got %q", j, o, pf)
				break
			}
		}
	}
	checkIfName(ck, "wan.interface", c.WAN.Interface, false)
	switch c.WAN.Encapsulation {
	case EncapAuto, EncapUDP, EncapRaw:
	default:
		ck.add("wan.encapsulation", "expected auto, udp or raw, got %q", c.WAN.Encapsulation)
	}
	c.Dataplane.validate(ck, "dataplane")
	checkASN(ck, "bgp.asn", c.BGP.ASN)
	if c.BGP.RouterID.IsValid() && (!c.BGP.RouterID.Is4() || c.BGP.RouterID.IsUnspecified()) {
		ck.add("bgp.router_id", "expected a non-zero IPv4 address or nothing, got %q", c.BGP.RouterID)
	}
	r := c.Reconnect
	switch {
	case r.Min < MinReconnect || r.Min > MaxReconnect:
		ck.add("reconnect.min", "expected a duration ≥ %s and ≤ %s, got %q", human(MinReconnect), human(MaxReconnect), human(r.Min))
	case r.Max < r.Min || r.Max > MaxReconnect:
		ck.add("reconnect.max", "expected a duration ≥ reconnect.min (%s) and ≤ %s, got %q", human(r.Min), human(MaxReconnect), human(r.Max))
	}
	c.Metrics.validate(ck, "metrics")
	c.Status.validate(ck, "status")
	c.Log.validate(ck, "log")
	c.KeyExport.validate(ck, "key_export")
}
