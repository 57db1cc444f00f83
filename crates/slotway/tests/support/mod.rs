//! Integration-test harness: throwaway Redis Clusters (via `scripts/dev-cluster.sh`)
//! and slotway processes in front of them.
//!
//! Use it from an integration test file with `mod support;`. Every `Cluster` and
//! `Proxy` lives in its own temp dir with its own ports, so tests can run in
//! parallel (cargo nextest runs each test in its own process).
//!
//! ```ignore
//! mod support;
//! use support::*;
//!
//! #[tokio::test]
//! async fn set_get_through_proxy() {
//!     let cluster = Cluster::start(ClusterOpts::default()); // 3+3 nodes, TLS + AUTH
//!     let proxy = Proxy::start(&cluster, &[]);
//!     let mut con = proxy.client().await;
//!     let _: () = redis::cmd("SET").arg("k").arg("v").query_async(&mut con).await.unwrap();
//! }
//! ```
//!
//! Cleanup: `Drop` stops the nodes / kills the proxy (also when the test panics).
//! If the test process itself is killed (e.g. a nextest timeout), a small
//! watchdog process started with each cluster stops its nodes and removes its
//! temp dir once the test process is gone.
#![allow(dead_code)]

pub mod pool;
pub mod sentinel;
#[allow(unused_imports)]
pub use pool::*;
#[allow(unused_imports)]
pub use sentinel::*;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Password used by test clusters unless `ClusterOpts::password` says otherwise.
pub const TEST_PASSWORD: &str = "slotway-test-pass";
/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// Path of `scripts/dev-cluster.sh` in this repository.
pub fn dev_cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/dev-cluster.sh")
}

// ------------------------------------------------------------------ free ports

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

/// Range of ports we hand out: below the kernel's ephemeral range (so outgoing
/// connections never grab a port between our check and the server's bind),
/// with room for the cluster bus port (port + 10000) below it as well.
fn port_range() -> (u16, u16) {
    let (eph_lo, eph_hi) = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if eph_lo >= 10000 + 10000 + 2000 {
        (10000, (eph_lo - 10001).min(55535) as u16)
    } else if eph_hi + 1 + 2000 <= 55535 {
        ((eph_hi + 1) as u16, 55535)
    } else {
        (20000, 30000)
    }
}

fn port_bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Cross-process claim of a port (tests run as parallel processes): a file
/// named after the port holding the claiming pid; stale claims (dead pid) are
/// taken over.
fn claim_port(port: u16) -> bool {
    let dir = std::env::temp_dir().join("slotway-test-ports");
    let _ = fs::create_dir_all(&dir);
    let path = dir.join(port.to_string());
    let me = std::process::id();
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                let _ = write!(f, "{me}");
                return true;
            }
            Err(_) => {
                let owner = fs::read_to_string(&path).unwrap_or_default();
                match owner.trim().parse::<u32>() {
                    Ok(pid) if pid == me => return true, // ours (in-process set decides)
                    Ok(pid) if Path::new(&format!("/proc/{pid}")).exists() => return false,
                    // Empty: being written right now by someone else.
                    Err(_) if owner.is_empty() => return false,
                    _ => {
                        let _ = fs::remove_file(&path);
                    }
                }
            }
        }
    }
    false
}

fn pick_port(with_bus: bool) -> u16 {
    let (lo, hi) = port_range();
    let span = (hi - lo) as u64 + 1;
    for _ in 0..10_000 {
        let port = lo + (random_u64() % span) as u16;
        if handed_out().lock().unwrap().contains(&port) {
            continue;
        }
        if !port_bindable(port) || (with_bus && !port_bindable(port + 10000)) {
            continue;
        }
        if !claim_port(port) || (with_bus && !claim_port(port + 10000)) {
            continue;
        }
        let mut set = handed_out().lock().unwrap();
        if set.insert(port) {
            if with_bus {
                set.insert(port + 10000);
            }
            return port;
        }
    }
    panic!("could not find a free port in {lo}..={hi}");
}

/// A free 127.0.0.1 port that this process has not handed out before.
pub fn free_port() -> u16 {
    pick_port(false)
}

/// A free port whose cluster bus port (port + 10000) is free as well.
pub fn free_cluster_port() -> u16 {
    pick_port(true)
}

// ------------------------------------------------------------------ key slots

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// Redis Cluster hash slot of a key (with `{hash tag}` support).
pub fn key_slot(key: &[u8]) -> u16 {
    let k = match key.iter().position(|&c| c == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&c| c == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(k) % SLOTS
}

// ------------------------------------------------------------------ processes

/// redis-cli for the node on 127.0.0.1:`port`, ended after `timeout_secs`: over TLS when `ca` is given, the
/// password through REDISCLI_AUTH (never on the command line), or none.
fn redis_cli_command(timeout_secs: u32, ca: Option<&Path>, password: Option<&str>, port: u16) -> Command {
    let mut c = Command::new("timeout");
    c.arg(timeout_secs.to_string()).arg("redis-cli");
    if let Some(ca) = ca {
        c.arg("--tls").arg("--cacert").arg(ca);
    }
    c.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    match password {
        Some(pw) => c.env("REDISCLI_AUTH", pw),
        None => c.env_remove("REDISCLI_AUTH"),
    };
    c.stdin(Stdio::null());
    c
}

/// Runs a [`redis_cli_command`] with `args`: its trimmed output, or Err on a failed exit or no connection (a node
/// down). Error *replies* (ERR, MOVED...) are printed by redis-cli with exit 0, so they come back as Ok text.
fn run_redis_cli(mut c: Command, port: u16, args: &[&str]) -> Result<String, String> {
    let out = c.args(args).output().map_err(|e| format!("run redis-cli: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !stdout.starts_with("Could not connect") {
        Ok(stdout)
    } else {
        Err(format!("redis-cli -p {port} {args:?} failed ({}): {}", out.status, output_text(&out).trim()))
    }
}

fn output_text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn pid_alive(pid: u32) -> bool {
    // A zombie has exited already; it only waits to be reaped.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !stat[i + 1..].trim_start().starts_with('Z'),
            None => true,
        },
        Err(_) => false,
    }
}

