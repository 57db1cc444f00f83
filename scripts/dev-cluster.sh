#!/usr/bin/env bash
# Local Redis Cluster for slotway development, tests and benchmarks.
#
#   scripts/dev-cluster.sh start  [--dir DIR] [--ports "P1 P2 ..."] [--replicas N]
#                                 [--no-tls] [--password PW] [--node-timeout MS]
#   scripts/dev-cluster.sh stop   [--dir DIR]
#   scripts/dev-cluster.sh status [--dir DIR]
#   scripts/dev-cluster.sh env    [--dir DIR]      # prints DIR/env (source it)
#
# Defaults: DIR=<repo>/.dev-cluster, ports 7001..7006, 1 replica per primary
# (so 3 primaries), TLS on (port 0 + tls-port, tls-cluster, tls-replication),
# password $DEV_CLUSTER_PASSWORD or "slotway-dev-pass", node timeout 5000 ms.
# Every option can also be given through the environment: DEV_CLUSTER_DIR,
# DEV_CLUSTER_PORTS, DEV_CLUSTER_REPLICAS, DEV_CLUSTER_TLS=0|1,
# DEV_CLUSTER_PASSWORD, DEV_CLUSTER_NODE_TIMEOUT, DEV_CLUSTER_WAIT (seconds to
# wait for a healthy cluster, default 60). An empty password (--password "")
# disables AUTH.
#
# Layout of DIR:
#   tls/     ca.crt ca.key redis.crt redis.key client.crt client.key
#            other-ca.crt other-ca.key other-client.crt other-client.key
#            (generated once, kept by `stop`)
#   nodes/P/ redis.conf nodes.conf redis.pid redis.log (one per node; `stop` removes it)
#   state    settings of the running cluster (for stop/status)
#   env      variables for users (SLOTWAY_UPSTREAM_PASSWORD, seeds, CA path...)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

die() { echo "dev-cluster: error: $*" >&2; exit 1; }
log() { echo "dev-cluster: $*" >&2; }

usage() {
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

ensure_deps() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if ((${#missing[@]})); then
    log "installing ${missing[*]} with apt-get"
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "${missing[@]}" >&2
    # The Debian package starts a server on 6379; it is not ours, but it does not
    # interfere with the cluster ports either, so leave it alone here.
  fi
}

# ---------------------------------------------------------------- options
DIR="${DEV_CLUSTER_DIR:-$REPO_ROOT/.dev-cluster}"
PORTS="${DEV_CLUSTER_PORTS:-7001 7002 7003 7004 7005 7006}"
REPLICAS="${DEV_CLUSTER_REPLICAS:-1}"
TLS="${DEV_CLUSTER_TLS:-1}"
PASSWORD="${DEV_CLUSTER_PASSWORD-slotway-dev-pass}"
NODE_TIMEOUT="${DEV_CLUSTER_NODE_TIMEOUT:-5000}"
WAIT_SECS="${DEV_CLUSTER_WAIT:-60}"

CMD="${1:-}"
[[ -n "$CMD" ]] || { usage >&2; exit 2; }
shift
while (($#)); do
  case "$1" in
    --dir) DIR="$2"; shift 2 ;;
    --dir=*) DIR="${1#*=}"; shift ;;
    --ports) PORTS="$2"; shift 2 ;;
    --ports=*) PORTS="${1#*=}"; shift ;;
    --replicas) REPLICAS="$2"; shift 2 ;;
    --replicas=*) REPLICAS="${1#*=}"; shift ;;
    --no-tls) TLS=0; shift ;;
    --tls) TLS=1; shift ;;
    --password) PASSWORD="$2"; shift 2 ;;
    --password=*) PASSWORD="${1#*=}"; shift ;;
    --node-timeout) NODE_TIMEOUT="$2"; shift 2 ;;
    --node-timeout=*) NODE_TIMEOUT="${1#*=}"; shift ;;
    --wait) WAIT_SECS="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
done
[[ "$CMD" == start ]] && mkdir -p "$DIR"
if [[ -d "$DIR" ]]; then DIR="$(cd "$DIR" && pwd)"; fi
TLS_DIR="$DIR/tls"
NODES_DIR="$DIR/nodes"
read -r -a PORT_LIST <<<"$PORTS"

# ---------------------------------------------------------------- helpers
# redis-cli against one node of the cluster described by TLS/PASSWORD.
# The password travels in REDISCLI_AUTH, never in argv.
rcli() {
  local port="$1"; shift
  local tls_args=()
  [[ "$TLS" == 1 ]] && tls_args=(--tls --cacert "$TLS_DIR/ca.crt")
  if [[ -n "$PASSWORD" ]]; then
    REDISCLI_AUTH="$PASSWORD" timeout 20 redis-cli "${tls_args[@]}" -h 127.0.0.1 -p "$port" "$@"
  else
    env -u REDISCLI_AUTH timeout 20 redis-cli "${tls_args[@]}" -h 127.0.0.1 -p "$port" "$@"
  fi
}

