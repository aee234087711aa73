// Package cpe is the mpsa CPE daemon as a library: New builds a CPE from its
// configuration, Run brings it up and keeps it up until its context ends,
// Close stops it. cmd/mpsa-cpe is a thin main around it; tests run several
// CPEs in one process, each in its own network namespace (WithNetns).
//
// # What a CPE does
//
//   - It picks its data plane (configs.BackendAuto: the kernel's XFRM when
//     the kernel can install ESP states, dataplane/xfrm.Probe, else the
//     userspace TUN backend with buffer pools sized for a router,
//     DefaultUserspaceBuffers), turns IP forwarding on and shares one
//     routing FIB between the data plane and the BGP speaker. Each IKE
//     engine gets its own conn on the userspace backend's NAT-T sockets
//     (Dataplane.NATT), which reports the local address of every datagram.
//   - It initiates IKEv2 to the hub's addresses in the order configured,
//     with the MPSA Vendor ID and the Sender-ID capability notify, asking
//     for an overlay address (CP) and a CHILD_SA between that address and
//     the hub's overlay address, which it learns from the hub's narrowed TSr.
//     It reconnects with exponential backoff and jitter (configs' reconnect
//     bounds). The CHILD_SA goes into the data plane, and the FIB gets a
//     static route hub overlay → CHILD_SA tunnel, endpoint the hub's outer
//     address.
//   - MPSA_PUT notifies go to an mpsa.Member; its group SAs and the CHILD_SA
//     are given to Backend.Set as one dataplane.State. The Member's rollover
//     steps run at its NextDeadline. The group SA outlives the IKE SA: CPE-to-
//     CPE traffic does not need the hub.
//   - The iBGP speaker (bgp/speaker) dials the hub's overlay address from
//     the CPE's overlay address, inside the CHILD_SA, advertises the LAN
//     prefixes with the CPE's ESP endpoint (WAN address, and port 4500 for
//     ESP-in-UDP or 0 for raw ESP) and feeds learned routes into the FIB with
//     the group SA's tunnel. When the IKE SA to the hub is lost the BGP
//     connection is closed without a NOTIFICATION, so graceful restart keeps
//     the learned routes (stale) and CPE-to-CPE traffic flows on while the hub
//     restarts.
//   - WAN address changes (DHCP renew, failover) are seen through netlink:
//     when the address the IKE SA uses is gone, or the route to the hub now
//     leaves from another one, the CPE moves the IKE SA with MOBIKE
//     (UPDATE_SA_ADDRESSES, RFC 4555) and advertises its new endpoint, so the
//     other CPEs switch within a BGP update.
//   - Reload (or ReloadFrom, on SIGHUP) applies a new configuration: changed LAN prefixes are
//     re-advertised; changed hubs or hub identity reconnect; a changed identity
//     or credentials rebuild the IKE engine and reconnect; changed BGP
//     settings restart the speaker; metrics and status listeners follow their
//     settings. Data plane and WAN encapsulation changes need a restart.
//   - Operations: a status socket (internal/ops) with the views sas, mpsa,
//     bgp and routes; a Prometheus text endpoint (metrics.go) that needs
//     neither net/http nor the Prometheus client, for the CPE's size budget;
//     optional key export (key_export) of IKE SAs, CHILD_SAs and group SAs
//     in Wireshark's tables.
//   - Routes learned over BGP inside the CPE's own LAN prefixes are refused
//     (they would pull the LAN's traffic into the tunnel); a route whose
//     NEXT_HOP is of the other family than its prefix (IPv6 over an IPv4
//     underlay) is installed by its Tunnel Encapsulation endpoint.
//
// # State and concurrency
//
// Run starts these goroutines, each stopped by Run before it returns:
// routineMain applies every change to the data plane, the FIB route to the
// hub, the overlay addresses and the speaker ("reconcile": compute what
// should be installed from the current state, install what differs);
// routineIKE connects and reconnects; routineWAN follows netlink address
// updates; the speaker's Run; the userspace backend's FollowRoutes; the status
// and metrics listeners. IKE events, MPSA_PUT notifies and WAN changes update
// the state under CPE.mu and wake routineMain.
//
// There is no package-level mutable state: two CPEs can share a process.
package cpe