pub fn kill_pid(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).stderr(Stdio::null()).status();
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Answer of a PING sent over plain TCP (RESP), e.g. "+PONG".
pub fn raw_ping(addr: &str, timeout: Duration) -> std::io::Result<String> {
    let sa: SocketAddr =
        addr.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while !buf.ends_with(b"\r\n") {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}

// ------------------------------------------------------------------ cluster

fn node_pid_in(dir: &Path, port: u16) -> Option<u32> {
    let pid: u32 =
        fs::read_to_string(dir.join("nodes").join(port.to_string()).join("redis.pid")).ok()?.trim().parse().ok()?;
    pid_alive(pid).then_some(pid)
}

fn node_pids_in(dir: &Path, ports: &[u16]) -> Vec<u32> {
    ports.iter().filter_map(|&p| node_pid_in(dir, p)).collect()
}

/// `dev-cluster.sh stop` on `dir`, then SIGKILL for any of `pids` still alive.
fn stop_dir(dir: &Path, pids: Vec<u32>) {
    let out =
        Command::new("bash").arg(dev_cluster_script()).arg("stop").arg("--dir").arg(dir).stdin(Stdio::null()).output();
    let ok = matches!(&out, Ok(o) if o.status.success());
    if !ok {
        match &out {
            Ok(o) => eprintln!("warning: dev-cluster.sh stop failed:\n{}", output_text(o)),
            Err(e) => eprintln!("warning: could not run dev-cluster.sh stop: {e}"),
        }
    }
    // Belt and braces: whatever the script did, no node may survive.
    for pid in pids {
        if pid_alive(pid) {
            if ok {
                eprintln!("warning: redis-server pid {pid} survived dev-cluster.sh stop");
            }
            kill_pid(pid, "KILL");
        }
    }
}

/// Stops the nodes in `dir` and removes `dir` once this process is gone, in
/// case `Drop` never runs (test process killed, e.g. by a runner timeout).
fn spawn_watchdog(dir: &Path) -> Option<Child> {
    spawn_watchdog_with(dir, &dev_cluster_script())
}

/// `spawn_watchdog` for a deployment started by `script` (which must accept `stop --dir DIR`).
pub(crate) fn spawn_watchdog_with(dir: &Path, script: &Path) -> Option<Child> {
    use std::os::unix::process::CommandExt;
    let child = Command::new("bash")
        .arg("-c")
        .arg(
            r#"trap '' HUP INT TERM
while kill -0 "$1" 2>/dev/null; do sleep 1; done
bash "$2" stop --dir "$3" >/dev/null 2>&1
rm -rf -- "$3""#,
        )
        .arg("slotway-test-watchdog")
        .arg(std::process::id().to_string())
        .arg(script)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Own process group: a runner killing the test's group spares it.
        .process_group(0)
        .spawn();
    match child {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("warning: could not start cluster watchdog: {e}");
            None
        }
    }
}

/// Shape of a test cluster.
#[derive(Clone, Debug)]
pub struct ClusterOpts {
    /// Number of primaries (>= 1; redis-cli is used from 3 on, fewer are wired by hand).
    pub primaries: usize,
    /// Replicas per primary.
    pub replicas: usize,
    /// TLS on client, cluster bus and replication links (plain TCP when false).
    pub tls: bool,
    /// `requirepass`/`masterauth` of every node; None disables AUTH.
    pub password: Option<String>,
    /// `cluster-node-timeout` in ms.
    pub node_timeout_ms: u64,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        ClusterOpts {
            primaries: 3,
            replicas: 1,
            tls: true,
            password: Some(TEST_PASSWORD.to_string()),
            node_timeout_ms: 5000,
        }
    }
}

/// One node as seen in a CLUSTER NODES line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub flags: Vec<String>,
    /// Id of the primary for a replica.
    pub primary_id: Option<String>,
    pub connected: bool,
    /// Inclusive slot ranges served (primaries only; importing/migrating markers skipped).
    pub slots: Vec<(u16, u16)>,
}

impl NodeInfo {
    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
    pub fn is_primary(&self) -> bool {
        self.has_flag("master")
    }
    pub fn is_replica(&self) -> bool {
        self.has_flag("slave") || self.has_flag("replica")
    }
    pub fn is_myself(&self) -> bool {
        self.has_flag("myself")
    }
    /// Flagged fail / pfail / handshake / noaddr.
    pub fn is_unhealthy(&self) -> bool {
        ["fail", "fail?", "handshake", "noaddr"].iter().any(|f| self.has_flag(f))
    }
}

