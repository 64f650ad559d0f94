#!/usr/bin/env bash
# The benchmark suite: installs what it needs (wrk, nginx-light, redis-tools from Debian),
# starts the servers (scripts/start-services.sh, nginx, tm-local instances on loopback),
# runs every measurement of the benchmark issue, and writes docs/benchmarks.md (the
# generated part between its markers) and docs/benchmarks.json.
#
#   scripts/bench.sh                 # everything (about 15-20 minutes on 2 busy cores)
#   BENCH_ONLY="http_l1 zipf" scripts/bench.sh   # only some rows (the others keep their
#                                    # figures from docs/benchmarks.json, marked with that run)
#   BENCH_QUICK=1 scripts/bench.sh   # short runs, to try the harness (numbers are noisier)
#
# Rows: http_l1 http_l2 miss criterion zipf burst propagation consumer coldstart memory.
# Knobs (environment, defaults in brackets):
#   BENCH_RUNS [5]        interleaved runs of each HTTP / Redis figure and its baseline
#   BENCH_DURATION [8]    seconds per wrk run;  BENCH_CONNECTIONS [32], BENCH_THREADS [2]
#   BENCH_CRITERION_RUNS [3], BENCH_CRITERION_TIME [3] (measurement seconds per bench)
#   BENCH_MISS_ROUTES [200], BENCH_MISS_RUNS [5], BENCH_BURST_TRIALS [6]
#   BENCH_ZIPF_ROUTES [100000], BENCH_ZIPF_RESOLVES [1000000], BENCH_ZIPF_RUNS [3]
#   BENCH_PROP_CHANGES [200], BENCH_PROP_PARALLEL [8], BENCH_PROP_RUNS [3], BENCH_L1_TTL_MS [1000]
#   BENCH_CONSUMER_BATCHES [100] (of 100 records), BENCH_COLD_RUNS [10]
#   BENCH_COLD_BIN [unset] the resolve Lambda binary the coldstart row starts, e.g. the
#                         artifact `sam build` made (.aws-sam/build/ResolveFunction/bootstrap);
#                         unset: target/lambda-release/tm-resolve, built here
#   BENCH_MEM_ROUTES [100000], BENCH_MEM_RESOLVES [3000000] (RSS is sampled every 100k;
#                         the target is read at 1M, "flat" on the last fifth of the run)
#   BENCH_BEFORE [unset]  path to an older tm-local binary: the HTTP rows then also measure
#                         it, interleaved in the same runs (series "tm-local, before"), for
#                         an A/B of a change on the same machine at the same moment
#   BENCH_OUT [target/bench]  work dir: logs, raw results (results.jsonl), data dirs
#   BENCH_QUIET_MAX [0.5] BENCH_QUIET_WAIT [120]: before each run of a ratio row the
#                         script waits (up to BENCH_QUIET_WAIT s) until other processes
#                         keep at most BENCH_QUIET_MAX cores busy, and samples again after
#                         the run; the report leaves runs above the limit out of every ratio
#                         (and says "not judged" when no run was quiet).
#
# Only 127.0.0.1 is ever used; every load is a bounded loop. Processes this script starts
# are stopped by their pids on exit; Redis keys and DynamoDB tables it made are deleted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TM_CACHE="${TM_CACHE:-$HOME/.cache/traffic-manager}"
OUT="${BENCH_OUT:-$ROOT/target/bench}"
QUICK="${BENCH_QUICK:-}"
q() { if [ -n "$QUICK" ]; then echo "$2"; else echo "$1"; fi; } # full / quick default
RUNS="${BENCH_RUNS:-$(q 5 2)}"
DURATION="${BENCH_DURATION:-$(q 8 3)}"
CONNS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
CRIT_RUNS="${BENCH_CRITERION_RUNS:-$(q 3 1)}"
CRIT_TIME="${BENCH_CRITERION_TIME:-$(q 3 1)}"
MISS_ROUTES="${BENCH_MISS_ROUTES:-$(q 200 50)}"
MISS_RUNS="${BENCH_MISS_RUNS:-$(q 5 2)}"
BURST_TRIALS="${BENCH_BURST_TRIALS:-$(q 6 2)}"
ZIPF_ROUTES="${BENCH_ZIPF_ROUTES:-100000}"
ZIPF_RESOLVES="${BENCH_ZIPF_RESOLVES:-$(q 1000000 200000)}"
ZIPF_RUNS="${BENCH_ZIPF_RUNS:-$(q 3 1)}"
PROP_CHANGES="${BENCH_PROP_CHANGES:-$(q 200 40)}"
PROP_PARALLEL="${BENCH_PROP_PARALLEL:-8}"
PROP_RUNS="${BENCH_PROP_RUNS:-$(q 3 1)}"
L1_TTL_MS="${BENCH_L1_TTL_MS:-1000}"
CONSUMER_BATCHES="${BENCH_CONSUMER_BATCHES:-$(q 100 30)}"
COLD_RUNS="${BENCH_COLD_RUNS:-$(q 10 3)}"
MEM_ROUTES="${BENCH_MEM_ROUTES:-100000}"
MEM_RESOLVES="${BENCH_MEM_RESOLVES:-$(q 3000000 200000)}"
QUIET_MAX="${BENCH_QUIET_MAX:-0.5}"
QUIET_WAIT="${BENCH_QUIET_WAIT:-120}"
ONLY=" ${BENCH_ONLY:-http_l1 http_l2 miss criterion zipf burst propagation consumer coldstart memory} "

