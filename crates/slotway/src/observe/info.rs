//! INFO through slotway: the sections a standalone Redis has, meaning what they mean for slotway's clients, in
//! Redis's exact line formats (redis_exporter, Grafana's Redis data source and the Datadog agent parse them).
//!
//! | section | where it comes from |
//! |---|---|
//! | `server` | a node's, with slotway's `process_id`, `run_id`, `tcp_port`, uptime, and `redis_mode:standalone` |
//! | `clients` | slotway's clients (`blocked_clients`: in a blocking command; `pubsub_clients`: subscribed) |
//! | `stats` | the primaries' fields summed (keyspace hits, expired keys, ...), with slotway's own connection, command and network counts in place of theirs |
//! | `commandstats`, `errorstats`, `latencystats` | slotway's: every request its clients sent, end to end |
//! | `keyspace` | summed over the primaries |
//! | `cluster` | a node's, with `cluster_enabled:0` (clients see one standalone server) |
//! | `proxy` | slotway's own counters |
//! | others | one node's |
//!
//! The sections slotway renders itself are built when the request arrives ([`LocalInfo`]), the node sections are
//! merged into them when the replies are in ([`merge`]). INFO asking only for slotway's sections (`clients`,
//! `commandstats`, `errorstats`, `latencystats`, `proxy`) is answered without a node ([`local_only`]).
use super::Totals;
use crate::command::Args;
use std::fmt::Write;

/// Sections INFO shows without arguments (and `default`), in Redis 7.0's order, plus slotway's `proxy`.
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "module_list",
    "errorstats",
    "cluster",
    "keyspace",
    "proxy",
];
/// What `all` adds to the default sections.
const ALL_EXTRA: &[&str] = &["commandstats", "latencystats"];
/// Sections slotway answers without asking a node.
const LOCAL_SECTIONS: &[&str] = &["clients", "commandstats", "errorstats", "latencystats", "proxy"];

/// Which sections an INFO request asks for.
#[derive(Debug, Clone, Default)]
pub struct InfoRequest {
    all: bool,
    everything: bool,
    default: bool,
    named: Vec<String>,
}

impl InfoRequest {
    pub fn parse(args: Args<'_>) -> InfoRequest {
        let mut r = InfoRequest { default: args.len() == 1, ..InfoRequest::default() };
        for i in 1..args.len() {
            let s = String::from_utf8_lossy(args.get(i)).to_ascii_lowercase();
            match s.as_str() {
                "all" => r.all = true,
                "everything" => r.everything = true,
                "default" => r.default = true,
                _ => r.named.push(s),
            }
        }
        r
    }

    /// Whether the section (lower case) is asked for.
    pub fn wants(&self, section: &str) -> bool {
        self.everything
            || (self.all && (DEFAULT_SECTIONS.contains(&section) || ALL_EXTRA.contains(&section)))
            || (self.default && DEFAULT_SECTIONS.contains(&section))
            || self.named.iter().any(|n| n == section)
    }
}

/// INFO asking only for sections slotway renders itself: answered without a node.
pub fn local_only(args: Args<'_>) -> bool {
    let r = InfoRequest::parse(args);
    !r.all && !r.everything && !r.default && r.named.iter().all(|n| LOCAL_SECTIONS.contains(&n.as_str()))
}

/// slotway's facts for the `server` section.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub process_id: u32,
    pub run_id: String,
    pub tcp_port: u16,
    pub uptime_secs: u64,
    pub executable: String,
}

