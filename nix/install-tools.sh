#!/usr/bin/env bash
# Installs what tests/nix.sh needs on a Debian 12 machine (run as root):
#   nix-instantiate  Debian's nix-bin (2.8): `--parse` and pure `--eval` only
#   nixfmt           crates.io crate nixfmt_rs (its binary is `nixfmt`)
#   deadnix          crates.io (Debian 12 has no deadnix package)
#   python3, git     Debian, if missing
# A tool already on PATH (or in ~/.cargo/bin) is skipped, so a second run
# costs nothing; the `cargo install`s are the slow part (about a minute each
# on 2 cores).
set -euo pipefail

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

have() { command -v "$1" >/dev/null 2>&1; }

apt_pkgs=()
have nix-instantiate || apt_pkgs+=(nix-bin)
have python3 || apt_pkgs+=(python3)
have git || apt_pkgs+=(git)
if ((${#apt_pkgs[@]})); then
  echo "install-tools: apt-get install ${apt_pkgs[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}"
fi

if ! have nixfmt || ! have deadnix; then
  if ! have cargo; then
    echo "install-tools: cargo is missing; install a Rust toolchain first" >&2
    exit 1
  fi
  have nixfmt || cargo install --locked nixfmt_rs
  have deadnix || cargo install --locked deadnix
fi

echo "install-tools: $(nix-instantiate --version); $(nixfmt --version); $(deadnix --version)" >&2
