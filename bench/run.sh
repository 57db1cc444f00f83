#!/usr/bin/env bash
# Throughput/latency benchmark: redis-benchmark directly against a local Redis
# Cluster vs. through slotway (plain TCP or TLS to slotway, TLS+AUTH upstream).
#
#   bench/run.sh [--rounds N] [--requests N] [--upstream-tls on|off] [--client-tls on|off] [--keep]
#                [--workloads "set get"] [--pipelines "1 16"] [--clients N]
#                [--pipeline-scale N] [--data-size BYTES] [--direct-only]
#                [--ports "P1 ... P6"] [--proxy-port P] [--out DIR]
#                [--mode standalone|nat] [--backend cluster|sentinel|static]
#                [--peer NAME=PATH ...] [--workers N]
#
# --backend B         what slotway is in front of (default cluster: 3 primaries + 3
#                     replicas). sentinel: scripts/dev-sentinel.sh's group (1 primary,
#                     2 replicas, 3 sentinels; slotway --sentinel ...); static: the same
#                     nodes as a static set (slotway --server ...). "direct" is then
#                     redis-benchmark against the primary itself.
# --mode nat          benchmark slotway's cluster NAT mode: redis-benchmark
#                     --cluster through slotway's node listeners (ports
#                     --proxy-port and up, announced as 127.0.0.1) vs directly
# --peer NAME=PATH    also benchmark another proxy binary in the same interleaved
#                     run (repeatable). NAME says what it is: predixy* (predixy
#                     1.0.x: bench/run.sh writes its ClusterServerPool config with
#                     the cluster's password; no upstream TLS, so needs
#                     --upstream-tls off) or slotway* (another slotway build, e.g.
#                     main's, started like slotway). Each peer listens on the next
#                     port after --proxy-port. Building predixy: see bench/README.md.
# --workers N         worker threads of every proxy (slotway --workers, predixy
#                     WorkerThreads; default 1) and redis-benchmark --threads N
#                     (default 1: one client thread), for scaling runs
# --rounds N          rounds of every (workload, pipeline) pair (default 3);
#                     direct, slotway and the peers take turns, and the order
#                     rotates every round
# --requests N        requests per run at -P 1 (default 60000); runs with -P k>1
#                     use N * --pipeline-scale (default 6), so each run lasts a
#                     few seconds
# --upstream-tls on|off  TLS between clients/slotway and the cluster (default on)
# --client-tls on|off TLS between redis-benchmark and slotway (default off): slotway
#                     gets a TLS listener only, with a certificate for 127.0.0.1
#                     from a throwaway CA generated into OUT/client-tls/
# --keep              leave the cluster (and slotway) running at the end
# --direct-only       only benchmark the cluster (also the fallback when slotway
#                     does not build or does not answer PING)
# SLOTWAY_BIN=PATH    benchmark that binary instead of building target/release/slotway
#
# Output: a Markdown table on stdout (also OUT/report.md) and every run in
# OUT/results.csv (default OUT: target/bench/<date>). Reported numbers are the
# median over rounds. "slotway µs/req" is slotway's CPU time (utime+stime from
# /proc/<pid>/stat) during the run divided by the requests of the run. With
# --peer, a second table puts every proxy side by side: req/s, ratio to direct,
# CPU µs/req, and slotway's CPU per request over each peer's.
#
# New workloads: add a function `workload_NAME` that sets BENCH_ARGS (the
# redis-benchmark arguments selecting the command, for mode $1 = direct|proxy)
# and BENCH_LABEL, then pass --workloads "... NAME" (built in: set get incr
# mset mget mget100 mset100; default "set get").
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

