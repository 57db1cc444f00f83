//! What slotway measures about the requests it serves, and the Redis-format views of it: per-command counts and
//! latency histograms, outcomes, errors by code, network bytes, the slow log, per-client tracing.
//!
//! **Recording** happens in the sessions, per worker thread, without locks or atomic read-modify-writes: each
//! worker owns a [`WorkerStats`] (and each node pool a histogram per worker, see
//! [`crate::upstream::NodePool::round_trip`]) that only that worker writes ([`histogram::Cell`]). A session reads
//! the clock once per wake-up ([`Observe::tracking`] off: never), stamps the requests it reads and the parts it
//! sends with that time, and records each request when its reply leaves the FIFO ([`WorkerStats::finish`]). Error
//! codes (errorstats) and slow requests take a mutex: they are off the fast path by nature.
//!
//! **Reading** ([`Observe::totals`]) sums every worker's cells: for `/metrics` (Prometheus histograms, see
//! [`prometheus`]), INFO's `commandstats`, `latencystats`, `errorstats` and `stats` ([`info`]), and LATENCY
//! HISTOGRAM ([`slowlog`]).
pub mod histogram;
pub mod info;
pub mod prometheus;
pub mod slowlog;

use crate::command::CommandTable;
use histogram::{Cell, Histogram, Snapshot};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// At most this many distinct error codes are counted (as Redis does); later new codes count as
/// [`ERRORSTATS_OVERFLOW`].
pub const MAX_ERROR_CODES: usize = 128;
/// The code counted for new error codes once [`MAX_ERROR_CODES`] are known.
pub const ERRORSTATS_OVERFLOW: &str = "ERRORSTATS_OVERFLOW";
/// The `command` label of requests whose command slotway doesn't know.
pub const UNKNOWN_COMMAND: &str = "unknown";

/// How a request ended, for the `outcome` label. One per request, the first that applies in this order.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Refused by slotway before reaching a node: unknown command, arity, CROSSSLOT, ACL (Redis's
    /// `rejected_calls`).
    Rejected = 0,
    /// Given up because `cluster.retry_deadline_ms` passed while retrying.
    Timeout,
    /// slotway's own error because no node could answer (after retries, or a write whose connection was lost).
    Unavailable,
    /// The node's error reply (or slotway's error in the node's place, e.g. no free dedicated connection).
    Error,
    /// Answered after following MOVED or ASK.
    Redirected,
    /// Answered after a retry (TRYAGAIN, CLUSTERDOWN, a node not ready or unreachable, a lost read).
    Retried,
    Ok,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Rejected,
        Outcome::Timeout,
        Outcome::Unavailable,
        Outcome::Error,
        Outcome::Redirected,
        Outcome::Retried,
        Outcome::Ok,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Rejected => "rejected",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
            Outcome::Redirected => "redirected",
            Outcome::Retried => "retried",
            Outcome::Ok => "ok",
        }
    }

    /// From the flags a session collected while the request was under way and whether its reply is an error.
    #[inline]
    pub fn classify(flags: u8, error_reply: bool) -> Outcome {
        if flags == 0 {
            return if error_reply { Outcome::Error } else { Outcome::Ok };
        }
        if flags & flags::REJECTED != 0 {
            Outcome::Rejected
        } else if flags & flags::TIMEOUT != 0 {
            Outcome::Timeout
        } else if flags & flags::UNAVAILABLE != 0 {
            Outcome::Unavailable
        } else if error_reply {
            Outcome::Error
        } else if flags & flags::REDIRECTED != 0 {
            Outcome::Redirected
        } else if flags & flags::RETRIED != 0 {
            Outcome::Retried
        } else {
            Outcome::Ok
        }
    }
}

/// What happened to a request on its way (a session keeps these bits per pending request).
pub mod flags {
    pub const REJECTED: u8 = 1;
    pub const TIMEOUT: u8 = 2;
    pub const UNAVAILABLE: u8 = 4;
    pub const REDIRECTED: u8 = 8;
    pub const RETRIED: u8 = 16;
}

