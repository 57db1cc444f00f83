//! Pub/sub: SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE and their UN... forms on the session's own pub/sub connections
//! (`upstream::subscriber`), and Redis's rules for a subscribed client.
//!
//! - **Where subscriptions live.** One connection per node the client has subscriptions on; channels, patterns
//!   and shard channels share it. A channel is subscribed on the primary of its slot ([`channel_placement`]), where
//!   PUBLISH of that channel goes too, so PUBLISH counts its subscribers through slotway as one server would. A
//!   keyspace notification channel `__keyspace@<db>__:<key>` is placed by its key's slot (the node that fires its
//!   events); `__keyevent@...` channels and every pattern are subscribed on every primary, because keyspace
//!   notifications are local to the node of the key while PUBLISH messages reach every node of a cluster. For a
//!   subscription held on several nodes, a message is relayed from one of them only (the first), except keyspace
//!   notifications, which each come from the one node that fired them: the client gets each message once. A
//!   connection is opened on the first subscription that needs it and closed as soon as it holds none
//!   (unsubscribing everything releases every connection; so do RESET and disconnecting).
//! - **One at a time.** A subscribe-family command waits until every earlier request is answered, and nothing
//!   after it is sent until its confirmations are in (`fence`). That costs a round trip per command (subscribing is
//!   rare) and buys exact Redis behaviour: the confirmations the client gets are computed here when the command
//!   starts, from the session's own record of its subscriptions, in argument order with Redis's counts (for shard
//!   channels the client's total across shards, which no single node knows), and sent once every node has
//!   confirmed; a RESP2 client's "subscribed" state is known for the next command.
//! - **Confirmations** arrive one per channel and connection; they update the record. An unsubscribe the session
//!   didn't ask for (a node that lost a shard channel's slot in resharding sends `sunsubscribe`) is passed to the
//!   client as Redis Cluster itself would send it, with the client's count: the client learns the channel is gone
//!   and may SSUBSCRIBE again (slotway then routes it to the slot's new owner, following MOVED).
//! - **Messages** are relayed as the node sent them (RESP2 arrays or RESP3 pushes; converted if the client has
//!   switched protocol since). They go out between replies, never inside one: straight to the output when nothing
//!   is pending, else queued behind the pending requests (so a message never overtakes its subscription's
//!   confirmation). Like Redis's pushes, confirmations and messages reach the client under CLIENT REPLY OFF too.
//! - **Failures.** A pub/sub connection that fails loses its subscriptions on the node; the client is then
//!   disconnected (as it would be by its own node), and reconnects and subscribes again.
use super::{error_reply, Kind, Lane, Part, Pending, Session, Track};
use crate::cluster::Slot;
use crate::command::{Args, PubSubCommand};
use crate::dispatch::{channel_placement, classify_reply, ChannelPlacement, ReplyClass};
use crate::metrics::Metrics;
use crate::topology::RefreshReason;
use crate::upstream::subscriber::{Event, OutputBudget, Sink};
use crate::upstream::{Dedicated, NodePool, ReplyTo, Request as UpstreamRequest};
use bytes::{Bytes, BytesMut};
use resp::encode::{self, Protocol};
use resp::Value;
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// What a subscribed RESP2 client may run, as Redis words it.
fn context_error(name: &str) -> String {
    format!(
        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in \
         this context"
    )
}

/// The three kinds of subscription a client can hold.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Class {
    Channel,
    Pattern,
    Shard,
}

/// A confirmation's meaning: which kind of subscription, added or removed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Confirmation {
    class: Class,
    subscribe: bool,
}

impl Confirmation {
    fn of(cmd: PubSubCommand) -> Confirmation {
        let (class, subscribe) = match cmd {
            PubSubCommand::Subscribe => (Class::Channel, true),
            PubSubCommand::Unsubscribe => (Class::Channel, false),
            PubSubCommand::PSubscribe => (Class::Pattern, true),
            PubSubCommand::PUnsubscribe => (Class::Pattern, false),
            PubSubCommand::SSubscribe => (Class::Shard, true),
            PubSubCommand::SUnsubscribe => (Class::Shard, false),
        };
        Confirmation { class, subscribe }
    }

    fn name(self) -> &'static [u8] {
        match (self.class, self.subscribe) {
            (Class::Channel, true) => b"subscribe",
            (Class::Channel, false) => b"unsubscribe",
            (Class::Pattern, true) => b"psubscribe",
            (Class::Pattern, false) => b"punsubscribe",
            (Class::Shard, true) => b"ssubscribe",
            (Class::Shard, false) => b"sunsubscribe",
        }
    }

    fn parse(name: &[u8]) -> Option<Confirmation> {
        [PubSubCommand::Subscribe, PubSubCommand::Unsubscribe, PubSubCommand::PSubscribe]
            .into_iter()
            .chain([PubSubCommand::PUnsubscribe, PubSubCommand::SSubscribe, PubSubCommand::SUnsubscribe])
            .map(Confirmation::of)
            .find(|c| c.name() == name)
    }
}

/// What one frame from a pub/sub connection is.
#[derive(Debug, PartialEq)]
enum Frame {
    /// `message`, `pmessage` or `smessage`: relayed as it is.
    Message,
    /// A (un)subscription confirmation for `channel` (None: an unsubscribe-all with nothing subscribed).
    Confirm { c: Confirmation, channel: Option<Bytes> },
    /// Anything else: the reply to the command in flight (an error such as MOVED).
    Reply,
}

/// How Redis starts each message frame (`addReplyPubsubMessage` and friends), in both protocols.
const MESSAGE_STARTS: [&[u8]; 6] = [
    b"*3\r\n$7\r\nmessage\r\n",
    b">3\r\n$7\r\nmessage\r\n",
    b"*4\r\n$8\r\npmessage\r\n",
    b">4\r\n$8\r\npmessage\r\n",
    b"*3\r\n$8\r\nsmessage\r\n",
    b">3\r\n$8\r\nsmessage\r\n",
];

