#!/usr/bin/env bash
# The project's tests, as CI runs them: installs what a fresh Debian 12 host
# lacks, then lint, the unit and integration tests in just the flake's
# source set as its `nextest` check runs them (and again as root), the Nix layer's
# checks, the QEMU runner's smoke test (which also calls the target's gRPC
# from the host) and the end-to-end run of the `basic`, `io`, `security` and
# `replication` categories in QEMU VMs (two; three for `replication`) with the
# release binary, the one users run.
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
phase "basic and io (faults setup), security (hardened setup) and replication (node1, node2 and the initiator) in QEMU VMs, with the release binary (what users run)"
cargo build --release --locked
target/release/nvmfcheck vm run basic io security replication --out target/nvmfcheck-out