/// One command's counters on one worker.
#[derive(Debug, Default)]
struct CommandCells {
    /// Requests that ran (or were sent), failed ones included (Redis's `calls`).
    calls: Cell,
    /// Of `calls`, those answered with an error.
    failed: Cell,
    /// Refused before running (not in `calls`).
    rejected: Cell,
    /// End-to-end durations, allocated on the command's first timed request.
    latency: OnceLock<Box<Histogram>>,
}

#[derive(Debug, Default)]
struct OutcomeCells {
    count: Cell,
    latency: Histogram,
}

/// One worker's counters. Written only by that worker's sessions (see the module docs).
#[derive(Debug)]
pub struct WorkerStats {
    /// By command table index + 1; `[0]` = unknown commands.
    commands: Box<[CommandCells]>,
    outcomes: [OutcomeCells; 7],
    net_input: Cell,
    net_output: Cell,
    reads: Cell,
    writes: Cell,
    /// Error replies by code (errorstats): error replies are not the fast path, and the lock is this worker's.
    errors: Mutex<HashMap<Box<str>, u64>>,
}

impl WorkerStats {
    fn new(commands: usize) -> WorkerStats {
        WorkerStats {
            commands: (0..commands + 1).map(|_| CommandCells::default()).collect(),
            outcomes: std::array::from_fn(|_| OutcomeCells::default()),
            net_input: Cell::default(),
            net_output: Cell::default(),
            reads: Cell::default(),
            writes: Cell::default(),
            errors: Mutex::new(HashMap::new()),
        }
    }

    /// A request's reply left the session's FIFO. `command` is its table index + 1 (0: unknown); `elapsed_ns`
    /// its end-to-end time when latency tracking is on.
    #[inline]
    pub fn finish(&self, command: u32, outcome: Outcome, elapsed_ns: Option<u64>) {
        let cells = &self.commands[(command as usize).min(self.commands.len() - 1)];
        let o = &self.outcomes[outcome as usize];
        o.count.add(1);
        if outcome == Outcome::Rejected {
            cells.rejected.add(1);
            // Not run: no duration (as Redis's `rejected_calls`); the outcome histogram still shows it.
            if let Some(ns) = elapsed_ns {
                o.latency.record(ns);
            }
            return;
        }
        cells.calls.add(1);
        if matches!(outcome, Outcome::Error | Outcome::Unavailable | Outcome::Timeout) {
            cells.failed.add(1);
        }
        if let Some(ns) = elapsed_ns {
            let bucket = histogram::bucket_of(ns / 1000);
            o.latency.record_in(bucket, ns);
            cells.latency.get_or_init(Box::default).record_in(bucket, ns);
        }
    }

    /// Counts an error reply by its code (the first word, as Redis's errorstats).
    pub fn error(&self, reply: &[u8]) {
        let code = error_code(reply);
        let mut errors = self.errors.lock().expect("errorstats lock");
        if let Some(n) = errors.get_mut(code) {
            *n += 1;
        } else if errors.len() < MAX_ERROR_CODES {
            errors.insert(code.into(), 1);
        } else {
            *errors.entry(ERRORSTATS_OVERFLOW.into()).or_insert(0) += 1;
        }
    }

    /// Bytes read from a client (one read).
    #[inline]
    pub fn read(&self, bytes: usize) {
        self.net_input.add(bytes as u64);
        self.reads.add(1);
    }

    /// Bytes written to a client (one write).
    #[inline]
    pub fn wrote(&self, bytes: usize) {
        self.net_output.add(bytes as u64);
        self.writes.add(1);
    }
}

/// The code of an error reply: its first word (`ERR`, `WRONGTYPE`, `MOVED`...), at most 32 bytes of
/// `A-Z0-9_-` (anything else makes it `ERR`, so the set of codes stays bounded and printable).
pub fn error_code(reply: &[u8]) -> &str {
    let body = match reply.first() {
        Some(b'-') => &reply[1..],
        // A RESP3 blob error: `!<len>\r\n<text>`.
        Some(b'!') => reply.iter().position(|&b| b == b'\n').map_or(&[][..], |i| &reply[i + 1..]),
        _ => reply,
    };
    let end = body.iter().position(|&b| b == b' ' || b == b'\r').unwrap_or(body.len());
    let word = &body[..end];
    let valid = !word.is_empty()
        && word.len() <= 32
        && word.iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        std::str::from_utf8(word).unwrap_or("ERR")
    } else {
        "ERR"
    }
}

