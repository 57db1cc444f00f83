//! Client limits: max clients (and per address), idle timeout, oversized requests, slow readers; and memory with
//! 2,000 idle connections plus a client that never reads its replies.

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
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => {}
        }
    }
    (got, false)
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
            let (got, _) = read_until(&mut s, b"\r\n", Duration::from_secs(2));
            assert_eq!(String::from_utf8_lossy(&got), "+PONG\r\n", "connection {i} of {n}");
            s
        })
        .collect()
}

/// Reads until `end` has arrived (or EOF, or `wait` passes).
fn read_until(s: &mut TcpStream, end: &[u8], wait: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !got.ends_with(end) {
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
    // of 100 KB ≈ 100 MiB) plus buffers: < 256 MiB in all.
    assert!(with_idle - base < 64 * 1024, "idle connections cost {} KiB", with_idle - base);
    assert!(with_slow - base < 256 * 1024, "slow reader grew RSS by {} KiB", with_slow - base);
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
