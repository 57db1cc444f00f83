//! Deciding where a request goes ([`plan`]) and what a node's reply means for it ([`classify_reply`]).
//! Both are plain functions over values; the session loop calls them and acts on the result.
use crate::cluster::{parse_redirect, NodeAddr, Redirect, Slot};
use crate::command::{
    key_indexes, route_for, Args, CommandInfo, CommandTable, FanOut, LocalCommand, PubSubCommand, Route, SplitKind,
    TxnCommand,
};
use crate::topology::{Placement, Topology};
use smallvec::SmallVec;

pub mod fanout;
pub mod split;

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// To the primary of `slot`, or to any primary when `slot` is None (keyless commands that every node answers
    /// alike). `readonly` says whether it is safe to resend after the connection died with it in flight.
    Forward { slot: Option<Slot>, readonly: bool },
    /// As `Forward`, for EVAL / EVAL_RO: the session also remembers the script body (NOSCRIPT recovery).
    Eval { slot: Option<Slot>, readonly: bool },
    /// A multi-key command whose keys span slots: split per slot (see [`split::split`]) and merged.
    Split { kind: SplitKind, readonly: bool },
    /// A keyless command for every primary that serves slots, replies merged (see [`fanout::build`]).
    AllPrimaries { kind: FanOut, readonly: bool },
    /// SCAN: one shard at a time, the cursor rewritten both ways (see [`fanout::scan`]).
    Scan,
    /// A blocking command for the primary of `slot` (any primary when None), on a dedicated connection.
    Blocking { slot: Option<Slot>, readonly: bool },
    /// WAIT / WAITAOF: for the node of the client's last write, on a dedicated connection.
    Wait,
    /// MULTI / EXEC / DISCARD / WATCH / UNWATCH. `slot` is the slot of WATCH's keys.
    Txn { cmd: TxnCommand, slot: Option<Slot> },
    /// The subscribe family, on the session's pub/sub connections. `slot` is the shard channels' one slot
    /// (SSUBSCRIBE / SUNSUBSCRIBE with channels); channels of several slots in one command are CROSSSLOT.
    PubSub { cmd: PubSubCommand, slot: Option<Slot> },
    /// Answered by slotway.
    Local(LocalCommand),
    /// Answered with this error (without the leading `-`).
    Reject(String),
}

/// Where a subscription lives: the primary of one slot, or every primary.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ChannelPlacement {
    Slot(Slot),
    EveryPrimary,
}

/// Where a channel is subscribed (and where PUBLISH of it goes): the primary of its slot, except keyspace
/// notification channels, which live where their events are fired: `__keyspace@<db>__:<key>` on the node of
/// the key, `__keyevent@<db>__:<event>` on every primary.
///
/// The place is a routing token ([`Placement::token`]): a cluster's slot, a pool's shard (standalone servers don't
/// pass messages to each other, so a channel's subscribers and its PUBLISH meet on its shard), the one group.
pub fn channel_placement(placement: &Placement, channel: &[u8]) -> ChannelPlacement {
    if channel.starts_with(b"__keyevent@") {
        return ChannelPlacement::EveryPrimary;
    }
    if let Some(rest) = channel.strip_prefix(b"__keyspace@") {
        if let Some(at) = rest.windows(3).position(|w| w == b"__:") {
            return ChannelPlacement::Slot(placement.token(&rest[at + 3..]));
        }
    }
    ChannelPlacement::Slot(placement.token(channel))
}

pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// Classifies and routes one request for a Redis Cluster (slot placement). Runs once per request on the hot path:
/// no allocation unless it rejects.
pub fn plan(table: &CommandTable, args: Args<'_>) -> Plan {
    plan_resolved(table.resolve(args), args, &Placement::Slots)
}