/// Parses the output of CLUSTER NODES.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodeInfo> {
    let mut nodes = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let hostport = f[1].split('@').next().unwrap_or("");
        let port = match hostport.rsplit(':').next().and_then(|p| p.parse().ok()) {
            Some(p) => p,
            None => continue,
        };
        let mut slots = Vec::new();
        for s in &f[8..] {
            if s.starts_with('[') {
                continue;
            }
            let r = match s.split_once('-') {
                Some((a, b)) => a.parse().ok().zip(b.parse().ok()),
                None => s.parse().ok().map(|a| (a, a)),
            };
            if let Some(r) = r {
                slots.push(r);
            }
        }
        nodes.push(NodeInfo {
            id: f[0].to_string(),
            port,
            flags: f[2].split(',').map(str::to_string).collect(),
            primary_id: (f[3] != "-").then(|| f[3].to_string()),
            connected: f[7] == "connected",
            slots,
        });
    }
    nodes
}

/// Inclusive slot range -> port of the primary serving it.
pub type SlotOwners = BTreeMap<(u16, u16), u16>;

/// A Redis Cluster of local `redis-server` processes in a temp dir.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// Every node's port (client port; the bus is port + 10000), in creation
    /// order: the first `primaries` ports were created as primaries.
    pub ports: Vec<u16>,
    pub password: Option<String>,
    pub tls: bool,
    pub opts: ClusterOpts,
    watchdog: Option<Child>,
}

impl Cluster {
    /// Starts a cluster and waits until it is healthy. Panics with the
    /// script's output if that fails.
    pub fn start(opts: ClusterOpts) -> Cluster {
        assert!(opts.primaries >= 1, "need at least one primary");
        let n = opts.primaries * (1 + opts.replicas);
        let dir = tempfile::Builder::new().prefix("slotway-cluster-").tempdir().expect("create temp dir for cluster");
        // Started first, so that even a kill during startup leaves nothing behind.
        let watchdog = spawn_watchdog(dir.path());
        let mut last = String::new();
        for attempt in 1..=3 {
            let ports: Vec<u16> = (0..n).map(|_| free_cluster_port()).collect();
            let port_list = ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
            let mut cmd = Command::new("bash");
            cmd.arg(dev_cluster_script())
                .arg("start")
                .arg("--dir")
                .arg(dir.path())
                .arg("--ports")
                .arg(&port_list)
                .arg("--replicas")
                .arg(opts.replicas.to_string())
                .arg("--node-timeout")
                .arg(opts.node_timeout_ms.to_string())
                // The password goes through the environment, not argv.
                .env("DEV_CLUSTER_PASSWORD", opts.password.clone().unwrap_or_default())
                .env_remove("DEV_CLUSTER_DIR")
                .env_remove("DEV_CLUSTER_PORTS")
                .env_remove("DEV_CLUSTER_REPLICAS")
                .env_remove("DEV_CLUSTER_TLS")
                .env_remove("DEV_CLUSTER_NODE_TIMEOUT")
                .env_remove("REDISCLI_AUTH")
                .stdin(Stdio::null());
            if !opts.tls {
                cmd.arg("--no-tls");
            }
            let out = cmd.output().expect("run scripts/dev-cluster.sh");
            if out.status.success() {
                return Cluster {
                    dir,
                    ports,
                    password: opts.password.clone(),
                    tls: opts.tls,
                    opts: opts.clone(),
                    watchdog,
                };
            }
            last = output_text(&out);
            let pids = node_pids_in(dir.path(), &ports);
            stop_dir(dir.path(), pids);
            let port_clash = last.contains("Address already in use")
                || last.contains("Failed listening")
                || last.contains("does not answer PING");
            if !port_clash || attempt == 3 {
                break;
            }
            eprintln!("dev-cluster start failed (attempt {attempt}), retrying with other ports:\n{}", tail(&last, 10));
        }
        if let Some(mut w) = watchdog {
            let _ = w.kill();
            let _ = w.wait();
        }
        panic!("scripts/dev-cluster.sh start failed:\n{last}");
    }

    /// Pids (from the pidfiles) of the nodes that are still running.
    pub fn node_pids(&self) -> Vec<u32> {
        node_pids_in(self.dir.path(), &self.ports)
    }

    /// Pid of the node on `port`, if it is running.
    pub fn pid(&self, port: u16) -> Option<u32> {
        node_pid_in(self.dir.path(), port)
    }

    fn stop_nodes(&mut self) {
        stop_dir(self.dir.path(), self.node_pids());
    }

    /// Stops every node now (Drop does it too).
    pub fn stop(mut self) {
        self.stop_nodes();
    }

    /// "127.0.0.1:PORT" of every node.
    pub fn seeds(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }
    /// CA that signed the nodes' certificate (and `client_cert`).
    pub fn ca_path(&self) -> PathBuf {
        self.tls_dir().join("ca.crt")
    }
    /// An unrelated CA (for "wrong CA" tests).
    pub fn other_ca_path(&self) -> PathBuf {
        self.tls_dir().join("other-ca.crt")
    }
    /// Client certificate and key signed by `ca_path` (mTLS).
    pub fn client_cert(&self) -> (PathBuf, PathBuf) {
        (self.tls_dir().join("client.crt"), self.tls_dir().join("client.key"))
    }
    /// Client certificate and key signed by `other_ca_path` (rejected by the nodes).
    pub fn other_client_cert(&self) -> (PathBuf, PathBuf) {
        (self.tls_dir().join("other-client.crt"), self.tls_dir().join("other-client.key"))
    }
    /// Node certificate and key (SAN IP:127.0.0.1, DNS:localhost, DNS:node.slotway.test).
    pub fn server_cert(&self) -> (PathBuf, PathBuf) {
        (self.tls_dir().join("redis.crt"), self.tls_dir().join("redis.key"))
    }

