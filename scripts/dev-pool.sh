#!/usr/bin/env bash
# Local sharded pool of standalone Redis groups (twemproxy-style) for slotway development, tests, the demo and
# benchmarks: N shards, each a primary with R replicas, optionally 3 sentinels watching every shard (master names
# shard1..shardN). AUTH on the data nodes (and the sentinels); TLS optional (off by default: nutcracker, the proxy
# the pool is compared with, has none).
#
#   scripts/dev-pool.sh start  [--dir DIR] [--shards N] [--replicas R] [--ports "P1 P2 ..."]
#                              [--sentinel-ports "S1 S2 S3"] [--tls] [--password PW] [--sentinel-password PW]
#                              [--down-after MS] [--failover-timeout MS]
#   scripts/dev-pool.sh stop   [--dir DIR]
#   scripts/dev-pool.sh status [--dir DIR]
#   scripts/dev-pool.sh env    [--dir DIR]      # prints DIR/env (source it)
#
# Defaults: DIR=<repo>/.dev-pool, 4 shards, 0 replicas, data ports 7301.. (shard i's primary first, then its
# replicas), no sentinels, no TLS, password $DEV_POOL_PASSWORD or "slotway-dev-pass" (empty: no AUTH), sentinels'
# own password $DEV_POOL_SENTINEL_PASSWORD or "slotway-sentinel-pass". With --sentinel-ports the sentinels watch
# every shard (down-after-milliseconds 1000, failover-timeout 5000 by default: fast failovers for tests).
#
# `start` also writes, for the pool as started:
#   DIR/slotway.toml     a slotway configuration: [sharding] ketama over fnv1a_64, hash_tag "{}", one [[shards]]
#                        per shard named shard1..shardN (static groups, or Sentinel groups with --sentinel-ports)
#   DIR/nutcracker.yml   the same pool for twemproxy (each shard's primary, the same names), listening on
#                        127.0.0.1:$DEV_POOL_NUTCRACKER_PORT (default 22121)
#   DIR/env              SLOTWAY_UPSTREAM_PASSWORD, DEV_POOL_PRIMARIES, ... (source it)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

die() { echo "dev-pool: error: $*" >&2; exit 1; }
log() { echo "dev-pool: $*" >&2; }
usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

ensure_deps() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
  if [[ -n "$SENTINEL_PORTS" ]]; then command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel); fi
  if [[ "$TLS" == 1 ]]; then command -v openssl >/dev/null 2>&1 || missing+=(openssl); fi
  if ((${#missing[@]})); then
    log "installing ${missing[*]} with apt-get"
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "${missing[@]}" >&2
  fi
}

# ---------------------------------------------------------------- options
DIR="${DEV_POOL_DIR:-$REPO_ROOT/.dev-pool}"
SHARDS="${DEV_POOL_SHARDS:-4}"
REPLICAS="${DEV_POOL_REPLICAS:-0}"
PORTS="${DEV_POOL_PORTS:-}"
SENTINEL_PORTS="${DEV_POOL_SENTINEL_PORTS:-}"
TLS="${DEV_POOL_TLS:-0}"
PASSWORD="${DEV_POOL_PASSWORD-slotway-dev-pass}"
SENTINEL_PASSWORD="${DEV_POOL_SENTINEL_PASSWORD-slotway-sentinel-pass}"
DOWN_AFTER="${DEV_POOL_DOWN_AFTER:-1000}"
FAILOVER_TIMEOUT="${DEV_POOL_FAILOVER_TIMEOUT:-5000}"
NUTCRACKER_PORT="${DEV_POOL_NUTCRACKER_PORT:-22121}"
WAIT_SECS="${DEV_POOL_WAIT:-60}"

CMD="${1:-}"
[[ -n "$CMD" ]] || { usage >&2; exit 2; }
shift
while (($#)); do
  case "$1" in
    --dir) DIR="$2"; shift 2 ;;
    --shards) SHARDS="$2"; shift 2 ;;
    --replicas) REPLICAS="$2"; shift 2 ;;
    --ports) PORTS="$2"; shift 2 ;;
    --sentinel-ports) SENTINEL_PORTS="$2"; shift 2 ;;
    --tls) TLS=1; shift ;;
    --no-tls) TLS=0; shift ;;
    --password) PASSWORD="$2"; shift 2 ;;
    --sentinel-password) SENTINEL_PASSWORD="$2"; shift 2 ;;
    --down-after) DOWN_AFTER="$2"; shift 2 ;;
    --failover-timeout) FAILOVER_TIMEOUT="$2"; shift 2 ;;
    --nutcracker-port) NUTCRACKER_PORT="$2"; shift 2 ;;
    --wait) WAIT_SECS="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
