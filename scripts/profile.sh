#!/usr/bin/env bash
# Where tm-local's CPU goes on the read path: runs the benchmark's HTTP load (wrk -t2 -c32
# on one resolve URL) against one tm-local and records it with `perf record` (software
# clock: this project's machines have no hardware counters), then prints the functions
# that took the most samples and a split by crate.
#
#   scripts/profile.sh l1 [BINARY]   # L1 hit (embedded store), as bench.sh's http_l1
#   scripts/profile.sh l2 [BINARY]   # L1 off, shared-cache hit on Redis, as http_l2
#
# BINARY defaults to target/release/tm-local, built here with its symbols kept
# (CARGO_PROFILE_RELEASE_STRIP=false: the same code, only the symbol table stays). To
# profile an older build, build it the same way and pass its path.
# Knobs: PROFILE_SECONDS [10] of recording, PROFILE_OUT [target/profile] for the data,
# PROFILE_TOP [25] functions listed. Needs perf (Debian's linux-perf), wrk, curl and, for
# l2, Redis and DynamoDB Local (scripts/start-services.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROW="${1:-}"
case "$ROW" in l1 | l2) ;; *) echo "usage: $0 l1|l2 [BINARY]" >&2; exit 2 ;; esac
BIN="${2:-}"
SECONDS_REC="${PROFILE_SECONDS:-10}"
OUT="${PROFILE_OUT:-$ROOT/target/profile}"
TOP="${PROFILE_TOP:-25}"
log() { echo "[profile $(date +%H:%M:%S)] $*" >&2; }

missing=()
command -v perf >/dev/null || missing+=(linux-perf)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing ${missing[*]} from Debian"
  ($sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}") >&2
fi
if [ -z "$BIN" ]; then
  log "build (release, symbols kept)"
  CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --locked -p tm-local >&2
  BIN="$ROOT/target/release/tm-local"
fi
[ -x "$BIN" ] || { echo "$BIN is not an executable" >&2; exit 2; }
if ! nm "$BIN" >/dev/null 2>&1; then
  echo "$BIN has no symbol table (stripped): build it with CARGO_PROFILE_RELEASE_STRIP=false" >&2
  exit 2
fi

RUN_ID="$$-$(date +%s)"
DIR="$OUT/$ROW-$RUN_ID"
mkdir -p "$DIR"
export TM_JWT_SECRET="tm-profile-secret-$RUN_ID"
PORT_ENV=(TM_L1_TTL_MS=1000)
URL_PATH="latest"
if [ "$ROW" = l2 ]; then
  scripts/start-services.sh redis
  scripts/start-services.sh dynamodb
  export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-profile}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-profile}"
  export AWS_ENDPOINT_URL_DYNAMODB="${AWS_ENDPOINT_URL_DYNAMODB:-http://127.0.0.1:8000}"
  PREFIX="tm-profile-$RUN_ID:"
  PORT_ENV=(TM_L1_TTL_MS=0 TM_TABLE_NAME="tm-profile-$RUN_ID" TM_REDIS_URL=redis://127.0.0.1:6379
    TM_REDIS_PREFIX="$PREFIX")
  URL_PATH="2.3.1"
fi

# shellcheck source=lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"
PORT="$(free_port)"
env "${PORT_ENV[@]}" "$BIN" init --data-dir "$DIR/data" >"$DIR/init.log" 2>&1
env "${PORT_ENV[@]}" "$BIN" --listen "127.0.0.1:$PORT" --data-dir "$DIR/data" >"$DIR/tm-local.log" 2>&1 &
TM_PID=$!
cleanup() {
  kill "$TM_PID" 2>/dev/null || true
  if [ "$ROW" = l2 ]; then
    redis-cli -h 127.0.0.1 --scan --pattern "$PREFIX*" | xargs -r redis-cli -h 127.0.0.1 DEL >/dev/null || true
    if [ -x "$ROOT/target/release/tm-bench" ]; then
      "$ROOT/target/release/tm-bench" drop-table --table "tm-profile-$RUN_ID" >/dev/null 2>&1 || true
    fi
  fi
}
trap cleanup EXIT
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 300); do curl -s -o /dev/null "$BASE/healthz" && break; sleep 0.1; done

