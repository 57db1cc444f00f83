//! SLOWLOG and LATENCY, answered by slotway about its own clients' requests.
//!
//! A request whose end-to-end time (from the read that completed it to its reply leaving the session's FIFO)
//! reaches `slowlog.threshold_us` is logged with its arguments (cut as Redis cuts them: 32 arguments, 128 bytes
//! each; secrets redacted), its client, the node(s) it went to and how much of the time was spent waiting on a
//! node versus inside slotway (retries' back-off, waiting behind earlier requests, the proxy's own work). The log
//! keeps the newest `slowlog.max_len` entries. Each entry also feeds the latency monitor's event `command`
//! (LATENCY LATEST / HISTORY), so those speak of the same requests.
use super::histogram::Snapshot;
use super::Observe;
use bytes::{Bytes, BytesMut};
use resp::encode::{self, Protocol};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Arguments kept per entry; the last one kept says how many more there were (Redis's SLOWLOG_ENTRY_MAX_ARGC).
pub const MAX_ARGS: usize = 32;
/// Bytes kept per argument (Redis's SLOWLOG_ENTRY_MAX_STRING).
pub const MAX_ARG_BYTES: usize = 128;
/// Samples kept per latency event (Redis's LATENCY_TS_LEN).
const LATENCY_SAMPLES: usize = 160;
/// The latency monitor event slow requests are recorded as.
pub const LATENCY_EVENT: &str = "command";

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    /// Unix time (seconds) when it was logged.
    pub time: u64,
    pub duration_us: u64,
    pub args: Vec<Bytes>,
    /// The client's `ip:port`.
    pub client: String,
    pub client_name: Bytes,
    /// The nodes the request went to (`host:port`, comma-separated; empty when slotway answered it).
    pub nodes: String,
    /// Of `duration_us`, the time waiting on a node (the longest of its parts' round trips, retries included).
    pub upstream_us: u64,
}

/// A slow request, as the session hands it over.
pub struct SlowRequest<'a> {
    /// The command's table name (`get`, `config|set`), for redaction; None if unknown.
    pub command: Option<&'a str>,
    pub args: &'a [&'a [u8]],
    pub duration_us: u64,
    pub client: String,
    pub client_name: Option<&'a [u8]>,
    pub nodes: String,
    pub upstream_us: u64,
}

#[derive(Debug, Default)]
struct LatencyEvent {
    /// (unix time, milliseconds), oldest first; one sample per second (the highest).
    samples: VecDeque<(u64, u64)>,
    max_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: VecDeque<Entry>,
    next_id: u64,
    /// None until the first slow request (or after LATENCY RESET).
    latency: Option<LatencyEvent>,
}

/// The slow log and the latency monitor's one event.
#[derive(Debug)]
pub struct Slowlog {
    /// Requests at least this slow are logged; None = logging off (`slowlog.threshold_us` < 0).
    pub threshold_us: Option<u64>,
    pub max_len: usize,
    state: Mutex<State>,
}

impl Slowlog {
    pub fn new(threshold_us: Option<u64>, max_len: usize) -> Slowlog {
        Slowlog { threshold_us, max_len, state: Mutex::new(State::default()) }
    }

    /// The threshold in ns for the sessions' one compare (`u64::MAX`: off).
    pub fn threshold_ns(&self) -> u64 {
        self.threshold_us.map_or(u64::MAX, |us| us.saturating_mul(1000))
    }

    /// Logs a slow request.
    pub fn record(&self, r: SlowRequest<'_>) {
        let time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let entry_args = shown_args(r.command, r.args);
        let mut state = self.state.lock().expect("slowlog lock");
        let ms = r.duration_us / 1000;
        let event = state.latency.get_or_insert_with(LatencyEvent::default);
        match event.samples.back_mut() {
            Some((t, v)) if *t == time => *v = (*v).max(ms),
            _ => {
                if event.samples.len() == LATENCY_SAMPLES {
                    event.samples.pop_front();
                }
                event.samples.push_back((time, ms));
            }
        }
        event.max_ms = event.max_ms.max(ms);
        if self.max_len == 0 {
            return;
        }
        let id = state.next_id;
        state.next_id += 1;
        if state.entries.len() >= self.max_len {
            state.entries.pop_back();
        }
        state.entries.push_front(Entry {
            id,
            time,
            duration_us: r.duration_us,
            args: entry_args,
            client: r.client,
            client_name: Bytes::copy_from_slice(r.client_name.unwrap_or_default()),
            nodes: r.nodes,
            upstream_us: r.upstream_us.min(r.duration_us),
        });
    }