/// One command's totals over every worker.
#[derive(Debug, Clone, Default)]
pub struct CommandTotals {
    pub calls: u64,
    pub failed: u64,
    pub rejected: u64,
    /// None when the command never ran timed.
    pub latency: Option<Box<Snapshot>>,
}

/// Every worker's counters summed.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// By command table index + 1 (`[0]`: unknown commands).
    pub commands: Vec<CommandTotals>,
    pub outcomes: Vec<(Outcome, u64, Snapshot)>,
    pub errors: Vec<(String, u64)>,
    pub net_input: u64,
    pub net_output: u64,
    pub reads: u64,
    pub writes: u64,
}

impl Totals {
    pub fn error_replies(&self) -> u64 {
        self.errors.iter().map(|(_, n)| n).sum()
    }
}

/// `SLOTWAY TRACE`: which clients get per-request log lines. Clients are marked by id (a flag on their registry
/// entry); names are remembered so that a client that takes the name later is traced too.
#[derive(Debug, Default)]
pub struct TraceNames {
    any: AtomicBool,
    names: Mutex<Vec<Vec<u8>>>,
}

impl TraceNames {
    pub fn add(&self, name: &[u8]) {
        let mut names = self.names.lock().expect("trace names lock");
        if !names.iter().any(|n| n == name) {
            names.push(name.to_vec());
        }
        self.any.store(true, Ordering::Relaxed);
    }

    pub fn remove(&self, name: &[u8]) -> bool {
        let mut names = self.names.lock().expect("trace names lock");
        let before = names.len();
        names.retain(|n| n != name);
        self.any.store(!names.is_empty(), Ordering::Relaxed);
        names.len() != before
    }

    /// Whether a client with this name is to be traced (a load when no name is traced at all).
    pub fn contains(&self, name: &[u8]) -> bool {
        self.any.load(Ordering::Relaxed) && self.names.lock().expect("trace names lock").iter().any(|n| n == name)
    }

    pub fn list(&self) -> Vec<Vec<u8>> {
        self.names.lock().expect("trace names lock").clone()
    }
}

/// Network and command rates, sampled every 100 ms as Redis's `instantaneous_*` fields are (the mean over the
/// last 16 samples).
#[derive(Debug, Default)]
struct Rates {
    last: Option<(Instant, [u64; 3])>,
    /// Per-second rates of commands, input bytes, output bytes.
    samples: std::collections::VecDeque<[f64; 3]>,
}

const RATE_SAMPLES: usize = 16;
/// How often [`Observe::sample_rates`] should be called.
pub const RATE_INTERVAL: Duration = Duration::from_millis(100);

/// What every session records into and INFO, SLOWLOG, LATENCY and `/metrics` read.
#[derive(Debug)]
pub struct Observe {
    /// Latency tracking on (`latency_tracking`): sessions read the clock, histograms and the slow log fill.
    pub tracking: bool,
    pub slowlog: slowlog::Slowlog,
    pub trace: TraceNames,
    pub table: Arc<CommandTable>,
    workers: Box<[Arc<WorkerStats>]>,
    rates: Mutex<Rates>,
    /// A random 40-hex-digit id of this process (INFO server's `run_id`).
    pub run_id: String,
}

impl Observe {
    pub fn new(table: Arc<CommandTable>, workers: usize, tracking: bool, slowlog: slowlog::Slowlog) -> Observe {
        let run_id = (0..40).map(|_| char::from_digit(rand::random_range(0..16u32), 16).expect("hex")).collect();
        Observe {
            tracking,
            slowlog,
            trace: TraceNames::default(),
            workers: (0..workers.max(1)).map(|_| Arc::new(WorkerStats::new(table.len()))).collect(),
            table,
            rates: Mutex::new(Rates::default()),
            run_id,
        }
    }