ROUNDS=3
REQUESTS=60000
PIPE_SCALE=6
UPSTREAM_TLS=on
CLIENT_TLS=off
KEEP=0
WORKLOADS="set get"
PIPELINES="1 16"
CLIENTS=50
DATA_SIZE=3
KEYSPACE=100000
DIRECT_ONLY=0
PORTS="${BENCH_PORTS:-7201 7202 7203 7204 7205 7206}"
PROXY_PORT="${BENCH_PROXY_PORT:-7299}"
OUT=""
PEERS=()
WORKERS=1
MODE=standalone
BACKEND=cluster
CLUSTER_DIR="$REPO_ROOT/target/bench-cluster"
SENTINEL_PORTS="${BENCH_SENTINEL_PORTS:-27211 27212 27213}"

die() { echo "bench: error: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

while (($#)); do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --pipeline-scale) PIPE_SCALE="$2"; shift 2 ;;
    --upstream-tls) UPSTREAM_TLS="$2"; shift 2 ;;
    --client-tls) CLIENT_TLS="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --workloads) WORKLOADS="$2"; shift 2 ;;
    --pipelines) PIPELINES="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --data-size) DATA_SIZE="$2"; shift 2 ;;
    --keyspace) KEYSPACE="$2"; shift 2 ;;
    --direct-only) DIRECT_ONLY=1; shift ;;
    --ports) PORTS="$2"; shift 2 ;;
    --proxy-port) PROXY_PORT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --mode) MODE="$2"; shift 2 ;;
    --backend) BACKEND="$2"; shift 2 ;;
    --cluster-dir) CLUSTER_DIR="$2"; shift 2 ;;
    --peer) PEERS+=("$2"); shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    -h|--help) sed -n '2,55p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$UPSTREAM_TLS" in on|off) ;; *) die "--upstream-tls on|off" ;; esac
case "$CLIENT_TLS" in on|off) ;; *) die "--client-tls on|off" ;; esac
case "$MODE" in standalone|nat) ;; *) die "--mode standalone|nat" ;; esac
case "$BACKEND" in cluster|sentinel|static) ;; *) die "--backend cluster|sentinel|static" ;; esac
[[ "$MODE" == nat && "$BACKEND" != cluster ]] && die "--mode nat needs --backend cluster"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive number"
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || die "--requests must be a positive number"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive number"
# Peers: parallel arrays of name, kind, binary.
PEER_NAMES=()
PEER_KINDS=()
PEER_BINS=()
for spec in "${PEERS[@]}"; do
  [[ "$spec" == *=* ]] || die "--peer NAME=PATH (got $spec)"
  name="${spec%%=*}"
  bin="${spec#*=}"
  [[ "$name" =~ ^[A-Za-z][A-Za-z0-9_.-]*$ ]] || die "--peer: NAME must be a word (got $name)"
  [[ "$name" == direct || "$name" == slotway ]] && die "--peer: the names direct and slotway are taken"
  [[ -x "$bin" ]] || die "--peer $name: $bin is not an executable"
  case "$name" in
    predixy*) kind=predixy ;;
    slotway*) kind=slotway ;;
    *) die "--peer $name: unknown kind (NAME must start with predixy or slotway)" ;;
  esac
  if [[ "$kind" == predixy ]]; then
    [[ "$UPSTREAM_TLS" == off ]] || die "--peer $name: predixy has no upstream TLS; use --upstream-tls off"
    [[ "$CLIENT_TLS" == off ]] || die "--peer $name: predixy has no client TLS; use --client-tls off"
    [[ "$BACKEND" == cluster && "$MODE" == standalone ]] || die "--peer $name: predixy is benchmarked in front of the cluster only"
  fi
  [[ "$MODE" == standalone ]] || die "--peer needs --mode standalone"
  PEER_NAMES+=("$name")
  PEER_KINDS+=("$kind")
  PEER_BINS+=("$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")")
done
OUT="${OUT:-$REPO_ROOT/target/bench/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

command -v redis-benchmark >/dev/null 2>&1 || {
  log "installing redis-tools"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq redis-tools redis-server >&2
}