RUN_ID="$$-$(date +%s)"
TABLE="tm-bench-$RUN_ID"
RESULTS="$OUT/results.jsonl"
BIN="$ROOT/target/release"
BENCH="$BIN/tm-bench"
BEFORE="${BENCH_BEFORE:-}"
if [ -n "$BEFORE" ] && [ ! -x "$BEFORE" ]; then
  echo "BENCH_BEFORE=$BEFORE is not an executable" >&2
  exit 2
fi
mkdir -p "$OUT"
: >"$RESULTS"

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
want() { [[ "$ONLY" == *" $1 "* ]]; }

# Backends for the drivers and the tm-local instances that use them (dummy credentials:
# DynamoDB Local accepts any).
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-bench}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-bench}"
export AWS_ENDPOINT_URL_DYNAMODB="${AWS_ENDPOINT_URL_DYNAMODB:-http://127.0.0.1:8000}"
export TM_REDIS_URL="${TM_REDIS_URL:-redis://127.0.0.1:6379}"
KAFKA="${TM_KAFKA_BROKERS:-127.0.0.1:9092}"
export TM_JWT_SECRET="tm-bench-secret-$RUN_ID"
# RUST_LOG is left as the caller has it: unset, tm-local and the functions log at `info`,
# as they ship.

# ---------------------------------------------------------------- processes we start
# Rows run in subshells (so that `set -e` holds inside them), so what they start is noted
# in files: pids to stop, Redis key prefixes to delete.
PID_FILE="$OUT/pids"
PREFIX_FILE="$OUT/prefixes"
: >"$PID_FILE"
: >"$PREFIX_FILE"
stop_pid() { # pid: TERM, then wait up to 10 s for it to go
  local i
  kill "$1" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
}
cleanup() {
  local rc=$?
  local pid p
  while read -r pid; do [ -n "$pid" ] && stop_pid "$pid"; done <"$PID_FILE"
  if [ -f "$OUT/nginx/nginx.pid" ]; then
    stop_pid "$(cat "$OUT/nginx/nginx.pid")"
  fi
  if [ -x "$BENCH" ]; then
    while read -r p; do
      [ -n "$p" ] && { "$BENCH" cleanup --prefix "$p" >/dev/null 2>&1 || true; }
    done <"$PREFIX_FILE"
    "$BENCH" drop-table --table "$TABLE" >/dev/null 2>&1 || true
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"
wait_http() { # url seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  log "no answer from $1 within $2 s"
  return 1
}
record() { "$BENCH" record "$@" >>"$RESULTS"; }

# busy_cores SECONDS: CPU cores kept busy over the next SECONDS, by every process (from
# /proc/stat). Called while the servers this script started are idle, so it is the load
# of everything else on the machine.
busy_cores() {
  local a b
  read -r -a a </proc/stat
  sleep "$1"
  read -r -a b </proc/stat
  # cpu user nice system idle iowait irq softirq steal
  awk -v n="$(nproc)" -v busy=$(((b[1] + b[2] + b[3] + b[6] + b[7] + b[8]) - (a[1] + a[2] + a[3] + a[6] + a[7] + a[8]))) \
    -v idle=$(((b[4] + b[5]) - (a[4] + a[5]))) \
    'BEGIN { t = busy + idle; printf "%.2f", (t > 0 ? busy / t * n : 0) }'
}
# quiet_gate: waits until other processes keep at most QUIET_MAX cores busy (up to
# QUIET_WAIT s, then goes on and lets the report leave the run out); sets BUSY_BEFORE.
quiet_gate() {
  local waited=0
  BUSY_BEFORE="$(busy_cores 2)"
  while awk -v b="$BUSY_BEFORE" -v m="$QUIET_MAX" 'BEGIN { exit !(b > m) }'; do
    if ((waited >= QUIET_WAIT)); then
      log "still $BUSY_BEFORE cores busy with other processes after ${QUIET_WAIT}s; this run will not count"
      return 0
    fi
    log "waiting for a quiet machine: $BUSY_BEFORE cores busy with other processes"
    sleep 3
    waited=$((waited + 5))
    BUSY_BEFORE="$(busy_cores 2)"
  done
}
# busy_after: the larger of BUSY_BEFORE and a sample taken now (after the run).
busy_after() {
  local after
  after="$(busy_cores 2)"
  awk -v a="$BUSY_BEFORE" -v b="$after" 'BEGIN { printf "%.2f", (a > b ? a : b) }'
}

# ---------------------------------------------------------------- tools, services, build
install_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  command -v redis-benchmark >/dev/null || missing+=(redis-tools)
  command -v curl >/dev/null || missing+=(curl)
  if [ ${#missing[@]} -eq 0 ]; then log "tools: already installed"; return; fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "tools: installing ${missing[*]} from Debian"
  ($sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}") >&2
  # nginx-light's package starts a system nginx where systemd runs; this script runs its own.
}
install_tools
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
log "services"
scripts/start-services.sh redis
scripts/start-services.sh dynamodb
# Kafka (nisshi, a 13-minute build the first time) only for the row that uses it.
if want propagation || want lambda_redis; then scripts/start-services.sh kafka; fi
log "build (release)"
cargo build --release --locked -p tm-local -p tm-bench >&2
COLD_BIN="${BENCH_COLD_BIN:-$ROOT/target/lambda-release/tm-resolve}"
if { want coldstart || want lambda_redis; } && [ -z "${BENCH_COLD_BIN:-}" ]; then
  # The resolve Lambda as it ships: the lambda-release profile (Cargo.toml).
  cargo build --profile lambda-release --locked -p tm-resolve -p tm-write >&2
fi
if want criterion; then
  # The bench profile builds the criterion benches (a first build takes minutes).
  cargo bench --locked -p tm-core --bench resolution --no-run >&2
  cargo bench --locked -p tm-bench --bench handler --no-run >&2
fi

"$BENCH" machine --out "$OUT/machine.json" \
  --tool "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)" \
  --tool "$("$NGINX" -v 2>&1 | head -1)" \
  --tool "$(redis-server --version | cut -d' ' -f1-3)" \
  --set "BENCH_RUNS=$RUNS" --set "BENCH_DURATION=${DURATION}s" --set "wrk=-t$THREADS -c$CONNS" \
  --set "BENCH_ZIPF_RESOLVES=$ZIPF_RESOLVES" --set "BENCH_MEM_RESOLVES=$MEM_RESOLVES" \
  --set "BENCH_PROP_CHANGES=$PROP_CHANGES" --set "TM_L1_TTL_MS=$L1_TTL_MS" \
  --set "BENCH_ONLY=$(echo $ONLY)" --set "BENCH_QUIET_MAX=$QUIET_MAX"
log "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- helpers for servers
# start_tm NAME PORT [VAR=VALUE ...]: a tm-local with its own data dir and environment;
# sets TM_PID.
# start_tm NAME PORT [VAR=VALUE...]: a tm-local (the binary in $TM_BIN, default this build).
start_tm() {
  local name=$1 port=$2 bin="${TM_BIN:-$BIN/tm-local}"
  shift 2
  local dir="$OUT/$name"
  rm -rf "$dir" && mkdir -p "$dir"
  env "$@" "$bin" init --data-dir "$dir/data" >"$dir/init.log" 2>&1
  env "$@" "$bin" --listen "127.0.0.1:$port" --data-dir "$dir/data" >"$dir/tm-local.log" 2>&1 &
  TM_PID=$!
  echo "$TM_PID" >>"$PID_FILE"
  wait_http "http://127.0.0.1:$port/healthz" 30
}
note_prefix() { echo "$1" >>"$PREFIX_FILE"; }
token() { # tenants scope
  "$BIN/tm-local" token --data-dir "$OUT/token" --sub bench --tenants "$1" --scope "$2"
}
mkdir -p "$OUT/token"
TOKEN_RW="$(token bench "routes:read routes:write routes:resolve")"
TOKEN_R="$(token bench "routes:resolve")"
ROUTE_BODY='{"endpoints":[
  {"id":"blue","url":"https://blue.checkout.bench.internal:8443","weight":90,"region":"eu-west-1"},
  {"id":"green","url":"https://green.checkout.bench.internal:8443","weight":10},
  {"id":"dr","url":"https://dr.checkout.bench.internal","priority":1}]}'
