#!/usr/bin/env bash
# Sharded-pool benchmark: 4 standalone Redis primaries (scripts/dev-pool.sh), redis-benchmark directly against
# one of them, through nutcracker (twemproxy, Debian's package) and through slotway, both proxies in front of the
# same pool (ketama over fnv1a_64, the same server names). Runs are interleaved (the order rotates every round)
# and each cell is the median over the rounds: on a shared machine only ratios from one run mean something.
#
#   bench/pool.sh [--rounds N] [--requests N] [--pipeline-scale N] [--workloads "set get mget100"]
#                 [--pipelines "1 16"] [--clients N] [--data-size BYTES] [--keyspace N] [--workers N]
#                 [--ports "P1 P2 P3 P4"] [--proxy-port P] [--nutcracker-port P] [--out DIR] [--keep]
#
# --rounds N          rounds of every (workload, pipeline) pair (default 5)
# --requests N        requests per run at -P 1 (default 60000); -P k>1 runs use N * --pipeline-scale (default 6);
#                     mget100 runs use N / 10
# --workers N         slotway's worker threads (default: slotway's own default, half the cores; nutcracker is
#                     single-threaded)
# SLOTWAY_BIN=PATH    benchmark that binary instead of building target/release/slotway
#
# Upstream TLS is off (nutcracker has none) and the servers require a password: nutcracker logs in with
# redis_auth (and makes its clients send AUTH too, as twemproxy does); slotway with SLOTWAY_UPSTREAM_PASSWORD.
#
# Output: a Markdown table on stdout (also OUT/report.md) and every run in OUT/results.csv (default OUT:
# target/bench/pool-<date>). "µs/req" is the proxy's CPU time (utime+stime from /proc/<pid>/stat) during the run
# divided by the run's requests (an MGET of 100 keys is one request).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

ROUNDS=5
REQUESTS=60000
PIPE_SCALE=6
WORKLOADS="set get mget100"
PIPELINES="1 16"
CLIENTS=50
DATA_SIZE=3
KEYSPACE=100000
WORKERS=""
PORTS="${BENCH_POOL_PORTS:-7401 7402 7403 7404}"
PROXY_PORT="${BENCH_PROXY_PORT:-7499}"
NC_PORT="${BENCH_NUTCRACKER_PORT:-7498}"
OUT=""
KEEP=0
POOL_DIR="$REPO_ROOT/target/bench-pool"
PASSWORD="slotway-bench-pass"

die() { echo "bench: error: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

while (($#)); do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --pipeline-scale) PIPE_SCALE="$2"; shift 2 ;;
    --workloads) WORKLOADS="$2"; shift 2 ;;
    --pipelines) PIPELINES="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --data-size) DATA_SIZE="$2"; shift 2 ;;
    --keyspace) KEYSPACE="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --ports) PORTS="$2"; shift 2 ;;
    --proxy-port) PROXY_PORT="$2"; shift 2 ;;
    --nutcracker-port) NC_PORT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive number"
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || die "--requests must be a positive number"
OUT="${OUT:-$REPO_ROOT/target/bench/pool-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

NUTCRACKER="$(command -v nutcracker || echo /usr/sbin/nutcracker)"
if ! [[ -x "$NUTCRACKER" ]] || ! command -v redis-benchmark >/dev/null 2>&1; then
  log "installing nutcracker redis-tools redis-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq nutcracker redis-tools redis-server >&2
  NUTCRACKER="$(command -v nutcracker || echo /usr/sbin/nutcracker)"
fi

# ------------------------------------------------------------------ workloads
# workload_NAME sets BENCH_ARGS (redis-benchmark arguments choosing the command) and BENCH_LABEL.
workload_set() { BENCH_ARGS=(-t set -d "$DATA_SIZE"); BENCH_LABEL=SET; }
workload_get() { BENCH_ARGS=(-t get -d "$DATA_SIZE"); BENCH_LABEL=GET; }
# 100 random keys per MGET: both proxies split it per server and merge the replies; directly, one server
# answers it whole.
workload_mget100() {
  local i
  BENCH_ARGS=(MGET)
  for ((i = 0; i < 100; i++)); do BENCH_ARGS+=(key:__rand_int__); done
  BENCH_LABEL="MGET (100 keys)"
}

