// Package routing is the forwarding information base: for a destination
// address it answers where the packet goes, by longest-prefix match and
// recursive next-hop resolution to an ESP endpoint (draft-yamaya-ipsecme-mpsa
// §4.1, RFC 5565's softwire mesh model). Both data plane backends ask it.
//
// # Routes and paths
//
// A Route is one path to a prefix, identified by (Prefix, Peer). Upsert adds
// or replaces a path, Withdraw removes one, WithdrawPeer removes all paths of
// a peer whose session went away, and Apply applies a batch (one BGP UPDATE)
// atomically. Invalid routes are refused with a *RouteError naming the
// prefix, and the batch that carried them changes nothing: an unmasked or
// invalid prefix, a next hop of the other address family than the prefix, a
// host route whose next hop is its own address, a route with neither next
// hop nor endpoint. (The Endpoint may be of either family: IPv4 over IPv6
// and back are fine.)
//
// # Resolution
//
// A path resolves to a NextHop:
//   - a connected route delivers locally (NextHop.Local);
//   - a path with an Endpoint (RFC 9012 Tunnel Encapsulation) goes there,
//     with its Tunnel;
//   - a next hop inside a configured Underlay range is itself the endpoint;
//   - otherwise the next hop is looked up again: the longest prefix holding
//     it (a default route counts), whether that prefix resolves or not, is
//     the path's Via, and the path resolves to whatever Via resolves to.
//     There is no fall-back to a shorter prefix when Via does not resolve;
//     the path is then unresolved (ReasonNextHopUnresolved). This keeps the
//     answer independent of the order updates arrive in.
//
// Recursion is bounded (WithMaxDepth, DefaultMaxDepth lookups; deeper paths
// are ReasonTooDeep). A path whose Via leads back, through any chain of
// recursive paths (resolved or not), to the path's own prefix is a loop
// (ReasonLoop): it is never followed, it is reported in Unresolved and
// Routes, and the prefixes caught in it are logged when the loop appears
// and when it goes. A prefix whose next hop lies inside itself with no
// longer prefix covering it is such a loop too. Because loops are decided on
// the next-hop graph alone, a prefix whose only path resolves through a
// loop member is unresolved even if that member resolves by another path.
//
// Next hops are tracked (as in FRR's nexthop tracking): when a prefix that
// next hops resolve through appears, changes or goes away, exactly the paths
// that depend on it are resolved again.
//
// # Best path
//
// Among the resolved paths of a prefix the FIB prefers, in order: the lower
// Source (connected, then static, then BGP); the higher LocalPref; the lower
// Peer address. Unresolved paths are skipped, so a dual-homed site fails over
// when its preferred path stops resolving. With WithMultipath(true), every
// resolved path that ties with the best on Source and LocalPref is used too;
// LookupFlow spreads flows over their next hops (duplicates removed, in
// preference order) by flowHash modulo their number, and Lookup returns the
// best one.
//
// # Concurrency and cost
//
// Lookups are wait-free: the FIB keeps two copies of its bart lookup table
// (Left-Right, see leftright.go); a batch is applied to the copy readers do
// not use, readers are switched over, and the batch is repeated on the
// other copy. A lookup is one bart lookup plus one access to a dense array
// of published next hops. Prefixes that share their only path's attributes
// (the routes of one CPE) share one resolution, so moving an endpoint costs
// one write for the lookups and one change per prefix for subscribers.
//
// # Lookups
//
// Lookup and LookupFlow return the selected next hop of the longest prefix
// holding the destination among the prefixes that resolve; unresolved
// prefixes are not in the forwarding table, so their packets take a shorter
// resolved prefix if there is one. Lookups do not allocate and never wait
// for writers.
//
// # Change feed
//
// Subscribe follows the forwarding entries (resolved prefix → next hops): a
// snapshot first, then batches of Added, Changed and Removed entries, one
// batch per applied update. A slow reader never blocks writers: its backlog
// is coalesced per prefix and, past WithMaxPending entries, replaced by a
// fresh snapshot.
//
// # Status
//
// Routes, Route and Unresolved show every path with its resolution: the
// next hops, the Via prefix and depth, whether it is selected, and why it
// does not resolve.
package routing
