#!/usr/bin/env bash
# What latency tracking costs: slotway's CPU per request with latency histograms and the slow log on (the
# default) vs off (`latency_tracking = false`), GET at pipeline 1 and 16.
#
#   bench/observe-cost.sh [--rounds N] [--requests N] [--pipelines "1 16"] [--clients N] [--keep]
#                         [--ports "P1 ... P6"] [--proxy-port P] [--out DIR]
#
# Two slotways run side by side in front of one cluster (TLS+AUTH upstream, as bench/run.sh): ON on
# --proxy-port, OFF on the next port. Every round runs redis-benchmark against each in turn (the order flips
# every round), so both see the same machine load; the report gives the median over rounds of each one's CPU
# time per request (the sum of its threads' on-CPU time from /proc/<pid>/task/*/schedstat, in ns, divided by
# the requests of the run) and their ratio.
#
# --rounds N      rounds (default 7)
# --requests N    GETs per run at -P 1 (default 100000); -P k>1 runs use 4x as many
# SLOTWAY_BIN=PATH  benchmark that binary instead of building target/release/slotway
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

ROUNDS=7
REQUESTS=100000
PIPELINES="1 16"
CLIENTS=50
KEEP=0
PORTS="${BENCH_PORTS:-7221 7222 7223 7224 7225 7226}"
PROXY_PORT="${BENCH_PROXY_PORT:-7297}"
OUT=""
CLUSTER_DIR="$REPO_ROOT/target/bench-observe-cluster"

die() { echo "observe-cost: error: $*" >&2; exit 1; }
log() { echo "observe-cost: $*" >&2; }

while (($#)); do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --pipelines) PIPELINES="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --ports) PORTS="$2"; shift 2 ;;
    --proxy-port) PROXY_PORT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive number"
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || die "--requests must be a positive number"
OUT="${OUT:-$REPO_ROOT/target/bench/observe-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
command -v redis-benchmark >/dev/null 2>&1 || die "redis-benchmark not found (apt-get install redis-tools)"

PIDS=()
cleanup() {
  local rc=$? p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if ((!KEEP)); then "$REPO_ROOT/scripts/dev-cluster.sh" stop --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting cluster in $CLUSTER_DIR"
"$REPO_ROOT/scripts/dev-cluster.sh" start --dir "$CLUSTER_DIR" --ports "$PORTS" >&2
# shellcheck disable=SC1091
source "$CLUSTER_DIR/env"
read -r -a PORT_LIST <<<"$DEV_CLUSTER_PORTS"

if [[ -z "${SLOTWAY_BIN:-}" ]]; then
  SLOTWAY_BIN="$REPO_ROOT/target/release/slotway"
  log "building slotway (release)"
  (cd "$REPO_ROOT" && cargo build --release -p slotway --bin slotway) >"$OUT/build.log" 2>&1 ||
    die "slotway does not build (see $OUT/build.log)"
fi

printf 'latency_tracking = true\n' >"$OUT/on.toml"
printf 'latency_tracking = false\n' >"$OUT/off.toml"
declare -A PORT_OF PID_OF
PORT_OF[on]=$PROXY_PORT
PORT_OF[off]=$((PROXY_PORT + 1))
for mode in on off; do
  args=(--config "$OUT/$mode.toml" --listen "127.0.0.1:${PORT_OF[$mode]}" --upstream-tls --upstream-tls-ca "$DEV_CLUSTER_CA")
  for p in "${PORT_LIST[@]}"; do args+=(--cluster "127.0.0.1:$p"); done
  "$SLOTWAY_BIN" "${args[@]}" >"$OUT/slotway-$mode.log" 2>&1 &
  PID_OF[$mode]=$!
  PIDS+=("$!")
done
for mode in on off; do
  deadline=$((SECONDS + 30))
  until [[ "$(env -u REDISCLI_AUTH redis-cli -p "${PORT_OF[$mode]}" PING 2>/dev/null)" == PONG ]]; do
    ((SECONDS < deadline)) || die "slotway ($mode) did not answer PING (log: $OUT/slotway-$mode.log)"
    sleep 0.2
  done
done
log "filling 100000 keys"
env -u REDISCLI_AUTH redis-benchmark -p "${PORT_OF[on]}" -t set -r 100000 -n 200000 -P 16 -q >/dev/null

# Nanoseconds on CPU of every thread of a process.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }

RESULTS="$OUT/results.csv"
echo "round,mode,pipeline,requests,rps,cpu_ns_per_req" >"$RESULTS"
run_one() { # ROUND MODE PIPELINE
  local n=$REQUESTS
  (($3 > 1)) && n=$((REQUESTS * 4))
  local t0 t1 raw rps
  t0="$(cpu_ns "${PID_OF[$2]}")"
  raw="$(env -u REDISCLI_AUTH redis-benchmark -p "${PORT_OF[$2]}" -t get -r 100000 -c "$CLIENTS" -P "$3" -n "$n" --csv 2>/dev/null)"
  t1="$(cpu_ns "${PID_OF[$2]}")"
  rps="$(grep '^"GET"' <<<"$raw" | cut -d, -f2 | tr -d '"')"
  echo "$1,$2,$3,$n,$rps,$(((t1 - t0) / n))" >>"$RESULTS"
  log "round $1 $2 -P $3: $rps req/s, $(awk -v d=$((t1 - t0)) -v n="$n" 'BEGIN { printf "%.2f", d / n / 1000 }') µs CPU/req"
}
for ((round = 1; round <= ROUNDS; round++)); do
  for pipe in $PIPELINES; do
    if ((round % 2)); then
      run_one "$round" on "$pipe"
      run_one "$round" off "$pipe"
    else
      run_one "$round" off "$pipe"
      run_one "$round" on "$pipe"
    fi
  done
done

{
  echo "## Latency tracking cost ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "GET, redis-benchmark -c $CLIENTS -r 100000, $ROUNDS interleaved rounds, median per cell; $(nproc) cores;" \
    "cluster of ${#PORT_LIST[@]} nodes with TLS+AUTH on the same host."
  echo
  echo "| pipeline | on: µs CPU/req | off: µs CPU/req | on / off | median of per-round on / off | on: req/s | off: req/s |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for pipe in $PIPELINES; do
    awk -F, -v pipe="$pipe" '
      function median(arr, n,    i, j, t) {
        for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
        return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
      }
      NR > 1 && $3 == pipe { c[$2]++; cpu[$2, c[$2]] = $6; rps[$2, c[$2]] = $5; by_round[$1, $2] = $6; rounds[$1] = 1 }
      function med(arr, mode,    i, a) { for (i = 1; i <= c[mode]; i++) a[i] = arr[mode, i]; return median(a, c[mode]) }
      END {
        on = med(cpu, "on"); off = med(cpu, "off")
        n = 0
        for (r in rounds) if (by_round[r, "off"] > 0) ratio[++n] = by_round[r, "on"] / by_round[r, "off"]
        printf "| %s | %.2f | %.2f | %.3f | %.3f | %.0f | %.0f |\n", pipe, on / 1000, off / 1000, on / off,
          median(ratio, n), med(rps, "on"), med(rps, "off")
      }' "$RESULTS"
  done
} | tee "$OUT/report.md"
log "raw results: $RESULTS"
