#!/usr/bin/env python3
"""Clients for bench/memory.sh (standard library only).

  memclient.py idle --port P --count N [--tls --cacert CA] [--pid PID] [--settle S]
      Opens N connections, sends one GET on each (so every session has read a request and written a reply), then
      keeps them open and idle. With --pid, prints the proxy's RSS before and after (KiB) and the RSS per idle
      connection (bytes) as `idle,<count>,<rss_before_kib>,<rss_after_kib>,<bytes_per_conn>`.

  memclient.py big --port P --size BYTES [--pid PID]
      SETs one value of BYTES bytes (sent in 1 MiB pieces, so the client holds no copy) and GETs it back (read in
      pieces, checked), then DELs it. With --pid: the proxy's RSS before, its peak during the SET and GET (VmHWM,
      reset through /proc/PID/clear_refs first), and its RSS 1 s, 10 s and 60 s after, in KiB, as
      `big,<size>,<before>,<peak>,<after1>,<after10>,<after60>`.
"""
import argparse
import os
import resource
import socket
import ssl
import sys
import time

CHUNK = 1 << 20


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found for pid {pid}")


def reset_peak(pid):
    # Writing 5 resets VmHWM to the current RSS (Linux 4.0+).
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def connect(port, tls, cacert):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = ssl.create_default_context(cafile=cacert)
        s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    return s


def read_line(s, buf):
    while b"\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    line, _, rest = buf.partition(b"\r\n")
    return line, rest


def command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def simple_reply(s):
    line, rest = read_line(s, b"")
    if line.startswith(b"$") and int(line[1:]) >= 0:
        need = int(line[1:]) + 2 - len(rest)
        while need > 0:
            chunk = s.recv(min(need, 65536))
            if not chunk:
                raise RuntimeError("connection closed")
            need -= len(chunk)
    return line


def idle(a):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.count + 100
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    # One connection first, so the proxy's node connections and tables exist before the baseline.
    warm = connect(a.port, a.tls, a.cacert)
    warm.sendall(command("GET", "memclient:warm"))
    simple_reply(warm)
    time.sleep(a.settle)
    before = rss_kib(a.pid) if a.pid else 0
    conns = []
    for i in range(a.count):
        s = connect(a.port, a.tls, a.cacert)
        s.sendall(command("GET", f"memclient:{i}"))
        reply = simple_reply(s)
        if not reply.startswith((b"$", b"_")):
            raise RuntimeError(f"unexpected reply {reply!r}")
        conns.append(s)
    time.sleep(a.settle)
    after = rss_kib(a.pid) if a.pid else 0
    per = (after - before) * 1024 / a.count
    print(f"idle,{a.count},{before},{after},{per:.0f}", flush=True)
    for s in conns:
        s.close()
    warm.close()


def big(a):
    s = connect(a.port, False, None)
    key = b"memclient:big"
    s.sendall(command("DEL", key))
    simple_reply(s)
    time.sleep(1)
    before = rss_kib(a.pid) if a.pid else 0
    if a.pid:
        reset_peak(a.pid)
    piece = bytes(range(256)) * (CHUNK // 256)
    s.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n" % (len(key), key, a.size))
    left = a.size
    while left:
        n = min(left, CHUNK)
        s.sendall(piece[:n])
        left -= n
    s.sendall(b"\r\n")
    line = simple_reply(s)
    if line != b"+OK":
        raise RuntimeError(f"SET: {line!r}")
    s.sendall(command("GET", key))
    line, rest = read_line(s, b"")
    if line != b"$%d" % a.size:
        raise RuntimeError(f"GET: {line[:100]!r}")
    got = len(rest)
    first = rest[:CHUNK]
    while got < a.size + 2:
        chunk = s.recv(CHUNK)
        if not chunk:
            raise RuntimeError("connection closed during GET")
        if len(first) < 256:
            first += chunk[: 256 - len(first)]
        got += len(chunk)
    if got != a.size + 2 or first[:256] != piece[:256]:
        raise RuntimeError("GET returned other bytes")
    peak = rss_kib(a.pid, "VmHWM") if a.pid else 0
    s.sendall(command("DEL", key))
    simple_reply(s)
    afters = []
    start = time.monotonic()
    for t in (1, 10, 60):
        time.sleep(max(0, start + t - time.monotonic()))
        afters.append(rss_kib(a.pid) if a.pid else 0)
    print(f"big,{a.size},{before},{peak},{afters[0]},{afters[1]},{afters[2]}", flush=True)
    s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["idle", "big"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--size", type=int, default=256 << 20)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--cacert")
    p.add_argument("--pid", type=int)
    p.add_argument("--settle", type=float, default=2.0)
    a = p.parse_args()
    try:
        idle(a) if a.mode == "idle" else big(a)
    except Exception as e:  # a short message for the bench log, not a traceback
        print(f"memclient: {a.mode}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
