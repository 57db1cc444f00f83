//! Sentinel-managed groups (via `scripts/dev-sentinel.sh`: 1 primary, 2 replicas, 3 sentinels, TLS and AUTH on
//! the nodes and the sentinels) and slotway processes in front of them, as a Sentinel group or a static set, plus
//! the load the failover tests run.
//!
//! ```ignore
//! let group = Group::start(GroupOpts::default());
//! let proxy = Proxy::start_sentinel(&group, &[]);   // or Proxy::start_static(&group, &[])
//! ```
use super::{
    free_port, kill_pid, output_text, pid_alive, redis_cli_command, run_redis_cli, spawn_watchdog_with, tail, ErrorLog,
    Proxy, TEST_PASSWORD,
};
use redis::AsyncCommands;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The sentinels' own password in test groups.
pub const TEST_SENTINEL_PASSWORD: &str = "slotway-test-sentinel-pass";
pub const MASTER_NAME: &str = "mymaster";

/// Path of `scripts/dev-sentinel.sh` in this repository.
pub fn dev_sentinel_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/dev-sentinel.sh")
}

/// Shape of a test group.
#[derive(Clone, Debug)]
pub struct GroupOpts {
    pub tls: bool,
    pub password: Option<String>,
    pub sentinel_password: Option<String>,
    /// Sentinels' `down-after-milliseconds`: how long a dead primary goes unnoticed.
    pub down_after_ms: u64,
    /// Sentinels' `failover-timeout`.
    pub failover_timeout_ms: u64,
}

impl Default for GroupOpts {
    fn default() -> Self {
        GroupOpts {
            tls: true,
            password: Some(TEST_PASSWORD.to_string()),
            sentinel_password: Some(TEST_SENTINEL_PASSWORD.to_string()),
            down_after_ms: 1000,
            failover_timeout_ms: 5000,
        }
    }
}

/// A primary, two replicas and three sentinels on free ports, in a temp dir.
pub struct Group {
    pub dir: tempfile::TempDir,
    /// Data nodes; `ports[0]` was started as the primary.
    pub ports: Vec<u16>,
    pub sentinel_ports: Vec<u16>,
    pub opts: GroupOpts,
    watchdog: Option<Child>,
    /// Extra sentinel processes a test started (stopped on drop).
    extra: Mutex<Vec<u32>>,
}

impl Group {
    /// Starts the group and waits until every sentinel knows the primary, both replicas and the other sentinels.
    pub fn start(opts: GroupOpts) -> Group {
        let dir = tempfile::Builder::new().prefix("slotway-sentinel-").tempdir().expect("temp dir for the group");
        let watchdog = spawn_watchdog_with(dir.path(), &dev_sentinel_script());
        let mut last = String::new();
        for attempt in 1..=3 {
            let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
            let sentinel_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
            let list = |v: &[u16]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
            let mut cmd = Command::new("bash");
            cmd.arg(dev_sentinel_script())
                .arg("start")
                .arg("--dir")
                .arg(dir.path())
                .args(["--ports", &list(&ports), "--sentinel-ports", &list(&sentinel_ports)])
                .args(["--down-after", &opts.down_after_ms.to_string()])
                .args(["--failover-timeout", &opts.failover_timeout_ms.to_string()])
                .env("DEV_SENTINEL_PASSWORD", opts.password.clone().unwrap_or_default())
                .env("DEV_SENTINEL_SENTINEL_PASSWORD", opts.sentinel_password.clone().unwrap_or_default())
                .env_remove("DEV_SENTINEL_DIR")
                .env_remove("REDISCLI_AUTH")
                .stdin(Stdio::null());
            if !opts.tls {
                cmd.arg("--no-tls");
            }
            let out = cmd.output().expect("run scripts/dev-sentinel.sh");
            if out.status.success() {
                return Group { dir, ports, sentinel_ports, opts, watchdog, extra: Mutex::new(Vec::new()) };
            }
            last = output_text(&out);
            let _ = Command::new("bash").arg(dev_sentinel_script()).arg("stop").arg("--dir").arg(dir.path()).output();
            if !(last.contains("Address already in use") || last.contains("does not answer")) || attempt == 3 {
                break;
            }
        }
        if let Some(mut w) = watchdog {
            let _ = w.kill();
            let _ = w.wait();
        }
        panic!("scripts/dev-sentinel.sh start failed:\n{last}");
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("tls").join("ca.crt")
    }

    pub fn node_dir(&self, port: u16) -> PathBuf {
        self.dir.path().join("nodes").join(port.to_string())
    }

