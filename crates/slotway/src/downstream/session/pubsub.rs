//! Pub/sub: SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE and their UN... forms on the session's own pub/sub connections
//! (`upstream::subscriber`), and Redis's rules for a subscribed client.
//!
//! - **Connections.** Channels and patterns share one connection, to a primary picked per client (a cluster
//!   forwards every PUBLISH to every node, so any node sees every message). Shard channels live on their slot's
//!   primary: one connection per node the client has shard channels on. All of them feed one event channel, so the
//!   client gets one stream. A connection is opened on the first subscription that needs it and closed as soon as
//!   it holds none (unsubscribing everything releases every connection; so do RESET and disconnecting).
//! - **One at a time.** A subscribe-family command waits until every earlier request is answered, and nothing
//!   after it is sent until its confirmations are in (`fence`). That costs a round trip per command (subscribing is
//!   rare) and buys exact Redis behaviour: the subscription counts in confirmations are computed here, in request
//!   order, from the session's own record of its subscriptions (for shard channels the client's total across
//!   shards, which no single node knows), and a RESP2 client's "subscribed" state is known for the next command.
//! - **Confirmations** arrive one per channel; the command's reply is all of them. The node's own count is
//!   replaced by the session's. An unsubscribe the session didn't ask for (a node that lost a shard channel's slot
//!   in resharding sends `sunsubscribe`) is passed to the client as Redis Cluster itself would send it, with the
//!   client's count: the client learns the channel is gone and may SSUBSCRIBE again (slotway then routes it to the
//!   slot's new owner, following MOVED).
//! - **Messages** are relayed as the node sent them (RESP2 arrays or RESP3 pushes; converted if the client has
//!   switched protocol since). They go out between replies, never inside one: straight to the output when nothing
//!   is pending, else queued behind the pending requests (so a message never overtakes its subscription's
//!   confirmation).
//! - **Failures.** A pub/sub connection that fails loses its subscriptions on the node; the client is then
//!   disconnected (as it would be by its own node), and reconnects and subscribes again.
use super::{error_reply, Kind, Lane, Part, Pending, Session};
use crate::cluster::Slot;
use crate::command::{Args, PubSubCommand};
use crate::dispatch::{classify_reply, ReplyClass};
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

/// One pub/sub connection of the session.
struct SubConn {
    /// The session's number for it (events carry it; 0 is never used).
    id: u64,
    conn: Dedicated,
}

/// The subscribe-family command in flight (there is at most one).
struct Current {
    seq: u64,
    want: Confirmation,
    /// The client's protocol when it sent the command: its confirmations are rendered in it.
    proto: Protocol,
    /// The confirmations (and errors) so far: the command's reply.
    reply: BytesMut,
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

/// A session's pub/sub state: its connections and what it is subscribed to.
pub(super) struct PubSub {
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
    pub(super) budget: Arc<OutputBudget>,
    next_conn: u64,
    /// Channels and patterns.
    main: Option<SubConn>,
    /// Shard channels, one connection per node.
    shards: Vec<SubConn>,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    /// Shard channel → the connection it is subscribed on.
    shard_channels: HashMap<Bytes, u64>,
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
            main: None,
            shards: Vec::new(),
            channels: HashSet::new(),
            patterns: HashSet::new(),
            shard_channels: HashMap::new(),
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

    fn apply(&mut self, c: Confirmation, channel: Option<&Bytes>, conn: u64) {
        let Some(ch) = channel else { return };
        match (c.class, c.subscribe) {
            (Class::Channel, true) => drop(self.channels.insert(ch.clone())),
            (Class::Channel, false) => drop(self.channels.remove(ch)),
            (Class::Pattern, true) => drop(self.patterns.insert(ch.clone())),
            (Class::Pattern, false) => drop(self.patterns.remove(ch)),
            (Class::Shard, true) => drop(self.shard_channels.insert(ch.clone(), conn)),
            (Class::Shard, false) => drop(self.shard_channels.remove(ch)),
        }
    }

    fn conn(&self, id: u64) -> Option<&SubConn> {
        self.main.iter().chain(self.shards.iter()).find(|c| c.id == id)
    }

    fn waiting_on(&self, id: u64) -> bool {
        self.current.as_ref().is_some_and(|cur| cur.waits.iter().any(|w| w.conn == id && !w.done))
    }

