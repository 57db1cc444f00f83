//! Client limits: max clients (and per address), idle timeout, oversized requests, slow readers, slow-loris
//! writers and huge declared lengths; and memory with 2,000 idle connections plus a client that never reads its
//! replies.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

fn start_with(cluster: &Cluster, client_toml: &str) -> (Proxy, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotway.toml");
    std::fs::write(&config, format!("[client]\n{client_toml}\n")).unwrap();
    let mut args = Proxy::base_args(cluster);
    args.extend(["--config".to_string(), config.display().to_string()]);
    (Proxy::start_raw(&args, &Proxy::password_env(cluster)), dir)
}

/// Reads whatever arrives within `wait` (until EOF); returns (bytes, closed by peer).
fn read_for(s: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    read_until(s, None, wait)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn ping_latency(addr: &str) -> Duration {
    let mut s = TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    s.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"+PONG\r\n");
    t.elapsed()
}

/// `n` connections, each shown to be admitted (it answers PING). Waits first for the start-up probe's connection to
/// be released, so that it does not count against the limits being tested.
fn served_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    std::thread::sleep(Duration::from_millis(300));
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"PING\r\n").unwrap();
            let (got, _) = read_until(&mut s, Some(b"\r\n"), Duration::from_secs(2));
            assert_eq!(String::from_utf8_lossy(&got), "+PONG\r\n", "connection {i} of {n}");
            s
        })
        .collect()
}

/// Reads until `end` (if any) has arrived, or EOF, or `wait` passes; returns (bytes, closed by peer).
fn read_until(s: &mut TcpStream, end: Option<&[u8]>, wait: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !end.is_some_and(|end| got.ends_with(end)) {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => {}
        }
    }
    (got, false)
}

#[test]
fn client_limits() {
    let cluster = Cluster::start(ClusterOpts::default());

    // Max clients: the 21st connection gets Redis's error and is closed; others keep working.
    let (proxy, _d) = start_with(&cluster, "max_clients = 20\nidle_timeout_ms = 1500\nmax_request_bytes = 65536");
    let mut held = served_connections(&proxy.addr, 20);
    let mut extra = TcpStream::connect(&proxy.addr).unwrap();
    let (got, closed) = read_for(&mut extra, Duration::from_secs(2));
    assert_eq!(String::from_utf8_lossy(&got), "-ERR max number of clients reached\r\n");
    assert!(closed);
    held[0].write_all(b"PING\r\n").unwrap();
    assert_eq!(read_for(&mut held[0], Duration::from_millis(300)).0, b"+PONG\r\n");

    // Idle timeout: connections with nothing to do are closed after ~1.5 s; that frees room for new clients.
    let (_, closed) = read_for(&mut held[1], Duration::from_secs(4));
    assert!(closed, "an idle client is disconnected");
    held.clear();
    std::thread::sleep(Duration::from_millis(300));
    assert!(ping_latency(&proxy.addr) < Duration::from_secs(1));

    // A request larger than max_request_bytes: protocol error, connection closed, nothing reserved.
    let mut big = TcpStream::connect(&proxy.addr).unwrap();
    let value = vec![b'x'; 100_000];
    let mut req = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    let _ = big.write_all(&req);
    let (got, closed) = read_for(&mut big, Duration::from_secs(2));
    assert_eq!(String::from_utf8_lossy(&got), "-ERR Protocol error: request too large\r\n");
    assert!(closed);
    let info = proxy.cli(&["INFO", "proxy"]);
    for counter in ["rejected_max_clients:1", "oversized_requests:1"] {
        assert!(info.contains(counter), "{counter} in\n{info}");
    }
    assert!(!info.contains("idle_disconnects:0"), "{info}");
    drop(proxy);

    // Per-address limit.
    let (proxy, _d2) = start_with(&cluster, "max_clients_per_address = 5");
    let _five = served_connections(&proxy.addr, 5);
    let mut sixth = TcpStream::connect(&proxy.addr).unwrap();
    let (got, _) = read_for(&mut sixth, Duration::from_secs(2));
    assert_eq!(String::from_utf8_lossy(&got), "-ERR max number of clients from this address reached\r\n");
}

