#!/usr/bin/env bash
# The cargo tests in exactly the files the flake's `src` selects, as the
# flake's `nextest` check runs them in the Nix sandbox: a copy of just those
# files, tests built with the release profile (crane runs `cargo nextest run
# --cargo-profile release`), then run by an unprivileged user with no
# network but loopback. A test that reads a file outside `src`, needs root
# or reaches beyond loopback fails here as it would under `nix flake check`.
#
# The selection: crane's `fileset.commonCargoSources` (files named
# Cargo.toml or Cargo.lock, and every *.rs and *.toml file; crane's
# lib/fileset/{cargoTomlAndLock,rust,toml}.nix) of the files git tracks (a
# flake sees only those), plus each `./path` listed beside it in flake.nix's
# `fileset.unions [ ... ]`, read from flake.nix so the two cannot drift.
#
# Needs root (unshare, setpriv) and the crates already in cargo's cache (the
# build runs --offline); installs cargo-nextest if it is missing. Ends with
# nextest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

user=nobody
# The repository's own target directory: the copy's crate builds beside the
# repository's (its path differs, so its artifacts do too) and shares the
# compiled dependencies, which saves CI minutes. The copy's binary is then
# what target/release/nvmfcheck links to until the repository's own
# `cargo build --release` next builds it; scripts/test.sh does so after this.
target_dir=$PWD/target

# The `./path` entries of the src fileset, after commonCargoSources.
extra=$(awk '
  /fileset = pkgs\.lib\.fileset\.unions \[/ { inside = 1; next }
  inside && /\];/ { exit }
  inside && /craneLib\.fileset\.commonCargoSources \.\/\.\)/ { common = 1; next }
  inside && $1 ~ /^\.\// { sub(/^\.\//, "", $1); print $1; next }
  inside { print "unexpected: " $0 > "/dev/stderr"; bad = 1 }
  END { if (!common || bad) exit 1 }
' flake.nix) || {
  echo "flake-src: flake.nix's src fileset is not commonCargoSources plus ./paths; update $0 to match it" >&2
  exit 1
}

src=$(mktemp -d /tmp/nvmfcheck-flake-src.XXXXXX)
trap 'rm -rf "$src"' EXIT
{
  git ls-files -- ':(glob)**/*.rs' ':(glob)**/*.toml' ':(glob)**/Cargo.lock'
  for p in $extra; do
    listed=$(git ls-files -- "$p")
    [[ -n $listed ]] || {
      echo "flake-src: flake.nix names ./$p, which git does not track" >&2
      exit 1
    }
    printf '%s\n' "$listed"
  done
} | sort -u >"$src.list"
mkdir "$src/tree"
tar -cf - -T "$src.list" | tar -xf - -C "$src/tree"
echo "flake-src: $(wc -l <"$src.list") files (commonCargoSources + ${extra//$'\n'/ }) in $src/tree"
rm -f "$src.list"

# nextest, as crane's cargoNextest uses; a copy in the directory the
# unprivileged user runs in, since root's home may be closed to it.
if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "flake-src: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
cp "$(command -v cargo-nextest)" "$src/cargo-nextest"

# Build as root (the toolchain lives in root's home), offline.
archive=$src/tests.tar.zst
(cd "$src/tree" && unshare -n env CARGO_TARGET_DIR="$target_dir" \
  cargo nextest archive --locked --offline --cargo-profile release \
  --archive-file "$archive")

# Run as an unprivileged user, with loopback only, in a writable copy (the
# Nix build directory is writable too). A test that skips itself here says
# why on stderr in a line starting SKIPPED; those lines are shown, and the
# whole log when something fails.
chown -R "$user:" "$src"
chmod 755 "$src"
log=$PWD/target/flake-src.log
rc=0
unshare -n sh -c '
  ip link set lo up
  cd "$1/tree"
  exec setpriv --reuid="$2" --regid="$(id -g "$2")" --clear-groups \
    env HOME=/nonexistent TMPDIR=/tmp \
    "$1/cargo-nextest" nextest run --archive-file "$3" --workspace-remap "$1/tree" \
    --no-fail-fast --color never --success-output final
' sh "$src" "$user" "$archive" >"$log" 2>&1 || rc=$?
if ((rc != 0)); then
  cat "$log"
  echo "flake-src: the tests failed in the flake's source set (log: $log)" >&2
  exit "$rc"
fi
grep -E '^ *SKIPPED ' "$log" | sed 's/^ */flake-src: /' || true
grep -E '^ *Summary ' "$log"

# The same build again as root, still with loopback only: the tests that
# skip themselves without root (they say SKIPPED above) run here, so the
# one build covers both.
rootlog=$PWD/target/flake-src-root.log
rc=0
unshare -n sh -c '
  ip link set lo up
  cd "$1/tree"
  exec env TMPDIR=/tmp "$1/cargo-nextest" nextest run --archive-file "$2" \
    --workspace-remap "$1/tree" --no-fail-fast --color never --success-output final
' sh "$src" "$archive" >"$rootlog" 2>&1 || rc=$?
if ((rc != 0)); then
  cat "$rootlog"
  echo "flake-src: the tests failed as root (log: $rootlog)" >&2
  exit "$rc"
fi
if grep -E '^ *SKIPPED ' "$rootlog"; then
  echo "flake-src: a test skipped itself even as root" >&2
  exit 1
fi
grep -E '^ *Summary ' "$rootlog" | sed 's/^ */flake-src: as root: /'
