package configs

import (
	"strings"

	"github.com/mpsa-vpn/mpsa/ike/auth"
)

// Identity is an IKE identity (IDi/IDr) in ike/auth's representation, so the
// daemons hand it to IKE unchanged. It is written "type:value" in files
// ("fqdn:cpe1.example.net", "dn:CN=cpe1,O=Acme", "ipv4:192.0.2.7",
// "rfc822:ops@example.net", "keyid:0a1b2c"); see auth.ParseID for the
// syntax. The zero value means "not set".
type Identity = auth.ID

// ParseIdentity parses an identity in configuration syntax (auth.ParseID).
func ParseIdentity(s string) (Identity, error) { return auth.ParseID(s) }

// identityDetail strips what the decoder's message already says from an
// ike/auth parse error.
func identityDetail(err error) string {
	s := strings.TrimPrefix(err.Error(), auth.ErrBadID.Error()+": ")
	if i := strings.LastIndex(s, "\": "); i >= 0 && strings.HasPrefix(s, "\"") {
		s = s[i+3:]
	}
	return s
}

// idKey is the identity as compared for uniqueness: FQDN and e-mail
// identities are case-insensitive.
func idKey(id Identity) string {
	k := id.String()
	if id.Type == auth.IDFQDN || id.Type == auth.IDRFC822 {
		k = strings.ToLower(k)
	}
	return k
}
