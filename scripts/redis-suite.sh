#!/usr/bin/env bash
# Redis's own test suite against slotway's standalone view of a 3-primary TLS+AUTH cluster.
#
#   scripts/redis-suite.sh [--min-passed N] [--units "unit/a unit/b"] [--unit-timeout SECS]
#                          [--slotway BIN] [--src DIR] [--mode cluster|singledb] [--tags "TAGS"|issue]
#                          [--skiptest NAME]... [--durable] [--keep]
#
# 1. Gets the suite of the installed redis-server from Debian's source package: `apt-get source
#    --download-only redis` with a deb-src entry that exists only for that call (a private sources list and
#    package lists under target/redis-suite/apt; the system's apt configuration is not touched). The
#    unpacked tree is cached in target/redis-suite/ (or use --src DIR / $REDIS_SUITE_SRC).
# 2. Starts the dev cluster (scripts/dev-cluster.sh: 3 primaries, TLS, a random password) on free ports and slotway in front of it (target/debug/slotway unless --slotway / $SLOTWAY_BIN).
# 3. Runs each unit in its own process in external mode through slotway (`--cluster-mode` by default: the
#    suite skips what a Redis Cluster node refuses, as when it tests a cluster node directly), with a
#    per-unit timeout, and prints `N passed, N failed`, the failures, units that aborted or timed out,
#    and whether slotway kept running. A test whose command gets an unexpected error ends its unit, as in
#    Redis's own runs; with --durable the unit goes on and the test counts as failed ("exception").
#
# Exits 1 when fewer than --min-passed ($REDIS_SUITE_MIN_PASSED, default 0) tests passed, when a unit
# aborted or timed out, or when slotway exited; 2 on a setup problem. Logs: target/redis-suite/logs/.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

UNITS_DEFAULT="unit/protocol unit/keyspace unit/scan unit/type/string unit/type/incr unit/type/list
  unit/type/list-2 unit/type/list-3 unit/type/set unit/type/zset unit/type/hash unit/type/stream
  unit/type/stream-cgroups unit/sort unit/expire unit/other unit/multi unit/quit unit/dump unit/pubsub
  unit/scripting unit/bitops unit/bitfield unit/geo unit/hyperloglog"
# Tests that need what a proxy in front of a cluster can't give a client: a node's DEBUG, replication
# (REPLICAOF, a replica of the server under test), SAVE, LATENCY, RESET of the server's stats, the server
# process on this machine, and RESET (whose tests also need CLIENT TRACKING). `--tags issue` uses the deny
# list the baseline was measured with, which also denies needs:config-maxmemory (CONFIG SET maxmemory,
# which slotway sends to every node) and needs:pfdebug (PFDEBUG, which slotway routes by its key).
TAGS_ISSUE="-needs:debug -needs:repl -needs:save -needs:config-maxmemory -needs:config-resetstat -needs:reset -needs:pfdebug -needs:latency -needs:local-process"
TAGS_DEFAULT="-needs:debug -needs:repl -needs:save -needs:config-resetstat -needs:reset -needs:latency -needs:local-process"
TAGS="${REDIS_SUITE_TAGS:-$TAGS_DEFAULT}"

WORK="${REDIS_SUITE_DIR:-$REPO_ROOT/target/redis-suite}"
MIN_PASSED="${REDIS_SUITE_MIN_PASSED:-0}"
UNITS="${REDIS_SUITE_UNITS:-$UNITS_DEFAULT}"
UNIT_TIMEOUT="${REDIS_SUITE_UNIT_TIMEOUT:-600}"
SLOTWAY_BIN="${SLOTWAY_BIN:-$REPO_ROOT/target/debug/slotway}"
SRC="${REDIS_SUITE_SRC:-}"
MODE="${REDIS_SUITE_MODE:-cluster}"
KEEP=0
DURABLE_MODE=0
SKIPTESTS=()

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "redis-suite: error: $*" >&2; exit 2; }
log() { echo "redis-suite: $*" >&2; }

while (($#)); do
  case "$1" in
    --min-passed) MIN_PASSED="$2"; shift 2 ;;
    --units) UNITS="$2"; shift 2 ;;
    --unit-timeout) UNIT_TIMEOUT="$2"; shift 2 ;;
    --slotway) SLOTWAY_BIN="$2"; shift 2 ;;
    --src) SRC="$2"; shift 2 ;;
    --mode) MODE="$2"; shift 2 ;;
    --tags) TAGS="$2"; shift 2 ;;
    --skiptest) SKIPTESTS+=("$2"); shift 2 ;;
    --durable) DURABLE_MODE=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
