//! Cluster NAT mode against a real cluster (3 primaries + 3 replicas, TLS, AUTH) whose nodes announce hostnames
//! (`node-<port>.private.invalid`) that only slotway can resolve (its `[nat.resolve]` map): cluster clients can't
//! use the cluster directly, and through slotway (announced as 127.0.0.2, listening on 127.0.0.2) they work.
//!
//! Every topology reply and redirection a test receives is checked: it must not contain `127.0.0.1` (the nodes'
//! IP) or a `.private.invalid` hostname, and every node address in it must be `127.0.0.2:<a slotway port>`.

mod support;
mod support_raw;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};
use support::*;

const ANNOUNCE: &str = "127.0.0.2";
const PRIVATE_HOST: &str = ".private.invalid";
const NAT_PASSWORD: &str = "nat-secret";

fn hostname(port: u16) -> String {
    format!("node-{port}{PRIVATE_HOST}")
}

/// The test cluster, with every node announcing its hostname and preferring it as its endpoint; waits until every
/// node's CLUSTER SLOTS names every node by hostname.
fn start_cluster() -> Cluster {
    let cluster = Cluster::start(ClusterOpts::default());
    for &p in &cluster.ports {
        cluster.cli(p, &["CONFIG", "SET", "cluster-announce-hostname", &hostname(p)]);
        cluster.cli(p, &["CONFIG", "SET", "cluster-preferred-endpoint-type", "hostname"]);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let converged = cluster.ports.iter().all(|&p| {
            let slots = cluster.try_cli(p, &["CLUSTER", "SLOTS"]).unwrap_or_default();
            cluster.ports.iter().all(|&q| slots.contains(&hostname(q))) && !slots.lines().any(|l| l == "?")
        });
        if converged {
            return cluster;
        }
        assert!(Instant::now() < deadline, "hostnames did not propagate:\n{}", cluster.status());
        sleep(Duration::from_millis(200));
    }
}

/// `count` consecutive ports free on 127.0.0.2.
fn free_range(count: u16) -> (u16, u16) {
    for _ in 0..200 {
        let base = free_port();
        if base > 65000 {
            continue;
        }
        if (base..base + count).all(|p| TcpListener::bind((ANNOUNCE, p)).is_ok()) {
            return (base, base + count - 1);
        }
    }
    panic!("no free port range");
}

/// A slotway process in nat mode.
struct Nat {
    child: Child,
    _dir: tempfile::TempDir,
    log: PathBuf,
    /// Node port → slotway port.
    ports: BTreeMap<u16, u16>,
    tls: Option<PathBuf>,
    password: Option<&'static str>,
}

impl Nat {
    fn start(cluster: &Cluster, tls: bool, password: bool) -> Nat {
        Self::start_with(cluster, tls, password, "", &cluster.ports)
    }

