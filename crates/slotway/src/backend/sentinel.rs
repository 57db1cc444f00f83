//! A group managed by Redis Sentinel (`--sentinel`, `--sentinel-master`).
//!
//! Resolution follows Redis's guidelines for Sentinel clients, and goes one step further:
//!
//! 1. Every known sentinel is asked at once (each within `sentinel.timeout_ms`): `SENTINEL get-master-addr-by-name`,
//!    `SENTINEL MASTER` (its config epoch and flags), `SENTINEL REPLICAS` and `SENTINEL SENTINELS`, pipelined on one
//!    connection (the sentinels' own credentials and TLS). Sentinels that are down are skipped.
//! 2. The newest answer wins: the highest config epoch (a sentinel that missed a failover still names the old
//!    primary, with the old epoch); among equals, the sentinel listed first, and the one that is chosen moves to the
//!    front of the list.
//! 3. The named primary is not trusted while a sentinel reports a failover of it in progress or it objectively down,
//!    or every sentinel naming it sees it subjectively down.
//! 4. It is **verified with ROLE**: only a node that says `master` becomes the primary. Otherwise the next address
//!    named at the same epoch is tried; when none verifies there is no primary (writes wait, then fail with why).
//! 5. Replicas come from the winning sentinel's `SENTINEL REPLICAS`, skipping those flagged `s_down`, `o_down` or
//!    `disconnected` and those whose `master-link-status` isn't `ok`; their lag from the primary's ROLE.
//! 6. Sentinels listed by `SENTINEL SENTINELS` are added to the list (and watched).
//!
//! **Watchers.** A subscription to every known sentinel's event channels (`+switch-master`, `+odown`,
//! `+try-failover`, the failover states, `+role-change`, `+convert-to-slave`, ...) asks for a resolution as soon as
//! something about the group changes; a failover starting fences the primary at once ([`GroupEvent::Fence`]).
//! Messages can be lost (a sentinel restarting, a dropped connection), so the group is also resolved every
//! `sentinel.poll_interval_ms`.
use super::probe::{self, NodeRole, ProbeError};
use super::servers::futures_join_all;
use super::{EventHook, GroupEvent, GroupView, Member, ResolveFailure};
use crate::cluster::NodeAddr;
use crate::upstream::connect::{connect, ConnectContext};
use bytes::BytesMut;
use resp::encode::Protocol;
use resp::{Limits, ReplyScanner, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// At most this many sentinels are remembered (the configured ones plus those learned).
const MAX_SENTINELS: usize = 32;

/// Channels that say a failover of a master is starting or under way: the primary is fenced at once.
const FENCE_EVENTS: &[&str] = &[
    "+odown",
    "+try-failover",
    "+failover-state-select-slave",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
];

/// Channels that say something else about the group changed: resolve again.
const REFRESH_EVENTS: &[&str] = &[
    "+switch-master",
    "-odown",
    "+sdown",
    "-sdown",
    "+failover-end",
    "+failover-end-for-timeout",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
    "+slave",
    "+convert-to-slave",
    "+role-change",
    "+reboot",
    "+slave-reconf-done",
    "+fix-slave-config",
    "-slave-restart-as-master",
];

pub struct SentinelGroup {
    master_name: String,
    /// Sentinels in the order they are preferred; the first holds the last winning answer.
    known: Mutex<Vec<NodeAddr>>,
    /// How to reach the sentinels (their own user, password and TLS).
    sentinel_ctx: Arc<ConnectContext>,
    /// How to reach the data nodes (for ROLE).
    node_ctx: Arc<ConnectContext>,
    timeout: Duration,
    /// Watchers run once started: new sentinels get one when they are learned.
    watch: Mutex<Option<(EventHook, tokio::sync::watch::Receiver<bool>)>>,
}

/// What one sentinel said about the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub sentinel: NodeAddr,
    /// The address it names (`SENTINEL get-master-addr-by-name`).
    pub master: NodeAddr,
    /// Its config epoch for the master (`SENTINEL MASTER`'s `config-epoch`).
    pub epoch: Option<u64>,
    /// Its flags for the master (`master`, `s_down`, `o_down`, `failover_in_progress`, ...).
    pub flags: Vec<String>,
    /// The address of its master record (`SENTINEL MASTER`'s ip and port). During a failover the leader's record
    /// still holds the old primary while `get-master-addr-by-name` already names the promoted replica.
    pub record: Option<NodeAddr>,
    pub replicas: Vec<ReplicaEntry>,
    /// Other sentinels it knows.
    pub sentinels: Vec<NodeAddr>,
}