put_route() { # port service version
  curl -sf -o /dev/null -X PUT "http://127.0.0.1:$1/v1/tenants/bench/services/$2/envs/prod/versions/$3" \
    -H "Authorization: Bearer $TOKEN_RW" -H 'Content-Type: application/json' -d "$ROUTE_BODY"
}
x_cache() { # url
  curl -s -D - -o /dev/null "$1" -H "Authorization: Bearer $TOKEN_R" | tr -d '\r' |
    awk -F': ' 'tolower($1)=="x-cache"{print $2}'
}
# wrk_rate URL [header]: requests/s of one wrk run; fails on any non-2xx or socket error.
wrk_rate() {
  local out
  if [ $# -gt 1 ]; then
    out="$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -H "$2" "$1")"
  else
    out="$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$1")"
  fi
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
    log "wrk saw errors on $1:"; echo "$out" >&2; return 1
  fi
  awk '/Requests\/sec/{print $2}' <<<"$out"
}
warm() { wrk -t"$THREADS" -c"$CONNS" -d2s "$@" >/dev/null; }
# redis_rate ARGS...: requests/s reported by redis-benchmark -q (the last figure).
redis_rate() {
  redis-benchmark -h 127.0.0.1 -p 6379 -q "$@" | tr '\r' '\n' | grep -Eo '[0-9.]+ requests per second' |
    tail -1 | cut -d' ' -f1
}