# ------------------------------------------------------------------ workloads
# workload_NAME MODE (MODE: direct | slotway) sets BENCH_ARGS (redis-benchmark
# args choosing the command) and BENCH_LABEL (name in the report).
# In --cluster mode (direct) redis-benchmark replaces "{tag}" in keys with a
# tag of the node it sends to; its built-in tests (-t) do that by themselves
# ("key:{tag}:__rand_int__"), and use plain "key:__rand_int__" against slotway.
workload_set() { BENCH_ARGS=(-t set -d "$DATA_SIZE"); BENCH_LABEL=SET; }
workload_get() { BENCH_ARGS=(-t get -d "$DATA_SIZE"); BENCH_LABEL=GET; }
workload_incr() { BENCH_ARGS=(-t incr); BENCH_LABEL=INCR; }
# Multi-key commands. Direct: all keys of one command in one slot (what a
# cluster client must do); through slotway: keys spread over all shards
# (slotway splits and merges). Built-in MSET has 10 keys.
workload_mset() { BENCH_ARGS=(-t mset -d "$DATA_SIZE"); BENCH_LABEL="MSET (10 keys)"; }
workload_mget() {
  local key=key:__rand_int__
  [[ "$1" == direct && "$BACKEND" == cluster ]] && key="key:{tag}:__rand_int__"
  BENCH_ARGS=(MGET)
  for _ in 1 2 3 4 5 6 7 8 9 10; do BENCH_ARGS+=("$key"); done
  BENCH_LABEL="MGET (10 keys)"
}
# 100 keys per command, the same way: direct, keys of one hash tag (redis-benchmark can't split a cross-slot
# command); through slotway, 100 random keys over every shard (about 100 slots: slotway splits them per slot,
# sends one batch per node and merges the replies). Heavier per request: use fewer --requests.
multikey_args() { # COMMAND N MODE(direct|proxy)
  local key=key:__rand_int__ value i
  [[ "$3" == direct && "$BACKEND" == cluster ]] && key="key:{tag}:__rand_int__"
  value="$(head -c "$DATA_SIZE" </dev/zero | tr '\0' x)"
  BENCH_ARGS=("$1")
  for ((i = 0; i < $2; i++)); do
    BENCH_ARGS+=("$key")
    [[ "$1" == MSET ]] && BENCH_ARGS+=("$value")
  done
  return 0
}
workload_mget100() { multikey_args MGET 100 "$1"; BENCH_LABEL="MGET (100 keys)"; }
workload_mset100() { multikey_args MSET 100 "$1"; BENCH_LABEL="MSET (100 keys)"; }