    pub fn len(&self) -> usize {
        self.state.lock().expect("slowlog lock").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest `count` entries, newest first.
    pub fn get(&self, count: usize) -> Vec<Entry> {
        self.state.lock().expect("slowlog lock").entries.iter().take(count).cloned().collect()
    }

    pub fn reset(&self) {
        self.state.lock().expect("slowlog lock").entries.clear();
    }
}

/// The arguments as an entry shows them: secrets replaced by `(redacted)`, at most [`MAX_ARGS`] (the last
/// saying how many more there were), each cut at [`MAX_ARG_BYTES`] with how many more bytes there were.
pub fn shown_args(command: Option<&str>, args: &[&[u8]]) -> Vec<Bytes> {
    let redacted = redacted_args(command, args);
    let keep = args.len().min(MAX_ARGS);
    let mut out = Vec::with_capacity(keep);
    for (i, arg) in args.iter().enumerate().take(keep) {
        if keep != args.len() && i == keep - 1 {
            out.push(Bytes::from(format!("... ({} more arguments)", args.len() - keep + 1)));
        } else if redacted.contains(&i) {
            out.push(Bytes::from_static(b"(redacted)"));
        } else if arg.len() > MAX_ARG_BYTES {
            let mut s = arg[..MAX_ARG_BYTES].to_vec();
            s.extend_from_slice(format!("... ({} more bytes)", arg.len() - MAX_ARG_BYTES).as_bytes());
            out.push(Bytes::from(s));
        } else {
            out.push(Bytes::copy_from_slice(arg));
        }
    }
    out
}

/// Positions of arguments that may hold a password, which Redis redacts too (AUTH, HELLO ... AUTH, MIGRATE ...
/// AUTH/AUTH2, ACL SETUSER's rules, CONFIG SET's values).
pub fn redacted_args(command: Option<&str>, args: &[&[u8]]) -> Vec<usize> {
    let eq = |i: usize, word: &[u8]| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(word));
    match command.unwrap_or("") {
        "auth" => (1..args.len()).collect(),
        "hello" => (0..args.len()).filter(|&i| eq(i, b"auth")).flat_map(|i| [i + 1, i + 2]).collect(),
        "migrate" => (0..args.len())
            .flat_map(|i| {
                if eq(i, b"auth") {
                    vec![i + 1]
                } else if eq(i, b"auth2") {
                    vec![i + 1, i + 2]
                } else {
                    vec![]
                }
            })
            .collect(),
        "acl|setuser" => (3..args.len()).collect(),
        "config|set" => (3..args.len()).step_by(2).collect(),
        _ => Vec::new(),
    }
}

fn err(msg: &str) -> Bytes {
    let mut b = BytesMut::new();
    encode::error(&mut b, msg);
    b.freeze()
}

fn help(lines: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    encode::array_header(&mut b, lines.len());
    for l in lines {
        encode::simple(&mut b, l);
    }
    b.freeze()
}

