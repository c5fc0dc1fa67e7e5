#!/usr/bin/env bash
# The project's tests, as CI runs them: installs what a fresh Debian 12 host
# lacks, then lint, unit and integration tests, the Nix layer's static
# checks, the QEMU runner's smoke test (which also calls the target's gRPC
# from the host) and the end-to-end run of the `basic` category in two
# QEMU VMs, followed by the `io` category (data integrity under faults).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

bash scripts/setup-host.sh
bash nix/install-tools.sh

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked
echo "== Nix layer (static)"
bash tests/nix.sh
echo "== QEMU runner: vm up / exec / down, a killed vm run leaves no QEMU"
cargo test --locked --test vm_smoke -- --ignored --test-threads=1
echo "== basic and io in QEMU VMs"
cargo build --locked
target/debug/nvmfcheck vm run basic io --out target/nvmfcheck-out
