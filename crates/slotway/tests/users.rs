//! slotway's own users: NOAUTH before AUTH (nothing reaches a node), passwords as SHA-256 hashes or files,
//! ACL rules for commands and keys with Redis's NOPERM wording, and rate-limited AUTH failures.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// Sends `input` and reads replies until `expected` bytes came (or 5 s pass); returns what came.
fn exchange(addr: &str, stream: Option<&mut TcpStream>, input: &[u8], expected: usize) -> Vec<u8> {
    let mut owned;
    let s = match stream {
        Some(s) => s,
        None => {
            owned = TcpStream::connect(addr).unwrap();
            &mut owned
        }
    };
    s.write_all(input).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while got.len() < expected && Instant::now() < deadline {
        if let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }
    got
}

fn sha256_hex(s: &str) -> String {
    slotway::auth::sha256(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn set_calls(cluster: &Cluster) -> u64 {
    cluster
        .primaries()
        .into_iter()
        .map(|p| {
            let stats = cluster.cli(p, &["INFO", "commandstats"]);
            stats
                .lines()
                .find(|l| l.starts_with("cmdstat_set:"))
                .and_then(|l| l.split("calls=").nth(1))
                .and_then(|v| v.split(',').next())
                .map_or(0, |v| v.parse::<u64>().unwrap())
        })
        .sum()
}

#[test]
fn users_authentication_and_acl_rules() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("app1.pw");
    std::fs::write(&pw_file, "app1-secret\n").unwrap();
    let config = dir.path().join("slotway.toml");
    std::fs::write(
        &config,
        format!(
            r##"
[auth]
max_failures_per_minute = 5

[[users]]
name = "default"
passwords_sha256 = ["{}"]
rules = "on +@all ~*"

[[users]]
name = "reader"
passwords_sha256 = ["#{}"]
rules = "on +@read +@connection ~*"

[[users]]
name = "app1"
password_file = {:?}
rules = "on +@all -@dangerous ~app1:* %R~shared:*"
"##,
            sha256_hex("default-secret"),
            sha256_hex("reader-secret"),
            pw_file.display().to_string()
        ),
    )
    .unwrap();
    let mut args = Proxy::base_args(&cluster);
    args.extend(["--config".to_string(), config.display().to_string()]);
    // The harness's readiness probe sends PING without AUTH, which must get NOAUTH: start it and wait for that.
    let proxy = Proxy::start_raw(&args, &Proxy::password_env(&cluster));
    let addr = proxy.addr.clone();

    // Before AUTH: NOAUTH for everything but AUTH/HELLO/QUIT; a failed AUTH pipelined with writes lets none of
    // them reach a node.
    for p in cluster.primaries() {
        cluster.cli(p, &["CONFIG", "RESETSTAT"]);
    }
    let before = set_calls(&cluster);
    let got = exchange(
        &addr,
        None,
        b"GET k\r\nPING\r\nAUTH nope\r\nSET shared:x 1\r\nSET app1:x 1\r\nAUTH app1 wrong\r\nSET app1:y 1\r\n",
        200,
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n\
         -WRONGPASS invalid username-password pair or user is disabled.\r\n\
         -NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n\
         -WRONGPASS invalid username-password pair or user is disabled.\r\n-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(set_calls(&cluster), before, "no SET reached any node");
    assert_eq!(cluster.cli(cluster.node_for_key("app1:x"), &["EXISTS", "app1:x"]), "0");

    // The default user with AUTH <password>.
    let got = exchange(&addr, None, b"AUTH default-secret\r\nSET shared:x 1\r\nGET shared:x\r\n", 16);
    assert_eq!(got, b"+OK\r\n+OK\r\n$1\r\n1\r\n");

    // A read-only user: GET yes, SET no (Redis's wording).
    let got = exchange(&addr, None, b"AUTH reader reader-secret\r\nGET shared:x\r\nSET shared:x 2\r\n", 80);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "+OK\r\n$1\r\n1\r\n-NOPERM this user has no permissions to run the 'set' command\r\n"
    );

    // A user limited to app1:* (password from a file): its own keys yes; app2:x not even through MGET, EVAL keys,
    // RENAME, or a split multi-key command; shared:* read-only.
    let mut s = TcpStream::connect(&addr).unwrap();
    // HELLO 3 with AUTH: the whole map reply ends with the empty `modules` array.
    s.write_all(b"HELLO 3 AUTH app1 app1-secret\r\n").unwrap();
    let mut hello = Vec::new();
    let mut buf = [0u8; 1024];
    while !hello.ends_with(b"*0\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed during HELLO");
        hello.extend_from_slice(&buf[..n]);
    }
    assert!(hello.starts_with(b"%7"), "{}", String::from_utf8_lossy(&hello));
    let nokey = "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n";
    let cases: &[(&str, &str)] = &[
        ("SET app1:a 1\r\n", "+OK\r\n"),
        ("GET app1:a\r\n", "$1\r\n1\r\n"),
        ("GET app2:x\r\n", nokey),
        ("MGET app1:a app2:x\r\n", nokey),
        ("EVAL \"return 1\" 1 app2:x\r\n", nokey),
        ("RENAME app1:a app2:x\r\n", nokey),
        ("DEL app1:a app2:x\r\n", nokey),
        ("GET shared:x\r\n", "$1\r\n1\r\n"),
        ("SET shared:x 3\r\n", nokey),
        ("FLUSHALL\r\n", "-NOPERM this user has no permissions to run the 'flushall' command\r\n"),
    ];
    for (cmd, want) in cases {
        let got = exchange(&addr, Some(&mut s), cmd.as_bytes(), want.len());
        assert_eq!(String::from_utf8_lossy(&got), *want, "{cmd}");
    }
    assert_eq!(cluster.cli(cluster.node_for_key("app2:x"), &["EXISTS", "app2:x"]), "0");

    // Not through a transaction either: a denied command while queueing aborts it (Redis's behaviour for errors
    // while queueing), so even the allowed SET before it doesn't run; WATCH needs read access to its keys.
    let execabort = "-EXECABORT Transaction discarded because of previous errors.\r\n";
    let txn_cases: &[(&str, String)] = &[
        ("WATCH app2:x\r\n", nokey.to_string()),
        ("MULTI\r\nSET app1:a 2\r\nSET app2:x 1\r\nEXEC\r\n", format!("+OK\r\n+QUEUED\r\n{nokey}{execabort}")),
        (
            "MULTI\r\nSET app1:a 3\r\nEVAL \"return 1\" 1 app2:x\r\nEXEC\r\n",
            format!("+OK\r\n+QUEUED\r\n{nokey}{execabort}"),
        ),
        ("GET app1:a\r\n", "$1\r\n1\r\n".to_string()),
    ];
    for (cmd, want) in txn_cases {
        let got = exchange(&addr, Some(&mut s), cmd.as_bytes(), want.len());
        assert_eq!(String::from_utf8_lossy(&got), *want, "{cmd}");
    }
    assert_eq!(cluster.cli(cluster.node_for_key("app2:x"), &["EXISTS", "app2:x"]), "0");

    // Key discovery (documented behaviour, as in Redis): KEYS is @dangerous and denied here as a command; SCAN is
    // allowed and its results are not filtered by key patterns, so app1 sees that app2:seen exists (but can't
    // read it).
    let want = "-NOPERM this user has no permissions to run the 'keys' command\r\n";
    assert_eq!(String::from_utf8_lossy(&exchange(&addr, Some(&mut s), b"KEYS *\r\n", want.len())), want);
    cluster.cli(cluster.node_for_key("app2:seen"), &["SET", "app2:seen", "1"]);
    let scan = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &proxy.port.to_string(), "--user", "app1", "--scan", "--pattern", "app2:*"])
        .env("REDISCLI_AUTH", "app1-secret")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&scan.stdout).trim(), "app2:seen");
    assert_eq!(String::from_utf8_lossy(&exchange(&addr, Some(&mut s), b"GET app2:seen\r\n", nokey.len())), nokey);

    // Failed AUTHs are rate-limited per address: after 5 failures even the right password is refused for now.
    let mut s = TcpStream::connect(&addr).unwrap();
    for _ in 0..5 {
        let got = exchange(&addr, Some(&mut s), b"AUTH default wrong\r\n", 10);
        assert!(
            got.starts_with(b"-WRONGPASS") || got.starts_with(b"-ERR too many"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    let got = exchange(&addr, Some(&mut s), b"AUTH default-secret\r\n", 10);
    assert!(got.starts_with(b"-ERR too many failed authentication attempts"), "{}", String::from_utf8_lossy(&got));
    let log = proxy.log();
    assert!(log.contains("AUTH failed") && log.contains("user=app1"), "failures are logged");
    for secret in ["app1-secret", "reader-secret", "default-secret", "wrong"] {
        assert!(!log.contains(secret), "the log must not contain passwords ({secret})");
    }
}