#[test]
fn idle_connections_and_a_slow_reader_stay_bounded() {
    let cluster = Cluster::start(ClusterOpts::default());
    let (proxy, _d) = start_with(&cluster, "output_stall_timeout_ms = 3000");
    let pid = proxy.child.id();
    // A 100 KB value to read many times.
    let key = cluster.keys_on_every_primary("slow:").remove(0).1;
    proxy.cli(&["SET", &key, &"v".repeat(100_000)]);
    let base = rss_kib(pid);
    let before = ping_latency(&proxy.addr);

    // 2,000 idle connections.
    let idle: Vec<TcpStream> = (0..2_000).map(|_| TcpStream::connect(&proxy.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let with_idle = rss_kib(pid);

    // A client that pipelines 20,000 GETs of the 100 KB value (2 GB of replies) and never reads.
    let mut slow = TcpStream::connect(&proxy.addr).unwrap();
    slow.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let get = format!("GET {key}\r\n");
    let mut sent = 0;
    for _ in 0..20_000 {
        if slow.write_all(get.as_bytes()).is_err() {
            break; // slotway stopped reading from it: backpressure
        }
        sent += 1;
    }
    std::thread::sleep(Duration::from_millis(500));
    let with_slow = rss_kib(pid);
    // Other clients keep normal latency meanwhile.
    let during = (0..20).map(|_| ping_latency(&proxy.addr)).max().unwrap();
    println!(
        "RSS: {base} KiB at start, {with_idle} KiB with 2,000 idle connections, {with_slow} KiB with a slow reader \
         ({sent} GETs sent); PING {before:?} before, worst {during:?} during"
    );
    // Stated bound: 2,000 idle connections cost < 64 MiB; a slow reader is capped by max_pending (1024 replies
    // of 100 KB ≈ 100 MiB), but each waiting reply keeps the node read buffer it was split from (up to about three
    // times its size: 240-330 MiB measured, on this build and the ones before it): < 512 MiB in all, against the
    // 2 GB of replies the client asked for.
    assert!(with_idle - base < 64 * 1024, "idle connections cost {} KiB", with_idle - base);
    assert!(with_slow - base < 512 * 1024, "slow reader grew RSS by {} KiB", with_slow - base);
    assert!(during < Duration::from_millis(200), "other clients slowed to {during:?}");
    // The slow reader is disconnected after the stall timeout; its memory goes back.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let info = proxy.cli(&["INFO", "proxy"]);
        if info.contains("output_stall_disconnects:1") {
            break;
        }
        assert!(Instant::now() < deadline, "slow reader never disconnected:\n{info}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(idle);
}

/// Sends `bytes` one at a time, `every` apart (cycling when they run out), until slotway closes the connection or
/// `max` passes. Returns what slotway sent and when it closed (None: still open).
fn trickle(s: &mut TcpStream, bytes: &[u8], every: Duration, max: Duration) -> (Vec<u8>, Option<Duration>) {
    s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    for &b in bytes.iter().cycle() {
        if start.elapsed() > max {
            return (got, None);
        }
        let write_failed = s.write_all(&[b]).is_err();
        let deadline = Instant::now() + every;
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) => return (got, Some(start.elapsed())),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return (got, Some(start.elapsed())),
            }
        }
        if write_failed {
            return (got, Some(start.elapsed()));
        }
    }
    unreachable!("cycle never ends")
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn slow_loris_and_huge_declared_lengths() {
    let cluster = Cluster::start(ClusterOpts::default());
    let (proxy, _d) = start_with(&cluster, "request_timeout_ms = 1500");
    let pid = proxy.child.id();

    // One byte every 200 ms of a request that never completes: disconnected ~1.5 s after its first byte, with an
    // error saying why.
    let mut loris = TcpStream::connect(&proxy.addr).unwrap();
    let (got, closed) = trickle(
        &mut loris,
        b"*2\r\n$3\r\nGET\r\n$100\r\nxxxxxxxxxxxxxxxx",
        Duration::from_millis(200),
        Duration::from_secs(8),
    );
    let closed = closed.expect("a slow-loris client is disconnected");
    assert!(closed >= Duration::from_millis(1300) && closed < Duration::from_secs(5), "closed after {closed:?}");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR slotway: request not completed in time (client.request_timeout_ms)\r\n"
    );

    // A client whose requests each arrive in pieces within the timeout stays, however long it keeps going.
    let mut patient = TcpStream::connect(&proxy.addr).unwrap();
    let (got, closed) = trickle(&mut patient, b"PING\r\n", Duration::from_millis(100), Duration::from_millis(3000));
    assert!(closed.is_none(), "closed after {closed:?}");
    assert!(got.starts_with(b"+PONG\r\n+PONG\r\n+PONG\r\n"), "{}", String::from_utf8_lossy(&got));
    // (Closed now, so its last partial PING isn't counted below.)
    drop(patient);

    // Declared lengths far beyond what arrived reserve nothing: 50 clients announcing a 512 MiB value (the
    // largest allowed) and 50 announcing a billion arguments, then silence. Address space and RSS stay flat
    // (reserving would show in VmSize even before any page is touched); the timeout closes them all.
    let (rss0, vm0) = (vm_kib(pid, "VmRSS:"), vm_kib(pid, "VmSize:"));
    let mut silent: Vec<TcpStream> = (0..100)
        .map(|i| {
            let mut s = TcpStream::connect(&proxy.addr).unwrap();
            let header: &[u8] =
                if i % 2 == 0 { b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n" } else { b"*1000000000\r\n" };
            s.write_all(header).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let (rss1, vm1) = (vm_kib(pid, "VmRSS:"), vm_kib(pid, "VmSize:"));
    println!("with 100 huge declared lengths: RSS {rss0} -> {rss1} KiB, VmSize {vm0} -> {vm1} KiB");
    assert!(rss1.saturating_sub(rss0) < 16 * 1024, "RSS grew {} KiB", rss1 - rss0);
    assert!(vm1.saturating_sub(vm0) < 256 * 1024, "address space grew {} KiB", vm1 - vm0);
    for (i, s) in silent.iter_mut().enumerate() {
        let (_, closed) = read_for(s, Duration::from_secs(5));
        assert!(closed, "connection {i} with a huge declared length is closed by the request timeout");
    }

    // A length over the bulk limit is refused at once, before any of it is read.
    let mut over = TcpStream::connect(&proxy.addr).unwrap();
    over.write_all(b"*1\r\n$4000000000\r\n").unwrap();
    let (got, closed) = read_for(&mut over, Duration::from_secs(1));
    assert_eq!(String::from_utf8_lossy(&got), "-ERR Protocol error: invalid bulk length\r\n");
    assert!(closed);

    let info = proxy.cli(&["INFO", "proxy"]);
    let count = info.lines().find_map(|l| l.strip_prefix("request_timeout_disconnects:")).unwrap();
    assert_eq!(count.trim().parse::<u64>().unwrap(), 101, "{info}");
    drop(proxy);

    // The idle timeout isn't reset by bytes of a request that never completes.
    let (proxy, _d) = start_with(&cluster, "idle_timeout_ms = 1500\nrequest_timeout_ms = 0");
    let mut s = TcpStream::connect(&proxy.addr).unwrap();
    let (_, closed) =
        trickle(&mut s, b"*2\r\n$3\r\nGET\r\n$100\r\nxxxxxxxx", Duration::from_millis(200), Duration::from_secs(8));
    let closed = closed.expect("a client that never completes a request is idle");
    assert!(closed >= Duration::from_millis(1300) && closed < Duration::from_secs(5), "closed after {closed:?}");
    let info = proxy.cli(&["INFO", "proxy"]);
    assert!(info.contains("idle_disconnects:1") && info.contains("request_timeout_disconnects:0"), "{info}");
}