/// [`plan`] for a request the caller already looked up with [`CommandTable::resolve`] (None: unknown command), so
/// a session that needs the command's entry anyway (ACL check, CLIENT LIST's last command) looks it up once.
///
/// `placement` decides what "the keys' slot" means: the keys' token ([`Placement::token`]). With
/// [`Placement::Slots`] it is the keys' hash slot, and keys of different slots are split or refused (CROSSSLOT). A
/// [`Placement::Single`] group has no slots: any keys go together, every keyed request gets [`Slot::ZERO`] (so every
/// "same slot?" check downstream passes), and SCAN goes to the primary unchanged (its cursor is the node's own). In
/// a [`Placement::Ring`] pool the token is the key's group: keys of one group go together (standalone servers take
/// any keys), multi-key commands split per group, other commands over several groups are refused.
pub fn plan_resolved(info: Option<&CommandInfo>, args: Args<'_>, placement: &Placement) -> Plan {
    let Some(info) = info else {
        return Plan::Reject(unknown_command(args));
    };
    let route = route_for(info, args);
    let readonly = info.flags.readonly;
    let one_slot = |info, args| one_slot(info, args, placement);
    match route {
        Route::Local(cmd) => Plan::Local(cmd),
        Route::AnyNode => Plan::Forward { slot: None, readonly },
        // MOVE, SWAPDB, COPY ... DB: standalone groups have databases. (SWAPDB has no key: in a pool it would
        // swap one shard's databases only.)
        Route::Unsupported(crate::command::UNSUPPORTED_DATABASES) if placement.standalone() => {
            match one_slot(info, args) {
                Ok(None) if placement.ring().is_some() => Plan::Reject(format!(
                    "ERR unsupported command '{}': a sharded pool can't swap databases on every shard at once",
                    info.name
                )),
                Ok(slot) => Plan::Forward { slot, readonly },
                Err(e) => e.into_plan(placement),
            }
        }
        Route::Unsupported(why) => Plan::Reject(format!("ERR unsupported command '{}': {why}", info.name)),
        Route::Publish if !arity_ok(info, args) => {
            Plan::Reject(format!("ERR wrong number of arguments for '{}' command", info.name))
        }
        // A single group has one primary: any node counts every subscriber.
        Route::Publish if *placement == Placement::Single => Plan::Forward { slot: None, readonly },
        Route::Publish => match channel_placement(placement, args.get(1)) {
            ChannelPlacement::Slot(slot) => Plan::Forward { slot: Some(slot), readonly },
            ChannelPlacement::EveryPrimary => Plan::Forward { slot: None, readonly },
        },
        Route::AllPrimaries(_) | Route::Scan if !arity_ok(info, args) => {
            Plan::Reject(format!("ERR wrong number of arguments for '{}' command", info.name))
        }
        Route::AllPrimaries(FanOut::Info) if crate::observe::info::local_only(args) => Plan::Local(LocalCommand::Info),
        Route::AllPrimaries(kind) => Plan::AllPrimaries { kind, readonly: info.flags.readonly || kind.idempotent() },
        Route::Scan if *placement == Placement::Single => Plan::Forward { slot: None, readonly: true },
        Route::Scan => Plan::Scan,
        Route::Keys => match one_slot(info, args) {
            Ok(slot) if info.carries_script() => Plan::Eval { slot, readonly },
            Ok(slot) => Plan::Forward { slot, readonly },
            Err(e) => e.into_plan(placement),
        },
        Route::Split(kind) => match one_slot(info, args) {
            Ok(slot) => Plan::Forward { slot, readonly },
            // MSET with a key missing its value: Redis's own arity error, not a split that drops the lone key.
            Err(SlotError::CrossSlot) if !(args.len() - 1).is_multiple_of(kind.step()) => {
                Plan::Reject(format!("ERR wrong number of arguments for '{}' command", info.name))
            }
            Err(SlotError::CrossSlot) => Plan::Split { kind, readonly },
            Err(e) => e.into_plan(placement),
        },
        Route::Blocking => match one_slot(info, args) {
            Ok(slot) => Plan::Blocking { slot, readonly },
            Err(e) => e.into_plan(placement),
        },
        Route::Wait => match one_slot(info, args) {
            Ok(_) => Plan::Wait,
            Err(e) => e.into_plan(placement),
        },
        Route::PubSub(cmd) => match one_slot(info, args) {
            Ok(slot) => Plan::PubSub { cmd, slot },
            Err(e) => e.into_plan(placement),
        },
        Route::Transaction(cmd) => match one_slot(info, args) {
            Ok(slot) => Plan::Txn { cmd, slot },
            Err(e) => e.into_plan(placement),
        },
    }
}

