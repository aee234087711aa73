// Package ikeheap measures the heap an established IKE SA costs the
// responder (issue 2: at most 8 KiB per SA at 10,000 SAs).
//
// The responder is package ikerate's (package ike as the hub uses it: PSK,
// an IPv4 and an IPv6 virtual IP and one CHILD_SA per IKE SA, MOBIKE and
// fragmentation offered) and runs in the benchmark's process; the
// simulated CPEs (ike.Managers as initiators, each on its own loopback UDP
// sockets) run in a child process, so the runtime.MemStats taken after a
// GC before and after establishing them hold only the responder's memory:
//
//	go test -run '^$' -bench ResponderHeap -benchtime 1x ./bench/ike-heap
//
// It reports live heap bytes per SA (heap-B/sa), goroutine stack bytes per
// SA (stack-B/sa, separately) and goroutines per SA. -ikeheap.sas changes
// the number of SAs, -ikeheap.ike the suite, -ikeheap.memprofile writes a heap profile (every
// allocation sampled) of the established state.
package ikeheap
