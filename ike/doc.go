// Package ike is the IKEv2 engine (RFC 7296) of the hub and the CPE: an SA
// manager that runs many IKE SAs concurrently on shared UDP sockets, as
// initiator and responder, with the exchanges as small tasks after
// strongSwan's design, and the hooks the daemons and package mpsa build on.
//
// # Using it
//
//	m, err := ike.New(ike.Config{
//		Local: auth.Local{ID: auth.MustParseID("fqdn:hub.example.net"), Signer: key, Certs: chain},
//		Peers: lookupCPE,                      // identity -> credentials; unknown identities are refused
//		Policy: ike.Policy{AssignAddresses: pool.Assign, ReleaseAddresses: pool.Release, ...},
//		Events: func(ev ike.Event) { ... },   // CHILD_SA keys for the data plane, in order
//	})
//	m.AddConn(conn500, false)  // ike.ListenUDP or a backend's conn
//	m.AddConn(conn4500, true)  // NAT-T: the manager adds/strips the non-ESP marker
//	sa, err := m.Initiate(ctx, ike.Connection{Remote: hubs, RemoteID: hubID, VirtualIPs: any4})
//	err = sa.SendInformational(ctx, notifies)  // returns when the peer answered
//	m.SAs()                                    // snapshots for a status view
//	sa.Close(ctx)                              // INFORMATIONAL DELETE
//
// API summary:
//   - New, (*Manager).AddConn, Close, Shutdown; ListenUDP for sockets with
//     packet info (one wildcard socket serves every local address, and
//     looks up the source address towards a peer: SourceAddrConn).
//   - (*Manager).Initiate(ctx, Connection) establishes an IKE SA with its
//     first CHILD_SA to the first of Connection.Remote that answers.
//   - *SA is a handle that survives IKE rekeying: Info, Done, Err, Close,
//     SendInformational (and SendInformationalAsync, which calls back
//     instead of blocking), RekeyIKE, RekeyChild, CreateChild, DeleteChild,
//     UpdateAddresses (MOBIKE).
//   - Config.Policy hooks: AssignAddresses/ReleaseAddresses (CP virtual
//     IPs), NarrowTS (responder traffic selectors; NarrowDefault otherwise),
//     Authorize, VendorIDs (sent in IKE_SA_INIT; the peer's are in
//     SAInfo.PeerVendorIDs), AuthNotifies (extra notifies in IKE_AUTH; the
//     peer's are in SAInfo.PeerAuthNotifies), Informational (notifies of
//     INFORMATIONAL requests; the engine answers with an empty SK{}).
//   - Events (EventIKEUp, EventIKERekeyed, EventIKEAddressChanged,
//     EventIKEDown, EventChildUp, EventChildRekeyed, EventChildDown) go to
//     Config.Events from one goroutine, in order, through a queue, so the
//     engine never waits for the consumer. CHILD_SA events carry esp.Keys for
//     both directions, SPIs, traffic selectors, outer addresses and whether
//     ESP is UDP-encapsulated; the receiver owns the keys and wipes them.
//   - (*Manager).Stats counts every dropped datagram by reason.
//
// # Inside
//
// One serial executor per handle owns all its state (sa.go): received
// datagrams, timer ticks and API calls are queued as closures and run by at
// most one goroutine at a time: one of the manager's workers takes the SA
// while it has work (a few idle workers wait for the next SA; a new one
// starts when none is free), so an idle SA costs no goroutine and one
// timer. The reader goroutine of each
// socket decodes only the header, looks the SA up by our SPI and queues the
// datagram; new IKE_SA_INIT requests are checked statelessly first (rules,
// COOKIE above Config.CookieThreshold half-open SAs, proposal, KE group)
// and answered before any state exists, rate limited (Config.UnauthReplyRate)
// so the responder cannot be used as an amplifier. Nothing else is sent to a
// peer that has not authenticated.
//
// Exchanges this side starts are tasks (task_*.go) run one at a time
// (window size 1): IKE_SA_INIT (COOKIE and INVALID_KE_PAYLOAD retries),
// IKE_AUTH with the first CHILD_SA (CP, TS narrowing), CREATE_CHILD_SA for
// new and rekeyed CHILD_SAs (optional PFS) and IKE rekeying, INFORMATIONAL
// for deletes, liveness checks, notifies and MOBIKE. Requests are
// retransmitted after RetransmitTimeout × RetransmitBase^n (strongSwan's
// 4 s × 1.8^n, 5 tries) and the SA is given up after the last one. The
// responder answers retransmitted requests from a cache keyed by message ID
// and request hash. Rekey collisions follow RFC 7296 §2.8.1/§2.8.2 (the
// SA made with the lowest nonce is deleted by its creator) and §2.25.
//
// NAT-T (RFC 7296 §2.23, RFC 3948): NAT_DETECTION_* in IKE_SA_INIT, hashed
// from the real local address (the destination of each datagram where the
// socket tells it, else the kernel's source address where the socket can
// look it up; never the wildcard: an address nobody can tell yields no
// NAT_DETECTION_SOURCE_IP and no claim to be behind a NAT), float
// to the NAT-T port, keepalives from behind a NAT, addresses followed on
// authenticated messages; MOBIKE (RFC 4555) UPDATE_SA_ADDRESSES moves an
// initiator to a new address; IKE fragmentation (RFC 7383) when both sides
// announce it. Time and randomness come from Config.Clock and Config.Rand so
// tests step them (package iketest has a manual clock and an in-memory
// network).
//
// Key material stays inside the SA and is wiped when it dies; CHILD_SA keys
// are handed over in events and not kept. Nothing here logs keys.
package ike