# ------------------------------------------------------------------ cluster
PROXY_PID=""
PEER_PIDS=()
cleanup() {
  local rc=$?
  if ((KEEP)); then
    log "--keep: cluster left running in $CLUSTER_DIR${PROXY_PID:+, slotway pid $PROXY_PID on 127.0.0.1:$PROXY_PORT}"
  else
    local pid
    for pid in "$PROXY_PID" "${PEER_PIDS[@]}"; do
      if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
      fi
    done
    if [[ "$BACKEND" == cluster ]]; then
      "$REPO_ROOT/scripts/dev-cluster.sh" stop --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true
    else
      "$REPO_ROOT/scripts/dev-sentinel.sh" stop --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tls_flag=()
[[ "$UPSTREAM_TLS" == off ]] && tls_flag=(--no-tls)
if [[ "$BACKEND" == cluster ]]; then
  log "starting cluster (upstream TLS $UPSTREAM_TLS) in $CLUSTER_DIR"
  "$REPO_ROOT/scripts/dev-cluster.sh" start --dir "$CLUSTER_DIR" --ports "$PORTS" "${tls_flag[@]}" >&2
  # shellcheck disable=SC1091
  source "$CLUSTER_DIR/env"
  read -r -a PORT_LIST <<<"$DEV_CLUSTER_PORTS"
else
  [[ "$CLUSTER_DIR" == "$REPO_ROOT/target/bench-cluster" ]] && CLUSTER_DIR="$REPO_ROOT/target/bench-sentinel"
  read -r -a PORT_LIST <<<"$PORTS"
  log "starting a Sentinel group (upstream TLS $UPSTREAM_TLS) in $CLUSTER_DIR"
  "$REPO_ROOT/scripts/dev-sentinel.sh" start --dir "$CLUSTER_DIR" --ports "${PORT_LIST[*]:0:3}" \
    --sentinel-ports "$SENTINEL_PORTS" --down-after 5000 --failover-timeout 10000 "${tls_flag[@]}" >&2
  # shellcheck disable=SC1091
  source "$CLUSTER_DIR/env"
  read -r -a PORT_LIST <<<"$DEV_SENTINEL_PORTS"
  DEV_CLUSTER_CA="$DEV_SENTINEL_CA"
fi
PASSWORD="$SLOTWAY_UPSTREAM_PASSWORD"

# ------------------------------------------------------------------ slotway
# Client TLS: a throwaway CA and a certificate for 127.0.0.1 signed by it (as scripts/dev-cluster.sh makes the
# nodes' certificates), so the benchmark needs nothing but openssl.
CLIENT_TLS_DIR="$OUT/client-tls"
gen_client_tls() {
  mkdir -p "$CLIENT_TLS_DIR"
  (
    cd "$CLIENT_TLS_DIR"
    umask 077
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout ca.key -out ca.crt \
      -days 30 -subj "/O=slotway-bench/CN=slotway bench CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout slotway.key -out slotway.csr \
      -subj "/O=slotway-bench/CN=slotway" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >slotway.ext
    openssl x509 -req -in slotway.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out slotway.crt -days 30 \
      -sha256 -extfile slotway.ext 2>/dev/null
    rm -f slotway.csr slotway.ext
  ) || die "could not generate the client TLS certificate in $CLIENT_TLS_DIR"
}
# redis-cli / redis-benchmark arguments to reach slotway.
PROXY_TLS_ARGS=()
if [[ "$CLIENT_TLS" == on ]]; then
  command -v openssl >/dev/null 2>&1 || die "--client-tls on needs openssl"
  gen_client_tls
  PROXY_TLS_ARGS=(--tls --cacert "$CLIENT_TLS_DIR/ca.crt")
fi

# SLOTWAY_BIN=/path/to/slotway skips the build and benchmarks that binary.
start_proxy() {
  if [[ -z "${SLOTWAY_BIN:-}" ]]; then
    SLOTWAY_BIN="$REPO_ROOT/target/release/slotway"
    log "building slotway (release)"
    if ! (cd "$REPO_ROOT" && cargo build --release -p slotway --bin slotway) >"$OUT/build.log" 2>&1; then
      log "WARNING: slotway does not build (see $OUT/build.log): direct runs only"
      return 1
    fi
  fi
  local args=(--workers "$WORKERS" --listen "127.0.0.1:$PROXY_PORT")
  [[ "$CLIENT_TLS" == on ]] && args=(--workers "$WORKERS" --listen-tls "127.0.0.1:$PROXY_PORT")
  if [[ "$MODE" == nat ]]; then
    args=(--workers "$WORKERS" --mode nat --nat-announce-host 127.0.0.1 --nat-bind 127.0.0.1
      --nat-ports "$PROXY_PORT-$((PROXY_PORT + ${#PORT_LIST[@]} + 5))")
  fi
  [[ "$CLIENT_TLS" == on ]] &&
    args+=(--listen-tls-cert "$CLIENT_TLS_DIR/slotway.crt" --listen-tls-key "$CLIENT_TLS_DIR/slotway.key")
  local p backend_args=()
  case "$BACKEND" in
    cluster)
      for p in "${PORT_LIST[@]}"; do args+=(--cluster "127.0.0.1:$p"); done
      [[ "$UPSTREAM_TLS" == on ]] && args+=(--upstream-tls --upstream-tls-ca "$DEV_CLUSTER_CA")
      ;;
    # The env file's argument lists include the TLS flags when the group uses TLS.
    sentinel) read -r -a backend_args <<<"$SLOTWAY_SENTINEL_ARGS"; args+=("${backend_args[@]}") ;;
    static) read -r -a backend_args <<<"$SLOTWAY_SERVER_ARGS"; args+=("${backend_args[@]}") ;;
  esac
  log "starting slotway on 127.0.0.1:$PROXY_PORT (client TLS $CLIENT_TLS, backend $BACKEND)"
  # The passwords only travel in the environment.
  SLOTWAY_UPSTREAM_PASSWORD="$PASSWORD" SLOTWAY_SENTINEL_PASSWORD="${SLOTWAY_SENTINEL_PASSWORD:-}" \
    "$SLOTWAY_BIN" "${args[@]}" >"$OUT/slotway.log" 2>&1 &
  PROXY_PID=$!
  local deadline=$((SECONDS + 30))
  until [[ "$(env -u REDISCLI_AUTH timeout 2 redis-cli "${PROXY_TLS_ARGS[@]}" -h 127.0.0.1 -p "$PROXY_PORT" PING \
    2>/dev/null)" == PONG ]]; do
    if ! kill -0 "$PROXY_PID" 2>/dev/null || ((SECONDS >= deadline)); then
      log "WARNING: slotway did not answer PING (log: $OUT/slotway.log): direct runs only"
      tail -n 20 "$OUT/slotway.log" >&2 || true
      kill "$PROXY_PID" 2>/dev/null || true
      PROXY_PID=""
      return 1
    fi
    sleep 0.2
  done
}

