//go:build linux

package xfrm

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/routing"
)

// TestEngineAgainstCompute drives the incremental engine and the whole
// computation (compute, the reference) with the same random FIB changes,
// SA sets and endpoint changes, and checks after every step that the
// engine's plan is exactly the reference's diff from what is installed,
// and that both report the same problems.
func TestEngineAgainstCompute(t *testing.T) {
	// Nested prefixes so that bypass prefixes are covered and uncovered
	// as their parents come and go; both families; tunnels 1 (group) and
	// 2 (CHILD_SA), 3 (no SA); endpoints of both families, one of them
	// this node's.
	prefixes := []netip.Prefix{
		pf("0.0.0.0/0"), pf("10.0.0.0/8"), pf("10.1.0.0/16"), pf("10.1.2.0/24"), pf("10.1.2.128/25"),
		pf("10.2.0.0/24"), pf("10.3.0.0/24"), pf("100.64.0.1/32"), pf("192.0.2.0/24"),
		pf("::/0"), pf("fd00::/16"), pf("fd00:1::/32"), pf("fd00:1:2::/48"), pf("fd00:1:2:3::/64"), pf("fd00:9::/32"),
	}
	endpoints := []string{"192.0.2.2:4500", "192.0.2.2:0", "192.0.2.3:0", "192.0.2.1:4500", "[2001:db8::2]:4500", "[2001:db8::3]:0", ""}
	nextHop := func(r *rand.Rand) routing.NextHop {
		switch r.IntN(6) {
		case 0:
			return routing.NextHop{Local: true}
		case 1:
			return routing.NextHop{} // underlay
		}
		var nh routing.NextHop
		if ep := endpoints[r.IntN(len(endpoints))]; ep != "" {
			nh.Endpoint = ap(ep)
		}
		nh.Tunnel = routing.Tunnel(1 + r.IntN(3))
		return nh
	}
	group1, group2 := testKeys(0x1001, suiteCBC, 0x10), testKeys(0x1002, suiteCBC, 0x50)
	hub := ap("192.0.2.100:4500")
	child := []dataplane.SA{
		{Keys: testKeys(0xc2000001, suiteGCM, 0x20), Dir: dataplane.In, Tunnel: 2, Peer: hub, ReplayWindow: 64},
		{Keys: testKeys(0xc2000002, suiteGCM, 0x30), Dir: dataplane.Out, Tunnel: 2, Peer: hub},
	}
	saSets := [][]dataplane.SA{
		nil,
		{{Keys: group1, Dir: dataplane.Both, Tunnel: 1}},
		append([]dataplane.SA{{Keys: group1, Dir: dataplane.Both, Tunnel: 1}}, child...),
		append([]dataplane.SA{{Keys: group1, Dir: dataplane.Both, Tunnel: 1}, {Keys: group2, Dir: dataplane.In, Tunnel: 1}}, child...),
		append([]dataplane.SA{{Keys: group1, Dir: dataplane.In, Tunnel: 1}, {Keys: group2, Dir: dataplane.Both, Tunnel: 1}}, child...),
		{{Keys: group2, Dir: dataplane.In, Tunnel: 1}},
		child,
	}
	endpointSets := [][]netip.AddrPort{
		{ap("192.0.2.1:4500"), ap("[2001:db8::1]:4500")},
		{ap("192.0.2.1:4500")},
		{ap("192.0.2.11:4500"), ap("[2001:db8::1]:0")},
		{ap("[2001:db8::1]:4500")},
		{ap("[2001:db8::1]:4500"), ap("192.0.2.1:4500")}, // this node's address becomes an endpoint
		nil,
	}
	bypass := []netip.Prefix{pf("10.1.2.0/24"), pf("fd00:1:2:3::/64"), pf("10.9.0.0/16")}

	for seed := range uint64(30) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			e := newEngine(bypass)
			have := newInstalled()
			ids := newReqids(0x100, 16)
			routes := make(map[netip.Prefix]routing.NextHop)
			sas, eps := saSets[2], endpointSets[0]
			for step := range 300 {
				var what string
				switch k := r.IntN(20); {
				case k == 0:
					sas = saSets[r.IntN(len(saSets))]
					e.changeSAs()
					what = "SAs"
				case k == 1:
					eps = endpointSets[r.IntN(len(endpointSets))]
					e.changeSAs()
					what = "endpoints"
				case k == 2:
					// A snapshot: the whole FIB again, some of it changed.
					u := routing.Update{Snapshot: true}
					for _, p := range prefixes {
						if r.IntN(2) == 0 {
							nh := nextHop(r)
							u.Changes = append(u.Changes, routing.Change{Prefix: p, Kind: routing.Added, NextHops: []routing.NextHop{nh}})
						}
					}
					clear(routes)
					for _, c := range u.Changes {
						routes[c.Prefix] = c.NextHops[0]
					}
					e.update(u)
					what = "snapshot"
				default:
					var u routing.Update
					for range 1 + r.IntN(4) {
						p := prefixes[r.IntN(len(prefixes))]
						if r.IntN(3) == 0 {
							u.Changes = append(u.Changes, routing.Change{Prefix: p, Kind: routing.Removed})
							delete(routes, p)
							continue
						}
						nh := nextHop(r)
						u.Changes = append(u.Changes, routing.Change{Prefix: p, Kind: routing.Added, NextHops: []routing.NextHop{nh}})
						routes[p] = nh
					}
					e.update(u)
					what = "routes"
				}
				in := testInputs(sas, maps.Clone(routes))
				in.endpoints, in.bypass = eps, bypass
				in.reqids = ids.clone()
				want, werr := compute(in)
				in2 := testInputs(sas, nil)
				in2.endpoints, in2.bypass = eps, bypass
				in2.reqids = ids.clone()
				p, err := e.reconcile(in2, have)
				if (err == nil) != (werr == nil) {
					t.Fatalf("step %d (%s): engine error %v, reference error %v", step, what, err, werr)
				}
				if err != nil {
					continue
				}
				ids = in2.reqids
				wantPlan := diff(have, want)
				gotText, _ := renderPlan(p)
				wantText, _ := renderPlan(wantPlan)
				if gotText != wantText {
					t.Fatalf("step %d (%s): engine plan\n%s\nreference plan\n%s", step, what, gotText, wantText)
				}
				applyPlan(have, p)
				if n, top := e.report(); n != want.nproblems || strings.Join(top, "\n") != strings.Join(want.problems, "\n") {
					t.Fatalf("step %d (%s): engine reports %d problems:\n%s\nreference %d:\n%s", step, what,
						n, strings.Join(top, "\n"), want.nproblems, strings.Join(want.problems, "\n"))
				}
				if e.problemCount() != want.nproblems {
					t.Fatalf("step %d: problemCount %d, want %d", step, e.problemCount(), want.nproblems)
				}
			}
		})
	}
}

