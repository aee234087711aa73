// Package auth implements IKEv2 authentication (RFC 7296 §2.15): identities
// (IDi/IDr) and their configuration syntax, the octets AUTH covers, PSK
// authentication, RFC 7427 Digital Signature authentication and the legacy
// RSA and ECDSA methods, SIGNATURE_HASH_ALGORITHMS, X.509 chain validation
// against a configured CA pool with the identity bound to the certificate,
// CERTREQ CA key hashes, an identity-to-credential lookup hook, and loading of
// PSKs, keys and certificates from files.
//
// # Identity syntax
//
// ParseID reads an identity from configuration as TYPE:VALUE:
//
//	fqdn:cpe1.example.net          ID_FQDN
//	rfc822:ops@example.net         ID_RFC822_ADDR (also "email:")
//	ipv4:192.0.2.1                 ID_IPV4_ADDR
//	ipv6:2001:db8::1               ID_IPV6_ADDR
//	dn:CN=cpe1,O=Acme              ID_DER_ASN1_DN
//	keyid:0a1b2c3d                 ID_KEY_ID, hex (colons allowed: 0a:1b:2c)
//
// Without a known TYPE: prefix the type is guessed as strongSwan does: an IP
// address is ipv4/ipv6, a value with '=' is a DN, one with '@' is rfc822,
// anything else is fqdn. ID.String prints the prefixed form, which parses back
// to an equal ID.
//
// A DN lists its RDNs in the order of the certificate's DER encoding, the
// order `openssl x509 -subject` and strongSwan print (not RFC 4514's
// reversed order). Attribute names: C, ST, L, O, OU, CN, SN, GN, T,
// SERIALNUMBER, STREET, DC, UID, E (emailAddress), or a dotted OID. Values are
// separated by ',' (or ';'), multi-valued RDNs by '+'; '\' escapes a special
// character or introduces two hex digits; '#' followed by hex is a DER value.
//
// Patterns (ParsePattern) select peers in configuration: "any", an exact
// identity, or a wildcard: fqdn:*.example.net, rfc822:*@example.net,
// ipv4:192.0.2.0/24, ipv6:2001:db8::/32, dn:O=Acme,CN=* ('*' as a whole RDN
// value matches any value of that attribute).
package auth
