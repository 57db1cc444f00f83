//! Reloading the configuration without a restart (SIGHUP and `SLOTWAY RELOAD`) while 20 clients keep working,
//! against a real TLS+AUTH cluster: a user added, a password changed, rules changed, a limit lowered and the read
//! policy switched all apply to new commands; no client sees an error or loses its connection; an invalid file
//! changes nothing and is counted as a failed reload; settings that need a restart are reported as such.
mod support;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const CLIENTS: usize = 20;

fn sha256_hex(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x");
    fs::write(&f, data).unwrap();
    let out = std::process::Command::new("sha256sum").arg(&f).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

fn config(dir: &Path, max_clients: u64, read_from: &str, app_rules: &str, newbie: bool, extra: &str) -> String {
    let mut c = format!(
        r#"{extra}
[client]
max_clients = {max_clients}
read_from = "{read_from}"

[[users]]
name = "admin"
passwords_sha256 = ["{admin}"]
rules = "on +@all ~*"

[[users]]
name = "app"
password_file = "{dir}/app.pw"
rules = "{app_rules}"
"#,
        admin = sha256_hex(b"admin-pw"),
        dir = dir.display()
    );
    if newbie {
        c.push_str(&format!(
            "\n[[users]]\nname = \"newbie\"\npasswords_sha256 = [\"{}\"]\nrules = \"on +get +set ~new:*\"\n",
            sha256_hex(b"newbie-pw")
        ));
    }
    c
}

async fn connect(addr: &str, user: &str, password: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(format!("redis://{user}:{password}@{addr}/"))?.get_multiplexed_async_connection().await
}

fn info_field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("{name} not in INFO proxy:\n{info}"))
        .trim()
        .to_string()
}

async fn info(con: &mut redis::aio::MultiplexedConnection) -> String {
    redis::cmd("INFO").arg("proxy").query_async(con).await.unwrap()
}