/// `SLOWLOG GET [count] | LEN | RESET | HELP`. `args[0]` is SLOWLOG.
pub fn slowlog_command(args: &[&[u8]], log: &Slowlog) -> Bytes {
    let sub = args.get(1).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    let arity_ok = match sub.as_slice() {
        b"get" => args.len() == 2 || args.len() == 3,
        b"len" | b"reset" | b"help" => args.len() == 2,
        _ => {
            let shown = args.get(1).map(|s| crate::dispatch::printable(s, 128)).unwrap_or_default();
            return err(&format!("ERR unknown subcommand '{shown}'. Try SLOWLOG HELP."));
        }
    };
    if !arity_ok {
        return err(&format!("ERR wrong number of arguments for 'slowlog|{}' command", String::from_utf8_lossy(&sub)));
    }
    let mut b = BytesMut::new();
    match sub.as_slice() {
        b"len" => encode::integer(&mut b, log.len() as i64),
        b"reset" => {
            log.reset();
            encode::simple(&mut b, "OK");
        }
        b"get" => {
            let count = match args.get(2) {
                None => 10,
                Some(a) => match std::str::from_utf8(a).ok().and_then(|s| s.parse::<i64>().ok()) {
                    None => return err("ERR value is not an integer or out of range"),
                    Some(-1) => usize::MAX,
                    Some(n) if n < -1 => return err("ERR count should be greater than or equal to -1"),
                    Some(n) => n as usize,
                },
            };
            let entries = log.get(count);
            encode::array_header(&mut b, entries.len());
            for e in &entries {
                // Redis's six fields, then slotway's: the nodes, µs waiting on them, µs inside slotway.
                encode::array_header(&mut b, 9);
                encode::integer(&mut b, e.id as i64);
                encode::integer(&mut b, e.time as i64);
                encode::integer(&mut b, e.duration_us as i64);
                encode::array_header(&mut b, e.args.len());
                for a in &e.args {
                    encode::bulk(&mut b, a);
                }
                encode::bulk(&mut b, e.client.as_bytes());
                encode::bulk(&mut b, &e.client_name);
                encode::bulk(&mut b, e.nodes.as_bytes());
                encode::integer(&mut b, e.upstream_us as i64);
                encode::integer(&mut b, (e.duration_us - e.upstream_us) as i64);
            }
        }
        _ => {
            return help(&[
                "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name, then (slotway) the nodes it went to, microseconds waiting on",
                "    them and microseconds inside slotway.",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
                "HELP",
                "    Print this help.",
            ])
        }
    }
    b.freeze()
}

/// `LATENCY LATEST | HISTORY event | RESET [event ...] | HISTOGRAM [command ...] | HELP`. `args[0]` is LATENCY.
pub fn latency_command(args: &[&[u8]], observe: &Observe, protocol: Protocol) -> Bytes {
    let sub = args.get(1).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    let arity_ok = match sub.as_slice() {
        b"latest" | b"help" | b"doctor" => args.len() == 2,
        b"history" => args.len() == 3,
        b"graph" => args.len() == 3,
        b"reset" | b"histogram" => args.len() >= 2,
        _ => {
            let shown = args.get(1).map(|s| crate::dispatch::printable(s, 128)).unwrap_or_default();
            return err(&format!("ERR unknown subcommand '{shown}'. Try LATENCY HELP."));
        }
    };
    if !arity_ok {
        return err(&format!("ERR wrong number of arguments for 'latency|{}' command", String::from_utf8_lossy(&sub)));
    }
    let log = &observe.slowlog;
    let mut b = BytesMut::new();
    match sub.as_slice() {
        b"latest" => {
            let state = log.state.lock().expect("slowlog lock");
            match state.latency.as_ref().and_then(|e| e.samples.back().map(|last| (e, last))) {
                Some((event, &(time, ms))) => {
                    encode::array_header(&mut b, 1);
                    encode::array_header(&mut b, 4);
                    encode::bulk(&mut b, LATENCY_EVENT.as_bytes());
                    encode::integer(&mut b, time as i64);
                    encode::integer(&mut b, ms as i64);
                    encode::integer(&mut b, event.max_ms as i64);
                }
                None => encode::array_header(&mut b, 0),
            }
        }
        b"history" => {
            let state = log.state.lock().expect("slowlog lock");
            let samples: Vec<(u64, u64)> = match &state.latency {
                Some(e) if args[2].eq_ignore_ascii_case(LATENCY_EVENT.as_bytes()) => {
                    e.samples.iter().copied().collect()
                }
                _ => Vec::new(),
            };
            encode::array_header(&mut b, samples.len());
            for (time, ms) in samples {
                encode::array_header(&mut b, 2);
                encode::integer(&mut b, time as i64);
                encode::integer(&mut b, ms as i64);
            }
        }
        b"reset" => {
            let mut state = log.state.lock().expect("slowlog lock");
            let named = args.len() == 2 || args[2..].iter().any(|a| a.eq_ignore_ascii_case(LATENCY_EVENT.as_bytes()));
            let reset = if named && state.latency.take().is_some() { 1 } else { 0 };
            encode::integer(&mut b, reset);
        }
        b"histogram" => return latency_histogram(&args[2..], observe, protocol),
        b"doctor" | b"graph" => {
            return err(&format!(
                "ERR unsupported command 'latency|{}': through slotway, use LATENCY LATEST/HISTORY/HISTOGRAM or the \
                 metrics endpoint's histograms",
                String::from_utf8_lossy(&sub)
            ))
        }
        _ => {
            return help(&[
                "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "LATEST",
                "    Return the latest latency samples for all events (slotway: event 'command', the requests",
                "    that reached slowlog.threshold_us).",
                "HISTORY <event>",
                "    Return time-latency samples for the <event> class.",
                "RESET [<event> ...]",
                "    Reset latency data of one or more <event> classes.",
                "    (default: reset all data for all event classes)",
                "HISTOGRAM [COMMAND ...]",
                "    Return a cumulative distribution of latencies in the format of a histogram for the specified",
                "    command names. If no commands are specified then all histograms are replied.",
                "HELP",
                "    Prints this help.",
            ])
        }
    }
    b.freeze()
}

