#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing (cached under
# ~/.cache/traffic-manager), starts the real servers on loopback, then runs the gates
# (fmt, clippy, cargo-deny, the SAM template, schemathesis) and every test (unit, handler, integration against Redis / DynamoDB Local /
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
step "licences, bans, sources (advisories need the advisory database from GitHub: not reachable here)"
PATH="$TM_CACHE/deny/bin:$PATH" cargo deny check licenses bans sources
step "template"
scripts/validate-template.sh
step "build"
cargo build --workspace --all-features --bins --locked
step "schemathesis against tm-local (docs/openapi.yaml)"
scripts/schemathesis.sh
step "tests"
cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