HAVE_PROXY=0
if ((!DIRECT_ONLY)) && start_proxy; then HAVE_PROXY=1; fi

# wait_ping NAME PID PORT: until the proxy answers PING (30 s at most).
wait_ping() {
  local deadline=$((SECONDS + 30))
  until [[ "$(env -u REDISCLI_AUTH timeout 2 redis-cli "${PROXY_TLS_ARGS[@]}" -h 127.0.0.1 -p "$3" PING \
    2>/dev/null)" == PONG ]]; do
    if ! kill -0 "$2" 2>/dev/null || ((SECONDS >= deadline)); then
      tail -n 20 "$OUT/$1.log" >&2 || true
      die "$1 did not answer PING on 127.0.0.1:$3 (log: $OUT/$1.log)"
    fi
    sleep 0.2
  done
}

# predixy's configuration for the bench's cluster: every node as a seed, the cluster's password, reads from
# primaries only (as slotway's default read_from), no client timeout, little logging.
predixy_config() { # PORT
  local p
  echo "Name slotway-bench"
  echo "Bind 127.0.0.1:$1"
  echo "WorkerThreads $WORKERS"
  echo "ClientTimeout 0"
  echo "LogVerbSample 0"
  echo "LogDebugSample 0"
  echo "LogInfoSample 0"
  echo "LogNoticeSample 1"
  echo "LogWarnSample 1"
  echo "LogErrorSample 1"
  echo "ClusterServerPool {"
  [[ -n "$PASSWORD" ]] && echo "    Password $PASSWORD"
  echo "    MasterReadPriority 100"
  echo "    StaticSlaveReadPriority 0"
  echo "    DynamicSlaveReadPriority 0"
  echo "    Servers {"
  for p in "${PORT_LIST[@]}"; do echo "        + 127.0.0.1:$p"; done
  echo "    }"
  echo "}"
}

