#!/bin/sh
# VM workload: runs every Go test binary in /payload (*.test, built with
# CGO_ENABLED=0 go test -c) verbosely, with MPSA_VM=1 (tests gated on a kernel with
# ESP run) and MPSA_REQUIRE_ALL=1 (a skip is a failure). The arguments go to every
# binary (e.g. -test.run=TestKernel). Each binary's output goes to the console and to
# /results/NAME.txt. Exit status: 0 only if every binary passed.
export MPSA_VM=1 MPSA_REQUIRE_ALL=1
rc=0; n=0
for t in /payload/*.test; do
  [ -x "$t" ] || continue
  n=$((n+1)); name=$(basename "$t" .test)
  echo "=== $name $*"
  "$t" -test.v -test.count=1 -test.timeout=20m "$@" > "/results/$name.txt" 2>&1; r=$?
  cat "/results/$name.txt"
  echo "=== $name exit $r"
  [ $r = 0 ] || rc=$r
done
[ $n -gt 0 ] || { echo "workload: no /payload/*.test"; exit 1; }
exit $rc