    /// The counters worker `worker`'s sessions write.
    pub fn worker(&self, worker: usize) -> Arc<WorkerStats> {
        self.workers[worker % self.workers.len()].clone()
    }

    /// The command name for a [`WorkerStats::finish`] index (`unknown` for 0).
    pub fn command_name(&self, index: usize) -> &str {
        index.checked_sub(1).and_then(|i| self.table.by_index(i as u32)).map_or(UNKNOWN_COMMAND, |c| c.name.as_str())
    }

    /// Every worker's counters summed, now.
    pub fn totals(&self) -> Totals {
        let n = self.table.len() + 1;
        let mut t = Totals {
            commands: vec![CommandTotals::default(); n],
            outcomes: Outcome::ALL.iter().map(|&o| (o, 0, Snapshot::default())).collect(),
            ..Totals::default()
        };
        let mut errors: HashMap<Box<str>, u64> = HashMap::new();
        for w in self.workers.iter() {
            for (total, cells) in t.commands.iter_mut().zip(w.commands.iter()) {
                total.calls += cells.calls.get();
                total.failed += cells.failed.get();
                total.rejected += cells.rejected.get();
                if let Some(h) = cells.latency.get() {
                    h.add_to(total.latency.get_or_insert_with(Box::default));
                }
            }
            for (o, count, snap) in t.outcomes.iter_mut() {
                let cells = &w.outcomes[*o as usize];
                *count += cells.count.get();
                cells.latency.add_to(snap);
            }
            for (code, n) in w.errors.lock().expect("errorstats lock").iter() {
                *errors.entry(code.clone()).or_insert(0) += n;
            }
            t.net_input += w.net_input.get();
            t.net_output += w.net_output.get();
            t.reads += w.reads.get();
            t.writes += w.writes.get();
        }
        let mut errors: Vec<(String, u64)> = errors.into_iter().map(|(k, v)| (k.into(), v)).collect();
        errors.sort();
        t.errors = errors;
        t
    }

    /// Takes a rate sample (commands received so far, bytes in and out). Called every [`RATE_INTERVAL`].
    pub fn sample_rates(&self, commands: u64) {
        let (mut input, mut output) = (0, 0);
        for w in self.workers.iter() {
            input += w.net_input.get();
            output += w.net_output.get();
        }
        let now = Instant::now();
        let current = [commands, input, output];
        let mut rates = self.rates.lock().expect("rates lock");
        if let Some((at, prev)) = rates.last {
            let secs = now.duration_since(at).as_secs_f64().max(1e-3);
            let sample = std::array::from_fn(|i| current[i].saturating_sub(prev[i]) as f64 / secs);
            if rates.samples.len() == RATE_SAMPLES {
                rates.samples.pop_front();
            }
            rates.samples.push_back(sample);
        }
        rates.last = Some((now, current));
    }

    /// The mean of the recent rate samples: (commands/s, input bytes/s, output bytes/s).
    pub fn rates(&self) -> (f64, f64, f64) {
        let rates = self.rates.lock().expect("rates lock");
        let n = rates.samples.len().max(1) as f64;
        let sum = rates.samples.iter().fold([0.0; 3], |acc, s| std::array::from_fn(|i| acc[i] + s[i]));
        (sum[0] / n, sum[1] / n, sum[2] / n)
    }
}

