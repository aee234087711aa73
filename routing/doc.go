// Package routing is the forwarding information base: for a destination
// address it answers where the packet goes, by longest-prefix match and
// recursive next-hop resolution to an ESP endpoint (draft-yamaya-ipsecme-mpsa
// §4.1, RFC 5565's softwire mesh model). Both data plane backends ask it.
package routing