/// The sections slotway renders, for one INFO request (None: not asked for).
#[derive(Debug, Clone, Default)]
pub struct LocalInfo {
    /// Sum the primaries' `keyspace` lines.
    pub sum_keyspace: bool,
    /// Sum the primaries' `stats` fields (then apply `stats`).
    pub sum_stats: bool,
    pub server: Option<ServerFacts>,
    pub clients: Option<String>,
    /// slotway's own `stats` fields, replacing the nodes' values.
    pub stats: Option<Vec<(&'static str, String)>>,
    pub commandstats: Option<String>,
    pub errorstats: Option<String>,
    pub latencystats: Option<String>,
    pub proxy: Option<String>,
}

/// The lines of `# Clients` (without the header).
pub struct ClientCounts {
    pub connected: usize,
    pub max_clients: usize,
    pub blocked: usize,
    pub pubsub: usize,
}

pub fn clients_section(c: &ClientCounts) -> String {
    format!(
        "connected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\nblocked_clients:{}\r\ntracking_clients:0\r\n\
         pubsub_clients:{}\r\n",
        c.connected, c.max_clients, c.blocked, c.pubsub
    )
}

/// `cmdstat_<name>:calls=…,usec=…,usec_per_call=…,rejected_calls=…,failed_calls=…` for every command used.
pub fn commandstats_section(totals: &Totals, name: impl Fn(usize) -> String) -> String {
    let mut s = String::new();
    for (i, c) in totals.commands.iter().enumerate().skip(1) {
        if c.calls + c.rejected == 0 {
            continue;
        }
        let usec = c.latency.as_ref().map_or(0, |l| l.sum_ns / 1000);
        let per_call = if c.calls > 0 { usec as f64 / c.calls as f64 } else { 0.0 };
        let _ = write!(
            s,
            "cmdstat_{}:calls={},usec={usec},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
            name(i),
            c.calls,
            c.rejected,
            c.failed
        );
    }
    s
}

/// `errorstat_<CODE>:count=…`, by code.
pub fn errorstats_section(totals: &Totals) -> String {
    totals.errors.iter().map(|(code, n)| format!("errorstat_{code}:count={n}\r\n")).collect()
}

/// `latency_percentiles_usec_<name>:p50=…,p99=…,p99.9=…` for every command timed.
pub fn latencystats_section(totals: &Totals, name: impl Fn(usize) -> String) -> String {
    let mut s = String::new();
    for (i, c) in totals.commands.iter().enumerate().skip(1) {
        let Some(l) = c.latency.as_ref().filter(|l| l.count() > 0) else { continue };
        let _ = write!(
            s,
            "latency_percentiles_usec_{}:p50={:.3},p99={:.3},p99.9={:.3}\r\n",
            name(i),
            l.percentile_us(50.0),
            l.percentile_us(99.0),
            l.percentile_us(99.9)
        );
    }
    s
}

/// INFO text split into sections: (header line without `# `, lines without CRLF). Lines before any header go
/// into a section with an empty name.
fn sections(text: &str) -> Vec<(&str, Vec<&str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if let Some(name) = line.strip_prefix("# ") {
            out.push((name, Vec::new()));
        } else if !line.is_empty() {
            match out.last_mut() {
                Some((_, lines)) => lines.push(line),
                None => out.push(("", vec![line])),
            }
        }
    }
    out
}

/// `db0:keys=1,expires=0,avg_ttl=0` summed over every part: counts add up; `avg_ttl` is averaged weighted by
/// `expires` (it is the average TTL of the keys with one).
pub fn sum_keyspace<'a>(parts: impl Iterator<Item = &'a str>) -> Vec<String> {
    // db name → (field, value) in first-seen order.
    let mut dbs: Vec<(String, Vec<(String, i128)>)> = Vec::new();
    let mut ttl_weight: Vec<(i128, i128)> = Vec::new(); // per db: sum(avg_ttl * expires), sum(expires)
    for line in parts {
        let Some((db, fields)) = line.split_once(':') else { continue };
        let parsed: Vec<(&str, i128)> = fields
            .split(',')
            .filter_map(|f| f.split_once('='))
            .filter_map(|(k, v)| Some((k, v.parse::<i128>().ok()?)))
            .collect();
        let i = match dbs.iter().position(|(d, _)| d == db) {
            Some(i) => i,
            None => {
                dbs.push((db.to_string(), Vec::new()));
                ttl_weight.push((0, 0));
                dbs.len() - 1
            }
        };
        let expires = parsed.iter().find(|(k, _)| *k == "expires").map_or(0, |&(_, v)| v);
        for (k, v) in parsed {
            if k == "avg_ttl" {
                ttl_weight[i].0 += v * expires;
                ttl_weight[i].1 += expires;
            }
            match dbs[i].1.iter_mut().find(|(f, _)| f == k) {
                Some((_, sum)) => *sum += v,
                None => dbs[i].1.push((k.to_string(), v)),
            }
        }
    }
    type Row = (String, Vec<(String, i128)>, (i128, i128));
    let mut rows: Vec<Row> = dbs.into_iter().zip(ttl_weight).map(|((db, fields), w)| (db, fields, w)).collect();
    rows.sort_by_key(|(db, _, _)| db.trim_start_matches("db").parse::<u64>().unwrap_or(u64::MAX));
    rows.into_iter()
        .map(|(db, fields, (weighted, expires))| {
            let fields: Vec<String> = fields
                .into_iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "avg_ttl" if expires > 0 => weighted / expires,
                        "avg_ttl" => 0,
                        _ => v,
                    };
                    format!("{k}={v}")
                })
                .collect();
            format!("{db}:{}", fields.join(","))
        })
        .collect()
}

