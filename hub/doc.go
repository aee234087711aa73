// Package hub is mpsa-hub as a library: the IKEv2 responder the CPEs
// authenticate to, the MPSA group key server (package mpsa), the BGP route
// reflector (package bgp) and the data plane of the CPEs' CHILD_SAs, wired
// together. cmd/mpsa-hub is a thin main around it.
//
//	h, err := hub.New(cfg, logger)          // cfg from configs/viperconf
//	go h.Run(ctx)                           // until ctx ends or Close
//	diff, err := h.ReloadFrom(reloader)     // on SIGHUP
//	h.SAs(), h.Groups(), h.CPEs()           // status views
//	h.Rekey("acme")                         // roll a group over now
//
// Tests build hubs with options instead of configuration for what they need
// to control: the data plane (WithDataplane, e.g. dataplane/memory), clocks
// (WithClock, WithIKEClock), randomness (WithRand), free ports on loopback
// (WithIKEPorts, WithBGPPort, WithGRPC) and BGP at all (WithoutBGP). There is
// no package-level state: several hubs run side by side in one test binary.
// Changed announces every change of state, so tests wait on it.
//
// # A CPE's life
//
//  1. IKE_SA_INIT: the hub sends the MPSA Vendor ID ("multi-point SA").
//  2. IKE_AUTH: the identity lookup finds the CPE in the provisioning and
//     returns its PSK, or the hub's CA for a certificate CPE; an unknown
//     identity, a wrong PSK or an expired certificate is refused with
//     AUTHENTICATION_FAILED and a log line, and nothing is kept. The CPE's
//     CP request gets its overlay address: pinned in the configuration, or
//     leased from its group's pool and stored (state_dir/leases.db, 0600),
//     so it keeps it across reconnects and hub restarts. Its CHILD_SA is
//     narrowed to (its overlay addresses ↔ the hub's overlay addresses in
//     its group).
//  3. The CHILD_SA goes into the data plane (inbound and outbound SA, Peer =
//     the CPE's outer address, port 4500 when ESP is UDP-encapsulated), and
//     the FIB routes the CPE's overlay addresses into its tunnel. The hub's
//     own overlay addresses are on the data plane's device.
//  4. The key server sends the group SA in MPSA_PUT (INFORMATIONAL) and
//     counts the empty SK{} answer as the acknowledgement; it rekeys each
//     group before LIFE ends and retries until the CPE answers or its IKE SA
//     dies. Its state (state_dir/groups.db, 0600) survives restarts: a
//     restarted hub sends the CPEs the SA they already hold.
//  5. The route reflector (bgp/rr: a GoBGP instance per group on the hub's
//     overlay addresses, port 179) is told the CPE is up, with its overlay
//     address (IPv4 if it has one: its iBGP session must come from it), the
//     ESP endpoint the hub enforces (its IKE SA's outer address, with the
//     port when ESP is UDP-encapsulated) and the prefixes it may advertise;
//     its routes are withdrawn when its last IKE SA goes.
//
// # Restarts
//
// Nothing a CPE needs is lost when the hub stops or dies: the group SAs
// (groups.db) and the overlay leases (leases.db) are stored, so the restarted
// hub hands out the same SA and addresses and the CPEs' data planes do not
// change. The lease store also marks which CPEs were connected; after a
// restart each group with such CPEs starts its route reflector as a
// restarting speaker (RFC 4724) with those CPEs registered, so the CPEs keep
// the routes they learned and the hub sends its table only once all of them
// are back (or after the deferral time); CPEs of the last run that do not
// come back are withdrawn after that. A hub that stops (SIGTERM) deletes
// the CPEs' IKE SAs and ends BGP with Cease / Administrative Reset, which
// the CPEs treat as a graceful restart.
//
// A reload (SIGHUP) applies the configuration's diff without touching the
// other CPEs: see Reload.
//
// # Data plane
//
// dataplane.backend auto picks XFRM when the kernel can do ESP, else the
// userspace backend. With userspace the hub's overlay addresses are on its
// TUN, the backend owns the NAT-T port and lends IKE its conn, and raw ESP
// sockets receive from CPEs that are not behind a NAT. With XFRM the hub
// makes a dummy interface of the configured name for its overlay addresses
// and opens the NAT-T port itself with UDP_ENCAP_ESPINUDP. The desired State
// is rebuilt after every change by one goroutine, so a burst of changes
// (thousands of CPEs reconnecting) costs one Set.
//
// # Operations
//
// `mpsa-hub status [sas|groups|cpes|bgp|routes]` reads the views through the
// status socket (internal/ops); Prometheus metrics (mpsa_hub_*: IKE SAs and
// drops by reason, rekeys, the MPSA_PUT acknowledgement latency histogram,
// the share of connected CPEs on the current group SA, BGP sessions, routes
// and filtered announcements, data plane packets and drops by reason) are
// served on metrics.listen. bgp.grpc_listen serves the first group's GoBGP
// API for the stock gobgp CLI; at start the n-th group's is n-1 ports above
// it, a group a reload adds takes the lowest free port from there (running
// groups keep theirs); `status bgp` lists them. `mpsa-hub rekey GROUP` (the
// status socket's rekey command, Rekey) rolls a group over now.
// key_export writes Wireshark's ikev2_decryption_table and esp_sa (0600).
// hub/README.md is the operator's guide.
package hub
