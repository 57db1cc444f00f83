#!/usr/bin/env bash
# What a plain L4 forwarder costs on this machine: HAProxy in TCP mode (one thread) in front of one standalone
# redis-server (no TLS, no AUTH), with the same redis-benchmark load as bench/run.sh (GET, 50 clients, pipeline 1
# and 16, random keys). Reports HAProxy's CPU microseconds per request (utime+stime from /proc) next to the direct
# throughput.
#
# Why: a forwarder does the least any proxy can do per request at pipeline 1: one read and one write on the
# client's socket and one of each on the server's. Half of its cost is roughly the kernel's price for a proxy's
# client side alone (one read, one write per request), which no proxy design can avoid. That puts a floor under
# slotway's own CPU per request at pipeline 1 on this host. The redis-server's own CPU per request in the direct
# runs shows the same floor from another side: a server that does one read and one write per request and almost
# nothing else.
#
#   bench/l4-floor.sh [--requests N] [--rounds N] [--port P]
#
# Installs haproxy with apt-get when it is missing (you are root on the dev machine and in CI).
set -euo pipefail

REQUESTS=300000
ROUNDS=3
PORT=7411
while (($#)); do
  case "$1" in
    --requests) REQUESTS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    *) echo "l4-floor: unknown option $1" >&2; exit 2 ;;
  esac
done
REDIS_PORT=$PORT
PROXY_PORT=$((PORT + 1))

if ! command -v haproxy >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy >/dev/null
fi
WORK="$(mktemp -d)"
cleanup() {
  if [[ -n "${HAPROXY_PID:-}" ]]; then kill "$HAPROXY_PID" 2>/dev/null || true; fi
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --logfile "$WORK/redis.log" --dir "$WORK" >/dev/null
cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend redis_in
    bind 127.0.0.1:$PROXY_PORT
    default_backend redis_out
backend redis_out
    server redis 127.0.0.1:$REDIS_PORT
EOF
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
for _ in $(seq 50); do redis-cli -p "$PROXY_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# rps PORT PIPELINE N: requests per second of one redis-benchmark run.
rps() {
  redis-benchmark -p "$1" -c 50 -n "$3" -r 100000 -d 3 -t get -P "$2" --csv 2>/dev/null |
    awk -F, 'NR == 2 { gsub(/"/, "", $2); print $2 }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
REDIS_PID=$(redis-cli -p "$REDIS_PORT" info server | tr -d '\r' | awk -F: '$1 == "process_id" { print $2 }')
TCK=$(getconf CLK_TCK)

per_req() { awk -v d="$1" -v t="$TCK" -v n="$2" 'BEGIN { printf "%.2f", d / t / n * 1e6 }'; }
echo "| pipeline | direct req/s | redis-server µs/req (direct) | haproxy req/s | haproxy µs/req |"
echo "|---:|---:|---:|---:|---:|"
for p in 1 16; do
  n=$REQUESTS
  ((p > 1)) && n=$((REQUESTS * 6))
  direct=() server=() proxied=() cost=()
  for _ in $(seq "$ROUNDS"); do
    t0=$(cpu_ticks "$REDIS_PID")
    direct+=("$(rps "$REDIS_PORT" "$p" "$n")")
    t1=$(cpu_ticks "$REDIS_PID")
    server+=("$(per_req $((t1 - t0)) "$n")")
    t0=$(cpu_ticks "$HAPROXY_PID")
    proxied+=("$(rps "$PROXY_PORT" "$p" "$n")")
    t1=$(cpu_ticks "$HAPROXY_PID")
    cost+=("$(per_req $((t1 - t0)) "$n")")
  done
  median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
  echo "| $p | $(median "${direct[@]}") | $(median "${server[@]}") | $(median "${proxied[@]}") | $(median "${cost[@]}") |"
done
