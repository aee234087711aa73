#!/bin/sh
# Prints the newest kernel version that has both /boot/vmlinuz-VER and /lib/modules/VER
# (a linux-image-amd64 point release may bring a newer ABI next to the running one).
for v in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's#.*/vmlinuz-##' | sort -V -r); do
  [ -d "/lib/modules/$v/kernel" ] && { echo "$v"; exit 0; }
done
echo "kver: no kernel image with modules (apt-get install linux-image-amd64)" >&2
exit 1
