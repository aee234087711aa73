// Package ikerate is the IKE responder benchmark of issue 2: a responder
// built on the ike engine the way the hub uses it (PSK peers, virtual IPs
// for IPv4 and IPv6 from a pool, one CHILD_SA per IKE SA whose
// installation is discarded), driven by strongSwan's load-tester plugin,
// and compared in the same run with charon as the responder (its SA
// installation faked) under the same load.
//
// The package holds what the scripts and the heap benchmark share: the
// responder (NewResponder), its address pool (Pool), strongSwan proposal
// names (ParseIKE, ParseESP) and the parser of the load-test results
// (ReadResults, Summarize). The programs are in cmd/: ikerate-responder
// (the responder as a process, for run.sh) and ikerate-summary (medians and
// ratios of a results file). run.sh runs both responders alternately
// under strongswan-loadtest.sh; README.md says how.
package ikerate
