#!/usr/bin/env bash
# Builds the Lambda artifacts (x86_64, Amazon Linux 2023 `provided.al2023`) with
# cargo-lambda and prints their sizes. Idempotent: cargo-lambda (with its bundled zig)
# is installed once into the same venv as the SAM tools.
#
#   scripts/build-lambdas.sh                     # every Lambda binary of the workspace
#   scripts/build-lambdas.sh --features foo      # extra arguments go to `cargo lambda build`
#   BINS="tm-resolve tm-write" scripts/build-lambdas.sh
#   DRY_RUN=1 scripts/build-lambdas.sh           # print the command, build nothing
#
# Output: target/lambda/<bin>/bootstrap (what `sam build` would package), plus a
# bootstrap.zip next to it to show the deployment size (Lambda's limits: 50 MB zipped
# upload, 250 MB unzipped).
#
# Why x86_64 here: this machine has no aarch64 standard library for the target, so it
# cannot build arm64. The template's Architecture parameter defaults to arm64; deploy an
# x86_64 build with `--parameter-overrides Architecture=x86_64`, or build arm64 on a host
# with `rustup target add aarch64-unknown-linux-gnu` (`sam build` does that build itself).
#
# Environment: TM_CACHE (default ~/.cache/traffic-manager) holds the venv;
# CARGO_BUILD_JOBS limits parallel compile jobs on a shared machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TM_CACHE="${TM_CACHE:-$HOME/.cache/traffic-manager}"
VENV="$TM_CACHE/venv"
# The Lambda binaries, in template order; tm-local is not a Lambda and is never built here.
WANTED="${BINS:-tm-resolve tm-write tm-event-consumer tm-outbox-relay tm-prober}"

log() { echo "[build-lambdas] $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "venv: creating $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
fi
if [ -x "$VENV/bin/cargo-lambda" ]; then
  log "cargo-lambda: already installed"
else
  log "cargo-lambda: installing from PyPI into $VENV (brings zig)"
  "$VENV/bin/pip" install --quiet cargo-lambda
fi
# `cargo lambda` is found as `cargo-lambda` on PATH.
export PATH="$VENV/bin:$PATH"
log "$(cargo lambda --version)"

cd "$ROOT"
# Only the binaries that exist in the workspace today (tm-outbox-relay may not yet).
available="$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null \
  | "$VENV/bin/python" -c 'import json,sys; print(" ".join(t["name"] for p in json.load(sys.stdin)["packages"] for t in p["targets"] if "bin" in t["kind"]))')"
bins=()
for b in $WANTED; do
  if [[ " $available " == *" $b "* ]]; then
    bins+=("$b")
  else
    log "skipping $b: no such binary in the workspace"
  fi
done
if [ ${#bins[@]} -eq 0 ]; then
  log "nothing to build"
  exit 1
fi

# No OpenSSL variables: rdkafka's `ssl-vendored` (Cargo.toml) builds librdkafka's OpenSSL
# from source with the target's compiler and links it statically.

# The lambda-release profile (Cargo.toml): release, optimised for size.
cmd=(cargo lambda build --profile lambda-release --x86-64)
for b in "${bins[@]}"; do cmd+=(--bin "$b"); done
cmd+=("$@")
log "running: ${cmd[*]}"
if [ -n "${DRY_RUN:-}" ]; then
  exit 0
fi
# Lower priority: the machine is shared with other builds.
nice -n 10 "${cmd[@]}"

printf '\n%-20s %12s %12s\n' "binary" "bootstrap" "zipped" >&2
for b in "${bins[@]}"; do
  dir="target/lambda/$b"
  if [ ! -f "$dir/bootstrap" ]; then
    log "missing $dir/bootstrap"
    exit 1
  fi
  rm -f "$dir/bootstrap.zip"
  (cd "$dir" && "$VENV/bin/python" -m zipfile -c bootstrap.zip bootstrap)
  raw=$(stat -c %s "$dir/bootstrap")
  zipped=$(stat -c %s "$dir/bootstrap.zip")
  awk -v b="$b" -v r="$raw" -v z="$zipped" 'BEGIN { printf "%-20s %9.1f MB %9.1f MB\n", b, r / 1048576, z / 1048576 }' >&2
done
log "artifacts: target/lambda/<bin>/bootstrap"