    /// `extra` is prepended to the config file; `resolve` are the node ports whose hostnames slotway resolves.
    fn start_with(cluster: &Cluster, tls: bool, password: bool, extra: &str, resolve: &[u16]) -> Nat {
        let dir = tempfile::tempdir().unwrap();
        let resolve: String = resolve.iter().map(|p| format!("{:?} = \"127.0.0.1\"\n", hostname(*p))).collect();
        let config = dir.path().join("slotway.toml");
        fs::write(&config, format!("{extra}\n[nat]\nleave_grace_ms = 2000\n[nat.resolve]\n{resolve}")).unwrap();
        let (lo, hi) = free_range(12);
        let mut args: Vec<String> = vec![
            "--config".into(),
            config.display().to_string(),
            "--mode".into(),
            "nat".into(),
            "--nat-announce-host".into(),
            ANNOUNCE.into(),
            "--nat-bind".into(),
            ANNOUNCE.into(),
            "--nat-ports".into(),
            format!("{lo}-{hi}"),
            "--upstream-tls-server-name".into(),
            "localhost".into(),
            "--workers".into(),
            "2".into(),
        ];
        args.extend(Proxy::seed_args(cluster).into_iter().take(2));
        args.extend(Proxy::tls_args(cluster));
        let mut ca = None;
        if tls {
            let (ca_path, cert, key) = make_cert(dir.path());
            args.extend(["--listen-tls-cert".into(), cert.display().to_string()]);
            args.extend(["--listen-tls-key".into(), key.display().to_string()]);
            ca = Some(ca_path);
        }
        let log = dir.path().join("slotway.log");
        let f = fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slotway"));
        cmd.args(&args)
            .env("SLOTWAY_UPSTREAM_PASSWORD", cluster.password_str())
            .env("RUST_LOG", "info")
            .env_remove("SLOTWAY_NAT_PASSWORD")
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        if password {
            cmd.env("SLOTWAY_NAT_PASSWORD", NAT_PASSWORD);
        }
        let child = cmd.spawn().unwrap();
        let mut nat =
            Nat { child, _dir: dir, log, ports: BTreeMap::new(), tls: ca, password: password.then_some(NAT_PASSWORD) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while nat.ports.len() < cluster.ports.len() {
            if let Ok(Some(st)) = nat.child.try_wait() {
                panic!("slotway exited ({st}):\n{}", nat.log());
            }
            assert!(Instant::now() < deadline, "slotway did not open a listener per node:\n{}", nat.log());
            sleep(Duration::from_millis(50));
            nat.read_ports();
        }
        nat
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Parses `node <id> <host>:<port> → 127.0.0.2:<port>` lines.
    fn read_ports(&mut self) {
        for line in self.log().lines() {
            let Some(rest) = line.split(" → ").nth(1) else { continue };
            let before = line.split(" → ").next().unwrap();
            let node: u16 = before.rsplit(':').next().unwrap().parse().unwrap();
            let nat: u16 = rest.rsplit(':').next().unwrap().trim().parse().unwrap();
            self.ports.insert(node, nat);
        }
    }

    fn port_of(&self, node: u16) -> u16 {
        self.ports[&node]
    }

    fn is_nat_port(&self, p: u16) -> bool {
        self.ports.values().any(|&x| x == p)
    }

    /// redis-cli against the listener of `node` (`-c` when `follow`).
    fn cli(&self, node: u16, follow: bool, args: &[&str]) -> String {
        let mut c = Command::new("timeout");
        c.arg("60").arg("redis-cli");
        if let Some(ca) = &self.tls {
            c.arg("--tls").arg("--cacert").arg(ca);
        }
        if follow {
            c.arg("-c");
        }
        c.args(["-h", ANNOUNCE, "-p", &self.port_of(node).to_string()]);
        match self.password {
            Some(pw) => c.env("REDISCLI_AUTH", pw),
            None => c.env_remove("REDISCLI_AUTH"),
        };
        let out = c.args(args).stdin(Stdio::null()).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr)
    }

    /// A raw RESP connection to `node`'s listener (plain listeners only), authenticated if needed.
    fn raw(&self, node: u16) -> Raw {
        let s = TcpStream::connect((ANNOUNCE, self.port_of(node))).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Raw { s, buf: Vec::new() };
        if let Some(pw) = self.password {
            assert_eq!(raw.call(&["AUTH", pw]), "+OK\r\n");
        }
        raw
    }

    /// The redis crate's cluster client through slotway.
    async fn cluster_client(&self) -> redis::cluster_async::ClusterConnection {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        let seed = format!("{scheme}://{ANNOUNCE}:{}", self.ports.values().next().unwrap());
        let mut b = redis::cluster::ClusterClient::builder(vec![seed])
            .connection_timeout(Duration::from_secs(5))
            .response_timeout(Duration::from_secs(10))
            .retries(20);
        if let Some(pw) = self.password {
            b = b.password(pw);
        }
        if let Some(ca) = &self.tls {
            b = b.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(fs::read(ca).unwrap()) });
        }
        b.build().unwrap().get_async_connection().await.unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
    }

    /// Every node address in `text` (a reply as text) is an announced one, and no private address is in it.
    fn assert_public(&self, what: &str, text: &str) {
        assert!(!text.contains(PRIVATE_HOST), "{what}: private hostname in {text}");
        assert!(!text.contains("127.0.0.1"), "{what}: private IP in {text}");
        for (i, _) in text.match_indices("127.0.0.2:") {
            let port: String = text[i + 10..].chars().take_while(char::is_ascii_digit).collect();
            let port: u16 = port.parse().unwrap_or_else(|_| panic!("{what}: no port after the host in {text}"));
            assert!(self.is_nat_port(port), "{what}: {port} is not a slotway port: {text}");
        }
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- slotway log (last 60 lines) ---\n{}", lines[lines.len().saturating_sub(60)..].join("\n"));
        }
    }
}

