//! Transactions: MULTI / EXEC / DISCARD / WATCH / UNWATCH on a dedicated connection to the node of the keys.
//!
//! - MULTI is answered `+OK` by slotway. The node is chosen by the first WATCH, or else by the first queued command
//!   with keys; keyless commands queued before that are answered `+QUEUED` by slotway and replayed on the node
//!   right after its MULTI (an EXEC with no keyed command at all runs them on any primary).
//! - Every key of the transaction, WATCHed keys included, must hash to one slot. A command with keys elsewhere, or
//!   one slotway refuses while queueing, is answered with its error and the transaction is flagged: EXEC answers
//!   `-EXECABORT` and slotway sends DISCARD to the node, as Redis does for errors while queueing.
//! - A redirect inside a transaction is never followed for a queued command or EXEC (that could half-apply it):
//!   the command gets a clear error, the node has flagged the transaction itself, and EXEC aborts it. Only the
//!   WATCH that chooses the node follows MOVED (nothing is on its connection yet). A later WATCH that is
//!   redirected can't be kept: the transaction is marked as if a watched key changed, so EXEC answers a nil array
//!   and the client retries.
//! - After EXEC, DISCARD or UNWATCH the connection goes back to the node's idle lot; after a failure, a redirect,
//!   RESET or the client disconnecting it is closed, so no half-open MULTI or watch is ever reused.
use super::{error_reply, Kind, Lane, Part, Pending, Session};
use crate::cluster::Slot;
use crate::command::{LocalCommand, TxnCommand};
use crate::dispatch::{self, classify_reply, Plan, ReplyClass};
use crate::metrics::Metrics;
use crate::topology::RefreshReason;
use crate::upstream::{Dedicated, NodePool, ReplyTo, Request as UpstreamRequest, UpstreamError, UpstreamResult};
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const DISCARD: &[u8] = b"*1\r\n$7\r\nDISCARD\r\n";
const UNWATCH: &[u8] = b"*1\r\n$7\r\nUNWATCH\r\n";
const OK: &[u8] = b"+OK\r\n";
const QUEUED: &[u8] = b"+QUEUED\r\n";
const EMPTY_ARRAY: &[u8] = b"*0\r\n";
const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// A transaction request's role, which decides what its reply means.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// WATCH. `first`: the one that chose the node (its MOVED is followed: nothing else is on the connection).
    Watch { first: bool },
    /// A command queued inside MULTI.
    Queued,
    /// EXEC; or, with `abort`, the DISCARD (or UNWATCH) slotway sent instead, whose reply this one replaces.
    Exec { abort: Option<Abort> },
    /// DISCARD or UNWATCH: ends the transaction state.
    End,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Abort {
    /// A command was refused while queueing: `-EXECABORT`.
    Errors,
    /// A watch could not be kept: a nil array, as when a watched key changed.
    WatchLost,
    /// EXEC itself was refused (a script keeps the endpoint busy): `-EXECABORT Transaction discarded because of:
    /// <error>`, as Redis answers.
    Refused(&'static str),
}

/// One client's transaction state.
#[derive(Default)]
pub(super) struct Txn {
    /// The dedicated connection to the transaction's node, once chosen.
    conn: Option<Dedicated>,
    /// The slot every key must hash to, once one is known.
    slot: Option<Slot>,
    /// MULTI seen: commands are being queued.
    pub(super) multi: bool,
    /// MULTI was sent on `conn`.
    multi_sent: bool,
    /// WATCH was sent on `conn`.
    watching: bool,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    aborted: bool,
    /// A watch was lost: EXEC answers a nil array.
    dirty: bool,
    /// The connection must not be reused (it failed, or a reply was a redirect).
    broken: bool,
    /// Keyless commands queued before the node was chosen (answered `+QUEUED` here), sent after MULTI.
    buffered: Vec<Bytes>,
    /// CONFIG SET / REWRITE / RESETSTAT queued in the transaction: they run in it on its node (their replies are
    /// EXEC's), then on every other node right after a successful EXEC.
    every_node_after_exec: Vec<Bytes>,
    /// Why EXEC is refused, set right before it (see [`Abort::Refused`]).
    pub(super) exec_refused: Option<&'static str>,
}

impl Txn {
    /// The watch can't be kept (the client now runs as another cluster user): nothing more is sent for this
    /// transaction, and EXEC answers a nil array, as after a watched key changed.
    pub(super) fn lose_watch(&mut self) {
        if self.conn.is_some() {
            self.dirty = true;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn txn_mut(&mut self) -> &mut Txn {
        self.txn.get_or_insert_with(Box::default)
    }

    /// A transaction command outside MULTI (MULTI, WATCH, UNWATCH; EXEC and DISCARD are errors then).
    pub(super) fn txn_command(&mut self, cmd: TxnCommand, slot: Option<Slot>, frame: Bytes, ranges: &[Range<usize>]) {
        // A transaction that is ending, a WATCH choosing its node or a blocking command finishes first.
        if self.fence && !self.all_answered() {
            return self.hold(frame, ranges);
        }
        match cmd {
            TxnCommand::Exec => self.push_error("ERR EXEC without MULTI"),
            TxnCommand::Discard => self.push_error("ERR DISCARD without MULTI"),
            TxnCommand::Multi => {
                let has_conn = self.txn.as_ref().is_some_and(|t| t.conn.is_some());
                if has_conn {
                    if !self.ready_for(Lane::Txn) {
                        return self.hold(frame, ranges);
                    }
                    self.send_internal(MULTI);
                    self.txn_mut().multi_sent = true;
                }
                self.txn_mut().multi = true;
                self.push_final(Bytes::from_static(OK));
            }
            TxnCommand::Watch => {
                let Some(slot) = slot else {
                    return self.push_error("ERR wrong number of arguments for 'watch' command");
                };
                let t = self.txn.as_deref();
                if t.and_then(|t| t.slot).is_some_and(|s| s != slot) {
                    return self.push_error(self.placement.cross_error());
                }
                if t.is_some_and(|t| t.dirty) {
                    // Already doomed: EXEC will answer nil whatever else is watched.
                    return self.push_final(Bytes::from_static(OK));
                }
                if !self.ready_for(Lane::Txn) {
                    return self.hold(frame, ranges);
                }
                let t = self.txn_mut();
                let first = !t.watching;
                t.watching = true;
                t.slot = Some(slot);
                if first {
                    // Nothing may follow on this connection until it is known to be the right node.
                    self.fence = true;
                    self.push_txn(Step::Watch { first }, frame, Some(slot), false);
                    let seq = self.base + self.pending.len() as u64 - 1;
                    self.send_routed(seq, 0);
                } else {
                    self.push_txn(Step::Watch { first }, frame, Some(slot), true);
                }
            }
            TxnCommand::Unwatch => {
                let has_conn = self.txn.as_ref().is_some_and(|t| t.conn.is_some());
                if !has_conn {
                    self.txn = None;
                    return self.push_final(Bytes::from_static(OK));
                }
                if !self.ready_for(Lane::Txn) {
                    return self.hold(frame, ranges);
                }
                self.fence = true;
                self.push_txn(Step::End, frame, None, true);
            }
        }
    }

    /// A request while the client is in MULTI.
    pub(super) fn queue_in_multi(&mut self, frame: Bytes, ranges: &[Range<usize>], plan: Plan) {
        match plan {
            Plan::Txn { cmd: TxnCommand::Multi, .. } => self.push_error("ERR MULTI calls can not be nested"),
            Plan::Txn { cmd: TxnCommand::Watch, .. } => self.push_error("ERR WATCH inside MULTI is not allowed"),
            Plan::Txn { cmd: TxnCommand::Exec, .. } => self.exec(frame, ranges),
            Plan::Txn { cmd: TxnCommand::Discard, .. } => self.discard(frame, ranges),
            Plan::Txn { cmd: TxnCommand::Unwatch, .. } | Plan::Wait => self.queue(frame, ranges, None),
            Plan::Forward { slot, .. } | Plan::Eval { slot, .. } | Plan::Blocking { slot, .. } => {
                self.queue(frame, ranges, slot)
            }
            // Node configuration: in the transaction on its node, then on every other node after EXEC.
            Plan::AllPrimaries { kind: crate::command::FanOut::EveryNode, .. } => {
                let topo = self.shared.topology.load();
                if let Err(msg) = dispatch::fanout::every_node(super::Args { frame: &frame, ranges }, &topo) {
                    return self.refuse_queued(&msg);
                }
                drop(topo);
                self.txn_mut().every_node_after_exec.push(frame.clone());
                self.queue(frame, ranges, None)
            }
            // Commands for every shard can't run inside one node's transaction.
            Plan::AllPrimaries { .. } | Plan::Scan => {
                let name = dispatch::printable(&frame[ranges[0].clone()], 64).to_ascii_lowercase();
                self.refuse_queued(&format!(
                    "ERR slotway: '{name}' needs every shard and cannot be queued in a transaction"
                ))
            }
            Plan::Split { .. } => self.refuse_queued(self.placement.cross_error()),
            // A subscription would outlive the transaction on its node connection.
            Plan::PubSub { .. } => {
                let name = dispatch::printable(&frame[ranges[0].clone()], 64).to_ascii_lowercase();
                self.refuse_queued(&format!("ERR slotway: '{name}' cannot be queued in a transaction"))
            }
            Plan::Reject(msg) => self.refuse_queued(&msg),
            // In a single group SELECT would move the transaction's connection to another database for good; its
            // database is the one the client had at MULTI (or WATCH).
            Plan::Local(LocalCommand::Select) if self.placement.standalone() => self
                .refuse_queued("ERR slotway: SELECT inside MULTI is not supported; SELECT the database before MULTI"),
            Plan::Local(LocalCommand::Ping | LocalCommand::Echo | LocalCommand::Select) => {
                self.queue(frame, ranges, None)
            }
            Plan::Local(cmd @ (LocalCommand::Quit | LocalCommand::Reset)) => {
                self.run_local(cmd, super::Args { frame: &frame, ranges })
            }
            Plan::Local(_) => {
                let name = dispatch::printable(&frame[ranges[0].clone()], 64).to_ascii_lowercase();
                self.refuse_queued(&format!("ERR slotway: '{name}' cannot be queued in a transaction"))
            }
        }
    }

    /// Answers a command refused while queueing and flags the transaction (EXEC will answer EXECABORT).
    pub(super) fn refuse_queued(&mut self, msg: &str) {
        Metrics::incr(&self.shared.metrics.commands_local);
        self.txn_mut().aborted = true;
        self.push_error(msg);
        self.mark_rejected();
    }

    /// Queues one command of the transaction: on the node once it is chosen, else here (keyless commands).
    fn queue(&mut self, frame: Bytes, ranges: &[Range<usize>], slot: Option<Slot>) {
        let t = self.txn_mut();
        if let Some(s) = slot {
            if t.slot.is_some_and(|x| x != s) {
                return self.refuse_queued(self.placement.cross_error());
            }
        }
        if t.aborted || t.dirty {
            // Doomed: nothing more goes to the node; EXEC answers for the whole transaction.
            if slot.is_some() {
                t.slot = slot;
            }
            return self.push_final(Bytes::from_static(QUEUED));
        }
        let has_conn = t.conn.is_some();
        if !has_conn && slot.is_none() {
            t.buffered.push(frame);
            return self.push_final(Bytes::from_static(QUEUED));
        }
        if !self.ready_for(Lane::Txn) {
            return self.hold(frame, ranges);
        }
        if let Some(s) = slot {
            if !has_conn {
                // The first keyed command chooses the node.
                let topo = self.shared.topology.load();
                let Some(pool) = topo.primary_for(s).cloned() else {
                    self.shared.topology.request_refresh_for(Some(s), RefreshReason::ClusterDown);
                    return self.refuse_queued(&topo.unserved_error(Some(s)));
                };
                drop(topo);
                if let Err(msg) = self.open_txn_conn(&pool) {
                    return self.refuse_queued(&msg);
                }
            }
            self.txn_mut().slot = Some(s);
        }
        self.push_txn(Step::Queued, frame, slot, true);
    }

    /// Takes the transaction's connection to `pool` and sends MULTI and the commands queued so far.
    fn open_txn_conn(&mut self, pool: &Arc<NodePool>) -> Result<(), String> {
        let conn = pool
            .take_dedicated(self.identity, self.client.db, self.worker, self.client.protocol)
            .map_err(|e| format!("ERR slotway: {e}"))?;
        let t = self.txn_mut();
        t.conn = Some(conn);
        t.multi_sent = true;
        let buffered = std::mem::take(&mut t.buffered);
        self.send_internal(MULTI);
        for frame in buffered {
            self.send_on_conn(UpstreamRequest { frame, asking: false, reply_to: ReplyTo::Discard });
        }
        Ok(())
    }

    fn exec(&mut self, frame: Bytes, ranges: &[Range<usize>]) {
        let t = self.txn_mut();
        if t.conn.is_none() {
            if let Some(e) = t.exec_refused {
                self.txn = None;
                return self.push_error(&format!("EXECABORT Transaction discarded because of: {e}"));
            }
            if t.aborted || t.dirty || t.buffered.is_empty() {
                let (aborted, dirty) = (t.aborted, t.dirty);
                self.txn = None;
                return if aborted {
                    self.push_error(EXECABORT)
                } else if dirty {
                    self.push_final(self.nil_array())
                } else {
                    self.push_final(Bytes::from_static(EMPTY_ARRAY))
                };
            }
            // Only keyless commands: any primary runs them.
            if !self.ready_for(Lane::Txn) {
                return self.hold(frame, ranges);
            }
            let topo = self.shared.topology.load();
            let Some(pool) = dispatch::target(&topo, None, self.pick).cloned() else {
                self.txn = None;
                return self.push_error(&topo.unserved_error(None));
            };
            drop(topo);
            if let Err(msg) = self.open_txn_conn(&pool) {
                self.txn = None;
                return self.push_error(&msg);
            }
        } else if !self.ready_for(Lane::Txn) {
            return self.hold(frame, ranges);
        }
        let t = self.txn_mut();
        t.multi = false;
        let abort = if let Some(e) = t.exec_refused {
            Some(Abort::Refused(e))
        } else if t.aborted {
            Some(Abort::Errors)
        } else if t.dirty {
            Some(Abort::WatchLost)
        } else {
            None
        };
        let frame = match abort {
            None => frame,
            Some(_) if t.multi_sent => Bytes::from_static(DISCARD),
            Some(_) => Bytes::from_static(UNWATCH),
        };
        let slot = t.slot;
        if abort.is_none() {
            Metrics::incr(&self.shared.metrics.transactions);
            // WAIT after EXEC waits for the transaction's writes.
            if slot.is_some() {
                self.last_write = slot;
            }
            self.wrote();
        }
        self.fence = true;
        self.push_txn(Step::Exec { abort }, frame, None, true);
    }

    fn discard(&mut self, frame: Bytes, ranges: &[Range<usize>]) {
        let t = self.txn_mut();
        if t.conn.is_none() {
            self.txn = None;
            return self.push_final(Bytes::from_static(OK));
        }
        if !self.ready_for(Lane::Txn) {
            return self.hold(frame, ranges);
        }
        let t = self.txn_mut();
        t.multi = false;
        let frame = if t.multi_sent { frame } else { Bytes::from_static(UNWATCH) };
        self.fence = true;
        self.push_txn(Step::End, frame, None, true);
    }

    /// Queues a pending transaction request; `send` sends it on the transaction's connection at once.
    fn push_txn(&mut self, step: Step, frame: Bytes, slot: Option<Slot>, send: bool) {
        self.lane = Lane::Txn;
        self.pending.push_back(Pending::single(Part::new(frame, slot), false, Kind::Txn(step)));
        if send {
            let seq = self.base + self.pending.len() as u64 - 1;
            let p = &self.pending.back().expect("just pushed").parts[0];
            let reply_to = ReplyTo::Session { inbox: self.inbox.0.clone(), seq, part: 0 };
            let req = UpstreamRequest { frame: p.frame.clone(), asking: false, reply_to };
            self.send_on_conn(req);
        }
    }

    /// Sends a request on the transaction's connection (a closed or missing one answers `NotSent`).
    fn send_on_conn(&mut self, req: UpstreamRequest) {
        match self.txn.as_ref().and_then(|t| t.conn.as_ref()) {
            Some(conn) => conn.send(req),
            None => req.reply_to.deliver(Err(UpstreamError::NotSent {
                addr: crate::cluster::NodeAddr::new("", 0),
                reason: Arc::from("the transaction has no connection"),
            })),
        }
    }

    /// SELECT while a WATCH holds the transaction's connection: the transaction goes on in the new database on that
    /// connection, as on Redis (the SELECT is sent there too), and the connection is not reused afterwards (it is no
    /// longer in the database it was taken for).
    pub(super) fn select_in_txn(&mut self, select: Bytes) {
        let Some(t) = self.txn.as_deref_mut() else { return };
        if t.conn.is_none() {
            return;
        }
        t.broken = true;
        self.send_on_conn(UpstreamRequest { frame: select, asking: false, reply_to: ReplyTo::Discard });
    }

    /// Sends a command of slotway's own whose reply nobody reads (its effect shows in later replies).
    fn send_internal(&mut self, frame: &'static [u8]) {
        self.send_on_conn(UpstreamRequest {
            frame: Bytes::from_static(frame),
            asking: false,
            reply_to: ReplyTo::Discard,
        });
    }

    /// Sends the first WATCH (or its redirect or retry) to `pool`, on a connection to that node.
    pub(super) fn send_watch(&mut self, pool: &Arc<NodePool>, req: UpstreamRequest) -> Result<(), String> {
        let (identity, db, worker, protocol) = (self.identity, self.client.db, self.worker, self.client.protocol);
        let Some(t) = self.txn.as_deref_mut() else {
            return Err("ERR slotway: the transaction was reset".to_string());
        };
        if t.conn.as_ref().is_some_and(|c| !Arc::ptr_eq(c.pool(), pool) || !c.is_open()) {
            t.conn = None;
        }
        if t.conn.is_none() {
            t.conn =
                Some(pool.take_dedicated(identity, db, worker, protocol).map_err(|e| format!("ERR slotway: {e}"))?);
        }
        t.conn.as_ref().expect("just set").send(req);
        Ok(())
    }

    /// A node's reply (or a failure) for a transaction request.
    pub(super) fn on_txn_delivery(&mut self, seq: u64, part: usize, step: Step, result: UpstreamResult) {
        if self.txn.is_none() {
            // RESET dropped the transaction: only its replies are left to pass on.
            let reply = result.unwrap_or_else(|e| error_reply(&format!("ERR slotway: {e}")));
            return self.finish_part(seq, part, reply);
        }
        let sender_host = self.txn.as_ref().and_then(|t| t.conn.as_ref()).map(|c| c.addr().host.clone());
        let class = match &result {
            Ok(frame) => Some(classify_reply(frame, sender_host.as_deref().unwrap_or(""))),
            Err(_) => None,
        };
        match step {
            Step::Watch { first: true } => self.on_first_watch(seq, part, result, class),
            Step::Watch { first: false } => {
                let reply = match (result, class) {
                    (Ok(_), Some(ReplyClass::Moved(_) | ReplyClass::Ask(_))) => {
                        self.shared.topology.request_refresh(RefreshReason::Moved);
                        self.txn_mut().dirty = true;
                        Bytes::from_static(OK)
                    }
                    (Ok(frame), _) => frame,
                    (Err(e), _) => {
                        let t = self.txn_mut();
                        t.dirty = true;
                        t.broken = true;
                        error_reply(&format!("ERR slotway: {e}"))
                    }
                };
                self.finish_part(seq, part, reply);
            }
            Step::Queued => {
                let reply = match (result, class) {
                    (Ok(_), Some(ReplyClass::Moved(addr) | ReplyClass::Ask(addr))) => {
                        self.shared.topology.request_refresh(RefreshReason::Moved);
                        let t = self.txn_mut();
                        t.aborted = true;
                        t.broken = true;
                        error_reply(&format!(
                            "ERR slotway: the transaction's slot moved to {addr} while queueing; \
                             the transaction will be discarded, retry it"
                        ))
                    }
                    (Ok(frame), _) => frame,
                    (Err(e), _) => {
                        let t = self.txn_mut();
                        t.aborted = true;
                        t.broken = true;
                        error_reply(&format!("ERR slotway: {e}"))
                    }
                };
                self.finish_part(seq, part, reply);
            }
            Step::Exec { abort } => {
                let reply = match (abort, result, class) {
                    (Some(Abort::Errors), r, _) => {
                        self.mark_broken_if(r.is_err());
                        error_reply(EXECABORT)
                    }
                    (Some(Abort::WatchLost), r, _) => {
                        self.mark_broken_if(r.is_err());
                        self.nil_array()
                    }
                    (Some(Abort::Refused(e)), r, _) => {
                        self.mark_broken_if(r.is_err());
                        error_reply(&format!("EXECABORT Transaction discarded because of: {e}"))
                    }
                    (None, Ok(_), Some(ReplyClass::Moved(addr) | ReplyClass::Ask(addr))) => {
                        self.shared.topology.request_refresh(RefreshReason::Moved);
                        self.mark_broken_if(true);
                        error_reply(&format!(
                            "EXECABORT Transaction discarded: its slot moved to {addr} during the transaction; \
                             nothing was applied, retry it"
                        ))
                    }
                    (None, Ok(frame), _) => {
                        if frame.starts_with(b"*") && !frame.starts_with(b"*-1") {
                            self.config_every_other_node();
                        }
                        frame
                    }
                    (None, Err(e @ UpstreamError::Lost { .. }), _) => {
                        self.mark_broken_if(true);
                        error_reply(&format!(
                            "ERR slotway: {e}; EXEC was sent and the transaction may or may not have been applied"
                        ))
                    }
                    (None, Err(e), _) => {
                        self.mark_broken_if(true);
                        error_reply(&format!("ERR slotway: {e}"))
                    }
                };
                self.finish_part(seq, part, reply);
                self.end_txn();
            }
            Step::End => {
                let reply = match result {
                    Ok(frame) => frame,
                    Err(e) => {
                        self.mark_broken_if(true);
                        error_reply(&format!("ERR slotway: {e}"))
                    }
                };
                self.finish_part(seq, part, reply);
                self.end_txn();
            }
        }
    }

    /// EXEC's answer when a watched key changed: a null array (`_` in RESP3), as the node would give it.
    /// After an EXEC that ran: the transaction's CONFIG SET / REWRITE / RESETSTAT on every node but its own (a
    /// value its node refused is refused by the others too). Their replies are not waited for.
    fn config_every_other_node(&mut self) {
        let Some(t) = self.txn.as_deref_mut() else { return };
        let frames = std::mem::take(&mut t.every_node_after_exec);
        let Some(own) = t.conn.as_ref().map(|c| c.addr().clone()) else { return };
        if frames.is_empty() {
            return;
        }
        let topo = self.shared.topology.load();
        let upstreams = self.shared.topology.upstreams();
        for frame in frames {
            let mut decoder = resp::RequestDecoder::new(self.live.limits);
            let Ok(Some(resp::Request::Array { args, .. })) = decoder.decode(&frame) else { continue };
            let Ok(nodes) = dispatch::fanout::every_node(super::Args { frame: &frame, ranges: &args }, &topo) else {
                continue;
            };
            for addr in nodes.iter().filter(|a| **a != own) {
                let req = UpstreamRequest { frame: frame.clone(), asking: false, reply_to: ReplyTo::Discard };
                upstreams.pool(addr).send(
                    self.identity,
                    self.client.db,
                    self.worker,
                    self.client.protocol,
                    self.pick,
                    req,
                );
            }
        }
    }

    fn nil_array(&self) -> Bytes {
        let mut b = bytes::BytesMut::with_capacity(5);
        resp::encode::nil_array(&mut b, self.client.protocol);
        b.freeze()
    }

    fn mark_broken_if(&mut self, broken: bool) {
        if broken {
            self.txn_mut().broken = true;
        }
    }

    /// The first WATCH: MOVED is followed (the connection holds nothing else yet), ASK/TRYAGAIN/CLUSTERDOWN and a
    /// failed connection are retried after a delay; a final error leaves no watch, so the state is dropped.
    fn on_first_watch(&mut self, seq: u64, part: usize, result: UpstreamResult, class: Option<ReplyClass>) {
        let redirects = self.part_mut(seq, part).redirects;
        let max_redirects = self.live.config.upstream.max_redirects;
        match (result, class) {
            // An error reply drops the transaction state (see `finish_part`): nothing is watched.
            (Ok(frame), Some(ReplyClass::Final)) => self.finish_part(seq, part, frame),
            (Ok(_), Some(ReplyClass::Moved(addr))) if redirects < max_redirects => {
                Metrics::incr(&self.shared.metrics.redirects_moved);
                self.part_mut(seq, part).redirects += 1;
                self.shared.topology.request_refresh(RefreshReason::Moved);
                let pool = self.shared.topology.upstreams().pool(&addr);
                self.send_to(seq, part, pool, false);
            }
            (Ok(_), _) => {
                self.retry_or_fail(seq, part, || {
                    "TRYAGAIN slotway: WATCH: the slot is being moved between nodes; retry".to_string()
                });
            }
            (Err(e), _) => {
                if let Some(t) = self.txn.as_deref_mut() {
                    t.conn = None;
                }
                self.shared.topology.request_refresh(RefreshReason::Unreachable);
                self.retry_or_fail(seq, part, || format!("ERR slotway: {e}"));
            }
        }
    }

    /// EXEC, DISCARD or UNWATCH was answered: the state is gone on the node, the connection is kept for reuse
    /// (closed if it can't be trusted).
    fn end_txn(&mut self) {
        if let Some(t) = self.txn.take() {
            if let Some(conn) = t.conn {
                if !t.broken {
                    conn.release();
                }
            }
        }
    }
}
