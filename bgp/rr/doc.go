// Package rr is the hub's BGP route reflector (draft-yamaya-ipsecme-mpsa
// §4.1 peer discovery): GoBGP v3 embedded as a library, driven by what the
// hub learns from IKE. The hub daemon calls CPEUp when a CPE's IKE SA is up
// (group, overlay address, ESP endpoint seen on the IKE SA, authorised
// prefixes) and CPEDown when it dies; CPEs need no BGP configuration on the
// hub.
//
// # One GoBGP instance per group
//
// Every CPE group (customer VPN) gets its own BgpServer, listening on the
// hub's overlay address(es) in that group. Groups are isolated because they
// share nothing: no RIB, no peers, no policy. Two customers may use the same
// private prefixes. The alternatives were weighed and rejected:
//
//   - one instance with a per-group export policy: one global RIB holds one
//     best path per prefix, so overlapping prefixes of two groups would
//     collide, and GoBGP's export policy for non-route-server peers is only
//     the global one, evaluated per path and per peer;
//   - VPN address families with route targets and RFC 4684: the CPE speaker
//     would need VPNv4/VPNv6 and RT constraint, and GoBGP would still fan out
//     every path of every group from one event loop.
//
// Instances per group also spread work across cores. The cost is one
// listener and, if wanted, one gRPC API per group (GroupConfig.GRPC).
//
// # Access control: the hub re-originates what it validated
//
// GoBGP can attach per-neighbor policy only to route-server clients, and no
// policy condition can look into the Tunnel Encapsulation attribute. So the
// hub does not let GoBGP reflect CPE routes as received:
//
//   - a CPE is a dynamic neighbor of the CPE peer group whose range is its
//     own overlay address (a /32 or /128), added by CPEUp and deleted by
//     CPEDown, so GoBGP accepts a BGP session only from a live CPE's overlay
//     address (connections from anywhere else are closed at once, counted
//     and logged) — not one range over the group's overlay, which would
//     accept any address in it. GoBGP creates the peer only when the CPE
//     connects and drops it when the session ends, so a registered CPE
//     costs GoBGP one range entry until then, not a configured peer with
//     its FSM, timers and peer-group membership. CPEs registered while a
//     restarting group defers (see Restarts) are configured peers instead:
//     GoBGP must tell them it is restarting, and a dynamic neighbor takes
//     the peer group's settings, the same for all;
//   - the global import policy rejects every route received from a CPE
//     (configured peers' routes and the hub's own are accepted);
//   - the hub watches GoBGP's pre-policy Adj-RIB-In events and, for each CPE
//     route, checks that the prefix is one of the CPE's authorised prefixes,
//     or lies within one if the group's RoutePolicy accepts more specifics
//     (else it is dropped, counted and logged), that the CPE stays within
//     the policy's MaxPrefixes (same), and that its ESP
//     endpoint — the Tunnel Egress Endpoint and UDP port, or the NEXT_HOP
//     in the plain RFC 5565 form — is the address and port the hub sees on
//     the CPE's IKE SA; if not, it is rewritten (default; a CPE behind NAT
//     cannot know its public endpoint) or dropped (Config.Endpoint), counted
//     and logged;
//   - the hub then adds its own path for the route (AddPath): the CPE's
//     ORIGIN and MED, the group's LOCAL_PREF (RoutePolicy.LocalPref), ORIGINATOR_ID = the CPE's BGP Identifier,
//     NEXT_HOP = the endpoint address, a Tunnel Encapsulation attribute with
//     the endpoint the hub saw, a path identifier per CPE so two CPEs of one
//     site announcing the same prefix remain two paths, and the CPE's BGP
//     Identifier as the path's source, so GoBGP reflects it (with
//     CLUSTER_LIST) to every client except the CPE that announced it.
//
// This costs the hub O(routes received) work, against the O(routes × CPEs)
// of reflection itself, and nothing else in GoBGP changes.
//
// The route policy changes at run time (Hub.SetRoutePolicy), as do a CPE's
// authorised prefixes (CPEUp again): the hub withdraws what is no longer
// allowed and reads what each CPE sent back from GoBGP's Adj-RIB-In (it
// keeps every route received, before the import policy) to accept what
// now is, without touching the sessions.
//
// CPEDown withdraws the CPE's routes at once and deletes the neighbor. A
// CPE session that drops while its IKE SA lives keeps its routes (marked
// stale) for the restart time the CPE offered, as a GR helper would; when
// the CPE is back, its End-of-RIB sweeps what it did not re-advertise.
//
// # Restarts
//
// A group started with GroupConfig.Restarting acts as a restarting speaker
// (RFC 4724): CPEs keep their routes and forward on them while the hub comes
// back, and the hub sends routes only when every registered CPE has sent
// End-of-RIB (see syncSession). Hub.Close ends sessions with Cease /
// Administrative Reset, which CPEs that negotiated the N bit (RFC 8538)
// treat as graceful.
//
// # The stock gobgp CLI
//
// GroupConfig.GRPC serves GoBGP's own gRPC API, so `gobgp -p PORT neighbor`
// and `gobgp -p PORT global rib -a ipv4` work against a group. In the RIB,
// CPE routes appear as locally originated paths (they are the hub's
// re-originated ones) with the CPE's ORIGINATOR_ID, and their Tunnel
// Encapsulation attribute as type 23 with its octets (see below); `gobgp
// neighbor CPE adj-in` shows what the CPE sent, all marked filtered by the
// import policy.
//
// # Data races inside GoBGP
//
// GoBGP v3.37.0 hands one path, and one NOTIFICATION, to the send loops of
// several peers, which serialize them concurrently; serializing its Tunnel
// Encapsulation types (bgp.go TunnelEncapSubTLV.Serialize) and a message
// (BGPMessage.Serialize, the header length) writes fields, a race the race
// detector reports. The hub avoids both: it hands the attribute over as an
// attribute of a type GoBGP does not decode (same octets; cheaper, see
// BenchmarkPathAttrs), and resets sessions one peer at a time (a NOTIFICATION
// per peer). Routes of configured peers that carry the attribute are
// GoBGP's own objects and can still race when reflected; that is upstream's.
package rr