# Peers listen on the ports after slotway's.
start_peer() { # INDEX
  local i="$1" name="${PEER_NAMES[$1]}" kind="${PEER_KINDS[$1]}" bin="${PEER_BINS[$1]}"
  local port=$((PROXY_PORT + 1 + i)) pid
  case "$kind" in
    predixy)
      (umask 077 && predixy_config "$port" >"$OUT/$name.conf")
      "$bin" "$OUT/$name.conf" >"$OUT/$name.log" 2>&1 &
      pid=$!
      ;;
    slotway)
      local args=(--workers "$WORKERS" --listen "127.0.0.1:$port") p
      [[ "$CLIENT_TLS" == on ]] && args=(--workers "$WORKERS" --listen-tls "127.0.0.1:$port"
        --listen-tls-cert "$CLIENT_TLS_DIR/slotway.crt" --listen-tls-key "$CLIENT_TLS_DIR/slotway.key")
      case "$BACKEND" in
        cluster)
          for p in "${PORT_LIST[@]}"; do args+=(--cluster "127.0.0.1:$p"); done
          [[ "$UPSTREAM_TLS" == on ]] && args+=(--upstream-tls --upstream-tls-ca "$DEV_CLUSTER_CA")
          ;;
        sentinel) read -r -a p <<<"$SLOTWAY_SENTINEL_ARGS"; args+=("${p[@]}") ;;
        static) read -r -a p <<<"$SLOTWAY_SERVER_ARGS"; args+=("${p[@]}") ;;
      esac
      SLOTWAY_UPSTREAM_PASSWORD="$PASSWORD" SLOTWAY_SENTINEL_PASSWORD="${SLOTWAY_SENTINEL_PASSWORD:-}" \
        "$bin" "${args[@]}" >"$OUT/$name.log" 2>&1 &
      pid=$!
      ;;
  esac
  PEER_PIDS+=("$pid")
  log "starting $name ($kind, $bin) on 127.0.0.1:$port"
  wait_ping "$name" "$pid" "$port"
}
if ((HAVE_PROXY)); then
  for i in "${!PEER_NAMES[@]}"; do start_peer "$i"; done
fi
# The proxies of this run, by name, with their pid and port.
PROXY_NAMES=()
PROXY_PIDS=()
PROXY_PORTS=()
if ((HAVE_PROXY)); then
  PROXY_NAMES=(slotway "${PEER_NAMES[@]}")
  PROXY_PIDS=("$PROXY_PID" "${PEER_PIDS[@]}")
  PROXY_PORTS=("$PROXY_PORT")
  for i in "${!PEER_NAMES[@]}"; do PROXY_PORTS+=($((PROXY_PORT + 1 + i))); done
fi

CLK_TCK="$(getconf CLK_TCK)"
cpu_ticks() { # utime+stime of a pid, in clock ticks
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }
  stat="${stat##*) }" # fields after the command name; utime/stime are then 12 and 13
  awk '{print $12 + $13}' <<<"$stat"
}

# ------------------------------------------------------------------ runs
RESULTS="$OUT/results.csv"
echo "round,mode,workload,pipeline,requests,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms,proxy_us_per_req" >"$RESULTS"