/// One entry of `SENTINEL REPLICAS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaEntry {
    pub addr: NodeAddr,
    pub flags: Vec<String>,
    /// `master-link-status` is `ok`.
    pub link_ok: bool,
}

impl Answer {
    fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

/// A candidate primary, in order of preference, and why it can't be trusted (None: verify it with ROLE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub addr: NodeAddr,
    /// Index of the answer it comes from (the best one naming it).
    pub answer: usize,
    pub distrust: Option<String>,
}

/// Orders the answers' masters: only the highest config epoch counts (unknown epochs rank below every known one;
/// with none known, every answer does); among those, answers keep their order (the sentinels' order).
pub fn candidates(answers: &[Answer]) -> Vec<Candidate> {
    let Some(best) = answers.iter().map(|a| a.epoch).max() else { return Vec::new() };
    let mut out: Vec<Candidate> = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        if a.epoch != best || out.iter().any(|c| c.addr == a.master) {
            continue;
        }
        // A sentinel's flags describe its master record. During a failover the leader's record still holds the old
        // primary (flagged o_down, failover_in_progress) while it already names the promoted replica: its flags then
        // say nothing about the address it names.
        let naming: Vec<&Answer> = answers
            .iter()
            .filter(|x| x.master == a.master && x.record.as_ref().is_none_or(|r| *r == x.master))
            .collect();
        let distrust = if let Some(s) = naming.iter().find(|x| x.has_flag("failover_in_progress")) {
            Some(format!("sentinel {} reports a failover of {} in progress", s.sentinel, a.master))
        } else if let Some(s) = naming.iter().find(|x| x.has_flag("o_down")) {
            Some(format!("sentinel {} reports {} objectively down", s.sentinel, a.master))
        } else if !naming.is_empty() && naming.iter().all(|x| x.has_flag("s_down")) {
            Some(format!("every sentinel that names {} sees it down", a.master))
        } else {
            None
        };
        out.push(Candidate { addr: a.master.clone(), answer: i, distrust });
    }
    out
}

/// The replicas of a sentinel's answer that may serve reads: attached to `primary` per its ROLE (which gives their
/// offset), not flagged down or disconnected, link up.
pub fn usable_replicas(answer: &Answer, attached: &[(String, u16, i64)]) -> Vec<Member> {
    answer
        .replicas
        .iter()
        .filter(|r| r.link_ok && !r.flags.iter().any(|f| matches!(f.as_str(), "s_down" | "o_down" | "disconnected")))
        .filter_map(|r| {
            let acked = attached.iter().find(|(ip, port, _)| *port == r.addr.port && **ip == *r.addr.host)?;
            Some(Member { addr: r.addr.clone(), offset: Some(acked.2) })
        })
        .collect()
}

enum Outcome {
    Answer(Answer),
    /// The sentinel doesn't monitor a master of that name.
    Unknown,
    Failed {
        error: String,
        fatal: bool,
    },
}

impl SentinelGroup {
    pub fn new(
        sentinels: Vec<NodeAddr>,
        master_name: String,
        sentinel_ctx: Arc<ConnectContext>,
        node_ctx: Arc<ConnectContext>,
        timeout: Duration,
    ) -> SentinelGroup {
        SentinelGroup {
            master_name,
            known: Mutex::new(sentinels),
            sentinel_ctx,
            node_ctx,
            timeout,
            watch: Mutex::new(None),
        }
    }

    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// The sentinels known now, in order of preference.
    pub fn known(&self) -> Vec<NodeAddr> {
        self.known.lock().expect("sentinel list poisoned").clone()
    }

