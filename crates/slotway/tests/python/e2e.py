#!/usr/bin/env python3
"""End-to-end check of slotway with a real third-party client: redis-py's standalone `redis.Redis`.

Run by crates/slotway/tests/python_client.rs against slotway in front of a real cluster:

    python3 e2e.py --port PORT --shard-keys k1,k2,k3

`--shard-keys` names one key served by each primary (the Rust test picks them), so every check touches every
shard. Prints `ok <check>` per passing check (or `skipped <check>: why`) and exits 0; on the first failure prints
`FAIL <check>: ...` and exits 1.
"""
import argparse
import sys
import threading
import time

import redis


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--shard-keys", required=True, help="comma-separated: one key on each primary")
    opts = ap.parse_args()
    shard_keys = opts.shard_keys.split(",")
    print(f"redis-py {redis.__version__}, python {sys.version.split()[0]}", flush=True)

    def connect(**kw):
        return redis.Redis(host=opts.host, port=opts.port, decode_responses=True, socket_timeout=10, **kw)

    r = connect(protocol=2)
    checks = [
        ("client setinfo on connect", lambda: check_setinfo(r)),
        ("pipeline across shards", lambda: check_pipeline(r, shard_keys)),
        ("mset/mget across shards", lambda: check_mset_mget(r, shard_keys)),
        ("transaction", lambda: check_transaction(r)),
        ("watch conflict", lambda: check_watch(r, connect)),
        ("scan_iter over every shard", lambda: check_scan(r, shard_keys)),
        ("client list and kill", lambda: check_client_list_kill(r, connect)),
        ("resp3", lambda: check_resp3(connect, shard_keys)),
        ("pubsub", lambda: check_pubsub(r, connect)),
    ]
    for name, check in checks:
        try:
            skipped = check()
        except Exception as e:  # any failure, including assertion errors, ends the run
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            return 1
        if skipped:
            print(f"skipped {name}: {skipped}", flush=True)
        else:
            print(f"ok {name}", flush=True)
    return 0


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def check_setinfo(r):
    # redis-py sends CLIENT SETINFO LIB-NAME / LIB-VER on every new connection; slotway stores them.
    info = r.client_info()
    expect(info["lib-name"].startswith("redis-py"), f"lib-name: {info}")
    expect(info["lib-ver"] == redis.__version__, f"lib-ver: {info}")
    expect(info["resp"] == "2" and info["cmd"] == "client|info", f"{info}")


def check_pipeline(r, shard_keys):
    keys = [f"py:pipe:{i}" for i in range(300)] + [f"{k}:pipe" for k in shard_keys]
    p = r.pipeline(transaction=False)
    for i, k in enumerate(keys):
        p.set(k, f"v{i}")
    for k in keys:
        p.get(k)
    p.incr("py:pipe:counter")
    p.delete("py:pipe:counter")
    out = p.execute()
    n = len(keys)
    expect(out[:n] == [True] * n, f"SET replies: {out[:n][:5]}...")
    expect(out[n : 2 * n] == [f"v{i}" for i in range(n)], "GET values in order")
    expect(out[2 * n :] == [1, 1], f"INCR/DEL: {out[2 * n:]}")


def check_mset_mget(r, shard_keys):
    mapping = {f"{k}:m": f"m{i}" for i, k in enumerate(shard_keys)}
    mapping.update({f"py:m:{i}": str(i) for i in range(100)})
    expect(r.mset(mapping) is True, "MSET")
    keys = list(mapping)
    expect(r.mget(keys + ["py:m:missing"]) == list(mapping.values()) + [None], "MGET values in key order")
    expect(r.delete(*keys) == len(keys), "DEL count summed over shards")


def check_transaction(r):
    r.delete("{py}:a", "{py}:b")
    p = r.pipeline(transaction=True)
    p.incr("{py}:a")
    p.incrby("{py}:a", 41)
    p.set("{py}:b", "x")
    p.get("{py}:b")
    expect(p.execute() == [1, 42, True, "x"], "MULTI/EXEC results")
    expect(r.get("{py}:a") == "42", "applied")