/// Waits until INFO proxy's `name` equals `want`.
async fn wait_info(con: &mut redis::aio::MultiplexedConnection, name: &str, want: &str, proxy: &Proxy) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = info(con).await;
        if info_field(&text, name) == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never became {want}:\n{text}\n--- log ---\n{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET calls the replicas have served, by port.
fn replica_gets(cluster: &Cluster) -> HashMap<u16, u64> {
    cluster
        .replicas()
        .into_iter()
        .map(|port| {
            let stats = cluster.cli(port, &["INFO", "commandstats"]);
            let calls = stats
                .lines()
                .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
                .and_then(|v| v.split(',').next()?.parse().ok())
                .unwrap_or(0);
            (port, calls)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_under_load_applies_users_limits_and_read_policy() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slotway.toml");
    fs::write(dir.path().join("app.pw"), "app-pw-1\n").unwrap();
    fs::write(&file, config(dir.path(), 1000, "primary", "on +@all -@dangerous ~*", false, "")).unwrap();
    let proxy = Proxy::start(&cluster, &["--config", file.to_str().unwrap()]);
    let addr = proxy.addr.clone();
    let mut admin = connect(&addr, "admin", "admin-pw").await.unwrap();
    let first_hash = info_field(&info(&mut admin).await, "config_sha256");
    assert_eq!(first_hash, sha256_hex(&fs::read(&file).unwrap()));

    // 20 clients as `app`, each on one connection, SET and GET in a loop; every error is recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(ErrorLog::default());
    let ops = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (addr, stop, errors, ops) = (addr.clone(), stop.clone(), errors.clone(), ops.clone());
        tasks.push(tokio::spawn(async move {
            let mut con = connect(&addr, "app", "app-pw-1").await.unwrap();
            let id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut con).await.unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 200_000 {
                let key = format!("reload:{c}:{}", n % 50);
                let set: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(n).query_async(&mut con).await;
                let get: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(&key).query_async(&mut con).await;
                for e in [set.err(), get.err()].into_iter().flatten() {
                    errors.record(format!("client {c}: {e}"));
                }
                n += 1;
                ops.fetch_add(1, Ordering::Relaxed);
            }
            (con, id)
        }));
    }
    let wait_ops = |at_least: u64| {
        let ops = ops.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while ops.load(Ordering::Relaxed) < at_least {
                assert!(Instant::now() < deadline, "the clients made no progress");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_ops(500).await;

    // The reload: newbie added, app's password and rules changed, max_clients lowered to 3 above the clients
    // connected now, reads switched to the replicas.
    let connected: u64 = info_field(&info(&mut admin).await, "connections_current").parse().unwrap();
    assert_eq!(connected, CLIENTS as u64 + 1);
    let gets_before = replica_gets(&cluster);
    fs::write(dir.path().join("app.pw"), "app-pw-2\n").unwrap();
    fs::write(&file, config(dir.path(), connected + 3, "prefer-replica", "on +@all -@dangerous -del ~*", true, ""))
        .unwrap();
    let new_hash = sha256_hex(&fs::read(&file).unwrap());
    proxy.signal("HUP");
    wait_info(&mut admin, "config_reloads_ok", "1", &proxy).await;
    let text = info(&mut admin).await;
    assert_eq!(info_field(&text, "config_sha256"), new_hash);
    assert_eq!(info_field(&text, "config_restart_needed"), "");
    let progress = ops.load(Ordering::Relaxed);
    wait_ops(progress + 500).await;

    // A new user, with its rules.
    let mut newbie = connect(&addr, "newbie", "newbie-pw").await.expect("the user added by the reload");
    let _: () = redis::cmd("SET").arg("new:x").arg(1).query_async(&mut newbie).await.unwrap();
    let denied: redis::RedisResult<()> = redis::cmd("SET").arg("other").arg(1).query_async(&mut newbie).await;
    assert!(denied.unwrap_err().code() == Some("NOPERM"));
    // The changed password: the old one is refused, the new one works.
    let old = match connect(&addr, "app", "app-pw-1").await {
        Ok(_) => panic!("the old password still works"),
        Err(e) => e,
    };
    assert!(old.kind() == redis::ErrorKind::AuthenticationFailed || old.code() == Some("WRONGPASS"), "{old}");
    let mut app2 = connect(&addr, "app", "app-pw-2").await.expect("the new password");
    let mut spare = connect(&addr, "app", "app-pw-2").await.expect("the last place under the new limit");
    // The lowered limit: the next client is refused, Redis's way.
    let refused = raw_ping(&addr, Duration::from_secs(5)).unwrap();
    assert_eq!(refused, "-ERR max number of clients reached");
    // Reads went to replicas.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let after = replica_gets(&cluster);
        let served: u64 = after.iter().map(|(p, n)| n - gets_before.get(p).copied().unwrap_or(0)).sum();
        if served >= 100 {
            break;
        }
        assert!(Instant::now() < deadline, "replicas served {served} GETs after read_from = prefer-replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An invalid file: nothing changes, the failure is counted and logged with the reason.
    fs::write(&file, "workers = \"many\"\n[client]\nmax_clients = 1\n").unwrap();
    proxy.signal("HUP");
    wait_info(&mut admin, "config_reloads_failed", "1", &proxy).await;
    let text = info(&mut admin).await;
    assert_eq!(info_field(&text, "config_sha256"), new_hash, "a failed reload changed the config");
    assert_eq!(info_field(&text, "config_reloads_ok"), "1");
    proxy.wait_for_log("configuration reload failed, nothing changed", Duration::from_secs(5));
    assert!(proxy.log().contains("workers"), "the reason is logged");
    let got: Option<String> = redis::cmd("GET").arg("new:x").query_async(&mut newbie).await.unwrap();
    assert_eq!(got.as_deref(), Some("1"), "the users stay as they were");
    assert!(raw_ping(&addr, Duration::from_secs(5)).unwrap().contains("max number of clients"), "old limit kept");

    // SLOTWAY RELOAD: admin only; a setting that needs a restart is reported and kept, the rest applies.
    let workers_now = 1 + std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
    fs::write(
        &file,
        config(
            dir.path(),
            connected + 3,
            "prefer-replica",
            "on +@all -@dangerous -del ~*",
            false,
            &format!("workers = {workers_now}\nlog_level = \"debug\""),
        ),
    )
    .unwrap();
    assert!(!proxy.log().contains(" DEBUG "), "debug lines at level info");
    let reply: String = redis::cmd("SLOTWAY").arg("RELOAD").query_async(&mut admin).await.unwrap();
    assert!(reply.starts_with("OK config sha256 "), "{reply}");
    assert!(reply.ends_with("needs a restart (running values kept): workers"), "{reply}");
    let text = info(&mut admin).await;
    assert_eq!(info_field(&text, "config_restart_needed"), "workers");
    assert_eq!(info_field(&text, "config_reloads_ok"), "2");
    // newbie was removed: its client is told NOAUTH and disconnected, as Redis does on ACL DELUSER.
    let r: redis::RedisResult<Option<String>> = redis::cmd("GET").arg("new:x").query_async(&mut newbie).await;
    let e = r.expect_err("a removed user's client still runs commands");
    assert!(e.code() == Some("NOAUTH") || e.is_io_error() || e.is_connection_dropped(), "{e}");
    let r: redis::RedisResult<Option<String>> = redis::cmd("GET").arg("new:x").query_async(&mut newbie).await;
    assert!(r.is_err(), "the removed user's connection is still open");
    assert!(connect(&addr, "newbie", "newbie-pw").await.is_err(), "the removed user can still log in");
    // The log level changed live: CLIENT KILL's debug line shows now.
    let spare_id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut spare).await.unwrap();
    let killed: i64 = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(spare_id).query_async(&mut admin).await.unwrap();
    assert_eq!(killed, 1);
    proxy.wait_for_log("CLIENT KILL", Duration::from_secs(10));

    // The 20 clients: no error, the connection they started with, and the new rules on their next command.
    let progress = ops.load(Ordering::Relaxed);
    wait_ops(progress + 200).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let (mut con, id) = t.await.unwrap();
        let now: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut con).await.unwrap();
        assert_eq!(now, id, "a client's connection was replaced");
        let del: redis::RedisResult<i64> = redis::cmd("DEL").arg("reload:x").query_async(&mut con).await;
        assert!(del.unwrap_err().code() == Some("NOPERM"), "app's new rules deny DEL");
    }
    assert_eq!(errors.count(), 0, "client errors during the reloads: {:?}", errors.first());
    assert!(ops.load(Ordering::Relaxed) >= 1700);
    // The app user (-@dangerous) may not reload.
    let denied: redis::RedisResult<String> = redis::cmd("SLOTWAY").arg("RELOAD").query_async(&mut app2).await;
    assert!(denied.unwrap_err().code() == Some("NOPERM"));
}