enum SlotError {
    CrossSlot,
    Keys(String),
}

impl SlotError {
    fn into_plan(self, placement: &Placement) -> Plan {
        match self {
            SlotError::CrossSlot => Plan::Reject(placement.cross_error().to_string()),
            SlotError::Keys(e) => Plan::Reject(e),
        }
    }
}

/// Redis's arity rule: positive = exactly that many arguments (with the name), negative = at least -arity.
pub fn arity_ok(info: &CommandInfo, args: Args<'_>) -> bool {
    let (argc, arity) = (args.len() as i64, info.arity as i64);
    if arity > 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// The one token of the request's keys (None when it has none), after the arity check. In a single group every
/// keyed request is in [`Slot::ZERO`].
fn one_slot(info: &CommandInfo, args: Args<'_>, placement: &Placement) -> Result<Option<Slot>, SlotError> {
    let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
    key_indexes(info, args, &mut keys).map_err(|e| SlotError::Keys(e.to_string()))?;
    if *placement == Placement::Single {
        return Ok((!keys.is_empty()).then_some(Slot::ZERO));
    }
    let mut slots = keys.iter().map(|&i| placement.token(args.get(i)));
    match slots.next() {
        None => Ok(None),
        Some(first) if slots.all(|s| s == first) => Ok(Some(first)),
        Some(_) => Err(SlotError::CrossSlot),
    }
}

/// Redis's wording (processCommand): `ERR unknown command 'foo', with args beginning with: 'a' 'b' `. The name is
/// cut at 128 bytes; arguments are quoted while the list is under 128 bytes, the last one cut to fit.
fn unknown_command(args: Args<'_>) -> String {
    // (No args at all: the session never routes an empty request, but the planner must not panic on one.)
    let name = if args.is_empty() { &b""[..] } else { args.get(0) };
    let mut s = format!("ERR unknown command '{}', with args beginning with: ", printable(name, 128));
    let mut listed = String::new();
    for i in 1..args.len() {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        listed.push_str(&format!("'{}' ", printable(args.get(i), room)));
    }
    s.push_str(&listed);
    s
}

/// `-<msg>\r\n`: an error reply slotway builds.
pub fn error_frame(msg: &str) -> bytes::Bytes {
    let mut b = bytes::BytesMut::with_capacity(msg.len() + 3);
    resp::encode::error(&mut b, msg);
    b.freeze()
}

/// Bytes as text for an error message: lossy, newline-free, truncated.
pub fn printable(b: &[u8], max: usize) -> String {
    let b = &b[..b.len().min(max)];
    String::from_utf8_lossy(b).replace(['\r', '\n'], " ")
}

/// What a node's reply means for the request it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyClass {
    /// A final answer (including ordinary errors) for the client.
    Final,
    /// The slot lives elsewhere for good: follow, and refresh the map.
    Moved(NodeAddr),
    /// The slot is being migrated and this key is at the target: resend there once with ASKING.
    Ask(NodeAddr),
    /// Multi-key request during a migration: retry after a short wait.
    TryAgain,
    /// EVALSHA of a script the node doesn't have: load it there and resend, when slotway knows the body.
    NoScript,
    /// The cluster can't serve the slot right now (CLUSTERDOWN), or the node is no longer a primary (READONLY: a
    /// keyless write such as FLUSHALL reached a demoted primary before the slot map was refreshed; nothing ran):
    /// refresh, retry after a wait.
    ClusterDown,
    /// The node refused before running anything because its role or state changed: READONLY (a demoted primary),
    /// MASTERDOWN (a replica whose primary is gone), LOADING (restarting), UNBLOCKED (a blocking command's primary
    /// was demoted while it waited). Refresh, retry after a wait.
    NodeNotReady,
}

