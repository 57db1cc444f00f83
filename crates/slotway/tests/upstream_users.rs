//! A slotway user mapped to a cluster ACL user: its requests reach the nodes over connections logged in as that
//! user (shared, transaction and blocking ones), so the cluster's own ACLs apply and its errors come back as the
//! node wrote them; users without a mapping keep the `[upstream]` identity.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// Sends `input` on `s` and reads until `expected` bytes came (or 5 s pass).
fn exchange(s: &mut TcpStream, input: &[u8], expected: usize) -> String {
    s.write_all(input).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while got.len() < expected && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn sha256_hex(s: &str) -> String {
    slotway::auth::sha256(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The reply of a node to `args` when logged in directly as `app1`, as a RESP error line (redis-cli prints an
/// error reply's text without the leading `-`).
fn node_error_as_app1(cluster: &Cluster, port: u16, args: &[&str]) -> String {
    let out =
        cluster.cli_command(port).args(["--user", "app1"]).env("REDISCLI_AUTH", "app1-secret").args(args).output();
    let text = String::from_utf8_lossy(&out.unwrap().stdout).trim().to_string();
    assert!(text.starts_with("NOPERM") || text.starts_with("ERR"), "expected an error from the node: {text}");
    format!("-{text}\r\n")
}

fn write_config(dir: &std::path::Path, app1_password: &str) -> std::path::PathBuf {
    let pw_file = dir.join("app1.pw");
    std::fs::write(&pw_file, format!("{app1_password}\n")).unwrap();
    let config = dir.join("slotway.toml");
    std::fs::write(
        &config,
        format!(
            r##"
[[users]]
name = "alice"
passwords_sha256 = ["{}"]
rules = "on +@all ~*"
[users.upstream]
user = "app1"
password_file = {:?}

[[users]]
name = "bob"
passwords_sha256 = ["{}"]
rules = "on +@all ~*"
"##,
            sha256_hex("alice-pw"),
            pw_file.display().to_string(),
            sha256_hex("bob-pw"),
        ),
    )
    .unwrap();
    config
}

#[test]
fn mapped_user_runs_as_its_cluster_acl_user() {
    let cluster = Cluster::start(ClusterOpts::default());
    // The cluster's own ACL user: only app1:* keys.
    for port in cluster.live_ports() {
        cluster.cli(port, &["ACL", "SETUSER", "app1", "on", ">app1-secret", "~app1:*", "+@all"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "app1-secret");
    let mut args = Proxy::base_args(&cluster);
    args.extend(["--config".to_string(), config.display().to_string()]);
    let proxy = Proxy::start_raw(&args, &Proxy::password_env(&cluster));

    // slotway's rules let alice touch every key: any NOPERM below is the cluster's, passed on unchanged.
    let app2_node = cluster.node_for_key("app2:x");
    let noperm_key = node_error_as_app1(&cluster, app2_node, &["SET", "app2:x", "1"]);
    assert_eq!(noperm_key, "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n");
    let script = "return redis.call('set','app2:x','1')";
    let script_error = node_error_as_app1(&cluster, app2_node, &["EVAL", script, "0"]);

    let mut alice = proxy.tcp();
    assert_eq!(exchange(&mut alice, b"AUTH alice alice-pw\r\n", 5), "+OK\r\n");
    // Its own keys, on every primary (shared connections as app1).
    for (_, key) in cluster.keys_on_every_primary("app1:") {
        assert_eq!(exchange(&mut alice, format!("SET {key} a\r\n").as_bytes(), 5), "+OK\r\n", "{key}");
    }
    assert_eq!(exchange(&mut alice, b"SET app2:x 1\r\n", noperm_key.len()), noperm_key);
    // A script's keys are checked by the node too; slotway can't see them (numkeys 0).
    let eval = format!("EVAL \"{script}\" 0\r\n");
    assert_eq!(exchange(&mut alice, eval.as_bytes(), script_error.len()), script_error);
    // A transaction and a blocking command use dedicated connections: also as app1.
    let execabort = "-EXECABORT Transaction discarded because of previous errors.\r\n";
    let want = format!("+OK\r\n{noperm_key}{execabort}");
    assert_eq!(exchange(&mut alice, b"MULTI\r\nSET app2:x 1\r\nEXEC\r\n", want.len()), want);
    let want = "+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n";
    assert_eq!(exchange(&mut alice, b"MULTI\r\nSET app1:t 1\r\nEXEC\r\n", want.len()), want);
    assert_eq!(exchange(&mut alice, b"BLPOP app2:l 0.1\r\n", noperm_key.len()), noperm_key);
    assert_eq!(exchange(&mut alice, b"BLPOP app1:l 0.1\r\n", 5), "*-1\r\n");
    assert_eq!(cluster.cli(app2_node, &["EXISTS", "app2:x"]), "0");

    // bob has no mapping: the [upstream] identity, which may write app2:*.
    let mut bob = proxy.tcp();
    assert_eq!(exchange(&mut bob, b"AUTH bob bob-pw\r\nSET app2:x bob\r\n", 10), "+OK\r\n+OK\r\n");
    assert_eq!(cluster.cli(app2_node, &["GET", "app2:x"]), "bob");

    // One connection switching users: requests before the AUTH run as bob, those after it as app1, in order.
    let want = format!("+OK\r\n+OK\r\n{noperm_key}{noperm_key}");
    let got = exchange(&mut bob, b"SET app2:z 1\r\nAUTH alice alice-pw\r\nSET app2:z 2\r\nGET app2:z\r\n", want.len());
    assert_eq!(got, want);
    assert_eq!(cluster.cli(cluster.node_for_key("app2:z"), &["GET", "app2:z"]), "1");

    // A WATCH made as bob can't carry over to alice's identity: EXEC answers nil, as if the key had changed.
    let mut carol = proxy.tcp();
    let want = "+OK\r\n+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n";
    let got = exchange(
        &mut carol,
        b"AUTH bob bob-pw\r\nWATCH app1:w\r\nAUTH alice alice-pw\r\nMULTI\r\nSET app1:w 1\r\nEXEC\r\n",
        want.len(),
    );
    assert_eq!(got, want);
    assert_eq!(cluster.cli(cluster.node_for_key("app1:w"), &["EXISTS", "app1:w"]), "0");

    // Every primary has connections from slotway logged in as app1, and as the default user.
    for port in cluster.primaries() {
        let list = cluster.cli(port, &["CLIENT", "LIST"]);
        assert!(list.lines().any(|l| l.contains("user=app1")), "node {port}: no app1 connection:\n{list}");
    }
    assert!(!proxy.log().contains("app1-secret"), "the upstream password must not be logged");
    drop(proxy);

    // A wrong password for the mapped user stops slotway at start, naming the users involved.
    let bad = tempfile::tempdir().unwrap();
    let config = write_config(bad.path(), "wrong-secret");
    let mut args = Proxy::base_args(&cluster);
    args.extend(["--config".to_string(), config.display().to_string()]);
    let (status, log) = Proxy::run_raw(&args, &Proxy::password_env(&cluster), Duration::from_secs(15));
    assert!(status.is_some_and(|s| !s.success()), "slotway must refuse to start:\n{log}");
    assert!(log.contains("user alice: cannot log in to the cluster as upstream user 'app1'"), "{log}");
    assert!(log.contains("WRONGPASS") && !log.contains("wrong-secret"), "{log}");
}