/// A CA and a certificate for 127.0.0.2 signed by it: (ca, cert, key).
fn make_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "nat test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = CertificateParams::new(vec![ANNOUNCE.to_string(), "localhost".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let paths = (dir.join("nat-ca.pem"), dir.join("nat.pem"), dir.join("nat.key"));
    fs::write(&paths.0, ca.pem()).unwrap();
    fs::write(&paths.1, cert.pem()).unwrap();
    fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// A blocking RESP connection that returns each reply's raw bytes (as text).
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn send(&mut self, args: &[&str]) {
        self.s.write_all(&support_raw::c(args)).unwrap();
    }

    /// Reads one whole reply.
    fn read(&mut self) -> String {
        loop {
            if let Some(n) = reply_len(&self.buf) {
                let r: Vec<u8> = self.buf.drain(..n).collect();
                return String::from_utf8_lossy(&r).into_owned();
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).expect("read reply");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn call(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.read()
    }
}

/// Length of the first whole RESP2/RESP3 reply in `b`.
fn reply_len(b: &[u8]) -> Option<usize> {
    let line_end = |from: usize| b[from..].windows(2).position(|w| w == b"\r\n").map(|i| from + i);
    fn go(b: &[u8], at: usize, line_end: &dyn Fn(usize) -> Option<usize>) -> Option<usize> {
        let t = *b.get(at)?;
        let e = line_end(at)?;
        let head = std::str::from_utf8(&b[at + 1..e]).ok()?;
        match t {
            b'$' | b'=' | b'!' => {
                let n: i64 = head.parse().ok()?;
                if n < 0 {
                    return Some(e + 2);
                }
                let end = e + 2 + n as usize + 2;
                (b.len() >= end).then_some(end)
            }
            b'*' | b'~' | b'>' | b'%' => {
                let n: i64 = head.parse().ok()?;
                let n = if t == b'%' { n * 2 } else { n };
                let mut at = e + 2;
                for _ in 0..n.max(0) {
                    at = go(b, at, line_end)?;
                }
                Some(at)
            }
            _ => Some(e + 2),
        }
    }
    go(b, 0, &line_end)
}

/// The keys `redis-cli -c` sets: one per slot range of the cluster's primaries.
fn key_per_primary(cluster: &Cluster) -> Vec<(u16, String)> {
    cluster.keys_on_every_primary("natkey")
}

/// Checks every topology reply through every listener, RESP2 and RESP3.
fn check_topology_replies(nat: &Nat, cluster: &Cluster) {
    for &node in &cluster.ports {
        for proto in ["2", "3"] {
            let mut raw = nat.raw(node);
            let hello = raw.call(&["HELLO", proto]);
            assert!(hello.starts_with(if proto == "3" { "%" } else { "*" }), "HELLO {proto}: {hello}");
            for cmd in [
                &["CLUSTER", "SLOTS"][..],
                &["CLUSTER", "SHARDS"],
                &["CLUSTER", "NODES"],
                &["ROLE"],
                &["INFO", "replication"],
                &["INFO"],
            ] {
                let reply = raw.call(cmd);
                assert!(!reply.starts_with('-'), "{cmd:?} on {node}: {reply}");
                nat.assert_public(&format!("{cmd:?} RESP{proto} via {node}"), &reply);
                // Ports come right after the host in RESP arrays: check those too.
                if cmd[0] == "CLUSTER" && cmd[1] != "NODES" {
                    assert!(reply.contains(ANNOUNCE), "{cmd:?}: {reply}");
                }
            }
            // CLIENT LIST/INFO: `laddr` is the node's address (`addr` is slotway's own, on the private side).
            for cmd in [&["CLIENT", "LIST"][..], &["CLIENT", "INFO"]] {
                let reply = raw.call(cmd);
                assert!(reply.contains(&format!("laddr={ANNOUNCE}:{}", nat.port_of(node))), "{cmd:?}: {reply}");
                assert!(!reply.contains("laddr=127.0.0.1"), "{cmd:?}: {reply}");
            }
            let nodes = raw.call(&["CLUSTER", "NODES"]);
            let ids: Vec<String> = nodes.lines().filter_map(|l| l.split(' ').next()).map(String::from).collect();
            for id in ids.iter().filter(|id| id.len() == 40) {
                let r = raw.call(&["CLUSTER", "REPLICAS", id]);
                nat.assert_public("CLUSTER REPLICAS", &r);
            }
            // Ports in SLOTS are all slotway's.
            let slots = raw.call(&["CLUSTER", "SLOTS"]);
            let text = slots.replace("\r\n", "\n");
            let lines: Vec<&str> = text.lines().collect();
            for w in lines.windows(3) {
                if w[0].ends_with(ANNOUNCE) || w[1] == ANNOUNCE {
                    let port_line = if w[1] == ANNOUNCE { w[2] } else { w[1] };
                    if let Some(p) = port_line.strip_prefix(':') {
                        assert!(nat.is_nat_port(p.parse().unwrap()), "CLUSTER SLOTS port {p}: {slots}");
                    }
                }
            }
        }
    }
}

async fn run_python(nat: &Nat, script: &str) -> Option<String> {
    let have = Command::new("python3").args(["-c", "import redis"]).status().map(|s| s.success()).unwrap_or(false);
    if !have {
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "redis"])
            .stdin(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("SKIPPED the Python RedisCluster part: `pip install redis` failed (no registry?)");
            return None;
        }
    }
    let port = *nat.ports.values().next().unwrap();
    let out = Command::new("timeout")
        .arg("300")
        .arg("python3")
        .arg("-c")
        .arg(script)
        .env("NAT_HOST", ANNOUNCE)
        .env("NAT_PORT", port.to_string())
        .env("NAT_PASSWORD", nat.password.unwrap_or(""))
        .env("NAT_CA", nat.tls.as_ref().map(|p| p.display().to_string()).unwrap_or_default())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "python RedisCluster through slotway failed:\n{text}\n{}", nat.log());
    Some(text)
}

