// Package xfrm is the data plane backend that programs the Linux kernel's
// IPsec (XFRM) through netlink (github.com/vishvananda/netlink), never by
// running ip(8). The kernel then does ESP (RFC 4303) in tunnel mode, raw
// (IP protocol 50) or in UDP (RFC 3948), for every packet.
//
// # What is installed
//
// From the daemon's dataplane.State and the FIB's resolved entries
// (prefix → routing.NextHop) the backend computes the XFRM objects it wants
// and brings the kernel to them ("compute desired, diff against installed,
// apply"); the same inputs always give the same objects, so Set and every
// FIB change are idempotent. The computation is incremental: a FIB change
// recomputes the policies of its own prefixes (and of the bypass prefixes
// under them), and the states and the policies of the tunnels and group
// endpoints whose SA-level decisions it changed, so an update costs in
// proportion to what it changes, not to the size of the FIB.
//
//   - An SA installed In becomes one inbound state per local address it is
//     received on: the group SA's at every Config.Endpoints address (its
//     source is the wildcard address: every CPE of the group sends on it),
//     a CHILD_SA's at the local address towards its Peer. The inbound
//     state is UDP-encapsulated exactly when the local endpoint has a port
//     (the kernel drops ESP whose encapsulation differs from the state's).
//   - An SA installed Out becomes one outbound state per remote ESP
//     endpoint, all sharing the SA's SPI and keys, because a tunnel-mode
//     state has a fixed outer destination: for a group SA one state per
//     distinct Endpoint address among the FIB entries of its tunnel, for a
//     CHILD_SA one state towards Peer. An endpoint with a port gets
//     ESP-in-UDP to that port, port 0 raw ESP.
//   - Every FIB entry whose next hop has a tunnel becomes an "out" policy
//     (any source → prefix) whose template leads to the entry's endpoint
//     (the CHILD_SA's Peer for a point-to-point tunnel), and "in" and "fwd"
//     policies (prefix → any destination) whose templates require the
//     tunnel's SAs. A tunnel without an outbound SA, or an endpoint the
//     backend cannot reach, gets a "block" out policy instead: packets are
//     dropped, never sent in clear.
//   - Entries delivered locally or through the underlay (no tunnel), and
//     Config.Bypass prefixes, get "allow" policies without templates in
//     all three directions when a shorter tunnelled prefix covers them.
//
// Policy priorities make the kernel's choice a longest-prefix match: a
// prefix of length L gets Config.PriorityBase + (32 or 128) - L, and the
// kernel prefers the lowest value.
//
// Templates name a tunnel, not an SPI: every tunnel gets a request ID
// (reqid) from the backend's band (Config.ReqIDBase), shared by the
// tunnel's inbound and outbound states and by its policies' templates. An
// inbound template accepts any SA of its tunnel, so an old and a new group
// SA are both accepted during a rollover; an outbound template picks the
// tunnel's state for the endpoint. An MPSA rollover therefore changes
// states only: the new SA's inbound states are added at once, after ROLL1
// its outbound states are added before the old ones are removed (the
// kernel then picks the new ones), and after ROLL2 the old inbound states
// go. An In-only SA keeps its Tunnel for this reason (see dataplane.SA); one
// without a tunnel gets a reqid of its own and is accepted by no policy.
//
// Changes are applied make-before-break: new and changed states first,
// then policies (replaced in place), then stale policies, then stale
// states. SetEndpoints moves this node's own endpoints (a WAN address
// change, a MOBIKE move) the same way: the inbound states at the new
// addresses and the states and policies whose outer source changed are
// installed before the inbound states at the old addresses go, and what
// the move does not concern stays as it is. On Close, and on New for what a previous run left behind, every
// policy in the priority band and every state in the reqid band is
// removed; two backends in one network namespace need distinct bands.
//
// # What the kernel cannot do
//
// The kernel builds its own IVs (seqiv, echainiv), so a group SA with
// Sender-IDs (RFC 6054, dataplane.SA.SenderIDBits) cannot be installed: Set
// returns ErrSenderID and the daemon uses the userspace backend for such a
// group. Replay windows are capped at 32 packets (the kernel's window
// without ESN); a group SA without Sender-IDs runs with replay checking off,
// as everywhere (see package esp). An inbound state has one traffic
// selector: an SA with one remote and one local selector of the same family
// gets it on its inbound states; with more, the tunnel-bound in/fwd
// policies are the check.
//
// The backend installs no routes: the kernel must have a route for a
// tunnelled prefix (a default route will do) for its policy to be looked up.
// IKE's socket on port 4500 needs UDP_ENCAP_ESPINUDP and per-socket bypass
// policies; PrepareIKESocket sets both.
//
// Probe tells whether the running kernel can install ESP states at all, for
// the CPE's choice of backend.
package xfrm