    /// Closes the connections that hold no subscription and wait for nothing.
    fn tidy(&mut self) {
        if self
            .main
            .as_ref()
            .is_some_and(|m| self.channels.is_empty() && self.patterns.is_empty() && !self.waiting_on(m.id))
        {
            self.main = None;
        }
        let keep: Vec<bool> = self
            .shards
            .iter()
            .map(|c| self.waiting_on(c.id) || self.shard_channels.values().any(|&id| id == c.id))
            .collect();
        let mut keep = keep.into_iter();
        self.shards.retain(|_| keep.next().unwrap_or(true));
        self.update_gauge();
    }

    fn update_gauge(&mut self) {
        let active = self.main.is_some() || !self.shards.is_empty();
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
        let mut lost = false;
        if self.main.as_ref().is_some_and(|m| m.id == id) {
            lost = self.channels.len() + self.patterns.len() > 0;
            self.main = None;
            self.channels.clear();
            self.patterns.clear();
        }
        let before = self.shard_channels.len();
        self.shard_channels.retain(|_, c| *c != id);
        lost |= self.shard_channels.len() != before;
        self.shards.retain(|c| c.id != id);
        self.update_gauge();
        lost
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
        let channels: SmallVec<[Bytes; 4]> = ranges[1..].iter().map(|r| frame.slice(r.clone())).collect();
        let n = channels.len() as u32;
        let want = Confirmation::of(cmd);
        if self.pubsub.is_none() {
            let limit = self.live.config.listen.pubsub_output_limit;
            self.pubsub = Some(Box::new(PubSub::new(limit, self.shared.metrics.clone())));
        }
        let ps = self.pubsub.as_deref().expect("just set");
        match cmd {
            PubSubCommand::Subscribe | PubSubCommand::PSubscribe => match self.main_conn() {
                Ok(id) => self.start(frame, want, &[(id, n)], None),
                Err(msg) => {
                    self.push_error(&msg);
                    self.drop_pubsub_if_unused();
                }
            },
            PubSubCommand::Unsubscribe | PubSubCommand::PUnsubscribe => match &ps.main {
                None => self.answer_locally(want, &channels),
                Some(m) => {
                    let held = if want.class == Class::Channel { ps.channels.len() } else { ps.patterns.len() };
                    let expect = if n > 0 { n } else { held.max(1) as u32 };
                    let id = m.id;
                    self.start(frame, want, &[(id, expect)], None)
                }
            },
            PubSubCommand::SSubscribe => self.start(frame, want, &[(0, n)], slot),
            PubSubCommand::SUnsubscribe if n > 0 => {
                match channels.iter().find_map(|ch| ps.shard_channels.get(ch)).copied() {
                    Some(id) => self.start(frame, want, &[(id, n)], None),
                    // Not subscribed to any of them: a node would only confirm, changing nothing.
                    None => self.answer_locally(want, &channels),
                }
            }
            PubSubCommand::SUnsubscribe => {
                let waits: SmallVec<[(u64, u32); 4]> = ps
                    .shards
                    .iter()
                    .map(|c| (c.id, ps.shard_channels.values().filter(|&&id| id == c.id).count() as u32))
                    .filter(|&(_, held)| held > 0)
                    .collect();
                if waits.is_empty() {
                    self.answer_locally(want, &channels);
                } else {
                    self.start(frame, want, &waits, None);
                }
            }
        }
    }

    /// Confirms an unsubscribe that changes nothing, as a node would (`nil` channel when none was named).
    fn answer_locally(&mut self, want: Confirmation, channels: &[Bytes]) {
        self.answer_locally_inner(want, channels);
        self.drop_pubsub_if_unused();
    }

    fn answer_locally_inner(&mut self, want: Confirmation, channels: &[Bytes]) {
        Metrics::incr(&self.shared.metrics.commands_local);
        let ps = self.pubsub.as_deref().expect("pub/sub state");
        let count = ps.count(want.class);
        let mut out = BytesMut::new();
        if channels.is_empty() {
            render(&mut out, self.client.protocol, want, None, count);
        }
        for ch in channels {
            render(&mut out, self.client.protocol, want, Some(ch), count);
        }
        self.push_final(out.freeze());
    }

    /// Queues the command with one part per `(connection, confirmations expected)` and sends it; a connection
    /// of 0 with `slot` is routed (SSUBSCRIBE: the slot's primary, following MOVED).
    fn start(&mut self, frame: Bytes, want: Confirmation, waits: &[(u64, u32)], slot: Option<Slot>) {
        let parts = waits.iter().map(|_| Part::new(frame.clone(), slot)).collect();
        let remaining = waits.len();
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
        let proto = self.client.protocol;
        let ps = self.pubsub.as_deref_mut().expect("pub/sub state");
        ps.current = Some(Current {
            seq,
            want,
            proto,
            reply: BytesMut::new(),
            waits: waits.iter().map(|&(conn, expect)| Wait { conn, expect, got: 0, done: false }).collect(),
        });
        for (part, &(conn, _)) in waits.iter().enumerate() {
            if conn != 0 {
                send_on(self.pubsub.as_deref().expect("pub/sub state"), conn, frame.clone());
            } else {
                self.send_routed(seq, part);
            }
        }
    }

