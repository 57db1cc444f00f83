//! Issue "a user confined to some keys must stay confined", on a single-group backend: slotway in front of a
//! Sentinel-managed primary with two replicas (TLS and AUTH on nodes and sentinels). One node holds every key, so
//! nothing but slotway's checks (or the nodes' own ACL users) keeps a restricted user in: a script that got past
//! slotway would write anywhere.

mod support;
mod support_raw;

use std::time::{Duration, Instant};
use support::*;
use support_raw::{arr, bulk, err, int, ok, queued, Raw, Reply};

fn sha256_hex(s: &str) -> String {
    slotway::auth::sha256(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn start_with(group: &Group, dir: &std::path::Path, config_text: &str) -> Proxy {
    let config = dir.join(format!("slotway-{}.toml", free_port()));
    std::fs::write(&config, config_text).unwrap();
    Proxy::start_sentinel(group, &["--config", &config.display().to_string()])
}

fn login(proxy: &Proxy, user: &str, password: &str) -> Raw {
    let mut c = Raw::connect(&proxy.addr);
    assert_eq!(c.call(&["AUTH", user, password]), ok(), "AUTH {user}");
    c
}

fn error_starting(reply: &Reply, prefix: &str) -> bool {
    matches!(reply, Reply::Error(e) if e.starts_with(prefix))
}

/// The primary the group has now (the one that says master).
fn primary(group: &Group) -> u16 {
    group.masters()[0]
}

fn exists(group: &Group, key: &str) -> bool {
    group.cli(primary(group), &["EXISTS", key]) == "1"
}

const SCRIPT_NOPERM: &str = "NOPERM this user has no permissions to run the '";

#[test]
fn restricted_user_stays_confined_on_a_single_group() {
    let group = Group::start(GroupOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_with(
        &group,
        dir.path(),
        &format!(
            r#"
[[users]]
name = "app"
passwords_sha256 = ["{}"]
rules = "on +@all ~app:* &app:*"

[[users]]
name = "admin"
passwords_sha256 = ["{}"]
rules = "on +@all ~* &*"
"#,
            sha256_hex("app-pw"),
            sha256_hex("admin-pw")
        ),
    );
    let mut admin = login(&proxy, "admin", "admin-pw");
    let mut app = login(&proxy, "app", "app-pw");
    for cmd in [
        &["SET", "app:a", "1"][..],
        &["RPUSH", "app:l", "3", "1", "2"],
        &["SADD", "app:s", "m"],
        &["SET", "other:secret", "s3cret"],
        &["SET", "w_1", "1"],
    ] {
        assert!(!matches!(admin.call(cmd), Reply::Error(_)), "{cmd:?}");
    }
    let nokey = err("NOPERM this user has no permissions to access one of the keys used as arguments");
    // No hash tags needed: a single group takes any keys in one command, so each of these would run whole.
    for cmd in [
        &["COPY", "app:a", "other:e"][..],
        &["RENAME", "app:a", "other:e"],
        &["LMOVE", "app:l", "other:e", "LEFT", "LEFT"],
        &["SMOVE", "app:s", "other:e", "m"],
        &["MSET", "app:x", "1", "other:e", "1"],
        &["SUNIONSTORE", "other:e", "app:s"],
    ] {
        assert_eq!(app.call(cmd), nokey, "{cmd:?}");
    }
    let write_other = "return redis.call('set','other:e','x')";
    for cmd in [
        &["EVAL", write_other, "0"][..],
        &["EVAL", write_other, "1", "app:a"],
        &["EVAL_RO", "return redis.call('get','other:secret')", "0"],
        &["FCALL", "nosuch", "0"],
    ] {
        let reply = app.call(cmd);
        assert!(error_starting(&reply, SCRIPT_NOPERM), "{cmd:?}: {reply:?}");
    }
    let replies = app.pipeline(&[&["MULTI"], &["SET", "app:m", "1"], &["EVAL", write_other, "0"], &["EXEC"]]);
    assert_eq!(replies[..2], [ok(), queued()]);
    assert!(error_starting(&replies[2], SCRIPT_NOPERM), "{:?}", replies[2]);
    assert_eq!(replies[3], err("EXECABORT Transaction discarded because of previous errors."));
    // SORT BY/GET patterns read arbitrary keys of the one node.
    assert_eq!(
        app.call(&["SORT", "app:l", "BY", "w_*"]),
        err("ERR BY option of SORT denied due to insufficient ACL permissions.")
    );
    assert_eq!(
        app.call(&["SORT", "app:l", "GET", "other:*"]),
        err("ERR GET option of SORT denied due to insufficient ACL permissions.")
    );
    assert_eq!(app.call(&["SORT", "app:l"]), arr(vec![bulk("1"), bulk("2"), bulk("3")]));
    // Channels: granted ones only.
    assert_eq!(app.call(&["PUBLISH", "app:news", "x"]), int(0));
    let reply = app.call(&["PUBLISH", "other", "x"]);
    assert!(error_starting(&reply, "NOPERM"), "{reply:?}");
    for key in ["other:e", "app:m", "app:x"] {
        assert!(!exists(&group, key), "{key} was written");
    }
    assert_eq!(group.cli(primary(&group), &["GET", "app:a"]), "1");
    // The same script from an unrestricted user runs: the refusal is what kept `app` in.
    assert_eq!(admin.call(&["EVAL", write_other, "0"]), ok());
    assert!(exists(&group, "other:e"));
}

#[test]
fn provisioned_user_is_confined_by_the_nodes_of_a_single_group() {
    let group = Group::start(GroupOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_with(
        &group,
        dir.path(),
        &format!(
            r#"
[[users]]
name = "alice"
passwords_sha256 = ["{}"]
rules = "on +@all ~app:* &chan:*"
provision_upstream = true
"#,
            sha256_hex("alice-pw")
        ),
    );
    // Every data node, replicas included, has the user (sentinels are not data nodes).
    let line = |port: u16| {
        group.cli(port, &["ACL", "LIST"]).lines().find(|l| l.starts_with("user slotway:alice ")).map(str::to_string)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !group.ports.iter().all(|&p| line(p).is_some()) {
        assert!(Instant::now() < deadline, "not provisioned on every node\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    for &port in &group.ports {
        let l = line(port).unwrap();
        assert!(l.contains(" ~app:* ") && l.contains(" resetchannels &chan:* "), "node {port}: {l}");
    }
    let mut alice = login(&proxy, "alice", "alice-pw");
    assert_eq!(alice.call(&["EVAL", "return redis.call('set','app:x','1')", "0"]), ok());
    let reply = alice.call(&["EVAL", "return redis.call('set','other:x','1')", "0"]);
    assert!(
        error_starting(&reply, "ERR The user executing the script can't access at least one of the keys"),
        "{reply:?}"
    );
    assert!(!exists(&group, "other:x"));
    assert_eq!(group.cli(primary(&group), &["GET", "app:x"]), "1");
    assert!(group.cli(primary(&group), &["CLIENT", "LIST"]).contains("user=slotway:alice"));
}