pid_of_node() { # prints the pid of a live redis-server for node dir $1, or nothing
  local pidfile="$1/redis.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if [[ -r "/proc/$pid/comm" ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == redis-server* ]]; then
    echo "$pid"
  fi
}

load_state() { # settings of the cluster that was started in DIR (if any)
  if [[ -f "$DIR/state" ]]; then
    # shellcheck disable=SC1091
    source "$DIR/state"
    TLS="$STATE_TLS"; PASSWORD="$STATE_PASSWORD"
    read -r -a PORT_LIST <<<"$STATE_PORTS"
  fi
}

# ---------------------------------------------------------------- TLS material
gen_tls() {
  mkdir -p "$TLS_DIR"
  local d="$TLS_DIR"
  (
    cd "$d"
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
    gen_leaf client ca "slotway client" \
"basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
subjectAltName=DNS:slotway-client"
    gen_leaf other-client other-ca "untrusted client" \
"basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
subjectAltName=DNS:untrusted-client"
    chmod 644 ./*.crt
    chmod 600 ./*.key
  ) || die "could not generate TLS material in $d"
}

# ---------------------------------------------------------------- stop
do_stop() {
  load_state
  [[ -d "$NODES_DIR" ]] || { rm -f "$DIR/state" "$DIR/env"; return 0; }
  local node port pid pids=() left
  for node in "$NODES_DIR"/*/; do
    [[ -d "$node" ]] || continue
    node="${node%/}"
    port="$(basename "$node")"
    pid="$(pid_of_node "$node")"
    [[ -n "$pid" ]] || continue
    pids+=("$pid")
    # Ask nicely (in parallel); NOW: don't wait for replicas to catch up.
    rcli "$port" SHUTDOWN NOSAVE NOW FORCE >/dev/null 2>&1 &
  done
  # Wait up to ~5 s for the nodes to go, then TERM, then KILL.
  local i sig
  for sig in none TERM KILL; do
    if [[ "$sig" != none ]]; then
      for pid in "${pids[@]}"; do
        if [[ -d /proc/$pid ]]; then kill "-$sig" "$pid" 2>/dev/null || true; fi
      done
    fi
    for ((i = 0; i < 50; i++)); do
      left=0
      for pid in "${pids[@]}"; do
        if [[ -d /proc/$pid ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == redis-server* ]] &&
           ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
          left=1
        fi
      done
      ((left)) || break
      sleep 0.1
    done
    ((left)) || break
  done
  wait 2>/dev/null || true
  ((left == 0)) || die "could not stop redis-server pids: ${pids[*]}"
  rm -rf "$NODES_DIR" "$DIR/state" "$DIR/env"
  log "stopped (${#pids[@]} node(s)) in $DIR"
}

# ---------------------------------------------------------------- start
write_conf() { # port nodedir
  local port="$1" nd="$2"
  {
    echo "bind 127.0.0.1"
    echo "protected-mode no"
    if [[ "$TLS" == 1 ]]; then
      echo "port 0"
      echo "tls-port $port"
      echo "tls-cluster yes"
      echo "tls-replication yes"
      echo "tls-cert-file $TLS_DIR/redis.crt"
      echo "tls-key-file $TLS_DIR/redis.key"
      echo "tls-ca-cert-file $TLS_DIR/ca.crt"
      echo "tls-auth-clients optional"
    else
      echo "port $port"
    fi
    echo "daemonize yes"
    echo "dir $nd"
    echo "pidfile $nd/redis.pid"
    echo "logfile $nd/redis.log"
    echo "loglevel notice"
    echo "cluster-enabled yes"
    echo "cluster-config-file $nd/nodes.conf"
    echo "cluster-node-timeout $NODE_TIMEOUT"
    echo "cluster-allow-replica-migration no"
    echo "cluster-require-full-coverage yes"
    echo "appendonly no"
    echo "save \"\""
    echo "shutdown-timeout 0"
    echo "repl-diskless-sync-delay 0"
    echo "enable-debug-command local"
    echo "maxclients 4064"
    if [[ -n "$PASSWORD" ]]; then
      # Quoted: the password may contain spaces.
      printf 'requirepass "%s"\n' "$PASSWORD"
      printf 'masterauth "%s"\n' "$PASSWORD"
    fi
  } >"$nd/redis.conf"
}

node_logs() { # tail of each node log, for error messages
  local node
  for node in "$NODES_DIR"/*/; do
    [[ -f "$node/redis.log" ]] || continue
    echo "----- $(basename "$node")/redis.log (tail) -----" >&2
    tail -n 15 "$node/redis.log" >&2 || true
  done
}

fail_start() {
  log "$*"
  node_logs
  die "$*"
}

# Manual cluster creation (redis-cli --cluster create needs >= 3 primaries).
create_manual() { # primaries...
  local np="$1" i j p start end per ids=() q
  per=$((16384 / np))
  for ((i = 0; i < np; i++)); do
    p="${PORT_LIST[$i]}"
    start=$((i * per))
    end=$(((i + 1) * per - 1))
    ((i == np - 1)) && end=16383
    rcli "$p" CLUSTER SET-CONFIG-EPOCH $((i + 1)) >/dev/null
    rcli "$p" CLUSTER ADDSLOTSRANGE "$start" "$end" | grep -q OK || fail_start "ADDSLOTSRANGE on $p failed"
  done
  for p in "${PORT_LIST[@]:1}"; do
    rcli "${PORT_LIST[0]}" CLUSTER MEET 127.0.0.1 "$p" | grep -q OK || fail_start "CLUSTER MEET $p failed"
  done
  for ((i = 0; i < np; i++)); do ids+=("$(rcli "${PORT_LIST[$i]}" CLUSTER MYID)"); done
  # Replicas must know their primary before CLUSTER REPLICATE.
  local n=${#PORT_LIST[@]} deadline=$((SECONDS + 30))
  for ((j = np; j < n; j++)); do
    p="${PORT_LIST[$j]}"
    q=$(((j - np) % np))
    until rcli "$p" CLUSTER NODES | grep -q "^${ids[$q]} "; do
      ((SECONDS < deadline)) || fail_start "node $p never learned about ${PORT_LIST[$q]}"
      sleep 0.2
    done
    rcli "$p" CLUSTER REPLICATE "${ids[$q]}" | grep -q OK || fail_start "CLUSTER REPLICATE on $p failed"
  done
}

# redis-cli --cluster create sometimes loses a CLUSTER REPLICATE (the replica
# did not know its primary yet): such a node stays a primary without slots.
# Attach every slot-less primary to a primary that lacks replicas.
ensure_replicas() { # primaries
  local np="$1" n=${#PORT_LIST[@]} p deadline=$((SECONDS + 30)) nodes
  ((REPLICAS > 0)) || return 0
  for p in "${PORT_LIST[@]}"; do
    until rcli "$p" CLUSTER INFO | grep -q "^cluster_known_nodes:$n"; do
      ((SECONDS < deadline)) || fail_start "node $p does not know all $n nodes"
      sleep 0.2
    done
  done
  nodes="$(rcli "${PORT_LIST[0]}" CLUSTER NODES)"
  local port id
  while read -r port; do
    [[ -n "$port" ]] || continue
    # primary (with slots) having the fewest replicas
    read -r id _ < <(awk '
      $3 ~ /master/ && NF >= 9 { cnt[$1] += 0 }
      $3 ~ /slave/ { cnt[$4]++ }
      END { for (k in cnt) print cnt[k], k }' <<<"$nodes" | sort -n | head -1 | awk '{print $2, $1}')
    [[ -n "$id" ]] || fail_start "no primary to attach $port to"
    log "attaching slot-less primary $port as replica of $id"
    rcli "$port" CLUSTER REPLICATE "$id" | grep -q OK || fail_start "CLUSTER REPLICATE on $port failed"
    nodes="$(sed -E "s/^([0-9a-f]+ [^ ]*:$port@[^ ]*) [^ ]*master[^ ]* - /\1 slave $id /" <<<"$nodes")"
  done < <(awk '$3 ~ /master/ && NF < 9 { split($2, a, "@"); n = split(a[1], b, ":"); print b[n] }' <<<"$nodes")
}

cluster_healthy() { # prints the reason when not healthy
  local n=${#PORT_LIST[@]} p info nodes out nrep
  for p in "${PORT_LIST[@]}"; do
    info="$(rcli "$p" CLUSTER INFO 2>&1)" || { echo "$p: $info"; return 1; }
    grep -q '^cluster_state:ok' <<<"$info" || { echo "$p: cluster_state not ok"; return 1; }
    grep -q "^cluster_known_nodes:$n" <<<"$info" || { echo "$p: does not know all $n nodes yet"; return 1; }
    nodes="$(rcli "$p" CLUSTER NODES 2>&1)" || { echo "$p: $nodes"; return 1; }
    if grep -q 'myself,slave\|myself,replica' <<<"$nodes"; then
      rcli "$p" INFO replication | grep -q '^master_link_status:up' ||
        { echo "$p: replica link not up"; return 1; }
    fi
    if grep -Eq 'fail|handshake|noaddr' <<<"$(awk '{print $3}' <<<"$nodes")"; then
      echo "$p: sees a node in fail/handshake state"; return 1
    fi
    nrep="$(awk '$3 ~ /slave/' <<<"$nodes" | wc -l)"
    ((nrep == n - n / (REPLICAS + 1))) || { echo "$p: sees $nrep replicas, want $((n - n / (REPLICAS + 1)))"; return 1; }
  done
  out="$(rcli "${PORT_LIST[0]}" --cluster check "127.0.0.1:${PORT_LIST[0]}" 2>&1)" ||
    { echo "cluster check failed: $(grep -E 'ERR|WARN' <<<"$out" | head -3)"; return 1; }
  if grep -q '\[ERR\]' <<<"$out" || ! grep -q 'All nodes agree about slots configuration' <<<"$out"; then
    echo "cluster check: $(grep -E 'ERR|agree' <<<"$out" | head -3)"; return 1
  fi
  return 0
}

write_env() {
  local seeds=() args=() p
  for p in "${PORT_LIST[@]}"; do seeds+=("127.0.0.1:$p"); args+=(--cluster "127.0.0.1:$p"); done
  [[ "$TLS" == 1 ]] && args+=(--upstream-tls --upstream-tls-ca "$TLS_DIR/ca.crt")
  {
    echo "# generated by scripts/dev-cluster.sh; source it: . $DIR/env"
    printf 'export SLOTWAY_UPSTREAM_PASSWORD=%q\n' "$PASSWORD"
    printf 'export REDISCLI_AUTH=%q\n' "$PASSWORD"
    printf 'export DEV_CLUSTER_DIR=%q\n' "$DIR"
    printf 'export DEV_CLUSTER_SEEDS=%q\n' "${seeds[*]}"
    printf 'export DEV_CLUSTER_PORTS=%q\n' "${PORT_LIST[*]}"
    printf 'export DEV_CLUSTER_TLS=%q\n' "$TLS"
    printf 'export DEV_CLUSTER_CA=%q\n' "$TLS_DIR/ca.crt"
    printf 'export DEV_CLUSTER_OTHER_CA=%q\n' "$TLS_DIR/other-ca.crt"
    printf 'export DEV_CLUSTER_CLIENT_CERT=%q\n' "$TLS_DIR/client.crt"
    printf 'export DEV_CLUSTER_CLIENT_KEY=%q\n' "$TLS_DIR/client.key"
    # shellcheck disable=SC2016 # the variable is for the reader to expand, after the export below
    printf '# slotway --listen 127.0.0.1:6380 $SLOTWAY_CLUSTER_ARGS\n'
    printf 'export SLOTWAY_CLUSTER_ARGS=%q\n' "${args[*]}"
    if [[ "$TLS" == 1 ]]; then
      # shellcheck disable=SC2016 # as above: expanded by the reader
      printf '# redis-cli $DEV_CLUSTER_CLI_ARGS -p %s -c\n' "${PORT_LIST[0]}"
      printf 'export DEV_CLUSTER_CLI_ARGS=%q\n' "--tls --cacert $TLS_DIR/ca.crt -h 127.0.0.1"
    else
      printf 'export DEV_CLUSTER_CLI_ARGS=%q\n' "-h 127.0.0.1"
    fi
  } >"$DIR/env.tmp"
  mv "$DIR/env.tmp" "$DIR/env"
}

do_start() {
  local n=${#PORT_LIST[@]} p nd
  [[ "$REPLICAS" =~ ^[0-9]+$ ]] || die "--replicas must be a number"
  [[ "$NODE_TIMEOUT" =~ ^[0-9]+$ ]] || die "--node-timeout must be a number of ms"
  ((n > 0)) || die "no ports"
  ((n % (REPLICAS + 1) == 0)) || die "$n ports is not a multiple of 1 + replicas ($((REPLICAS + 1)))"
  local np=$((n / (REPLICAS + 1)))
  for p in "${PORT_LIST[@]}"; do
    if ! [[ "$p" =~ ^[0-9]+$ ]] || ((p == 0 || p > 55535)); then
      die "bad port $p (bus port is port+10000, so <= 55535)"
    fi
  done

  ensure_deps
  # Leftovers of an earlier run in this DIR.
  do_stop
  load_state_reset
  gen_tls
  mkdir -p "$NODES_DIR"
  {
    printf 'STATE_TLS=%q\n' "$TLS"
    printf 'STATE_PASSWORD=%q\n' "$PASSWORD"
    printf 'STATE_PORTS=%q\n' "${PORT_LIST[*]}"
  } >"$DIR/state"
  chmod 600 "$DIR/state"

  for p in "${PORT_LIST[@]}"; do
    nd="$NODES_DIR/$p"
    mkdir -p "$nd"
    write_conf "$p" "$nd"
    redis-server "$nd/redis.conf" >"$nd/start.out" 2>&1 || fail_start "redis-server on port $p failed to start: $(cat "$nd/start.out")"
  done
  local deadline=$((SECONDS + 15))
  for p in "${PORT_LIST[@]}"; do
    until [[ "$(rcli "$p" PING 2>/dev/null)" == PONG ]]; do
      if ((SECONDS >= deadline)) || { [[ -f "$NODES_DIR/$p/redis.log" ]] && grep -q 'Address already in use\|Failed listening\|FATAL\|Fatal' "$NODES_DIR/$p/redis.log"; }; then
        fail_start "node $p does not answer PING"
      fi
      sleep 0.1
    done
  done

  log "creating cluster: $np primaries, $REPLICAS replica(s) each, tls=$TLS, ports ${PORT_LIST[*]}"
  if ((np >= 3)); then
    local addrs=() out
    for p in "${PORT_LIST[@]}"; do addrs+=("127.0.0.1:$p"); done
    if [[ "${DEV_CLUSTER_TEST_LOSE_REPLICATE:-}" == 1 ]]; then
      # Test hook: leave the replicas as slot-less primaries (what a lost
      # CLUSTER REPLICATE looks like) to exercise ensure_replicas.
      out="$(rcli "${PORT_LIST[0]}" --cluster create "${addrs[@]:0:np}" --cluster-replicas 0 --cluster-yes 2>&1)" ||
        fail_start "redis-cli --cluster create failed:
$out"
      for p in "${PORT_LIST[@]:np}"; do rcli "${PORT_LIST[0]}" CLUSTER MEET 127.0.0.1 "$p" >/dev/null; done
    else
      out="$(rcli "${PORT_LIST[0]}" --cluster create "${addrs[@]}" --cluster-replicas "$REPLICAS" --cluster-yes 2>&1)" ||
        fail_start "redis-cli --cluster create failed:
$out"
      grep -q '\[OK\] All 16384 slots covered' <<<"$out" || fail_start "redis-cli --cluster create failed:
$out"
    fi
    ensure_replicas "$np"
  else
    create_manual "$np"
  fi

  local why="" deadline=$((SECONDS + WAIT_SECS))
  until why="$(cluster_healthy)"; do
    ((SECONDS < deadline)) || fail_start "cluster not healthy after ${WAIT_SECS}s: $why"
    sleep 0.25
  done
  write_env
  log "cluster ready in $DIR (env: $DIR/env)"
}

load_state_reset() { :; } # options given on the command line win over a stale state file

do_status() {
  load_state
  [[ -d "$NODES_DIR" ]] || { echo "no cluster in $DIR"; return 1; }
  local p pid up=0
  for p in "${PORT_LIST[@]}"; do
    pid="$(pid_of_node "$NODES_DIR/$p")"
    if [[ -n "$pid" ]]; then echo "node $p: running (pid $pid)"; else echo "node $p: down"; fi
  done
  for p in "${PORT_LIST[@]}"; do
    if out="$(rcli "$p" CLUSTER NODES 2>/dev/null)" && [[ -n "$out" ]] && [[ "$out" != *ERR* ]]; then
      echo "CLUSTER NODES (from $p):"
      echo "$out"
      rcli "$p" CLUSTER INFO | grep -E '^cluster_(state|slots_ok|known_nodes|size)' || true
      up=1
      break
    fi
  done
  ((up)) || { echo "no node answers"; return 1; }
}

case "$CMD" in
  start)
    # Command-line/env options describe the new cluster; stop with the old state first.
    NEW_TLS="$TLS"; NEW_PASSWORD="$PASSWORD"; NEW_PORTS=("${PORT_LIST[@]}")
    load_state_reset() { TLS="$NEW_TLS"; PASSWORD="$NEW_PASSWORD"; PORT_LIST=("${NEW_PORTS[@]}"); }
    do_start
    ;;
  stop) do_stop ;;
  status) do_status ;;
  env)
    [[ -f "$DIR/env" ]] || die "no running cluster in $DIR (start it first)"
    cat "$DIR/env"
    ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
