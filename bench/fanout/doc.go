// Package fanout measures the hub's MPSA_PUT fan-out (issue 3): how long a
// group rekey takes until every connected CPE has acknowledged the new group
// SA, for 1,000 and 10,000 CPEs (target: 1 s for 10,000), and the hub's
// heap per connected CPE (IKE SA + MPSA state, BGP aside; target: 16 KiB).
//
// The hub (package hub, its data plane one that validates every State and
// keeps nothing, so a backend's per-SA cipher state is not counted) runs in
// the benchmark's process. The CPEs run in child processes (this test binary
// again, see RunChildIfAsked): each CPE is an ike.Manager initiator with its
// own identity and loopback sockets and an mpsa.Member that checks and
// derives every MPSA_PUT, as mpsa-cpe does; at most MaxCPEsPerChild per
// process, for the file descriptor limit. So runtime.MemStats, read after a
// GC before the CPEs connect and after they all acknowledged the first
// group SA, hold only the hub's memory.
//
// A rekey is started by moving the key server's clock (hub.WithClock) to the
// group SA's rekey time; the key server then generates the next SA and
// sends it to every CPE. The anchor, measured in the same run on the same
// IKE SAs, is the engine's own floor: one empty INFORMATIONAL exchange (a
// liveness check) with every CPE at once. Each is reported with the
// processor time it took in this process (the hub) and in the CPE
// processes (hub-cpu-ms/rekey, cpe-cpu-ms/anchor, ...), which says what the
// hub adds on top of the bare round.
//
//	go test -run '^$' -bench Fanout -benchtime 3x ./bench/fanout
package fanout
