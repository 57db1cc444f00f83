#!/usr/bin/env bash
# Local Sentinel-managed Redis group (1 primary, 2 replicas, 3 sentinels) for slotway development, tests,
# the demo and benchmarks. TLS and AUTH on the data nodes and on the sentinels.
#
#   scripts/dev-sentinel.sh start  [--dir DIR] [--ports "P R1 R2"] [--sentinel-ports "S1 S2 S3"]
#                                  [--no-tls] [--password PW] [--sentinel-password PW] [--master-name NAME]
#                                  [--down-after MS] [--failover-timeout MS]
#   scripts/dev-sentinel.sh stop   [--dir DIR]
#   scripts/dev-sentinel.sh status [--dir DIR]
#   scripts/dev-sentinel.sh env    [--dir DIR]      # prints DIR/env (source it)
#
# Defaults: DIR=<repo>/.dev-sentinel, data ports 7101 (primary) 7102 7103, sentinel ports 27101..27103,
# TLS on (port 0 + tls-port; replication and sentinel links over TLS), data password $DEV_SENTINEL_PASSWORD or
# "slotway-dev-pass", sentinels' own password $DEV_SENTINEL_SENTINEL_PASSWORD or "slotway-sentinel-pass", master
# name "mymaster", down-after-milliseconds 1000, failover-timeout 5000 (fast failovers for tests). Every option
# can also be given through the environment: DEV_SENTINEL_DIR, DEV_SENTINEL_PORTS, DEV_SENTINEL_SENTINEL_PORTS,
# DEV_SENTINEL_TLS=0|1, DEV_SENTINEL_MASTER, DEV_SENTINEL_DOWN_AFTER, DEV_SENTINEL_FAILOVER_TIMEOUT,
# DEV_SENTINEL_WAIT (seconds to wait for a healthy group, default 60). An empty password disables that AUTH.
#
# Layout of DIR:
#   tls/        ca.crt ca.key redis.crt redis.key ... (generated once, kept by `stop`)
#   nodes/P/    redis.conf redis.pid redis.log (one per data node)
#   sentinels/S/ sentinel.conf sentinel.pid sentinel.log (one per sentinel; sentinels rewrite their conf)
#   state       settings of the running group (for stop/status)
#   env         variables for users (SLOTWAY_SENTINEL_ARGS, passwords, CA path, ...)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

die() { echo "dev-sentinel: error: $*" >&2; exit 1; }
log() { echo "dev-sentinel: $*" >&2; }

usage() {
  sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

ensure_deps() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
  command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if ((${#missing[@]})); then
    log "installing ${missing[*]} with apt-get"
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "${missing[@]}" >&2
  fi
}

# ---------------------------------------------------------------- options
DIR="${DEV_SENTINEL_DIR:-$REPO_ROOT/.dev-sentinel}"
PORTS="${DEV_SENTINEL_PORTS:-7101 7102 7103}"
SENTINEL_PORTS="${DEV_SENTINEL_SENTINEL_PORTS:-27101 27102 27103}"
TLS="${DEV_SENTINEL_TLS:-1}"
PASSWORD="${DEV_SENTINEL_PASSWORD-slotway-dev-pass}"
SENTINEL_PASSWORD="${DEV_SENTINEL_SENTINEL_PASSWORD-slotway-sentinel-pass}"
MASTER="${DEV_SENTINEL_MASTER:-mymaster}"
DOWN_AFTER="${DEV_SENTINEL_DOWN_AFTER:-1000}"
FAILOVER_TIMEOUT="${DEV_SENTINEL_FAILOVER_TIMEOUT:-5000}"
WAIT_SECS="${DEV_SENTINEL_WAIT:-60}"

CMD="${1:-}"
[[ -n "$CMD" ]] || { usage >&2; exit 2; }
shift
while (($#)); do
  case "$1" in
    --dir) DIR="$2"; shift 2 ;;
    --ports) PORTS="$2"; shift 2 ;;
    --sentinel-ports) SENTINEL_PORTS="$2"; shift 2 ;;
    --no-tls) TLS=0; shift ;;
    --tls) TLS=1; shift ;;
    --password) PASSWORD="$2"; shift 2 ;;
    --sentinel-password) SENTINEL_PASSWORD="$2"; shift 2 ;;
    --master-name) MASTER="$2"; shift 2 ;;
    --down-after) DOWN_AFTER="$2"; shift 2 ;;
    --failover-timeout) FAILOVER_TIMEOUT="$2"; shift 2 ;;
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
read -r -a PORT_LIST <<<"$PORTS"
read -r -a SENTINEL_LIST <<<"$SENTINEL_PORTS"

