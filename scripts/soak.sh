#!/usr/bin/env bash
# The soak run (not in CI): tm-local on the real backends (DynamoDB Local, Redis, nisshi),
# ~1,000 seeded routes, then a fixed request rate of 99 % resolves and 1 % PUTs for
# SOAK_DURATION seconds, sampled every SOAK_SAMPLE seconds: requests, errors, p50/p99 of
# the window, tm-local's RSS (VmRSS) and the load average. Writes the soak section of
# docs/reliability.md (between its markers) and docs/reliability.json.
#
#   scripts/soak.sh                          # 10 minutes at 2,000 req/s
#   SOAK_DURATION=60 SOAK_RATE=500 scripts/soak.sh
#
# Knobs (environment, defaults in brackets): SOAK_RATE [2000] req/s, SOAK_DURATION [600] s,
# SOAK_ROUTES [1000], SOAK_SAMPLE [10] s, SOAK_WRITE_PERMILLE [10], SOAK_INFLIGHT [512]
# (requests in flight before the driver sheds and counts an error), TM_L1_TTL_MS [1000],
# SOAK_OUT [target/soak] work dir, SOAK_NO_DOCS=1 to leave docs/ alone, SOAK_NO_BUILD=1 to
# use the release binaries already in target/release.
#
# Only 127.0.0.1 is used; the load stops by itself. What this script starts (tm-local) is
# stopped by its pid on exit; its DynamoDB table and Redis keys are deleted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${SOAK_OUT:-$ROOT/target/soak}"
BIN="$ROOT/target/release"
RUN_ID="$$-$(date +%s)"
ID="tm-soak-$RUN_ID"
mkdir -p "$OUT"
log() { echo "[soak $(date -u +%H:%M:%S)] $*" >&2; }

export SOAK_RATE="${SOAK_RATE:-2000}" SOAK_DURATION="${SOAK_DURATION:-600}"
export SOAK_ROUTES="${SOAK_ROUTES:-1000}" SOAK_SAMPLE="${SOAK_SAMPLE:-10}"
export SOAK_WRITE_PERMILLE="${SOAK_WRITE_PERMILLE:-10}" SOAK_INFLIGHT="${SOAK_INFLIGHT:-512}"
L1_TTL_MS="${TM_L1_TTL_MS:-1000}"

# tm-local on the real backends, as tests/suite/e2e/real.rs builds it: its own table, key
# prefix, topic and consumer group.
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_ENDPOINT_URL_DYNAMODB="${AWS_ENDPOINT_URL_DYNAMODB:-http://127.0.0.1:8000}"
export TM_REDIS_URL="${TM_REDIS_URL:-redis://127.0.0.1:6379}"
export TM_KAFKA_BROKERS="${TM_KAFKA_BROKERS:-127.0.0.1:9092}"
export TM_TABLE_NAME="$ID" TM_REDIS_PREFIX="$ID:" TM_KAFKA_TOPIC="$ID" TM_KAFKA_GROUP="$ID"
export TM_L1_TTL_MS="$L1_TTL_MS" RUST_LOG="${RUST_LOG:-warn}"
# The driver signs its tokens with the suite's secret (tm_tests::SECRET).
export TM_JWT_SECRET="test-secret-for-the-suite"

TM_PID=""
cleanup() {
  local rc=$? i
  if [ -n "$TM_PID" ] && kill "$TM_PID" 2>/dev/null; then
    for ((i = 0; i < 100; i++)); do kill -0 "$TM_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ -x "$BIN/tm-bench" ]; then
    "$BIN/tm-bench" cleanup --prefix "$ID:" >/dev/null 2>&1 || true
    "$BIN/tm-bench" drop-table --table "$ID" >/dev/null 2>&1 || true
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"

log "services"
scripts/start-services.sh all
if [ -z "${SOAK_NO_BUILD:-}" ]; then
  log "build (release)"
  cargo build --release -p tm-local -p tm-bench >&2
  cargo build --release -p tm-tests --bin soak >&2
fi
# Run copies, so that a build elsewhere during the soak cannot swap a binary underneath.
mkdir -p "$OUT/bin"
for b in tm-local tm-bench soak; do
  [ -x "$BIN/$b" ] || { log "$BIN/$b is missing (build it, or drop SOAK_NO_BUILD)"; exit 1; }
  cp -f "$BIN/$b" "$OUT/bin/$b"
done
BIN="$OUT/bin"

log "tm-local init (table $ID, topic $ID)"
"$BIN/tm-local" init --data-dir "$OUT/data" >"$OUT/init.log" 2>&1
PORT="$(free_port)"
"$BIN/tm-local" --listen "127.0.0.1:$PORT" --data-dir "$OUT/data" >"$OUT/tm-local.log" 2>&1 &
TM_PID=$!
for ((i = 0; i < 300; i++)); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/readyz" && break
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" || { log "tm-local not ready; see $OUT/tm-local.log"; exit 1; }

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "driving ${SOAK_RATE} req/s for ${SOAK_DURATION} s (load before: $LOAD_BEFORE)"
rc=0
SOAK_BASE="http://127.0.0.1:$PORT" SOAK_PID="$TM_PID" SOAK_JSON="$OUT/soak.json" \
  SOAK_MD="$OUT/soak.md" "$BIN/soak" | tee "$OUT/soak.txt" || rc=$?
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
kill -0 "$TM_PID" 2>/dev/null || { log "tm-local died during the soak; see $OUT/tm-local.log"; rc=1; }

if [ -z "${SOAK_NO_DOCS:-}" ] && [ -f "$OUT/soak.md" ]; then
  DOC="docs/reliability.md"
  {
    echo "Run $STARTED on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), shared with"
    echo "other work: load average $LOAD_BEFORE before, $LOAD_AFTER after. Target ${SOAK_RATE} req/s"
    echo "for ${SOAK_DURATION} s, ${SOAK_WRITE_PERMILLE}‰ PUTs, ${SOAK_ROUTES} routes, TM_L1_TTL_MS=${L1_TTL_MS},"
    echo "sampled every ${SOAK_SAMPLE} s (latency is per window, measured by the driver on loopback)."
    echo
    cat "$OUT/soak.md"
  } >"$OUT/section.md"
  if [ -f "$DOC" ] && grep -q '<!-- soak:begin -->' "$DOC"; then
    awk -v f="$OUT/section.md" '
      /<!-- soak:begin -->/ { print; while ((getline l < f) > 0) print l; skip = 1; next }
      /<!-- soak:end -->/ { skip = 0 }
      !skip { print }' "$DOC" >"$OUT/doc.md" && mv "$OUT/doc.md" "$DOC"
  else
    { echo "<!-- soak:begin -->"; cat "$OUT/section.md"; echo "<!-- soak:end -->"; } >>"$DOC"
  fi
  jq_free_copy="docs/reliability.json"
  {
    printf '{"started":"%s","load_before":"%s","load_after":"%s","cpus":%s,"l1_ttl_ms":%s,"soak":' \
      "$STARTED" "$LOAD_BEFORE" "$LOAD_AFTER" "$(nproc)" "$L1_TTL_MS"
    cat "$OUT/soak.json"
    echo "}"
  } >"$jq_free_copy"
  log "wrote $DOC and $jq_free_copy"
fi
exit $rc
