#!/bin/bash
# Build the initramfs (cpio.gz) of the mpsa test VM: Debian's busybox-static with its
# applets, dash as /bin/sh, iproute2's ip, the kernel modules for XFRM/ESP, the crypto
# the tests use and the virtual links they build (with their dependencies, for the
# kernel given by -k), /init, a workload script and a payload directory.
#
# Usage: mkinitramfs.sh -w WORKLOAD -p PAYLOAD_DIR -o OUT.cpio.gz [-k KVER] [-m "modules"] [-b "binaries"]
#   -w FILE  becomes /workload, run by /init as `sh /workload ARGS` in /payload
#   -p DIR   its contents become /payload (static test binaries, data)
#   -k KVER  kernel whose /lib/modules/KVER is used (default: the newest with modules)
#   -m LIST  extra modules; -b LIST extra dynamically linked host binaries (with their libraries)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORKLOAD="" PAYLOAD="" OUT="" KVER="" EXTRA_MODS="" EXTRA_BINS=""
while getopts "w:p:o:k:m:b:h" opt; do
  case $opt in
    w) WORKLOAD=$(readlink -f "$OPTARG") ;;
    p) PAYLOAD=$(readlink -f "$OPTARG") ;;
    o) OUT=$(readlink -m "$OPTARG") ;;
    k) KVER=$OPTARG ;;
    m) EXTRA_MODS="$EXTRA_MODS $OPTARG" ;;
    b) EXTRA_BINS="$EXTRA_BINS $OPTARG" ;;
    *) sed -n '2,11p' "$0"; exit 2 ;;
  esac
done
[ -f "$WORKLOAD" ] && [ -d "$PAYLOAD" ] && [ -n "$OUT" ] || { sed -n '2,11p' "$0" >&2; exit 2; }
[ -n "$KVER" ] || KVER=$("$HERE/kver.sh")
[ -d "/lib/modules/$KVER/kernel" ] || { echo "mkinitramfs: no modules for kernel '$KVER'" >&2; exit 1; }
BUSYBOX=/bin/busybox
# (grep without -q: an early exit would kill busybox with SIGPIPE and fail the pipeline)
"$BUSYBOX" --list 2>/dev/null | grep -x ip >/dev/null && ! ldd "$BUSYBOX" >/dev/null 2>&1 || {
  echo "mkinitramfs: $BUSYBOX is not Debian's static busybox (busybox-static)" >&2; exit 1; }

MODS="xfrm_user xfrm_algo xfrm_interface esp4 esp6 esp4_offload esp6_offload xfrm4_tunnel xfrm6_tunnel
  tunnel4 tunnel6 veth bridge dummy af_packet
  authenc authencesn gcm ccm ctr seqiv echainiv gf128mul ghash-generic ghash-clmulni-intel aesni-intel
  cryptd crypto_simd chacha20poly1305 chacha-generic chacha-x86_64 poly1305-generic poly1305-x86_64
  sha1-ssse3 sha256-ssse3 sha512-ssse3 sha512-generic drbg crypto_user $EXTRA_MODS"

STAGE=$(mktemp -d /tmp/mpsa-vm-stage.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
cd "$STAGE"
mkdir -p usr/bin usr/sbin usr/lib usr/lib64 etc/mpsa-vm proc sys dev tmp run root payload var
ln -s usr/bin bin; ln -s usr/sbin sbin; ln -s usr/lib lib; ln -s usr/lib64 lib64; ln -s ../run var/run
cp "$BUSYBOX" usr/bin/busybox
for a in $("$BUSYBOX" --list-full); do
  [ -e "$a" ] || [ -L "$a" ] || ln -s /usr/bin/busybox "$a"
done

# copy_bin SRC: a dynamically linked host binary and the libraries ldd names.
copy_bin() {
  local src; src=$(readlink -f "$(command -v "$1" || echo "$1")")
  [ -x "$src" ] || { echo "mkinitramfs: $1 not found" >&2; return 1; }
  mkdir -p "$STAGE/$(dirname "$1")"; rm -f "$STAGE/$1"; cp "$src" "$STAGE/$1"
  ldd "$src" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
    local real; real=$(readlink -f "$lib")
    mkdir -p "$STAGE/$(dirname "$real")" "$STAGE/$(dirname "$lib")"
    [ -e "$STAGE/$real" ] || cp "$real" "$STAGE/$real"
    [ -e "$STAGE/$lib" ] || ln -s "$real" "$STAGE/$lib"
  done
}
# Debian's busybox sh runs its own applets before PATH (its ip has no xfrm, no netns):
# dash is /bin/sh so scripts and tests find iproute2's ip.
copy_bin /usr/sbin/ip
copy_bin /usr/bin/dash
rm -f usr/bin/sh; ln -s dash usr/bin/sh
for b in $EXTRA_BINS; do copy_bin "$(command -v "$b")"; done
[ -d /etc/iproute2 ] && cp -a /etc/iproute2 etc/
[ -d /usr/share/iproute2 ] && mkdir -p usr/share && cp -a /usr/share/iproute2 usr/share/

# Modules with their dependencies, in insmod order; depmod for on-demand loading.
: > etc/mpsa-vm/modules.list
declare -A SEEN=()
for m in $MODS; do
  deps=$(modprobe -S "$KVER" --show-depends "$m" 2>/dev/null) || { echo "mkinitramfs: no module $m for $KVER, skipped" >&2; continue; }
  while read -r kind path opts; do
    [ "$kind" = insmod ] || continue
    mkdir -p "$STAGE/$(dirname "$path")"
    [ -e "$STAGE/$path" ] || cp "$path" "$STAGE/$path"
    [ -z "${SEEN[$path]:-}" ] || continue
    SEEN[$path]=1
    echo "$path $opts" >> etc/mpsa-vm/modules.list
  done <<< "$deps"
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
  [ -e "/lib/modules/$KVER/$f" ] && cp "/lib/modules/$KVER/$f" "$STAGE/lib/modules/$KVER/"
done
depmod -b "$STAGE" "$KVER"

cp "$HERE/init" init; chmod 755 init
cp "$WORKLOAD" workload; chmod 755 workload
cp -a "$PAYLOAD"/. payload/
mkdir -p "$(dirname "$OUT")"
find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1 > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "mkinitramfs: $OUT ($(du -h "$OUT" | cut -f1), kernel $KVER, $(wc -l < etc/mpsa-vm/modules.list) modules)" >&2