token() { "$BIN" token --data-dir "$DIR/token" --sub profile --tenants profile --scope "$1"; }
TOKEN_RW="$(token "routes:read routes:write routes:resolve")"
TOKEN_R="$(token "routes:resolve")"
curl -sf -o /dev/null -X PUT "$BASE/v1/tenants/profile/services/checkout/envs/prod/versions/2.3.1" \
  -H "Authorization: Bearer $TOKEN_RW" -H 'Content-Type: application/json' -d '{"endpoints":[
  {"id":"blue","url":"https://blue.checkout.profile.internal:8443","weight":90,"region":"eu-west-1"},
  {"id":"green","url":"https://green.checkout.profile.internal:8443","weight":10},
  {"id":"dr","url":"https://dr.checkout.profile.internal","priority":1}]}'
URL="$BASE/v1/resolve/profile/checkout/prod/$URL_PATH?key=user-42"
want="hit-$ROW"
xc=""
for _ in $(seq 1 50); do
  xc="$(curl -s -D - -o /dev/null "$URL" -H "Authorization: Bearer $TOKEN_R" | tr -d '\r' |
    awk -F': ' 'tolower($1)=="x-cache"{print $2}')"
  [ "$xc" = "$want" ] && break
  sleep 0.1
done
[ "$xc" = "$want" ] || { log "expected X-Cache: $want, got '$xc'"; exit 1; }

log "load: wrk -t2 -c32 on $URL; recording ${SECONDS_REC}s of tm-local (pid $TM_PID)"
wrk -t2 -c32 -d"$((SECONDS_REC + 4))s" -H "Authorization: Bearer $TOKEN_R" "$URL" >"$DIR/wrk.txt" &
WRK=$!
sleep 2
perf record -q -e cpu-clock -F 1999 -p "$TM_PID" -o "$DIR/perf.data" -- sleep "$SECONDS_REC" 2>"$DIR/perf.log"
wait "$WRK"
grep -E "Requests/sec|Non-2xx|Socket errors" "$DIR/wrk.txt" >&2 || true

perf report -i "$DIR/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
  grep -E '^ +[0-9.]+%' >"$DIR/symbols.txt" || true
echo "## tm-local $ROW hit: $(awk '/Requests\/sec/{print $2}' "$DIR/wrk.txt") req/s under wrk -t2 -c32 while recorded; $BIN"
echo
echo "Top $TOP functions (self time, % of tm-local's samples):"
head -n "$TOP" "$DIR/symbols.txt" | sed -E 's/ +\[[.k]\] / /; s/^ +//' | cut -c1-150
echo
echo "By where the code lives (self time):"
# The symbol column after "[.]" (user) or "[k]" (kernel): the kernel is one group, the
# rest by crate (the first path segment of the demangled name; `<T as path::Trait>` counts
# as T's crate).
awk '{
  pct = $1; sub(/%/, "", pct)
  kind = $2; $1 = ""; $2 = ""; sym = substr($0, 3); sub(/[ -]+$/, "", sym)
  if (kind == "[k]") { g = "kernel (syscalls, TCP on loopback, scheduling)" }
  else {
    s = sym; sub(/^</, "", s); sub(/^&(mut )?/, "", s)
    if (s ~ /^(malloc|free|cfree|realloc|calloc|_int_malloc|_int_free|malloc_consolidate|unlink_chunk|tcache_|__libc_|_int_realloc)/) g = "allocator (glibc malloc)"
    else if (s ~ /^(__memmove|__memcpy|__memset|__memcmp|__strlen|memcpy|memmove|memset|__nss|__GI_)/) g = "libc memory and string routines"
    else if (s ~ /::/) { split(s, p, "::"); g = p[1] }
    else g = "other: " s
  }
  t[g] += pct
} END { for (g in t) printf "%6.2f%%  %s\n", t[g], g }' "$DIR/symbols.txt" | sort -rn | head -n 15
echo
echo "(perf data: $DIR/perf.data; every symbol: $DIR/symbols.txt)"