// TestEngineRetry: what the kernel refused is tried again in the next
// round, and a round after lost track of the kernel removes strays.
func TestEngineRetry(t *testing.T) {
	sas := []dataplane.SA{{Keys: testKeys(0x1001, suiteCBC, 0x10), Dir: dataplane.Both, Tunnel: 1}}
	e := newEngine(nil)
	e.update(routing.Update{Snapshot: true, Changes: []routing.Change{
		{Prefix: pf("10.2.0.0/24"), Kind: routing.Added, NextHops: []routing.NextHop{nh("192.0.2.2:4500", 1)}},
		{Prefix: pf("10.3.0.0/24"), Kind: routing.Added, NextHops: []routing.NextHop{nh("192.0.2.2:4500", 1)}},
	}})
	have := newInstalled()
	in := testInputs(sas, nil)
	p, err := e.reconcile(in, have)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel refused the out policy of 10.3.0.0/24 and the state
	// towards 192.0.2.2.
	refused := policyID{dirOut, anyPrefix(true), pf("10.3.0.0/24")}
	refusedState := stateID{ad("192.0.2.2"), 0x1001}
	for i, s := range p.addStates {
		if s.stateID == refusedState {
			p.addStates = append(p.addStates[:i:i], p.addStates[i+1:]...)
			break
		}
	}
	var failed []netip.Prefix
	for _, pol := range p.policies {
		if pol.policyID == refused {
			failed = append(failed, pf("10.3.0.0/24"))
			continue
		}
		have.policies[pol.policyID] = pol.pval
	}
	p.policies = nil
	applyPlan(have, p)
	e.retry(failed, false, true)
	p, err = e.reconcile(in, have)
	if err != nil {
		t.Fatal(err)
	}
	if text, _ := renderPlan(p); text != `+state spi 0x00001001 src 192.0.2.1 dst 192.0.2.2 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
+policy out src 0.0.0.0/0 dst 10.3.0.0/24 prio 1008 tmpl src 192.0.2.1 dst 192.0.2.2 reqid 0x100
` {
		t.Fatalf("retry plan:\n%s", text)
	}
	applyPlan(have, p)
	// A stray policy (one a previous run left) goes in a full round.
	stray := policyID{dirOut, pf("10.0.0.0/8"), pf("10.7.0.0/24")}
	have.policies[stray] = pval{prio: 1}
	have.policies[policyID{dirIn, pf("10.8.0.0/24"), anyPrefix(true)}] = pval{prio: 1}
	e.retry(nil, true, false)
	p, err = e.reconcile(in, have)
	if err != nil {
		t.Fatal(err)
	}
	if text, _ := renderPlan(p); text != "-policy in src 10.8.0.0/24 dst 0.0.0.0/0\n-policy out src 10.0.0.0/8 dst 10.7.0.0/24\n" {
		t.Fatalf("full round plan:\n%s", text)
	}
}