# run_one ROUND MODE(direct|slotway|peer name) WORKLOAD PIPELINE
run_one() {
  local round="$1" mode="$2" wl="$3" pipe="$4" n="$REQUESTS"
  ((pipe > 1)) && n=$((REQUESTS * PIPE_SCALE))
  # Through NAT mode the client is a cluster client, as directly.
  if [[ "$MODE" == nat || "$mode" == direct ]]; then "workload_$wl" direct; else "workload_$wl" proxy; fi
  local target=() pid="" i
  for i in "${!PROXY_NAMES[@]}"; do
    [[ "${PROXY_NAMES[$i]}" == "$mode" ]] && pid="${PROXY_PIDS[$i]}" && target=(-h 127.0.0.1 -p "${PROXY_PORTS[$i]}")
  done
  if [[ "$mode" == slotway && "$MODE" == nat ]]; then
    target=(--cluster -h 127.0.0.1 -p "$PROXY_PORT" "${PROXY_TLS_ARGS[@]}")
  elif [[ "$mode" == direct ]]; then
    target=(-h 127.0.0.1 -p "${PORT_LIST[0]}")
    # A cluster is benchmarked as a cluster; a group's primary is one server.
    [[ "$BACKEND" == cluster ]] && target=(--cluster "${target[@]}")
    [[ "$UPSTREAM_TLS" == on ]] && target+=(--tls --cacert "$DEV_CLUSTER_CA")
    # redis-benchmark only takes the password on its command line.
    [[ -n "$PASSWORD" ]] && target+=(-a "$PASSWORD")
  else
    target+=("${PROXY_TLS_ARGS[@]}")
  fi
  ((WORKERS > 1)) && target+=(--threads "$WORKERS")
  local t0=0 t1=0
  [[ -n "$pid" ]] && t0="$(cpu_ticks "$pid")"
  local raw
  raw="$(redis-benchmark "${target[@]}" -c "$CLIENTS" -P "$pipe" -r "$KEYSPACE" -n "$n" --csv "${BENCH_ARGS[@]}" \
    2>>"$OUT/redis-benchmark.stderr")" || log "WARNING: redis-benchmark failed ($mode $wl -P $pipe)"
  [[ -n "$pid" ]] && t1="$(cpu_ticks "$pid")"
  # The data line: first quoted line that is not the header.
  local line
  line="$(grep '^"' <<<"$raw" | grep -v '^"test"' | head -1 || true)"
  local us="" fields
  if [[ -n "$pid" ]] && ((t1 >= t0 && t1 > 0)); then
    us="$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')"
  fi
  if [[ -z "$line" ]]; then
    fields=",,,,,,"
    us=""
  else
    fields="$(tr -d '"' <<<"$line" | cut -d, -f2-)"
  fi
  echo "$round,$mode,$wl,$pipe,$n,$fields,$us" >>"$RESULTS"
  log "round $round $mode $BENCH_LABEL -P $pipe: $(cut -d, -f1 <<<"$fields") req/s${us:+, $mode $us µs/req}"
}