    /// The channels-and-patterns connection, opened (to a primary picked per client) if there is none.
    fn main_conn(&mut self) -> Result<u64, String> {
        if let Some(m) = self.pubsub.as_ref().and_then(|p| p.main.as_ref()) {
            return Ok(m.id);
        }
        let topo = self.shared.topology.load();
        let Some(pool) = topo.pubsub_primary(self.pick).cloned() else {
            self.shared.topology.request_refresh(RefreshReason::ClusterDown);
            return Err(topo.unserved_error(self.placement.ring().map(|_| Slot::ZERO)));
        };
        drop(topo);
        let conn = self.open_subscriber(&pool)?;
        let ps = self.pubsub.as_deref_mut().expect("pub/sub state");
        let id = conn.id;
        ps.main = Some(conn);
        ps.update_gauge();
        Ok(id)
    }

    fn open_subscriber(&mut self, pool: &Arc<NodePool>) -> Result<SubConn, String> {
        let (identity, worker, proto) = (self.identity, self.worker, self.client.protocol);
        let ps = self.pubsub.as_deref_mut().expect("pub/sub state");
        let id = ps.next_conn;
        ps.next_conn += 1;
        let sink = Sink { tx: ps.tx.clone(), conn: id, budget: ps.budget.clone() };
        let conn = pool.take_subscriber(identity, worker, proto, sink).map_err(|e| format!("ERR slotway: {e}"))?;
        Ok(SubConn { id, conn })
    }

    /// Sends part `part` of SSUBSCRIBE `seq` on the session's connection to `pool`'s node (opened if needed).
    pub(super) fn pubsub_send(&mut self, seq: u64, part: usize, pool: &Arc<NodePool>) {
        let existing =
            self.pubsub.as_ref().and_then(|p| p.shards.iter().find(|c| c.conn.addr() == &pool.addr)).map(|c| c.id);
        let id = match existing {
            Some(id) => id,
            None => match self.open_subscriber(pool) {
                Ok(conn) => {
                    let ps = self.pubsub.as_deref_mut().expect("pub/sub state");
                    let id = conn.id;
                    ps.shards.push(conn);
                    ps.update_gauge();
                    id
                }
                Err(msg) => return self.finish_part(seq, part, error_reply(&msg)),
            },
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
            Frame::Message => self.relay(ev.conn, frame),
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
        ps.apply(c, channel.as_ref(), conn);
        let count = ps.count(c.class);
        let expected = ps.current.as_mut().filter(|cur| cur.want == c).and_then(|cur| {
            let part = cur.waits.iter().position(|w| w.conn == conn && !w.done)?;
            Some((cur, part))
        });
        let Some((cur, part)) = expected else {
            // Unasked: a node dropped a shard channel whose slot it no longer serves. Tell the client, with its
            // count; the slot map is stale, so refresh it for the client's next SSUBSCRIBE.
            if c.class == Class::Shard {
                self.shared.topology.request_refresh(RefreshReason::Moved);
            }
            let mut out = BytesMut::new();
            render(&mut out, proto, c, channel.as_deref(), count);
            ps.budget.charge(out.len());
            ps.tidy();
            tracing::debug!(client = %self.client.addr, kind = ?c, "unrequested pub/sub confirmation relayed");
            self.push_out_of_band(out.freeze());
            return self.drop_pubsub_if_unused();
        };
        render(&mut cur.reply, cur.proto, c, channel.as_deref(), count);
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
        cur.reply.extend_from_slice(&reply);
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
        let p = &mut self.pending[(seq - self.base) as usize];
        p.remaining = 0;
        p.reply = Some(cur.reply.freeze());
        self.drop_pubsub_if_unused();
    }

    /// Forgets the pub/sub state once it holds no connection and nothing is in flight: a client that has left
    /// pub/sub costs nothing more (its budget goes too; what it still has to write is plain output now).
    pub(super) fn drop_pubsub_if_unused(&mut self) {
        if self.pubsub.as_ref().is_some_and(|p| p.main.is_none() && p.shards.is_empty() && p.current.is_none()) {
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
            tracing::warn!(client = %self.client.addr, reason, "pub/sub connection failed; disconnecting the subscriber");
            self.closing = true;
        }
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
}