    pub fn node_dir(&self, port: u16) -> PathBuf {
        self.dir.path().join("nodes").join(port.to_string())
    }
    /// The node's redis.log.
    pub fn node_log(&self, port: u16) -> String {
        fs::read_to_string(self.node_dir(port).join("redis.log")).unwrap_or_default()
    }
    /// Password as a str ("" when AUTH is off).
    pub fn password_str(&self) -> &str {
        self.password.as_deref().unwrap_or("")
    }

    /// `redis-cli` (TLS + AUTH as needed) against one node, not following
    /// redirections. The password is passed via REDISCLI_AUTH.
    pub fn cli_command(&self, port: u16) -> Command {
        redis_cli_command(60, self.tls.then(|| self.ca_path()).as_deref(), self.password.as_deref(), port)
    }

    /// Runs redis-cli against one node; Err on a failed exit (e.g. node down).
    /// Error *replies* (ERR, MOVED...) are printed by redis-cli with exit 0, so
    /// they come back as Ok text.
    pub fn try_cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        run_redis_cli(self.cli_command(port), port, args)
    }

    /// Runs redis-cli against one node and returns its trimmed stdout; panics on failure.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        self.try_cli(port, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Ports of the nodes that answer PING.
    pub fn live_ports(&self) -> Vec<u16> {
        self.ports
            .iter()
            .copied()
            .filter(|&p| self.try_cli(p, &["PING"]).map(|s| s == "PONG").unwrap_or(false))
            .collect()
    }

    /// CLUSTER NODES as seen by the node on `port`.
    pub fn cluster_nodes(&self, port: u16) -> Vec<NodeInfo> {
        parse_cluster_nodes(&self.cli(port, &["CLUSTER", "NODES"]))
    }

    /// CLUSTER NODES as seen by the first node that answers.
    pub fn any_cluster_nodes(&self) -> Vec<NodeInfo> {
        for &p in &self.ports {
            if let Ok(text) = self.try_cli(p, &["CLUSTER", "NODES"]) {
                let nodes = parse_cluster_nodes(&text);
                if !nodes.is_empty() {
                    return nodes;
                }
            }
        }
        panic!("no node of the cluster answers CLUSTER NODES");
    }

    /// Each live node's own view of itself.
    fn own_views(&self) -> Vec<NodeInfo> {
        let mut v = Vec::new();
        for &p in &self.ports {
            if let Ok(text) = self.try_cli(p, &["CLUSTER", "NODES"]) {
                if let Some(me) = parse_cluster_nodes(&text).into_iter().find(|n| n.is_myself()) {
                    v.push(me);
                }
            }
        }
        v
    }

    /// Ports of the nodes that currently are primaries (each live node's own
    /// view), sorted.
    pub fn primaries(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.own_views().iter().filter(|n| n.is_primary()).map(|n| n.port).collect();
        v.sort_unstable();
        v
    }

    /// Ports of the nodes that currently are replicas, sorted.
    pub fn replicas(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.own_views().iter().filter(|n| n.is_replica()).map(|n| n.port).collect();
        v.sort_unstable();
        v
    }

    /// Ports of the replicas of the primary on `primary`.
    pub fn replicas_of(&self, primary: u16) -> Vec<u16> {
        let nodes = self.any_cluster_nodes();
        let id = match nodes.iter().find(|n| n.port == primary) {
            Some(n) => n.id.clone(),
            None => return Vec::new(),
        };
        let mut v: Vec<u16> = nodes
            .iter()
            .filter(|n| n.primary_id.as_deref() == Some(&id) && !n.is_unhealthy())
            .map(|n| n.port)
            .collect();
        v.sort_unstable();
        v
    }

    /// Slot -> primary port map as seen by one node.
    fn slot_owners(nodes: &[NodeInfo]) -> SlotOwners {
        let mut m = BTreeMap::new();
        for n in nodes.iter().filter(|n| n.is_primary()) {
            for &r in &n.slots {
                m.insert(r, n.port);
            }
        }
        m
    }

    /// Port of the primary serving `slot` (as seen by the first node that answers).
    pub fn node_for_slot(&self, slot: u16) -> u16 {
        assert!(slot < SLOTS);
        let nodes = self.any_cluster_nodes();
        for n in nodes.iter().filter(|n| n.is_primary() && !n.has_flag("fail")) {
            if n.slots.iter().any(|&(a, b)| a <= slot && slot <= b) {
                return n.port;
            }
        }
        panic!("no primary serves slot {slot}: {nodes:#?}");
    }

    /// Port of the primary serving `key`.
    pub fn node_for_key(&self, key: &str) -> u16 {
        self.node_for_slot(key_slot(key.as_bytes()))
    }

    /// A key (with `prefix`) whose slot is served by the primary on `port`.
    pub fn key_on_node(&self, port: u16, prefix: &str) -> String {
        let nodes = self.any_cluster_nodes();
        let node = nodes
            .iter()
            .find(|n| n.port == port && n.is_primary())
            .unwrap_or_else(|| panic!("{port} is not a primary"));
        (0..100_000)
            .map(|i| format!("{prefix}{i}"))
            .find(|k| {
                let s = key_slot(k.as_bytes());
                node.slots.iter().any(|&(a, b)| a <= s && s <= b)
            })
            .expect("no key found for node")
    }

    /// One key per current primary: `(primary port, key)`.
    pub fn keys_on_every_primary(&self, prefix: &str) -> Vec<(u16, String)> {
        self.primaries().into_iter().map(|p| (p, self.key_on_node(p, prefix))).collect()
    }

    /// Ok when every live node reports cluster_state:ok, all live nodes agree
    /// on the slot map (all 16384 slots covered), no live node sees another
    /// live node as failed/handshaking, and live replicas of live primaries
    /// have their link up. Nodes that are down (killed by the test) are skipped.
    pub fn check_healthy(&self) -> Result<(), String> {
        let live = self.live_ports();
        if live.is_empty() {
            return Err("no node answers PING".into());
        }
        let mut reference: Option<(u16, SlotOwners)> = None;
        for &p in &live {
            let info = self.try_cli(p, &["CLUSTER", "INFO"])?;
            if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                return Err(format!("{p}: cluster_state is not ok"));
            }
            let nodes = parse_cluster_nodes(&self.try_cli(p, &["CLUSTER", "NODES"])?);
            for n in &nodes {
                if live.contains(&n.port) && (n.is_unhealthy() || !n.connected) {
                    return Err(format!("{p} sees live node {} as {:?}", n.port, n.flags));
                }
            }
            let owners = Self::slot_owners(&nodes);
            let covered: u32 = owners.keys().map(|&(a, b)| (b - a) as u32 + 1).sum();
            if covered != SLOTS as u32 {
                return Err(format!("{p}: only {covered} slots covered"));
            }
            for (&_range, owner) in &owners {
                if !live.contains(owner) {
                    return Err(format!("{p}: slots still owned by dead node {owner}"));
                }
            }
            match &reference {
                None => reference = Some((p, owners)),
                Some((rp, r)) if *r != owners => {
                    return Err(format!("{p} and {rp} disagree on the slot map"));
                }
                _ => {}
            }
            if let Some(me) = nodes.iter().find(|n| n.is_myself()) {
                if me.is_replica() {
                    let primary_live = nodes
                        .iter()
                        .find(|n| Some(&n.id) == me.primary_id.as_ref())
                        .map(|n| live.contains(&n.port))
                        .unwrap_or(false);
                    if primary_live {
                        let repl = self.try_cli(p, &["INFO", "replication"])?;
                        if !repl.lines().any(|l| l.trim() == "master_link_status:up") {
                            return Err(format!("{p}: replica link not up"));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits until `check_healthy` passes; panics with the last reason otherwise.
    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.check_healthy() {
                Ok(()) => return,
                Err(why) if Instant::now() >= deadline => {
                    panic!("cluster not healthy after {timeout:?}: {why}\n{}", self.status())
                }
                Err(_) => sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Output of `dev-cluster.sh status` (per-node up/down + CLUSTER NODES).
    pub fn status(&self) -> String {
        Command::new("bash")
            .arg(dev_cluster_script())
            .arg("status")
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .map(|o| output_text(&o))
            .unwrap_or_else(|e| e.to_string())
    }

    /// SIGKILLs the node on `port` (crash) and waits until it is gone.
    pub fn kill_node(&self, port: u16) {
        if let Some(pid) = self.pid(port) {
            kill_pid(pid, "KILL");
            let deadline = Instant::now() + Duration::from_secs(10);
            while pid_alive(pid) && Instant::now() < deadline {
                sleep(Duration::from_millis(20));
            }
            assert!(!pid_alive(pid), "node {port} (pid {pid}) did not die");
        }
    }

    /// Pauses (SIGSTOP) / resumes (SIGCONT) the node on `port` (a hung node).
    pub fn pause_node(&self, port: u16) {
        kill_pid(self.pid(port).expect("node not running"), "STOP");
    }
    pub fn resume_node(&self, port: u16) {
        kill_pid(self.pid(port).expect("node not running"), "CONT");
    }

    /// Starts a stopped/killed node again with its config (it rejoins with its
    /// nodes.conf) and waits until it answers PING.
    pub fn restart_node(&self, port: u16) {
        assert!(self.pid(port).is_none(), "node {port} is still running");
        let conf = self.node_dir(port).join("redis.conf");
        let st = Command::new("redis-server")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("run redis-server");
        assert!(st.success(), "redis-server {conf:?} failed: {st}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.try_cli(port, &["PING"]).map(|s| s != "PONG").unwrap_or(true) {
            assert!(
                Instant::now() < deadline,
                "restarted node {port} does not answer:\n{}",
                tail(&self.node_log(port), 20)
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// Manual failover: makes `replica` the primary of its shard (CLUSTER
    /// FAILOVER, or FAILOVER FORCE/TAKEOVER via `mode`), then waits until the
    /// cluster is healthy again.
    pub fn failover(&self, replica: u16, mode: Option<&str>) {
        let mut args = vec!["CLUSTER", "FAILOVER"];
        if let Some(m) = mode {
            args.push(m);
        }
        let r = self.cli(replica, &args);
        assert_eq!(r, "OK", "CLUSTER FAILOVER on {replica}: {r}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.primaries().contains(&replica) {
            assert!(Instant::now() < deadline, "{replica} did not become primary:\n{}", self.status());
            sleep(Duration::from_millis(100));
        }
        self.wait_healthy(Duration::from_secs(30));
    }
}

impl Cluster {
    /// SIGKILLs the first primary and waits (up to 30 s, letting the runtime's other tasks run) until its first
    /// replica is promoted. Returns (killed primary, promoted replica, when it was killed). Needs a multi-thread
    /// runtime (`#[tokio::test(flavor = "multi_thread")]`).
    pub async fn kill_a_primary_until_promoted(&self) -> (u16, u16, Instant) {
        let victim = self.primaries()[0];
        let replica = self.replicas_of(victim)[0];
        let killed = Instant::now();
        tokio::task::block_in_place(|| self.kill_node(victim));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !tokio::task::block_in_place(|| self.primaries().contains(&replica)) {
            assert!(Instant::now() < deadline, "replica {replica} was never promoted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (victim, replica, killed)
    }

    /// Starts one more node with the same settings as the others (TLS, password, node timeout) and adds it to the
    /// cluster as a primary without slots (`redis-cli --cluster add-node`); waits until every node knows it and
    /// the cluster is healthy. Its port is appended to `ports`, its files live with the other nodes'.
    pub fn add_node(&mut self) -> u16 {
        let port = free_cluster_port();
        let template = self.ports[0];
        let (old_dir, new_dir) = (self.node_dir(template), self.node_dir(port));
        fs::create_dir_all(&new_dir).expect("create node dir");
        let conf = fs::read_to_string(old_dir.join("redis.conf")).expect("read a node's redis.conf");
        let conf: Vec<String> = conf
            .lines()
            .map(|l| match l {
                l if l == format!("port {template}") => format!("port {port}"),
                l if l == format!("tls-port {template}") => format!("tls-port {port}"),
                l => l.replace(&old_dir.display().to_string(), &new_dir.display().to_string()),
            })
            .collect();
        let conf_path = new_dir.join("redis.conf");
        fs::write(&conf_path, conf.join("\n") + "\n").expect("write redis.conf");
        let st = Command::new("redis-server").arg(&conf_path).stdin(Stdio::null()).stdout(Stdio::null()).status();
        assert!(st.map(|s| s.success()).unwrap_or(false), "redis-server {conf_path:?} failed to start");
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.try_cli(port, &["PING"]).map(|s| s != "PONG").unwrap_or(true) {
            assert!(Instant::now() < deadline, "new node {port} does not answer:\n{}", tail(&self.node_log(port), 20));
            sleep(Duration::from_millis(100));
        }
        self.ports.push(port);
        let out = self
            .cli_command(template)
            .args(["--cluster", "add-node", &format!("127.0.0.1:{port}"), &format!("127.0.0.1:{template}")])
            .output()
            .expect("run redis-cli --cluster add-node");
        assert!(out.status.success() && !output_text(&out).contains("[ERR]"), "add-node: {}", output_text(&out));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let everyone_knows = self.ports.iter().all(|&p| {
                self.try_cli(p, &["CLUSTER", "NODES"]).map(|t| t.contains(&format!(":{port}@"))).unwrap_or(false)
            });
            if everyone_knows && self.check_healthy().is_ok() {
                return port;
            }
            assert!(Instant::now() < deadline, "node {port} did not join:\n{}", self.status());
            sleep(Duration::from_millis(200));
        }
    }

    /// Removes the (slot-less) node on `port` with `redis-cli --cluster del-node`: every other node forgets it and
    /// it is reset (it keeps running, alone; `Drop` stops it with the others). Its port leaves `ports`.
    pub fn del_node(&mut self, port: u16) {
        let id = self.cluster_nodes(port).into_iter().find(|n| n.is_myself()).expect("myself").id;
        self.ports.retain(|&p| p != port);
        let other = self.ports[0];
        let out = self
            .cli_command(other)
            .args(["--cluster", "del-node", &format!("127.0.0.1:{other}"), &id])
            .output()
            .expect("run redis-cli --cluster del-node");
        assert!(out.status.success() && !output_text(&out).contains("[ERR]"), "del-node: {}", output_text(&out));
        self.wait_healthy(Duration::from_secs(30));
    }

    /// `redis-cli --cluster reshard`: moves `slots` slots from the primary `from` to the primary `to`.
    pub fn reshard(&self, from: u16, to: u16, slots: u16) -> String {
        let id = |p: u16| self.cluster_nodes(p).into_iter().find(|n| n.is_myself()).expect("myself").id;
        let out = self
            .cli_command(from)
            .args([
                "--cluster",
                "reshard",
                &format!("127.0.0.1:{from}"),
                "--cluster-from",
                &id(from),
                "--cluster-to",
                &id(to),
                "--cluster-slots",
                &slots.to_string(),
                "--cluster-yes",
                "--cluster-pipeline",
                "50",
            ])
            .output()
            .expect("run redis-cli --cluster reshard");
        let text = output_text(&out);
        assert!(out.status.success() && !text.contains("[ERR]"), "reshard {from} -> {to}: {}", tail(&text, 30));
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- cluster at drop (test panicked) ---\n{}", self.status());
        }
        self.stop_nodes();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        // The TempDir field removes the directory after this.
    }
}

// ------------------------------------------------------------------ redis clients

fn tls_certs(cluster: &Cluster) -> redis::TlsCertificates {
    redis::TlsCertificates { client_tls: None, root_cert: Some(fs::read(cluster.ca_path()).expect("read CA")) }
}

/// Direct cluster client (TLS with the cluster's CA, AUTH) for baselines and checks.
pub async fn cluster_client(cluster: &Cluster) -> redis::cluster_async::ClusterConnection {
    let scheme = if cluster.tls { "rediss" } else { "redis" };
    let nodes: Vec<String> = cluster.seeds().iter().map(|s| format!("{scheme}://{s}")).collect();
    let mut b = redis::cluster::ClusterClient::builder(nodes)
        .connection_timeout(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(10));
    if let Some(pw) = &cluster.password {
        b = b.password(pw);
    }
    if cluster.tls {
        b = b.certs(tls_certs(cluster));
    }
    b.build().expect("build cluster client").get_async_connection().await.expect("connect cluster client")
}

/// Direct connection to one node (TLS + AUTH as needed), e.g. for CLUSTER SLOTS.
pub async fn node_client(cluster: &Cluster, port: u16) -> redis::aio::MultiplexedConnection {
    use redis::IntoConnectionInfo;
    let addr = if cluster.tls {
        redis::ConnectionAddr::TcpTls { host: "127.0.0.1".into(), port, insecure: false, tls_params: None }
    } else {
        redis::ConnectionAddr::Tcp("127.0.0.1".into(), port)
    };
    let mut settings = redis::RedisConnectionInfo::default();
    if let Some(pw) = &cluster.password {
        settings = settings.set_password(pw);
    }
    let info = addr.into_connection_info().expect("connection info").set_redis_settings(settings);
    let client = if cluster.tls {
        redis::Client::build_with_tls(info, tls_certs(cluster)).expect("tls client")
    } else {
        redis::Client::open(info).expect("client")
    };
    client
        .get_multiplexed_async_connection_with_config(&async_config())
        .await
        .unwrap_or_else(|e| panic!("connect to node {port}: {e}"))
}

fn async_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)))
}

// ------------------------------------------------------------------ proxy

/// A running slotway process.
pub struct Proxy {
    /// "127.0.0.1:PORT" slotway listens on.
    pub addr: String,
    pub port: u16,
    pub child: Child,
    log_dir: tempfile::TempDir,
    log_path: PathBuf,
}

fn slotway_command(args: &[String], env: &[(&str, &str)], log: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slotway"));
    let f = File::create(log).expect("create proxy log");
    cmd.args(args)
        // The password only ever comes from the environment.
        .env_remove("SLOTWAY_UPSTREAM_PASSWORD")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(f.try_clone().expect("dup log fd"))
        .stderr(f);
    cmd
}

impl Proxy {
    /// `--cluster SEED` for every node of the cluster.
    pub fn seed_args(cluster: &Cluster) -> Vec<String> {
        cluster.seeds().into_iter().flat_map(|s| ["--cluster".to_string(), s]).collect()
    }

    /// `--upstream-tls --upstream-tls-ca CA` when the cluster uses TLS.
    pub fn tls_args(cluster: &Cluster) -> Vec<String> {
        if cluster.tls {
            vec!["--upstream-tls".into(), "--upstream-tls-ca".into(), cluster.ca_path().display().to_string()]
        } else {
            Vec::new()
        }
    }

    /// Seeds + TLS args: what `start` passes before `extra_args`.
    pub fn base_args(cluster: &Cluster) -> Vec<String> {
        let mut v = Self::seed_args(cluster);
        v.extend(Self::tls_args(cluster));
        v
    }

    /// The environment `start` gives slotway (the upstream password, if any).
    pub fn password_env(cluster: &Cluster) -> Vec<(&str, &str)> {
        match &cluster.password {
            Some(pw) => vec![("SLOTWAY_UPSTREAM_PASSWORD", pw.as_str())],
            None => Vec::new(),
        }
    }

    /// Starts slotway in front of `cluster`: `--listen 127.0.0.1:<free port>`,
    /// `--cluster` for every node, `--upstream-tls --upstream-tls-ca <ca>` when
    /// the cluster uses TLS, then `extra_args`; SLOTWAY_UPSTREAM_PASSWORD in the
    /// environment. Waits until it answers PING.
    pub fn start(cluster: &Cluster, extra_args: &[&str]) -> Proxy {
        let mut args = Self::base_args(cluster);
        args.extend(extra_args.iter().map(|s| s.to_string()));
        Self::start_raw(&args, &Self::password_env(cluster))
    }

    /// Starts slotway with exactly `--listen 127.0.0.1:<free port>` + `args` and
    /// exactly `env` (plus the inherited environment minus
    /// SLOTWAY_UPSTREAM_PASSWORD); waits (<= 30 s) until it answers PING with
    /// PONG, panicking with its log otherwise.
    pub fn start_raw(args: &[String], env: &[(&str, &str)]) -> Proxy {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log_dir = tempfile::Builder::new().prefix("slotway-proxy-").tempdir().expect("temp dir for proxy log");
        let log_path = log_dir.path().join("slotway.log");
        let mut full = vec!["--listen".to_string(), addr.clone()];
        full.extend(args.iter().cloned());
        let child = slotway_command(&full, env, &log_path).spawn().expect("spawn slotway");
        let mut proxy = Proxy { addr, port, child, log_dir, log_path };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last_err: String;
        loop {
            if let Ok(Some(st)) = proxy.child.try_wait() {
                panic!("slotway exited during startup ({st}); args {full:?}\n--- log ---\n{}", proxy.log());
            }
            match raw_ping(&proxy.addr, Duration::from_secs(2)) {
                // With slotway's own users configured, an unauthenticated PING gets NOAUTH: ready all the same.
                Ok(r) if r == "+PONG" || r.starts_with("-NOAUTH") => return proxy,
                Ok(r) => last_err = format!("PING answered {r:?}"),
                Err(e) => last_err = e.to_string(),
            }
            if Instant::now() >= deadline {
                panic!("slotway not ready after 30 s ({last_err}); args {full:?}\n--- log ---\n{}", proxy.log());
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Runs slotway expecting that it may exit (startup-error tests) with
    /// `--listen 127.0.0.1:<free port>`, `--cluster` for every node of
    /// `cluster`, then `args` (TLS flags are *not* implied: add
    /// `Proxy::tls_args(cluster)` or your own), and exactly `env` (no implied
    /// password: add `Proxy::password_env(cluster)` or your own). Waits up to
    /// 10 s: returns `Some(status)` if it exited, `None` if it was still
    /// running (it is killed then), plus its log (stderr + stdout).
    pub fn try_start(cluster: &Cluster, args: &[&str], env: &[(&str, &str)]) -> (Option<ExitStatus>, String) {
        Self::try_start_for(cluster, args, env, Duration::from_secs(10))
    }

    /// `try_start` with a custom wait.
    pub fn try_start_for(
        cluster: &Cluster,
        args: &[&str],
        env: &[(&str, &str)],
        wait: Duration,
    ) -> (Option<ExitStatus>, String) {
        let mut full = Self::seed_args(cluster);
        full.extend(args.iter().map(|s| s.to_string()));
        Self::run_raw(&full, env, wait)
    }

    /// Runs slotway with `--listen 127.0.0.1:<free port>` + `args` and exactly
    /// `env`; waits up to `wait` for it to exit (see `try_start`).
    pub fn run_raw(args: &[String], env: &[(&str, &str)], wait: Duration) -> (Option<ExitStatus>, String) {
        let log_dir = tempfile::Builder::new().prefix("slotway-proxy-").tempdir().expect("temp dir for proxy log");
        let log_path = log_dir.path().join("slotway.log");
        let mut full = vec!["--listen".to_string(), format!("127.0.0.1:{}", free_port())];
        full.extend(args.iter().cloned());
        let mut child = slotway_command(&full, env, &log_path).spawn().expect("spawn slotway");
        let deadline = Instant::now() + wait;
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break Some(st);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            sleep(Duration::from_millis(25));
        };
        let log = String::from_utf8_lossy(&fs::read(&log_path).unwrap_or_default()).into_owned();
        (status, log)
    }

    /// Everything slotway wrote so far (stderr + stdout).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Waits until the log contains `needle`; panics with the log after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(Instant::now() < deadline, "slotway log never contained {needle:?}:\n{}", self.log());
            sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal ("TERM", "INT", "HUP", "KILL", ...) to slotway.
    pub fn signal(&self, sig: &str) {
        kill_pid(self.child.id(), sig);
    }

    /// Waits up to `timeout` for slotway to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            sleep(Duration::from_millis(25));
        }
    }

    /// Plain (no TLS, no AUTH) redis connection to the proxy.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(format!("redis://{}/", self.addr)).expect("proxy client");
        client
            .get_multiplexed_async_connection_with_config(&async_config())
            .await
            .unwrap_or_else(|e| panic!("connect to slotway at {}: {e}\n--- log ---\n{}", self.addr, self.log()))
    }

    /// A plain std TCP connection to the proxy (for raw RESP tests).
    pub fn tcp(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).expect("connect to slotway");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// `redis-cli -h 127.0.0.1 -p <proxy port> ARGS` (no TLS, no AUTH); trimmed stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("timeout")
            .arg("60")
            .arg("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .env_remove("REDISCLI_AUTH")
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli against slotway {args:?} failed: {}\n--- log ---\n{}",
            output_text(&out),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- slotway log ({}) at drop (test panicked), last 80 lines ---\n{}",
                self.addr,
                tail(&self.log(), 80)
            );
        }
        let _ = &self.log_dir;
    }
}

// ------------------------------------------------------------------ client-visible errors

/// The errors a load test's clients saw: how many, when (for the outage window), and the first few (for the
/// failure message).
#[derive(Default)]
pub struct ErrorLog {
    count: AtomicU64,
    times: Mutex<Vec<Instant>>,
    first: Mutex<Vec<String>>,
}

impl ErrorLog {
    pub fn record(&self, what: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.times.lock().unwrap().push(Instant::now());
        let mut first = self.first.lock().unwrap();
        if first.len() < 10 {
            first.push(what);
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn times(&self) -> Vec<Instant> {
        self.times.lock().unwrap().clone()
    }

    pub fn first(&self) -> Vec<String> {
        self.first.lock().unwrap().clone()
    }
}

/// One HTTP/1.1 request on a fresh connection; returns (status code, headers lowercased, body).
pub fn http(addr: &str, method: &str, path: &str) -> (u16, HashMap<String, String>, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the HTTP response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}
