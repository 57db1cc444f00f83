//! Sharded pools of standalone groups (via `scripts/dev-pool.sh`: N shards of a primary and R replicas, optional
//! sentinels watching every shard, AUTH, optional TLS), `nutcracker` processes in front of them, and slotway as a
//! pool.
//!
//! ```ignore
//! let pool = Pool::start(PoolOpts { shards: 4, ..PoolOpts::default() });
//! let proxy = Proxy::start_pool(&pool, &pool.toml(&PoolToml::default()), &[]);
//! let nc = Nutcracker::start(&pool.nutcracker_yml(...));
//! ```
use super::{
    free_port, kill_pid, output_text, pid_alive, redis_cli_command, run_redis_cli, spawn_watchdog_with, tail, Proxy,
    TEST_PASSWORD,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub use super::sentinel::TEST_SENTINEL_PASSWORD;

/// Path of `scripts/dev-pool.sh` in this repository.
pub fn dev_pool_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/dev-pool.sh")
}

/// Shape of a test pool.
#[derive(Clone, Debug)]
pub struct PoolOpts {
    pub shards: usize,
    /// Replicas per shard.
    pub replicas: usize,
    /// Three sentinels watching every shard (master names shard1..shardN); needs replicas.
    pub sentinels: bool,
    pub tls: bool,
    pub password: Option<String>,
    pub sentinel_password: Option<String>,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
}

impl Default for PoolOpts {
    fn default() -> Self {
        PoolOpts {
            shards: 4,
            replicas: 0,
            sentinels: false,
            tls: false,
            password: Some(TEST_PASSWORD.to_string()),
            sentinel_password: Some(TEST_SENTINEL_PASSWORD.to_string()),
            down_after_ms: 1000,
            failover_timeout_ms: 5000,
        }
    }
}

/// A running pool in a temp dir.
pub struct Pool {
    pub dir: tempfile::TempDir,
    /// Every data node; shard `i`'s are `ports[i*(replicas+1)..]`, its initial primary first.
    pub ports: Vec<u16>,
    pub sentinel_ports: Vec<u16>,
    pub opts: PoolOpts,
    watchdog: Option<Child>,
}

impl Pool {
    pub fn start(opts: PoolOpts) -> Pool {
        let dir = tempfile::Builder::new().prefix("slotway-pool-").tempdir().expect("temp dir for the pool");
        let watchdog = spawn_watchdog_with(dir.path(), &dev_pool_script());
        let n = opts.shards * (opts.replicas + 1);
        let mut last = String::new();
        for attempt in 1..=3 {
            let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
            let sentinel_ports: Vec<u16> =
                if opts.sentinels { (0..3).map(|_| free_port()).collect() } else { Vec::new() };
            let list = |v: &[u16]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
            let mut cmd = Command::new("bash");
            cmd.arg(dev_pool_script())
                .arg("start")
                .arg("--dir")
                .arg(dir.path())
                .args(["--shards", &opts.shards.to_string(), "--replicas", &opts.replicas.to_string()])
                .args(["--ports", &list(&ports)])
                .args(["--down-after", &opts.down_after_ms.to_string()])
                .args(["--failover-timeout", &opts.failover_timeout_ms.to_string()])
                .env("DEV_POOL_PASSWORD", opts.password.clone().unwrap_or_default())
                .env("DEV_POOL_SENTINEL_PASSWORD", opts.sentinel_password.clone().unwrap_or_default())
                .env_remove("DEV_POOL_DIR")
                .env_remove("REDISCLI_AUTH")
                .stdin(Stdio::null());
            if opts.sentinels {
                cmd.args(["--sentinel-ports", &list(&sentinel_ports)]);
            }
            if opts.tls {
                cmd.arg("--tls");
            }
            let out = cmd.output().expect("run scripts/dev-pool.sh");
            if out.status.success() {
                return Pool { dir, ports, sentinel_ports, opts, watchdog };
            }
            last = output_text(&out);
            let _ = Command::new("bash").arg(dev_pool_script()).arg("stop").arg("--dir").arg(dir.path()).output();
            if !(last.contains("Address already in use") || last.contains("does not answer")) || attempt == 3 {
                break;
            }
        }
        if let Some(mut w) = watchdog {
            let _ = w.kill();
            let _ = w.wait();
        }
        panic!("scripts/dev-pool.sh start failed:\n{last}");
    }

    /// The ports of shard `i` (0-based), its initial primary first.
    pub fn shard(&self, i: usize) -> &[u16] {
        let n = self.opts.replicas + 1;
        &self.ports[i * n..(i + 1) * n]
    }

    /// Each shard's initial primary.
    pub fn primaries(&self) -> Vec<u16> {
        (0..self.opts.shards).map(|i| self.shard(i)[0]).collect()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("tls").join("ca.crt")
    }

    pub fn node_dir(&self, port: u16) -> PathBuf {
        self.dir.path().join("nodes").join(port.to_string())
    }

    fn cli_with(&self, password: Option<&str>, port: u16) -> Command {
        redis_cli_command(30, self.opts.tls.then(|| self.ca_path()).as_deref(), password, port)
    }