# ---------------------------------------------------------------- rows
# start_nginx: nginx serving a static 120-byte JSON file (the issue's baseline) with its
# strongest settings for this test (keep-alive without a request limit, no access log);
# sets NGINX_URL.
start_nginx() {
  local html="$OUT/nginx/html" np
  np="$(free_port)"
  mkdir -p "$html" "$OUT/nginx/logs"
  printf '%s' '{"endpoint":{"id":"blue","url":"https://blue.checkout.acme.internal:8443"},"version":"2.3","revision":7,"ttl_seconds":3}' >"$html/r.json"
  [ "$(wc -c <"$html/r.json")" -eq 120 ] || { log "the static JSON is not 120 bytes"; return 1; }
  cat >"$OUT/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$np;
    root $html;
    location / { default_type application/json; }
  }
}
EOF
  "$NGINX" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -e "$OUT/nginx/logs/error.log"
  NGINX_URL="http://127.0.0.1:$np/r.json"
  wait_http "$NGINX_URL" 10
}
stop_nginx() {
  if [ -f "$OUT/nginx/nginx.pid" ]; then stop_pid "$(cat "$OUT/nginx/nginx.pid")"; fi
}

row_http_l1() {
  log "http_l1: nginx static JSON vs tm-local, L1 hit ($RUNS × ${DURATION}s each, interleaved)"
  start_nginx
  local tp wp
  tp="$(free_port)"
  start_tm l1 "$tp" TM_L1_TTL_MS="$L1_TTL_MS"
  local tm_pid=$TM_PID
  # The same with logging at `warn`: what the per-request `info` span costs.
  wp="$(free_port)"
  start_tm l1warn "$wp" TM_L1_TTL_MS="$L1_TTL_MS" RUST_LOG=warn
  local warn_pid=$TM_PID
  put_route "$tp" checkout 2.3.1
  put_route "$wp" checkout 2.3.1
  local url="http://127.0.0.1:$tp/v1/resolve/bench/checkout/prod/latest?key=user-42"
  local wurl="http://127.0.0.1:$wp/v1/resolve/bench/checkout/prod/latest?key=user-42"
  local burl="" before_pid="" bp
  if [ -n "$BEFORE" ]; then
    bp="$(free_port)"
    TM_BIN="$BEFORE" start_tm l1before "$bp" TM_L1_TTL_MS="$L1_TTL_MS"
    before_pid=$TM_PID
    put_route "$bp" checkout 2.3.1
    burl="http://127.0.0.1:$bp/v1/resolve/bench/checkout/prod/latest?key=user-42"
  fi
  local u xc
  for u in "$url" "$wurl" $burl; do
    x_cache "$u" >/dev/null
    xc="$(x_cache "$u")"
    [ "$xc" = "hit-l1" ] || { log "expected an L1 hit, got '$xc'"; return 1; }
  done
  # The bare baseline: tokio + hyper answering the very bytes tm-local answers.
  local hp hurl
  hp="$(free_port)"
  curl -sf -H "Authorization: Bearer $TOKEN_R" "$url" >"$OUT/bare-body.json"
  "$BENCH" bare --listen "127.0.0.1:$hp" --body-file "$OUT/bare-body.json" &
  local bare_pid=$!
  hurl="http://127.0.0.1:$hp/v1/resolve/bench/checkout/prod/latest?key=user-42"
  local i
  for ((i = 0; i < 100; i++)); do port_open "$hp" && break; sleep 0.1; done
  warm "$NGINX_URL"
  warm "$hurl"
  warm -H "Authorization: Bearer $TOKEN_R" "$url"
  warm -H "Authorization: Bearer $TOKEN_R" "$wurl"
  [ -z "$burl" ] || warm -H "Authorization: Bearer $TOKEN_R" "$burl"
  local r n t w b h busy
  for ((r = 0; r < RUNS; r++)); do
    quiet_gate
    if ((r % 2 == 0)); then
      n="$(wrk_rate "$NGINX_URL")"
      h="$(wrk_rate "$hurl" "Authorization: Bearer $TOKEN_R")"
      t="$(wrk_rate "$url" "Authorization: Bearer $TOKEN_R")"
      [ -z "$burl" ] || b="$(wrk_rate "$burl" "Authorization: Bearer $TOKEN_R")"
      w="$(wrk_rate "$wurl" "Authorization: Bearer $TOKEN_R")"
    else
      w="$(wrk_rate "$wurl" "Authorization: Bearer $TOKEN_R")"
      [ -z "$burl" ] || b="$(wrk_rate "$burl" "Authorization: Bearer $TOKEN_R")"
      t="$(wrk_rate "$url" "Authorization: Bearer $TOKEN_R")"
      h="$(wrk_rate "$hurl" "Authorization: Bearer $TOKEN_R")"
      n="$(wrk_rate "$NGINX_URL")"
    fi
    busy="$(busy_after)"
    record --row http_l1 --series "bare hyper" --run "$r" --value "$h" --unit req/s --busy "$busy" \
      --note "tokio + hyper answering tm-local's bytes, nothing else (the same request and token)"
    [ -z "$burl" ] || record --row http_l1 --series "tm-local, before" --run "$r" --value "$b" \
      --unit req/s --busy "$busy" --note "$BEFORE (BENCH_BEFORE), the same requests"
    record --row http_l1 --series nginx --run "$r" --value "$n" --unit req/s --busy "$busy" \
      --note "static 120-byte JSON, keep-alive"
    record --row http_l1 --series tm-local --run "$r" --value "$t" --unit req/s --busy "$busy" \
      --note "GET /v1/resolve/.../latest?key=, HS256 token checked, X-Cache hit-l1, default log level (info)"
    record --row http_l1 --series "tm-local, RUST_LOG=warn" --run "$r" --value "$w" --unit req/s \
      --busy "$busy" --note "the same with logging at warn"
  done
  stop_nginx
  stop_pid "$bare_pid"
  stop_pid "$tm_pid"
  stop_pid "$warn_pid"
  [ -z "$before_pid" ] || stop_pid "$before_pid"
}