done
[[ "$CMD" == start ]] && mkdir -p "$DIR"
if [[ -d "$DIR" ]]; then DIR="$(cd "$DIR" && pwd)"; fi
TLS_DIR="$DIR/tls"
NODES_DIR="$DIR/nodes"
SENTINELS_DIR="$DIR/sentinels"

load_state() {
  if [[ -f "$DIR/state" ]]; then
    # shellcheck disable=SC1091
    source "$DIR/state"
    TLS="$STATE_TLS"; PASSWORD="$STATE_PASSWORD"; SENTINEL_PASSWORD="$STATE_SENTINEL_PASSWORD"
    SHARDS="$STATE_SHARDS"; REPLICAS="$STATE_REPLICAS"; PORTS="$STATE_PORTS"; SENTINEL_PORTS="$STATE_SENTINEL_PORTS"
  fi
}

cli_with() { # password port args...
  local pw="$1" port="$2"; shift 2
  local tls_args=()
  [[ "$TLS" == 1 ]] && tls_args=(--tls --cacert "$TLS_DIR/ca.crt")
  if [[ -n "$pw" ]]; then
    REDISCLI_AUTH="$pw" timeout 20 redis-cli "${tls_args[@]}" -h 127.0.0.1 -p "$port" "$@"
  else
    env -u REDISCLI_AUTH timeout 20 redis-cli "${tls_args[@]}" -h 127.0.0.1 -p "$port" "$@"
  fi
}
rcli() { cli_with "$PASSWORD" "$@"; }
scli() { cli_with "$SENTINEL_PASSWORD" "$@"; }

pid_from() { # pidfile: prints the pid of a live redis process, or nothing
  local pid
  [[ -f "$1" ]] || return 0
  pid="$(cat "$1" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if [[ -r "/proc/$pid/comm" ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == redis-* ]] &&
     ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
    echo "$pid"
  fi
}

