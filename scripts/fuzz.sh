#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ (libFuzzer, coverage-guided) for a fixed time and
# reports executions and findings per target; exits non-zero when any target found a crash.
#
#   scripts/fuzz.sh                     every target, FUZZ_SECS (default 60) seconds each
#   scripts/fuzz.sh jwt cursor          only these targets
#
# Targets (properties in fuzz/src/lib.rs): route_body, names, selector, cursor, jwt,
# msk_records.
#
# Toolchain: cargo fuzz needs compiler flags that only nightly accepts (-Zsanitizer, the
# sanitizer-coverage passes). This machine has only the stable toolchain and no way to
# fetch another, so the script builds with stable and RUSTC_BOOTSTRAP=1, which lets stable
# accept them (the fuzz build is its own workspace, so nothing else is built this way).
# FUZZ_TOOLCHAIN=nightly uses a nightly toolchain instead where there is one.
#
# cargo-fuzz is installed once into $TM_CACHE/fuzz (idempotent). The corpus grows in
# fuzz/corpus/<target> (seeded from fuzz/seeds/<target>, both kept across runs; the corpus
# is not committed); a crash is saved in fuzz/artifacts/<target>/ and can be replayed with
# `cargo fuzz run --fuzz-dir fuzz <target> <file>` (same environment). The seeds also run
# as a plain test: `cd fuzz && cargo test`.
#
# Environment: TM_CACHE (default ~/.cache/traffic-manager); FUZZ_SECS; FUZZ_SANITIZER
# (none | address, default none); FUZZ_TOOLCHAIN (default: the active one, with
# RUSTC_BOOTSTRAP=1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TM_CACHE="${TM_CACHE:-$HOME/.cache/traffic-manager}"
SECS="${FUZZ_SECS:-60}"
# No sanitizer by default: the workspace forbids unsafe code, so what the targets look for
# is panics and broken properties, and AddressSanitizer costs 3-7x the executions (the
# event consumer's target: about 1800/s without, 250/s with). FUZZ_SANITIZER=address adds
# a memory-safety pass over the dependencies' unsafe code.
SANITIZER="${FUZZ_SANITIZER:-none}"
ALL_TARGETS=(route_body names selector cursor jwt msk_records)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

log() { echo "[fuzz] $*" >&2; }

if [ ! -x "$TM_CACHE/fuzz/bin/cargo-fuzz" ]; then
  log "cargo-fuzz: installing into $TM_CACHE/fuzz (a few minutes cold)"
  CARGO_TARGET_DIR="$TM_CACHE/fuzz-build" cargo install cargo-fuzz --locked --root "$TM_CACHE/fuzz"
  rm -rf "$TM_CACHE/fuzz-build"
fi
export PATH="$TM_CACHE/fuzz/bin:$PATH"

CARGO=(cargo)
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  CARGO=(cargo "+$FUZZ_TOOLCHAIN")
else
  export RUSTC_BOOTSTRAP=1
fi
log "$("${CARGO[@]}" fuzz --version), $("${CARGO[@]}" --version), sanitizer $SANITIZER"

cd "$ROOT"
log "building ${TARGETS[*]}"
for t in "${TARGETS[@]}"; do
  "${CARGO[@]}" fuzz build --fuzz-dir fuzz -O -s "$SANITIZER" "$t" >&2
done

REPORT="$ROOT/fuzz/artifacts/report.txt"
mkdir -p "$ROOT/fuzz/artifacts"
: >"$REPORT"
failed=0
for t in "${TARGETS[@]}"; do
  corpus="fuzz/corpus/$t"
  artifacts="fuzz/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  before=$(find "$artifacts" -type f | wc -l)
  out="fuzz/artifacts/$t.log"
  log "$t: fuzzing for $SECS s"
  status=0
  "${CARGO[@]}" fuzz run --fuzz-dir fuzz -O -s "$SANITIZER" "$t" "$corpus" "fuzz/seeds/$t" -- \
    -max_total_time="$SECS" -timeout=10 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" \
    >"$out" 2>&1 || status=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$out" | tail -n1)
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$out" | tail -n1)
  cov=$(grep -o 'cov: [0-9]*' "$out" | tail -n1 | awk '{print $2}')
  after=$(find "$artifacts" -type f | wc -l)
  found=$((after - before))
  line="$t: ${execs:-?} executions (${rate:-?}/s), coverage ${cov:-?} edges, corpus $(find "$corpus" -type f | wc -l) inputs, $found new finding(s), exit $status"
  echo "$line" | tee -a "$REPORT"
  if [ "$status" -ne 0 ] || [ "$found" -ne 0 ]; then
    failed=1
    grep -E 'panicked|ERROR|SUMMARY' "$out" | head -n 20 >&2 || true
    ls -t "$artifacts" | head -n "$((found > 0 ? found : 1))" | sed "s|^|  $artifacts/|" >&2 || true
  fi
done
log "report: $REPORT"
exit "$failed"
