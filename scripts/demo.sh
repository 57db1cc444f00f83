#!/usr/bin/env bash
# The demo: a local TLS+AUTH cluster (3 primaries + 3 replicas), slotway in front of it, and a short session
# through slotway with a plain redis-cli (no -c: slotway does the cluster routing).
# Usage: ./scripts/demo.sh            (leaves nothing running when it ends)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

dir="$root/.dev-cluster"
listen_port=${SLOTWAY_DEMO_PORT:-6380}

./scripts/dev-cluster.sh start --dir "$dir"
# shellcheck disable=SC1091
. "$dir/env"

echo "demo: building slotway (release)"
cargo build --release -q -p slotway

log="$dir/slotway.log"
# shellcheck disable=SC2086
./target/release/slotway --listen "127.0.0.1:$listen_port" $SLOTWAY_CLUSTER_ARGS 2>"$log" &
proxy=$!
cleanup() {
    kill "$proxy" 2>/dev/null || true
    wait "$proxy" 2>/dev/null || true
    ./scripts/dev-cluster.sh stop --dir "$dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    if redis-cli -p "$listen_port" ping >/dev/null 2>&1; then break; fi
    if ! kill -0 "$proxy" 2>/dev/null; then echo "demo: slotway exited:"; cat "$log"; exit 1; fi
    sleep 0.1
done

cli() {
    printf 'slotway> %s\n' "$*"
    redis-cli -p "$listen_port" "$@"
}
unset REDISCLI_AUTH # the client talks to slotway, which holds the cluster's password
echo
echo "demo: a plain redis-cli (no -c) talks to slotway on 127.0.0.1:$listen_port;"
echo "      slotway talks TLS + AUTH to the cluster on ports $DEV_CLUSTER_PORTS"
echo
cli ping
for key in apple banana cherry durian; do
    cli set "fruit:$key" "ripe $key"
done
for key in apple banana cherry durian; do
    # DEV_CLUSTER_CLI_ARGS holds several words (--tls --cacert ... -h ...): split on purpose.
    # shellcheck disable=SC2086
    printf '  (slot %s) ' "$(redis-cli $DEV_CLUSTER_CLI_ARGS -p "${DEV_CLUSTER_PORTS%% *}" --no-auth-warning -a "$SLOTWAY_UPSTREAM_PASSWORD" cluster keyslot "fruit:$key")"
    cli get "fruit:$key"
done
cli hset "user:{42}" name Ada lang Rust
cli hgetall "user:{42}"
cli rpush "queue:{42}" a b c
cli lrange "queue:{42}" 0 -1
cli incrby counter 10
cli mset "{tag}a" 1 "{tag}b" 2
cli mget "{tag}a" "{tag}b"
cli mget fruit:apple fruit:banana
echo
echo "demo: slotway's own counters (INFO proxy):"
redis-cli -p "$listen_port" info proxy | grep -E 'commands_received|redirects|topology_version' || true
echo
echo "demo: done; stopping slotway and the cluster"