    /// Asks one sentinel everything a resolution needs, pipelined on one connection.
    async fn ask(&self, sentinel: &NodeAddr) -> Outcome {
        let name = self.master_name.as_bytes();
        let commands: [&[&[u8]]; 4] = [
            &[b"SENTINEL", b"get-master-addr-by-name", name],
            &[b"SENTINEL", b"MASTER", name],
            &[b"SENTINEL", b"REPLICAS", name],
            &[b"SENTINEL", b"SENTINELS", name],
        ];
        let replies = match probe::call(sentinel, &self.sentinel_ctx, &commands, self.timeout).await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Failed { fatal: e.is_fatal(), error: describe_probe_error(&e) };
            }
        };
        parse_answer(sentinel, &replies)
    }

    /// One resolution (see the module docs).
    pub async fn resolve(&self) -> Result<GroupView, ResolveFailure> {
        let known = self.known();
        let outcomes = futures_join_all(known.iter().map(|s| self.ask(s))).await;
        let mut answers = Vec::new();
        let mut reasons = Vec::new();
        let (mut unknown, mut fatal_errors) = (0, 0);
        for (s, o) in known.iter().zip(outcomes) {
            match o {
                Outcome::Answer(a) => answers.push(a),
                Outcome::Unknown => {
                    unknown += 1;
                    reasons.push(format!("sentinel {s}: does not monitor a master named '{}'", self.master_name));
                }
                Outcome::Failed { error, fatal } => {
                    fatal_errors += usize::from(fatal);
                    tracing::debug!(sentinel = %s, error = %error, "sentinel did not answer");
                    reasons.push(format!("sentinel {s}: {error}"));
                }
            }
        }
        if answers.is_empty() {
            // Nobody knows the name, or every sentinel refused us: starting again won't help.
            let fatal = unknown + fatal_errors > 0 && unknown + fatal_errors == known.len();
            return Err(ResolveFailure { reasons, fatal });
        }
        self.learn(&answers);
        for a in &answers {
            tracing::debug!(sentinel = %a.sentinel, master = %a.master, epoch = ?a.epoch, flags = ?a.flags, "sentinel answer");
        }
        let mut problems = Vec::new();
        let mut role_mismatches = 0;
        for c in candidates(&answers) {
            let a = &answers[c.answer];
            if let Some(why) = c.distrust {
                problems.push(why);
                continue;
            }
            match probe::role(&c.addr, &self.node_ctx, self.timeout).await {
                Ok(NodeRole::Master { offset, replicas: attached }) => {
                    self.prefer(&a.sentinel);
                    let mut replicas = usable_replicas(a, &attached);
                    replicas.sort_by(|x, y| x.addr.cmp(&y.addr));
                    let epoch = a.epoch.map_or_else(|| "unknown".to_string(), |e| e.to_string());
                    return Ok(GroupView {
                        primary: Some(Member { addr: c.addr.clone(), offset: Some(offset) }),
                        replicas,
                        problem: None,
                        source: format!("sentinel {} (config epoch {epoch})", a.sentinel),
                        role_mismatches,
                    });
                }
                Ok(other) => {
                    role_mismatches += 1;
                    tracing::warn!(
                        sentinel = %a.sentinel,
                        named = %c.addr,
                        role = %other.describe(),
                        "a sentinel names a primary that is not one (ROLE); not trusting it"
                    );
                    problems.push(format!(
                        "sentinel {} names {}, which says it is a {}",
                        a.sentinel,
                        c.addr,
                        other.describe()
                    ));
                }
                Err(e) => {
                    problems.push(format!("sentinel {} names {}, which does not answer ROLE: {e}", a.sentinel, c.addr))
                }
            }
        }
        Ok(GroupView {
            primary: None,
            replicas: Vec::new(),
            problem: Some(problems.join("; ")),
            source: format!("sentinels ({} answered)", answers.len()),
            role_mismatches,
        })
    }

    /// Moves `sentinel` to the front of the list (it gave the answer used).
    fn prefer(&self, sentinel: &NodeAddr) {
        let mut known = self.known.lock().expect("sentinel list poisoned");
        if let Some(i) = known.iter().position(|s| s == sentinel) {
            let s = known.remove(i);
            known.insert(0, s);
        }
    }

    /// Adds the sentinels the answers list that aren't known yet (and starts watching them).
    fn learn(&self, answers: &[Answer]) {
        let mut added = Vec::new();
        {
            let mut known = self.known.lock().expect("sentinel list poisoned");
            for s in answers.iter().flat_map(|a| &a.sentinels) {
                if known.len() >= MAX_SENTINELS {
                    break;
                }
                // A sentinel configured by name and listed by IP would be asked twice; only the IP form of one
                // already known by that IP is skipped (host names can't be compared without resolving them).
                if !known.contains(s) {
                    known.push(s.clone());
                    added.push(s.clone());
                }
            }
        }
        if added.is_empty() {
            return;
        }
        tracing::info!(sentinels = ?added.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "learned sentinels");
        if let Some((hook, shutdown)) = self.watch.lock().expect("watch state poisoned").clone() {
            for s in added {
                self.spawn_watcher(s, hook.clone(), shutdown.clone());
            }
        }
    }

    /// Subscribes to the events of every known sentinel (and of those learned later).
    pub fn start_watchers(&self, hook: EventHook, shutdown: tokio::sync::watch::Receiver<bool>) {
        *self.watch.lock().expect("watch state poisoned") = Some((hook.clone(), shutdown.clone()));
        for s in self.known() {
            self.spawn_watcher(s, hook.clone(), shutdown.clone());
        }
    }

    fn spawn_watcher(&self, sentinel: NodeAddr, hook: EventHook, shutdown: tokio::sync::watch::Receiver<bool>) {
        let ctx = self.sentinel_ctx.clone();
        let name = self.master_name.clone();
        tokio::spawn(watch(sentinel, ctx, name, hook, shutdown));
    }
}