done
[[ "$MIN_PASSED" =~ ^[0-9]+$ ]] || die "--min-passed must be a number"
[[ "$TAGS" == issue ]] && TAGS="$TAGS_ISSUE"
[[ "$UNIT_TIMEOUT" =~ ^[0-9]+$ ]] || die "--unit-timeout must be a number of seconds"
case "$MODE" in
  cluster) MODE_ARGS=(--cluster-mode) ;;
  singledb) MODE_ARGS=(--singledb) ;;
  *) die "--mode is cluster or singledb" ;;
esac
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"

# ------------------------------------------------------------ tools
SUDO=()
[[ $(id -u) -eq 0 ]] || SUDO=(sudo)
missing=()
command -v tclsh >/dev/null 2>&1 || missing+=(tcl)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ((${#missing[@]})); then
  log "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq "${missing[@]}"
fi
[[ -x "$SLOTWAY_BIN" ]] || die "no slotway binary at $SLOTWAY_BIN (cargo build -p slotway --bin slotway, or --slotway BIN)"

# ------------------------------------------------------------ the suite's source
# The version of the installed server: the suite must be the one that server was released with.
redis_version() { redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p'; }

fetch_suite() { # prints the unpacked source directory
  local ver dir apt tarball codename debver
  ver="$(redis_version)"
  [[ -n "$ver" ]] || die "cannot tell the installed redis-server's version"
  dir="$WORK/redis-$ver"
  if [[ -f "$dir/tests/test_helper.tcl" ]]; then echo "$dir"; return; fi
  codename="$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release | tr -d '"')"
  [[ -n "$codename" ]] || die "cannot tell the Debian release (VERSION_CODENAME in /etc/os-release)"
  apt="$WORK/apt"
  rm -rf "$apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/download"
  # deb-src only for this call: a private sources list and private package lists.
  local key=/usr/share/keyrings/debian-archive-keyring.gpg
  {
    echo "deb-src [signed-by=$key] http://deb.debian.org/debian $codename main"
    echo "deb-src [signed-by=$key] http://deb.debian.org/debian $codename-updates main"
    echo "deb-src [signed-by=$key] http://deb.debian.org/debian-security $codename-security main"
  } >"$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/none"
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1")
  # As root apt would download as its sandbox user, who can't write to our directories.
  [[ $(id -u) -eq 0 ]] && opts+=(-o "APT::Sandbox::User=root")
  log "fetching Redis $ver's source from Debian ($codename, deb-src for this call only)"
  apt-get -qq "${opts[@]}" update >&2 || die "apt-get update (deb-src) failed"
  debver="$(dpkg-query -W -f='${source:Version}' redis-server 2>/dev/null || true)"
  (
    cd "$apt/download"
    apt-get -qq "${opts[@]}" source --download-only "redis=$debver" >&2 2>/dev/null ||
      apt-get -qq "${opts[@]}" source --download-only redis >&2
  ) || die "apt-get source redis failed"
  tarball="$(find "$apt/download" -maxdepth 1 -name "redis_$ver.orig.tar.*" | head -1)"
  [[ -n "$tarball" ]] || die "Debian's source of redis has no redis_$ver.orig.tar.* (installed server is $ver)"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  tar -xf "$tarball" -C "$dir.tmp" --strip-components=1
  [[ -f "$dir.tmp/tests/test_helper.tcl" ]] || die "$tarball has no tests/test_helper.tcl"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  rm -rf "$apt"
  echo "$dir"
}
if [[ -z "$SRC" ]]; then SRC="$(fetch_suite)"; fi
[[ -f "$SRC/tests/test_helper.tcl" ]] || die "$SRC is not a Redis source tree (no tests/test_helper.tcl)"
SRC="$(cd "$SRC" && pwd)"

# ------------------------------------------------------------ cluster and slotway
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_ports() { # count: prints free ports whose bus ports (+10000) are free too
  # Below the kernel's ephemeral range (32768+), bus ports included, so outgoing connections can't take them.
  local want="$1" got=() p tries=0
  while ((${#got[@]} < want)); do
    ((tries++ < 2000)) || die "no free ports"
    p=$((12000 + RANDOM % 10000))
    [[ " ${got[*]} " == *" $p "* ]] && continue
    port_free "$p" && port_free $((p + 10000)) && got+=("$p")
  done
  echo "${got[*]}"
}

CLUSTER_DIR="$WORK/cluster"
LOGS="$WORK/logs"
rm -rf "$LOGS" && mkdir -p "$LOGS"
SLOTWAY_PID=""
# shellcheck disable=SC2317 # called by the traps
cleanup() {
  if [[ -n "$SLOTWAY_PID" ]] && kill -0 "$SLOTWAY_PID" 2>/dev/null; then
    kill "$SLOTWAY_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SLOTWAY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SLOTWAY_PID" 2>/dev/null || true
  fi
  if ((KEEP == 0)); then
    "$REPO_ROOT/scripts/dev-cluster.sh" stop --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for attempt in 1 2 3; do
  read -r -a ports <<<"$(pick_ports 4)"
  CLUSTER_PORTS="${ports[*]:0:3}"
  SLOTWAY_PORT="${ports[3]}"
  # No replicas: the suite's tests are written for a server without replicas (e.g. min-replicas-to-write 1
  # must refuse writes); replication itself is not tested (needs:repl).
  if DEV_CLUSTER_PASSWORD="$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')" \
    "$REPO_ROOT/scripts/dev-cluster.sh" start --dir "$CLUSTER_DIR" --ports "$CLUSTER_PORTS" --replicas 0 \
    >"$LOGS/dev-cluster.log" 2>&1; then
    break
  fi
  # A port taken between the check and the bind: other ports.
  "$REPO_ROOT/scripts/dev-cluster.sh" stop --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true
  ((attempt < 3)) || { cat "$LOGS/dev-cluster.log" >&2; die "the dev cluster did not start"; }
done
# shellcheck disable=SC1091
source "$CLUSTER_DIR/env"
# slotway's users: the default one with every permission, as a Redis without users has; users the suite creates
# with ACL SETUSER get a cluster ACL user of their own on the nodes, so the nodes confine their scripts as Redis
# would (e.g. "Script ACL check").
cat >"$WORK/slotway.toml" <<'TOML'
[auth]
provision_new_users = true

[[users]]
name = "default"
rules = "on nopass ~* &* +@all"
TOML
# shellcheck disable=SC2086 # SLOTWAY_CLUSTER_ARGS is a word list
"$SLOTWAY_BIN" --config "$WORK/slotway.toml" --listen "127.0.0.1:$SLOTWAY_PORT" $SLOTWAY_CLUSTER_ARGS \
  >"$LOGS/slotway.log" 2>&1 &
SLOTWAY_PID=$!
deadline=$((SECONDS + 60))
until [[ "$(env -u REDISCLI_AUTH redis-cli -h 127.0.0.1 -p "$SLOTWAY_PORT" PING 2>/dev/null)" == PONG ]]; do
  kill -0 "$SLOTWAY_PID" 2>/dev/null || { tail -20 "$LOGS/slotway.log" >&2; die "slotway exited at start"; }
  ((SECONDS < deadline)) || die "slotway does not answer PING on 127.0.0.1:$SLOTWAY_PORT"
  sleep 0.2
done
log "cluster ${CLUSTER_PORTS// /,} (TLS, AUTH), slotway $("$SLOTWAY_BIN" --version | awk '{print $2}') on 127.0.0.1:$SLOTWAY_PORT, suite $SRC, mode $MODE, tags $TAGS"

# ------------------------------------------------------------ the units
# Tests that run a script touching keys it doesn't declare: a single server (and the suite's usual one-node
# cluster) has every key, but a node of a cluster of several refuses keys it doesn't own (Redis Cluster's rule:
# declare them). Which node a keyless script reaches decides whether they pass; they are skipped, as the suite
# skips the other cluster rules in --cluster-mode. --skiptest adds more; REDIS_SUITE_NO_DEFAULT_SKIPS=1 runs them.
if [[ "${REDIS_SUITE_NO_DEFAULT_SKIPS:-}" != 1 ]]; then
  SKIPTESTS+=("EVAL - Scripts can run non-deterministic commands" "Script check unpack with massive arguments")
fi
DURABLE=()
((DURABLE_MODE)) && DURABLE=(--durable)
SKIP_ARGS=()
for t in "${SKIPTESTS[@]}"; do SKIP_ARGS+=(--skiptest "$t"); done
total_ok=0 total_err=0 crashed=0 exceptions=0 skipped=0
failures=() aborted=() summary=()
start_all=$SECONDS
for unit in $UNITS; do
  name="${unit//\//_}"
  out="$LOGS/$name.log"
  t0=$SECONDS
  rc=0
  (
    cd "$SRC"
    TERM=dumb env -u REDISCLI_AUTH timeout --kill-after=10 "$UNIT_TIMEOUT" tclsh tests/test_helper.tcl \
      --host 127.0.0.1 --port "$SLOTWAY_PORT" "${MODE_ARGS[@]}" --tags "$TAGS" \
      --single "$unit" --timeout "$UNIT_TIMEOUT" --clients 1 "${DURABLE[@]}" "${SKIP_ARGS[@]}"
  ) >"$out" 2>&1 </dev/null || rc=$?
  ok="$(grep -c '^\[ok\]: ' "$out" || true)"
  skipped=$((skipped + $(grep -c '^\[skip\]: ' "$out" || true)))
  err="$(grep -c '^\[err\]: ' "$out" || true)"
  total_ok=$((total_ok + ok))
  total_err=$((total_err + err))
  # A failure whose details hold a Tcl stack is a command's unexpected error: without --durable it would have
  # ended the unit there ("exception").
  while IFS=$'\t' read -r name kind; do
    failures+=("$unit: $name${kind:+ [$kind]}")
    [[ -n "$kind" ]] && exceptions=$((exceptions + 1))
  done < <(awk '
    function flush() { if (name != "") print name "\t" kind; name = ""; kind = "" }
    /^\[err\]: / { flush(); name = substr($0, 8); next }
    /^\[/ { flush(); next }
    name != "" && /while executing|invoked from within/ { kind = "exception" }
    END { flush() }' "$out")
  state=""
  if ((rc == 124 || rc == 137)); then
    state="timed out after ${UNIT_TIMEOUT}s"
  elif grep -q '^\[exception\]\|^\[TIMEOUT\]\|I/O error reading reply\|Killing still running Redis' "$out"; then
    state="aborted: $(grep -m1 -A2 '^\[exception\]\|^\[TIMEOUT\]\|I/O error reading reply' "$out" | tr '\n' ' ' | cut -c1-200)"
  elif ! grep -q 'All tests passed without errors\|The following tests failed' "$out"; then
    state="aborted: exit $rc, no summary ($(tail -1 "$out" | cut -c1-150))"
  fi
  [[ -n "$state" ]] && aborted+=("$unit: $state")
  line="$(printf '%-26s %4d ok %4d err %4ds%s' "$unit" "$ok" "$err" $((SECONDS - t0)) "${state:+  ($state)}")"
  summary+=("$line")
  echo "$line"
  # A script a failed test left running would keep its node busy for the next units (a test that fails before
  # its own SCRIPT KILL): end it on the nodes directly, as a fresh server would start without it.
  for p in $CLUSTER_PORTS; do
    # shellcheck disable=SC2086 # DEV_CLUSTER_CLI_ARGS is a word list
    if timeout 5 redis-cli $DEV_CLUSTER_CLI_ARGS -p "$p" PING 2>&1 | grep -q 'BUSY'; then
      echo "  (a script was left running on node $p after $unit: killed)"
      # shellcheck disable=SC2086
      timeout 5 redis-cli $DEV_CLUSTER_CLI_ARGS -p "$p" SCRIPT KILL >/dev/null 2>&1 || true
      # shellcheck disable=SC2086
      timeout 5 redis-cli $DEV_CLUSTER_CLI_ARGS -p "$p" FUNCTION KILL >/dev/null 2>&1 || true
    fi
  done
  if ! kill -0 "$SLOTWAY_PID" 2>/dev/null; then
    crashed=1
    echo "slotway exited during $unit:" >&2
    tail -20 "$LOGS/slotway.log" >&2
    break
  fi
done

echo
echo "Redis $(redis_version) test suite through slotway ($MODE mode, $(wc -w <<<"$UNITS") units, $((SECONDS - start_all)) s)"
if ((${#failures[@]})); then
  echo "Failed tests:"
  printf '  %s\n' "${failures[@]}"
fi
if ((${#aborted[@]})); then
  echo "Units that did not finish:"
  printf '  %s\n' "${aborted[@]}"
fi
grep -q 'panicked' "$LOGS/slotway.log" && { echo "slotway logged a panic (see $LOGS/slotway.log)"; crashed=1; }
if ((${#SKIPTESTS[@]})); then
  echo "Skipped by name ($skipped tests):"
  printf '  %s\n' "${SKIPTESTS[@]}"
fi
echo "$total_ok passed, $total_err failed ($exceptions of them on an unexpected error reply)"

status=0
if ((crashed)); then echo "FAIL: slotway crashed"; status=1; fi
if ((${#aborted[@]})); then echo "FAIL: ${#aborted[@]} unit(s) aborted or timed out"; status=1; fi
if ((total_ok < MIN_PASSED)); then echo "FAIL: $total_ok passed, below the floor of $MIN_PASSED"; status=1; fi
exit "$status"
