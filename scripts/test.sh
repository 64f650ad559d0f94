#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing (cached under
# ~/.cache/traffic-manager), starts the real servers on loopback, then runs the gates
# (fmt, clippy) and every test (unit, handler, integration against Redis / DynamoDB Local /
# Tansu, end-to-end against tm-local) with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
TM_CACHE="${TM_CACHE:-$HOME/.cache/traffic-manager}"
export PATH="$TM_CACHE/nextest/bin:$PATH"
step() { echo "==> $*" >&2; }

step "tools"
scripts/install-tools.sh all
step "services"
scripts/start-services.sh all

step "format"
cargo fmt --all --check
step "lint"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
step "build"
cargo build --workspace --all-features --bins --locked
step "tests"
cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
