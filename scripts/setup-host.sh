#!/usr/bin/env bash
# Installs what a fresh Debian 12 host lacks to build nvmfcheck and boot its
# VMs. Idempotent: installs only what is missing. Needs root for apt-get.
set -euo pipefail

# program → Debian package that provides it
declare -A need=(
  [qemu-system-x86_64]=qemu-system-x86
  [busybox]=busybox-static
  [fio]=fio
  [nvme]=nvme-cli
  [cc]=gcc
  # pools and replicas (the guests run the host's tools over 9p)
  [lvcreate]=lvm2
  # nexuses (md RAID1)
  [mdadm]=mdadm
)
missing=()
for prog in "${!need[@]}"; do
  command -v "$prog" >/dev/null 2>&1 || missing+=("${need[$prog]}")
done
# qboot is the fast firmware the runner boots with; it comes with qemu.
[ -e /usr/share/qemu/qboot.rom ] || missing+=(qemu-system-data)
# busybox from the busybox package is dynamically linked: the initramfs
# needs the static one.
if command -v busybox >/dev/null 2>&1 && ! dpkg -s busybox-static >/dev/null 2>&1; then
  missing+=(busybox-static)
fi
# `nvmfcheck vm` fetches the guest kernel with `apt-get download`, which
# needs package lists: a fresh host may have none.
if [ ${#missing[@]} -gt 0 ] || ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
  apt-get update -q
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found: install Rust 1.89 or newer (https://rustup.rs), then run this again" >&2
  exit 1
fi