    pub fn node_log(&self, port: u16) -> String {
        fs::read_to_string(self.node_dir(port).join("redis.log")).unwrap_or_default()
    }

    fn cli_with(&self, password: Option<&str>, port: u16) -> Command {
        redis_cli_command(30, self.opts.tls.then(|| self.ca_path()).as_deref(), password, port)
    }

    /// redis-cli against a data node (TLS + AUTH); error replies come back as Ok text.
    pub fn try_cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        run_redis_cli(self.cli_with(self.opts.password.as_deref(), port), port, args)
    }

    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        self.try_cli(port, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// redis-cli against a sentinel (its own password).
    pub fn sentinel_cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        run_redis_cli(self.cli_with(self.opts.sentinel_password.as_deref(), port), port, args)
    }

    /// The node's ROLE, first line (`master`, `slave`), or None when it doesn't answer.
    pub fn role(&self, port: u16) -> Option<String> {
        self.try_cli(port, &["ROLE"]).ok().and_then(|r| r.lines().next().map(str::to_string))
    }

    /// The data nodes whose ROLE says master.
    pub fn masters(&self) -> Vec<u16> {
        self.ports.iter().copied().filter(|&p| self.role(p).as_deref() == Some("master")).collect()
    }

    /// The port the sentinel on `sentinel` names for the master.
    pub fn sentinel_names(&self, sentinel: u16) -> Option<u16> {
        let out = self.sentinel_cli(sentinel, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME]).ok()?;
        out.lines().nth(1)?.trim().parse().ok()
    }

    /// Waits until every sentinel names a primary other than `old` whose ROLE says master; returns it.
    pub fn wait_promoted(&self, old: u16, timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        loop {
            let named: Vec<Option<u16>> = self.sentinel_ports.iter().map(|&s| self.sentinel_names(s)).collect();
            if let Some(Some(new)) = named.first() {
                if *new != old && named.iter().all(|n| *n == Some(*new)) && self.role(*new).as_deref() == Some("master")
                {
                    return *new;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no promotion after {timeout:?}: sentinels name {named:?}\n{}",
                self.status()
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// `SENTINEL FAILOVER` on the first sentinel; waits for the promotion. Returns (old primary, new primary).
    pub fn sentinel_failover(&self) -> (u16, u16) {
        let old = self.sentinel_names(self.sentinel_ports[0]).expect("the sentinel names a primary");
        let r = self.sentinel_cli(self.sentinel_ports[0], &["SENTINEL", "FAILOVER", MASTER_NAME]).unwrap();
        assert_eq!(r, "OK", "SENTINEL FAILOVER: {r}");
        (old, self.wait_promoted(old, Duration::from_secs(30)))
    }

    pub fn pid(&self, port: u16) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.node_dir(port).join("redis.pid")).ok()?.trim().parse().ok()?;
        pid_alive(pid).then_some(pid)
    }

    /// SIGKILLs the data node on `port` and waits until it is gone.
    pub fn kill_node(&self, port: u16) {
        if let Some(pid) = self.pid(port) {
            kill_pid(pid, "KILL");
            let deadline = Instant::now() + Duration::from_secs(10);
            while pid_alive(pid) && Instant::now() < deadline {
                sleep(Duration::from_millis(10));
            }
            assert!(!pid_alive(pid), "node {port} did not die");
        }
    }

    /// Starts a killed node again with its config file and waits until it answers.
    pub fn restart_node(&self, port: u16) {
        assert!(self.pid(port).is_none(), "node {port} is still running");
        let conf = self.node_dir(port).join("redis.conf");
        let st = Command::new("redis-server").arg(&conf).stdin(Stdio::null()).stdout(Stdio::null()).status();
        assert!(st.map(|s| s.success()).unwrap_or(false), "redis-server {conf:?} failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.try_cli(port, &["PING"]).map(|s| s != "PONG").unwrap_or(true) {
            assert!(Instant::now() < deadline, "node {port} does not answer:\n{}", tail(&self.node_log(port), 20));
            sleep(Duration::from_millis(20));
        }
    }

    /// Starts one more sentinel that monitors `MASTER_NAME` at `port` with a wrong `auth-pass`: it can't log in to
    /// the node (so it never learns anything from it or from the other sentinels) and keeps naming `port`, as a
    /// sentinel that missed every change since. It answers slotway normally (same sentinel password). Returns
    /// its port; stopped with the group.
    pub fn start_stale_sentinel(&self, port: u16) -> u16 {
        let sport = free_port();
        let sd = self.dir.path().join("stale-sentinels").join(sport.to_string());
        fs::create_dir_all(&sd).unwrap();
        let tls = self.dir.path().join("tls");
        let mut conf = vec!["bind 127.0.0.1".to_string(), "protected-mode no".to_string()];
        if self.opts.tls {
            conf.extend([
                "port 0".to_string(),
                format!("tls-port {sport}"),
                "tls-replication yes".to_string(),
                format!("tls-cert-file {}", tls.join("redis.crt").display()),
                format!("tls-key-file {}", tls.join("redis.key").display()),
                format!("tls-ca-cert-file {}", tls.join("ca.crt").display()),
                "tls-auth-clients optional".to_string(),
            ]);
        } else {
            conf.push(format!("port {sport}"));
        }
        conf.extend([
            "daemonize yes".to_string(),
            format!("dir {}", sd.display()),
            format!("pidfile {}", sd.join("sentinel.pid").display()),
            format!("logfile {}", sd.join("sentinel.log").display()),
            format!("sentinel monitor {MASTER_NAME} 127.0.0.1 {port} 5"),
            format!("sentinel auth-pass {MASTER_NAME} not-the-password"),
        ]);
        if let Some(pw) = &self.opts.sentinel_password {
            conf.push(format!("requirepass \"{pw}\""));
        }
        let path = sd.join("sentinel.conf");
        fs::write(&path, conf.join("\n") + "\n").unwrap();
        let st = Command::new("redis-sentinel").arg(&path).stdin(Stdio::null()).stdout(Stdio::null()).status();
        assert!(st.map(|s| s.success()).unwrap_or(false), "stale redis-sentinel failed to start");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.sentinel_names(sport) != Some(port) {
            assert!(Instant::now() < deadline, "the stale sentinel does not answer");
            sleep(Duration::from_millis(50));
        }
        if let Some(pid) = fs::read_to_string(sd.join("sentinel.pid")).ok().and_then(|p| p.trim().parse().ok()) {
            self.extra.lock().unwrap().push(pid);
        }
        sport
    }

    /// `--sentinel` for every sentinel, `--sentinel-master`, and TLS to the sentinels and the nodes.
    pub fn sentinel_args(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.sentinel_ports.iter().flat_map(|p| ["--sentinel".to_string(), format!("127.0.0.1:{p}")]).collect();
        v.extend(["--sentinel-master".to_string(), MASTER_NAME.to_string()]);
        if self.opts.tls {
            let ca = self.ca_path().display().to_string();
            v.extend(["--sentinel-tls".into(), "--sentinel-tls-ca".into(), ca.clone()]);
            v.extend(["--upstream-tls".into(), "--upstream-tls-ca".into(), ca]);
        }
        v
    }

    /// `--server` for every data node, and TLS to the nodes.
    pub fn server_args(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.ports.iter().flat_map(|p| ["--server".to_string(), format!("127.0.0.1:{p}")]).collect();
        if self.opts.tls {
            v.extend(["--upstream-tls".into(), "--upstream-tls-ca".into(), self.ca_path().display().to_string()]);
        }
        v
    }

    /// The passwords slotway gets from the environment.
    pub fn env(&self) -> Vec<(&str, &str)> {
        let mut v = Vec::new();
        if let Some(pw) = &self.opts.password {
            v.push(("SLOTWAY_UPSTREAM_PASSWORD", pw.as_str()));
        }
        if let Some(pw) = &self.opts.sentinel_password {
            v.push(("SLOTWAY_SENTINEL_PASSWORD", pw.as_str()));
        }
        v
    }

    /// `dev-sentinel.sh status`.
    pub fn status(&self) -> String {
        Command::new("bash")
            .arg(dev_sentinel_script())
            .arg("status")
            .arg("--dir")
            .arg(self.dir.path())
            .output()
            .map(|o| output_text(&o))
            .unwrap_or_default()
    }

    /// Whether the node on `port` has refused a write with READONLY (`INFO errorstats`): a write was sent to it
    /// while it was a replica.
    pub fn refused_readonly(&self, port: u16) -> bool {
        self.cli(port, &["INFO", "errorstats"]).contains("errorstat_READONLY")
    }

    /// `INFO commandstats` calls of `command` on the node on `port` (0 when it never ran). Replicas count the
    /// commands they get through replication too.
    pub fn calls(&self, port: u16, command: &str) -> u64 {
        // A node that changes role may drop its clients; redis-cli then dies of SIGPIPE mid-request. Asking again
        // a few times keeps that from failing a test that is about something else.
        let mut attempt = 0;
        let stats = loop {
            match self.try_cli(port, &["INFO", "commandstats"]) {
                Ok(s) => break s,
                Err(e) if attempt >= 4 => panic!("{e}"),
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
            }
        };
        let prefix = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|l| l.trim().strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- group at drop (test panicked) ---\n{}", self.status());
        }
        for pid in self.extra.lock().unwrap().drain(..) {
            kill_pid(pid, "KILL");
        }
        let _ = Command::new("bash").arg(dev_sentinel_script()).arg("stop").arg("--dir").arg(self.dir.path()).output();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Proxy {
    /// slotway in front of `group` as a Sentinel group (`--sentinel ...`), plus `extra` args.
    pub fn start_sentinel(group: &Group, extra: &[&str]) -> Proxy {
        let mut args = group.sentinel_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        Proxy::start_raw(&args, &group.env())
    }

    /// slotway in front of `group`'s data nodes as a static set (`--server ...`), plus `extra` args.
    pub fn start_static(group: &Group, extra: &[&str]) -> Proxy {
        let mut args = group.server_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        Proxy::start_raw(&args, &group.env())
    }
}

// ------------------------------------------------------------------ load

/// What a load's clients saw.
#[derive(Default)]
pub struct Tally {
    pub ok: AtomicU64,
    pub errors: ErrorLog,
    pub stale: AtomicU64,
    /// Errors whose text says READONLY.
    pub readonly: AtomicU64,
    /// Last acknowledged value per key.
    pub acked: Mutex<HashMap<String, String>>,
    /// The slowest SET+GET round (µs): how long clients were held during an outage.
    pub slowest_us: AtomicU64,
}

impl Tally {
    pub fn summary(&self) -> (u64, u64, u64) {
        (self.ok.load(Ordering::Relaxed), self.errors.count(), self.stale.load(Ordering::Relaxed))
    }

    /// (error count, time from the first error to the last) for the report.
    pub fn outage(&self) -> (u64, Option<Duration>) {
        let times = self.errors.times();
        (self.errors.count(), times.first().zip(times.last()).map(|(a, b)| *b - *a))
    }

    /// The longest a client waited for one SET+GET round.
    pub fn slowest(&self) -> Duration {
        Duration::from_micros(self.slowest_us.load(Ordering::Relaxed))
    }
}

/// `clients` clients, each SETting its own keys and GETting each right back, until `stop` (or 200,000 rounds).
pub async fn run_load(addr: String, clients: usize, prefix: &'static str, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (addr, stop, tally) = (addr.clone(), stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
            // Requests that arrive during a failover wait for the new primary: the client must not give up first.
            let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
            let mut con = client.get_multiplexed_async_connection_with_config(&config).await.unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 200_000 {
                let key = format!("{prefix}:{c}:{}", i % 50);
                let value = format!("{c}-{i}");
                let started = std::time::Instant::now();
                let _slowest = Slowest(&tally.slowest_us, started);
                match con.set::<_, _, ()>(&key, &value).await {
                    Ok(()) => {
                        tally.acked.lock().unwrap().insert(key.clone(), value.clone());
                        match con.get::<_, Option<String>>(&key).await {
                            Ok(Some(v)) if v == value => {
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(other) => {
                                tally.stale.fetch_add(1, Ordering::Relaxed);
                                tally.errors.record(format!("stale read of {key}: {other:?}, wrote {value}"));
                            }
                            Err(e) => record(&tally, format!("GET {key}: {e}")),
                        }
                    }
                    Err(e) => record(&tally, format!("SET {key}: {e}")),
                }
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Records how long one round took when it ends (whichever way it ends).
struct Slowest<'a>(&'a AtomicU64, std::time::Instant);

impl Drop for Slowest<'_> {
    fn drop(&mut self) {
        self.0.fetch_max(self.1.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

fn record(tally: &Tally, what: String) {
    if what.contains("READONLY") {
        tally.readonly.fetch_add(1, Ordering::Relaxed);
    }
    tally.errors.record(what);
}

/// Every acknowledged write is readable through `addr`.
pub async fn check_acked(addr: &str, tally: &Tally) {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let acked = tally.acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    for (k, v) in acked {
        let got: Option<String> = con.get(&k).await.unwrap();
        assert_eq!(got.as_deref(), Some(v.as_str()), "acknowledged write of {k} lost");
    }
}