row_http_l2() {
  log "http_l2: redis-benchmark GET vs tm-local with L1 off, Redis hits ($RUNS runs, interleaved)"
  local tp prefix="tm-bench-l2-$RUN_ID:"
  note_prefix "$prefix"
  tp="$(free_port)"
  start_tm l2 "$tp" TM_L1_TTL_MS=0 TM_TABLE_NAME="$TABLE" TM_REDIS_PREFIX="$prefix"
  local tm_pid=$TM_PID
  put_route "$tp" checkout 2.3.1
  local url="http://127.0.0.1:$tp/v1/resolve/bench/checkout/prod/2.3.1?key=user-42"
  local xc i
  for i in $(seq 1 50); do
    xc="$(x_cache "$url")"
    [ "$xc" = "hit-l2" ] && break
    sleep 0.1
  done
  [ "$xc" = "hit-l2" ] || { log "expected a shared-cache hit, got '$xc'"; return 1; }
  local burl="" before_pid="" bp
  if [ -n "$BEFORE" ]; then
    bp="$(free_port)"
    note_prefix "${prefix}before:"
    TM_BIN="$BEFORE" start_tm l2before "$bp" TM_L1_TTL_MS=0 TM_TABLE_NAME="$TABLE" \
      TM_REDIS_PREFIX="${prefix}before:"
    before_pid=$TM_PID
    burl="http://127.0.0.1:$bp/v1/resolve/bench/checkout/prod/2.3.1?key=user-42"
    for i in $(seq 1 50); do
      xc="$(x_cache "$burl")"
      [ "$xc" = "hit-l2" ] && break
      sleep 0.1
    done
    [ "$xc" = "hit-l2" ] || { log "before: expected a shared-cache hit, got '$xc'"; return 1; }
  fi
  # The baseline GETs a key holding exactly what tm-local's HGET returns.
  local key="${prefix}get" entry
  entry="$(redis-cli -h 127.0.0.1 HGET "${prefix}{bench/checkout/prod}" 2.3.1)"
  redis-cli -h 127.0.0.1 SET "$key" "$entry" >/dev/null
  local n_req=$((DURATION * 90000))
  # nginx too: the most any HTTP server answers under the same wrk load, in the same run.
  start_nginx
  warm -H "Authorization: Bearer $TOKEN_R" "$url"
  [ -z "$burl" ] || warm -H "Authorization: Bearer $TOKEN_R" "$burl"
  local r b t n o busy
  for ((r = 0; r < RUNS; r++)); do
    quiet_gate
    if ((r % 2 == 0)); then
      b="$(redis_rate -c "$CONNS" -n "$n_req" GET "$key")"
      t="$(wrk_rate "$url" "Authorization: Bearer $TOKEN_R")"
      [ -z "$burl" ] || o="$(wrk_rate "$burl" "Authorization: Bearer $TOKEN_R")"
      n="$(wrk_rate "$NGINX_URL")"
    else
      n="$(wrk_rate "$NGINX_URL")"
      [ -z "$burl" ] || o="$(wrk_rate "$burl" "Authorization: Bearer $TOKEN_R")"
      t="$(wrk_rate "$url" "Authorization: Bearer $TOKEN_R")"
      b="$(redis_rate -c "$CONNS" -n "$n_req" GET "$key")"
    fi
    busy="$(busy_after)"
    [ -z "$burl" ] || record --row http_l2 --series "tm-local, before" --run "$r" --value "$o" \
      --unit req/s --busy "$busy" --note "$BEFORE (BENCH_BEFORE), the same requests"
    record --row http_l2 --series "redis-benchmark GET" --run "$r" --value "$b" --unit req/s --busy "$busy" \
      --note "redis-benchmark -c $CONNS GET of a ${#entry}-byte value (the cached route entry)"
    record --row http_l2 --series tm-local --run "$r" --value "$t" --unit req/s --busy "$busy" \
      --note "TM_L1_TTL_MS=0, exact version: one Redis round trip per resolve, X-Cache hit-l2"
    record --row http_l2 --series nginx --run "$r" --value "$n" --unit req/s --busy "$busy" \
      --note "static 120-byte JSON under the same wrk load"
  done
  stop_nginx
  stop_pid "$tm_pid"
  [ -z "$before_pid" ] || stop_pid "$before_pid"
}