def check_watch(r, connect):
    other = connect(protocol=2)
    r.set("{py}:w", "0")
    # A conflict: another client changes the watched key between WATCH and EXEC.
    with r.pipeline() as p:
        p.watch("{py}:w")
        current = int(p.get("{py}:w"))
        other.set("{py}:w", "100")
        p.multi()
        p.set("{py}:w", current + 1)
        try:
            p.execute()
            raise AssertionError("EXEC should have failed with WatchError")
        except redis.WatchError:
            pass
    expect(r.get("{py}:w") == "100", "the conflicting transaction applied nothing")

    # No conflict: the usual optimistic-locking loop succeeds.
    def bump(pipe):
        v = int(pipe.get("{py}:w"))
        pipe.multi()
        pipe.set("{py}:w", v + 1)

    r.transaction(bump, "{py}:w")
    expect(r.get("{py}:w") == "101", "transaction() applied once")
    other.close()


def check_scan(r, shard_keys):
    written = {f"py:scan:{i}" for i in range(2000)} | {f"{k}:scan" for k in shard_keys}
    p = r.pipeline(transaction=False)
    for k in written:
        p.set(k, "1")
    p.execute()
    found = set()
    for k in r.scan_iter(match="py:scan:*", count=200):
        found.add(k)
    for k in shard_keys:
        found.update(r.scan_iter(match=f"{k}:scan"))
    expect(found == written, f"missing {len(written - found)}, unexpected {len(found - written)}")


def check_client_list_kill(r, connect):
    victim = connect(protocol=2, client_name="py-victim")
    victim.ping()
    names = [c["name"] for c in r.client_list()]
    expect("py-victim" in names, f"client_list names: {names}")
    vid = victim.client_id()
    expect(r.client_kill_filter(_id=vid) == 1, "CLIENT KILL ID")
    expect(all(c["name"] != "py-victim" for c in r.client_list()), "killed client left the list")


def check_resp3(connect, shard_keys):
    try:
        r3 = connect(protocol=3)
    except Exception as e:  # redis-py older than 5.0 has no protocol argument
        return f"this redis-py has no RESP3 support ({e})"
    expect(r3.client_info()["resp"] == "3", "HELLO 3 was sent and honoured")
    for k in shard_keys:
        r3.delete(f"{k}:h")
        r3.hset(f"{k}:h", mapping={"f": "v", "g": "w"})
        expect(r3.hgetall(f"{k}:h") == {"f": "v", "g": "w"}, "HGETALL map reply")
        r3.zadd(f"{k}:z", {"a": 1.5})
        expect(r3.zscore(f"{k}:z", "a") == 1.5, "ZSCORE double")
    p = r3.pipeline(transaction=False)
    for k in shard_keys:
        p.get(f"{k}:missing")
    expect(p.execute() == [None] * len(shard_keys), "RESP3 nulls in a pipeline")
    r3.close()


def check_pubsub(r, connect):
    # A RESP2 subscriber on slotway; messages published through slotway (any node forwards them cluster-wide).
    sub = connect(protocol=2)
    ps = sub.pubsub()
    ps.subscribe("py:channel")
    first = ps.get_message(timeout=5)
    expect(first and first["type"] == "subscribe", f"subscribe confirmation: {first}")
    received = []
    done = threading.Event()

    def reader():
        deadline = time.time() + 10
        while time.time() < deadline and len(received) < 3:
            m = ps.get_message(timeout=1)
            if m and m["type"] == "message":
                received.append(m["data"])
        done.set()

    t = threading.Thread(target=reader)
    t.start()
    for i in range(3):
        r.publish("py:channel", f"m{i}")
    done.wait(12)
    t.join()
    expect(received == ["m0", "m1", "m2"], f"messages: {received}")
    ps.close()


if __name__ == "__main__":
    sys.exit(main())