fn describe_probe_error(e: &ProbeError) -> String {
    match e {
        ProbeError::Connect(c) if c.is_fatal() => format!("{c} (check the sentinels' password and TLS settings)"),
        other => other.to_string(),
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// The field → value pairs of a `SENTINEL MASTER`-style map.
fn fields(v: &Value) -> Vec<(String, String)> {
    v.to_pairs()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| {
            Some((text(k)?, v.as_str().map(str::to_string).or_else(|| v.as_int().map(|i| i.to_string()))?))
        })
        .collect()
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn addr_of(f: &[(String, String)]) -> Option<NodeAddr> {
    let port = field(f, "port")?.parse().ok()?;
    Some(NodeAddr::new(field(f, "ip")?, port))
}

/// One sentinel's four replies → its answer.
fn parse_answer(sentinel: &NodeAddr, replies: &[Value]) -> Outcome {
    let [addr, master, replicas, sentinels] = replies else {
        return Outcome::Failed { error: "too few replies".to_string(), fatal: false };
    };
    if let Some(e) = addr.error_bytes().or(master.error_bytes()) {
        let e = String::from_utf8_lossy(e);
        return if e.contains("No such master") {
            Outcome::Unknown
        } else {
            Outcome::Failed { fatal: e.starts_with("NOAUTH") || e.starts_with("NOPERM"), error: e.into_owned() }
        };
    }
    let master_addr = match addr.as_array() {
        Some([host, port]) => match (text(host), port.as_int().and_then(|p| u16::try_from(p).ok())) {
            (Some(h), Some(p)) => NodeAddr::new(&h, p),
            _ => return Outcome::Failed { error: format!("unexpected reply {addr:?}"), fatal: false },
        },
        _ if addr.is_nil() => return Outcome::Unknown,
        _ => return Outcome::Failed { error: format!("unexpected reply {addr:?}"), fatal: false },
    };
    let m = fields(master);
    let list = |v: &Value| -> Vec<Vec<(String, String)>> { v.as_array().unwrap_or(&[]).iter().map(fields).collect() };
    let replicas = list(replicas)
        .iter()
        .filter_map(|r| {
            Some(ReplicaEntry {
                addr: addr_of(r)?,
                flags: field(r, "flags").unwrap_or_default().split(',').map(str::to_string).collect(),
                link_ok: field(r, "master-link-status") == Some("ok"),
            })
        })
        .collect();
    let sentinels = list(sentinels).iter().filter_map(|s| addr_of(s)).collect();
    Outcome::Answer(Answer {
        sentinel: sentinel.clone(),
        master: master_addr,
        epoch: field(&m, "config-epoch").and_then(|e| e.parse().ok()),
        flags: field(&m, "flags").unwrap_or_default().split(',').map(str::to_string).collect(),
        record: addr_of(&m),
        replicas,
        sentinels,
    })
}

/// Whether an event message (`payload` on `channel`) is about the master `name`: `+switch-master <name> ...`,
/// `master <name> <ip> <port> ...`, or `<type> <id> <ip> <port> @ <name> <ip> <port>` for its replicas and sentinels.
pub fn concerns(channel: &str, payload: &str, name: &str) -> bool {
    let mut words = payload.split_ascii_whitespace();
    if channel == "+switch-master" {
        return words.next() == Some(name);
    }
    let first = words.next();
    let second = words.next();
    if first == Some("master") && second == Some(name) {
        return true;
    }
    let mut rest = payload.split_ascii_whitespace().skip_while(|w| *w != "@");
    rest.next();
    rest.next() == Some(name)
}

/// What an event means for the group (None: not about it, or not an event slotway acts on).
pub fn event_for(channel: &str, payload: &str, name: &str) -> Option<GroupEvent> {
    if !concerns(channel, payload, name) {
        return None;
    }
    if FENCE_EVENTS.contains(&channel) {
        // `+odown` of a replica, or a sentinel, isn't a failover of the master.
        let about_master = payload.split_ascii_whitespace().next() == Some("master");
        if channel != "+odown" || about_master {
            return Some(GroupEvent::Fence(format!("{channel} {payload}")));
        }
    }
    Some(GroupEvent::Refresh)
}

/// Watches one sentinel's events until shutdown, reconnecting (after a pause) when the connection fails.
async fn watch(
    sentinel: NodeAddr,
    ctx: Arc<ConnectContext>,
    name: String,
    hook: EventHook,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    let mut subscribed_before = false;
    loop {
        let run = watch_once(&sentinel, &ctx, &name, &hook, &mut subscribed_before);
        let error = tokio::select! {
            e = run => e,
            _ = shutdown.changed() => return,
        };
        failures = failures.saturating_add(1);
        if failures == 1 || failures.is_multiple_of(60) {
            tracing::info!(sentinel = %sentinel, error = %error, "sentinel event subscription lost; retrying");
        }
        let pause = Duration::from_millis(200u64.saturating_mul(u64::from(failures.min(5))));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One subscription: connect, subscribe, hand every relevant event to `hook`. Returns why it ended.
/// `subscribed_before`: a subscription to this sentinel ran before, so events may have been missed since.
async fn watch_once(
    sentinel: &NodeAddr,
    ctx: &ConnectContext,
    name: &str,
    hook: &EventHook,
    subscribed_before: &mut bool,
) -> String {
    let (mut rd, mut wr) = match connect(sentinel, ctx, Protocol::Resp2, false, 0).await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    let mut cmd = BytesMut::new();
    let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    args.extend(FENCE_EVENTS.iter().chain(REFRESH_EVENTS).map(|c| c.as_bytes()));
    resp::encode::command(&mut cmd, &args);
    if let Err(e) = wr.write_all(&cmd).await {
        return e.to_string();
    }
    let _ = wr.flush().await;
    tracing::debug!(sentinel = %sentinel, "watching sentinel events");
    if std::mem::replace(subscribed_before, true) {
        // Events may have been missed while the subscription was down.
        hook(GroupEvent::Refresh);
    }
    let limits = Limits::default();
    let mut scanner = ReplyScanner::new(limits);
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) => return "connection closed by the sentinel".to_string(),
            Ok(_) => {}
            Err(e) => return e.to_string(),
        }
        loop {
            match scanner.scan(&buf) {
                Ok(Some(r)) => {
                    let frame = buf.split_to(r.len).freeze();
                    let Ok(Some((v, _))) = Value::parse(&frame, &limits) else { continue };
                    let Some(items) = v.as_array() else { continue };
                    if items.first().and_then(Value::as_str) != Some("message") {
                        continue;
                    }
                    let (Some(channel), Some(payload)) =
                        (items.get(1).and_then(Value::as_str), items.get(2).and_then(Value::as_str))
                    else {
                        continue;
                    };
                    if let Some(ev) = event_for(channel, payload, name) {
                        tracing::info!(sentinel = %sentinel, event = %channel, detail = %payload, "sentinel event");
                        hook(ev);
                    }
                }
                Ok(None) => break,
                Err(e) => return format!("protocol error: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(sentinel: u16, master: u16, epoch: Option<u64>, flags: &str) -> Answer {
        Answer {
            sentinel: NodeAddr::new("127.0.0.1", sentinel),
            master: NodeAddr::new("127.0.0.1", master),
            epoch,
            flags: flags.split(',').map(str::to_string).collect(),
            record: Some(NodeAddr::new("127.0.0.1", master)),
            replicas: Vec::new(),
            sentinels: Vec::new(),
        }
    }

    #[test]
    fn the_highest_config_epoch_wins_over_list_order() {
        // A stale sentinel listed first still names the old primary 7001 (epoch 0); the others saw the failover.
        let c = candidates(&[
            answer(1, 7001, Some(0), "master"),
            answer(2, 7002, Some(1), "master"),
            answer(3, 7002, Some(1), "master"),
        ]);
        assert_eq!(c.len(), 1, "an older epoch is never a candidate: {c:?}");
        assert_eq!(c[0].addr.port, 7002);
        assert_eq!(c[0].answer, 1);
        assert_eq!(c[0].distrust, None);
    }

    #[test]
    fn equal_epochs_keep_the_sentinels_order_and_every_address_is_a_candidate() {
        let c = candidates(&[answer(1, 7003, Some(0), "master,s_down"), answer(2, 7001, Some(0), "master")]);
        assert_eq!(c.iter().map(|c| c.addr.port).collect::<Vec<_>>(), [7003, 7001]);
        // 7003 is seen down by every sentinel that names it; 7001 is fine.
        assert!(c[0].distrust.as_deref().unwrap().contains("sees it down"));
        assert_eq!(c[1].distrust, None);
        // Unknown epochs rank below known ones.
        let c = candidates(&[answer(1, 7003, None, "master"), answer(2, 7001, Some(0), "master")]);
        assert_eq!(c.iter().map(|c| c.addr.port).collect::<Vec<_>>(), [7001]);
    }

    #[test]
    fn a_failover_in_progress_anywhere_fences_the_primary() {
        let c = candidates(&[
            answer(1, 7001, Some(3), "master"),
            answer(2, 7001, Some(3), "master,failover_in_progress"),
            answer(3, 7001, Some(3), "master"),
        ]);
        assert!(c[0].distrust.as_deref().unwrap().contains("failover of 127.0.0.1:7001 in progress"));
        // The leader names the promoted replica while its record still holds the old primary: the failover is
        // reconfiguring replicas, the new primary is usable.
        let mut leader = answer(2, 7002, Some(4), "s_down,o_down,master,disconnected,failover_in_progress");
        leader.record = Some(NodeAddr::new("127.0.0.1", 7001));
        let c = candidates(&[answer(1, 7001, Some(3), "master"), leader, answer(3, 7001, Some(3), "master")]);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].addr.port, c[0].distrust.as_ref()), (7002, None));
        let c = candidates(&[answer(1, 7001, Some(3), "master,s_down,o_down"), answer(2, 7001, Some(3), "master")]);
        assert!(c[0].distrust.as_deref().unwrap().contains("objectively down"));
        // One sentinel's subjective view alone doesn't.
        let c = candidates(&[answer(1, 7001, Some(3), "master,s_down"), answer(2, 7001, Some(3), "master")]);
        assert_eq!(c[0].distrust, None);
    }

    #[test]
    fn replicas_must_be_up_and_attached() {
        let mut a = answer(1, 7001, Some(0), "master");
        let r = |port: u16, flags: &str, link_ok| ReplicaEntry {
            addr: NodeAddr::new("127.0.0.1", port),
            flags: flags.split(',').map(str::to_string).collect(),
            link_ok,
        };
        a.replicas = vec![
            r(7002, "slave", true),
            r(7003, "slave,s_down", true),
            r(7004, "slave", false),
            r(7005, "slave", true),
        ];
        let attached = vec![
            ("127.0.0.1".to_string(), 7002, 50),
            ("127.0.0.1".to_string(), 7003, 50),
            ("127.0.0.1".to_string(), 7004, 50),
        ];
        let usable = usable_replicas(&a, &attached);
        // 7003 is down, 7004's link is down, 7005 isn't attached to the primary.
        assert_eq!(usable, vec![Member { addr: NodeAddr::new("127.0.0.1", 7002), offset: Some(50) }]);
    }

    #[test]
    fn sentinel_replies_parse() {
        use bytes::Bytes;
        let v = |b: &'static [u8]| Value::parse(&Bytes::from_static(b), &Limits::default()).unwrap().unwrap().0;
        let replies = [
            v(b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n7001\r\n"),
            v(b"*6\r\n$4\r\nname\r\n$8\r\nmymaster\r\n$5\r\nflags\r\n$6\r\nmaster\r\n$12\r\nconfig-epoch\r\n$1\r\n4\r\n"),
            v(b"*1\r\n*8\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nport\r\n$4\r\n7002\r\n$5\r\nflags\r\n$5\r\nslave\r\n$18\r\nmaster-link-status\r\n$2\r\nok\r\n"),
            v(b"*1\r\n*4\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nport\r\n$5\r\n26380\r\n"),
        ];
        let Outcome::Answer(a) = parse_answer(&NodeAddr::new("127.0.0.1", 26379), &replies) else { panic!() };
        assert_eq!(a.master, NodeAddr::new("127.0.0.1", 7001));
        assert_eq!(a.epoch, Some(4));
        assert_eq!(a.flags, ["master"]);
        assert_eq!(
            a.replicas,
            vec![ReplicaEntry { addr: NodeAddr::new("127.0.0.1", 7002), flags: vec!["slave".into()], link_ok: true }]
        );
        assert_eq!(a.sentinels, vec![NodeAddr::new("127.0.0.1", 26380)]);
        let unknown = [v(b"*-1\r\n"), v(b"-ERR No such master with that name\r\n"), v(b"*0\r\n"), v(b"*0\r\n")];
        assert!(matches!(parse_answer(&NodeAddr::new("h", 1), &unknown), Outcome::Unknown));
        let noauth = [v(b"-NOAUTH Authentication required.\r\n"), v(b"-NOAUTH x\r\n"), v(b"*0\r\n"), v(b"*0\r\n")];
        assert!(matches!(parse_answer(&NodeAddr::new("h", 1), &noauth), Outcome::Failed { fatal: true, .. }));
    }

    #[test]
    fn events_are_matched_to_the_master_name() {
        let n = "mymaster";
        assert_eq!(event_for("+switch-master", "mymaster 127.0.0.1 7001 127.0.0.1 7002", n), Some(GroupEvent::Refresh));
        assert_eq!(event_for("+switch-master", "other 127.0.0.1 7001 127.0.0.1 7002", n), None);
        assert!(matches!(event_for("+try-failover", "master mymaster 127.0.0.1 7001", n), Some(GroupEvent::Fence(_))));
        assert!(matches!(
            event_for("+odown", "master mymaster 127.0.0.1 7001 #quorum 2/2", n),
            Some(GroupEvent::Fence(_))
        ));
        assert_eq!(event_for("+try-failover", "master mymasterx 127.0.0.1 7001", n), None);
        assert!(matches!(
            event_for("+promoted-slave", "slave 127.0.0.1:7002 127.0.0.1 7002 @ mymaster 127.0.0.1 7001", n),
            Some(GroupEvent::Fence(_))
        ));
        assert_eq!(
            event_for("+sdown", "slave 127.0.0.1:7003 127.0.0.1 7003 @ mymaster 127.0.0.1 7001", n),
            Some(GroupEvent::Refresh)
        );
        assert_eq!(event_for("+sdown", "sentinel abc 127.0.0.1 26380 @ other 127.0.0.1 7001", n), None);
    }
}