# ---------------------------------------------------------------- helpers
# redis-cli against a data node (rcli) or a sentinel (scli). Passwords travel in REDISCLI_AUTH, never in argv.
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

pid_from() { # pidfile comm-prefix: prints the pid of a live process, or nothing
  local pid
  [[ -f "$1" ]] || return 0
  pid="$(cat "$1" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if [[ -r "/proc/$pid/comm" ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2"* ]] &&
     ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
    echo "$pid"
  fi
}

load_state() {
  if [[ -f "$DIR/state" ]]; then
    # shellcheck disable=SC1091
    source "$DIR/state"
    TLS="$STATE_TLS"; PASSWORD="$STATE_PASSWORD"; SENTINEL_PASSWORD="$STATE_SENTINEL_PASSWORD"; MASTER="$STATE_MASTER"
    read -r -a PORT_LIST <<<"$STATE_PORTS"
    read -r -a SENTINEL_LIST <<<"$STATE_SENTINEL_PORTS"
  fi
}

# ---------------------------------------------------------------- TLS material (as scripts/dev-cluster.sh)
gen_tls() {
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR"
    umask 077
    gen_ca() { # name cn
      [[ -f "$1.crt" && -f "$1.key" ]] && return 0
      openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$1.key" -out "$1.crt" -days 3650 -subj "/O=slotway-dev/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    }
    gen_leaf() { # name ca cn extfile-content
      [[ -f "$1.crt" && -f "$1.key" ]] && return 0
      openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$1.key" -out "$1.csr" -subj "/O=slotway-dev/CN=$3" 2>/dev/null
      printf '%s\n' "$4" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial \
        -out "$1.crt" -days 3650 -sha256 -extfile "$1.ext" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    gen_ca ca "slotway dev CA"
    gen_ca other-ca "unrelated CA"
    gen_leaf redis ca "redis node" \
"basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:node.slotway.test"
    chmod 644 ./*.crt
    chmod 600 ./*.key
  ) || die "could not generate TLS material in $TLS_DIR"
}

tls_conf() { # the TLS lines shared by data nodes and sentinels
  local port="$1"
  if [[ "$TLS" == 1 ]]; then
    echo "port 0"
    echo "tls-port $port"
    echo "tls-replication yes"
    echo "tls-cert-file $TLS_DIR/redis.crt"
    echo "tls-key-file $TLS_DIR/redis.key"
    echo "tls-ca-cert-file $TLS_DIR/ca.crt"
    echo "tls-auth-clients optional"
  else
    echo "port $port"
  fi
}

# ---------------------------------------------------------------- stop
stop_pids() { # pid...: TERM, then KILL, waiting for each
  local pid i left sig
  for sig in TERM KILL; do
    for pid in "$@"; do
      if [[ -d /proc/$pid ]]; then kill "-$sig" "$pid" 2>/dev/null || true; fi
    done
    for ((i = 0; i < 50; i++)); do
      left=0
      for pid in "$@"; do
        if [[ -d /proc/$pid ]] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then left=1; fi
      done
      ((left)) || return 0
      sleep 0.1
    done
  done
  return 1
}

do_stop() {
  load_state
  local d pid pids=()
  for d in "$SENTINELS_DIR"/*/ "$NODES_DIR"/*/; do
    [[ -d "$d" ]] || continue
    pid="$(pid_from "$d/sentinel.pid" redis-)"
    [[ -n "$pid" ]] && pids+=("$pid")
    pid="$(pid_from "$d/redis.pid" redis-)"
    [[ -n "$pid" ]] && pids+=("$pid")
  done
  if ((${#pids[@]})); then
    stop_pids "${pids[@]}" || die "could not stop pids: ${pids[*]}"
  fi
  rm -rf "$NODES_DIR" "$SENTINELS_DIR" "$DIR/state" "$DIR/env"
  log "stopped (${#pids[@]} process(es)) in $DIR"
}

# ---------------------------------------------------------------- start
write_node_conf() { # port dir primary-port-or-empty
  local port="$1" nd="$2" primary="$3"
  {
    echo "bind 127.0.0.1"
    echo "protected-mode no"
    tls_conf "$port"
    echo "daemonize yes"
    echo "dir $nd"
    echo "pidfile $nd/redis.pid"
    echo "logfile $nd/redis.log"
    echo "loglevel notice"
    echo "appendonly no"
    echo "save \"\""
    echo "shutdown-timeout 0"
    echo "repl-diskless-sync-delay 0"
    echo "maxclients 4064"
    if [[ -n "$PASSWORD" ]]; then
      printf 'requirepass "%s"\n' "$PASSWORD"
      printf 'masterauth "%s"\n' "$PASSWORD"
    fi
    if [[ -n "$primary" ]]; then echo "replicaof 127.0.0.1 $primary"; fi
  } >"$nd/redis.conf"
}

write_sentinel_conf() { # port dir
  local port="$1" sd="$2"
  {
    echo "bind 127.0.0.1"
    echo "protected-mode no"
    tls_conf "$port"
    echo "daemonize yes"
    echo "dir $sd"
    echo "pidfile $sd/sentinel.pid"
    echo "logfile $sd/sentinel.log"
    echo "loglevel notice"
    echo "sentinel monitor $MASTER 127.0.0.1 ${PORT_LIST[0]} 2"
    echo "sentinel down-after-milliseconds $MASTER $DOWN_AFTER"
    echo "sentinel failover-timeout $MASTER $FAILOVER_TIMEOUT"
    echo "sentinel parallel-syncs $MASTER 1"
    if [[ -n "$PASSWORD" ]]; then printf 'sentinel auth-pass %s "%s"\n' "$MASTER" "$PASSWORD"; fi
    if [[ -n "$SENTINEL_PASSWORD" ]]; then
      # The sentinels' own password, and what they use to talk to each other.
      printf 'requirepass "%s"\n' "$SENTINEL_PASSWORD"
      printf 'sentinel sentinel-pass "%s"\n' "$SENTINEL_PASSWORD"
    fi
  } >"$sd/sentinel.conf"
}

fail_start() {
  local f
  for f in "$NODES_DIR"/*/redis.log "$SENTINELS_DIR"/*/sentinel.log; do
    [[ -f "$f" ]] || continue
    echo "----- ${f#"$DIR"/} (tail) -----" >&2
    tail -n 15 "$f" >&2 || true
  done
  die "$*"
}

group_healthy() { # prints the reason when not healthy
  local p s out n=${#PORT_LIST[@]}
  for p in "${PORT_LIST[@]:1}"; do
    out="$(rcli "$p" INFO replication 2>&1)" || { echo "$p: $out"; return 1; }
    grep -q '^master_link_status:up' <<<"$out" || { echo "$p: replica link not up"; return 1; }
  done
  for s in "${SENTINEL_LIST[@]}"; do
    out="$(scli "$s" SENTINEL get-master-addr-by-name "$MASTER" 2>&1)" || { echo "sentinel $s: $out"; return 1; }
    grep -q "^${PORT_LIST[0]}$" <<<"$out" || { echo "sentinel $s names: $out"; return 1; }
    out="$(scli "$s" SENTINEL MASTER "$MASTER" 2>&1)"
    grep -A1 '^num-other-sentinels$' <<<"$out" | grep -q "^$((${#SENTINEL_LIST[@]} - 1))$" ||
      { echo "sentinel $s does not know the other sentinels yet"; return 1; }
    grep -A1 '^num-slaves$' <<<"$out" | grep -q "^$((n - 1))$" ||
      { echo "sentinel $s does not know every replica yet"; return 1; }
    grep -A1 '^flags$' <<<"$out" | grep -q '^master$' || { echo "sentinel $s: master flags not clean"; return 1; }
  done
  return 0
}

write_env() {
  local args=() s
  for s in "${SENTINEL_LIST[@]}"; do args+=(--sentinel "127.0.0.1:$s"); done
  args+=(--sentinel-master "$MASTER")
  [[ "$TLS" == 1 ]] && args+=(--sentinel-tls --sentinel-tls-ca "$TLS_DIR/ca.crt" --upstream-tls --upstream-tls-ca "$TLS_DIR/ca.crt")
  local servers=()
  for s in "${PORT_LIST[@]}"; do servers+=(--server "127.0.0.1:$s"); done
  [[ "$TLS" == 1 ]] && servers+=(--upstream-tls --upstream-tls-ca "$TLS_DIR/ca.crt")
  {
    echo "# generated by scripts/dev-sentinel.sh; source it: . $DIR/env"
    printf 'export SLOTWAY_UPSTREAM_PASSWORD=%q\n' "$PASSWORD"
    printf 'export SLOTWAY_SENTINEL_PASSWORD=%q\n' "$SENTINEL_PASSWORD"
    printf 'export REDISCLI_AUTH=%q\n' "$PASSWORD"
    printf 'export DEV_SENTINEL_DIR=%q\n' "$DIR"
    printf 'export DEV_SENTINEL_PORTS=%q\n' "${PORT_LIST[*]}"
    printf 'export DEV_SENTINEL_SENTINEL_PORTS=%q\n' "${SENTINEL_LIST[*]}"
    printf 'export DEV_SENTINEL_MASTER=%q\n' "$MASTER"
    printf 'export DEV_SENTINEL_TLS=%q\n' "$TLS"
    printf 'export DEV_SENTINEL_CA=%q\n' "$TLS_DIR/ca.crt"
    # shellcheck disable=SC2016 # printed for the reader, expanded when they run it
    printf '# slotway --listen 127.0.0.1:6380 $SLOTWAY_SENTINEL_ARGS   (or $SLOTWAY_SERVER_ARGS: a static set)\n'
    printf 'export SLOTWAY_SENTINEL_ARGS=%q\n' "${args[*]}"
    printf 'export SLOTWAY_SERVER_ARGS=%q\n' "${servers[*]}"
    if [[ "$TLS" == 1 ]]; then
      printf 'export DEV_SENTINEL_CLI_ARGS=%q\n' "--tls --cacert $TLS_DIR/ca.crt -h 127.0.0.1"
    else
      printf 'export DEV_SENTINEL_CLI_ARGS=%q\n' "-h 127.0.0.1"
    fi
  } >"$DIR/env.tmp"
  mv "$DIR/env.tmp" "$DIR/env"
}

do_start() {
  local p s nd sd
  ((${#PORT_LIST[@]} >= 2)) || die "need at least 2 data ports (a primary and a replica)"
  ((${#SENTINEL_LIST[@]} >= 1)) || die "need at least 1 sentinel port"
  for p in "${PORT_LIST[@]}" "${SENTINEL_LIST[@]}"; do
    if ! [[ "$p" =~ ^[0-9]+$ ]] || ((p == 0 || p > 65535)); then die "bad port $p"; fi
  done
  [[ "$DOWN_AFTER" =~ ^[0-9]+$ && "$FAILOVER_TIMEOUT" =~ ^[0-9]+$ ]] || die "--down-after/--failover-timeout: ms"
  ensure_deps
  do_stop
  load_state_reset
  gen_tls
  mkdir -p "$NODES_DIR" "$SENTINELS_DIR"
  {
    printf 'STATE_TLS=%q\n' "$TLS"
    printf 'STATE_PASSWORD=%q\n' "$PASSWORD"
    printf 'STATE_SENTINEL_PASSWORD=%q\n' "$SENTINEL_PASSWORD"
    printf 'STATE_MASTER=%q\n' "$MASTER"
    printf 'STATE_PORTS=%q\n' "${PORT_LIST[*]}"
    printf 'STATE_SENTINEL_PORTS=%q\n' "${SENTINEL_LIST[*]}"
  } >"$DIR/state"
  chmod 600 "$DIR/state"

  local i=0 primary=""
  for p in "${PORT_LIST[@]}"; do
    nd="$NODES_DIR/$p"
    mkdir -p "$nd"
    ((i > 0)) && primary="${PORT_LIST[0]}"
    write_node_conf "$p" "$nd" "$primary"
    redis-server "$nd/redis.conf" >"$nd/start.out" 2>&1 || fail_start "redis-server on $p failed: $(cat "$nd/start.out")"
    i=$((i + 1))
  done
  local deadline=$((SECONDS + 15))
  for p in "${PORT_LIST[@]}"; do
    until [[ "$(rcli "$p" PING 2>/dev/null)" == PONG ]]; do
      ((SECONDS < deadline)) || fail_start "node $p does not answer PING"
      sleep 0.1
    done
  done
  # Sentinels only once the replicas are attached: they learn them from the primary's INFO.
  deadline=$((SECONDS + 30))
  for p in "${PORT_LIST[@]:1}"; do
    until rcli "$p" INFO replication 2>/dev/null | grep -q '^master_link_status:up'; do
      ((SECONDS < deadline)) || fail_start "replica $p never synced"
      sleep 0.1
    done
  done
  for s in "${SENTINEL_LIST[@]}"; do
    sd="$SENTINELS_DIR/$s"
    mkdir -p "$sd"
    write_sentinel_conf "$s" "$sd"
    redis-sentinel "$sd/sentinel.conf" >"$sd/start.out" 2>&1 || fail_start "redis-sentinel on $s failed: $(cat "$sd/start.out")"
  done
  log "group: primary ${PORT_LIST[0]}, replicas ${PORT_LIST[*]:1}, sentinels ${SENTINEL_LIST[*]}, tls=$TLS, master $MASTER"
  local why="" deadline=$((SECONDS + WAIT_SECS))
  until why="$(group_healthy)"; do
    ((SECONDS < deadline)) || fail_start "group not healthy after ${WAIT_SECS}s: $why"
    sleep 0.25
  done
  write_env
  log "ready in $DIR (env: $DIR/env)"
}

load_state_reset() { :; }

do_status() {
  load_state
  [[ -d "$NODES_DIR" ]] || { echo "no group in $DIR"; return 1; }
  local p s pid
  for p in "${PORT_LIST[@]}"; do
    pid="$(pid_from "$NODES_DIR/$p/redis.pid" redis-)"
    echo "node $p: ${pid:+running (pid $pid), }$(rcli "$p" ROLE 2>/dev/null | head -1 || echo down)"
  done
  for s in "${SENTINEL_LIST[@]}"; do
    pid="$(pid_from "$SENTINELS_DIR/$s/sentinel.pid" redis-)"
    echo "sentinel $s: ${pid:+running (pid $pid), }master $(scli "$s" SENTINEL get-master-addr-by-name "$MASTER" 2>/dev/null | tr '\n' ':' || echo down)"
  done
}

case "$CMD" in
  start)
    NEW=("$TLS" "$PASSWORD" "$SENTINEL_PASSWORD" "$MASTER" "${PORT_LIST[*]}" "${SENTINEL_LIST[*]}")
    load_state_reset() {
      TLS="${NEW[0]}"; PASSWORD="${NEW[1]}"; SENTINEL_PASSWORD="${NEW[2]}"; MASTER="${NEW[3]}"
      read -r -a PORT_LIST <<<"${NEW[4]}"
      read -r -a SENTINEL_LIST <<<"${NEW[5]}"
    }
    do_start
    ;;
  stop) do_stop ;;
  status) do_status ;;
  env)
    [[ -f "$DIR/env" ]] || die "no running group in $DIR (start it first)"
    cat "$DIR/env"
    ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