/// Classifies a reply by its error code (the first word), never by message text.
pub fn classify_reply(frame: &[u8], sender_host: &str) -> ReplyClass {
    if frame.first() != Some(&b'-') {
        return ReplyClass::Final;
    }
    let body = &frame[1..frame.len().saturating_sub(2).max(1)];
    let code_end = body.iter().position(|&b| b == b' ').unwrap_or(body.len());
    match &body[..code_end] {
        b"MOVED" | b"ASK" => match parse_redirect(body, sender_host) {
            Some(Redirect::Moved { addr, .. }) => ReplyClass::Moved(addr),
            Some(Redirect::Ask { addr, .. }) => ReplyClass::Ask(addr),
            None => ReplyClass::Final,
        },
        b"TRYAGAIN" => ReplyClass::TryAgain,
        b"NOSCRIPT" => ReplyClass::NoScript,
        b"CLUSTERDOWN" => ReplyClass::ClusterDown,
        // UNBLOCKED: a blocking command's node became a replica while it waited (nothing was popped): resend it to
        // the new primary. The same code also ends a blocked XREADGROUP whose stream was deleted or replaced ("the
        // stream key no longer exists") and a client unblocked by CLIENT UNBLOCK ... ERROR: those are the command's
        // answer, so only the role change (Redis's one fixed wording for it) is retried.
        b"UNBLOCKED" if body.windows(22).any(|w| w == b"instance state changed") => ReplyClass::NodeNotReady,
        b"READONLY" | b"MASTERDOWN" | b"LOADING" => ReplyClass::NodeNotReady,
        _ => ReplyClass::Final,
    }
}

