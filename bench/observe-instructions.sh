#!/usr/bin/env bash
# What latency tracking costs, counted in instructions: slotway under valgrind's callgrind, with latency tracking
# on and off, one client sending GETs at pipeline 1 and 16. Instructions don't depend on how busy the machine is
# (CPU time does: see bench/observe-cost.sh), so this gives the same answer on a loaded host. They count user
# space only: the kernel's share of a request (socket reads and writes), which tracking doesn't change, is left out,
# so the ratio overstates the share of CPU time.
#
#   bench/observe-instructions.sh [--runs N] [--requests N] [--pipelines "1 16"] [--ports "P1 ... P6"]
#                                 [--proxy-port P] [--out DIR]
#
# --runs N       runs per (mode, pipeline) (default 2)
# --requests N   GETs counted per run at -P 16 (default 32000); -P 1 runs count a quarter as many
# Needs valgrind (apt-get install valgrind). The slow log's threshold is raised to 10 s in the "on" run: under
# valgrind every request is slow, and logging them would measure the slow log, not the tracking.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
RUNS=2
REQUESTS=32000
PIPELINES="1 16"
PORTS="${BENCH_PORTS:-7231 7232 7233 7234 7235 7236}"
PROXY_PORT="${BENCH_PROXY_PORT:-7295}"
OUT=""
CLUSTER_DIR="$REPO_ROOT/target/bench-observe-instr-cluster"

die() { echo "observe-instructions: error: $*" >&2; exit 1; }
log() { echo "observe-instructions: $*" >&2; }

while (($#)); do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --pipelines) PIPELINES="$2"; shift 2 ;;
    --ports) PORTS="$2"; shift 2 ;;
    --proxy-port) PROXY_PORT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
if ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_control >/dev/null 2>&1; then
  die "needs valgrind (apt-get install valgrind)"
fi
command -v redis-benchmark >/dev/null 2>&1 || die "redis-benchmark not found (apt-get install redis-tools)"
OUT="${OUT:-$REPO_ROOT/target/bench/observe-instr-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

PID=""
cleanup() {
  local rc=$?
  [[ -n "$PID" ]] && kill "$PID" 2>/dev/null
  "$REPO_ROOT/scripts/dev-cluster.sh" stop --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting cluster in $CLUSTER_DIR"
"$REPO_ROOT/scripts/dev-cluster.sh" start --dir "$CLUSTER_DIR" --ports "$PORTS" >&2
# shellcheck disable=SC1091
source "$CLUSTER_DIR/env"
read -r -a PORT_LIST <<<"$DEV_CLUSTER_PORTS"
SLOTWAY_BIN="${SLOTWAY_BIN:-$REPO_ROOT/target/release/slotway}"
if [[ "$SLOTWAY_BIN" == "$REPO_ROOT/target/release/slotway" ]]; then
  log "building slotway (release)"
  (cd "$REPO_ROOT" && cargo build --release -p slotway --bin slotway) >"$OUT/build.log" 2>&1 ||
    die "slotway does not build (see $OUT/build.log)"
fi
printf 'latency_tracking = true\n[slowlog]\nthreshold_us = 10000000\n' >"$OUT/on.toml"
printf 'latency_tracking = false\n' >"$OUT/off.toml"

bench() { env -u REDISCLI_AUTH redis-benchmark -p "$PROXY_PORT" -t get -r 1000 -c 1 -P "$1" -n "$2" -q >/dev/null 2>&1; }

# count MODE PIPELINE REQUESTS: slotway's instructions between a zero and a dump around one benchmark run.
count() {
  local args=(--workers 1 --config "$OUT/$1.toml" --listen "127.0.0.1:$PROXY_PORT" --upstream-tls
    --upstream-tls-ca "$DEV_CLUSTER_CA")
  local p
  for p in "${PORT_LIST[@]}"; do args+=(--cluster "127.0.0.1:$p"); done
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$1.$2.%p" "$SLOTWAY_BIN" "${args[@]}" \
    >"$OUT/slotway-$1.log" 2>&1 &
  PID=$!
  local deadline=$((SECONDS + 120))
  until [[ "$(env -u REDISCLI_AUTH redis-cli -p "$PROXY_PORT" PING 2>/dev/null)" == PONG ]]; do
    ((SECONDS < deadline)) || die "slotway under valgrind did not answer (log: $OUT/slotway-$1.log)"
    sleep 0.5
  done
  bench "$2" 4000 # warm up: connections, the command histograms, the allocator
  callgrind_control -z "$PID" >/dev/null
  bench "$2" "$3"
  callgrind_control -d "$PID" >/dev/null
  sleep 1
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  local file ir
  # callgrind_control -d wrote part 1 (FILE.1); the final dump at exit is FILE itself.
  file="$OUT/callgrind.$1.$2.$PID.1"
  ir="$(awk '/^(summary|totals):/ { print $2; exit }' "$file")"
  PID=""
  echo "$1,$2,$3,$ir" >>"$OUT/results.csv"
  log "$1 -P $2: $((ir / $3)) instructions per request"
}

echo "mode,pipeline,requests,instructions" >"$OUT/results.csv"
for pipe in $PIPELINES; do
  n=$REQUESTS
  ((pipe == 1)) && n=$((REQUESTS / 4))
  for ((run = 1; run <= RUNS; run++)); do
    count on "$pipe" "$n"
    count off "$pipe" "$n"
  done
done
{
  echo "## Latency tracking cost in instructions ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "slotway under callgrind (user-space instructions), one client, GET; $RUNS run(s) each, mean."
  echo
  echo "| pipeline | on: instructions/req | off: instructions/req | on / off |"
  echo "|---|---:|---:|---:|"
  awk -F, 'NR > 1 { s[$2 "," $1] += $4 / $3; c[$2 "," $1]++; p[$2] = 1 }
    END { for (k in p) printf "| %s | %.0f | %.0f | %.3f |\n", k, s[k ",on"] / c[k ",on"], s[k ",off"] / c[k ",off"],
      (s[k ",on"] / c[k ",on"]) / (s[k ",off"] / c[k ",off"]) }' "$OUT/results.csv" | sort -t'|' -k2n
} | tee "$OUT/report.md"