/// LATENCY HISTOGRAM: per command with timed calls, `calls` and `histogram_usec` (cumulative counts at powers of
/// two µs, only where the count grows), as Redis 7 replies.
fn latency_histogram(names: &[&[u8]], observe: &Observe, protocol: Protocol) -> Bytes {
    let totals = observe.totals();
    let mut wanted: Vec<usize> = Vec::new();
    if names.is_empty() {
        wanted.extend(1..totals.commands.len());
    } else {
        for name in names {
            let lower = name.to_ascii_lowercase();
            for (i, c) in observe.table.iter().enumerate() {
                let full = c.name.as_bytes();
                let container = full.split(|&b| b == b'|').next().unwrap_or(full);
                if (full == lower.as_slice() || container == lower.as_slice()) && !wanted.contains(&(i + 1)) {
                    wanted.push(i + 1);
                }
            }
        }
    }
    let mut bounds = Vec::new();
    let mut bound = 1u64;
    while bound <= 1 << 25 {
        bounds.push(bound);
        bound <<= 1;
    }
    let rows: Vec<(&str, &Snapshot)> = wanted
        .iter()
        .filter_map(|&i| {
            let latency = totals.commands.get(i)?.latency.as_deref()?;
            (latency.count() > 0).then(|| (observe.command_name(i), latency))
        })
        .collect();
    let mut b = BytesMut::new();
    encode::map_header(&mut b, rows.len(), protocol);
    for (name, latency) in rows {
        encode::bulk(&mut b, name.as_bytes());
        encode::map_header(&mut b, 2, protocol);
        encode::bulk(&mut b, b"calls");
        encode::integer(&mut b, latency.count() as i64);
        encode::bulk(&mut b, b"histogram_usec");
        let cumulative = latency.cumulative(&bounds);
        let mut points = Vec::new();
        let mut previous = 0;
        for (&bound, &count) in bounds.iter().zip(&cumulative) {
            if count > previous {
                points.push((bound, count));
            }
            previous = count;
        }
        encode::map_header(&mut b, points.len(), protocol);
        for (bound, count) in points {
            encode::integer(&mut b, bound as i64);
            encode::integer(&mut b, count as i64);
        }
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(args: &'a [&'a [u8]], us: u64) -> SlowRequest<'a> {
        SlowRequest {
            command: Some("get"),
            args,
            duration_us: us,
            client: "127.0.0.1:5000".into(),
            client_name: Some(b"app"),
            nodes: "127.0.0.1:7000".into(),
            upstream_us: us / 2,
        }
    }

    #[test]
    fn bounded_newest_first_and_reset() {
        let log = Slowlog::new(Some(0), 3);
        for i in 0..5u64 {
            log.record(req(&[b"GET", b"k"], 1000 * (i + 1)));
        }
        assert_eq!(log.len(), 3);
        let got = log.get(10);
        assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), vec![4, 3, 2]);
        assert_eq!(got[0].duration_us, 5000);
        assert_eq!(got[0].upstream_us, 2500);
        assert_eq!(log.get(1).len(), 1);
        log.reset();
        assert!(log.is_empty());
        // Ids keep counting after a reset, as in Redis.
        log.record(req(&[b"GET", b"k"], 1));
        assert_eq!(log.get(1)[0].id, 5);
        assert_eq!(Slowlog::new(None, 1).threshold_ns(), u64::MAX);
        assert_eq!(Slowlog::new(Some(7), 1).threshold_ns(), 7000);
    }

    #[test]
    fn arguments_cut_as_redis_does() {
        let long = vec![b'x'; 200];
        let args: Vec<&[u8]> = vec![b"SET", b"k", &long];
        let shown = shown_args(Some("set"), &args);
        assert_eq!(shown[2].len(), 128 + "... (72 more bytes)".len());
        assert!(shown[2].ends_with(b"... (72 more bytes)"));
        let many: Vec<Vec<u8>> = (0..40).map(|i| format!("a{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = many.iter().map(|v| v.as_slice()).collect();
        let shown = shown_args(Some("mget"), &refs);
        assert_eq!(shown.len(), 32);
        assert_eq!(&shown[30][..], b"a30");
        assert_eq!(&shown[31][..], b"... (9 more arguments)");
        // Exactly 32: all kept.
        assert_eq!(shown_args(None, &refs[..32]).len(), 32);
        assert_eq!(&shown_args(None, &refs[..32])[31][..], b"a31");
    }

    #[test]
    fn secrets_are_redacted() {
        let shown = |cmd: &str, args: &[&[u8]]| -> Vec<String> {
            shown_args(Some(cmd), args).iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
        };
        assert_eq!(shown("auth", &[b"AUTH", b"u", b"pw"]), ["AUTH", "(redacted)", "(redacted)"]);
        assert_eq!(
            shown("hello", &[b"HELLO", b"3", b"auth", b"u", b"pw", b"SETNAME", b"n"]),
            ["HELLO", "3", "auth", "(redacted)", "(redacted)", "SETNAME", "n"]
        );
        assert_eq!(
            shown("config|set", &[b"CONFIG", b"SET", b"masterauth", b"pw", b"maxmemory", b"1"]),
            ["CONFIG", "SET", "masterauth", "(redacted)", "maxmemory", "(redacted)"]
        );
        assert_eq!(shown("acl|setuser", &[b"ACL", b"SETUSER", b"u", b">pw"]), ["ACL", "SETUSER", "u", "(redacted)"]);
        let m = shown("migrate", &[b"MIGRATE", b"h", b"1", b"k", b"0", b"5", b"AUTH2", b"u", b"pw"]);
        assert_eq!(&m[6..], ["AUTH2", "(redacted)", "(redacted)"]);
    }

    #[test]
    fn slowlog_replies() {
        let log = Slowlog::new(Some(0), 10);
        log.record(req(&[b"GET", b"k"], 2000));
        let get = slowlog_command(&[b"SLOWLOG", b"GET"], &log);
        let text = String::from_utf8_lossy(&get);
        assert!(text.starts_with("*1\r\n*9\r\n:0\r\n:"), "{text}");
        assert!(text.contains(":2000\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n$14\r\n127.0.0.1:5000\r\n$3\r\napp\r\n"));
        assert!(text.ends_with("$14\r\n127.0.0.1:7000\r\n:1000\r\n:1000\r\n"), "{text}");
        assert_eq!(&slowlog_command(&[b"SLOWLOG", b"LEN"], &log)[..], b":1\r\n");
        assert_eq!(&slowlog_command(&[b"slowlog", b"get", b"0"], &log)[..], b"*0\r\n");
        assert_eq!(&slowlog_command(&[b"slowlog", b"get", b"-1"], &log)[..4], b"*1\r\n");
        assert!(slowlog_command(&[b"slowlog", b"get", b"-2"], &log).starts_with(b"-ERR count should be"));
        assert!(slowlog_command(&[b"slowlog", b"get", b"x"], &log).starts_with(b"-ERR value is not an integer"));
        assert!(slowlog_command(&[b"slowlog", b"len", b"x"], &log).starts_with(b"-ERR wrong number of arguments"));
        assert!(slowlog_command(&[b"slowlog", b"nope"], &log).starts_with(b"-ERR unknown subcommand 'nope'"));
        assert_eq!(&slowlog_command(&[b"SLOWLOG", b"RESET"], &log)[..], b"+OK\r\n");
        assert_eq!(&slowlog_command(&[b"SLOWLOG", b"LEN"], &log)[..], b":0\r\n");
        // max_len 0: nothing is kept (the latency event still is).
        let none = Slowlog::new(Some(0), 0);
        none.record(req(&[b"GET", b"k"], 5000));
        assert!(none.is_empty());
        assert_eq!(none.state.lock().unwrap().latency.as_ref().unwrap().max_ms, 5);
    }

    #[test]
    fn latency_monitor_and_histogram() {
        let observe = Observe::new(
            std::sync::Arc::new(crate::command::CommandTable::builtin()),
            1,
            true,
            Slowlog::new(Some(0), 10),
        );
        let p = Protocol::Resp2;
        assert_eq!(&latency_command(&[b"LATENCY", b"LATEST"], &observe, p)[..], b"*0\r\n");
        observe.slowlog.record(req(&[b"GET", b"k"], 15_000));
        observe.slowlog.record(req(&[b"GET", b"k"], 3_000));
        let latest = String::from_utf8_lossy(&latency_command(&[b"LATENCY", b"LATEST"], &observe, p)).into_owned();
        assert!(latest.starts_with("*1\r\n*4\r\n$7\r\ncommand\r\n:"), "{latest}");
        assert!(latest.ends_with(":15\r\n"), "max 15 ms: {latest}");
        let history = latency_command(&[b"LATENCY", b"HISTORY", b"command"], &observe, p);
        assert!(history.starts_with(b"*1\r\n*2\r\n:") || history.starts_with(b"*2\r\n"), "{history:?}");
        assert_eq!(&latency_command(&[b"LATENCY", b"HISTORY", b"other"], &observe, p)[..], b"*0\r\n");
        assert_eq!(&latency_command(&[b"LATENCY", b"RESET"], &observe, p)[..], b":1\r\n");
        assert_eq!(&latency_command(&[b"LATENCY", b"RESET"], &observe, p)[..], b":0\r\n");
        assert!(latency_command(&[b"LATENCY", b"DOCTOR"], &observe, p).starts_with(b"-ERR unsupported"));

        let get = observe.table.lookup(b"get").unwrap().index + 1;
        let w = observe.worker(0);
        for us in [3u64, 3, 100] {
            w.finish(get, super::super::Outcome::Ok, Some(us * 1000 + 1));
        }
        let h = latency_command(&[b"LATENCY", b"HISTOGRAM", b"GET", b"set"], &observe, p);
        // get: 2 calls below 4 µs, the third below 128 µs; set never ran (left out).
        assert_eq!(
            &h[..],
            &b"*2\r\n$3\r\nget\r\n*4\r\n$5\r\ncalls\r\n:3\r\n$14\r\nhistogram_usec\r\n*4\r\n:4\r\n:2\r\n:128\r\n:3\r\n"
                [..]
        );
        let all = latency_command(&[b"LATENCY", b"HISTOGRAM"], &observe, Protocol::Resp3);
        assert!(all.starts_with(b"%1\r\n$3\r\nget\r\n%2\r\n"), "{all:?}");
    }
}