row_miss() {
  log "miss: resolve on a miss vs raw GetItem, DynamoDB Local"
  quiet_gate
  BENCH_BUSY="$BUSY_BEFORE" "$BENCH" miss --table "$TABLE" --routes "$MISS_ROUTES" --runs "$MISS_RUNS" >>"$RESULTS"
}

row_burst() {
  log "burst: 1,000 concurrent misses on one key"
  "$BENCH" burst --table "$TABLE" --trials "$BURST_TRIALS" >>"$RESULTS"
}

row_criterion() {
  log "criterion: core benches ($CRIT_RUNS runs)"
  local r since
  for ((r = 0; r < CRIT_RUNS; r++)); do
    since="$(date +%s%3N)"
    cargo bench --locked -q -p tm-core --bench resolution -- --warm-up-time 1 \
      --measurement-time "$CRIT_TIME" --noplot >"$OUT/criterion-$r.log" 2>&1
    cargo bench --locked -q -p tm-bench --bench handler -- --warm-up-time 1 \
      --measurement-time "$CRIT_TIME" --noplot >>"$OUT/criterion-$r.log" 2>&1
    "$BENCH" criterion --dir "$ROOT/target/criterion" --run "$r" --since-ms "$since" >>"$RESULTS"
  done
}

row_zipf() {
  log "zipf: Zipf(1.1) over $ZIPF_ROUTES routes, $ZIPF_RESOLVES resolves per phase, $ZIPF_RUNS runs"
  "$BENCH" zipf --routes "$ZIPF_ROUTES" --resolves "$ZIPF_RESOLVES" --runs "$ZIPF_RUNS" \
    --l1-ttl-ms "$L1_TTL_MS" >>"$RESULTS"
}

