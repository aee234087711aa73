package configs

import (
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/auth"
)

// Defaults shared by the hub and the CPE. A zero field is replaced by its
// default by SetDefaults; the names below are what the documentation and
// the example files refer to.
const (
	DefaultIKEPort       uint16 = 500  // IKE (RFC 7296 §2)
	DefaultNATTPort      uint16 = 4500 // IKE and ESP-in-UDP after NAT-T floating (RFC 3948)
	DefaultBackend              = BackendAuto
	DefaultTUNName              = "mpsa0"
	DefaultTUNMTU               = 1380 // fits a 1500-octet underlay with IPv6+UDP+ESP(AES-CBC/HMAC) overhead (≤ 105 octets)
	DefaultLogLevel             = LogInfo
	DefaultLogFormat            = LogText
	DefaultASN           uint32 = 64512 // first private 2-octet ASN (RFC 6996); hub and CPEs must agree (iBGP)
	DefaultBGPPort       uint16 = 179
	DefaultGRPCListen           = "127.0.0.1:50051" // GoBGP's usual API port, loopback only
	DefaultStateDir             = "/var/lib/mpsa"
	DefaultHubStatusPath        = "/run/mpsa/hub.sock"
	DefaultCPEStatusPath        = "/run/mpsa/cpe.sock"
	DefaultReconnectMin         = 1 * time.Second
	DefaultReconnectMax         = 60 * time.Second
	DefaultEncapsulation        = EncapAuto
)

// Limits checked by validation.
const (
	MinTUNMTU       = 1280 // IPv6 minimum link MTU (RFC 8200 §5)
	MaxTUNMTU       = 9000
	MaxIfNameLen    = 15             // Linux IFNAMSIZ - 1
	MaxSocketPath   = 107            // sun_path minus the terminating NUL
	MinPSKLen       = auth.MinPSKLen // octets; RFC 7296 §2.15 wants a PSK as strong as the PRF key
	MaxPSKLen       = 1024
	MinReconnect    = 100 * time.Millisecond
	MaxReconnect    = time.Hour
	MaxListLen      = 100000 // longest list accepted from a file (CPEs, prefixes, ...)
	MaxHubEndpoints = 16
)

// Backend selects the data plane implementation.
type Backend string

// Data plane backends.
const (
	BackendAuto      Backend = "auto"      // xfrm when the kernel has ESP, else userspace
	BackendUserspace Backend = "userspace" // TUN device and ESP in Go
	BackendXFRM      Backend = "xfrm"      // the Linux kernel's IPsec, programmed through netlink
)

// Encapsulation selects how a CPE sends ESP.
type Encapsulation string

// ESP encapsulations.
const (
	EncapAuto Encapsulation = "auto" // UDP 4500 when NAT is detected (or the backend needs it), else raw
	EncapUDP  Encapsulation = "udp"  // always ESP-in-UDP on port 4500 (RFC 3948)
	EncapRaw  Encapsulation = "raw"  // always IP protocol 50
)

// LogLevel is a slog level name.
type LogLevel string

// Log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// LogFormat selects the slog handler.
type LogFormat string

// Log formats.
const (
	LogText LogFormat = "text" // slog.TextHandler
	LogJSON LogFormat = "json" // slog.JSONHandler
)

// CertFiles names the PEM files of an X.509 identity. After a successful
// Load* call the paths are absolute and Material returns the parsed files.
type CertFiles struct {
	// Certificate is the node's certificate, leaf first, followed by any
	// intermediates to send in CERT payloads.
	Certificate string `config:"certificate"`
	// PrivateKey is the certificate's key (PKCS#8, PKCS#1 or SEC 1 PEM). The
	// file must not be readable by group or others.
	PrivateKey string `config:"private_key"`
	// CA is a PEM bundle of trust anchors that peer certificates must chain to.
	CA string `config:"ca"`

	material *CertMaterial
}

// IsZero reports whether no file is named.
func (c CertFiles) IsZero() bool { return c.Certificate == "" && c.PrivateKey == "" && c.CA == "" }

// Material returns the certificates and key read from the files by the
// loader, or nil when the files were not resolved (a configuration built in
// code and not passed through Resolve).
func (c CertFiles) Material() *CertMaterial { return c.material }

// DataplaneConfig selects and sizes the data plane.
type DataplaneConfig struct {
	// Backend is auto (default), userspace or xfrm.
	Backend Backend `config:"backend"`
	// TUN is the overlay interface (the userspace backend's TUN device, or
	// the xfrm backend's route target).
	TUN TUNConfig `config:"tun"`
}

// TUNConfig names and sizes the overlay interface.
type TUNConfig struct {
	Name string `config:"name"` // default DefaultTUNName
	MTU  int    `config:"mtu"`  // default DefaultTUNMTU, MinTUNMTU..MaxTUNMTU
}

// MetricsConfig is the Prometheus endpoint.
type MetricsConfig struct {
	// Listen is the address:port of the HTTP /metrics endpoint; unset
	// disables metrics.
	Listen netip.AddrPort `config:"listen"`
}

// StatusConfig is the local control socket that `status` subcommands use.
type StatusConfig struct {
	// Socket is the Unix socket path; default DefaultHubStatusPath or
	// DefaultCPEStatusPath.
	Socket string `config:"socket"`
}

// LogConfig configures the slog handler.
type LogConfig struct {
	Level  LogLevel  `config:"level"`  // debug, info (default), warn, error
	Format LogFormat `config:"format"` // text (default) or json
}