# Every round runs direct and each proxy once per (workload, pipeline); the order rotates by one every round, so
# no proxy always runs right after the same one.
MODES=(direct "${PROXY_NAMES[@]}")
for ((round = 1; round <= ROUNDS; round++)); do
  for wl in $WORKLOADS; do
    declare -F "workload_$wl" >/dev/null || die "unknown workload $wl"
    for pipe in $PIPELINES; do
      for ((k = 0; k < ${#MODES[@]}; k++)); do
        run_one "$round" "${MODES[$(((k + round - 1) % ${#MODES[@]}))]}" "$wl" "$pipe"
      done
    done
  done
done

# ------------------------------------------------------------------ report
# Every proxy side by side: throughput and its ratio to direct, p50, CPU per request, and slotway's CPU per request
# over each peer's (below 1: slotway spends less).
side_by_side() {
  local names="${PROXY_NAMES[*]}" head="| test | pipeline | direct req/s" rule="|---|---|---:" n
  for n in "${PROXY_NAMES[@]}"; do head+=" | $n req/s (ratio)"; rule+="|---:"; done
  for n in "${PROXY_NAMES[@]}"; do head+=" | $n p50 ms"; rule+="|---:"; done
  for n in "${PROXY_NAMES[@]}"; do head+=" | $n µs/req"; rule+="|---:"; done
  for n in "${PEER_NAMES[@]}"; do head+=" | slotway CPU / $n"; rule+="|---:"; done
  echo
  echo "Side by side (workers $WORKERS$( ((WORKERS > 1)) && echo ", redis-benchmark --threads $WORKERS")):"
  echo
  echo "$head |"
  echo "$rule|"
  local wl pipe
  for wl in $WORKLOADS; do
    "workload_$wl" proxy
    for pipe in $PIPELINES; do
      awk -F, -v wl="$wl" -v pipe="$pipe" -v label="$BENCH_LABEL" -v names="$names" '
        function median(arr, n,    i, j, t) {
          if (n == 0) return ""
          for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
          return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
        }
        function add(key, v) { if (v != "") { cnt[key]++; vals[key, cnt[key]] = v + 0 } }
        function med(key,    i, a) { for (i = 1; i <= cnt[key]; i++) a[i] = vals[key, i]; return median(a, cnt[key] + 0) }
        function fmt(v, f) { return v == "" ? "n/a" : sprintf(f, v) }
        NR > 1 && $3 == wl && $4 == pipe { add($2 "rps", $6); add($2 "p50", $9); add($2 "us", $13) }
        END {
          k = split(names, proxy, " ")
          d = med("directrps")
          line = sprintf("| %s | %s | %s", label, pipe, fmt(d, "%.0f"))
          for (i = 1; i <= k; i++) {
            r = med(proxy[i] "rps")
            line = line sprintf(" | %s (%s)", fmt(r, "%.0f"), (d != "" && r != "" && d > 0) ? sprintf("%.2f", r / d) : "n/a")
          }
          for (i = 1; i <= k; i++) line = line " | " fmt(med(proxy[i] "p50"), "%.3f")
          for (i = 1; i <= k; i++) line = line " | " fmt(med(proxy[i] "us"), "%.2f")
          s = med("slotwayus")
          for (i = 2; i <= k; i++) {
            u = med(proxy[i] "us")
            line = line " | " ((s != "" && u != "" && u > 0) ? sprintf("%.2f", s / u) : "n/a")
          }
          print line " |"
        }' "$RESULTS"
    done
  done
}

report() {
  echo "## slotway benchmark ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "redis-benchmark -c $CLIENTS -r $KEYSPACE -d $DATA_SIZE, $ROUNDS round(s), median per cell;" \
    "backend $BACKEND: ${#PORT_LIST[@]} nodes, upstream TLS $UPSTREAM_TLS; slotway mode $MODE; client -> slotway: $([[ "$CLIENT_TLS" == on ]] && echo TLS || echo plain TCP);" \
    "machine: $(nproc) cores, everything on one host."
  echo
  echo "| test | pipeline | direct req/s | slotway req/s | ratio | p50 ms (direct / slotway) | p99 ms (direct / slotway) | slotway µs/req |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  local wl pipe
  for wl in $WORKLOADS; do
    "workload_$wl" proxy
    for pipe in $PIPELINES; do
      awk -F, -v wl="$wl" -v pipe="$pipe" -v label="$BENCH_LABEL" '
        function median(arr, n,    i, j, t) {
          if (n == 0) return ""
          for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
          return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
        }
        function add(key, v) { if (v != "") { cnt[key]++; vals[key, cnt[key]] = v + 0 } }
        function med(key,    i, a) { for (i = 1; i <= cnt[key]; i++) a[i] = vals[key, i]; return median(a, cnt[key] + 0) }
        NR > 1 && $3 == wl && $4 == pipe {
          add($2 "rps", $6); add($2 "p50", $9); add($2 "p99", $11); add($2 "us", $13)
        }
        function fmt(v, f) { return v == "" ? "n/a" : sprintf(f, v) }
        END {
          d = med("directrps"); s = med("slotwayrps")
          ratio = (d != "" && s != "" && d > 0) ? sprintf("%.2f", s / d) : "n/a"
          printf "| %s | %s | %s | %s | %s | %s / %s | %s / %s | %s |\n", label, pipe,
            fmt(d, "%.0f"), fmt(s, "%.0f"), ratio,
            fmt(med("directp50"), "%.3f"), fmt(med("slotwayp50"), "%.3f"),
            fmt(med("directp99"), "%.3f"), fmt(med("slotwayp99"), "%.3f"),
            fmt(med("slotwayus"), "%.1f")
        }' "$RESULTS"
    done
  done
  ((${#PEER_NAMES[@]})) && side_by_side
  if ((!HAVE_PROXY)); then
    echo
    echo "slotway columns are n/a: slotway was not benchmarked (--direct-only, or it did not build/start; see $OUT)."
  fi
}
report | tee "$OUT/report.md"
log "raw results: $RESULTS"