# ------------------------------------------------------------------ pool, nutcracker, slotway
PROXY_PID=""
NC_PID=""
stop_pid() {
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 0
  kill "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  if ((KEEP)); then
    log "--keep: pool left running in $POOL_DIR (slotway pid $PROXY_PID, nutcracker pid $NC_PID)"
  else
    stop_pid "$PROXY_PID"
    stop_pid "$NC_PID"
    "$REPO_ROOT/scripts/dev-pool.sh" stop --dir "$POOL_DIR" >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r -a PORT_LIST <<<"$PORTS"
((${#PORT_LIST[@]} == 4)) || die "--ports: four ports"
log "starting 4 standalone primaries on ${PORT_LIST[*]} in $POOL_DIR"
DEV_POOL_PASSWORD="$PASSWORD" "$REPO_ROOT/scripts/dev-pool.sh" start --dir "$POOL_DIR" --shards 4 --replicas 0 \
  --ports "${PORT_LIST[*]}" --nutcracker-port "$NC_PORT" >&2

log "starting nutcracker on 127.0.0.1:$NC_PORT"
"$NUTCRACKER" -c "$POOL_DIR/nutcracker.yml" -o "$OUT/nutcracker.log" -p "$OUT/nutcracker.pid" \
  -s "$((NC_PORT + 1000))" -a 127.0.0.1 >/dev/null 2>&1 &
NC_PID=$!

if [[ -z "${SLOTWAY_BIN:-}" ]]; then
  SLOTWAY_BIN="$REPO_ROOT/target/release/slotway"
  log "building slotway (release)"
  (cd "$REPO_ROOT" && cargo build --release -p slotway --bin slotway) >"$OUT/build.log" 2>&1 ||
    die "slotway does not build (see $OUT/build.log)"
fi
args=(--config "$POOL_DIR/slotway.toml" --listen "127.0.0.1:$PROXY_PORT")
[[ -n "$WORKERS" ]] && args+=(--workers "$WORKERS")
log "starting slotway on 127.0.0.1:$PROXY_PORT"
SLOTWAY_UPSTREAM_PASSWORD="$PASSWORD" "$SLOTWAY_BIN" "${args[@]}" >"$OUT/slotway.log" 2>&1 &
PROXY_PID=$!

wait_ping() { # port [password]
  local deadline=$((SECONDS + 30)) out
  while ((SECONDS < deadline)); do
    if [[ -n "${2:-}" ]]; then
      out="$(REDISCLI_AUTH="$2" timeout 2 redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null || true)"
    else
      out="$(env -u REDISCLI_AUTH timeout 2 redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null || true)"
    fi
    [[ "$out" == PONG ]] && return 0
    sleep 0.2
  done
  return 1
}
wait_ping "$NC_PORT" "$PASSWORD" || die "nutcracker does not answer (log: $OUT/nutcracker.log)"
wait_ping "$PROXY_PORT" || { tail -n 20 "$OUT/slotway.log" >&2; die "slotway does not answer"; }

CLK_TCK="$(getconf CLK_TCK)"
cpu_ticks() { # utime+stime of a pid, in clock ticks
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }
  stat="${stat##*) }"
  awk '{print $12 + $13}' <<<"$stat"
}

# ------------------------------------------------------------------ runs
RESULTS="$OUT/results.csv"
echo "round,target,workload,pipeline,requests,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms,proxy_us_per_req" >"$RESULTS"

# run_one ROUND TARGET(direct|nutcracker|slotway) WORKLOAD PIPELINE
run_one() {
  local round="$1" target="$2" wl="$3" pipe="$4" n="$REQUESTS" pid=""
  ((pipe > 1)) && n=$((REQUESTS * PIPE_SCALE))
  [[ "$wl" == mget100 ]] && n=$((n / 10))
  "workload_$wl"
  local dest=()
  case "$target" in
    # redis-benchmark only takes a password on its command line (a throwaway one here).
    direct) dest=(-h 127.0.0.1 -p "${PORT_LIST[0]}" -a "$PASSWORD") ;;
    nutcracker) dest=(-h 127.0.0.1 -p "$NC_PORT" -a "$PASSWORD"); pid="$NC_PID" ;;
    slotway) dest=(-h 127.0.0.1 -p "$PROXY_PORT"); pid="$PROXY_PID" ;;
  esac
  local t0=0 t1=0 raw line us="" fields
  [[ -n "$pid" ]] && t0="$(cpu_ticks "$pid")"
  raw="$(redis-benchmark "${dest[@]}" -c "$CLIENTS" -P "$pipe" -r "$KEYSPACE" -n "$n" --csv "${BENCH_ARGS[@]}" \
    2>>"$OUT/redis-benchmark.stderr")" || log "WARNING: redis-benchmark failed ($target $wl -P $pipe)"
  [[ -n "$pid" ]] && t1="$(cpu_ticks "$pid")"
  line="$(grep '^"' <<<"$raw" | grep -v '^"test"' | head -1 || true)"
  if [[ -n "$pid" ]] && ((t1 >= t0 && t1 > 0)); then
    us="$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')"
  fi
  if [[ -z "$line" ]]; then fields=",,,,,,"; us=""; else fields="$(tr -d '"' <<<"$line" | cut -d, -f2-)"; fi
  echo "$round,$target,$wl,$pipe,$n,$fields,$us" >>"$RESULTS"
  log "round $round $target $BENCH_LABEL -P $pipe: $(cut -d, -f1 <<<"$fields") req/s${us:+, $us µs/req}"
}

