// Package lab builds an mpsa network out of Linux network namespaces and
// runs the real daemons in it: mpsa-lab (cmd/mpsa-lab) and the end-to-end
// tests (tests/e2e) are its two users.
//
// # Topology
//
//	lan1 ── cpe1 ─┐
//	lan2 ── cpe2 ─┼── sw (bridge br0) ── hub
//	lan3 ── cpe3 ─┘
//
// Every node is a namespace named Prefix + lab name + "-" + node
// ("mpsalab-default-cpe2"), so Sweep finds everything a lab made even after
// a crash. The underlay is one Ethernet segment (a bridge in its own
// namespace; nothing is attached to the host's namespaces), IPv4 192.0.2.0/24
// or IPv6 2001:db8::/64: the hub is .254 (2001:db8::254), CPE i is .i
// (2001:db8::i). Each CPE has a LAN link lan0 to its LAN host: 10.i.0.0/24
// and, unless IPv4-only, fd01:i::/64 (router .1/::1, host .2/::2, the
// host's default routes through the CPE).
//
// # Daemons
//
// The lab writes the hub's and every CPE's configuration (mode 0600, random
// PSKs, or certificates from a lab CA) into its directory and starts
// `ip netns exec NS mpsa-hub -config FILE` and the CPEs likewise, in their
// own sessions, logging JSON to NAME.log. Their status sockets are in the
// lab directory, so the lab (and `mpsa-hub status -socket`) reads the
// daemons' views from the host. State (nodes, PIDs, credentials' paths) is
// kept in lab.json so that `mpsa-lab status` and `mpsa-lab down` work from
// another process; Sweep needs nothing but the namespace names.
//
// # Checks
//
// Nothing waits for a fixed time: WaitConverged polls the status views of
// the hub and the CPEs until every expected CPE holds the hub's current
// group SA, its BGP session is up and it has routes to exactly the other
// CPEs' LAN prefixes with their WAN addresses as ESP endpoints, or the
// context ends (the error then says what was still missing). Pings are
// ICMP echo requests sent from a LAN host's namespace (Pinger) with per
// sequence number accounting. Captures are AF_PACKET sockets on a node's
// link (Capture) that classify IKE and ESP (raw or UDP-encapsulated) and can
// be written as pcap files for tshark; Directness uses them to show that
// CPE-to-CPE ESP never crosses the hub's link.
//
// Everything here needs root; Check says clearly what is missing.
package lab