fn classify(frame: &Bytes) -> Frame {
    if MESSAGE_STARTS.iter().any(|s| frame.starts_with(s)) {
        return Frame::Message;
    }
    if !(frame.starts_with(b"*3\r\n") || frame.starts_with(b">3\r\n")) {
        return Frame::Reply;
    }
    let Ok(Some((v, _))) = Value::parse(frame, &resp::Limits::default()) else { return Frame::Reply };
    let Some(items) = v.as_array() else { return Frame::Reply };
    let Some(c) = items[0].as_bytes().and_then(|n| Confirmation::parse(n)) else { return Frame::Reply };
    let channel = match &items[1] {
        Value::Bulk(b) => Some(b.clone()),
        _ => None,
    };
    Frame::Confirm { c, channel }
}

/// `[kind, channel or null, count]` as a push (RESP3) or an array (RESP2), as Redis sends confirmations.
fn render(out: &mut BytesMut, proto: Protocol, c: Confirmation, channel: Option<&[u8]>, count: usize) {
    encode::push_header(out, 3, proto);
    encode::bulk(out, c.name());
    match channel {
        Some(ch) => encode::bulk(out, ch),
        None => encode::nil(out, proto),
    }
    encode::integer(out, count as i64);
}

/// A message frame re-encoded for a client that switched protocol after subscribing.
fn reencode(frame: &Bytes, proto: Protocol) -> Bytes {
    match Value::parse(frame, &resp::Limits::default()) {
        Ok(Some((Value::Push(items) | Value::Array(items), _))) => {
            let mut out = BytesMut::with_capacity(frame.len() + 8);
            encode::push_header(&mut out, items.len(), proto);
            items.iter().for_each(|v| v.encode(&mut out, proto));
            out.freeze()
        }
        _ => frame.clone(),
    }
}

/// One pub/sub connection of the session (to one node).
struct SubConn {
    /// The session's number for it (events carry it; 0 is never used).
    id: u64,
    conn: Dedicated,
}

/// The subscribe-family command in flight (there is at most one).
struct Current {
    seq: u64,
    want: Confirmation,
    /// The client's reply once every part is confirmed: Redis's confirmations, computed when the command started.
    reply: Bytes,
    /// Errors from parts (they replace the reply).
    errors: BytesMut,
    /// One per part (per connection the command went to).
    waits: SmallVec<[Wait; 1]>,
}

struct Wait {
    /// The connection it was sent on; 0 while not sent (routing, or waiting for a retry).
    conn: u64,
    /// Confirmations that complete it.
    expect: u32,
    got: u32,
    done: bool,
}

/// Whether `channel` is a keyspace notification channel: its messages come from the node that fired them only.
fn is_notification(channel: &[u8]) -> bool {
    channel.starts_with(b"__keyspace@") || channel.starts_with(b"__keyevent@")
}

/// A session's pub/sub state: its connections and what it is subscribed to where.
pub(super) struct PubSub {
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
    pub(super) budget: Arc<OutputBudget>,
    next_conn: u64,
    /// One per node the client has subscriptions on.
    conns: Vec<SubConn>,
    /// Channel → the connections it is subscribed on (one; every primary's for `__keyevent@` channels).
    channels: HashMap<Bytes, SmallVec<[u64; 1]>>,
    /// Pattern → the connections it is subscribed on (every primary's).
    patterns: HashMap<Bytes, SmallVec<[u64; 4]>>,
    /// Shard channel → the connection it is subscribed on.
    shard_channels: HashMap<Bytes, u64>,
    /// Some channel or pattern is held on more than one connection: messages are deduplicated.
    spread: bool,
    current: Option<Current>,
    metrics: Arc<Metrics>,
    /// Counted in `pubsub_clients` (while it holds a connection).
    counted: bool,
}

/// What woke the session on the pub/sub side.
pub(super) enum Wake {
    Event(Event),
    /// More than `client.pubsub_output_limit_bytes` waits for the client.
    Overflow,
}

/// The next pub/sub event; never completes without pub/sub state.
pub(super) async fn wake(ps: &mut Option<Box<PubSub>>) -> Wake {
    let Some(ps) = ps else { return std::future::pending().await };
    tokio::select! {
        Some(ev) = ps.rx.recv() => Wake::Event(ev),
        () = ps.budget.exceeded() => Wake::Overflow,
    }
}

impl PubSub {
    fn new(limit: usize, metrics: Arc<Metrics>) -> PubSub {
        let (tx, rx) = mpsc::unbounded_channel();
        PubSub {
            tx,
            rx,
            budget: Arc::new(OutputBudget::new(limit)),
            next_conn: 1,
            conns: Vec::new(),
            channels: HashMap::new(),
            patterns: HashMap::new(),
            shard_channels: HashMap::new(),
            spread: false,
            current: None,
            metrics,
            counted: false,
        }
    }

