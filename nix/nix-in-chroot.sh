#!/usr/bin/env bash
# Runs a command with the Nix of the Debian 13 chroot that
# nix/install-tools.sh makes (Debian 12's own nix-bin is 2.8, too old for
# nixpkgs >= 25.11), as root:
#
#   bash nix/nix-in-chroot.sh nix --version
#   bash nix/nix-in-chroot.sh nix-instantiate --parse flake.nix
#
# The repository is bind-mounted read-only at its own path inside the
# chroot, with the host's /dev and a fresh /proc, and the command starts in
# the same directory as the caller when that is inside the repository (else
# in the repository's root), so relative and absolute repository paths mean
# the same inside and out. The mounts are made in a private mount namespace
# (unshare --mount): they exist only while the command runs and go away with
# it, even when it fails or is killed, and none is ever visible on the host.
#
# The chroot is ${NVMFCHECK_NIX_CHROOT:-~/.cache/nvmfcheck/nix-trixie}.
set -euo pipefail

root=${NVMFCHECK_NIX_CHROOT:-$HOME/.cache/nvmfcheck/nix-trixie}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

if (($# == 0)); then
  echo "usage: nix/nix-in-chroot.sh COMMAND [ARG...]" >&2
  exit 2
fi
if ((EUID != 0)); then
  echo "nix-in-chroot: run as root (it mounts and chroots)" >&2
  exit 2
fi
if [[ ! -x $root/usr/bin/nix ]]; then
  echo "nix-in-chroot: no Nix in $root; run: bash nix/install-tools.sh" >&2
  exit 2
fi

here=$(pwd -P)
case $here/ in
  "$repo"/*) ;;
  *) here=$repo ;;
esac

# Runs in the new mount namespace: $1 root, $2 repository, $3 directory,
# then the command.
# shellcheck disable=SC2016
inner='
set -eu
root=$1 repo=$2 dir=$3
shift 3
mkdir -p "$root$repo" "$root/dev" "$root/proc"
mount --bind "$repo" "$root$repo"
mount -o remount,bind,ro "$root$repo"
mount --bind /dev "$root/dev"
mount -t proc proc "$root/proc"
exec chroot "$root" /usr/bin/env -i \
  HOME=/root \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 \
  TERM="${TERM:-dumb}" \
  /bin/sh -c '\''cd "$1" && shift && exec "$@"'\'' sh "$dir" "$@"
'
exec unshare --mount --propagation private -- /bin/sh -c "$inner" sh "$root" "$repo" "$here" "$@"
