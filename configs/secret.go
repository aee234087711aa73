package configs

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
)

// redacted is what every formatting of a Secret prints.
const redacted = "[redacted]"

// Secret holds a pre-shared key. It never prints its value: String,
// GoString, MarshalText and LogValue all give "[redacted]", so a Secret is
// safe inside structs that are logged or formatted with %v. The zero value
// is "no secret".
type Secret struct {
	b []byte
}

// NewSecret returns a Secret holding a copy of b.
func NewSecret(b []byte) Secret { return Secret{b: append([]byte(nil), b...)} }

// ParseSecret decodes a PSK as written in a configuration: "0x" followed by
// hex digits is taken as binary, anything else as the UTF-8 octets of the
// string (strongSwan's convention).
func ParseSecret(s string) (Secret, error) {
	if rest, ok := strings.CutPrefix(s, "0x"); ok {
		b, err := hex.DecodeString(rest)
		if err != nil {
			// Do not wrap err: it quotes the offending character.
			return Secret{}, fmt.Errorf("0x form must be followed by an even number of hex digits")
		}
		return Secret{b: b}, nil
	}
	return Secret{b: []byte(s)}, nil
}

// Bytes returns the secret's octets. The caller must not modify them and
// must not keep them past the configuration's life.
func (s Secret) Bytes() []byte { return s.b }

// Len returns the length of the secret in octets.
func (s Secret) Len() int { return len(s.b) }

// IsZero reports whether no secret is set.
func (s Secret) IsZero() bool { return len(s.b) == 0 }

// Equal compares two secrets in constant time (for equal lengths).
func (s Secret) Equal(o Secret) bool { return subtle.ConstantTimeCompare(s.b, o.b) == 1 }

// Wipe zeroes the secret in place. Every copy of a Secret value shares the
// same octets, so all of them are wiped.
func (s *Secret) Wipe() {
	clear(s.b)
	s.b = nil
}

// String never prints the secret.
func (s Secret) String() string {
	if s.IsZero() {
		return ""
	}
	return redacted
}

// GoString never prints the secret either.
func (s Secret) GoString() string { return "configs.Secret(" + redacted + ")" }

// MarshalText never emits the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a secret as ParseSecret does.
func (s *Secret) UnmarshalText(b []byte) error {
	v, err := ParseSecret(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// LogValue keeps the secret out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
