#!/usr/bin/env bash
# What a proxy holds in memory: RSS per idle client connection, and RSS around one large SET and GET.
#
#   bench/memory.sh [--clients N] [--size BYTES] [--tests "idle idle-tls big"] [--upstream-tls on|off]
#                   [--peer NAME=PATH ...] [--ports "P1 ... P6"] [--proxy-port P] [--out DIR]
#
# idle      N plain clients (default 10,000) connect, each sends one GET and reads the reply, then stays connected
#           and idle; RSS per connection = (RSS with them - RSS before) / N, measured 2 s after the last one.
# idle-tls  the same over TLS (slotway's --listen-tls, a throwaway certificate; peers without TLS show n/a).
# big       one client SETs a value of --size bytes (default 256 MiB; sent in 1 MiB pieces) and GETs it back: the
#           proxy's peak RSS during both (VmHWM, reset first) and its RSS 1 s, 10 s and 60 s after, against the RSS
#           before. The target: peak ≤ 2 × the value over the baseline, and back near the baseline within a minute.
#
# Each test starts every proxy afresh (a clean baseline). --peer NAME=PATH as in bench/run.sh (predixy*: needs
# --upstream-tls off, the default here; slotway*: another slotway build). Needs python3 (standard library only).
# Output: a Markdown table on stdout (also OUT/report.md), raw lines in OUT/results.csv.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
CLIENTS=10000
SIZE=$((256 << 20))
TESTS="idle idle-tls big"
UPSTREAM_TLS=off
PORTS="${BENCH_PORTS:-7251 7252 7253 7254 7255 7256}"
PROXY_PORT="${BENCH_PROXY_PORT:-7260}"
OUT=""
PEERS=()
CLUSTER_DIR="$REPO_ROOT/target/bench-memory-cluster"

die() { echo "memory: error: $*" >&2; exit 1; }
log() { echo "memory: $*" >&2; }

while (($#)); do
  case "$1" in
    --clients) CLIENTS="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --tests) TESTS="$2"; shift 2 ;;
    --upstream-tls) UPSTREAM_TLS="$2"; shift 2 ;;
    --peer) PEERS+=("$2"); shift 2 ;;
    --ports) PORTS="$2"; shift 2 ;;
    --proxy-port) PROXY_PORT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$UPSTREAM_TLS" in on|off) ;; *) die "--upstream-tls on|off" ;; esac
command -v python3 >/dev/null 2>&1 || die "needs python3"
command -v openssl >/dev/null 2>&1 || die "needs openssl"
PEER_NAMES=()
PEER_KINDS=()
PEER_BINS=()
for spec in "${PEERS[@]}"; do
  [[ "$spec" == *=* ]] || die "--peer NAME=PATH (got $spec)"
  name="${spec%%=*}" bin="${spec#*=}"
  [[ "$name" =~ ^[A-Za-z][A-Za-z0-9_.-]*$ && "$name" != slotway ]] || die "--peer: bad name $name"
  [[ -x "$bin" ]] || die "--peer $name: $bin is not an executable"
  case "$name" in
    predixy*) kind=predixy; [[ "$UPSTREAM_TLS" == off ]] || die "--peer $name: predixy needs --upstream-tls off" ;;
    slotway*) kind=slotway ;;
    *) die "--peer $name: unknown kind (NAME must start with predixy or slotway)" ;;
  esac
  PEER_NAMES+=("$name") PEER_KINDS+=("$kind")
  PEER_BINS+=("$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")")
done
OUT="${OUT:-$REPO_ROOT/target/bench/memory-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
# The proxies and the client each hold CLIENTS sockets (separate processes, separate limits).
hard="$(ulimit -Hn)"
want=$((CLIENTS + 1000))
[[ "$hard" == unlimited || "$hard" -ge "$want" ]] || die "--clients $CLIENTS needs ulimit -n ≥ $want (hard limit $hard)"
ulimit -n "$want"

PIDS=()
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  "$REPO_ROOT/scripts/dev-cluster.sh" stop --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true
  exit "$rc"
}
stop_pid() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tls_flag=()
[[ "$UPSTREAM_TLS" == off ]] && tls_flag=(--no-tls)
log "starting cluster (upstream TLS $UPSTREAM_TLS) in $CLUSTER_DIR"
"$REPO_ROOT/scripts/dev-cluster.sh" start --dir "$CLUSTER_DIR" --ports "$PORTS" "${tls_flag[@]}" >&2
# shellcheck disable=SC1091
source "$CLUSTER_DIR/env"
read -r -a PORT_LIST <<<"$DEV_CLUSTER_PORTS"
PASSWORD="$SLOTWAY_UPSTREAM_PASSWORD"

# A throwaway CA and a certificate for 127.0.0.1 for slotway's TLS listener.
TLS_DIR="$OUT/client-tls"
mkdir -p "$TLS_DIR"
(
  cd "$TLS_DIR"
  umask 077
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout ca.key -out ca.crt \
    -days 30 -subj "/O=slotway-bench/CN=slotway bench CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout proxy.key -out proxy.csr \
    -subj "/O=slotway-bench/CN=proxy" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >proxy.ext
  openssl x509 -req -in proxy.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out proxy.crt -days 30 -sha256 \
    -extfile proxy.ext 2>/dev/null
) || die "could not generate the TLS certificate"

