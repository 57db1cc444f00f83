//! A script that runs long, seen as one server would show it. On a standalone Redis, a script (or function) that
//! has run longer than `busy-reply-threshold` makes the server answer every other client's command `-BUSY ...`,
//! except the few flagged `allow-busy` (SCRIPT KILL, FUNCTION KILL, MULTI, DISCARD, WATCH, AUTH, HELLO, ...); EXEC
//! then answers `-EXECABORT Transaction discarded because of: BUSY ...`. Behind slotway a script keeps only its own
//! node busy, so with `client.busy_script_scope = "endpoint"` (the default) slotway answers as that server would:
//! while a script sent by one of its clients has been unanswered longer than the threshold, other clients' commands
//! get the BUSY error from slotway. With `"node"`, only commands for the busy node wait (or get the node's BUSY).
//!
//! The threshold is the nodes' `busy-reply-threshold` (alias `lua-time-limit`), read at start and followed through
//! CONFIG SET sent through slotway.
//!
//! Cost: sending a script and getting its reply take a lock each; every other command reads one atomic while no
//! script is in flight, and the clock too while one is.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What kind of script is running: the BUSY error names the command that can kill it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ScriptKind {
    Eval,
    Function,
}

/// The scripts slotway's clients have in flight.
#[derive(Debug)]
pub struct Scripts {
    inflight: Mutex<BTreeMap<u64, (Instant, ScriptKind)>>,
    next: AtomicU64,
    /// When the oldest script in flight was sent, in ms after `epoch` (+1; 0 = none).
    oldest_ms: AtomicU64,
    /// `busy-reply-threshold` in ms.
    threshold_ms: AtomicU64,
    epoch: Instant,
}

/// One script in flight; dropping it (its reply came, or its client left) takes it out.
#[derive(Debug)]
pub struct Ticket {
    id: u64,
    scripts: Arc<Scripts>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut m = self.scripts.inflight.lock().expect("scripts lock");
        m.remove(&self.id);
        self.scripts.store_oldest(&m);
    }
}

impl Scripts {
    pub fn new(threshold: Duration) -> Scripts {
        Scripts {
            inflight: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            oldest_ms: AtomicU64::new(0),
            threshold_ms: AtomicU64::new(threshold.as_millis() as u64),
            epoch: Instant::now(),
        }
    }

    /// A script was sent now.
    pub fn begin(self: &Arc<Self>, kind: ScriptKind) -> Ticket {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut m = self.inflight.lock().expect("scripts lock");
        m.insert(id, (Instant::now(), kind));
        self.store_oldest(&m);
        Ticket { id, scripts: self.clone() }
    }

    /// Tickets are numbered in sending order, so the first one in the map is the oldest.
    fn store_oldest(&self, m: &BTreeMap<u64, (Instant, ScriptKind)>) {
        let oldest = m.values().next().map_or(0, |(at, _)| at.duration_since(self.epoch).as_millis() as u64 + 1);
        self.oldest_ms.store(oldest, Ordering::Release);
    }

    /// CONFIG SET busy-reply-threshold / lua-time-limit went through slotway.
    pub fn set_threshold(&self, ms: u64) {
        self.threshold_ms.store(ms, Ordering::Relaxed);
    }

    /// The running script's kind when one has been in flight longer than the threshold.
    pub fn busy(&self) -> Option<ScriptKind> {
        let oldest = self.oldest_ms.load(Ordering::Acquire);
        if oldest == 0 {
            return None;
        }
        let running = (self.epoch.elapsed().as_millis() as u64 + 1).saturating_sub(oldest);
        if running <= self.threshold_ms.load(Ordering::Relaxed) {
            return None;
        }
        self.inflight.lock().expect("scripts lock").values().next().map(|&(_, kind)| kind)
    }
}

/// Redis's BUSY error for a running script of `kind`.
pub fn busy_error(kind: ScriptKind) -> &'static str {
    match kind {
        ScriptKind::Eval => "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        ScriptKind::Function => {
            "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
        }
    }
}

/// The kind of script a command runs, if it runs one.
pub fn script_kind(name: &str) -> Option<ScriptKind> {
    match name {
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" => Some(ScriptKind::Eval),
        "fcall" | "fcall_ro" => Some(ScriptKind::Function),
        _ => None,
    }
}

/// The threshold a CONFIG SET sets, if it sets one (`busy-reply-threshold` or its alias `lua-time-limit`).
pub fn threshold_set(args: crate::command::Args<'_>) -> Option<u64> {
    if args.len() < 4 || !args.get(1).eq_ignore_ascii_case(b"set") {
        return None;
    }
    (2..args.len() - 1).step_by(2).find_map(|i| {
        let name = args.get(i);
        (name.eq_ignore_ascii_case(b"busy-reply-threshold") || name.eq_ignore_ascii_case(b"lua-time-limit"))
            .then(|| std::str::from_utf8(args.get(i + 1)).ok()?.parse::<u64>().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_while_a_script_is_in_flight_longer_than_the_threshold() {
        let s = Arc::new(Scripts::new(Duration::from_millis(30)));
        assert_eq!(s.busy(), None);
        let a = s.begin(ScriptKind::Function);
        assert_eq!(s.busy(), None, "not yet past the threshold");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(s.busy(), Some(ScriptKind::Function));
        let b = s.begin(ScriptKind::Eval);
        drop(a);
        assert_eq!(s.busy(), None, "the one left started just now");
        s.set_threshold(0);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(s.busy(), Some(ScriptKind::Eval));
        drop(b);
        assert_eq!(s.busy(), None);
    }

    #[test]
    fn config_set_of_the_threshold_is_seen() {
        let words = |w: &[&str]| {
            let mut frame = Vec::new();
            let mut ranges = Vec::new();
            for x in w {
                ranges.push(frame.len()..frame.len() + x.len());
                frame.extend_from_slice(x.as_bytes());
            }
            (frame, ranges)
        };
        let (f, r) = words(&["CONFIG", "SET", "maxmemory", "0", "LUA-TIME-LIMIT", "10"]);
        assert_eq!(threshold_set(crate::command::Args { frame: &f, ranges: &r }), Some(10));
        let (f, r) = words(&["CONFIG", "SET", "busy-reply-threshold", "x"]);
        assert_eq!(threshold_set(crate::command::Args { frame: &f, ranges: &r }), None);
        let (f, r) = words(&["CONFIG", "GET", "busy-reply-threshold"]);
        assert_eq!(threshold_set(crate::command::Args { frame: &f, ranges: &r }), None);
    }
}
