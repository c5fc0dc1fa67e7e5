#!/usr/bin/env bash
# The main job on a fresh Debian 12 host: installs what is missing, builds
# nvmfcheck and runs the `basic` category in two QEMU VMs. Reports land in
# ./nvmfcheck-out (report.json, junit.xml, console logs).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

bash scripts/setup-host.sh
cargo build --locked --release
exec target/release/nvmfcheck vm run basic --out nvmfcheck-out "$@"
