//! A real third-party client end to end: redis-py's standalone `redis.Redis` against slotway in front of a TLS +
//! AUTH cluster (tests/python/e2e.py: pipelines, MSET/MGET, transactions and WATCH, scan_iter, CLIENT SETINFO on
//! connect, CLIENT LIST/KILL, RESP3, pub/sub once slotway has it).
//!
//! The interpreter is `$SLOTWAY_PYTHON`, else `python3`, and it must be able to `import redis`. When it can't:
//! with `SLOTWAY_REQUIRE_PYTHON=1` (set by `.ci/run`, which installs both) the test fails; otherwise it is skipped
//! with a message saying how to enable it.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

/// The Python interpreter with the `redis` package, or why there is none.
fn python() -> Result<(String, String), String> {
    let python = std::env::var("SLOTWAY_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = Command::new(&python)
        .args(["-c", "import redis, sys; print(redis.__version__)"])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{python} cannot import the `redis` package: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok((python, version))
}

#[test]
fn redis_py_standalone_client_end_to_end() {
    let (python, version) = match python() {
        Ok(p) => p,
        Err(why) if std::env::var("SLOTWAY_REQUIRE_PYTHON").as_deref() == Ok("1") => {
            panic!("SLOTWAY_REQUIRE_PYTHON=1 but {why} (.ci/run installs python3-venv and `pip install redis`)")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED redis_py_standalone_client_end_to_end: {why}. Install redis-py (pip install redis) or set \
                 SLOTWAY_PYTHON to an interpreter that has it; SLOTWAY_REQUIRE_PYTHON=1 makes this a failure."
            );
            return;
        }
    };
    eprintln!("using {python} with redis-py {version}");

    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let shard_keys: Vec<String> = cluster.keys_on_every_primary("py:shard:").into_iter().map(|(_, k)| k).collect();
    assert_eq!(shard_keys.len(), 3);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/e2e.py");
    let out = Command::new("timeout")
        .arg("120")
        .arg(&python)
        .arg(&script)
        .args(["--port", &proxy.port.to_string(), "--shard-keys", &shard_keys.join(",")])
        .output()
        .expect("run the Python end-to-end script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "e2e.py failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- slotway log ---\n{}",
        out.status,
        proxy.log()
    );
    eprintln!("{stdout}");
    for check in [
        "client setinfo on connect",
        "pipeline across shards",
        "mset/mget across shards",
        "transaction",
        "watch conflict",
        "scan_iter over every shard",
        "client list and kill",
        "resp3",
        "pubsub",
    ] {
        assert!(stdout.lines().any(|l| l == format!("ok {check}")), "no 'ok {check}' in:\n{stdout}");
    }
}
