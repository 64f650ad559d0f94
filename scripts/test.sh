#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing (cached under
# ~/.cache/traffic-manager), starts the real servers on loopback, then runs the gates
# (fmt, clippy, cargo-deny, the SAM template, schemathesis) and every test (unit, handler, integration against Redis / DynamoDB Local /
# nisshi, end-to-end against tm-local) with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
TM_CACHE="${TM_CACHE:-$HOME/.cache/traffic-manager}"
export PATH="$TM_CACHE/nextest/bin:$TM_CACHE/moto/bin:$PATH"
step() { echo "==> $*" >&2; }

step "tools"
scripts/install-tools.sh all
step "services"
scripts/start-services.sh all

step "format"
cargo fmt --all --check
step "lint"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
step "licences, bans, sources"
PATH="$TM_CACHE/deny/bin:$PATH" cargo deny check licenses bans sources
step "advisories (the RustSec database is cloned from GitHub)"
# The database comes from github.com/rustsec/advisory-db. Where GitHub is reachable the
# check runs and gates like the others; where it is not (this project's machines reach
# only the package registries) the step says so in capitals and goes on: nothing can be
# checked without the data, and the run must not pretend it was.
if timeout 60 env PATH="$TM_CACHE/deny/bin:$PATH" cargo deny fetch db >/dev/null 2>&1; then
  PATH="$TM_CACHE/deny/bin:$PATH" cargo deny check --disable-fetch advisories
else
  echo "==> ADVISORIES NOT CHECKED: the RustSec advisory database could not be fetched from GitHub" >&2
fi
step "template"
scripts/validate-template.sh
step "build"
cargo build --workspace --all-features --bins --locked
step "schemathesis against tm-local (docs/openapi.yaml)"
scripts/schemathesis.sh
step "tests"
cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
