#!/bin/bash
# Run the Go tests that need a kernel with ESP (XFRM) inside a QEMU guest that boots
# Debian's own kernel (linux-image-amd64), for hosts whose kernel lacks ESP. This is the
# CI entry point of the VM harness; `go test ./dataplane/xfrm` runs it too (TestVM).
#
# Usage: tests/vm/run.sh [-p "PKG..."] [-r REGEX] [-t TIMEOUT_S] [-q] [-k]
#   -p  Go packages whose test binaries run in the guest (default: ./dataplane/xfrm)
#   -r  -test.run pattern for every binary (no spaces; default: all tests)
#   -t  seconds before the guest is killed (default 900)
#   -q  do not echo the guest's console (it is always in the log)
#   -k  keep the work directory (console log, test output) even when everything passed
# Installs what is missing (apt-get, as root): qemu-system-x86 linux-image-amd64
# busybox-static cpio kmod python3 iproute2. The vmlinux extracted from the kernel image
# is cached in $MPSA_VM_CACHE (default tests/vm/build/cache).
# Exit status: 0 only if every test binary passed in the guest; 124 the guest timed out;
# 125 it crashed (see the console log, whose path is printed).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PKGS="./dataplane/xfrm" RUN="" TMO=900 QUIET="" KEEP=0
while getopts "p:r:t:qkh" opt; do
  case $opt in
    p) PKGS=$OPTARG ;; r) RUN=$OPTARG ;; t) TMO=$OPTARG ;; q) QUIET=-q ;; k) KEEP=1 ;;
    *) sed -n '2,18p' "$0"; exit 2 ;;
  esac
done

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
"$HERE/kver.sh" >/dev/null 2>&1 || need+=(linux-image-amd64)
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || need+=(kmod)
command -v python3 >/dev/null || need+=(python3)
[ -x /usr/sbin/ip ] || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "run.sh: missing ${need[*]} (install them as root)" >&2; exit 1; fi
  echo "run.sh: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2; }
fi
command -v go >/dev/null || { echo "run.sh: Go not found" >&2; exit 1; }

WORK=$(mktemp -d /tmp/mpsa-vm.XXXXXX)
mkdir -p "$WORK/payload" "$WORK/results"
for pkg in $PKGS; do
  name=$(basename "$pkg")
  (cd "$ROOT" && CGO_ENABLED=0 go test -c -trimpath -o "$WORK/payload/$name.test" "$pkg")
done
"$HERE/mkinitramfs.sh" -w "$HERE/workload.sh" -p "$WORK/payload" -o "$WORK/initrd.cpio.gz"
set +e
"$HERE/runvm.sh" -i "$WORK/initrd.cpio.gz" -l "$WORK/console.log" -c "${MPSA_VM_CACHE:-$HERE/build/cache}" \
  -r "$WORK/results" -t "$TMO" ${RUN:+-a "-test.run=$RUN"} $QUIET
rc=$?
set -e
echo "--- results"
grep -ahE '^(--- (PASS|FAIL|SKIP)|ok |FAIL|PASS$|panic:)' "$WORK"/results/*.txt 2>/dev/null || true
if [ $rc = 0 ] && [ $KEEP = 0 ]; then
  rm -rf "$WORK"
  echo "run.sh: every test passed in the VM"
elif [ $rc = 0 ]; then
  echo "run.sh: every test passed in the VM; output in $WORK"
else
  rm -rf "$WORK/payload" "$WORK/initrd.cpio.gz"
  echo "run.sh: FAILED (exit $rc); console log: $WORK/console.log" >&2
fi
exit $rc