# Fill the keyspace once so GET and MGET find values.
log "filling the keyspace through slotway"
redis-benchmark -h 127.0.0.1 -p "$PROXY_PORT" -c 50 -P 64 -r "$KEYSPACE" -n $((KEYSPACE * 3)) -t set -d "$DATA_SIZE" \
  -q >/dev/null 2>&1 || true

TARGETS=(direct nutcracker slotway)
for ((round = 1; round <= ROUNDS; round++)); do
  for wl in $WORKLOADS; do
    declare -F "workload_$wl" >/dev/null || die "unknown workload $wl"
    for pipe in $PIPELINES; do
      [[ "$wl" == mget100 && "$pipe" != 1 ]] && continue
      # Rotate the order every round, so no target always runs first (or last) on a busy machine.
      for ((i = 0; i < 3; i++)); do
        run_one "$round" "${TARGETS[$(((round + i) % 3))]}" "$wl" "$pipe"
      done
    done
  done
done

# ------------------------------------------------------------------ report
report() {
  echo "## Sharded pool: nutcracker vs slotway ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "4 standalone primaries (no TLS: nutcracker has none; AUTH on), ketama over fnv1a_64; redis-benchmark" \
    "-c $CLIENTS -r $KEYSPACE -d $DATA_SIZE; $ROUNDS interleaved rounds, median per cell; direct = one server" \
    "alone; slotway workers: ${WORKERS:-default}; machine: $(nproc) cores, everything on one host."
  echo
  echo "| test | P | direct req/s | nutcracker req/s | slotway req/s | p50 ms (nc / sw) | p99 ms (nc / sw) | nutcracker µs/req | slotway µs/req | slotway / nutcracker CPU |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  local wl pipe
  for wl in $WORKLOADS; do
    "workload_$wl"
    for pipe in $PIPELINES; do
      [[ "$wl" == mget100 && "$pipe" != 1 ]] && continue
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
          # The CPU ratio per round (both proxies ran in that round), then its median.
          r[$1, $2] = $13
        }
        function fmt(v, f) { return v == "" ? "n/a" : sprintf(f, v) }
        END {
          for (k in r) { split(k, p, SUBSEP); rounds[p[1]] = 1 }
          for (rd in rounds) if (r[rd, "nutcracker"] > 0 && r[rd, "slotway"] != "") add("ratio", r[rd, "slotway"] / r[rd, "nutcracker"])
          printf "| %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s | %s |\n", label, pipe,
            fmt(med("directrps"), "%.0f"), fmt(med("nutcrackerrps"), "%.0f"), fmt(med("slotwayrps"), "%.0f"),
            fmt(med("nutcrackerp50"), "%.3f"), fmt(med("slotwayp50"), "%.3f"),
            fmt(med("nutcrackerp99"), "%.3f"), fmt(med("slotwayp99"), "%.3f"),
            fmt(med("nutcrackerus"), "%.2f"), fmt(med("slotwayus"), "%.2f"), fmt(med("ratio"), "%.2f")
        }' "$RESULTS"
    done
  done
}
report | tee "$OUT/report.md"
log "raw results: $RESULTS"