gen_tls() {
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR"
    umask 077
    if ! [[ -f ca.crt && -f ca.key ]]; then
      openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout ca.key -out ca.crt \
        -days 3650 -subj "/O=slotway-dev/CN=slotway dev CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    fi
    if ! [[ -f redis.crt && -f redis.key ]]; then
      openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout redis.key -out redis.csr \
        -subj "/O=slotway-dev/CN=redis node" 2>/dev/null
      printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >redis.ext
      openssl x509 -req -in redis.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out redis.crt -days 3650 \
        -sha256 -extfile redis.ext 2>/dev/null
      rm -f redis.csr redis.ext
    fi
    chmod 644 ./*.crt
    chmod 600 ./*.key
  ) || die "could not generate TLS material in $TLS_DIR"
}

tls_conf() {
  local port="$1"
  if [[ "$TLS" == 1 ]]; then
    printf '%s\n' "port 0" "tls-port $port" "tls-replication yes" "tls-cert-file $TLS_DIR/redis.crt" \
      "tls-key-file $TLS_DIR/redis.key" "tls-ca-cert-file $TLS_DIR/ca.crt" "tls-auth-clients optional"
  else
    echo "port $port"
  fi
}

# Shard i (1-based) owns ports PORT_LIST[(i-1)*(R+1) .. i*(R+1)-1]; the first is its primary.
shard_ports() { local i="$1" n=$((REPLICAS + 1)); echo "${PORT_LIST[@]:$(((i - 1) * n)):$n}"; }

do_stop() {
  load_state
  local d pid pids=()
  for d in "$SENTINELS_DIR"/*/ "$NODES_DIR"/*/; do
    [[ -d "$d" ]] || continue
    for f in "$d/sentinel.pid" "$d/redis.pid"; do
      pid="$(pid_from "$f")"
      [[ -n "$pid" ]] && pids+=("$pid")
    done
  done
  local sig i left
  if ((${#pids[@]})); then
    for sig in TERM KILL; do
      for pid in "${pids[@]}"; do
        if [[ -d /proc/$pid ]]; then kill "-$sig" "$pid" 2>/dev/null || true; fi
      done
      for ((i = 0; i < 50; i++)); do
        left=0
        for pid in "${pids[@]}"; do
          if [[ -d /proc/$pid ]] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then left=1; fi
        done
        ((left)) || break
        sleep 0.1
      done
      ((left)) || break
    done
  fi
  rm -rf "$NODES_DIR" "$SENTINELS_DIR" "$DIR/state" "$DIR/env"
  log "stopped (${#pids[@]} process(es)) in $DIR"
}

fail_start() {
  local f
  for f in "$NODES_DIR"/*/redis.log "$SENTINELS_DIR"/*/sentinel.log; do
    [[ -f "$f" ]] || continue
    echo "----- ${f#"$DIR"/} (tail) -----" >&2
    tail -n 10 "$f" >&2 || true
  done
  die "$*"
}

write_configs() {
  local i p toml="$DIR/slotway.toml.tmp" yml="$DIR/nutcracker.yml.tmp"
  {
    echo "# generated by scripts/dev-pool.sh: $SHARDS shards, $REPLICAS replica(s) each"
    echo "listen = \"127.0.0.1:6380\""
    echo
    echo "[sharding]"
    echo "distribution = \"ketama\""
    echo "hash = \"fnv1a_64\""
    echo "hash_tag = \"{}\""
    if [[ -n "$SENTINEL_PORTS" ]]; then
      echo
      echo "[sentinel]"
      printf 'addresses = [%s]\n' "$(for s in $SENTINEL_PORTS; do printf '"127.0.0.1:%s", ' "$s"; done | sed 's/, $//')"
      [[ "$TLS" == 1 ]] && printf '[sentinel.tls]\nenabled = true\nca = "%s"\n' "$TLS_DIR/ca.crt"
    fi
    if [[ "$TLS" == 1 ]]; then printf '\n[upstream.tls]\nenabled = true\nca = "%s"\n' "$TLS_DIR/ca.crt"; fi
    for ((i = 1; i <= SHARDS; i++)); do
      echo
      echo "[[shards]]"
      echo "name = \"shard$i\""
      if [[ -n "$SENTINEL_PORTS" ]]; then
        echo "sentinel_master = \"shard$i\""
      else
        printf 'servers = [%s]\n' "$(for p in $(shard_ports "$i"); do printf '"127.0.0.1:%s", ' "$p"; done | sed 's/, $//')"
      fi
    done
  } >"$toml"
  {
    echo "# generated by scripts/dev-pool.sh: the same pool for nutcracker (each shard's primary)"
    echo "pool:"
    echo "  listen: 127.0.0.1:$NUTCRACKER_PORT"
    echo "  hash: fnv1a_64"
    echo "  hash_tag: \"{}\""
    echo "  distribution: ketama"
    echo "  redis: true"
    [[ -n "$PASSWORD" ]] && echo "  redis_auth: $PASSWORD"
    echo "  servers:"
    for ((i = 1; i <= SHARDS; i++)); do
      read -r -a ps <<<"$(shard_ports "$i")"
      echo "    - 127.0.0.1:${ps[0]}:1 shard$i"
    done
  } >"$yml"
  mv "$toml" "$DIR/slotway.toml"
  mv "$yml" "$DIR/nutcracker.yml"
  chmod 600 "$DIR/nutcracker.yml"
}

write_env() {
  local i primaries=()
  for ((i = 1; i <= SHARDS; i++)); do read -r -a ps <<<"$(shard_ports "$i")"; primaries+=("${ps[0]}"); done
  {
    echo "# generated by scripts/dev-pool.sh; source it: . $DIR/env"
    printf 'export SLOTWAY_UPSTREAM_PASSWORD=%q\n' "$PASSWORD"
    printf 'export SLOTWAY_SENTINEL_PASSWORD=%q\n' "$SENTINEL_PASSWORD"
    printf 'export REDISCLI_AUTH=%q\n' "$PASSWORD"
    printf 'export DEV_POOL_DIR=%q\n' "$DIR"
    printf 'export DEV_POOL_PRIMARIES=%q\n' "${primaries[*]}"
    printf 'export DEV_POOL_PORTS=%q\n' "${PORT_LIST[*]}"
    printf 'export DEV_POOL_SENTINEL_PORTS=%q\n' "$SENTINEL_PORTS"
    printf 'export DEV_POOL_TLS=%q\n' "$TLS"
    printf 'export DEV_POOL_CONFIG=%q\n' "$DIR/slotway.toml"
    printf 'export DEV_POOL_NUTCRACKER_CONFIG=%q\n' "$DIR/nutcracker.yml"
    # shellcheck disable=SC2016 # printed for the reader
    printf '# slotway --config $DEV_POOL_CONFIG    nutcracker -c $DEV_POOL_NUTCRACKER_CONFIG\n'
  } >"$DIR/env.tmp"
  mv "$DIR/env.tmp" "$DIR/env"
}

pool_healthy() { # prints the reason when not healthy
  local i p s out ps
  for ((i = 1; i <= SHARDS; i++)); do
    read -r -a ps <<<"$(shard_ports "$i")"
    for p in "${ps[@]:1}"; do
      out="$(rcli "$p" INFO replication 2>&1)" || { echo "$p: $out"; return 1; }
      grep -q '^master_link_status:up' <<<"$out" || { echo "$p: replica link not up"; return 1; }
    done
    for s in $SENTINEL_PORTS; do
      out="$(scli "$s" SENTINEL get-master-addr-by-name "shard$i" 2>&1)" || { echo "sentinel $s: $out"; return 1; }
      grep -q "^${ps[0]}$" <<<"$out" || { echo "sentinel $s names for shard$i: $out"; return 1; }
      out="$(scli "$s" SENTINEL MASTER "shard$i" 2>&1)"
      grep -A1 '^num-slaves$' <<<"$out" | grep -q "^$REPLICAS$" || { echo "sentinel $s: shard$i replicas"; return 1; }
      grep -A1 '^num-other-sentinels$' <<<"$out" | grep -q "^$(($(wc -w <<<"$SENTINEL_PORTS") - 1))$" ||
        { echo "sentinel $s: shard$i: other sentinels not known yet"; return 1; }
    done
  done
  return 0
}

do_start() {
  local i p s nd sd n=$((SHARDS * (REPLICAS + 1)))
  [[ "$SHARDS" =~ ^[0-9]+$ && "$SHARDS" -ge 1 ]] || die "--shards: a number >= 1"
  [[ "$REPLICAS" =~ ^[0-9]+$ ]] || die "--replicas: a number"
  if [[ -z "$PORTS" ]]; then PORTS="$(seq -s ' ' 7301 $((7300 + n)))"; fi
  read -r -a PORT_LIST <<<"$PORTS"
  ((${#PORT_LIST[@]} == n)) || die "--ports: need $n ports ($SHARDS shards x $((REPLICAS + 1)) nodes), got ${#PORT_LIST[@]}"
  [[ -z "$SENTINEL_PORTS" || "$REPLICAS" -ge 1 ]] || die "sentinels need --replicas >= 1 to fail over"
  ensure_deps
  local keep=("$TLS" "$PASSWORD" "$SENTINEL_PASSWORD" "$SHARDS" "$REPLICAS" "$PORTS" "$SENTINEL_PORTS")
  do_stop
  TLS="${keep[0]}"; PASSWORD="${keep[1]}"; SENTINEL_PASSWORD="${keep[2]}"; SHARDS="${keep[3]}"
  REPLICAS="${keep[4]}"; PORTS="${keep[5]}"; SENTINEL_PORTS="${keep[6]}"
  read -r -a PORT_LIST <<<"$PORTS"
  [[ "$TLS" == 1 ]] && gen_tls
  mkdir -p "$NODES_DIR" "$SENTINELS_DIR"
  {
    printf 'STATE_TLS=%q\nSTATE_PASSWORD=%q\nSTATE_SENTINEL_PASSWORD=%q\n' "$TLS" "$PASSWORD" "$SENTINEL_PASSWORD"
    printf 'STATE_SHARDS=%q\nSTATE_REPLICAS=%q\nSTATE_PORTS=%q\n' "$SHARDS" "$REPLICAS" "$PORTS"
    printf 'STATE_SENTINEL_PORTS=%q\n' "$SENTINEL_PORTS"
  } >"$DIR/state"
  chmod 600 "$DIR/state"
  for ((i = 1; i <= SHARDS; i++)); do
    read -r -a ps <<<"$(shard_ports "$i")"
    for p in "${ps[@]}"; do
      nd="$NODES_DIR/$p"
      mkdir -p "$nd"
      {
        echo "bind 127.0.0.1"
        echo "protected-mode no"
        tls_conf "$p"
        echo "daemonize yes"
        echo "dir $nd"
        echo "pidfile $nd/redis.pid"
        echo "logfile $nd/redis.log"
        echo "appendonly no"
        echo "save \"\""
        echo "shutdown-timeout 0"
        echo "repl-diskless-sync-delay 0"
        echo "maxclients 4064"
        if [[ -n "$PASSWORD" ]]; then printf 'requirepass "%s"\nmasterauth "%s"\n' "$PASSWORD" "$PASSWORD"; fi
        if [[ "$p" != "${ps[0]}" ]]; then echo "replicaof 127.0.0.1 ${ps[0]}"; fi
      } >"$nd/redis.conf"
      redis-server "$nd/redis.conf" >"$nd/start.out" 2>&1 || fail_start "redis-server on $p failed: $(cat "$nd/start.out")"
    done
  done
  local deadline=$((SECONDS + 15))
  for p in "${PORT_LIST[@]}"; do
    until [[ "$(rcli "$p" PING 2>/dev/null)" == PONG ]]; do
      ((SECONDS < deadline)) || fail_start "node $p does not answer PING"
      sleep 0.05
    done
  done
  for s in $SENTINEL_PORTS; do
    sd="$SENTINELS_DIR/$s"
    mkdir -p "$sd"
    {
      echo "bind 127.0.0.1"
      echo "protected-mode no"
      tls_conf "$s"
      echo "daemonize yes"
      echo "dir $sd"
      echo "pidfile $sd/sentinel.pid"
      echo "logfile $sd/sentinel.log"
      for ((i = 1; i <= SHARDS; i++)); do
        read -r -a ps <<<"$(shard_ports "$i")"
        echo "sentinel monitor shard$i 127.0.0.1 ${ps[0]} 2"
        echo "sentinel down-after-milliseconds shard$i $DOWN_AFTER"
        echo "sentinel failover-timeout shard$i $FAILOVER_TIMEOUT"
        echo "sentinel parallel-syncs shard$i 1"
        if [[ -n "$PASSWORD" ]]; then printf 'sentinel auth-pass shard%s "%s"\n' "$i" "$PASSWORD"; fi
      done
      if [[ -n "$SENTINEL_PASSWORD" ]]; then
        printf 'requirepass "%s"\nsentinel sentinel-pass "%s"\n' "$SENTINEL_PASSWORD" "$SENTINEL_PASSWORD"
      fi
    } >"$sd/sentinel.conf"
    redis-sentinel "$sd/sentinel.conf" >"$sd/start.out" 2>&1 || fail_start "redis-sentinel on $s failed"
  done
  local why="" deadline=$((SECONDS + WAIT_SECS))
  until why="$(pool_healthy)"; do
    ((SECONDS < deadline)) || fail_start "pool not healthy after ${WAIT_SECS}s: $why"
    sleep 0.2
  done
  write_configs
  write_env
  log "pool: $SHARDS shards x $((REPLICAS + 1)) nodes on ${PORT_LIST[*]}${SENTINEL_PORTS:+, sentinels $SENTINEL_PORTS}, tls=$TLS"
  log "ready in $DIR (env: $DIR/env; slotway.toml and nutcracker.yml beside it)"
}

do_status() {
  load_state
  [[ -d "$NODES_DIR" ]] || { echo "no pool in $DIR"; return 1; }
  read -r -a PORT_LIST <<<"$PORTS"
  local i p pid
  for ((i = 1; i <= SHARDS; i++)); do
    for p in $(shard_ports "$i"); do
      pid="$(pid_from "$NODES_DIR/$p/redis.pid")"
      echo "shard$i node $p: ${pid:+running (pid $pid), }$(rcli "$p" ROLE 2>/dev/null | head -1 || echo down)"
    done
  done
  for p in $SENTINEL_PORTS; do
    pid="$(pid_from "$SENTINELS_DIR/$p/sentinel.pid")"
    if [[ -n "$pid" ]]; then echo "sentinel $p: running (pid $pid)"; else echo "sentinel $p: down"; fi
  done
}

case "$CMD" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  env)
    [[ -f "$DIR/env" ]] || die "no running pool in $DIR (start it first)"
    cat "$DIR/env"
    ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