/// `stats` fields summed over the parts, in the first part's order: integers and decimals add up (a `_perc`
/// field is averaged); anything else is the first part's.
fn sum_fields(parts: &[Vec<&str>]) -> Vec<(String, String)> {
    let Some(first) = parts.first() else { return Vec::new() };
    first
        .iter()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| {
            let others = parts.iter().filter_map(|p| p.iter().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')));
            let summed = if value.parse::<i64>().is_ok() {
                others.map(|o| o.parse::<i64>().unwrap_or(0)).fold(0i64, i64::saturating_add).to_string()
            } else if value.parse::<f64>().is_ok() && value.contains('.') {
                let values: Vec<f64> = others.map(|o| o.parse::<f64>().unwrap_or(0.0)).collect();
                let sum: f64 = values.iter().sum();
                let v = if key.ends_with("_perc") { sum / values.len().max(1) as f64 } else { sum };
                format!("{v:.2}")
            } else {
                value.to_string()
            };
            (key.to_string(), summed)
        })
        .collect()
}

fn push_section(out: &mut Vec<String>, name: &str, lines: impl IntoIterator<Item = String>) {
    let mut s = format!("# {name}\r\n");
    for l in lines {
        s.push_str(&l);
        s.push_str("\r\n");
    }
    out.push(s);
}

/// The client's INFO text: the first node's sections (`nodes[0]`; none for a request answered locally) with
/// slotway's in their place, stats and keyspace summed over every node when asked, then slotway's own sections
/// that no node sent, then `# Proxy`.
pub fn merge(nodes: &[&str], local: &LocalInfo) -> String {
    let parsed: Vec<Vec<(&str, Vec<&str>)>> = nodes.iter().map(|t| sections(t)).collect();
    let of = |name: &str| -> Vec<Vec<&str>> {
        parsed.iter().filter_map(|p| p.iter().find(|(n, _)| *n == name).map(|(_, l)| l.clone())).collect()
    };
    let mut out: Vec<String> = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    let replaced = |text: &str| -> Vec<String> {
        text.trim_end_matches("\r\n").split("\r\n").filter(|l| !l.is_empty()).map(String::from).collect()
    };
    let stats = |lines: Vec<(String, String)>| -> Vec<String> {
        let mut lines = lines;
        for (k, v) in local.stats.iter().flatten() {
            match lines.iter_mut().find(|(key, _)| key == k) {
                Some((_, value)) => *value = v.clone(),
                None => lines.push((k.to_string(), v.clone())),
            }
        }
        lines.into_iter().map(|(k, v)| format!("{k}:{v}")).collect()
    };
    let keyspace = || sum_keyspace(of("Keyspace").into_iter().flatten());
    for (name, lines) in parsed.first().map(|p| p.as_slice()).unwrap_or_default() {
        let own = |l: &&str| l.to_string();
        match *name {
            "Server" => match &local.server {
                Some(facts) => push_section(&mut out, name, lines.iter().map(|l| patch_server(l, facts))),
                None => push_section(&mut out, name, lines.iter().map(own)),
            },
            "Clients" if local.clients.is_some() => {
                push_section(&mut out, name, replaced(local.clients.as_deref().unwrap_or_default()))
            }
            "Stats" if local.stats.is_some() => {
                let base = if local.sum_stats {
                    sum_fields(&of("Stats"))
                } else {
                    lines.iter().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.into(), v.into())).collect()
                };
                push_section(&mut out, name, stats(base));
            }
            "Commandstats" if local.commandstats.is_some() => {
                push_section(&mut out, name, replaced(local.commandstats.as_deref().unwrap_or_default()))
            }
            "Errorstats" if local.errorstats.is_some() => {
                push_section(&mut out, name, replaced(local.errorstats.as_deref().unwrap_or_default()))
            }
            "Latencystats" if local.latencystats.is_some() => {
                push_section(&mut out, name, replaced(local.latencystats.as_deref().unwrap_or_default()))
            }
            "Cluster" => push_section(
                &mut out,
                name,
                lines
                    .iter()
                    .map(|l| if l.starts_with("cluster_enabled:") { "cluster_enabled:0".into() } else { own(l) }),
            ),
            "Keyspace" if local.sum_keyspace => push_section(&mut out, name, keyspace()),
            "" => out.push(lines.iter().map(|l| format!("{l}\r\n")).collect()),
            _ => push_section(&mut out, name, lines.iter().map(own)),
        }
        done.push(name);
    }
    // slotway's sections no node sent (INFO answered locally, or a node that lacks the section).
    let missing = |n: &str| !done.contains(&n);
    if let Some(c) = local.clients.as_deref().filter(|_| missing("Clients")) {
        push_section(&mut out, "Clients", replaced(c));
    }
    if local.stats.is_some() && missing("Stats") {
        push_section(&mut out, "Stats", stats(Vec::new()));
    }
    for (title, text) in [
        ("Commandstats", &local.commandstats),
        ("Errorstats", &local.errorstats),
        ("Latencystats", &local.latencystats),
    ] {
        if let Some(t) = text.as_deref().filter(|_| missing(title)) {
            push_section(&mut out, title, replaced(t));
        }
    }
    if local.sum_keyspace && missing("Keyspace") {
        push_section(&mut out, "Keyspace", keyspace());
    }
    if let Some(p) = &local.proxy {
        out.push(p.clone());
    }
    out.join("\r\n")
}