/// Samples the rates every [`RATE_INTERVAL`] until shutdown (on the control runtime).
pub async fn sample_rates(
    observe: Arc<Observe>,
    metrics: Arc<crate::metrics::Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(RATE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => observe.sample_rates(metrics.commands_received.load(Ordering::Relaxed)),
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe() -> Observe {
        Observe::new(Arc::new(CommandTable::builtin()), 2, true, slowlog::Slowlog::new(Some(10_000), 128))
    }

    #[test]
    fn totals_sum_every_worker() {
        let o = observe();
        let get = o.table.lookup(b"get").unwrap().index + 1;
        let (a, b) = (o.worker(0), o.worker(1));
        a.finish(get, Outcome::Ok, Some(100_000));
        b.finish(get, Outcome::Error, Some(300_000));
        b.finish(get, Outcome::Rejected, Some(1_000));
        b.finish(0, Outcome::Rejected, None);
        a.error(b"-WRONGTYPE Operation against a key\r\n");
        b.error(b"-WRONGTYPE x\r\n");
        b.error(b"-ERR unknown command\r\n");
        a.read(10);
        b.wrote(5);
        let t = o.totals();
        let g = &t.commands[get as usize];
        assert_eq!((g.calls, g.failed, g.rejected), (2, 1, 1));
        let lat = g.latency.as_ref().unwrap();
        assert_eq!((lat.count(), lat.sum_ns), (2, 400_000), "rejected requests have no command latency");
        assert_eq!(t.commands[0].rejected, 1);
        assert_eq!(o.command_name(get as usize), "get");
        assert_eq!(o.command_name(0), UNKNOWN_COMMAND);
        let count = |x: Outcome| t.outcomes.iter().find(|(o, _, _)| *o == x).map(|(_, n, s)| (*n, s.count())).unwrap();
        assert_eq!(count(Outcome::Ok), (1, 1));
        assert_eq!(count(Outcome::Error), (1, 1));
        assert_eq!(count(Outcome::Rejected), (2, 1), "counted always, timed when a duration is given");
        assert_eq!(t.errors, vec![("ERR".to_string(), 1), ("WRONGTYPE".to_string(), 2)]);
        assert_eq!(t.error_replies(), 3);
        assert_eq!((t.net_input, t.reads, t.net_output, t.writes), (10, 1, 5, 1));
    }

    #[test]
    fn error_codes_are_bounded() {
        assert_eq!(error_code(b"-ERR wrong\r\n"), "ERR");
        assert_eq!(error_code(b"-NOSCRIPT No matching script\r\n"), "NOSCRIPT");
        assert_eq!(error_code(b"-CROSSSLOT Keys\r\n"), "CROSSSLOT");
        assert_eq!(error_code(b"!21\r\nSYNTAX invalid syntax\r\n"), "SYNTAX");
        assert_eq!(error_code(b"-lowercase thing\r\n"), "ERR");
        assert_eq!(error_code(b"-\r\n"), "ERR");
        let o = observe();
        let w = o.worker(0);
        for i in 0..MAX_ERROR_CODES + 10 {
            w.error(format!("-CODE{i} x\r\n").as_bytes());
        }
        let t = o.totals();
        assert_eq!(t.errors.len(), MAX_ERROR_CODES + 1);
        assert_eq!(t.errors.iter().find(|(c, _)| c == ERRORSTATS_OVERFLOW).unwrap().1, 10);
    }

    #[test]
    fn outcome_priority() {
        use flags::*;
        assert_eq!(Outcome::classify(0, false), Outcome::Ok);
        assert_eq!(Outcome::classify(0, true), Outcome::Error);
        assert_eq!(Outcome::classify(REDIRECTED, false), Outcome::Redirected);
        assert_eq!(Outcome::classify(REDIRECTED | RETRIED, true), Outcome::Error);
        assert_eq!(Outcome::classify(RETRIED | UNAVAILABLE, true), Outcome::Unavailable);
        assert_eq!(Outcome::classify(RETRIED | TIMEOUT | UNAVAILABLE, true), Outcome::Timeout);
        assert_eq!(Outcome::classify(REJECTED, true), Outcome::Rejected);
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
    }

    #[test]
    fn trace_names() {
        let t = TraceNames::default();
        assert!(!t.contains(b"a"));
        t.add(b"a");
        t.add(b"a");
        assert!(t.contains(b"a") && !t.contains(b"b"));
        assert_eq!(t.list(), vec![b"a".to_vec()]);
        assert!(t.remove(b"a"));
        assert!(!t.remove(b"a"));
        assert!(!t.contains(b"a"));
    }
}