/// The pool a forwarded request goes to: the slot's primary, or any primary for keyless requests.
/// None when no shard serves the slot.
pub fn target(topo: &Topology, slot: Option<Slot>, pick: usize) -> Option<&std::sync::Arc<crate::upstream::NodePool>> {
    match slot {
        Some(slot) => topo.primary_for(slot),
        None => topo.any_primary(pick),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_error_code() {
        assert_eq!(classify_reply(b"+OK\r\n", "h"), ReplyClass::Final);
        assert_eq!(classify_reply(b"-ERR wrong type\r\n", "h"), ReplyClass::Final);
        assert_eq!(
            classify_reply(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n", "h"),
            ReplyClass::TryAgain
        );
        assert_eq!(classify_reply(b"-CLUSTERDOWN The cluster is down\r\n", "h"), ReplyClass::ClusterDown);
        assert_eq!(
            classify_reply(b"-READONLY You can't write against a read only replica.\r\n", "h"),
            ReplyClass::NodeNotReady
        );
        assert_eq!(
            classify_reply(b"-LOADING Redis is loading the dataset in memory\r\n", "h"),
            ReplyClass::NodeNotReady
        );
        assert_eq!(classify_reply(b"-NOSCRIPT No matching script. Please use EVAL.\r\n", "h"), ReplyClass::NoScript);
        assert_eq!(
            classify_reply(
                b"-UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)\r\n",
                "h"
            ),
            ReplyClass::NodeNotReady
        );
        // The other UNBLOCKEDs are the blocked command's answer.
        assert_eq!(classify_reply(b"-UNBLOCKED the stream key no longer exists\r\n", "h"), ReplyClass::Final);
        assert_eq!(classify_reply(b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n", "h"), ReplyClass::Final);
        assert_eq!(
            classify_reply(b"-MOVED 3999 127.0.0.1:6381\r\n", "h"),
            ReplyClass::Moved(NodeAddr::new("127.0.0.1", 6381))
        );
        assert_eq!(
            classify_reply(b"-ASK 3999 :6381\r\n", "10.0.0.1"),
            ReplyClass::Ask(NodeAddr::new("10.0.0.1", 6381))
        );
        // A message that merely mentions MOVED is not a redirect.
        assert_eq!(classify_reply(b"-ERR MOVED 1 a:1\r\n", "h"), ReplyClass::Final);
    }

    /// A request frame of bare words and each word's range (what the planners read; also used by `split`'s tests).
    pub(super) fn words(words: &[&str]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let mut frame = Vec::new();
        let mut ranges = Vec::new();
        for w in words {
            ranges.push(frame.len()..frame.len() + w.len());
            frame.extend_from_slice(w.as_bytes());
        }
        (frame, ranges)
    }

    fn plan_of(w: &[&str]) -> Plan {
        let (frame, ranges) = words(w);
        plan(&CommandTable::builtin(), Args { frame: &frame, ranges: &ranges })
    }

    #[test]
    fn mset_missing_a_value_is_an_arity_error_across_slots_too() {
        // Found by the `routing` fuzz target: `MSET a 1 b` (a and b in different slots) was split into `MSET a 1`
        // alone, and the client got +OK.
        assert_ne!(Slot::for_key(b"a"), Slot::for_key(b"b"));
        let arity = Plan::Reject("ERR wrong number of arguments for 'mset' command".into());
        assert_eq!(plan_of(&["MSET", "a", "1", "b"]), arity);
        assert_eq!(plan_of(&["MSET", "a", "1", "b", "2", "c"]), arity);
        assert!(matches!(plan_of(&["MSET", "a", "1", "b", "2"]), Plan::Split { kind: SplitKind::MSet, .. }));
        // In one slot the node answers (with the same error).
        assert!(matches!(plan_of(&["MSET", "{a}1", "1", "{a}2"]), Plan::Forward { slot: Some(_), .. }));
    }

    fn plan_single(w: &[&str]) -> Plan {
        let (frame, ranges) = words(w);
        let args = Args { frame: &frame, ranges: &ranges };
        let table = CommandTable::builtin();
        plan_resolved(table.resolve(args), args, &Placement::Single)
    }

    #[test]
    fn a_single_group_takes_any_keys_together() {
        let zero = Some(Slot::ZERO);
        assert_eq!(plan_single(&["MSET", "a", "1", "b", "2"]), Plan::Forward { slot: zero, readonly: false });
        assert_eq!(plan_single(&["MGET", "a", "b", "c"]), Plan::Forward { slot: zero, readonly: true });
        assert_eq!(plan_single(&["DEL", "a", "b"]), Plan::Forward { slot: zero, readonly: false });
        assert_eq!(plan_single(&["BLPOP", "a", "b", "0"]), Plan::Blocking { slot: zero, readonly: false });
        assert_eq!(plan_single(&["WATCH", "a", "b"]), Plan::Txn { cmd: TxnCommand::Watch, slot: zero });
        assert!(matches!(plan_single(&["EVAL", "return 1", "2", "a", "b"]), Plan::Eval { slot: Some(_), .. }));
        assert_eq!(plan_single(&["SCAN", "0"]), Plan::Forward { slot: None, readonly: true });
        assert_eq!(plan_single(&["GET", "a"]), Plan::Forward { slot: zero, readonly: true });
        // The same requests in a cluster.
        assert_eq!(plan_of(&["DEL", "a", "b"]), Plan::Split { kind: SplitKind::SumIntegers, readonly: false });
        assert_eq!(plan_of(&["BLPOP", "a", "b", "0"]), Plan::Reject(CROSSSLOT.to_string()));
        assert_eq!(plan_of(&["SCAN", "0"]), Plan::Scan);
    }

    #[test]
    fn empty_request_is_rejected_without_panicking() {
        // Found by the `routing` fuzz target (`*0\r\n` or a blank inline line reaching `plan`).
        assert_eq!(plan_of(&[]), Plan::Reject("ERR unknown command '', with args beginning with: ".into()));
    }

    #[test]
    fn unknown_command_wording_follows_redis() {
        let words: Vec<String> = vec!["nosuchcmd".into(), "a".repeat(100), "b".repeat(100), "c".into()];
        let mut frame = Vec::new();
        let mut ranges = Vec::new();
        for w in &words {
            ranges.push(frame.len()..frame.len() + w.len());
            frame.extend_from_slice(w.as_bytes());
        }
        let msg = unknown_command(Args { frame: &frame, ranges: &ranges });
        // 'a…a' (100) + quote/space = 103 listed, then 25 bytes of b's fit.
        let expected = format!(
            "ERR unknown command 'nosuchcmd', with args beginning with: '{}' '{}' ",
            "a".repeat(100),
            "b".repeat(25)
        );
        assert_eq!(msg, expected);
    }
}
