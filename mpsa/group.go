package mpsa

import (
	"fmt"
	"math"
	"time"

	"github.com/mpsa-vpn/mpsa/transform"
)

// Group defaults.
var (
	// DefaultSuite is AES-CBC-256 with HMAC-SHA2-256-128: its random IVs
	// are safe with many senders on one key.
	DefaultSuite = transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128}
)

// Group defaults.
const (
	DefaultPRF          = transform.PRFHMACSHA2256
	DefaultLifetime     = 8 * time.Hour
	DefaultRekeyMargin  = 15 * time.Minute
	DefaultRoll1        = 30 * time.Second
	DefaultRoll2        = 2 * time.Minute
	DefaultNonceLen     = 32
	DefaultSenderIDBits = 16

	// MaxGroupNameLen bounds group names (they are store keys and log
	// fields).
	MaxGroupNameLen = 255
)

// GroupConfig is one group (one customer VPN): every CPE provisioned in it
// shares its SA. The zero values of the optional fields take the defaults
// above (WithDefaults).
type GroupConfig struct {
	Name string

	Suite transform.ESP // DefaultSuite if zero
	PRF   transform.PRF // DefaultPRF if zero

	// SenderIDBits gives every CPE of the group a Sender-ID of this many
	// bits (1–32, see the package doc). AEAD suites need it and default to
	// DefaultSenderIDBits; for AES-CBC it is optional (0: none, no replay
	// window).
	SenderIDBits uint8

	Lifetime    time.Duration // lifetime of each group SA
	RekeyMargin time.Duration // the next SA is generated this long before LIFE ends
	Roll1       time.Duration // the new SA is used outbound this long after it was generated
	Roll2       time.Duration // the old SA is removed this long after the new one was generated
	NonceLen    int           // octets, 16–256
}

// WithDefaults returns c with zero fields set to the defaults.
func (c GroupConfig) WithDefaults() GroupConfig {
	if c.Suite == (transform.ESP{}) {
		c.Suite = DefaultSuite
	}
	if c.PRF == 0 {
		c.PRF = DefaultPRF
	}
	if c.SenderIDBits == 0 && c.Suite.Encr.IsAEAD() {
		c.SenderIDBits = DefaultSenderIDBits
	}
	if c.Lifetime == 0 {
		c.Lifetime = DefaultLifetime
	}
	if c.RekeyMargin == 0 {
		c.RekeyMargin = DefaultRekeyMargin
	}
	if c.Roll1 == 0 {
		c.Roll1 = DefaultRoll1
	}
	if c.Roll2 == 0 {
		c.Roll2 = DefaultRoll2
	}
	if c.NonceLen == 0 {
		c.NonceLen = DefaultNonceLen
	}
	return c
}

// Validate checks a config after WithDefaults: a supported suite and PRF, a
// Sender-ID for AEAD suites, and 0 ≤ Roll1 ≤ Roll2 < RekeyMargin < Lifetime
// in whole seconds, so that the rollover ends before the old SA's LIFE.
func (c *GroupConfig) Validate() error {
	if c.Name == "" || len(c.Name) > MaxGroupNameLen {
		return fmt.Errorf("mpsa: group name %q: want 1 to %d octets", c.Name, MaxGroupNameLen)
	}
	if err := c.Suite.Validate(); err != nil {
		return fmt.Errorf("mpsa: group %s: %w", c.Name, err)
	}
	if _, err := c.PRF.KeyLen(); err != nil {
		return fmt.Errorf("mpsa: group %s: %w", c.Name, err)
	}
	if c.Suite.Encr.IsAEAD() && c.SenderIDBits == 0 {
		return fmt.Errorf("mpsa: group %s: %v on a shared key needs Sender-IDs (RFC 6054)", c.Name, c.Suite.Encr)
	}
	if c.SenderIDBits > MaxSenderIDBits {
		return fmt.Errorf("mpsa: group %s: %d Sender-ID bits, at most %d", c.Name, c.SenderIDBits, MaxSenderIDBits)
	}
	if c.NonceLen < MinNonceLen || c.NonceLen > MaxNonceLen {
		return fmt.Errorf("mpsa: group %s: nonce length %d, want %d to %d", c.Name, c.NonceLen, MinNonceLen, MaxNonceLen)
	}
	for _, d := range []time.Duration{c.Lifetime, c.RekeyMargin, c.Roll1, c.Roll2} {
		if d < 0 || d%time.Second != 0 || d/time.Second > math.MaxUint32 {
			return fmt.Errorf("mpsa: group %s: %v is not a whole number of seconds that fits 32 bits", c.Name, d)
		}
	}
	if !(c.Roll1 <= c.Roll2 && c.Roll2 < c.RekeyMargin && c.RekeyMargin < c.Lifetime) {
		return fmt.Errorf("mpsa: group %s: want roll1 (%v) ≤ roll2 (%v) < rekey margin (%v) < lifetime (%v)",
			c.Name, c.Roll1, c.Roll2, c.RekeyMargin, c.Lifetime)
	}
	return nil
}

// keyParams are what an epoch's keys depend on: when a group's config
// changes them, the hub rolls the group over to a new epoch.
type keyParams struct {
	suite        transform.ESP
	prf          transform.PRF
	senderIDBits uint8
}

func (c *GroupConfig) keyParams() keyParams {
	return keyParams{suite: c.Suite, prf: c.PRF, senderIDBits: c.SenderIDBits}
}