/// One `server` line with slotway's value where slotway is the server the client talks to.
fn patch_server(line: &str, facts: &ServerFacts) -> String {
    let Some((key, _)) = line.split_once(':') else { return line.to_string() };
    match key {
        "redis_mode" => "redis_mode:standalone".into(),
        "process_id" => format!("process_id:{}", facts.process_id),
        "run_id" => format!("run_id:{}", facts.run_id),
        "tcp_port" => format!("tcp_port:{}", facts.tcp_port),
        "uptime_in_seconds" => format!("uptime_in_seconds:{}", facts.uptime_secs),
        "uptime_in_days" => format!("uptime_in_days:{}", facts.uptime_secs / 86400),
        "executable" => format!("executable:{}", facts.executable),
        // The node's config file means nothing to the client.
        "config_file" => "config_file:".into(),
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn with_args<R>(words: &[&str], f: impl FnOnce(Args<'_>) -> R) -> R {
        let owned: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        let mut frame = BytesMut::new();
        let mut ranges = Vec::new();
        for w in &owned {
            let start = frame.len();
            frame.extend_from_slice(w);
            ranges.push(start..frame.len());
        }
        f(Args { frame: &frame, ranges: &ranges })
    }

    #[test]
    fn which_sections() {
        let wants = |words: &[&str], s: &str| with_args(words, |a| InfoRequest::parse(a).wants(s));
        assert!(wants(&["INFO"], "clients") && wants(&["INFO"], "errorstats") && !wants(&["INFO"], "commandstats"));
        assert!(wants(&["INFO", "all"], "commandstats") && wants(&["INFO", "ALL"], "latencystats"));
        assert!(wants(&["INFO", "everything"], "commandstats"));
        assert!(wants(&["INFO", "Clients"], "clients") && !wants(&["INFO", "clients"], "server"));
        assert!(wants(&["INFO", "default", "commandstats"], "commandstats"));
        let local = |words: &[&str]| with_args(words, local_only);
        assert!(local(&["INFO", "clients"]) && local(&["INFO", "proxy"]));
        assert!(local(&["INFO", "commandstats", "LATENCYSTATS", "errorstats"]));
        assert!(!local(&["INFO"]) && !local(&["INFO", "clients", "server"]) && !local(&["INFO", "all"]));
        assert!(!local(&["INFO", "stats"]), "stats sums the nodes' fields");
    }

    #[test]
    fn keyspace_sum() {
        let lines = sum_keyspace(
            [
                "db0:keys=10,expires=2,avg_ttl=1000",
                "db0:keys=5,expires=6,avg_ttl=3000",
                "db1:keys=1,expires=0,avg_ttl=0",
            ]
            .into_iter(),
        );
        assert_eq!(lines, vec!["db0:keys=15,expires=8,avg_ttl=2500", "db1:keys=1,expires=0,avg_ttl=0"]);
    }

    #[test]
    fn merged_text() {
        let n1 = "# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\nprocess_id:11\r\ntcp_port:7000\r\n\
                  uptime_in_seconds:999\r\n\r\n# Clients\r\nconnected_clients:7\r\n\r\n# Stats\r\n\
                  total_connections_received:3\r\nkeyspace_hits:4\r\nexpired_stale_perc:1.00\r\n\r\n\
                  # Errorstats\r\nerrorstat_ERR:count=9\r\n\r\n# Cluster\r\ncluster_enabled:1\r\n\r\n\
                  # Keyspace\r\ndb0:keys=10,expires=0,avg_ttl=0\r\n";
        let n2 = "# Stats\r\ntotal_connections_received:5\r\nkeyspace_hits:6\r\nexpired_stale_perc:3.00\r\n\r\n\
                  # Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\n";
        let local = LocalInfo {
            sum_keyspace: true,
            sum_stats: true,
            server: Some(ServerFacts {
                process_id: 42,
                run_id: "r".into(),
                tcp_port: 6380,
                uptime_secs: 90000,
                executable: "/bin/slotway".into(),
            }),
            clients: Some(clients_section(&ClientCounts { connected: 2, max_clients: 100, blocked: 1, pubsub: 0 })),
            stats: Some(vec![("total_connections_received", "8".into()), ("total_error_replies", "1".into())]),
            errorstats: Some("errorstat_WRONGTYPE:count=1\r\n".into()),
            latencystats: Some(String::new()),
            proxy: Some("# Proxy\r\nslotway_version:0\r\n".into()),
            ..LocalInfo::default()
        };
        let text = merge(&[n1, n2], &local);
        assert_eq!(
            text,
            "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nprocess_id:42\r\ntcp_port:6380\r\n\
             uptime_in_seconds:90000\r\n\r\n# Clients\r\nconnected_clients:2\r\ncluster_connections:0\r\n\
             maxclients:100\r\nblocked_clients:1\r\ntracking_clients:0\r\npubsub_clients:0\r\n\r\n# Stats\r\n\
             total_connections_received:8\r\nkeyspace_hits:10\r\nexpired_stale_perc:2.00\r\n\
             total_error_replies:1\r\n\r\n# Errorstats\r\nerrorstat_WRONGTYPE:count=1\r\n\r\n# Cluster\r\n\
             cluster_enabled:0\r\n\r\n# Keyspace\r\ndb0:keys=15,expires=0,avg_ttl=0\r\n\r\n# Latencystats\r\n\
             \r\n# Proxy\r\nslotway_version:0\r\n"
        );
        // Answered locally: slotway's sections alone, in Redis's order.
        let only = LocalInfo {
            clients: Some("connected_clients:1\r\n".into()),
            commandstats: Some(
                "cmdstat_get:calls=1,usec=2,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n".into(),
            ),
            ..LocalInfo::default()
        };
        assert_eq!(
            merge(&[], &only),
            "# Clients\r\nconnected_clients:1\r\n\r\n# Commandstats\r\n\
             cmdstat_get:calls=1,usec=2,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n"
        );
        // An empty keyspace everywhere: just the header.
        let e = "# Keyspace\r\n";
        assert_eq!(merge(&[e, e], &LocalInfo { sum_keyspace: true, ..LocalInfo::default() }), "# Keyspace\r\n");
    }

    #[test]
    fn stats_lines() {
        use super::super::{CommandTotals, Outcome};
        let mut latency = super::super::histogram::Snapshot::default();
        latency.buckets[super::super::histogram::bucket_of(10)] = 3;
        latency.sum_ns = 31_000;
        let totals = Totals {
            commands: vec![
                CommandTotals::default(),
                CommandTotals { calls: 3, failed: 1, rejected: 2, latency: Some(Box::new(latency)) },
                CommandTotals { calls: 0, failed: 0, rejected: 1, latency: None },
                CommandTotals::default(),
            ],
            outcomes: vec![(Outcome::Ok, 3, Default::default())],
            errors: vec![("ERR".into(), 2), ("WRONGTYPE".into(), 1)],
            ..Totals::default()
        };
        let name = |i: usize| ["", "get", "config|get", "set"][i].to_string();
        assert_eq!(
            commandstats_section(&totals, name),
            "cmdstat_get:calls=3,usec=31,usec_per_call=10.33,rejected_calls=2,failed_calls=1\r\n\
             cmdstat_config|get:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0\r\n"
        );
        assert_eq!(errorstats_section(&totals), "errorstat_ERR:count=2\r\nerrorstat_WRONGTYPE:count=1\r\n");
        assert_eq!(
            latencystats_section(&totals, name),
            "latency_percentiles_usec_get:p50=11.000,p99=11.000,p99.9=11.000\r\n"
        );
    }
}