    /// redis-cli against a data node; error replies come back as Ok text.
    pub fn try_cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        run_redis_cli(self.cli_with(self.opts.password.as_deref(), port), port, args)
    }

    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        self.try_cli(port, args).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn sentinel_cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        run_redis_cli(self.cli_with(self.opts.sentinel_password.as_deref(), port), port, args)
    }

    /// The node's ROLE, first line, or None when it doesn't answer.
    pub fn role(&self, port: u16) -> Option<String> {
        self.try_cli(port, &["ROLE"]).ok().and_then(|r| r.lines().next().map(str::to_string))
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

    /// Starts a killed node again and waits until it answers.
    pub fn restart_node(&self, port: u16) {
        assert!(self.pid(port).is_none(), "node {port} is still running");
        let conf = self.node_dir(port).join("redis.conf");
        let st = Command::new("redis-server").arg(&conf).stdin(Stdio::null()).stdout(Stdio::null()).status();
        assert!(st.map(|s| s.success()).unwrap_or(false), "redis-server {conf:?} failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.try_cli(port, &["PING"]).map(|s| s != "PONG").unwrap_or(true) {
            assert!(Instant::now() < deadline, "node {port} does not answer");
            sleep(Duration::from_millis(20));
        }
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

    /// The TOML lines slotway needs for this pool besides `[sharding]` and `[[shards]]`: TLS to the nodes and the
    /// sentinels' addresses.
    pub fn toml_preamble(&self) -> String {
        let mut t = String::new();
        if self.opts.tls {
            t.push_str(&format!("[upstream.tls]\nenabled = true\nca = \"{}\"\n\n", self.ca_path().display()));
        }
        if self.opts.sentinels {
            let list: Vec<String> = self.sentinel_ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
            t.push_str(&format!("[sentinel]\naddresses = [{}]\n", list.join(", ")));
            if self.opts.tls {
                t.push_str(&format!("[sentinel.tls]\nenabled = true\nca = \"{}\"\n", self.ca_path().display()));
            }
            t.push('\n');
        }
        t
    }

    /// `[sharding]` (ketama, fnv1a_64, `{}`) and one `[[shards]]` per shard named shard1..N: every node of the
    /// shard as a static group, or its Sentinel master name.
    pub fn default_toml(&self) -> String {
        let mut t = self.toml_preamble();
        t.push_str("[sharding]\ndistribution = \"ketama\"\nhash = \"fnv1a_64\"\nhash_tag = \"{}\"\n");
        for i in 0..self.opts.shards {
            t.push_str(&format!("\n[[shards]]\nname = \"shard{}\"\n", i + 1));
            if self.opts.sentinels {
                t.push_str(&format!("sentinel_master = \"shard{}\"\n", i + 1));
            } else {
                let servers: Vec<String> = self.shard(i).iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
                t.push_str(&format!("servers = [{}]\n", servers.join(", ")));
            }
        }
        t
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let status = Command::new("bash")
                .arg(dev_pool_script())
                .arg("status")
                .arg("--dir")
                .arg(self.dir.path())
                .output()
                .map(|o| output_text(&o))
                .unwrap_or_default();
            eprintln!("--- pool at drop (test panicked) ---\n{status}");
        }
        let _ = Command::new("bash").arg(dev_pool_script()).arg("stop").arg("--dir").arg(self.dir.path()).output();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// The `nutcracker` binary: on PATH, or where Debian's package puts it (/usr/sbin may not be on a user's PATH).
pub fn nutcracker_bin() -> PathBuf {
    let sbin = Path::new("/usr/sbin/nutcracker");
    if sbin.exists() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("nutcracker")
    }
}

/// A running `nutcracker` (twemproxy) process, in the foreground as our child.
pub struct Nutcracker {
    pub addr: String,
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nutcracker {
    /// Starts nutcracker with one pool: `body` is the pool's YAML settings (indented by two spaces, without
    /// `listen:`), which is added on a free port. Waits until the port accepts connections.
    pub fn start(body: &str) -> Nutcracker {
        let dir = tempfile::Builder::new().prefix("slotway-nutcracker-").tempdir().expect("temp dir");
        let port = free_port();
        let yml = format!("pool:\n  listen: 127.0.0.1:{port}\n{body}");
        let conf = dir.path().join("nutcracker.yml");
        fs::write(&conf, &yml).unwrap();
        let log = dir.path().join("nutcracker.log");
        let check = Command::new(nutcracker_bin()).arg("-t").arg("-c").arg(&conf).output().expect("run nutcracker -t");
        assert!(check.status.success(), "nutcracker -t refused the configuration:\n{yml}\n{}", output_text(&check));
        let child = Command::new(nutcracker_bin())
            .arg("-c")
            .arg(&conf)
            .arg("-o")
            .arg(&log)
            .arg("-p")
            .arg(dir.path().join("nutcracker.pid"))
            // Its stats port defaults to 22222: one of ours, so tests can run side by side.
            .arg("-s")
            .arg(free_port().to_string())
            .arg("-a")
            .arg("127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nutcracker (apt-get install nutcracker)");
        let mut nc = Nutcracker { addr: format!("127.0.0.1:{port}"), port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&nc.addr).is_err() {
            if let Ok(Some(st)) = nc.child.try_wait() {
                panic!("nutcracker exited ({st}):\n{}", tail(&nc.log(), 30));
            }
            assert!(Instant::now() < deadline, "nutcracker does not listen:\n{}", tail(&nc.log(), 30));
            sleep(Duration::from_millis(20));
        }
        nc
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("nutcracker.log")).unwrap_or_default()
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// slotway in front of `pool` with the configuration `toml` (written to a file in the pool's dir), plus
    /// `extra` args; the passwords come from the environment.
    pub fn start_pool(pool: &Pool, toml: &str, extra: &[&str]) -> Proxy {
        let path = pool.dir.path().join(format!("slotway-{}.toml", free_port()));
        fs::write(&path, toml).unwrap();
        let mut args = vec!["--config".to_string(), path.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Proxy::start_raw(&args, &pool.env())
    }
}