// TestEndpointChangePlan: a new IPv4 endpoint (a WAN address change) is
// make-before-break: the inbound state at the new address and the states
// whose source changed come first, policies are replaced in place, the
// inbound state at the old address goes last, and the IPv6 side is left
// alone.
func TestEndpointChangePlan(t *testing.T) {
	sas := []dataplane.SA{
		{Keys: testKeys(0x1001, suiteCBC, 0x10), Dir: dataplane.Both, Tunnel: 1},
		{Keys: testKeys(0xc2000001, suiteGCM, 0x20), Dir: dataplane.In, Tunnel: 2, Peer: ap("192.0.2.100:4500")},
		{Keys: testKeys(0xc2000002, suiteGCM, 0x30), Dir: dataplane.Out, Tunnel: 2, Peer: ap("192.0.2.100:4500")},
	}
	e := newEngine(nil)
	e.update(routing.Update{Snapshot: true, Changes: []routing.Change{
		{Prefix: pf("10.2.0.0/24"), Kind: routing.Added, NextHops: []routing.NextHop{nh("192.0.2.2:4500", 1)}},
		{Prefix: pf("fd00:0:0:2::/64"), Kind: routing.Added, NextHops: []routing.NextHop{nh("[2001:db8::2]:4500", 1)}},
		{Prefix: pf("100.64.0.1/32"), Kind: routing.Added, NextHops: []routing.NextHop{nh("192.0.2.100:4500", 2)}},
	}})
	have := newInstalled()
	in := testInputs(sas, nil)
	p, err := e.reconcile(in, have)
	if err != nil {
		t.Fatal(err)
	}
	applyPlan(have, p)
	e.changeSAs()
	in.endpoints = []netip.AddrPort{ap("192.0.2.51:4500"), ap("[2001:db8::1]:4500")}
	p, err = e.reconcile(in, have)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := renderPlan(p)
	checkGolden(t, "endpoint change", text, `~state spi 0x00001001 src 192.0.2.51 dst 192.0.2.2 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
~state spi 0xc2000002 src 192.0.2.51 dst 192.0.2.100 reqid 0x101 replay 0 aead rfc4106(gcm(aes)) 160 icv 128 encap espinudp 4500 4500 sel any
+state spi 0x00001001 src 0.0.0.0 dst 192.0.2.51 reqid 0x100 replay 0 enc cbc(aes) 128 auth hmac(sha256) 256 trunc 128 encap espinudp 4500 4500 sel any
+state spi 0xc2000001 src 192.0.2.100 dst 192.0.2.51 reqid 0x101 replay 0 aead rfc4106(gcm(aes)) 160 icv 128 encap espinudp 4500 4500 sel any
+policy in src 10.2.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.51 reqid 0x100
+policy in src 100.64.0.1/32 dst 0.0.0.0/0 prio 1000 tmpl src 192.0.2.100 dst 192.0.2.51 reqid 0x101
+policy in src fd00:0:0:2::/64 dst ::/0 prio 1064 tmpl src 0.0.0.0 dst 192.0.2.51 reqid 0x100
+policy out src 0.0.0.0/0 dst 10.2.0.0/24 prio 1008 tmpl src 192.0.2.51 dst 192.0.2.2 reqid 0x100
+policy out src 0.0.0.0/0 dst 100.64.0.1/32 prio 1000 tmpl src 192.0.2.51 dst 192.0.2.100 reqid 0x101
+policy fwd src 10.2.0.0/24 dst 0.0.0.0/0 prio 1008 tmpl src 0.0.0.0 dst 192.0.2.51 reqid 0x100
+policy fwd src 100.64.0.1/32 dst 0.0.0.0/0 prio 1000 tmpl src 192.0.2.100 dst 192.0.2.51 reqid 0x101
+policy fwd src fd00:0:0:2::/64 dst ::/0 prio 1064 tmpl src 0.0.0.0 dst 192.0.2.51 reqid 0x100
-state spi 0x00001001 dst 192.0.2.1
-state spi 0xc2000001 dst 192.0.2.1
`)
}
