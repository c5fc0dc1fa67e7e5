#!/usr/bin/env bash
# Installs what tests/nix.sh needs on a Debian 12 machine (run as root):
#   Nix >= 2.18  Debian 13's nix-bin (2.26) in a minimal Debian 13 chroot
#                made with debootstrap, kept in ~/.cache/nvmfcheck/nix-trixie
#                (or $NVMFCHECK_NIX_CHROOT); nix/nix-in-chroot.sh runs it.
#                Debian 12's own nix-bin is Nix 2.8, too old for
#                nixpkgs >= 25.11 (which needs 2.18).
#   nixfmt       crates.io crate nixfmt_rs (its binary is `nixfmt`)
#   deadnix      crates.io (Debian 12 has no deadnix package)
#   debootstrap, python3, git   Debian, if missing (debootstrap only to
#                make the chroot)
# The chroot comes from the Debian mirror apt is configured with (or
# $NVMFCHECK_DEBIAN_MIRROR); making it takes about a minute and 340 MB of
# disk. A chroot whose Nix already answers, and a tool already on PATH (or in
# ~/.cargo/bin), are kept, so a second run takes well under a second; the
# `cargo install`s are the slow part of a first run (one to two minutes each
# on 2 cores; about 4.5 minutes for everything).
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
root=${NVMFCHECK_NIX_CHROOT:-$HOME/.cache/nvmfcheck/nix-trixie}

have() { command -v "$1" >/dev/null 2>&1; }

if ((EUID != 0)); then
  echo "install-tools: run as root (apt-get, debootstrap, chroot)" >&2
  exit 1
fi

apt_pkgs=()
have unshare || apt_pkgs+=(util-linux)
have python3 || apt_pkgs+=(python3)
have git || apt_pkgs+=(git)
if ((${#apt_pkgs[@]})); then
  echo "install-tools: apt-get install ${apt_pkgs[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}"
fi

# The Nix in the chroot, if it is there and answers.
chroot_nix_version() {
  [[ -f $root/etc/nvmfcheck-nix-ready ]] &&
    bash nix/nix-in-chroot.sh nix --version 2>/dev/null
}

# The URI of the Debian archive apt uses for this release (the entry whose
# suite is the bare codename, not -updates or -security).
# shellcheck disable=SC2016 # apt fills in $(REPO_URI) etc.
debian_mirror() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(TARGET_OF)' 2>/dev/null |
    awk '$3 == "deb" && $2 !~ /-/ { print $1; exit }'
}

if ! chroot_nix_version >/dev/null; then
  if ! have debootstrap; then
    echo "install-tools: apt-get install debootstrap" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
  fi
  mirror=${NVMFCHECK_DEBIAN_MIRROR:-$(debian_mirror)}
  if [[ -z $mirror ]]; then
    echo "install-tools: no Debian mirror in apt's configuration; set NVMFCHECK_DEBIAN_MIRROR" >&2
    exit 1
  fi
  # Built beside the final place and moved there whole, so an interrupted
  # run leaves no half chroot that looks ready. debootstrap mounts /proc and
  # /sys in the target while it installs: in a private mount namespace those
  # mounts go away with it, even if it is killed.
  new=$root.new
  rm -rf --one-file-system "$new"
  mkdir -p "$(dirname "$root")"
  echo "install-tools: debootstrap trixie (Debian 13) with nix-bin into $root, from $mirror" >&2
  if ! unshare --mount --propagation private -- \
    debootstrap --variant=minbase --include=nix-bin,libdbi-perl,libdbd-sqlite3-perl \
    trixie "$new" "$mirror" >"$new.log" 2>&1; then
    tail -n 20 "$new.log" >&2
    echo "install-tools: debootstrap failed; the whole log is $new.log" >&2
    exit 1
  fi
  # Root in a chroot: no build users, no sandbox, nothing substituted (no
  # binary cache is reachable).
  mkdir -p "$new/etc/nix"
  cat >"$new/etc/nix/nix.conf" <<'EOF'
experimental-features = nix-command flakes
sandbox = false
build-users-group =
substituters =
EOF
  touch "$new/etc/nvmfcheck-nix-ready"
  rm -rf --one-file-system "$root"
  mv "$new" "$root"
  rm -f "$new.log"
fi

version=$(chroot_nix_version) || {
  echo "install-tools: the Nix in $root does not run" >&2
  exit 1
}
# nixpkgs >= 25.11 needs Nix 2.18 (builtins.readFileType and others).
if ! printf '%s\n' "$version" | awk '{ split($3, v, "."); exit !(v[1] > 2 || (v[1] == 2 && v[2] >= 18)) }'; then
  echo "install-tools: $version in $root is older than 2.18; remove $root and run again" >&2
  exit 1
fi

if ! have nixfmt || ! have deadnix; then
  if ! have cargo; then
    echo "install-tools: cargo is missing; install a Rust toolchain first" >&2
    exit 1
  fi
  have nixfmt || cargo install --locked nixfmt_rs
  have deadnix || cargo install --locked deadnix
fi

echo "install-tools: $version (in $root); $(nixfmt --version); $(deadnix --version)" >&2
