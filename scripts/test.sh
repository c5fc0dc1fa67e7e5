#!/usr/bin/env bash
# The project's tests, as CI runs them: installs what a fresh Debian 12 host
# lacks, then lint, the unit and integration tests in just the flake's
# source set as its `nextest` check runs them (and again as root), the Nix layer's
# checks, the QEMU runner's smoke test (which also calls the target's gRPC
# from the host) and the end-to-end runs of the `basic`, `io`, `security` and
# `replication` categories in QEMU VMs (two; three for `replication`) with the
# release binary, the one users run: io on the disk basic left, and once on
# a blank disk, where its first case must fail; then a small `vm bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# Each phase is headed with the seconds since the start, so a log shows
# where CI's minutes go.
phase() { echo "== [${SECONDS}s] $*"; }
trap 'echo "== [${SECONDS}s] scripts/test.sh ended (status $?)"' EXIT

phase "host packages, the guest kernel, Nix tools"
bash scripts/setup-host.sh
bash nix/install-tools.sh

phase "cargo fmt --check"
cargo fmt --check
phase "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
# The cargo tests are built once, in the release profile and in exactly the
# flake's source set, and run twice from that build: unprivileged with no
# network, as the flake's nextest check runs them, then as root (tests that
# need root, such as opening block devices, run rather than skip). A debug
# build of the same tests as well took 5 of CI's 30 minutes.
phase "cargo tests in the flake's src only, release profile: unprivileged and no network, then as root"
bash tests/flake-src.sh
phase "Nix layer (static)"
bash tests/nix.sh
phase "QEMU runner: vm up / exec / down, a killed vm run leaves no QEMU"
# Release, like the run below. Measured in CI: this reuses what flake-src
# built (0.2 s), while the run's `cargo build --release` below still builds
# the repository's own binary (3.5 min).
cargo test --release --locked --test vm_smoke -- --ignored --test-threads=1
# The categories run with the release binary, the one users run, as the
# Nix checks chain them: basic keeps the disk it leaves its data set on,
# and io boots a fresh target on a copy of it.
out=target/nvmfcheck-out
rm -rf "$out"
phase "basic in QEMU VMs, keeping the target's disk with the data set it leaves"
cargo build --release --locked
target/release/nvmfcheck vm run basic --out "$out/basic" --keep-state "$out/state"
phase "io (faults setup) on a target booted from that disk, security (hardened setup), replication (node1, node2 and the initiator)"
target/release/nvmfcheck vm run io security replication --from-state "$out/state" --out "$out/rest"
phase "io/state-from-basic on a blank disk must fail, naming the fix"
if target/release/nvmfcheck vm run io --require-passed "$out/state/report.json" \
  --filter state-from-basic --out "$out/blank" >"$out/blank.log" 2>&1; then
  cat "$out/blank.log"
  echo "io/state-from-basic passed on a blank disk" >&2
  exit 1
fi
if ! grep -q "the disk does not hold the data set basic left" "$out/blank/report.json"; then
  cat "$out/blank.log"
  echo "io/state-from-basic failed on a blank disk, but not saying the disk lacks the data set" >&2
  exit 1
fi
echo "io/state-from-basic failed on a blank disk, as it must (log: $out/blank.log)"
phase "vm bench, small: one run of basic, then the data path, control path and scale in one boot"
# The figures are not judged here (README, Benchmark); this proves the
# bench runs end to end and writes bench.json. --compare reads its file
# before anything boots, so a bad one is refused at once.
target/release/nvmfcheck vm bench --runs 1 --job-secs 1 --calls 20 --bdevs 16 \
  --out "$out/bench" >"$out/bench.log" 2>&1 || { cat "$out/bench.log"; exit 1; }
sed -n '/^boot and overhead/,$p' "$out/bench.log"
target/release/nvmfcheck bench compare "$out/bench/bench.json" "$out/bench/bench.json" | grep -q "^ready_secs "
if target/release/nvmfcheck vm bench --compare "$out/bench.log" --out "$out/bench-bad" 2>"$out/bench-bad.log"; then
  echo "vm bench --compare accepted a file that is not bench.json" >&2
  exit 1
fi
grep -q "not JSON" "$out/bench-bad.log" || { cat "$out/bench-bad.log"; exit 1; }
[ ! -e "$out/bench-bad" ] || { echo "vm bench --compare with a bad file made $out/bench-bad" >&2; exit 1; }