row_propagation() {
  log "propagation: $PROP_CHANGES changes per run through DynamoDB Local, Kafka (nisshi), Redis"
  local tp prefix="tm-bench-prop-$RUN_ID:"
  note_prefix "$prefix"
  tp="$(free_port)"
  start_tm prop "$tp" TM_L1_TTL_MS="$L1_TTL_MS" TM_TABLE_NAME="$TABLE" TM_REDIS_PREFIX="$prefix" \
    TM_KAFKA_BROKERS="$KAFKA" TM_KAFKA_TOPIC="tm-bench-events-$RUN_ID" \
    TM_KAFKA_GROUP="tm-bench-$RUN_ID"
  "$BENCH" propagation --addr "127.0.0.1:$tp" --token "$TOKEN_RW" --redis-prefix "$prefix" \
    --l1-ttl-ms "$L1_TTL_MS" --changes "$PROP_CHANGES" --parallel "$PROP_PARALLEL" \
    --runs "$PROP_RUNS" --kafka-brokers "$KAFKA" --kafka-topic "tm-bench-events-$RUN_ID" >>"$RESULTS"
  stop_pid "$TM_PID"
}

row_consumer() {
  log "consumer: 100-record MSK batches into Redis vs redis-benchmark SET -P 100 ($RUNS runs)"
  local key="tm-bench-set-$RUN_ID:k" value r b
  note_prefix "tm-bench-set-$RUN_ID:"
  value="$(head -c 384 /dev/zero | tr '\0' 'x')"
  for ((r = 0; r < RUNS; r++)); do
    quiet_gate
    export BENCH_BUSY="$BUSY_BEFORE"
    if ((r % 2 == 0)); then
      b="$(redis_rate -c 1 -P 100 -n 300000 SET "$key" "$value")"
      "$BENCH" consumer --batches "$CONSUMER_BATCHES" --run "$r" >>"$RESULTS" 2>>"$OUT/consumer.log"
    else
      "$BENCH" consumer --batches "$CONSUMER_BATCHES" --run "$r" >>"$RESULTS" 2>>"$OUT/consumer.log"
      b="$(redis_rate -c 1 -P 100 -n 300000 SET "$key" "$value")"
    fi
    record --row consumer --series "redis-benchmark SET -P 100" --run "$r" --value "$b" --unit ops/s \
      --note "redis-benchmark -c 1 -P 100 SET of a 384-byte value"
  done
}

