//! What slotway tells about the requests it serves, read by real tools: latency histograms and labelled counters
//! on `/metrics`, INFO's Redis-format sections, SLOWLOG and LATENCY, `SLOTWAY TRACE`; a real Prometheus scraping
//! slotway under load and answering every query of the Grafana dashboard, promtool on the alert rules, and
//! Debian's prometheus-redis-exporter pointed at slotway. Real TLS+AUTH clusters behind slotway.
//!
//! Prometheus, promtool and prometheus-redis-exporter come from Debian's `prometheus` and
//! `prometheus-redis-exporter` packages. Without them the tests that need them are skipped, unless
//! `SLOTWAY_REQUIRE_PROMETHEUS=1` (set by `.ci/run`, which installs both): then they fail.
mod support;

use redis::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

// ------------------------------------------------------------------------------------------------ helpers

/// The samples of a Prometheus text page (name with labels → value).
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
            (name.to_string(), value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")))
        })
        .collect()
}

/// The samples of one metric (`name{...}`), by their label text.
fn series<'a>(all: &'a HashMap<String, f64>, name: &str) -> Vec<(&'a str, f64)> {
    let prefix = format!("{name}{{");
    let mut v: Vec<(&str, f64)> = all
        .iter()
        .filter_map(|(k, &v)| k.strip_prefix(prefix.as_str()).map(|l| (l.trim_end_matches('}'), v)))
        .collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// `key:value` lines of INFO text.
fn info_map(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `a=1,b=2` → map.
fn fields(value: &str) -> HashMap<String, String> {
    value.split(',').filter_map(|f| f.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn info(con: &mut redis::aio::MultiplexedConnection, sections: &[&str]) -> String {
    let mut cmd = redis::cmd("INFO");
    for s in sections {
        cmd.arg(*s);
    }
    cmd.query_async(con).await.unwrap()
}

/// Polls INFO `section` until `key` has `want`.
async fn wait_info(con: &mut redis::aio::MultiplexedConnection, section: &str, key: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = info(con, &[section]).await;
        if info_map(&text).get(key).map(String::as_str) == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "INFO {section}: {key} never became {want}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        other => panic!("not an array: {other:?}"),
    }
}

/// Whether `tool` can run; false (skip) when it is missing, a failure when `SLOTWAY_REQUIRE_PROMETHEUS=1`.
fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(
            std::env::var("SLOTWAY_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "SLOTWAY_REQUIRE_PROMETHEUS=1 but {tool} is missing (.ci/run installs Debian's prometheus and \
             prometheus-redis-exporter packages)"
        );
        eprintln!("skipped: {tool} is not installed (apt-get install prometheus prometheus-redis-exporter)");
    }
    found
}

/// A child process killed (by its pid) when the test ends.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(cmd: &mut Command, log: PathBuf) -> Daemon {
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd.stdin(Stdio::null()).stdout(f.try_clone().unwrap()).stderr(f).spawn().expect("spawn");
        Daemon { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.0 GET (so Go servers answer without chunked encoding): (status, body).
fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Waits until `GET path` answers 200.
fn wait_http(addr: &str, path: &str, what: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(get(addr, path), Ok((200, _))) {
        assert!(Instant::now() < deadline, "{addr}{path} never answered 200; log:\n{}", what.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A Lua script that keeps its node busy for `ms` milliseconds (padded past 128 bytes with a comment, so the slow
/// log has to cut it).
fn spin_script(ms: u64) -> String {
    format!(
        "-- {}\nlocal t = redis.call('TIME') local start = t[1] * 1000000 + t[2] \
         while true do local n = redis.call('TIME') if n[1] * 1000000 + n[2] - start >= {} then break end end \
         return 1",
        "x".repeat(60),
        ms * 1000
    )
}

// ------------------------------------------------------------------------------------------------ tests

/// Every request is counted once, in its command's histogram and its outcome's; the node histograms count every
/// round trip; INFO's sections say the same in Redis's formats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histograms_and_info_count_every_request() {
    let cluster = Cluster::start(ClusterOpts { replicas: 0, ..ClusterOpts::default() });
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let proxy = Proxy::start(&cluster, &["--metrics-listen", &metrics_addr]);
    let mut con = proxy.client().await;
    const SETS: usize = 200;
    const GETS: usize = 300;
    for i in 0..SETS {
        let _: () = redis::cmd("SET").arg(format!("obs:{i}")).arg(i).query_async(&mut con).await.unwrap();
    }
    for i in 0..GETS {
        let v: Option<String> = redis::cmd("GET").arg(format!("obs:{}", i % SETS)).query_async(&mut con).await.unwrap();
        assert_eq!(v, Some((i % SETS).to_string()));
    }
    for _ in 0..5 {
        let e = redis::cmd("LPUSH").arg("obs:0").arg("x").query_async::<i64>(&mut con).await.unwrap_err();
        assert_eq!(e.code(), Some("WRONGTYPE"));
    }
    for _ in 0..3 {
        redis::cmd("NOSUCHCOMMAND").arg("a").query_async::<()>(&mut con).await.unwrap_err();
    }
    for _ in 0..2 {
        redis::cmd("GET").query_async::<()>(&mut con).await.unwrap_err();
    }

    // /metrics: each command's histogram counted its requests exactly, buckets add up to the count.
    let page = http(&metrics_addr, "GET", "/metrics").2;
    let m = samples(&page);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no sample {k}\n{page}"));
    assert_eq!(get(r#"slotway_command_duration_seconds_count{command="get"}"#), GETS as f64);
    assert_eq!(get(r#"slotway_command_duration_seconds_bucket{command="get",le="+Inf"}"#), GETS as f64);
    assert_eq!(get(r#"slotway_command_duration_seconds_count{command="set"}"#), SETS as f64);
    assert_eq!(get(r#"slotway_command_duration_seconds_count{command="lpush"}"#), 5.0);
    assert_eq!(get(r#"slotway_commands_total{command="get"}"#), GETS as f64);
    assert_eq!(get(r#"slotway_commands_rejected_total{command="get"}"#), 2.0, "GET without a key");
    assert_eq!(get(r#"slotway_commands_rejected_total{command="unknown"}"#), 3.0);
    assert_eq!(get(r#"slotway_commands_failed_total{command="lpush"}"#), 5.0);
    assert!(get(r#"slotway_command_duration_seconds_sum{command="get"}"#) > 0.0);
    let buckets = series(&m, "slotway_command_duration_seconds_bucket");
    let mut get_buckets: Vec<(f64, f64)> = buckets
        .iter()
        .filter_map(|(l, v)| {
            let le = l.strip_prefix("command=\"get\",le=\"")?.trim_end_matches('"');
            Some((if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }, *v))
        })
        .collect();
    get_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let get_buckets: Vec<f64> = get_buckets.into_iter().map(|x| x.1).collect();
    assert_eq!(get_buckets.len(), 22, "21 bounds and +Inf");
    assert!(get_buckets.windows(2).all(|w| w[0] <= w[1]), "cumulative: {get_buckets:?}");
    let le = |v: &str| get(&format!("slotway_command_duration_seconds_bucket{{command=\"get\",le=\"{v}\"}}"));
    assert!(le("0.000008") < GETS as f64, "a GET through TLS to a node takes more than 8 µs");
    assert_eq!(le("8.388608"), GETS as f64, "and less than 8 s");
    // Outcomes: the WRONGTYPEs are errors, the unknown commands and the arity errors rejected; every request has
    // exactly one outcome.
    assert_eq!(get(r#"slotway_requests_total{outcome="error"}"#), 5.0);
    assert_eq!(get(r#"slotway_requests_total{outcome="rejected"}"#), 5.0);
    assert_eq!(get(r#"slotway_request_duration_seconds_count{outcome="error"}"#), 5.0);
    let outcomes: f64 = series(&m, "slotway_requests_total").iter().map(|x| x.1).sum();
    let commands: f64 = series(&m, "slotway_commands_total").iter().map(|x| x.1).sum::<f64>()
        + series(&m, "slotway_commands_rejected_total").iter().map(|x| x.1).sum::<f64>();
    assert_eq!(outcomes, commands, "every request has one outcome and one command");
    assert!(get(r#"slotway_requests_total{outcome="ok"}"#) >= (SETS + GETS) as f64);
    assert_eq!(get(r#"slotway_errors_total{error="WRONGTYPE"}"#), 5.0);
    assert_eq!(get(r#"slotway_errors_total{error="ERR"}"#), 5.0);
    // One node round trip per forwarded request, on the cluster's nodes only.
    let node_counts: Vec<(&str, f64)> = series(&m, "slotway_node_round_trip_seconds_count");
    assert_eq!(node_counts.iter().map(|x| x.1).sum::<f64>(), (SETS + GETS + 5) as f64, "{node_counts:?}");
    assert_eq!(node_counts.iter().filter(|x| x.1 > 0.0).count(), 3, "keys on every primary: {node_counts:?}");
    for (label, _) in &node_counts {
        let port: u16 = label.trim_start_matches("node=\"127.0.0.1:").trim_end_matches('"').parse().unwrap();
        assert!(cluster.ports.contains(&port), "{label}");
    }
    assert!(get("slotway_net_input_bytes_total") > 0.0 && get("slotway_net_output_bytes_total") > 0.0);
    assert_eq!(get("slotway_latency_tracking"), 1.0);
    assert!(get("process_resident_memory_bytes") > 1e6);
    assert!(page.contains("# TYPE slotway_command_duration_seconds histogram\n"));

    // INFO commandstats / errorstats / latencystats: the same numbers in Redis's formats.
    let stats = info_map(&info(&mut con, &["commandstats", "errorstats", "latencystats"]).await);
    let g = fields(&stats["cmdstat_get"]);
    assert_eq!((g["calls"].as_str(), g["rejected_calls"].as_str(), g["failed_calls"].as_str()), ("300", "2", "0"));
    let usec: u64 = g["usec"].parse().unwrap();
    let sum_us = get(r#"slotway_command_duration_seconds_sum{command="get"}"#) * 1e6;
    assert!((usec as f64 - sum_us).abs() <= 1.0, "usec {usec} vs /metrics {sum_us}");
    let per_call: f64 = g["usec_per_call"].parse().unwrap();
    assert!((per_call - usec as f64 / 300.0).abs() < 0.01);
    assert_eq!(fields(&stats["cmdstat_lpush"])["failed_calls"], "5");
    assert_eq!(stats["errorstat_WRONGTYPE"], "count=5");
    assert_eq!(stats["errorstat_ERR"], "count=5");
    let p = fields(&stats["latency_percentiles_usec_get"]);
    let (p50, p99, p999): (f64, f64, f64) =
        (p["p50"].parse().unwrap(), p["p99"].parse().unwrap(), p["p99.9"].parse().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{p:?}");
    assert!(stats["latency_percentiles_usec_get"].contains('.'), "three decimals as Redis prints them");

    // INFO stats: slotway's own counts, the primaries' keyspace hits summed.
    let s = info_map(&info(&mut con, &["stats"]).await);
    assert!(s["total_commands_processed"].parse::<u64>().unwrap() >= (SETS + GETS + 15) as u64);
    assert!(s["total_net_input_bytes"].parse::<u64>().unwrap() > 0);
    assert_eq!(s["total_error_replies"], "10");
    assert!(s["keyspace_hits"].parse::<u64>().unwrap() >= GETS as u64, "summed over the primaries: {s:?}");
    assert!(s.contains_key("instantaneous_ops_per_sec") && s.contains_key("instantaneous_input_kbps"));

    // INFO keyspace summed, server about slotway, cluster as one standalone server.
    let k = info_map(&info(&mut con, &["keyspace"]).await);
    assert_eq!(fields(&k["db0"])["keys"], SETS.to_string());
    let srv = info_map(&info(&mut con, &["server"]).await);
    assert_eq!(srv["redis_mode"], "standalone");
    assert_eq!(srv["tcp_port"], proxy.port.to_string());
    assert_eq!(srv["process_id"], proxy.pid().to_string());
    assert!(srv["redis_version"].starts_with('7'), "the nodes' version: {}", srv["redis_version"]);
    assert!(srv["uptime_in_seconds"].parse::<u64>().unwrap() < 600);
    assert_eq!(srv["run_id"].len(), 40);
    assert_eq!(info_map(&info(&mut con, &["cluster"]).await)["cluster_enabled"], "0");

    // INFO clients: a client blocked in BLPOP counts as blocked, a subscriber as pubsub.
    let c = info_map(&info(&mut con, &["clients"]).await);
    assert_eq!(c["blocked_clients"], "0");
    assert_eq!(c["maxclients"], "10000");
    assert!(c["connected_clients"].parse::<u64>().unwrap() >= 1);
    let mut blocker = proxy.client().await;
    let blocked = tokio::spawn(async move {
        let v: Option<(String, String)> =
            redis::cmd("BLPOP").arg("obs:list").arg(20).query_async(&mut blocker).await.unwrap();
        v
    });
    wait_info(&mut con, "clients", "blocked_clients", "1").await;
    let _: i64 = redis::cmd("LPUSH").arg("obs:list").arg("v").query_async(&mut con).await.unwrap();
    assert_eq!(blocked.await.unwrap(), Some(("obs:list".into(), "v".into())));
    wait_info(&mut con, "clients", "blocked_clients", "0").await;
    let mut sub = proxy.tcp();
    sub.write_all(b"SUBSCRIBE obs:ch\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = sub.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"*3\r\n$9\r\nsubscribe"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    wait_info(&mut con, "clients", "pubsub_clients", "1").await;
    let list: String = redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub").query_async(&mut con).await.unwrap();
    assert!(list.contains(" flags=P ") && list.contains(" sub=1 "), "CLIENT LIST shows the subscriber: {list}");
    drop(sub);
    wait_info(&mut con, "clients", "pubsub_clients", "0").await;

    // Which sections come with INFO, INFO all and INFO default, in Redis's order.
    let default = info(&mut con, &[]).await;
    for h in ["# Server", "# Clients", "# Memory", "# Stats", "# Replication", "# Errorstats", "# Keyspace", "# Proxy"]
    {
        assert!(default.contains(&format!("{h}\r\n")), "INFO lacks {h}:\n{default}");
    }
    assert!(!default.contains("# Commandstats") && !default.contains("# Latencystats"));
    assert!(default.find("# Clients").unwrap() < default.find("# Stats").unwrap());
    let all = info(&mut con, &["all"]).await;
    assert!(all.contains("# Commandstats\r\ncmdstat_") && all.contains("# Latencystats\r\n"), "{all}");
    assert_eq!(info(&mut con, &["default"]).await.lines().filter(|l| l.starts_with('#')).count(), {
        default.lines().filter(|l| l.starts_with('#')).count()
    });
}

/// SLOWLOG keeps the slow requests (with their node and where the time went), bounded, cut as Redis cuts them;
/// LATENCY reports them; SLOTWAY TRACE logs one client's requests only; with latency tracking off nothing is
/// timed but everything is still counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowlog_latency_and_trace() {
    let cluster = Cluster::start(ClusterOpts { replicas: 0, ..ClusterOpts::default() });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotway.toml");
    // 50 ms: far above what a GET takes even on a loaded machine.
    std::fs::write(&config, "[slowlog]\nthreshold_us = 50000\nmax_len = 4\n").unwrap();
    let proxy = Proxy::start(&cluster, &["--config", config.to_str().unwrap()]);
    let mut con = proxy.client().await;
    let _: () = redis::cmd("CLIENT").arg("SETNAME").arg("slowpoke").query_async(&mut con).await.unwrap();
    let me: String = redis::cmd("CLIENT").arg("INFO").query_async(&mut con).await.unwrap();
    let my_addr = me.split(' ').find_map(|f| f.strip_prefix("addr=")).unwrap().to_string();

    // A request made slow on purpose: a script that keeps its node busy for 100 ms.
    let key = "obs:slow";
    let node = cluster.node_for_key(key);
    let script = spin_script(100);
    assert!(script.len() > 128);
    let one: i64 = redis::cmd("EVAL").arg(&script).arg(1).arg(key).query_async(&mut con).await.unwrap();
    assert_eq!(one, 1);
    for i in 0..20 {
        let _: Option<String> = redis::cmd("GET").arg(format!("obs:fast{i}")).query_async(&mut con).await.unwrap();
    }
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query_async(&mut con).await.unwrap();
    assert_eq!(len, 1, "only the slow request is logged");
    let entries: Value = redis::cmd("SLOWLOG").arg("GET").query_async(&mut con).await.unwrap();
    let e = array(&array(&entries)[0]);
    assert_eq!(e.len(), 9, "Redis's six fields and slotway's three: {e:?}");
    assert_eq!(int(&e[0]), 0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - int(&e[1])).abs() < 60);
    let duration = int(&e[2]);
    assert!((100_000..5_000_000).contains(&duration), "{duration} µs");
    let args: Vec<String> = array(&e[3]).iter().map(text).collect();
    assert_eq!(args.len(), 4);
    assert!(args[0].eq_ignore_ascii_case("eval"));
    assert_eq!(args[1], format!("{}... ({} more bytes)", &script[..128], script.len() - 128), "cut at 128 bytes");
    assert_eq!(&args[2..], ["1", key]);
    assert_eq!(text(&e[4]), my_addr);
    assert_eq!(text(&e[5]), "slowpoke");
    assert_eq!(text(&e[6]), format!("127.0.0.1:{node}"), "the node the request went to");
    let (upstream, inside) = (int(&e[7]), int(&e[8]));
    assert_eq!(upstream + inside, duration);
    assert!(upstream >= 100_000, "the node had it for the 100 ms: {upstream}");
    assert!(inside < duration / 2, "little of it inside slotway: {inside} of {duration}");

    // LATENCY reports the same requests.
    let latest: Value = redis::cmd("LATENCY").arg("LATEST").query_async(&mut con).await.unwrap();
    let ev = array(&array(&latest)[0]);
    assert_eq!(text(&ev[0]), "command");
    assert!(int(&ev[2]) >= 100 && int(&ev[3]) >= 100, "{ev:?}");
    let hist: Value = redis::cmd("LATENCY").arg("HISTOGRAM").arg("eval").query_async(&mut con).await.unwrap();
    let hist = array(&hist);
    assert_eq!(text(&hist[0]), "eval");
    let detail = array(&hist[1]);
    assert_eq!((text(&detail[0]).as_str(), int(&detail[1])), ("calls", 1));
    let buckets: Vec<i64> = array(&detail[3]).iter().map(int).collect();
    assert_eq!(buckets.len(), 2, "one bucket: {buckets:?}");
    assert!(buckets[0] >= 131_072 && (buckets[0] as u64).is_power_of_two() && buckets[1] == 1, "{buckets:?}");

    // Bounded: max_len 4 keeps the newest four; more than 32 arguments are cut as Redis does.
    for _ in 0..5 {
        let _: i64 = redis::cmd("EVAL").arg(spin_script(60)).arg(0).query_async(&mut con).await.unwrap();
    }
    let mut eval = redis::cmd("EVAL");
    eval.arg(spin_script(60)).arg(0);
    for i in 0..38 {
        eval.arg(format!("a{i}"));
    }
    let _: i64 = eval.query_async(&mut con).await.unwrap();
    let all: Value = redis::cmd("SLOWLOG").arg("GET").arg(-1).query_async(&mut con).await.unwrap();
    let ids: Vec<i64> = array(&all).iter().map(|e| int(&array(e)[0])).collect();
    assert_eq!(ids, vec![6, 5, 4, 3], "newest first, four kept");
    let many = array(&array(&all)[0]);
    let cut: Vec<String> = array(&many[3]).iter().map(text).collect();
    assert_eq!(cut.len(), 32);
    assert_eq!(cut[31], "... (10 more arguments)");
    assert_eq!(cut[30], "a27");
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(&mut con).await.unwrap();
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query_async(&mut con).await.unwrap();
    assert_eq!(len, 0);
    let e = redis::cmd("SLOWLOG").arg("GET").arg(-2).query_async::<Value>(&mut con).await.unwrap_err();
    assert!(e.to_string().contains("count should be greater than or equal to -1"), "{e}");

    // SLOTWAY TRACE: by name, one client's requests are logged and the other's are not.
    let mut other = proxy.client().await;
    let n: i64 =
        redis::cmd("SLOTWAY").arg("TRACE").arg("NAME").arg("slowpoke").arg("ON").query_async(&mut other).await.unwrap();
    assert_eq!(n, 1);
    let _: Option<String> = redis::cmd("GET").arg("obs:trace-mine").query_async(&mut con).await.unwrap();
    let _: Option<String> = redis::cmd("GET").arg("obs:trace-other").query_async(&mut other).await.unwrap();
    let _: () = redis::cmd("AUTH").arg("default").arg("sekrit-pw").query_async(&mut con).await.unwrap();
    proxy.wait_for_log("request=AUTH (redacted) (redacted)", Duration::from_secs(10));
    let log = proxy.log();
    assert!(log.contains("request=GET obs:trace-mine"), "{log}");
    assert!(log.contains("command=\"get\" outcome=\"ok\""), "{log}");
    assert!(!log.contains("obs:trace-other"), "the other client is not traced:\n{log}");
    assert!(!log.contains("sekrit-pw"), "never a password in the log");
    let list: Vec<String> = redis::cmd("SLOTWAY").arg("TRACE").arg("LIST").query_async(&mut other).await.unwrap();
    assert!(list.iter().any(|l| l.ends_with("name=slowpoke") && l.starts_with("id=")), "{list:?}");
    assert!(list.contains(&"name=slowpoke".to_string()), "{list:?}");
    let _: i64 = redis::cmd("SLOTWAY")
        .arg("TRACE")
        .arg("NAME")
        .arg("slowpoke")
        .arg("OFF")
        .query_async(&mut other)
        .await
        .unwrap();
    let other_id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut other).await.unwrap();
    let n: i64 =
        redis::cmd("SLOTWAY").arg("TRACE").arg("ID").arg(other_id).arg("ON").query_async(&mut con).await.unwrap();
    assert_eq!(n, 1);
    let _: Option<String> = redis::cmd("GET").arg("obs:trace-off").query_async(&mut con).await.unwrap();
    let _: Option<String> = redis::cmd("GET").arg("obs:trace-by-id").query_async(&mut other).await.unwrap();
    proxy.wait_for_log("request=GET obs:trace-by-id", Duration::from_secs(10));
    assert!(!proxy.log().contains("obs:trace-off"), "tracing by name was switched off");

    // Latency tracking off: nothing timed, nothing logged as slow, every request still counted.
    let quiet = dir.path().join("quiet.toml");
    std::fs::write(&quiet, "latency_tracking = false\n[slowlog]\nthreshold_us = 0\n").unwrap();
    let untimed = Proxy::start(&cluster, &["--config", quiet.to_str().unwrap()]);
    let mut con = untimed.client().await;
    let _: i64 = redis::cmd("EVAL").arg(spin_script(60)).arg(1).arg(key).query_async(&mut con).await.unwrap();
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query_async(&mut con).await.unwrap();
    assert_eq!(len, 0);
    let stats = info_map(&info(&mut con, &["commandstats", "latencystats"]).await);
    assert_eq!(fields(&stats["cmdstat_eval"])["calls"], "1");
    assert_eq!(fields(&stats["cmdstat_eval"])["usec"], "0");
    assert!(!stats.keys().any(|k| k.starts_with("latency_percentiles_usec_")), "{stats:?}");
}

/// The alert rules pass `promtool check rules`, and `promtool test rules` shows each one firing on the series it
/// feeds (and not on healthy ones).
#[test]
fn alert_rules_pass_promtool() {
    if !have("promtool") {
        return;
    }
    let dir = repo_root().join("deploy/prometheus");
    for args in [&["check", "rules", "alerts.yml"][..], &["test", "rules", "alerts.test.yml"][..]] {
        let out = Command::new("promtool").args(args).current_dir(&dir).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
        assert!(text.contains("SUCCESS"), "{text}");
    }
    // The test file covers the alerts the rules define.
    let tests = std::fs::read_to_string(dir.join("alerts.test.yml")).unwrap();
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {alert}")), "alerts.test.yml never tests {alert}");
    }
    for must in ["SlotwayNoPrimary", "SlotwayErrorRatio"] {
        assert!(rules.contains(&format!("- alert: {must}")));
    }
}

/// A real Prometheus scrapes slotway while load runs: every query of the Grafana dashboard returns data through
/// its HTTP API, and the alert rules load. Then prometheus-redis-exporter pointed at slotway exports what the load
/// did, from INFO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_and_redis_exporter_read_slotway() {
    if !have("prometheus") || !have("prometheus-redis-exporter") {
        return;
    }
    let cluster = Cluster::start(ClusterOpts { replicas: 0, ..ClusterOpts::default() });
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let proxy = Proxy::start(&cluster, &["--metrics-listen", &metrics_addr]);
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  \
             - job_name: slotway\n    static_configs:\n      - targets: ['{metrics_addr}']\n",
            root.join("deploy/prometheus/alerts.yml").display()
        ),
    )
    .unwrap();
    let prometheus = Daemon::start(
        Command::new("prometheus").args([
            format!("--config.file={}", prom_config.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={prom_addr}"),
            "--log.level=warn".into(),
        ]),
        dir.path().join("prometheus.log"),
    );
    wait_http(&prom_addr, "/-/ready", &prometheus);
    let (_, rules) = get(&prom_addr, "/api/v1/rules").unwrap();
    assert!(rules.contains("SlotwayNoPrimary") && rules.contains("SlotwayErrorRatio"), "{rules}");

    // Load: GETs and SETs, and some errors, on two connections until the dashboard is answered (bounded).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gets = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut load = Vec::new();
    for c in 0..2 {
        let mut con = proxy.client().await;
        let (stop, gets) = (stop.clone(), gets.clone());
        load.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let key = format!("obs:load:{c}:{}", i % 100);
                let _: () = redis::cmd("SET").arg(&key).arg(i).query_async(&mut con).await.unwrap();
                let _: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut con).await.unwrap();
                gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i.is_multiple_of(50) {
                    let _ = redis::cmd("LPUSH").arg(&key).arg("x").query_async::<i64>(&mut con).await;
                }
                i += 1;
            }
        }));
    }

    // Every panel's query returns data (template variables as Grafana fills them for "All").
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/grafana/slotway.json")).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let q = expr.replace("$instance", ".*").replace("$__rate_interval", "15s");
            queries.push((panel["title"].as_str().unwrap().to_string(), q));
        }
    }
    assert!(queries.len() >= 30, "{} queries", queries.len());
    let mut missing: Vec<(String, String)> = queries.clone();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !missing.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        missing.retain(|(_, q)| {
            let (status, body) = get(&prom_addr, &format!("/api/v1/query?query={}", url_encode(q))).unwrap();
            assert_eq!(status, 200, "{q}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["status"], "success", "{q}: {body}");
            v["data"]["result"].as_array().is_none_or(|r| r.is_empty())
        });
    }
    assert!(missing.is_empty(), "dashboard queries without data after 90 s: {missing:#?}\n{}", prometheus.log());
    // The latency panels have real numbers, not just series: a p99 between 1 µs and 1 s.
    let q =
        "histogram_quantile(0.99, sum by (le) (rate(slotway_command_duration_seconds_bucket{command=\"get\"}[15s])))";
    let (_, body) = get(&prom_addr, &format!("/api/v1/query?query={}", url_encode(q))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let p99: f64 = v["data"]["result"][0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((1e-6..1.0).contains(&p99), "p99 {p99}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    drop(prometheus);

    // prometheus-redis-exporter against slotway: up, clients, and the GETs counted and timed as INFO says.
    let mut con = proxy.client().await;
    wait_info(&mut con, "clients", "connected_clients", "1").await;
    let ours = samples(&http(&metrics_addr, "GET", "/metrics").2);
    let sent = gets.load(std::sync::atomic::Ordering::Relaxed) as f64;
    assert_eq!(ours[r#"slotway_commands_total{command="get"}"#], sent, "every GET the load sent, counted once");
    let exporter_addr = format!("127.0.0.1:{}", free_port());
    let exporter = Daemon::start(
        Command::new("prometheus-redis-exporter").args([
            "-redis.addr".to_string(),
            format!("redis://{}", proxy.addr),
            "-web.listen-address".into(),
            exporter_addr.clone(),
        ]),
        dir.path().join("exporter.log"),
    );
    wait_http(&exporter_addr, "/", &exporter);
    let (status, page) = get(&exporter_addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    let e = samples(&page);
    let val = |k: &str| *e.get(k).unwrap_or_else(|| panic!("exporter has no {k}:\n{page}\n{}", exporter.log()));
    assert_eq!(val("redis_up"), 1.0, "{}", exporter.log());
    assert_eq!(val("redis_connected_clients"), 2.0, "this test's connection and the exporter's");
    assert_eq!(val(r#"redis_commands_total{cmd="get"}"#), sent);
    let usec_total = (ours[r#"slotway_command_duration_seconds_sum{command="get"}"#] * 1e6).floor() / 1e6;
    let exported = val(r#"redis_commands_duration_seconds_total{cmd="get"}"#);
    assert!((exported - usec_total).abs() < 2e-6, "exporter {exported} s, slotway {usec_total} s");
    assert!(exported > 0.0);
    assert!(val(r#"redis_commands_failed_calls_total{cmd="lpush"}"#) >= 1.0);
    assert!(val(r#"redis_errors_total{err="WRONGTYPE"}"#) >= 1.0);
    assert_eq!(val(r#"redis_db_keys{db="db0"}"#), 200.0, "keys summed over the primaries");
}
