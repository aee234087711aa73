// Package e2e holds the end-to-end tests of mpsa: each test builds its own
// namespace lab through package lab (an underlay bridge, the hub, CPEs and
// their LAN hosts), runs the real mpsa-hub and mpsa-cpe binaries (built
// with go build into a temporary directory once per run) and checks what a
// carrier would: all-pairs LAN connectivity over IPv4 and IPv6 on either
// underlay with no CPE-to-CPE packet crossing the hub, a CPE added and one
// removed at runtime (the removed one's keys no longer decrypt the group's
// traffic), the hub killed during traffic, rekeys under load, a CPE's WAN
// address changing, and bad credentials refused.
//
// The tests need root (they skip otherwise, and fail under
// MPSA_REQUIRE_ALL=1), iperf3 and tshark:
//
//	sudo go test ./tests/e2e -v
package e2e