// KeyExportConfig names optional files where IKE and ESP keys are written in
// Wireshark's formats so a capture can be decrypted. Both files hold keys:
// they are created 0600 and refused if they exist readable by others. Unset
// disables the export.
type KeyExportConfig struct {
	IKE string `config:"ike"` // ikev2_decryption_table CSV
	ESP string `config:"esp"` // esp_sa CSV
}

func (c *DataplaneConfig) setDefaults() {
	if c.Backend == "" {
		c.Backend = DefaultBackend
	}
	if c.TUN.Name == "" {
		c.TUN.Name = DefaultTUNName
	}
	if c.TUN.MTU == 0 {
		c.TUN.MTU = DefaultTUNMTU
	}
}

func (c *LogConfig) setDefaults() {
	if c.Level == "" {
		c.Level = DefaultLogLevel
	}
	if c.Format == "" {
		c.Format = DefaultLogFormat
	}
}

func (c *DataplaneConfig) validate(ck *checker, path string) {
	switch c.Backend {
	case BackendAuto, BackendUserspace, BackendXFRM:
	default:
		ck.add(join(path, "backend"), "expected auto, userspace or xfrm, got %q", c.Backend)
	}
	checkIfName(ck, join(path, "tun.name"), c.TUN.Name, true)
	if c.TUN.MTU < MinTUNMTU || c.TUN.MTU > MaxTUNMTU {
		ck.add(join(path, "tun.mtu"), "expected an MTU in %d..%d, got %d", MinTUNMTU, MaxTUNMTU, c.TUN.MTU)
	}
}

func (c *LogConfig) validate(ck *checker, path string) {
	switch c.Level {
	case LogDebug, LogInfo, LogWarn, LogError:
	default:
		ck.add(join(path, "level"), "expected debug, info, warn or error, got %q", c.Level)
	}
	switch c.Format {
	case LogText, LogJSON:
	default:
		ck.add(join(path, "format"), "expected text or json, got %q", c.Format)
	}
}

func (c *MetricsConfig) validate(ck *checker, path string) {
	if c.Listen != (netip.AddrPort{}) {
		checkListen(ck, join(path, "listen"), c.Listen)
	}
}

func (c *StatusConfig) validate(ck *checker, path string) {
	if c.Socket == "" {
		return // not set: the daemon has no status socket
	}
	p := join(path, "socket")
	if !filepath.IsAbs(c.Socket) {
		ck.add(p, "expected an absolute path, got %q", c.Socket)
	} else if len(c.Socket) > MaxSocketPath {
		ck.add(p, "expected a path of at most %d characters (Unix socket limit), got %d", MaxSocketPath, len(c.Socket))
	}
}

func (c *KeyExportConfig) validate(ck *checker, path string) {
	if c.IKE != "" && c.IKE == c.ESP {
		ck.add(join(path, "esp"), "expected a different file than key_export.ike, got the same %q", c.ESP)
	}
}

// validate checks the shape of the file names; Load* checks the files.
func (c *CertFiles) validate(ck *checker, path string, needCA bool) {
	if (c.Certificate == "") != (c.PrivateKey == "") {
		if c.Certificate == "" {
			ck.add(join(path, "certificate"), "expected a certificate file to go with private_key")
		} else {
			ck.add(join(path, "private_key"), "expected a private key file to go with certificate")
		}
	}
	if needCA && c.CA == "" {
		ck.add(join(path, "ca"), "expected a CA file to verify peer certificates")
	}
	if c.Certificate != "" && c.Certificate == c.PrivateKey {
		ck.add(join(path, "private_key"), "expected a file separate from the certificate (the key file must be private)")
	}
}

// checkListen checks a listening address:port.
func checkListen(ck *checker, path string, ap netip.AddrPort) {
	switch {
	case !ap.Addr().IsValid():
		ck.add(path, "expected an address:port to listen on, got %q", ap.String())
	case ap.Port() == 0:
		ck.add(path, "expected an address:port with a non-zero port, got %q", ap.Addr().String())
	case ap.Addr().IsMulticast():
		ck.add(path, "expected a unicast address, got %q", ap.String())
	}
}

// checkIfName checks a Linux interface name.
func checkIfName(ck *checker, path, name string, required bool) {
	switch {
	case name == "":
		if required {
			ck.add(path, "expected an interface name")
		}
	case len(name) > MaxIfNameLen:
		ck.add(path, "expected an interface name of at most %d characters, got %q", MaxIfNameLen, name)
	case name == "." || name == ".." || strings.ContainsAny(name, "/:% \t\n"):
		ck.add(path, "expected an interface name without '/', ':', '%%' or spaces, got %q", name)
	}
}

// checkASN checks a BGP AS number.
func checkASN(ck *checker, path string, asn uint32) {
	switch asn {
	case 0, 23456, 4294967295:
		// 0: reserved (RFC 7607); 23456: AS_TRANS (RFC 6793); 2^32-1: reserved (RFC 7300).
		ck.add(path, "expected an AS number in 1..4294967294 other than 23456 (AS_TRANS), got %d", asn)
	}
}

// checkPrefix checks one network prefix and returns whether it is usable.
func checkPrefix(ck *checker, path string, p netip.Prefix) bool {
	switch {
	case !p.IsValid():
		ck.add(path, "expected an IP prefix such as 10.1.0.0/24")
	case p.Addr().Zone() != "":
		ck.add(path, "expected a prefix without a zone, got %q", p.String())
	case p.Addr().Is4In6():
		ck.add(path, "expected an IPv4 or IPv6 prefix, not IPv4-mapped IPv6, got %q", p.String())
	case p != p.Masked():
		ck.add(path, "expected a network prefix (host bits zero), got %q (did you mean %s?)", p.String(), p.Masked())
	default:
		return true
	}
	return false
}