const PYTHON: &str = r#"
import os, redis
from redis.cluster import RedisCluster
kw = dict(host=os.environ["NAT_HOST"], port=int(os.environ["NAT_PORT"]))
if os.environ["NAT_PASSWORD"]: kw["password"] = os.environ["NAT_PASSWORD"]
if os.environ["NAT_CA"]: kw.update(ssl=True, ssl_ca_certs=os.environ["NAT_CA"])
rc = RedisCluster(**kw)
for i in range(10000):
    rc.set(f"py:{i}", i)
assert all(int(rc.get(f"py:{i}")) == i for i in range(0, 10000, 7))
p = rc.pipeline()
for i in range(1000):
    p.set(f"pyp:{i}", i)
    p.get(f"pyp:{i}")
res = p.execute()
assert res[1::2] == [str(i).encode() for i in range(1000)], res[:6]
names = sorted(n.name for n in rc.get_nodes())
assert all(n.startswith(os.environ["NAT_HOST"] + ":") for n in names), names
print("python ok", names)
"#;

/// Direct cluster clients fail (they are sent to hostnames only slotway can resolve); through slotway,
/// redis-cli -c, the redis crate's cluster client and Python's RedisCluster all work, and every topology reply
/// carries only announced addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_clients_work_through_nat_and_see_only_announced_addresses() {
    let cluster = start_cluster();
    let keys = key_per_primary(&cluster);

    // Directly, a cluster client is redirected to a host it cannot resolve.
    let (other, key) = keys.iter().find(|(p, _)| *p != cluster.ports[0]).unwrap();
    let direct = cluster.cli_command(cluster.ports[0]).args(["-c", "SET", key, "v"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&direct.stdout), String::from_utf8_lossy(&direct.stderr));
    assert!(text.contains(&hostname(*other)) || !text.contains("OK"), "direct redis-cli -c: {text}");
    assert!(!text.trim().ends_with("OK"), "direct redis-cli -c should not reach {other}: {text}");

    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let nat = Nat::start_with(&cluster, false, false, &format!("metrics_listen = {metrics_addr:?}"), &cluster.ports);
    // The monitoring endpoint serves nat mode too.
    let (status, _, body) = http(&metrics_addr, "GET", "/health");
    assert_eq!((status, body.as_str()), (200, "ok\n"), "health in nat mode");
    let (status, _, page) = http(&metrics_addr, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(page.contains("\nslotway_cluster_shards 3\n"), "{page}");
    assert!(page.contains("# TYPE slotway_nat_rewrites_total counter\n"), "{page}");

    // redis-cli -c on every slot range, starting from every listener.
    for &node in &cluster.ports {
        for (i, (_, key)) in keys.iter().enumerate() {
            let v = format!("v{node}-{i}");
            assert_eq!(nat.cli(node, true, &["SET", key, &v]), "OK", "SET {key} via {node}");
            assert_eq!(nat.cli(node, true, &["GET", key]), v);
        }
    }
    // Without -c the redirect is shown: rewritten.
    let (owner, key) = &keys[0];
    let not_owner = *cluster.primaries().iter().find(|p| *p != owner).unwrap();
    let moved = nat.cli(not_owner, false, &["GET", key]);
    assert!(moved.starts_with("MOVED ") || moved.starts_with("(error) MOVED"), "{moved}");
    assert!(moved.ends_with(&format!("{ANNOUNCE}:{}", nat.port_of(*owner))), "{moved}");
    nat.assert_public("MOVED", &moved);

    check_topology_replies(&nat, &cluster);

    // The redis crate's cluster client: 10,000 keys, then pipelines.
    let mut con = nat.cluster_client().await;
    for i in 0..10_000 {
        let _: () = redis::cmd("SET").arg(format!("rs:{i}")).arg(i).query_async(&mut con).await.unwrap();
    }
    for i in (0..10_000).step_by(3) {
        let v: i64 = redis::cmd("GET").arg(format!("rs:{i}")).query_async(&mut con).await.unwrap();
        assert_eq!(v, i);
    }
    for round in 0..20 {
        let mut pipe = redis::pipe();
        let tag = format!("{{pipe{round}}}");
        for i in 0..50 {
            pipe.set(format!("{tag}:{i}"), i).ignore();
        }
        for i in 0..50 {
            pipe.get(format!("{tag}:{i}"));
        }
        let got: Vec<i64> = pipe.query_async(&mut con).await.unwrap();
        assert_eq!(got, (0..50).collect::<Vec<i64>>());
    }
    // And its view of the cluster is the announced one.
    let slots: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut con).await.unwrap();
    nat.assert_public("CLUSTER SLOTS via the cluster client", &format!("{slots:?}"));

    if let Some(out) = run_python(&nat, PYTHON).await {
        assert!(out.contains("python ok"), "{out}");
    }

    // Pub/sub, MULTI/EXEC and a blocking command behave as on a direct connection.
    let primary = cluster.primaries()[0];
    let (_, key) = keys.iter().find(|(p, _)| *p == primary).unwrap().clone();
    let mut sub = nat.raw(primary);
    assert_eq!(sub.call(&["SUBSCRIBE", "news", "sport"]), "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    assert_eq!(sub.read(), "*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n");
    let mut publisher = nat.raw(primary);
    assert_eq!(publisher.call(&["PUBLISH", "news", "hello"]), ":1\r\n");
    assert_eq!(sub.read(), "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
    assert_eq!(sub.call(&["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    sub.send(&["UNSUBSCRIBE"]);
    let a = sub.read();
    let b = sub.read();
    assert!(a.contains("unsubscribe") && b.contains("unsubscribe") && b.ends_with(":0\r\n"), "{a} {b}");
    // Out of subscribed mode, a topology reply after all that is still matched to its request and rewritten.
    let nodes = sub.call(&["CLUSTER", "NODES"]);
    nat.assert_public("CLUSTER NODES after pub/sub", &nodes);
    assert!(nodes.contains(ANNOUNCE));
    // RESP3 pub/sub: pushes.
    let mut sub3 = nat.raw(primary);
    assert!(sub3.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(sub3.call(&["SUBSCRIBE", "news"]), ">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    assert_eq!(publisher.call(&["PUBLISH", "news", "again"]), ":1\r\n");
    assert_eq!(sub3.read(), ">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nagain\r\n");
    let slots3 = sub3.call(&["CLUSTER", "SLOTS"]);
    nat.assert_public("CLUSTER SLOTS while subscribed (RESP3)", &slots3);
    assert!(slots3.contains(ANNOUNCE), "{slots3}");

    let mut tx = nat.raw(primary);
    assert_eq!(tx.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(tx.call(&["SET", &key, "in-tx"]), "+QUEUED\r\n");
    assert_eq!(tx.call(&["CLUSTER", "NODES"]), "+QUEUED\r\n");
    assert_eq!(tx.call(&["GET", &key]), "+QUEUED\r\n");
    let exec = tx.call(&["EXEC"]);
    assert!(exec.starts_with("*3\r\n+OK\r\n") && exec.ends_with("$5\r\nin-tx\r\n"), "{exec}");
    nat.assert_public("EXEC with CLUSTER NODES", &exec);
    assert!(exec.contains(ANNOUNCE));

    let list = format!("{{{key}}}:list");
    let mut blocked = nat.raw(primary);
    blocked.send(&["BLPOP", &list, "5"]);
    sleep(Duration::from_millis(200));
    assert_eq!(nat.raw(primary).call(&["RPUSH", &list, "x"]), ":1\r\n");
    assert_eq!(blocked.read(), format!("*2\r\n${}\r\n{list}\r\n$1\r\nx\r\n", list.len()));

    // QUIT is answered, then the connection closes.
    let mut quit = nat.raw(primary);
    quit.send(&["PING"]);
    quit.send(&["QUIT"]);
    assert_eq!(quit.read(), "+PONG\r\n");
    assert_eq!(quit.read(), "+OK\r\n");
    let mut rest = [0u8; 16];
    assert_eq!(quit.s.read(&mut rest).unwrap_or(0), 0, "connection still open after QUIT");
}

/// TLS listeners and slotway's own password: NOAUTH before AUTH, wrong passwords refused, cluster clients with
/// TLS and the password work, and HELLO 3 AUTH is handled by slotway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listeners_and_slotway_password() {
    let cluster = start_cluster();

    // Startup fails clearly when the nodes can't all get a listener (a range of one port for six nodes).
    let (lo, _) = free_range(1);
    let out = Command::new("timeout")
        .arg("30")
        .arg(env!("CARGO_BIN_EXE_slotway"))
        .args(["--mode", "nat", "--nat-announce-host", ANNOUNCE, "--nat-bind", ANNOUNCE])
        .args(["--nat-ports", &lo.to_string(), "--upstream-tls-server-name", "localhost"])
        .args(Proxy::seed_args(&cluster).into_iter().take(2))
        .args(Proxy::tls_args(&cluster))
        .env("SLOTWAY_UPSTREAM_PASSWORD", cluster.password_str())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("cannot open the node listeners") && text.contains("no free port left"), "{text}");

    let nat = Nat::start(&cluster, true, true);
    let node = cluster.primaries()[0];
    let ca = nat.tls.clone().unwrap();
    let cli = |args: &[&str], pw: Option<&str>| {
        let mut c = Command::new("timeout");
        c.arg("30").arg("redis-cli").arg("--tls").arg("--cacert").arg(&ca);
        c.args(["-h", ANNOUNCE, "-p", &nat.port_of(node).to_string()]);
        match pw {
            Some(pw) => c.env("REDISCLI_AUTH", pw),
            None => c.env_remove("REDISCLI_AUTH"),
        };
        let out = c.args(args).stdin(Stdio::null()).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&out.stderr).trim())
    };
    assert!(cli(&["GET", "x"], None).contains("NOAUTH"), "{}", cli(&["GET", "x"], None));
    assert!(cli(&["GET", "x"], Some("wrong")).contains("WRONGPASS"));
    assert!(cli(&["HELLO", "3", "AUTH", "default", "wrong"], None).contains("WRONGPASS"));
    let hello = cli(&["HELLO", "3", "AUTH", "default", NAT_PASSWORD], None);
    assert!(hello.contains("cluster") && !hello.contains("ERR"), "{hello}");
    assert_eq!(cli(&["PING"], Some(NAT_PASSWORD)), "PONG");

    // Plain TCP to a TLS listener gets nowhere.
    let plain = raw_ping(&format!("{ANNOUNCE}:{}", nat.port_of(node)), Duration::from_secs(3));
    assert!(!matches!(plain.as_deref(), Ok("+PONG")), "{plain:?}");

    // A TLS client sees tls-port in CLUSTER SHARDS.
    let shards = cli(&["CLUSTER", "SHARDS"], Some(NAT_PASSWORD));
    assert!(shards.contains("tls-port") && !shards.lines().any(|l| l == "port"), "{shards}");
    nat.assert_public("CLUSTER SHARDS over TLS", &shards);

    for (i, (_, key)) in key_per_primary(&cluster).iter().enumerate() {
        assert_eq!(nat.cli(node, true, &["SET", key, &i.to_string()]), "OK");
        assert_eq!(nat.cli(node, true, &["GET", key]), i.to_string());
    }
    let mut con = nat.cluster_client().await;
    for i in 0..2000 {
        let _: () = redis::cmd("SET").arg(format!("tls:{i}")).arg(i).query_async(&mut con).await.unwrap();
    }
    for i in (0..2000).step_by(7) {
        let v: i64 = redis::cmd("GET").arg(format!("tls:{i}")).query_async(&mut con).await.unwrap();
        assert_eq!(v, i);
    }
    if let Some(out) = run_python(&nat, PYTHON).await {
        assert!(out.contains("python ok"), "{out}");
    }

    // SIGTERM with clients connected: idle sessions close, slotway exits cleanly.
    let mut nat = nat;
    Command::new("kill").args(["-TERM", &nat.child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = nat.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "slotway did not exit after SIGTERM:\n{}", nat.log());
        sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}\n{}", nat.log());
    drop(con);
}

fn node_id(cluster: &Cluster, port: u16) -> String {
    cluster.cluster_nodes(port).into_iter().find(|n| n.is_myself()).expect("myself").id
}

/// During a resharding clients get rewritten ASK and MOVED and keep working; after a manual failover they refresh
/// and keep writing, and are only ever told announced addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_and_failover_through_nat() {
    let cluster = start_cluster();
    let nat = Nat::start(&cluster, false, false);
    let mut con = nat.cluster_client().await;

    // Keys in one slot of the first primary.
    let primaries = cluster.primaries();
    let (src, dst) = (primaries[0], primaries[1]);
    let base = cluster.key_on_node(src, "mig");
    let slot = key_slot(base.as_bytes());
    let keys: Vec<String> = (0..20).map(|i| format!("{{{base}}}:{i}")).collect();
    for k in &keys {
        let _: () = redis::cmd("SET").arg(k).arg(k).query_async(&mut con).await.unwrap();
    }
    let (src_id, dst_id) = (node_id(&cluster, src), node_id(&cluster, dst));
    let s = slot.to_string();
    assert_eq!(cluster.cli(dst, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &src_id]), "OK");
    assert_eq!(cluster.cli(src, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &dst_id]), "OK");
    let moved_key = &keys[0];
    let dst_port = dst.to_string();
    let pw = cluster.password_str().to_string();
    let r = cluster.cli(src, &["MIGRATE", "127.0.0.1", &dst_port, "", "0", "5000", "AUTH", &pw, "KEYS", moved_key]);
    assert_eq!(r, "OK");

    // ASK, rewritten; the target accepts ASKING + the command.
    let mut raw = nat.raw(src);
    let ask = raw.call(&["GET", moved_key]);
    assert_eq!(ask, format!("-ASK {slot} {ANNOUNCE}:{}\r\n", nat.port_of(dst)));
    let mut target = nat.raw(dst);
    assert_eq!(target.call(&["ASKING"]), "+OK\r\n");
    assert_eq!(target.call(&["GET", moved_key]), format!("${}\r\n{moved_key}\r\n", moved_key.len()));
    // Clients follow it.
    assert_eq!(nat.cli(src, true, &["GET", moved_key]), *moved_key);
    for k in &keys {
        let v: String = redis::cmd("GET").arg(k).query_async(&mut con).await.unwrap();
        assert_eq!(&v, k);
    }

    // Finish the migration: MOVED, rewritten.
    for k in &keys[1..] {
        cluster.cli(src, &["MIGRATE", "127.0.0.1", &dst_port, "", "0", "5000", "AUTH", &pw, "KEYS", k]);
    }
    for p in [dst, src] {
        assert_eq!(cluster.cli(p, &["CLUSTER", "SETSLOT", &s, "NODE", &dst_id]), "OK");
    }
    for &p in primaries.iter().filter(|p| **p != src && **p != dst) {
        cluster.cli(p, &["CLUSTER", "SETSLOT", &s, "NODE", &dst_id]);
    }
    let moved = raw.call(&["GET", moved_key]);
    assert_eq!(moved, format!("-MOVED {slot} {ANNOUNCE}:{}\r\n", nat.port_of(dst)));
    for k in &keys {
        let v: String = redis::cmd("GET").arg(k).query_async(&mut con).await.unwrap();
        assert_eq!(&v, k);
        let _: () = redis::cmd("SET").arg(k).arg("after").query_async(&mut con).await.unwrap();
    }
    let slots = raw.call(&["CLUSTER", "SLOTS"]);
    nat.assert_public("CLUSTER SLOTS after resharding", &slots);

    // Manual failover of the first primary.
    let replica = cluster.replicas_of(src)[0];
    let writer = {
        let mut con = nat.cluster_client().await;
        tokio::spawn(async move {
            let mut errors = Vec::new();
            for i in 0..3000u32 {
                let r: redis::RedisResult<()> =
                    redis::cmd("SET").arg(format!("fo:{i}")).arg(i).query_async(&mut con).await;
                if let Err(e) = r {
                    errors.push(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            errors
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| cluster.failover(replica, None));
    let errors = writer.await.unwrap();
    assert!(errors.is_empty(), "writes failed during the failover: {errors:?}");
    // The new primary is announced with its own listener's port.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let slots = nat.raw(replica).call(&["CLUSTER", "SLOTS"]);
        nat.assert_public("CLUSTER SLOTS after failover", &slots);
        if slots.contains(&format!("{ANNOUNCE}\r\n:{}\r\n", nat.port_of(replica))) {
            let nodes = nat.raw(src).call(&["CLUSTER", "NODES"]);
            nat.assert_public("CLUSTER NODES after failover", &nodes);
            let role = nat.raw(src).call(&["ROLE"]);
            nat.assert_public("ROLE of the old primary", &role);
            assert!(role.contains("slave") && role.contains(&nat.port_of(replica).to_string()), "{role}");
            break;
        }
        assert!(Instant::now() < deadline, "CLUSTER SLOTS does not show the new primary: {slots}");
        sleep(Duration::from_millis(200));
    }
    for i in (0..3000).step_by(11) {
        let v: u32 = redis::cmd("GET").arg(format!("fo:{i}")).query_async(&mut con).await.unwrap();
        assert_eq!(v, i);
    }
}

/// A node that joins gets a listener (a reply naming it before slotway's refresh waits for one), and a node that
/// leaves has its listener closed after the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_join_get_a_listener_and_nodes_that_leave_lose_it() {
    let mut cluster = start_cluster();
    let seed_resolve = cluster.ports.len();
    let new = free_cluster_port();
    // slotway must be able to resolve the new node too: its hostname is in the map from the start.
    let mut resolve = cluster.ports.clone();
    resolve.push(new);
    let mut nat = Nat::start_with(&cluster, false, false, "[cluster]\nrefresh_interval_ms = 3000\n", &resolve);
    assert_eq!(nat.ports.len(), seed_resolve);

    // Start the node from a copy of another node's config, announcing its hostname.
    let old = cluster.ports[0];
    let conf = fs::read_to_string(cluster.node_dir(old).join("redis.conf")).unwrap();
    let conf = conf
        .replace(&format!("nodes/{old}"), &format!("nodes/{new}"))
        .replace(&format!("tls-port {old}"), &format!("tls-port {new}"))
        + &format!("cluster-announce-hostname {}\ncluster-preferred-endpoint-type hostname\n", hostname(new));
    fs::create_dir_all(cluster.node_dir(new)).unwrap();
    fs::write(cluster.node_dir(new).join("redis.conf"), conf).unwrap();
    let st = Command::new("redis-server").arg(cluster.node_dir(new).join("redis.conf")).status().unwrap();
    assert!(st.success());
    cluster.ports.push(new); // so that Drop stops it
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.try_cli(new, &["PING"]).map(|r| r != "PONG").unwrap_or(true) {
        assert!(Instant::now() < deadline, "new node does not start");
        sleep(Duration::from_millis(100));
    }
    let new_id = node_id(&cluster, new);
    assert_eq!(cluster.cli(old, &["CLUSTER", "MEET", "127.0.0.1", &new.to_string()]), "OK");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.ports[..seed_resolve].iter().all(|&p| {
        cluster.try_cli(p, &["CLUSTER", "SLOTS"]).is_ok()
            && cluster.cli(p, &["CLUSTER", "NODES"]).contains(&hostname(new))
    }) {
        assert!(Instant::now() < deadline, "the new node did not join:\n{}", cluster.status());
        sleep(Duration::from_millis(100));
    }
    // Asked right away, slotway names the new node by its new listener (or waits for the refresh that adds it).
    let nodes = nat.raw(old).call(&["CLUSTER", "NODES"]);
    nat.read_ports();
    nat.assert_public("CLUSTER NODES with a new node", &nodes);
    let line = nodes.lines().find(|l| l.contains(&new_id)).unwrap_or_else(|| panic!("new node missing: {nodes}"));
    let listener = nat.port_of(new);
    assert!(line.contains(&format!("{ANNOUNCE}:{listener}@")), "{line}");
    assert_eq!(nat.raw(new).call(&["PING"]), "+PONG\r\n");

    // It leaves: shut down and forgotten.
    let _ = cluster.try_cli(new, &["SHUTDOWN", "NOSAVE"]);
    for &p in &cluster.ports[..seed_resolve] {
        let _ = cluster.try_cli(p, &["CLUSTER", "FORGET", &new_id]);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((ANNOUNCE, listener)).is_ok() {
        assert!(Instant::now() < deadline, "the listener of the node that left is still open:\n{}", nat.log());
        sleep(Duration::from_millis(200));
    }
    assert!(nat.log().contains("listener closed"), "{}", nat.log());
}
