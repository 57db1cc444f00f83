//! Memory held by slotway: 10,000 idle clients (each served one request first), and one 256 MiB value set and
//! read back. The bounds here are loose guards against regressions (each would have failed before sessions gave
//! their buffers back and large replies stopped being copied); the targets themselves are measured by
//! bench/memory.sh. Slow readers are covered in limits.rs.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in {status}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Reads one reply's first line and, for a bulk string, its payload (discarded); returns the first line.
fn read_reply(s: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    buf.clear();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n") {
        s.read_exact(&mut byte).unwrap();
        buf.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&buf[..buf.len() - 2]).into_owned();
    if let Some(n) = line.strip_prefix('$').and_then(|n| n.parse::<i64>().ok()).filter(|&n| n >= 0) {
        let mut left = n as usize + 2;
        let mut chunk = vec![0u8; 1 << 20];
        while left > 0 {
            let k = s.read(&mut chunk[..left.min(1 << 20)]).unwrap();
            assert!(k > 0, "connection closed inside a reply");
            left -= k;
        }
    }
    line
}

#[test]
fn ten_thousand_idle_clients_hold_no_buffers() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotway.toml");
    std::fs::write(&config, "[client]\nmax_clients = 20000\n").unwrap();
    let mut args = Proxy::base_args(&cluster);
    args.extend(["--workers".into(), "1".into(), "--config".into(), config.display().to_string()]);
    let proxy = Proxy::start_raw(&args, &Proxy::password_env(&cluster));
    let pid = proxy.child.id();
    proxy.cli(&["SET", "idle:key", "value"]);
    std::thread::sleep(Duration::from_millis(500));
    let base = proc_kib(pid, "VmRSS:");

    // Each client sends a GET and reads its reply, so every session has read and written once; then it waits.
    let n = 10_000;
    let mut buf = Vec::new();
    let clients: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(&proxy.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"*2\r\n$3\r\nGET\r\n$8\r\nidle:key\r\n").unwrap();
            assert_eq!(read_reply(&mut s, &mut buf), "$5");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let with_idle = proc_kib(pid, "VmRSS:");
    let per_client = (with_idle.saturating_sub(base)) * 1024 / n;
    println!("RSS {base} KiB before, {with_idle} KiB with {n} idle clients: {per_client} bytes each");
    // Before sessions released their buffers this was ~20 KB; the target (bench/memory.sh) is 2 KB.
    assert!(per_client < 8 * 1024, "an idle client costs {per_client} bytes");
    // They are all still served.
    let mut s = clients.into_iter().nth(n as usize / 2).unwrap();
    s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    assert_eq!(read_reply(&mut s, &mut buf), "+PONG");
}

#[test]
fn a_256_mib_value_passes_through_once_and_is_given_back() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &["--workers", "1"]);
    let pid = proxy.child.id();
    let size: usize = 256 << 20;
    let mut s = TcpStream::connect(&proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = Vec::new();
    s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    assert_eq!(read_reply(&mut s, &mut buf), "+PONG");
    std::thread::sleep(Duration::from_millis(500));
    let base = proc_kib(pid, "VmRSS:");
    // Peak RSS from here on (VmHWM restarts at the current RSS).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();

    // SET, sent in 1 MiB pieces (the test holds no copy of the value either).
    s.write_all(format!("*3\r\n$3\r\nSET\r\n$7\r\nbig:key\r\n${size}\r\n").as_bytes()).unwrap();
    let piece: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    for _ in 0..size >> 20 {
        s.write_all(&piece).unwrap();
    }
    s.write_all(b"\r\n").unwrap();
    assert_eq!(read_reply(&mut s, &mut buf), "+OK");
    s.write_all(b"*2\r\n$6\r\nSTRLEN\r\n$7\r\nbig:key\r\n").unwrap();
    assert_eq!(read_reply(&mut s, &mut buf), format!(":{size}"));
    s.write_all(b"*2\r\n$3\r\nGET\r\n$7\r\nbig:key\r\n").unwrap();
    assert_eq!(read_reply(&mut s, &mut buf), format!("${size}"));
    let peak = proc_kib(pid, "VmHWM:");
    s.write_all(b"*2\r\n$3\r\nDEL\r\n$7\r\nbig:key\r\n").unwrap();
    assert_eq!(read_reply(&mut s, &mut buf), ":1");

    let value_kib = (size >> 10) as u64;
    println!("RSS {base} KiB before, peak {peak} KiB during SET+GET of {value_kib} KiB");
    // Before, the value was held three times at the peak (read buffer, node reply, output copy); the target
    // (bench/memory.sh) is at most twice.
    assert!(peak - base < value_kib * 5 / 2, "peak {} KiB over the baseline for a {value_kib} KiB value", peak - base);
    // And given back: before, ~2.5 times the value stayed resident for good.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = proc_kib(pid, "VmRSS:");
        if now < base + value_kib / 4 {
            println!("RSS back to {now} KiB");
            break;
        }
        assert!(Instant::now() < deadline, "RSS still {now} KiB a minute after (baseline {base} KiB)");
        std::thread::sleep(Duration::from_millis(500));
    }
}