SLOTWAY_BIN="${SLOTWAY_BIN:-}"
if [[ -z "$SLOTWAY_BIN" ]]; then
  SLOTWAY_BIN="$REPO_ROOT/target/release/slotway"
  log "building slotway (release)"
  (cd "$REPO_ROOT" && cargo build --release -p slotway --bin slotway) >"$OUT/build.log" 2>&1 ||
    die "slotway does not build (see $OUT/build.log)"
fi
NAMES=(slotway "${PEER_NAMES[@]}")
KINDS=(slotway "${PEER_KINDS[@]}")
BINS=("$SLOTWAY_BIN" "${PEER_BINS[@]}")

# start_proxy INDEX: starts proxy INDEX on PROXY_PORT + 2 * INDEX (plain) and the port after it (TLS, slotway
# only); sets STARTED_PID.
start_proxy() {
  local i="$1" name="${NAMES[$1]}" port=$((PROXY_PORT + 2 * $1)) p
  case "${KINDS[$i]}" in
    slotway)
      local args=(--workers 1 --listen "127.0.0.1:$port" --listen-tls "127.0.0.1:$((port + 1))"
        --listen-tls-cert "$TLS_DIR/proxy.crt" --listen-tls-key "$TLS_DIR/proxy.key")
      for p in "${PORT_LIST[@]}"; do args+=(--cluster "127.0.0.1:$p"); done
      [[ "$UPSTREAM_TLS" == on ]] && args+=(--upstream-tls --upstream-tls-ca "$DEV_CLUSTER_CA")
      printf 'client.max_clients = %d\n' $((CLIENTS + 100)) >"$OUT/$name.toml"
      SLOTWAY_UPSTREAM_PASSWORD="$PASSWORD" "${BINS[$i]}" --config "$OUT/$name.toml" "${args[@]}" \
        >>"$OUT/$name.log" 2>&1 &
      ;;
    predixy)
      {
        echo "Name slotway-bench"
        echo "Bind 127.0.0.1:$port"
        echo "WorkerThreads 1"
        echo "ClientTimeout 0"
        echo "LogInfoSample 0"
        echo "ClusterServerPool {"
        [[ -n "$PASSWORD" ]] && echo "    Password $PASSWORD"
        echo "    MasterReadPriority 100"
        echo "    Servers {"
        for p in "${PORT_LIST[@]}"; do echo "        + 127.0.0.1:$p"; done
        echo "    }"
        echo "}"
      } >"$OUT/$name.conf"
      chmod 600 "$OUT/$name.conf"
      "${BINS[$i]}" "$OUT/$name.conf" >>"$OUT/$name.log" 2>&1 &
      ;;
  esac
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  local deadline=$((SECONDS + 30))
  until [[ "$(env -u REDISCLI_AUTH timeout 2 redis-cli -p "$port" PING 2>/dev/null)" == PONG ]]; do
    if ! kill -0 "$STARTED_PID" 2>/dev/null || ((SECONDS >= deadline)); then
      die "$name did not start (log: $OUT/$name.log)"
    fi
    sleep 0.2
  done
}

echo "test,proxy,a,b,c,d,e,f" >"$OUT/results.csv"
for test in $TESTS; do
  for i in "${!NAMES[@]}"; do
    name="${NAMES[$i]}"
    port=$((PROXY_PORT + 2 * i))
    [[ "$test" == idle-tls && "${KINDS[$i]}" != slotway ]] && continue
    start_proxy "$i"
    pid="$STARTED_PID"
    log "$test: $name (pid $pid)"
    case "$test" in
      idle) line="$(python3 "$SCRIPT_DIR/memclient.py" idle --port "$port" --count "$CLIENTS" --pid "$pid")" ;;
      idle-tls)
        line="$(python3 "$SCRIPT_DIR/memclient.py" idle --port $((port + 1)) --tls --cacert "$TLS_DIR/ca.crt" \
          --count "$CLIENTS" --pid "$pid")"
        ;;
      big) line="$(python3 "$SCRIPT_DIR/memclient.py" big --port "$port" --size "$SIZE" --pid "$pid")" ;;
      *) die "unknown test $test" ;;
    esac
    log "$name: $line"
    echo "$test,$name,${line#*,}" >>"$OUT/results.csv"
    stop_pid "$pid"
  done
done

{
  echo "## proxy memory ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "3 primaries + 3 replicas, upstream TLS $UPSTREAM_TLS, one worker thread per proxy; $(nproc) cores."
  awk -F, -v size="$SIZE" '
    NR == 1 { next }
    $1 == "idle" || $1 == "idle-tls" {
      if (!idle_head++) { print ""; print "| clients | proxy | RSS before (KiB) | RSS with clients (KiB) | bytes per idle client |"; print "|---|---|---:|---:|---:|" }
      printf "| %s %s | %s | %d | %d | %d |\n", $3, ($1 == "idle" ? "plain" : "TLS"), $2, $4, $5, $6
    }
    $1 == "big" {
      if (!big_head++) { print ""; printf "| one SET + GET of %d MiB | RSS before (MiB) | peak (MiB) | peak over before / value | 1 s after | 10 s after | 60 s after |\n", size / 1048576; print "|---|---:|---:|---:|---:|---:|---:|" }
      printf "| %s | %.0f | %.0f | %.2f | %.0f | %.0f | %.0f |\n", $2, $4 / 1024, $5 / 1024, ($5 - $4) * 1024 / size, $6 / 1024, $7 / 1024, $8 / 1024
    }' "$OUT/results.csv"
} | tee "$OUT/report.md"
