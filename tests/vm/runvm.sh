#!/bin/bash
# Boot Debian's kernel with an initramfs from mkinitramfs.sh in QEMU, write the serial
# console to a log, and exit with the workload's status (from the @@MPSA-VM-EXIT marker).
#
# Usage: runvm.sh -i INITRD -l LOG [-k KVER] [-c CACHE_DIR] [-t TIMEOUT_S] [-m MEM_MB]
#                 [-a "workload args"] [-r RESULTS_DIR] [-q]
#   KVM is used only when /dev/kvm works and the CPU has vmx/svm; a KVM guest that has not
#   reached /init within 60 s is retried under TCG (pure emulation, always works).
#   The kernel boots through its PVH entry from an uncompressed vmlinux, extracted once
#   into CACHE_DIR: under TCG that saves the BIOS and the in-guest XZ decompression.
# Exit: the workload's status; 124 timeout; 125 no exit marker (panic: see the log); 126 usage.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
INITRD="" LOG="" KVER="" CACHE="$HERE/build/cache" TMO=900 MEM=768 WARGS="" RESDIR="" QUIET=0
while getopts "i:l:k:c:t:m:a:r:qh" opt; do
  case $opt in
    i) INITRD=$OPTARG ;; l) LOG=$OPTARG ;; k) KVER=$OPTARG ;; c) CACHE=$OPTARG ;;
    t) TMO=$OPTARG ;; m) MEM=$OPTARG ;; a) WARGS=$OPTARG ;; r) RESDIR=$OPTARG ;; q) QUIET=1 ;;
    *) sed -n '2,13p' "$0"; exit 126 ;;
  esac
done
[ -f "$INITRD" ] && [ -n "$LOG" ] || { sed -n '2,13p' "$0" >&2; exit 126; }
[ -n "$KVER" ] || KVER=$("$HERE/kver.sh") || exit 126
command -v qemu-system-x86_64 >/dev/null || { echo "runvm: no qemu-system-x86_64 (apt-get install qemu-system-x86)" >&2; exit 126; }

# The uncompressed kernel for the PVH entry, extracted once (atomically: runs may overlap).
KERNEL=/boot/vmlinuz-$KVER
VMLINUX=$CACHE/vmlinux-$KVER
if [ ! -s "$VMLINUX" ] || [ "$VMLINUX" -ot "$KERNEL" ]; then
  mkdir -p "$CACHE"
  tmp=$(mktemp "$CACHE/vmlinux.XXXXXX")
  if python3 - "$KERNEL" "$tmp" <<'PY'
import lzma, sys
d = open(sys.argv[1], 'rb').read()
i = d.find(b'\xfd7zXZ\x00')          # Debian's amd64 kernels are XZ-compressed
if i < 0: sys.exit("no XZ payload")
out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d[i:])
if out[:4] != b'\x7fELF': sys.exit("payload is not an ELF vmlinux")
open(sys.argv[2], 'wb').write(out)
PY
  then mv "$tmp" "$VMLINUX"
  else rm -f "$tmp"; echo "runvm: cannot extract vmlinux; booting the bzImage" >&2; VMLINUX=$KERNEL
  fi
fi

CMDLINE="console=ttyS0 panic=-1 quiet"
[ -n "$WARGS" ] && CMDLINE="$CMDLINE -- $WARGS"
now() { local t=${EPOCHREALTIME/./}; echo $((10#$t / 1000)); }   # milliseconds

# boot ACCEL BOOT_DEADLINE_S(0 = none): sets QEMU_RC TIMED_OUT BOOTED WALL_MS
boot() {
  local accel=(-accel tcg -cpu max)
  [ "$1" = kvm ] && accel=(-enable-kvm -cpu host)
  local t0 qpid tpid=""
  t0=$(now); TIMED_OUT=0; BOOTED=0
  : > "$LOG"
  # -nodefaults: no NIC, no disk; the guest reaches nothing but its own namespaces.
  timeout "$TMO" qemu-system-x86_64 "${accel[@]}" -m "$MEM" -smp 1 -nodefaults -no-user-config \
    -display none -serial stdio -monitor none -no-reboot -kernel "$VMLINUX" -initrd "$INITRD" \
    -append "$CMDLINE" </dev/null >"$LOG" 2>&1 &
  qpid=$!
  if [ $QUIET = 0 ]; then tail -n +1 -f --pid=$qpid "$LOG" | tr -d '\r' & tpid=$!; fi
  if [ "$2" != 0 ] && ! timeout "$2" grep -aq -m1 '@@MPSA-VM-BOOTED' <(tail -n +1 -f --pid=$qpid "$LOG"); then
    kill $qpid 2>/dev/null
  fi
  wait $qpid; QEMU_RC=$?
  [ $QEMU_RC = 124 ] && TIMED_OUT=1
  [ -z "$tpid" ] || wait $tpid 2>/dev/null
  grep -aq '@@MPSA-VM-BOOTED' "$LOG" && BOOTED=1
  WALL_MS=$(($(now) - t0))
}

ACCEL=tcg
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then ACCEL=kvm; fi
if [ $ACCEL = kvm ]; then
  boot kvm 60
  if [ $BOOTED = 0 ]; then
    echo "runvm: the KVM guest did not reach /init; retrying under TCG" >&2
    cp "$LOG" "$LOG.kvm-failed"; ACCEL=tcg; boot tcg 0
  fi
else
  boot tcg 0
fi

marker=$(grep -ao '@@MPSA-VM-EXIT rc=[0-9]*' "$LOG" | tail -1)
if [ -n "$marker" ]; then RC=${marker##*rc=}
elif [ $TIMED_OUT = 1 ]; then RC=124
else RC=125
fi
if [ -n "$RESDIR" ] && grep -aq '@@MPSA-VM-RESULTS-END@@' "$LOG"; then
  mkdir -p "$RESDIR"
  tr -d '\r' < "$LOG" | sed -n '/^@@MPSA-VM-RESULTS-BEGIN@@$/,/^@@MPSA-VM-RESULTS-END@@$/p' |
    grep -v '^@@' | base64 -d | tar -xzf - -C "$RESDIR" ||
    echo "runvm: could not unpack the results (kernel messages inside the base64?)" >&2
fi
echo "runvm: accel=$ACCEL kernel=$KVER wall=$((WALL_MS / 1000)).$((WALL_MS % 1000 / 100))s timed-out=$TIMED_OUT workload-rc=$RC log=$LOG" >&2
exit "$RC"
