//! MONITOR: the commands slotway's clients send, printed as Redis prints them, streamed to every client that
//! asked. One line per command, as a simple string:
//!
//! ```text
//! +1733347200.123456 [0 127.0.0.1:52144] "set" "k" "v"
//! ```
//!
//! Every client of this slotway process is seen (a command slotway answers itself included), in the order each
//! session handles its commands; commands of other slotway processes, or sent to the nodes directly, are not.
//! As in Redis, administrative commands (flag `admin`: CONFIG, ACL SETUSER, MONITOR, ...) are not shown and AUTH's
//! and HELLO's passwords are redacted; unlike Redis, a script's EVAL is shown (slotway can't see the commands the
//! script runs on its node, which Redis shows instead).
//!
//! Cost: one relaxed load per command while nobody monitors; with monitors, a line per command and a lock to hand
//! it over. A monitor that doesn't read is disconnected at `client.pubsub_output_limit_bytes` of lines waiting.
use crate::command::{Args, CommandInfo};
use crate::upstream::subscriber::OutputBudget;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// The clients in MONITOR mode.
#[derive(Debug, Default)]
pub struct Monitors {
    /// How many watch: the per-command check is this one load.
    active: AtomicUsize,
    watchers: Mutex<Vec<Watcher>>,
}

#[derive(Debug)]
struct Watcher {
    id: u64,
    tx: mpsc::UnboundedSender<Bytes>,
    budget: Arc<OutputBudget>,
}

/// A session's place among the monitors: lines arrive on `rx`; dropping it stops them.
#[derive(Debug)]
pub struct Watching {
    pub rx: mpsc::UnboundedReceiver<Bytes>,
    /// Lines queued and not yet taken by the session.
    pub budget: Arc<OutputBudget>,
    id: u64,
    monitors: Arc<Monitors>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut w = self.monitors.watchers.lock().expect("monitors lock");
        w.retain(|x| x.id != self.id);
        self.monitors.active.store(w.len(), Ordering::Relaxed);
    }
}

impl Monitors {
    /// Whether anyone monitors (checked before building a line).
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// Starts sending lines to client `id`, at most `limit` bytes of them waiting (0: no limit).
    pub fn watch(self: &Arc<Self>, id: u64, limit: usize) -> Watching {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(OutputBudget::new(limit));
        let mut w = self.watchers.lock().expect("monitors lock");
        w.retain(|x| x.id != id);
        w.push(Watcher { id, tx, budget: budget.clone() });
        self.active.store(w.len(), Ordering::Relaxed);
        Watching { rx, budget, id, monitors: self.clone() }
    }

    /// Hands a line to every monitor (its session checks the budget and disconnects one that overflows).
    pub fn feed(&self, line: Bytes) {
        let w = self.watchers.lock().expect("monitors lock");
        for x in w.iter() {
            if !x.budget.is_over() {
                x.budget.charge(line.len());
                let _ = x.tx.send(line.clone());
            }
        }
    }
}

/// Whether MONITOR shows this command (Redis hides administrative ones).
pub fn shown(info: &CommandInfo) -> bool {
    !info.flags.admin
}

/// The line for one command of the client at `addr` working in database `db`, as Redis's `replicationFeedMonitors` writes it: the time
/// with microseconds, the database and the client's address, then every argument quoted as `sdscatrepr` quotes.
pub fn line(now: SystemTime, db: u16, addr: &str, info: &CommandInfo, args: Args<'_>) -> Bytes {
    let since = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut out = format!("+{}.{:06} [{db} {addr}]", since.as_secs(), since.subsec_micros()).into_bytes();
    let container = info.name.split('|').next().unwrap_or(&info.name);
    // Passwords are never shown: AUTH's arguments, HELLO's AUTH user and password.
    let mut hidden = vec![container == "auth"; args.len()];
    if let Some(name) = hidden.first_mut() {
        *name = false;
    }
    if container == "hello" {
        for i in 2..args.len().saturating_sub(2) {
            if args.get(i).eq_ignore_ascii_case(b"auth") {
                hidden[i + 1] = true;
                hidden[i + 2] = true;
            }
        }
    }
    for (i, &hide) in hidden.iter().enumerate() {
        out.push(b' ');
        if hide {
            out.extend_from_slice(b"\"(redacted)\"");
        } else {
            quote(&mut out, args.get(i));
        }
    }
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// `sdscatrepr`: `"..."` with `\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b` escaped and other unprintable bytes as `\xHH`.
fn quote(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'"');
    for &c in arg {
        match c {
            b'\\' | b'"' => out.extend_from_slice(&[b'\\', c]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            7 => out.extend_from_slice(b"\\a"),
            8 => out.extend_from_slice(b"\\b"),
            c if c.is_ascii_graphic() || c == b' ' => out.push(c),
            c => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandTable;

    fn line_of(words: &[&[u8]]) -> String {
        let mut frame = Vec::new();
        let mut ranges = Vec::new();
        for w in words {
            ranges.push(frame.len()..frame.len() + w.len());
            frame.extend_from_slice(w);
        }
        let args = Args { frame: &frame, ranges: &ranges };
        let table = CommandTable::builtin();
        let info = table.resolve(args).unwrap();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_733_347_200_000_042);
        String::from_utf8(line(at, 0, "127.0.0.1:5000", info, args).to_vec()).unwrap()
    }

    #[test]
    fn lines_are_redis_monitor_lines() {
        assert_eq!(line_of(&[b"set", b"k", b"v"]), "+1733347200.000042 [0 127.0.0.1:5000] \"set\" \"k\" \"v\"\r\n");
        assert_eq!(
            line_of(&[b"SET", b"a \"b\"\\", b"\r\n\t\x07\x08\x00\xff"]),
            "+1733347200.000042 [0 127.0.0.1:5000] \"SET\" \"a \\\"b\\\"\\\\\" \"\\r\\n\\t\\a\\b\\x00\\xff\"\r\n"
        );
        assert_eq!(
            line_of(&[b"auth", b"user", b"secret"]),
            "+1733347200.000042 [0 127.0.0.1:5000] \"auth\" \"(redacted)\" \"(redacted)\"\r\n"
        );
        assert_eq!(
            line_of(&[b"HELLO", b"3", b"AUTH", b"u", b"pw", b"SETNAME", b"n"]),
            "+1733347200.000042 [0 127.0.0.1:5000] \"HELLO\" \"3\" \"AUTH\" \"(redacted)\" \"(redacted)\" \"SETNAME\" \"n\"\r\n"
        );
    }

    #[test]
    fn admin_commands_are_not_shown() {
        let table = CommandTable::builtin();
        assert!(!shown(table.lookup(b"config|set").unwrap()));
        assert!(!shown(table.lookup(b"monitor").unwrap()));
        assert!(shown(table.lookup(b"get").unwrap()));
    }

    #[test]
    fn every_watcher_gets_each_line_until_it_leaves() {
        let monitors = Arc::new(Monitors::default());
        assert!(!monitors.active());
        let mut a = monitors.watch(1, 0);
        let mut b = monitors.watch(2, 10);
        assert!(monitors.active());
        monitors.feed(Bytes::from_static(b"+one\r\n"));
        monitors.feed(Bytes::from_static(b"+two\r\n"));
        assert_eq!(a.rx.try_recv().unwrap(), "+one\r\n");
        assert_eq!(a.rx.try_recv().unwrap(), "+two\r\n");
        assert!(b.budget.is_over(), "12 bytes waiting over a limit of 10");
        assert_eq!(b.rx.try_recv().unwrap(), "+one\r\n");
        drop(b);
        drop(a);
        assert!(!monitors.active());
    }
}
