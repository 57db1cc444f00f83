#!/usr/bin/env bash
# Where a proxy's CPU goes: user and system time per request (from /proc) for slotway and predixy under the same
# redis-benchmark load, and a `perf record -e cpu-clock` profile of each: GET at pipeline 16, and an MGET of 100
# random keys (all over the slots) at pipeline 1.
#
#   bench/profile.sh --predixy PATH [--rounds N] [--ports "P1 ... P6"] [--proxy-port P] [--out DIR]
#
# A local cluster without TLS (3 primaries + 3 replicas, AUTH; predixy has no upstream TLS), slotway
# (target/release/slotway, or $SLOTWAY_BIN) and predixy with one worker each; 50 clients, random keys out of
# 100,000, 100,000 requests per run at pipeline 1 and 1,000,000 at 16 (a twentieth of that for MGET), the two
# proxies alternating. Prints one line per run; the profiles are OUT/perf-{slotway,predixy}-{get,mget100}.data
# (`perf report -i FILE --no-children --sort dso,sym`). Needs linux-perf (cpu-clock works on machines without
# hardware counters).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

PREDIXY="" ROUNDS=2 PORTS="7301 7302 7303 7304 7305 7306" PROXY_PORT=7400 OUT="$REPO_ROOT/target/bench-profile"
while (($#)); do
  case "$1" in
    --predixy) PREDIXY="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --ports) PORTS="$2"; shift 2 ;;
    --proxy-port) PROXY_PORT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "profile.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x "$PREDIXY" ]] || { echo "profile.sh: --predixy PATH (see bench/README.md for building it)" >&2; exit 2; }
command -v perf >/dev/null 2>&1 || { echo "profile.sh: perf not found (apt-get install linux-perf)" >&2; exit 2; }
SLOTWAY_BIN="${SLOTWAY_BIN:-$REPO_ROOT/target/release/slotway}"
if [[ ! -x "$SLOTWAY_BIN" ]]; then cargo build --release -q -p slotway; fi
mkdir -p "$OUT"
CLUSTER_DIR="$OUT/cluster"
SW_PORT=$((PROXY_PORT + 1))
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  scripts/dev-cluster.sh stop --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT

scripts/dev-cluster.sh start --dir "$CLUSTER_DIR" --ports "$PORTS" --no-tls >&2
# shellcheck disable=SC1091
source "$CLUSTER_DIR/env"
read -r -a PORT_LIST <<<"$DEV_CLUSTER_PORTS"

(
  umask 077
  printf 'Name slotway-profile\nBind 127.0.0.1:%s\nWorkerThreads 1\nClientTimeout 0\nLogNoticeSample 1\n' \
    "$PROXY_PORT"
  printf 'ClusterServerPool {\n    Password %s\n    MasterReadPriority 100\n    Servers {\n' \
    "$SLOTWAY_UPSTREAM_PASSWORD"
  for p in "${PORT_LIST[@]}"; do printf '        + 127.0.0.1:%s\n' "$p"; done
  printf '    }\n}\n'
) >"$OUT/predixy.conf"
"$PREDIXY" "$OUT/predixy.conf" >"$OUT/predixy.log" 2>&1 &
PX=$!
PIDS+=("$PX")
sw_args=(--workers 1 --listen "127.0.0.1:$SW_PORT")
for p in "${PORT_LIST[@]}"; do sw_args+=(--cluster "127.0.0.1:$p"); done
"$SLOTWAY_BIN" "${sw_args[@]}" >"$OUT/slotway.log" 2>&1 &
SW=$!
PIDS+=("$SW")
for port in "$SW_PORT" "$PROXY_PORT"; do
  for _ in $(seq 100); do
    [[ "$(env -u REDISCLI_AUTH redis-cli -p "$port" PING 2>/dev/null)" == PONG ]] && break
    sleep 0.1
  done
done

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
run() { # NAME PID PORT TEST PIPELINE REQUESTS
  local u0 s0 u1 s1
  read -r u0 s0 < <(ticks "$2")
  if [[ "$4" == mget100 ]]; then
    # 100 random keys over every slot: the proxy splits it per slot and merges the replies.
    local args=(MGET) i
    for ((i = 0; i < 100; i++)); do args+=(key:__rand_int__); done
    env -u REDISCLI_AUTH redis-benchmark -p "$3" -c 50 -r 100000 -n "$6" -P "$5" -q "${args[@]}" >/dev/null 2>&1
  else
    env -u REDISCLI_AUTH redis-benchmark -p "$3" -c 50 -r 100000 -n "$6" -P "$5" -t "$4" -q >/dev/null 2>&1
  fi
  read -r u1 s1 < <(ticks "$2")
  # Clock ticks are 10 ms: µs per request = ticks * 10,000 / requests.
  awk -v n="$1" -v t="$4" -v p="$5" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v r="$6" 'BEGIN {
    printf "%-8s %s P%-2s user %.2f  sys %.2f  total %.2f µs/req\n", n, t, p, u*1e4/r, s*1e4/r, (u+s)*1e4/r }'
}
for ((round = 1; round <= ROUNDS; round++)); do
  for t in get set mget100; do
    for pipe in 1 16; do
      n=100000
      ((pipe > 1)) && n=1000000
      [[ "$t" == mget100 ]] && n=$((n / 20))
      run slotway "$SW" "$SW_PORT" "$t" "$pipe" "$n"
      run predixy "$PX" "$PROXY_PORT" "$t" "$pipe" "$n"
    done
  done
done

mget=(MGET)
for ((i = 0; i < 100; i++)); do mget+=(key:__rand_int__); done
for who in slotway predixy; do
  if [[ "$who" == slotway ]]; then pid=$SW port=$SW_PORT; else pid=$PX port=$PROXY_PORT; fi
  for t in get mget100; do
    perf record -q -e cpu-clock -g -p "$pid" -o "$OUT/perf-$who-$t.data" -- sleep 6 >/dev/null 2>&1 &
    rec=$!
    sleep 0.5
    if [[ "$t" == get ]]; then
      env -u REDISCLI_AUTH redis-benchmark -p "$port" -c 50 -r 100000 -n 1500000 -P 16 -t get -q >/dev/null 2>&1 || true
    else
      env -u REDISCLI_AUTH redis-benchmark -p "$port" -c 50 -r 100000 -n 60000 -P 1 -q "${mget[@]}" >/dev/null 2>&1 || true
    fi
    wait "$rec" || true
    [[ "$t" == get ]] && echo "== $who: GET P16, share by object" || echo "== $who: MGET (100 keys) P1, share by object"
    perf report -i "$OUT/perf-$who-$t.data" --no-children --sort dso -g none 2>/dev/null | grep '%' | head -4
  done
done
