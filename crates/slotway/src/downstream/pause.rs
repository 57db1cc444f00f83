//! CLIENT PAUSE / UNPAUSE for slotway's own clients: while a pause is on, the commands it covers wait in their
//! session (nothing is read from that client meanwhile, as a paused Redis client waits) and run when it ends, at
//! its timeout or at CLIENT UNPAUSE. `ALL` holds every command (CLIENT UNPAUSE included, as in Redis: an ALL
//! pause ends at its timeout); `WRITE` holds writes and commands that may replicate (EVAL, FCALL, PUBLISH, ...)
//! and EXEC. As in Redis, a second pause keeps the later end and the stricter mode.
//!
//! Only this slotway process's clients are paused: the nodes are not (other slotway processes and clients of the
//! nodes go on), and replication between the nodes goes on, so a pause here is for the clients of this endpoint,
//! e.g. while their traffic is switched elsewhere.
//!
//! Cost: one relaxed load per command while no pause is on.
use crate::command::CommandInfo;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Redis 7.0's `may-replicate` commands, which its COMMAND reply doesn't flag: CLIENT PAUSE WRITE holds them.
const MAY_REPLICATE: &[&str] = &[
    "eval",
    "evalsha",
    "fcall",
    "publish",
    "spublish",
    "pfcount",
    "script|load",
    "script|flush",
    "function|load",
    "function|delete",
    "function|flush",
    "function|restore",
];

/// What a pause holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum PauseMode {
    None = 0,
    Write = 1,
    All = 2,
}

/// The pause in force for every session.
#[derive(Debug)]
pub struct Pause {
    /// When the pause ends, in ms after `epoch`; 0 = none.
    until_ms: AtomicU64,
    mode: AtomicU8,
    epoch: Instant,
    /// Wakes held sessions when the pause ends early (CLIENT UNPAUSE).
    ended: Notify,
}

impl Default for Pause {
    fn default() -> Self {
        Pause { until_ms: AtomicU64::new(0), mode: AtomicU8::new(0), epoch: Instant::now(), ended: Notify::new() }
    }
}

impl Pause {
    /// CLIENT PAUSE `timeout` `mode`: the later end and the stricter mode of this and any pause in force.
    pub fn pause(&self, timeout: Duration, mode: PauseMode) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let end = now + timeout.as_millis() as u64 + 1;
        if self.until_ms.load(Ordering::Acquire) <= now {
            // None in force: this one alone.
            self.mode.store(mode as u8, Ordering::Release);
            self.until_ms.store(end, Ordering::Release);
        } else {
            self.mode.fetch_max(mode as u8, Ordering::AcqRel);
            self.until_ms.fetch_max(end, Ordering::AcqRel);
        }
    }

    /// CLIENT UNPAUSE: held commands run now.
    pub fn unpause(&self) {
        self.until_ms.store(0, Ordering::Release);
        self.mode.store(0, Ordering::Release);
        self.ended.notify_waiters();
    }

    /// Until when a command must wait, if a pause in force covers it (`in_multi`: it is queued, so only EXEC
    /// counts for WRITE).
    pub fn holds(&self, info: &CommandInfo, in_multi: bool) -> Option<Instant> {
        let until = self.until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let at = self.epoch + Duration::from_millis(until);
        if at <= Instant::now() {
            return None;
        }
        let held = match self.mode.load(Ordering::Acquire) {
            2 => true,
            1 if info.name == "exec" => true,
            1 => {
                !in_multi
                    && (info.flags.write || info.flags.may_replicate || MAY_REPLICATE.contains(&info.name.as_str()))
            }
            _ => false,
        };
        held.then_some(at)
    }

    /// Completes when CLIENT UNPAUSE ends the pause.
    pub async fn ended(&self) {
        self.ended.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandTable;

    #[test]
    fn write_pauses_hold_writes_and_exec_all_pauses_hold_everything() {
        let t = CommandTable::builtin();
        let (get, set, eval, exec, unpause) = (
            t.lookup(b"get").unwrap(),
            t.lookup(b"set").unwrap(),
            t.lookup(b"eval").unwrap(),
            t.lookup(b"exec").unwrap(),
            t.lookup(b"client|unpause").unwrap(),
        );
        let p = Pause::default();
        assert!(p.holds(set, false).is_none(), "no pause");
        p.pause(Duration::from_secs(10), PauseMode::Write);
        assert!(p.holds(get, false).is_none());
        assert!(p.holds(set, false).is_some() && p.holds(eval, false).is_some() && p.holds(exec, false).is_some());
        assert!(p.holds(set, true).is_none(), "queued in MULTI: EXEC waits instead");
        // A shorter pause doesn't shorten it; a stricter one widens it.
        let until = p.holds(set, false).unwrap();
        p.pause(Duration::from_millis(1), PauseMode::All);
        assert_eq!(p.holds(set, false), Some(until));
        assert!(p.holds(get, false).is_some() && p.holds(unpause, false).is_some());
        p.unpause();
        assert!(p.holds(set, false).is_none() && p.holds(get, false).is_none());
        // It ends by itself.
        p.pause(Duration::from_millis(20), PauseMode::All);
        assert!(p.holds(get, false).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(p.holds(get, false).is_none());
    }
}