    /// Whether the client holds any subscription (Redis's subscribed state).
    pub(super) fn subscribed(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard_channels.is_empty())
    }

    /// (channels, patterns, shard channels) subscribed now, for CLIENT LIST and INFO clients.
    pub(super) fn counts(&self) -> (u32, u32, u32) {
        (self.channels.len() as u32, self.patterns.len() as u32, self.shard_channels.len() as u32)
    }

    /// The count a confirmation of `class` reports: channels and patterns together, shard channels apart.
    fn count(&self, class: Class) -> usize {
        match class {
            Class::Channel | Class::Pattern => self.channels.len() + self.patterns.len(),
            Class::Shard => self.shard_channels.len(),
        }
    }

    /// Whether the client holds `name` as a subscription of `class`.
    fn holds(&self, class: Class, name: &[u8]) -> bool {
        match class {
            Class::Channel => self.channels.contains_key(name),
            Class::Pattern => self.patterns.contains_key(name),
            Class::Shard => self.shard_channels.contains_key(name),
        }
    }

    /// The names the client holds of `class`.
    fn names(&self, class: Class) -> Vec<Bytes> {
        match class {
            Class::Channel => self.channels.keys().cloned().collect(),
            Class::Pattern => self.patterns.keys().cloned().collect(),
            Class::Shard => self.shard_channels.keys().cloned().collect(),
        }
    }

    /// The connections `name` of `class` is subscribed on.
    fn conns_of(&self, class: Class, name: &[u8]) -> SmallVec<[u64; 4]> {
        match class {
            Class::Channel => self.channels.get(name).map(|c| c.iter().copied().collect()).unwrap_or_default(),
            Class::Pattern => self.patterns.get(name).cloned().unwrap_or_default(),
            Class::Shard => self.shard_channels.get(name).copied().into_iter().collect(),
        }
    }

    /// How many subscriptions of `class` connection `conn` holds.
    fn held_on(&self, class: Class, conn: u64) -> u32 {
        let n = match class {
            Class::Channel => self.channels.values().filter(|c| c.contains(&conn)).count(),
            Class::Pattern => self.patterns.values().filter(|c| c.contains(&conn)).count(),
            Class::Shard => self.shard_channels.values().filter(|&&c| c == conn).count(),
        };
        n as u32
    }

    /// Records a confirmation from connection `conn`.
    fn apply(&mut self, c: Confirmation, channel: Option<&Bytes>, conn: u64) {
        let Some(ch) = channel else { return };
        fn add<const N: usize>(map: &mut HashMap<Bytes, SmallVec<[u64; N]>>, ch: &Bytes, conn: u64) {
            let on = map.entry(ch.clone()).or_default();
            if !on.contains(&conn) {
                on.push(conn);
            }
        }
        fn remove<const N: usize>(map: &mut HashMap<Bytes, SmallVec<[u64; N]>>, ch: &Bytes, conn: u64) {
            if let Some(on) = map.get_mut(ch) {
                on.retain(|c| *c != conn);
                if on.is_empty() {
                    map.remove(ch);
                }
            }
        }
        match (c.class, c.subscribe) {
            (Class::Channel, true) => add(&mut self.channels, ch, conn),
            (Class::Channel, false) => remove(&mut self.channels, ch, conn),
            (Class::Pattern, true) => add(&mut self.patterns, ch, conn),
            (Class::Pattern, false) => remove(&mut self.patterns, ch, conn),
            (Class::Shard, true) => drop(self.shard_channels.insert(ch.clone(), conn)),
            (Class::Shard, false) => drop(self.shard_channels.remove(ch)),
        }
        self.spread = self.channels.values().any(|c| c.len() > 1) || self.patterns.values().any(|c| c.len() > 1);
    }

    /// Whether a message frame from `conn` is one the client should get: a message for a subscription held on
    /// several connections arrives on each of them (a cluster sends PUBLISH messages to every node), so one copy
    /// is relayed: the one from the node of the channel's slot (`home`: where PUBLISH through slotway runs, so its
    /// copy comes first and messages keep the order they were published in), or the first connection's when the
    /// client has none there. A keyspace notification is fired by one node only: always relayed.
    fn wanted(&self, conn: u64, frame: &Bytes, home: impl FnOnce(&[u8]) -> Option<crate::cluster::NodeAddr>) -> bool {
        if !self.spread || frame.starts_with(b"*3\r\n$8\r\nsmessage") || frame.starts_with(b">3\r\n$8\r\nsmessage") {
            return true;
        }
        let Ok(Some((v, _))) = Value::parse(frame, &resp::Limits::default()) else { return true };
        let Some(items) = v.as_array() else { return true };
        let pattern = items.len() == 4;
        let (Some(name), Some(channel)) =
            (items.get(1).and_then(Value::as_bytes), items.get(if pattern { 2 } else { 1 }).and_then(Value::as_bytes))
        else {
            return true;
        };
        let on =
            if pattern { self.patterns.get(name).map(|c| &c[..]) } else { self.channels.get(name).map(|c| &c[..]) };
        let on = match on {
            Some(on) if on.len() > 1 && !is_notification(channel) => on,
            _ => return true,
        };
        let home = home(channel);
        let home_conn = on
            .iter()
            .copied()
            .find(|&id| home.as_ref().is_some_and(|h| self.conn(id).is_some_and(|c| c.conn.addr() == h)));
        home_conn.unwrap_or(on[0]) == conn
    }

    fn conn(&self, id: u64) -> Option<&SubConn> {
        self.conns.iter().find(|c| c.id == id)
    }

    fn waiting_on(&self, id: u64) -> bool {
        self.current.as_ref().is_some_and(|cur| cur.waits.iter().any(|w| w.conn == id && !w.done))
    }

    /// Closes the connections that hold no subscription and wait for nothing.
    fn tidy(&mut self) {
        let keep: Vec<bool> = self
            .conns
            .iter()
            .map(|c| {
                self.waiting_on(c.id)
                    || self.channels.values().any(|on| on.contains(&c.id))
                    || self.patterns.values().any(|on| on.contains(&c.id))
                    || self.shard_channels.values().any(|&id| id == c.id)
            })
            .collect();
        let mut keep = keep.into_iter();
        self.conns.retain(|_| keep.next().unwrap_or(true));
        self.update_gauge();
    }

    fn update_gauge(&mut self) {
        let active = !self.conns.is_empty();
        if active != self.counted {
            self.counted = active;
            if active {
                self.metrics.pubsub_clients.fetch_add(1, Ordering::Relaxed);
            } else {
                self.metrics.pubsub_clients.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Forgets a failed connection and the subscriptions it held; true if it held some.
    fn forget(&mut self, id: u64) -> bool {
        let before = self.channels.len() + self.patterns.len() + self.shard_channels.len();
        let held =
            self.channels.values().any(|on| on.contains(&id)) || self.patterns.values().any(|on| on.contains(&id));
        // A subscription held on several nodes is incomplete without this one: it is gone as a whole.
        self.channels.retain(|_, on| !on.contains(&id));
        self.patterns.retain(|_, on| !on.contains(&id));
        self.shard_channels.retain(|_, c| *c != id);
        self.conns.retain(|c| c.id != id);
        self.update_gauge();
        held || self.channels.len() + self.patterns.len() + self.shard_channels.len() != before
    }

    /// The confirmations Redis sends for `want` with these arguments (none: the unsubscribe-all form), given what
    /// the client holds now: one per argument in order, each with the client's count after it.
    fn confirmations(&self, want: Confirmation, args: &[Bytes], proto: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        let mut held: HashSet<Bytes> = self.names(want.class).into_iter().collect();
        let others = self.count(want.class) - held.len();
        if args.is_empty() {
            if held.is_empty() {
                render(&mut out, proto, want, None, others);
            }
            let names: Vec<Bytes> = held.iter().cloned().collect();
            for name in names {
                held.remove(&name);
                render(&mut out, proto, want, Some(&name), others + held.len());
            }
        }
        for name in args {
            if want.subscribe {
                held.insert(name.clone());
            } else {
                held.remove(name);
            }
            render(&mut out, proto, want, Some(name), others + held.len());
        }
        out.freeze()
    }
}

impl PubSub {
    /// An event already queued, without waiting.
    pub(super) fn try_event(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl Drop for PubSub {
    fn drop(&mut self) {
        if self.counted {
            self.metrics.pubsub_clients.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One part of a subscribe-family command: the connection it goes on (0: routed by slot), the confirmations that
/// complete it, and its frame.
struct PartPlan {
    conn: u64,
    expect: u32,
    frame: Bytes,
}

/// `NAME arg ...` as a RESP array.
fn command_frame(name: &[u8], args: &[&Bytes]) -> Bytes {
    let mut f = BytesMut::new();
    encode::array_header(&mut f, 1 + args.len());
    encode::bulk(&mut f, name);
    for a in args {
        encode::bulk(&mut f, a);
    }
    f.freeze()
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Redis's rule for a subscribed RESP2 client: only the subscribe family, PING, QUIT and RESET. Answers the
    /// request (true) when it is refused or a PING; unknown commands and wrong arity are left to the usual path,
    /// which words them as Redis does before this rule.
    pub(super) fn subscribed_context(&mut self, args: Args<'_>) -> bool {
        if self.client.protocol != Protocol::Resp2 || !self.pubsub.as_ref().is_some_and(|p| p.subscribed()) {
            return false;
        }
        let Some(info) = self.shared.table.resolve(args) else { return false };
        if !crate::dispatch::arity_ok(info, args) {
            return false;
        }
        let container = info.name.split('|').next().unwrap_or(&info.name);
        match container {
            "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ssubscribe" | "sunsubscribe" | "quit"
            | "reset" => false,
            "ping" if args.len() > 2 => {
                Metrics::incr(&self.shared.metrics.commands_local);
                self.push_error("ERR wrong number of arguments for 'ping' command");
                true
            }
            "ping" => {
                // A subscribed RESP2 client can only read arrays: Redis answers PING with one.
                Metrics::incr(&self.shared.metrics.commands_local);
                let mut b = BytesMut::new();
                encode::array_header(&mut b, 2);
                encode::bulk(&mut b, b"pong");
                encode::bulk(&mut b, if args.len() == 2 { args.get(1) } else { b"" });
                self.push_final(b.freeze());
                true
            }
            _ => {
                Metrics::incr(&self.shared.metrics.commands_local);
                self.push_error(&context_error(&info.name));
                true
            }
        }
    }

    /// A subscribe-family command: sent alone once every earlier request is answered; nothing after it is sent
    /// until its confirmations are in.
    pub(super) fn pubsub_command(
        &mut self,
        cmd: PubSubCommand,
        slot: Option<Slot>,
        frame: Bytes,
        ranges: &[Range<usize>],
    ) {
        if !self.all_answered() {
            return self.hold(frame, ranges);
        }
        self.lane = Lane::PubSub;
        self.fence = true;
        let args: SmallVec<[Bytes; 4]> = ranges[1..].iter().map(|r| frame.slice(r.clone())).collect();
        let want = Confirmation::of(cmd);
        if self.pubsub.is_none() {
            let limit = self.live.config.listen.pubsub_output_limit;
            self.pubsub = Some(Box::new(PubSub::new(limit, self.shared.metrics.clone())));
        }
        let ps = self.pubsub.as_deref().expect("just set");
        let reply = ps.confirmations(want, &args, self.client.protocol);
        let parts = match cmd {
            PubSubCommand::Subscribe | PubSubCommand::PSubscribe => match self.placed_parts(want, &args) {
                Ok(parts) => parts,
                Err(msg) => {
                    self.push_error(&msg);
                    return self.drop_pubsub_if_unused();
                }
            },
            // SSUBSCRIBE: every channel in one slot (checked by the planner), routed there following MOVED.
            PubSubCommand::SSubscribe => vec![PartPlan { conn: 0, expect: args.len() as u32, frame }],
            _ if args.is_empty() => {
                // Every connection that holds some of this class: each confirms what it held.
                let ps = self.pubsub.as_deref().expect("pub/sub state");
                let name = want.name().to_ascii_uppercase();
                ps.conns
                    .iter()
                    .map(|c| (c.id, ps.held_on(want.class, c.id)))
                    .filter(|&(_, held)| held > 0)
                    .map(|(conn, expect)| PartPlan { conn, expect, frame: command_frame(&name, &[]) })
                    .collect()
            }
            _ => {
                // Each argument on the connections that hold it; arguments held nowhere need no node.
                let ps = self.pubsub.as_deref().expect("pub/sub state");
                let mut groups: Vec<(u64, Vec<&Bytes>)> = Vec::new();
                for a in &args {
                    for conn in ps.conns_of(want.class, a) {
                        match groups.iter_mut().find(|(c, _)| *c == conn) {
                            Some((_, g)) => g.push(a),
                            None => groups.push((conn, vec![a])),
                        }
                    }
                }
                let name = want.name().to_ascii_uppercase();
                groups
                    .into_iter()
                    .map(|(conn, g)| PartPlan { conn, expect: g.len() as u32, frame: command_frame(&name, &g) })
                    .collect()
            }
        };
        if parts.is_empty() {
            // Nothing to change on any node: confirmed here, as a node would.
            Metrics::incr(&self.shared.metrics.commands_local);
            self.push_pubsub_reply(reply);
            return self.drop_pubsub_if_unused();
        }
        self.start(want, parts, slot, reply);
    }

    /// SUBSCRIBE / PSUBSCRIBE: each argument on the connection(s) of its placement, one part per connection.
    fn placed_parts(&mut self, want: Confirmation, args: &[Bytes]) -> Result<Vec<PartPlan>, String> {
        let topo = self.shared.topology.load();
        // Every group that serves keys: a cluster's shards with slots, the one group, a pool's shards not ejected.
        let every: Vec<Arc<NodePool>> = topo.serving_groups().filter_map(|g| topo.primaries[g].clone()).collect();
        let mut groups: Vec<(Arc<NodePool>, Vec<&Bytes>)> = Vec::new();
        for a in args {
            let placement = if want.class == Class::Pattern {
                ChannelPlacement::EveryPrimary
            } else {
                channel_placement(&topo.placement, a)
            };
            let (targets, token): (Vec<Arc<NodePool>>, Option<Slot>) = match placement {
                ChannelPlacement::EveryPrimary => (every.clone(), None),
                ChannelPlacement::Slot(slot) => (topo.primary_for(slot).cloned().into_iter().collect(), Some(slot)),
            };
            if targets.is_empty() {
                self.shared.topology.request_refresh(RefreshReason::ClusterDown);
                return Err(topo.unserved_error(token));
            }
            for t in targets {
                match groups.iter_mut().find(|(p, _)| Arc::ptr_eq(p, &t)) {
                    Some((_, g)) => g.push(a),
                    None => groups.push((t, vec![a])),
                }
            }
        }
        drop(topo);
        let name = want.name().to_ascii_uppercase();
        let mut parts = Vec::with_capacity(groups.len());
        for (pool, g) in groups {
            let conn = self.conn_for(&pool)?;
            parts.push(PartPlan { conn, expect: g.len() as u32, frame: command_frame(&name, &g) });
        }
        Ok(parts)
    }

    /// A reply to a subscribe-family command that no node needed to see: confirmations are pushes, so they reach
    /// the client under CLIENT REPLY OFF too.
    fn push_pubsub_reply(&mut self, reply: Bytes) {
        self.pending.push_back(Pending {
            reply: Some(reply),
            readonly: true,
            parts: SmallVec::new(),
            remaining: 0,
            merge: None,
            kind: Kind::PubSub,
            track: Track::default(),
        });
    }

    /// Queues the command with one part per planned connection and sends it; a connection of 0 is routed by
    /// `slot` (SSUBSCRIBE: the slot's primary, following MOVED).
    fn start(&mut self, want: Confirmation, plan: Vec<PartPlan>, slot: Option<Slot>, reply: Bytes) {
        let parts = plan.iter().map(|p| Part::new(p.frame.clone(), slot)).collect();
        let remaining = plan.len();
        self.pending.push_back(Pending {
            reply: None,
            readonly: true,
            parts,
            remaining,
            merge: None,
            kind: Kind::PubSub,
            track: Default::default(),
        });
        let seq = self.base + self.pending.len() as u64 - 1;
        let ps = self.pubsub.as_deref_mut().expect("pub/sub state");
        ps.current = Some(Current {
            seq,
            want,
            reply,
            errors: BytesMut::new(),
            waits: plan.iter().map(|p| Wait { conn: p.conn, expect: p.expect, got: 0, done: false }).collect(),
        });
        for (part, p) in plan.into_iter().enumerate() {
            if p.conn != 0 {
                send_on(self.pubsub.as_deref().expect("pub/sub state"), p.conn, p.frame);
            } else {
                self.send_routed(seq, part);
            }
        }
    }

    /// The session's connection to `pool`'s node, opened if there is none.
    fn conn_for(&mut self, pool: &Arc<NodePool>) -> Result<u64, String> {
        let existing =
            self.pubsub.as_ref().and_then(|p| p.conns.iter().find(|c| c.conn.addr() == &pool.addr)).map(|c| c.id);
        if let Some(id) = existing {
            return Ok(id);
        }
        let (identity, worker, proto) = (self.identity, self.worker, self.client.protocol);
        let ps = self.pubsub.as_deref_mut().expect("pub/sub state");
        let id = ps.next_conn;
        ps.next_conn += 1;
        let sink = Sink { tx: ps.tx.clone(), conn: id, budget: ps.budget.clone() };
        let conn = pool.take_subscriber(identity, worker, proto, sink).map_err(|e| format!("ERR slotway: {e}"))?;
        ps.conns.push(SubConn { id, conn });
        ps.update_gauge();
        Ok(id)
    }

    /// Sends part `part` of SSUBSCRIBE `seq` on the session's connection to `pool`'s node (opened if needed).
    pub(super) fn pubsub_send(&mut self, seq: u64, part: usize, pool: &Arc<NodePool>) {
        let id = match self.conn_for(pool) {
            Ok(id) => id,
            Err(msg) => return self.finish_part(seq, part, error_reply(&msg)),
        };
        let frame = self.part_mut(seq, part).frame.clone();
        let ps = self.pubsub.as_deref_mut().expect("pub/sub state");
        if let Some(w) = ps.current.as_mut().filter(|c| c.seq == seq).and_then(|c| c.waits.get_mut(part)) {
            w.conn = id;
        }
        send_on(ps, id, frame);
    }

    /// One event from a pub/sub connection.
    pub(super) fn on_pubsub_event(&mut self, ev: Event) {
        let Some(ps) = self.pubsub.as_deref_mut() else { return };
        let known = ps.conn(ev.conn).is_some();
        let frame = match ev.frame {
            Ok(frame) if known => frame,
            Ok(frame) => {
                // From a connection already dropped (its subscriptions ended): nothing to do.
                ps.budget.release(frame.len());
                return;
            }
            Err(_) if !known => return,
            Err(e) => return self.pubsub_conn_failed(ev.conn, &e.to_string()),
        };
        match classify(&frame) {
            Frame::Message if ps.wanted(ev.conn, &frame, |channel| home_node(&self.shared, channel)) => {
                self.relay(ev.conn, frame)
            }
            // The same message from another node of a subscription held on several.
            Frame::Message => ps.budget.release(frame.len()),
            Frame::Confirm { c, channel } => {
                ps.budget.release(frame.len());
                self.on_confirmation(ev.conn, c, channel);
            }
            Frame::Reply => {
                ps.budget.release(frame.len());
                self.on_pubsub_reply(ev.conn, frame);
            }
        }
    }

    /// A message for the client: out of band, between replies.
    fn relay(&mut self, conn: u64, frame: Bytes) {
        Metrics::incr(&self.shared.metrics.pubsub_messages);
        let ps = self.pubsub.as_deref().expect("pub/sub state");
        let conn_proto = ps.conn(conn).map_or(self.client.protocol, |c| c.conn.protocol());
        let frame = if conn_proto == self.client.protocol {
            frame
        } else {
            let converted = reencode(&frame, self.client.protocol);
            ps.budget.release(frame.len());
            ps.budget.charge(converted.len());
            converted
        };
        self.push_out_of_band(frame);
    }

    /// Appends a frame that answers no request (charged to the output budget) to what the client gets next.
    fn push_out_of_band(&mut self, frame: Bytes) {
        if self.pending.is_empty() {
            self.out_pushed += frame.len();
            self.out.extend_from_slice(&frame);
        } else {
            // Behind the pending requests: after the confirmation of its own subscription, before later replies.
            self.pending.push_back(Pending {
                reply: Some(frame),
                readonly: true,
                parts: SmallVec::new(),
                remaining: 0,
                merge: None,
                kind: Kind::Message,
                track: Default::default(),
            });
        }
    }

    fn on_confirmation(&mut self, conn: u64, c: Confirmation, channel: Option<Bytes>) {
        let proto = self.client.protocol;
        let ps = self.pubsub.as_deref_mut().expect("pub/sub state");
        let was_held = channel.as_ref().is_some_and(|ch| ps.holds(c.class, ch));
        ps.apply(c, channel.as_ref(), conn);
        let count = ps.count(c.class);
        let expected = ps.current.as_mut().filter(|cur| cur.want == c).and_then(|cur| {
            let part = cur.waits.iter().position(|w| w.conn == conn && !w.done)?;
            Some((cur, part))
        });
        let Some((cur, part)) = expected else {
            // Unasked: a node dropped a shard channel whose slot it no longer serves. Tell the client, with its
            // count (once: a subscription still held on another node is not gone); the slot map is stale, so
            // refresh it for the client's next SSUBSCRIBE.
            if c.class == Class::Shard {
                self.shared.topology.request_refresh(RefreshReason::Moved);
            }
            let gone = was_held && !channel.as_ref().is_some_and(|ch| ps.holds(c.class, ch));
            ps.tidy();
            if gone || c.subscribe {
                let mut out = BytesMut::new();
                render(&mut out, proto, c, channel.as_deref(), count);
                ps.budget.charge(out.len());
                tracing::debug!(client = %self.client.addr(), kind = ?c, "unrequested pub/sub confirmation relayed");
                self.push_out_of_band(out.freeze());
            }
            return self.drop_pubsub_if_unused();
        };
        let w = &mut cur.waits[part];
        w.got += 1;
        if w.got >= w.expect {
            w.done = true;
            let seq = cur.seq;
            self.complete_if_done(seq);
        }
    }

    /// A frame that is neither a message nor a confirmation: the reply to the command in flight on `conn`.
    fn on_pubsub_reply(&mut self, conn: u64, frame: Bytes) {
        let ps = self.pubsub.as_deref_mut().expect("pub/sub state");
        let host = ps.conn(conn).map(|c| c.conn.addr().host.clone());
        let Some(cur) = ps.current.as_mut() else { return };
        let (seq, want) = (cur.seq, cur.want);
        let Some(part) = cur.waits.iter().position(|w| w.conn == conn && !w.done) else { return };
        cur.waits[part].conn = 0;
        if want != Confirmation::of(PubSubCommand::SSubscribe) {
            return self.finish_part(seq, part, frame);
        }
        // SSUBSCRIBE is routed by slot: follow the slot to its owner as for any keyed command.
        let redirects = self.part_mut(seq, part).redirects;
        let metrics = self.shared.metrics.clone();
        match classify_reply(&frame, host.as_deref().unwrap_or("")) {
            ReplyClass::Moved(addr) if redirects < self.live.config.upstream.max_redirects => {
                Metrics::incr(&metrics.redirects_moved);
                self.part_mut(seq, part).redirects += 1;
                self.shared.topology.request_refresh(RefreshReason::Moved);
                let pool = self.shared.topology.upstreams().pool(&addr);
                self.send_to(seq, part, pool, false);
                if let Some(ps) = self.pubsub.as_deref_mut() {
                    ps.tidy();
                }
            }
            // ASK: the slot is being migrated. Subscribing on the importing node with ASKING can't be done on a
            // connection that is already subscribed (RESP2 allows no ASKING there); retry until the slot has moved.
            ReplyClass::Ask(_) | ReplyClass::TryAgain => {
                Metrics::incr(&metrics.retries_tryagain);
                self.retry_or_reply(seq, part, frame);
            }
            ReplyClass::ClusterDown | ReplyClass::NodeNotReady => {
                Metrics::incr(&metrics.retries_clusterdown);
                self.shared.topology.request_refresh(RefreshReason::ClusterDown);
                self.retry_or_reply(seq, part, frame);
            }
            _ => self.finish_part(seq, part, frame),
        }
    }

    /// The final reply of one part that isn't a confirmation (an error, or a failure slotway words).
    pub(super) fn finish_pubsub_part(&mut self, seq: u64, part: usize, reply: Bytes) {
        let cur = self.pubsub.as_deref_mut().and_then(|p| p.current.as_mut()).filter(|c| c.seq == seq);
        let Some(cur) = cur else {
            // Not the command in flight (cannot happen; answer it rather than leave it pending).
            let p = &mut self.pending[(seq - self.base) as usize];
            p.remaining = 0;
            p.reply = Some(reply);
            return;
        };
        cur.errors.extend_from_slice(&reply);
        if let Some(w) = cur.waits.get_mut(part) {
            w.done = true;
            w.conn = 0;
        }
        self.complete_if_done(seq);
    }

    /// When every part of the command in flight is done, its reply is complete; unused connections close.
    fn complete_if_done(&mut self, seq: u64) {
        let ps = self.pubsub.as_deref_mut().expect("pub/sub state");
        if !ps.current.as_ref().is_some_and(|c| c.seq == seq && c.waits.iter().all(|w| w.done)) {
            return;
        }
        let cur = ps.current.take().expect("checked");
        ps.tidy();
        self.client.handle.set_subscriptions(
            ps.channels.len() as u32,
            ps.patterns.len() as u32,
            ps.shard_channels.len() as u32,
        );
        let p = &mut self.pending[(seq - self.base) as usize];
        p.remaining = 0;
        // An error from any node is the reply (what the others confirmed stays recorded).
        p.reply = Some(if cur.errors.is_empty() { cur.reply } else { cur.errors.freeze() });
        self.drop_pubsub_if_unused();
    }

    /// Forgets the pub/sub state once it holds no connection and nothing is in flight: a client that has left
    /// pub/sub costs nothing more (its budget goes too; what it still has to write is plain output now).
    pub(super) fn drop_pubsub_if_unused(&mut self) {
        if self.pubsub.as_ref().is_some_and(|p| p.conns.is_empty() && p.current.is_none()) {
            self.pubsub = None;
            self.out_pushed = 0;
        }
    }

    /// A pub/sub connection failed: the command waiting on it gets the error; if it held subscriptions, they are
    /// gone on the node, so the client is disconnected (it reconnects and subscribes again, as after losing its
    /// own connection to a node).
    fn pubsub_conn_failed(&mut self, conn: u64, reason: &str) {
        let ps = self.pubsub.as_deref_mut().expect("pub/sub state");
        let waiting = ps
            .current
            .as_ref()
            .and_then(|cur| cur.waits.iter().position(|w| w.conn == conn && !w.done).map(|part| (cur.seq, part)));
        let lost = ps.forget(conn);
        if let Some((seq, part)) = waiting {
            self.finish_part(seq, part, error_reply(&format!("ERR slotway: {reason}")));
        }
        self.drop_pubsub_if_unused();
        if lost {
            Metrics::incr(&self.shared.metrics.pubsub_connection_failures);
            tracing::warn!(client = %self.client.addr(), reason, "pub/sub connection failed; disconnecting the subscriber");
            self.closing = true;
        }
    }
}

/// The primary of a channel's slot: where PUBLISH of it through slotway runs.
fn home_node(shared: &crate::downstream::Shared, channel: &[u8]) -> Option<crate::cluster::NodeAddr> {
    let topo = shared.topology.load();
    match channel_placement(&topo.placement, channel) {
        ChannelPlacement::Slot(slot) => topo.primary_for(slot).map(|p| p.addr.clone()),
        ChannelPlacement::EveryPrimary => None,
    }
}

fn send_on(ps: &PubSub, conn: u64, frame: Bytes) {
    if let Some(c) = ps.conn(conn) {
        c.conn.send(UpstreamRequest { frame, asking: false, reply_to: ReplyTo::Discard });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Placement;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn frames_are_classified_in_both_protocols() {
        assert_eq!(classify(&b(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n")), Frame::Message);
        assert_eq!(classify(&b(b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$1\r\nx\r\n")), Frame::Message);
        assert_eq!(classify(&b(b">3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$1\r\nx\r\n")), Frame::Message);
        let sub = Confirmation { class: Class::Channel, subscribe: true };
        assert_eq!(
            classify(&b(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")),
            Frame::Confirm { c: sub, channel: Some(b(b"ch")) }
        );
        let sunsub = Confirmation { class: Class::Shard, subscribe: false };
        assert_eq!(
            classify(&b(b">3\r\n$12\r\nsunsubscribe\r\n_\r\n:0\r\n")),
            Frame::Confirm { c: sunsub, channel: None }
        );
        assert_eq!(classify(&b(b"-MOVED 1 127.0.0.1:7000\r\n")), Frame::Reply);
        assert_eq!(classify(&b(b"*3\r\n$3\r\nfoo\r\n$2\r\nch\r\n:1\r\n")), Frame::Reply);
        assert_eq!(classify(&b(b"+OK\r\n")), Frame::Reply);
    }

    #[test]
    fn confirmations_render_as_redis_sends_them() {
        let c = Confirmation::of(PubSubCommand::PUnsubscribe);
        let mut out = BytesMut::new();
        render(&mut out, Protocol::Resp2, c, Some(b"p*"), 0);
        render(&mut out, Protocol::Resp2, c, None, 0);
        assert_eq!(
            &out[..],
            b"*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:0\r\n*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"
        );
        out.clear();
        render(&mut out, Protocol::Resp3, Confirmation::of(PubSubCommand::SSubscribe), Some(b"s"), 2);
        assert_eq!(&out[..], b">3\r\n$10\r\nssubscribe\r\n$1\r\ns\r\n:2\r\n");
        for cmd in [PubSubCommand::Subscribe, PubSubCommand::SUnsubscribe, PubSubCommand::PSubscribe] {
            assert_eq!(Confirmation::parse(Confirmation::of(cmd).name()), Some(Confirmation::of(cmd)));
        }
    }

    #[test]
    fn messages_follow_a_protocol_switch() {
        let push = b(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n");
        assert_eq!(&reencode(&push, Protocol::Resp2)[..], b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n");
        assert_eq!(reencode(&reencode(&push, Protocol::Resp2), Protocol::Resp3), push);
    }

    #[test]
    fn counts_and_state() {
        let mut ps = PubSub::new(0, Arc::new(Metrics::default()));
        let sub = Confirmation::of(PubSubCommand::Subscribe);
        let psub = Confirmation::of(PubSubCommand::PSubscribe);
        let ssub = Confirmation::of(PubSubCommand::SSubscribe);
        ps.apply(sub, Some(&b(b"a")), 1);
        ps.apply(sub, Some(&b(b"a")), 1);
        ps.apply(psub, Some(&b(b"p*")), 1);
        ps.apply(ssub, Some(&b(b"s1")), 2);
        ps.apply(ssub, Some(&b(b"s2")), 3);
        assert_eq!((ps.count(Class::Channel), ps.count(Class::Pattern), ps.count(Class::Shard)), (2, 2, 2));
        assert!(ps.subscribed());
        assert!(!ps.forget(9));
        assert!(ps.forget(3));
        assert_eq!(ps.count(Class::Shard), 1);
        ps.apply(Confirmation::of(PubSubCommand::SUnsubscribe), Some(&b(b"s1")), 2);
        ps.apply(Confirmation::of(PubSubCommand::Unsubscribe), Some(&b(b"a")), 1);
        ps.apply(Confirmation::of(PubSubCommand::PUnsubscribe), Some(&b(b"p*")), 1);
        assert!(!ps.subscribed());
    }

    #[test]
    fn subscriptions_on_several_nodes_count_once() {
        let mut ps = PubSub::new(0, Arc::new(Metrics::default()));
        let psub = Confirmation::of(PubSubCommand::PSubscribe);
        let punsub = Confirmation::of(PubSubCommand::PUnsubscribe);
        for conn in [1, 2, 3] {
            ps.apply(psub, Some(&b(b"news.*")), conn);
        }
        ps.apply(Confirmation::of(PubSubCommand::Subscribe), Some(&b(b"a")), 2);
        assert_eq!(ps.count(Class::Pattern), 2);
        assert!(ps.spread);
        assert_eq!(ps.held_on(Class::Pattern, 2), 1);
        ps.apply(punsub, Some(&b(b"news.*")), 1);
        assert!(ps.holds(Class::Pattern, b"news.*"), "still held on 2 and 3");
        ps.apply(punsub, Some(&b(b"news.*")), 2);
        ps.apply(punsub, Some(&b(b"news.*")), 3);
        assert!(!ps.holds(Class::Pattern, b"news.*"));
        assert!(!ps.spread);
        // Losing one node of a spread subscription loses it.
        for conn in [1, 2] {
            ps.apply(psub, Some(&b(b"x*")), conn);
        }
        assert!(ps.forget(1));
        assert!(!ps.holds(Class::Pattern, b"x*"));
        assert!(ps.holds(Class::Channel, b"a"));
    }

    #[test]
    fn messages_of_spread_subscriptions_come_from_one_node_but_notifications_from_any() {
        let mut ps = PubSub::new(0, Arc::new(Metrics::default()));
        let psub = Confirmation::of(PubSubCommand::PSubscribe);
        for conn in [4, 5, 6] {
            ps.apply(psub, Some(&b(b"*")), conn);
        }
        ps.apply(Confirmation::of(PubSubCommand::Subscribe), Some(&b(b"plain")), 5);
        let published = b(b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$2\r\nch\r\n$1\r\nx\r\n");
        // Without a connection to the channel's node: the first connection's copy.
        assert!(ps.wanted(4, &published, |_| None), "the first node's copy");
        assert!(!ps.wanted(5, &published, |_| None) && !ps.wanted(6, &published, |_| None), "the other copies");
        let event = b(b">4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$19\r\n__keyspace@0__:foo\r\n$3\r\nset\r\n");
        assert!(ps.wanted(6, &event, |_| None), "fired by node 6 only");
        let plain = b(b"*3\r\n$7\r\nmessage\r\n$5\r\nplain\r\n$1\r\nx\r\n");
        assert!(ps.wanted(5, &plain, |_| None));
    }

    #[test]
    fn channels_are_placed_by_slot_and_notifications_where_they_fire() {
        assert_eq!(channel_placement(&Placement::Slots, b"news"), ChannelPlacement::Slot(Slot::for_key(b"news")));
        assert_eq!(channel_placement(&Placement::Slots, b"{u1}.chat"), ChannelPlacement::Slot(Slot::for_key(b"u1")));
        assert_eq!(
            channel_placement(&Placement::Slots, b"__keyspace@0__:foo"),
            ChannelPlacement::Slot(Slot::for_key(b"foo"))
        );
        assert_eq!(
            channel_placement(&Placement::Slots, b"__keyspace@0__:{t}a"),
            ChannelPlacement::Slot(Slot::for_key(b"t"))
        );
        assert_eq!(channel_placement(&Placement::Slots, b"__keyevent@0__:set"), ChannelPlacement::EveryPrimary);
        // Not a notification channel after all: by its own slot.
        assert_eq!(
            channel_placement(&Placement::Slots, b"__keyspace@broken"),
            ChannelPlacement::Slot(Slot::for_key(b"__keyspace@broken"))
        );
    }

    #[test]
    fn confirmations_follow_argument_order_with_redis_counts() {
        let mut ps = PubSub::new(0, Arc::new(Metrics::default()));
        ps.apply(Confirmation::of(PubSubCommand::Subscribe), Some(&b(b"a")), 1);
        ps.apply(Confirmation::of(PubSubCommand::PSubscribe), Some(&b(b"p*")), 1);
        let sub = Confirmation::of(PubSubCommand::Subscribe);
        let got = ps.confirmations(sub, &[b(b"b"), b(b"a"), b(b"c"), b(b"b")], Protocol::Resp2);
        let mut want = BytesMut::new();
        for (ch, n) in [(&b"b"[..], 3), (b"a", 3), (b"c", 4), (b"b", 4)] {
            render(&mut want, Protocol::Resp2, sub, Some(ch), n);
        }
        assert_eq!(got, want.freeze());
        let unsub = Confirmation::of(PubSubCommand::Unsubscribe);
        let got = ps.confirmations(unsub, &[b(b"x"), b(b"a")], Protocol::Resp3);
        let mut want = BytesMut::new();
        render(&mut want, Protocol::Resp3, unsub, Some(b"x"), 2);
        render(&mut want, Protocol::Resp3, unsub, Some(b"a"), 1);
        assert_eq!(got, want.freeze());
        // Unsubscribe-all: one per channel held, counting down; nil when none.
        let got = ps.confirmations(unsub, &[], Protocol::Resp2);
        let mut want = BytesMut::new();
        render(&mut want, Protocol::Resp2, unsub, Some(b"a"), 1);
        assert_eq!(got, want.freeze());
        let sunsub = Confirmation::of(PubSubCommand::SUnsubscribe);
        let got = ps.confirmations(sunsub, &[], Protocol::Resp2);
        let mut want = BytesMut::new();
        render(&mut want, Protocol::Resp2, sunsub, None, 0);
        assert_eq!(got, want.freeze());
    }
}