row_coldstart() {
  log "coldstart: tm-resolve under a local Runtime API ($COLD_RUNS runs)"
  "$BENCH" coldstart --bin "$COLD_BIN" --table "$TABLE" --runs "$COLD_RUNS" >>"$RESULTS"
}

row_lambda_redis() {
  log "lambda_redis: tm-resolve under a local Runtime API, rate limit on: Redis commands per resolve, Redis frozen"
  local r
  for ((r = 0; r < RUNS; r++)); do
    PATH="$TM_CACHE/moto/bin:$PATH" "$BENCH" lambda-redis --bin "$COLD_BIN" \
      --write-bin "$(dirname "$COLD_BIN")/tm-write" --table "$TABLE" --run "$r" >>"$RESULTS"
  done
}

row_memory() {
  log "memory: tm-local RSS over $MEM_RESOLVES resolves of $MEM_ROUTES routes"
  local tp prefix="tm-bench-mem-$RUN_ID:"
  note_prefix "$prefix"
  tp="$(free_port)"
  start_tm mem "$tp" TM_L1_TTL_MS="$L1_TTL_MS" TM_TABLE_NAME="$TABLE" TM_REDIS_PREFIX="$prefix"
  "$BENCH" memory --addr "127.0.0.1:$tp" --pid "$TM_PID" --token "$TOKEN_R" --redis-prefix "$prefix" \
    --routes "$MEM_ROUTES" --resolves "$MEM_RESOLVES" --connections "$CONNS" \
    --every 100000 >>"$RESULTS"
  stop_pid "$TM_PID"
}

START=$(date +%s)
for row in http_l1 http_l2 miss criterion zipf burst propagation consumer coldstart lambda_redis memory; do
  if want "$row"; then
    t0=$(date +%s)
    # A subshell in the background, so that `set -e` stays in force inside the row.
    ("row_$row") &
    if ! wait $!; then
      log "$row: FAILED (see the log above); the report shows what it measured before"
    fi
    log "$row: $(($(date +%s) - t0)) s"
  fi
done

"$BENCH" report --results "$RESULTS" --machine "$OUT/machine.json" \
  --md "$ROOT/docs/benchmarks.md" --json "$ROOT/docs/benchmarks.json" --keep "$ROOT/docs/benchmarks.json"
log "done in $(($(date +%s) - START)) s: docs/benchmarks.md, docs/benchmarks.json (raw: $RESULTS)"
