//! One client connection: read requests, route them, collect replies in request order, write them in batches.
//!
//! Each request gets a [`Pending`] entry in a FIFO. Entries are filled in any order (replies from different nodes
//! race) and written strictly in order. The FIFO is capped (`max_pending_per_client`): when it is full slotway
//! stops reading from the client, so a client that pipelines without reading costs bounded memory.
//!
//! Most requests go on the shared connections ([`Kind::Normal`]). Blocking commands and transactions use
//! dedicated connections (see `txn` and [`crate::upstream::dedicated`]). A request is never sent on one kind of
//! connection while earlier requests of this client are outstanding on another (they could overtake each other on
//! the node): it waits in `held`, and nothing more is read from the client until it can go.
use super::local::{self, ClientState};
use super::Shared;
use crate::cluster::Slot;
use crate::command::{Args, FanOut, LocalCommand};
use crate::config::ReadFrom;
use crate::dispatch::split::{self, Merge};
use crate::dispatch::{self, classify_reply, fanout, Plan, ReplyClass};
use crate::live::LiveSettings;
use crate::metrics::Metrics;
use crate::observe::{flags, Outcome, WorkerStats};
use crate::topology::{Placement, RefreshReason};
use crate::upstream::{
    Dedicated, Delivery, Identity, Inbox, NodePool, ReplyTo, Request as UpstreamRequest, UpstreamError,
};
use bytes::{Buf, Bytes, BytesMut};
use resp::{Request, RequestDecoder};
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

mod buffers;
mod pubsub;
mod txn;

pub(super) use buffers::ClientStream;
use buffers::Output;

/// Where the sessions' clocks ([`Session::now`]) count from: only differences of them are used.
static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// Why [`Session::serve`] returned.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Turn {
    /// The session is over: close the connection.
    End,
    /// Nothing is in flight: wait for the client in the small wait.
    Quiet,
}

/// What a pending request is: which connection it uses and what its replies mean.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// On the shared connections, with redirects and retries.
    Normal,
    /// A blocking command, on the session's blocking connection; redirects and retries as `Normal` (a
    /// redirected command did not run, so following it is safe).
    Blocking,
    /// WAIT / WAITAOF: as `Blocking`, sent to the node of the client's last write (see `send_to`).
    Wait,
    /// A transaction command on the transaction's dedicated connection (see `txn`).
    Txn(txn::Step),
    /// A subscribe-family command on the session's pub/sub connections (see `pubsub`).
    PubSub,
    /// A pub/sub message (or an unrequested confirmation) queued behind pending requests: answers no request.
    Message,
    /// A MONITOR line queued behind pending requests: answers no request.
    MonitorLine,
    /// SCRIPT KILL / FUNCTION KILL: each part on a dedicated connection of its own (released when answered), as
    /// the node's shared connections may be stuck behind the very script to kill.
    Side,
}

/// Which connections the session's outstanding requests use.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Lane {
    Shared,
    Blocking,
    Txn,
    PubSub,
}

/// A request that must wait until every earlier one is answered.
struct Held {
    frame: Bytes,
    ranges: SmallVec<[Range<usize>; 8]>,
    /// When it was read (its end-to-end time counts from there), as `Session::now`.
    arrived: u64,
}

/// What the observer needs to know about a request (see [`crate::observe`]).
#[derive(Default)]
struct Track {
    /// Command table index + 1; 0 = unknown command (or not a request).
    command: u32,
    /// [`flags`]: what happened on the way.
    flags: u8,
    /// When the request was read, as `Session::now`; 0 when latency tracking is off.
    arrived: u64,
    /// The request as the client sent it, when no part carries it (split, fan-out, local and rejected
    /// requests): moved here, not copied, for the slow log.
    request: Option<Bytes>,
}

/// One request between arrival and the moment its reply is written.
struct Pending {
    /// The final reply, once known.
    reply: Option<Bytes>,
    /// Safe to resend after its connection died (it doesn't write).
    readonly: bool,
    /// What goes to the nodes: one part for an ordinary request, one per slot for a split multi-key command.
    parts: SmallVec<[Part; 1]>,
    /// Parts still waiting for their final reply.
    remaining: usize,
    /// How the parts' replies become the client's reply (None: the single part's reply as is).
    merge: Option<Box<Merge>>,
    kind: Kind,
    track: Track,
}

impl Pending {
    /// A request of one part, its reply to come from a node (or a task answering in its place).
    fn single(part: Part, readonly: bool, kind: Kind) -> Pending {
        Pending {
            reply: None,
            readonly,
            parts: smallvec::smallvec![part],
            remaining: 1,
            merge: None,
            kind,
            track: Track::default(),
        }
    }
}

/// One request to one node, with its own redirect and retry state.
struct Part {
    /// The request as the client sent it (or, for a split command, as slotway built it for one slot), kept to
    /// resend it after a redirect or a retry.
    frame: Bytes,
    /// Where it is routed: a slot's primary, or any primary when None.
    slot: Option<Slot>,
    /// A part for one particular node whatever it serves (CONFIG SET goes to every node): sent, and resent,
    /// there; `slot` is then None.
    node: Option<Arc<NodePool>>,
    /// The node it was last sent to; a redirect with an empty host means this node's host.
    sent_to: Option<Arc<NodePool>>,
    /// A read that the `read_from` policy may send to a replica.
    replica_ok: bool,
    redirects: u32,
    retries: u32,
    /// Waiting to be resent at this time (after TRYAGAIN, CLUSTERDOWN or an unreachable node).
    retry_at: Option<Instant>,
    /// When this part first needed a retry: retries stop at `retry_deadline` after it. Set lazily, so requests
    /// that never fail never read the clock.
    first_failure: Option<Instant>,
    /// The part's final reply (kept only while other parts of a split command are outstanding).
    reply: Option<Bytes>,
    /// An EVALSHA answered NOSCRIPT, the script was loaded on the node and the EVALSHA resent (done once).
    script_reloaded: bool,
    /// The dedicated connection a [`Kind::Side`] part went on.
    side: Option<Dedicated>,
    /// A script (EVAL, FCALL, ...) in flight: counted while it runs, for the BUSY errors of a long one.
    script: Option<super::busy::Ticket>,
    /// When it was last sent, as `Session::now` (0: not sent since its last reply, or tracking off).
    sent_at: u64,
    /// Time spent waiting for the nodes' replies so far, in µs (all round trips, redirects and retries included).
    waited_us: u32,
}

impl Part {
    fn new(frame: Bytes, slot: Option<Slot>) -> Part {
        Part {
            frame,
            slot,
            node: None,
            sent_to: None,
            replica_ok: false,
            redirects: 0,
            retries: 0,
            retry_at: None,
            first_failure: None,
            reply: None,
            script_reloaded: false,
            side: None,
            script: None,
            sent_at: 0,
            waited_us: 0,
        }
    }
}

pub(super) struct Session<S> {
    stream: S,
    shared: Arc<Shared>,
    client: ClientState,
    decoder: RequestDecoder,
    /// What the client sent and slotway has not handled yet. Holds no memory while the client is idle: a buffer
    /// is taken from the worker's pool when the socket becomes readable and given back when the session is idle.
    inbuf: BytesMut,
    /// The last read filled `inbuf`'s free space: more may be waiting inside the stream (TLS), so the buffer is
    /// kept and read again rather than waiting for the socket.
    read_filled: bool,
    /// Replies ready to be written, in order.
    out: Output,
    pending: VecDeque<Pending>,
    /// Sequence number of `pending[0]`.
    base: u64,
    /// Where the node connections put this session's replies (closed when the session ends).
    inbox: InboxOwner,
    /// The deliveries being handled (traded with the inbox's queue, so both keep their capacity while busy).
    deliveries: Vec<Delivery>,
    /// Parts waiting for a retry timer (so the common case skips looking for the next one).
    retries_waiting: usize,
    /// Set after QUIT, a protocol error or shutdown: read nothing more, finish what is pending, close.
    closing: bool,
    /// Where read-only commands go (config `read_from`).
    read_from: ReadFrom,
    /// The settings this session works with; replaced when [`crate::live::Live::generation`] moves.
    live: Arc<LiveSettings>,
    /// The generation `live` was loaded at.
    live_gen: u64,
    /// Reads routed so far, to spread them over replicas.
    reads: usize,
    /// The worker thread this session runs on: it only uses connections driven by that thread.
    worker: usize,
    /// Which of the worker's connections to a node this client uses (the same one always, so its requests to one
    /// node keep their order).
    pick: usize,
    /// The connections the outstanding requests were sent on.
    lane: Lane,
    /// Set after a request nothing may follow until it is answered (a blocking command, the WATCH that chooses the
    /// transaction's node, EXEC/DISCARD/UNWATCH).
    fence: bool,
    /// A request waiting for `lane` and `fence` to allow it; nothing more is read from the client meanwhile.
    held: Option<Box<Held>>,
    /// MULTI/WATCH state and the transaction's dedicated connection.
    txn: Option<Box<txn::Txn>>,
    /// The dedicated connection of the blocking command in flight.
    blocking: Option<Box<Dedicated>>,
    /// Slot of the client's last keyed write: WAIT goes to its node.
    last_write: Option<Slot>,
    /// Slot of the client's last keyed command: a script without declared keys runs on its node.
    last_keyed: Option<Slot>,
    /// Sequence numbers of requests whose replies are dropped, not written (CLIENT REPLY OFF / SKIP).
    muted: VecDeque<u64>,
    /// Whom the nodes see: the upstream identity of the authenticated user (the default one for most).
    identity: Identity,
    /// When the first byte of the incomplete request in `inbuf` arrived (or reading resumed): the request must be
    /// whole within `request_timeout` of it. None while `inbuf` is empty or reading is paused.
    partial_since: Option<Instant>,
    /// A request was handled since the loop last looked: the bytes left in `inbuf` start a new request.
    handled: bool,
    /// When the client last got a reply (or connected): the idle timeout counts from here, so bytes of a request
    /// that never completes don't make the client look busy.
    last_active: Instant,
    /// Subscriptions, their connections and the output budget (from the first subscribe-family command).
    pubsub: Option<Box<pubsub::PubSub>>,
    /// Bytes of pub/sub frames in `out`: paid back to the output budget once written.
    out_pushed: usize,
    /// This worker's counters (see [`crate::observe`]).
    stats: Arc<WorkerStats>,
    /// Latency tracking on: `now` is read once per wake-up and requests are timed.
    tracking: bool,
    /// Requests at least this slow (ns) go to the slow log.
    slow_ns: u64,
    /// The time of this wake-up in ns since [`EPOCH`], plus 1 (so 0 can mean "not timed"); latency tracking on.
    now: u64,
    /// When the request being routed was read (as `now`).
    arrival: u64,
    /// Command table index + 1 of the request being routed (0: unknown).
    routing_command: u32,
    /// `SLOTWAY TRACE` is on for this client: every request and reply is logged.
    trace: bool,
    /// How keys map to groups (fixed per process): decides whether keys of different slots may go together.
    placement: Placement,
    /// When the client last wrote (kept only with `client.read_your_writes`).
    last_write_at: Option<Instant>,
    /// Every new topology: waiting retries go at once when it changes.
    topology_changes: watch::Receiver<Arc<crate::topology::Topology>>,
    /// An ACL SETUSER/DELUSER of this client is in flight: nothing after it runs until it is answered.
    users_changing: bool,
    /// MONITOR: the lines of every client's commands come here.
    monitor: Option<Box<super::monitor::Watching>>,
    /// The held request waits for a CLIENT PAUSE that ends at this time (or at CLIENT UNPAUSE).
    paused_until: Option<Instant>,
    /// Last, so it is let go of last: the connection counts and is listed until everything else is closed.
    _admission: super::Admission,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn new(
        stream: S,
        shared: Arc<Shared>,
        client: ClientState,
        worker: usize,
        admission: super::Admission,
    ) -> Self {
        // The generation first: a change between the two loads is seen (again) before the next command.
        let live_gen = shared.live.generation();
        let live = shared.live.load();
        let read_from = live.config.listen.read_from;
        let pick = client.id as usize;
        let identity = client.user.as_ref().map_or(Identity::DEFAULT, |u| u.upstream);
        let observe = &shared.observe;
        let (stats, tracking, slow_ns) = (observe.worker(worker), observe.tracking, observe.slowlog.threshold_ns());
        let placement = shared.topology.placement();
        let topology_changes = shared.topology.subscribe();
        let inbox = InboxOwner(client.handle.inbox().clone());
        Session {
            stream,
            decoder: RequestDecoder::new(live.limits),
            shared,
            client,
            inbuf: BytesMut::new(),
            read_filled: false,
            out: Output::default(),
            pending: VecDeque::new(),
            base: 0,
            inbox,
            deliveries: Vec::new(),
            retries_waiting: 0,
            read_from,
            live,
            live_gen,
            reads: 0,
            closing: false,
            worker,
            pick,
            lane: Lane::Shared,
            fence: false,
            held: None,
            txn: None,
            blocking: None,
            last_write: None,
            last_keyed: None,
            muted: VecDeque::new(),
            identity,
            partial_since: None,
            handled: false,
            last_active: Instant::now(),
            pubsub: None,
            out_pushed: 0,
            stats,
            tracking,
            slow_ns,
            now: 0,
            arrival: 0,
            routing_command: 0,
            trace: false,
            placement,
            last_write_at: None,
            topology_changes,
            users_changing: false,
            monitor: None,
            paused_until: None,
            _admission: admission,
        }
    }

    /// Serves the client until it disconnects, sends QUIT, breaks the protocol, is killed (CLIENT KILL signals its
    /// inbox) or shutdown completes.
    ///
    /// The session lives in its own allocation: an async fn keeps its by-value arguments apart from the locals it
    /// moves them into, so a session passed by value would take the room of two in every client's task.
    ///
    /// A task is as large as the largest state its future can be in. [`Self::serve`] waits for a dozen things at
    /// once (a kilobyte and more of timers and notifications); a quiet client (see [`Self::quiet`]) waits for
    /// four, in [`Self::wait_quiet`]. So `serve` runs in an allocation of its own, made when the client becomes
    /// busy and freed when it is quiet again, and an idle connection's task holds only the small wait.
    pub(super) async fn run(mut self: Box<Self>)
    where
        S: ClientStream,
    {
        let mut woken = false;
        while Box::pin(self.serve(woken)).await == Turn::Quiet {
            if !self.wait_quiet().await {
                break;
            }
            woken = true;
        }
        let _ = self.stream.shutdown().await;
    }

    /// Nothing is in flight or waiting and nothing can arrive but the client's next request (or a kill, shutdown
    /// or the idle timeout): no request pending or held, no buffered input or output, no subscriptions, MONITOR,
    /// CLIENT PAUSE or ACL change under way.
    fn quiet(&self) -> bool {
        self.pending.is_empty()
            && self.held.is_none()
            && !self.closing
            && !self.read_filled
            && self.inbuf.is_empty()
            && self.out.is_empty()
            && self.pubsub.is_none()
            && self.monitor.is_none()
            && self.paused_until.is_none()
            && self.retries_waiting == 0
            && !self.users_changing
    }

    /// A quiet session's wait: until the client's socket is readable, something comes to the inbox (a delivery,
    /// a kill, shutdown: `serve` handles it) or the idle timeout passes (false).
    async fn wait_quiet(&mut self) -> bool
    where
        S: ClientStream,
    {
        let idle_at = self.live.config.listen.idle_timeout.map(|t| self.last_active + t);
        // Boxed: only clients with an idle timeout carry a timer.
        let mut idle = idle_at.map(|t| Box::pin(tokio::time::sleep_until(t.into())));
        let inbox = &self.inbox.0;
        let stream = &mut self.stream;
        tokio::select! {
            // Ready (or failed: `serve` reads, and sees the error).
            _ = std::future::poll_fn(|cx| stream.poll_read_ready(cx)) => true,
            () = std::future::poll_fn(|cx| inbox.poll_ready(cx)) => true,
            () = async { idle.as_mut().expect("armed").await }, if idle.is_some() => {
                Metrics::incr(&self.shared.metrics.idle_disconnects);
                false
            }
        }
    }

    /// The session's main loop: reads, routes, collects and writes until the session ends ([`Turn::End`]) or is
    /// quiet ([`Turn::Quiet`]). `woken`: [`Self::wait_quiet`] saw something; the first turn waits for it here
    /// even though the session still looks quiet.
    async fn serve(&mut self, mut woken: bool) -> Turn
    where
        S: ClientStream,
    {
        loop {
            // A reload or a change of users: limits and timeouts apply from this turn on. Not on the turn that
            // takes what woke a quiet session: the request it brings sees the change first (`route`), as it would
            // have if the session had waited here (a client whose user was removed gets NOAUTH, then the close).
            if self.shared.live.generation() != self.live_gen && !woken {
                self.refresh_live();
            }
            let limits = &self.live.config.listen;
            let (max_pending, idle_timeout, stall_timeout, request_timeout) = (
                limits.max_pending_per_client,
                limits.idle_timeout,
                limits.output_stall_timeout,
                limits.request_timeout,
            );
            if self.closing && self.pending.is_empty() {
                return Turn::End;
            }
            let can_read = !self.closing && self.pending.len() < max_pending && self.held.is_none();
            let retry_at = self.next_retry();
            // Idle: nothing pending, and no reply for that long. Only armed when configured, and only while idle; as
            // in Redis, a subscribed client is never idle.
            let subscribed = self.pubsub.as_ref().is_some_and(|p| p.subscribed());
            let idle_at = idle_timeout.filter(|_| self.pending.is_empty() && !subscribed).map(|t| self.last_active + t);
            if std::mem::take(&mut self.handled) {
                self.partial_since = None;
            }
            // Slow loris: a request must arrive whole within `request_timeout` of its first byte. Counted only while
            // slotway reads (a paused client isn't late), so the clock is read only when a partial request waits.
            let request_at = match request_timeout {
                Some(t) if can_read && !self.inbuf.is_empty() => {
                    Some(*self.partial_since.get_or_insert_with(Instant::now) + t)
                }
                _ => {
                    self.partial_since = None;
                    None
                }
            };
            if self.pending.is_empty() && self.held.is_none() {
                // Idle (or about to be): an idle client holds no buffers.
                self.release_buffers();
            }
            self.publish_state();
            if !std::mem::take(&mut woken) && self.quiet() {
                return Turn::Quiet;
            }
            let need = self.decoder.wants(self.inbuf.len()).unwrap_or(0);
            // A request held by CLIENT PAUSE waits for the pause's end (its timeout is one of the deadlines) or
            // UNPAUSE; it is routed again below.
            let paused_until = self.paused_until;
            let deadline = [retry_at, idle_at, request_at, paused_until].into_iter().flatten().min();
            let shared = self.shared.clone();
            tokio::select! {
                _ = shared.pause.ended(), if paused_until.is_some() => self.paused_until = None,
                r = buffers::read_client(&mut self.stream, &mut self.inbuf, need), if can_read => match r {
                    Ok((0, _)) | Err(_) => return Turn::End,
                    Ok((n, filled)) => {
                        self.read_filled = filled;
                        self.tick();
                        self.stats.read(n);
                        // SLOTWAY TRACE may have changed while this session waited.
                        self.trace = self.client.handle.traced();
                        self.client.handle.touch();
                        self.process_input()
                    }
                },
                () = std::future::poll_fn(|cx| self.inbox.0.poll_take(cx, &mut self.deliveries)) => {
                    let signals = self.inbox.0.take_signals();
                    if signals.kill {
                        // Killed by another client: close at once, as Redis does, without writing what is pending.
                        return Turn::End;
                    }
                    self.closing |= signals.stop;
                    self.tick();
                    self.handle_deliveries();
                }
                // The topology changed while requests wait to be retried (a new primary, a new slot owner): retry
                // them now rather than at their backoff time. Armed only while some wait: no cost otherwise.
                _ = self.topology_changes.changed(), if retry_at.is_some() => {
                    self.tick();
                    self.retry_now()
                }
                // One timer for the session's three deadlines (each timer is part of every session's task).
                _ = sleep_until(deadline), if deadline.is_some() => {
                    let now = Instant::now();
                    if paused_until.is_some_and(|t| t <= now) {
                        self.paused_until = None;
                    }
                    if idle_at.is_some_and(|t| t <= now) {
                        Metrics::incr(&self.shared.metrics.idle_disconnects);
                        return Turn::End;
                    }
                    if request_at.is_some_and(|t| t <= now) {
                        Metrics::incr(&self.shared.metrics.request_timeout_disconnects);
                        tracing::debug!(client = %self.client.addr(), "request not completed in time; disconnecting");
                        // Whatever is already pending is still answered, then the connection closes.
                        self.push_error("ERR slotway: request not completed in time (client.request_timeout_ms)");
                        self.mark_rejected();
                        self.closing = true;
                        self.inbuf = BytesMut::new();
                    }
                    if retry_at.is_some_and(|t| t <= now) {
                        self.tick();
                        self.resend_due()
                    }
                }
                Some(line) = monitor_line(&mut self.monitor) => self.on_monitor_line(line),
                w = pubsub::wake(&mut self.pubsub) => match w {
                    pubsub::Wake::Event(ev) => {
                        self.tick();
                        self.on_pubsub_event(ev)
                    }
                    pubsub::Wake::Overflow => {
                        self.pubsub_overflow();
                        return Turn::End;
                    }
                },
            }
            while self.inbox.0.try_take(&mut self.deliveries) {
                self.handle_deliveries();
            }
            while let Some(ev) = self.pubsub.as_mut().and_then(|p| p.try_event()) {
                self.on_pubsub_event(ev);
            }
            if self.pubsub.as_ref().is_some_and(|p| p.budget.is_over()) {
                self.pubsub_overflow();
                return Turn::End;
            }
            if self.monitor.is_some() {
                while let Some(line) = self.monitor.as_mut().and_then(|m| m.rx.try_recv().ok()) {
                    self.on_monitor_line(line);
                }
                if self.monitor.as_ref().is_some_and(|m| m.budget.is_over()) {
                    // A monitor that doesn't read: disconnected, as Redis does at its output buffer limit.
                    Metrics::incr(&self.shared.metrics.pubsub_output_limit_disconnects);
                    return Turn::End;
                }
            }
            if self.held.is_some() {
                self.release_held();
            }
            self.collect_ready();
            if !self.out.is_empty() {
                let out_len = self.out.len();
                // A subscriber's messages keep arriving while its write waits: the budget may run out meanwhile.
                let budget = self.pubsub.as_ref().map(|p| p.budget.clone());
                let write = async {
                    let write = async {
                        self.out.write_to(&mut self.stream).await?;
                        self.stream.flush().await
                    };
                    match &budget {
                        Some(b) => tokio::select! {
                            r = write => Some(r),
                            () = b.exceeded() => None,
                        },
                        None => Some(write.await),
                    }
                };
                let written = match stall_timeout {
                    Some(t) => match tokio::time::timeout(t, write).await {
                        Ok(r) => r,
                        Err(_) => {
                            // The client stopped reading: drop it rather than hold its replies forever.
                            Metrics::incr(&self.shared.metrics.output_stall_disconnects);
                            tracing::debug!(client = %self.client.addr(), "client stopped reading; disconnecting");
                            Some(Err(std::io::ErrorKind::TimedOut.into()))
                        }
                    },
                    None => write.await,
                };
                match written {
                    Some(Ok(())) => self.stats.wrote(out_len),
                    Some(Err(_)) => return Turn::End,
                    None => {
                        self.pubsub_overflow();
                        return Turn::End;
                    }
                }
                self.out.clear();
                if idle_timeout.is_some() {
                    self.last_active = Instant::now();
                }
                if let Some(b) = &budget {
                    b.release(self.out_pushed);
                }
                self.out_pushed = 0;
            }
        }
    }

    /// Handles the deliveries taken from the inbox, in the order they came.
    fn handle_deliveries(&mut self) {
        let mut deliveries = std::mem::take(&mut self.deliveries);
        for d in deliveries.drain(..) {
            self.on_delivery(d);
        }
        self.deliveries = deliveries;
    }

    /// Gives back what an idle session doesn't need: the read buffer (unless a partial request or more of the
    /// stream's data waits in it), the output buffer, and the request and delivery queues. A client that is
    /// connected but quiet then costs its task and its registry entry, not buffers.
    fn release_buffers(&mut self) {
        if self.inbuf.is_empty() && self.inbuf.capacity() != 0 && !self.read_filled {
            buffers::give_back(std::mem::take(&mut self.inbuf));
        }
        self.out.release();
        if self.pending.capacity() != 0 {
            self.pending = VecDeque::new();
        }
        if self.deliveries.capacity() != 0 {
            self.deliveries = Vec::new();
            self.inbox.0.release();
        }
    }

    /// Decodes every whole request in the input buffer and dispatches it.
    fn process_input(&mut self) {
        while !self.closing && self.held.is_none() {
            match self.decoder.decode(&self.inbuf) {
                Ok(Some(Request::Array { len, .. })) if len > self.live.config.listen.max_request_bytes => {
                    self.reject_oversized();
                }
                Ok(Some(Request::Array { len, args })) => {
                    let frame = self.inbuf.split_to(len).freeze();
                    if !args.is_empty() {
                        self.handle(frame, &args);
                    }
                }
                Ok(Some(Request::Inline { len, args })) => {
                    self.inbuf.advance(len);
                    if !args.is_empty() {
                        // Nodes get RESP: re-encode the inline command once (telnet users, not a hot path).
                        let mut frame = BytesMut::new();
                        resp::encode::command(&mut frame, &args);
                        let ranges = arg_ranges(&frame, &args);
                        self.handle(frame.freeze(), &ranges);
                    }
                }
                Ok(None) => {
                    if self.inbuf.len() > self.live.config.listen.max_request_bytes {
                        self.reject_oversized();
                    }
                    break;
                }
                Err(e) => {
                    Metrics::incr(&self.shared.metrics.protocol_errors);
                    tracing::debug!(client = %self.client.addr(), error = %e, "protocol error; closing the connection");
                    self.push_error(&format!("ERR Protocol error: {e}"));
                    self.mark_rejected();
                    self.closing = true;
                    self.inbuf.clear();
                }
            }
        }
    }

    /// A request over `max_request_bytes`: a protocol error, as Redis does for an oversized query buffer, and close.
    fn reject_oversized(&mut self) {
        Metrics::incr(&self.shared.metrics.oversized_requests);
        self.push_error("ERR Protocol error: request too large");
        self.mark_rejected();
        self.closing = true;
        self.inbuf.clear();
    }

    /// Routes one request: answers it here, or queues it for a node.
    fn handle(&mut self, frame: Bytes, ranges: &[Range<usize>]) {
        Metrics::incr(&self.shared.metrics.commands_received);
        self.handled = true;
        if self.shared.monitors.active() {
            let args = Args { frame: &frame, ranges };
            if let Some(info) = self.shared.table.resolve(args).filter(|i| super::monitor::shown(i)) {
                let addr = self.client.addr().to_string();
                let now = std::time::SystemTime::now();
                self.shared.monitors.feed(super::monitor::line(now, self.client.db, &addr, info, args));
            }
        }
        self.arrival = self.now;
        self.route_counted(frame, ranges);
    }

    /// The time of this wake-up, for the requests read and the replies collected in it (one clock read per
    /// wake-up, and none when latency tracking is off).
    #[inline]
    fn tick(&mut self) {
        if self.tracking {
            // Plain integers from here on: requests are stamped and timed with a subtraction.
            self.now = EPOCH.elapsed().as_nanos() as u64 + 1;
        }
    }

    /// [`Self::route`], plus what CLIENT REPLY, CLIENT LIST and the observer need to know about the request (a
    /// few compares and stores).
    fn route_counted(&mut self, frame: Bytes, ranges: &[Range<usize>]) {
        let before = self.pending.len();
        let in_multi = self.txn.as_ref().is_some_and(|t| t.multi);
        if self.trace {
            self.trace_request(&frame, ranges);
        }
        self.routing_command = 0;
        self.route(frame, ranges);
        if self.pending.len() == before + 1 {
            // The usual case: one request, one pending entry.
            let p = self.pending.back_mut().expect("just pushed");
            p.track.command = self.routing_command;
            p.track.arrived = self.arrival;
        } else {
            for p in self.pending.range_mut(before..) {
                p.track.command = self.routing_command;
                p.track.arrived = self.arrival;
            }
        }
        if self.client.mute != local::Mute::No {
            for i in before..self.pending.len() {
                // Subscribe-family confirmations are pushes, which Redis delivers under CLIENT REPLY OFF/SKIP
                // too (the SKIP is used up all the same).
                if self.client.mute_next()
                    && !matches!(self.pending[i].kind, Kind::PubSub | Kind::Message | Kind::MonitorLine)
                {
                    self.muted.push_back(self.base + i as u64);
                }
            }
        }
        match self.txn.as_ref().is_some_and(|t| t.multi) {
            true if in_multi => self.client.multi_count += 1,
            true => self.client.multi_count = 0,
            false => {}
        }
    }

    /// Publishes what CLIENT LIST shows of this session's state (a load and compare when it didn't change).
    fn publish_state(&self) {
        let multi = self.txn.as_ref().filter(|t| t.multi).map(|_| self.client.multi_count);
        let state = super::clients::SessionState { multi, blocked: self.blocking.is_some(), db: self.client.db };
        self.client.handle.set_state(state);
        let (sub, psub, ssub) = self.pubsub.as_ref().map_or((0, 0, 0), |p| p.counts());
        self.client.handle.set_subscriptions(sub, psub, ssub);
    }

    fn route(&mut self, frame: Bytes, ranges: &[Range<usize>]) {
        // A reload or a change of users since the last command. (A client whose user was removed is closing: it
        // reads nothing more, and what it already sent is answered NOAUTH.)
        if self.shared.live.generation() != self.live_gen && !self.refresh_live() {
            return self.hold(frame, ranges);
        }
        if self.users_changing {
            if !self.all_answered() {
                return self.hold(frame, ranges);
            }
            self.users_changing = false;
            if self.shared.live.generation() != self.live_gen && !self.refresh_live() {
                return self.hold(frame, ranges);
            }
        }
        let args = Args { frame: &frame, ranges };
        let info = self.shared.table.resolve(args);
        // The entry's index outlives the `&mut self` calls below (the entry itself borrows `self.shared`).
        let index = info.map(|info| info.index);
        if let Some(info) = info {
            self.client.handle.note_command(info.index);
            self.routing_command = info.index + 1;
        }
        // With users configured, a refused command is answered like any other error (inside MULTI that aborts
        // the transaction at EXEC, as Redis does for errors while queueing).
        let denied = if self.live.users.is_some() { self.access_denied(info, args) } else { None };
        // A script of another client running past busy-reply-threshold: the endpoint is busy, as one server.
        let busy = match info {
            Some(i) if denied.is_none() && !i.flags.allow_busy && self.live.config.listen.busy_endpoint => self
                .shared
                .scripts_running
                .busy()
                .filter(|_| !self.pending.iter().any(|p| p.parts.iter().any(|x| x.script.is_some()))),
            _ => None,
        };
        let plan = match denied {
            Some(msg) => {
                Metrics::incr(&self.shared.metrics.acl_denied);
                Plan::Reject(msg)
            }
            None if busy.is_some() => {
                let msg = super::busy::busy_error(busy.expect("checked"));
                Metrics::incr(&self.shared.metrics.commands_local);
                if self.txn.as_ref().is_some_and(|t| t.multi) {
                    if info.is_some_and(|i| i.name == "exec") {
                        // EXEC refused: the transaction is discarded, with Redis's EXECABORT wording.
                        if let Some(t) = self.txn.as_deref_mut() {
                            t.exec_refused = Some(msg);
                        }
                        let plan = dispatch::plan_resolved(info, args, &self.placement);
                        return self.queue_in_multi(frame, ranges, plan);
                    }
                    return self.refuse_queued(msg);
                }
                return self.push_error(msg);
            }
            None if info.is_some_and(|i| {
                let in_multi = self.txn.as_ref().is_some_and(|t| t.multi);
                self.shared.pause.holds(i, in_multi).is_some()
            }) =>
            {
                // CLIENT PAUSE: the command waits (and nothing more is read) until the pause ends.
                let in_multi = self.txn.as_ref().is_some_and(|t| t.multi);
                self.paused_until = info.and_then(|i| self.shared.pause.holds(i, in_multi));
                return self.hold(frame, ranges);
            }
            None => {
                if self.lane == Lane::PubSub && self.fence && !self.all_answered() {
                    // After a subscribe-family command, nothing runs until it is confirmed: whether a RESP2 client
                    // is subscribed decides what the next command may do.
                    return self.hold(frame, ranges);
                }
                if self.subscribed_context(args) {
                    return;
                }
                dispatch::plan_resolved(index.and_then(|i| self.shared.table.by_index(i)), args, &self.placement)
            }
        };
        if self.live.users.is_some()
            && matches!(plan, Plan::Local(LocalCommand::Auth | LocalCommand::Hello | LocalCommand::Reset))
            && !self.all_answered()
        {
            // It may change the client's upstream identity: what was sent as the old one (and any retry of it)
            // must finish first, or a retry could run as the new user and a later command overtake an earlier one.
            return self.hold(frame, ranges);
        }
        if self.placement.standalone()
            && matches!(plan, Plan::Local(LocalCommand::Select))
            && !self.txn.as_ref().is_some_and(|t| t.multi)
            && !self.all_answered()
        {
            // Requests after it go on other connections (those of the new database): what was sent on the old
            // database's must finish first, so nothing overtakes it.
            return self.hold(frame, ranges);
        }
        if let Plan::Local(LocalCommand::Reset) = plan {
            // RESET leaves MONITOR mode.
            self.monitor = None;
            if self.txn.is_some() || self.blocking.is_some() || self.pubsub.is_some() {
                // RESET ends the transaction and every subscription: once what was sent is answered, their
                // connections are closed.
                if !self.all_answered() {
                    return self.hold(frame, ranges);
                }
                self.txn = None;
                self.pubsub = None;
            }
        }
        if self.txn.as_ref().is_some_and(|t| t.multi) {
            // Redis refuses these while queueing, whatever else it would say about them.
            // (After ACL and arity errors, as Redis checks; before slotway's own refusals.)
            let no_multi = index.and_then(|i| self.shared.table.by_index(i)).is_some_and(|i| i.flags.no_multi);
            let plan = match plan {
                Plan::Reject(m) if !m.starts_with("ERR unsupported command") => Plan::Reject(m),
                _ if no_multi => Plan::Reject("ERR Command not allowed inside a transaction".to_string()),
                plan => plan,
            };
            return self.queue_in_multi(frame, ranges, plan);
        }
        match plan {
            Plan::Forward { slot, readonly } | Plan::Eval { slot, readonly } => {
                if !self.ready_for(Lane::Shared) {
                    return self.hold(frame, ranges);
                }
                if !readonly {
                    if slot.is_some() {
                        self.last_write = slot;
                    }
                    self.wrote();
                }
                if matches!(plan, Plan::Eval { .. }) {
                    // EVAL script numkeys ...: remember the body, so a later EVALSHA works on any node.
                    self.shared.scripts.learn(args.get(1));
                }
                let script =
                    index.and_then(|i| self.shared.table.by_index(i)).and_then(|i| super::busy::script_kind(&i.name));
                // A script that declares no keys may still touch some, as on a single server (a node refuses keys
                // it doesn't own): it runs where the client's last keyed command ran, the likeliest home of the
                // keys it works with.
                let slot = match (slot, script) {
                    (None, Some(_)) => self.last_keyed,
                    _ => slot,
                };
                if slot.is_some() {
                    self.last_keyed = slot;
                }
                let mut part = Part::new(frame, slot);
                part.replica_ok =
                    readonly && slot.is_some() && self.read_from != ReadFrom::Primary && !self.reads_own_writes();
                if let Some(kind) = script {
                    part.script = Some(self.shared.scripts_running.begin(kind));
                }
                self.push_forwarded(Pending::single(part, readonly, Kind::Normal));
            }
            Plan::Split { kind, readonly } => {
                if !self.ready_for(Lane::Shared) {
                    return self.hold(frame, ranges);
                }
                let split = split::split(kind, args, &self.placement);
                let parts: SmallVec<[Part; 1]> =
                    split.parts.into_iter().map(|(slot, frame)| Part::new(frame, Some(slot))).collect();
                if !readonly {
                    self.last_write = parts.last().and_then(|p| p.slot);
                    self.wrote();
                }
                self.push_merged(parts, split.merge, readonly);
                self.keep_request(frame);
            }
            Plan::AllPrimaries { kind, readonly } => {
                if !self.ready_for(Lane::Shared) {
                    return self.hold(frame, ranges);
                }
                match kind {
                    FanOut::ScriptLoad => {
                        self.shared.scripts.learn(args.get(2));
                    }
                    // As on one server: after SCRIPT FLUSH, EVALSHA answers NOSCRIPT.
                    FanOut::ScriptFlush => self.shared.scripts.clear(),
                    _ => {}
                }
                let topo = self.shared.topology.load();
                if kind == FanOut::EveryNode {
                    if args.len() == 2 && args.get(1).eq_ignore_ascii_case(b"resetstat") {
                        // slotway's own statistics start again too (INFO's views; /metrics keeps counting).
                        let m = &self.shared.metrics;
                        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
                        let rejected = load(&m.rejected_max_clients) + load(&m.rejected_max_per_address);
                        let counters = [load(&m.connections_accepted), load(&m.commands_received), rejected];
                        self.shared.observe.reset_stats(counters);
                    }
                    if let Some(ms) = super::busy::threshold_set(args) {
                        // The nodes' busy-reply-threshold, for the BUSY errors of a script running long.
                        self.shared.scripts_running.set_threshold(ms);
                    }
                    return match fanout::every_node(args, &topo) {
                        Ok(nodes) => {
                            let upstreams = self.shared.topology.upstreams();
                            let parts = nodes
                                .iter()
                                .map(|addr| {
                                    let mut part = Part::new(frame.clone(), None);
                                    part.node = Some(upstreams.pool(addr));
                                    part
                                })
                                .collect();
                            self.push_merged(parts, Merge::AllOk, readonly)
                        }
                        Err(msg) => self.push_error(&msg),
                    };
                }
                let shared = &self.shared;
                match fanout::build(kind, args, &frame, &topo, |request| local::info_sections(shared, request)) {
                    Ok(fan) => {
                        let parts: SmallVec<[Part; 1]> =
                            fan.parts.into_iter().map(|(slot, frame)| Part::new(frame, slot)).collect();
                        let mut fan_merge = fan.merge;
                        if let Merge::AllOnes { known } = &mut fan_merge {
                            // SCRIPT EXISTS: a script slotway remembers is usable on every node.
                            *known = (2..args.len()).map(|i| self.shared.scripts.get(args.get(i)).is_some()).collect();
                        }
                        if kind == FanOut::AnyOk {
                            // SCRIPT KILL / FUNCTION KILL: around the script, not behind it.
                            let (remaining, merge) = (parts.len(), Some(Box::new(fan_merge)));
                            let kind = Kind::Side;
                            return self.push_forwarded(Pending {
                                reply: None,
                                readonly,
                                parts,
                                remaining,
                                merge,
                                kind,
                                track: Track::default(),
                            });
                        }
                        self.push_merged(parts, fan_merge, readonly);
                    }
                    Err(msg) => self.push_error(&msg),
                }
                self.keep_request(frame);
            }
            Plan::Scan => {
                if !self.ready_for(Lane::Shared) {
                    return self.hold(frame, ranges);
                }
                let topo = self.shared.topology.load();
                match fanout::scan(args, &topo) {
                    Ok((slot, frame, merge)) => {
                        self.push_merged(smallvec::smallvec![Part::new(frame, Some(slot))], merge, true)
                    }
                    Err(msg) => self.push_error(&msg),
                }
                self.keep_request(frame);
            }
            Plan::Blocking { slot, readonly } => self.start_blocking(frame, ranges, slot, readonly, Kind::Blocking),
            // WAIT is read-only in effect: resending it after a lost connection is harmless.
            Plan::Wait => self.start_blocking(frame, ranges, self.last_write, true, Kind::Wait),
            Plan::Txn { cmd, slot } => self.txn_command(cmd, slot, frame, ranges),
            Plan::Local(LocalCommand::Slotway) if args.len() >= 2 && args.get(1).eq_ignore_ascii_case(b"reload") => {
                let nargs = args.len();
                self.slotway_reload(frame, nargs)
            }
            Plan::Local(LocalCommand::Acl)
                if args.len() >= 2
                    && (args.get(1).eq_ignore_ascii_case(b"setuser")
                        || args.get(1).eq_ignore_ascii_case(b"deluser")) =>
            {
                self.acl_change(frame, ranges)
            }
            Plan::Local(LocalCommand::Client) if args.len() >= 3 && args.get(1).eq_ignore_ascii_case(b"unblock") => {
                self.client_unblock(frame, ranges)
            }
            Plan::Local(LocalCommand::Monitor) => {
                // From its +OK on, the client gets every command of slotway's clients (its own included).
                let limit = self.live.config.listen.pubsub_output_limit;
                self.monitor = Some(Box::new(self.shared.monitors.watch(self.client.id, limit)));
                self.run_local(LocalCommand::Monitor, args);
                self.keep_request(frame);
            }
            Plan::Local(cmd) => {
                self.run_local(cmd, args);
                self.keep_request(frame);
            }
            Plan::PubSub { cmd, slot } => self.pubsub_command(cmd, slot, frame, ranges),
            Plan::Reject(msg) => {
                Metrics::incr(&self.shared.metrics.commands_local);
                self.push_error(&msg);
                self.mark_rejected();
                self.keep_request(frame);
            }
        }
    }

    /// Keeps the client's frame with the request just queued, for the slow log (a move: the frame would be
    /// dropped otherwise). Only when its parts don't carry it already.
    fn keep_request(&mut self, frame: Bytes) {
        if self.tracking {
            if let Some(p) = self.pending.back_mut() {
                p.track.request = Some(frame);
            }
        }
    }

    /// The request just answered was refused before running (Redis's `rejected_calls`).
    fn mark_rejected(&mut self) {
        if let Some(p) = self.pending.back_mut() {
            p.track.flags |= flags::REJECTED;
        }
    }

    /// With users configured: NOAUTH before authentication (except the commands Redis allows then), NOPERM for
    /// commands, keys or channels the user's rules don't allow, for scripts that would escape them, and Redis's
    /// error for SORT's BY/GET without access to every key (see [`crate::auth::User::check_request`]); denials
    /// go to ACL LOG. None = go ahead.
    fn access_denied(&self, info: Option<&crate::command::CommandInfo>, args: Args<'_>) -> Option<String> {
        let info = info?;
        let container = info.name.split('|').next().unwrap_or(&info.name);
        if matches!(container, "auth" | "hello" | "quit" | "reset") {
            return None;
        }
        let Some(user) = &self.client.user else {
            return Some("NOAUTH Authentication required.".to_string());
        };
        let denied = user.check_request(info, args).err()?;
        if let (Some(users), Some((reason, object))) = (&self.shared.users(), denied.log_entry(args)) {
            let mut client_info = String::new();
            self.client.handle.info_line(&self.shared.table, &mut client_info);
            let multi = self.txn.as_ref().is_some_and(|t| t.multi);
            users.log.add(reason, multi, object, &user.name, client_info);
        }
        Some(denied.message())
    }

    fn run_local(&mut self, cmd: LocalCommand, args: Args<'_>) {
        Metrics::incr(&self.shared.metrics.commands_local);
        let db = self.client.db;
        let outcome = local::execute(cmd, args, &mut self.client, &self.shared);
        if self.client.db != db && self.txn.is_some() {
            self.select_in_txn(Bytes::copy_from_slice(args.frame));
        }
        self.push_final(outcome.reply);
        // CLIENT SETNAME / HELLO SETNAME may have given the client a traced name.
        self.trace = self.client.handle.traced();
        if outcome.close {
            self.closing = true;
        }
        let identity = self.client.user.as_ref().map_or(Identity::DEFAULT, |u| u.upstream);
        if identity != self.identity {
            self.switch_identity(identity);
        }
    }

    /// Takes the live settings in force (a reload or a change of users happened since this session last looked).
    /// The client's user is looked up again by name: its new rules apply from the next command; if it was
    /// removed, the client is disconnected once what it sent is answered (Redis closes a deleted user's
    /// connections). Returns false, changing nothing, when the user now runs as another cluster user while
    /// requests sent as the old one are outstanding: the caller holds the request until they are answered.
    fn refresh_live(&mut self) -> bool {
        let generation = self.shared.live.generation();
        let live = self.shared.live.load();
        let user = match (&self.client.user, &live.users) {
            (Some(user), Some(users)) => match users.get(user.name.as_bytes()).cloned() {
                Some(new) => Some(new),
                None => {
                    tracing::info!(client = %self.client.addr(), user = %user.name, "user removed: disconnecting its client");
                    self.closing = true;
                    None
                }
            },
            // Authentication turned off: everyone may run everything again.
            (_, None) => None,
            // Authentication turned on: a client that was connected without it was the default user.
            (None, Some(users)) => users.get(b"default").cloned(),
        };
        let identity = user.as_ref().map_or(Identity::DEFAULT, |u| u.upstream);
        if identity != self.identity && !self.all_answered() {
            return false;
        }
        self.client.set_user(user);
        self.decoder.set_limits(live.limits);
        self.read_from = live.config.listen.read_from;
        self.live = live;
        self.live_gen = generation;
        if identity != self.identity {
            self.switch_identity(identity);
        }
        true
    }

    /// `SLOTWAY RELOAD`: the control thread re-reads the configuration and answers into this request's place in
    /// the reply queue (`+OK ...`, or `-ERR ...` when nothing changed). Only for an authenticated user whose rules
    /// allow `slotway|reload` (checked with every command's ACL check before this): without slotway users there
    /// is no one to authorise it, so it is refused; SIGHUP does the same for whoever may signal the process.
    fn slotway_reload(&mut self, frame: Bytes, nargs: usize) {
        Metrics::incr(&self.shared.metrics.commands_local);
        if nargs != 2 {
            return self.push_error("ERR wrong number of arguments for 'slotway|reload' command");
        }
        if self.live.users.is_none() {
            return self.push_error(
                "NOPERM SLOTWAY RELOAD needs an admin user: configure slotway users ([[users]]) and authenticate \
                 as one whose rules allow it (e.g. +@admin), or send SIGHUP to the process",
            );
        }
        let Some(trigger) = self.shared.reload.clone() else {
            return self.push_error("ERR slotway: reload is not available");
        };
        let reply_to = self.answered_by_task(frame);
        if let Err(e) = trigger.0.send(reply_to) {
            e.0.deliver(Ok(error_reply("ERR slotway: reload is not available (shutting down)")));
        }
    }

    /// Queues a request that a task answers in a node's place (a reload, a change of users): where its reply goes.
    fn answered_by_task(&mut self, frame: Bytes) -> ReplyTo {
        self.pending.push_back(Pending::single(Part::new(frame, None), true, Kind::Normal));
        let seq = self.base + self.pending.len() as u64 - 1;
        ReplyTo::Session { inbox: self.inbox.0.clone(), seq, part: 0 }
    }

    /// ACL SETUSER / DELUSER: the change of users runs as a task (it may write provisioned users to the nodes)
    /// and answers into this request's place in the reply queue. Sessions see the new users before their next
    /// command (this one's included: the reply comes after the swap).
    fn acl_change(&mut self, frame: Bytes, ranges: &[Range<usize>]) {
        if !self.all_answered() {
            return self.hold(frame, ranges);
        }
        let args = Args { frame: &frame, ranges };
        Metrics::incr(&self.shared.metrics.commands_local);
        let setuser = args.get(1).eq_ignore_ascii_case(b"setuser");
        if args.len() < 3 {
            let sub = if setuser { "setuser" } else { "deluser" };
            return self.push_error(&format!("ERR wrong number of arguments for 'acl|{sub}' command"));
        }
        let words: Vec<Vec<u8>> = (2..args.len()).map(|i| args.get(i).to_vec()).collect();
        let reply_to = self.answered_by_task(Bytes::new());
        let admin = self.shared.acl_admin.clone();
        tokio::spawn(async move {
            let reply = if setuser {
                admin.setuser(&words[0], &words[1..]).await.map(|()| Bytes::from_static(b"+OK\r\n"))
            } else {
                admin.deluser(&words).await.map(|n| Bytes::from(format!(":{n}\r\n")))
            };
            reply_to.deliver(Ok(reply.unwrap_or_else(|e| error_reply(&e))));
        });
        // What the client sends next (an AUTH as the new user) waits for the change.
        self.users_changing = true;
    }

    /// CLIENT UNBLOCK id [TIMEOUT|ERROR]: a client of slotway blocked in a command waits on a node connection of its
    /// own; the node unblocks it (the blocked client gets the node's nil or UNBLOCKED error, as from one server).
    /// `:1` when the node unblocked it, `:0` when the client isn't blocked (or unknown), as Redis answers.
    fn client_unblock(&mut self, frame: Bytes, ranges: &[Range<usize>]) {
        let args = Args { frame: &frame, ranges };
        let id = std::str::from_utf8(args.get(2)).ok().and_then(|s| s.parse::<i64>().ok());
        let reason = match args.len() {
            3 => None,
            4 if args.get(3).eq_ignore_ascii_case(b"timeout") => Some(&b"TIMEOUT"[..]),
            4 if args.get(3).eq_ignore_ascii_case(b"error") => Some(&b"ERROR"[..]),
            4 => {
                Metrics::incr(&self.shared.metrics.commands_local);
                return self.push_error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
            }
            _ => {
                Metrics::incr(&self.shared.metrics.commands_local);
                return self.push_error("ERR syntax error");
            }
        };
        let Some(id) = id else {
            Metrics::incr(&self.shared.metrics.commands_local);
            return self.push_error("ERR value is not an integer or out of range");
        };
        let on = u64::try_from(id).ok().and_then(|id| self.shared.clients.get(id)).and_then(|c| c.blocked_on());
        let node_id = on.as_ref().map_or(0, |b| b.node_client_id.load(std::sync::atomic::Ordering::Relaxed));
        let Some(on) = on.filter(|_| node_id != 0) else {
            Metrics::incr(&self.shared.metrics.commands_local);
            return self.push_final(Bytes::from_static(b":0\r\n"));
        };

        if !self.ready_for(Lane::Shared) {
            return self.hold(frame, ranges);
        }
        let mut unblock = BytesMut::new();
        let node_id = node_id.to_string();
        let mut words: SmallVec<[&[u8]; 4]> = smallvec::smallvec![&b"CLIENT"[..], &b"UNBLOCK"[..], node_id.as_bytes()];
        words.extend(reason);
        resp::encode::command(&mut unblock, &words);
        let mut part = Part::new(unblock.freeze(), None);
        part.node = Some(on.pool);
        self.push_forwarded(Pending::single(part, true, Kind::Normal));
    }

    /// AUTH (or HELLO AUTH, RESET) made the client a user that runs as another cluster user: later requests go
    /// on that identity's connections. Nothing is outstanding on the old identity's shared connections (`route`
    /// held the AUTH until every earlier request was answered).
    fn switch_identity(&mut self, identity: Identity) {
        self.identity = identity;
        // A WATCH holds a connection logged in as the old identity: nothing more may run on it. EXEC then answers
        // a nil array, as when a watched key changed, and the client retries as its new user.
        if let Some(t) = self.txn.as_deref_mut() {
            t.lose_watch();
        }
    }

    /// A blocking command: sent alone (every earlier request answered) on a dedicated connection, and nothing
    /// after it is sent until it is answered — as on a Redis connection, where a blocked client runs nothing else.
    fn start_blocking(
        &mut self,
        frame: Bytes,
        ranges: &[Range<usize>],
        slot: Option<Slot>,
        readonly: bool,
        kind: Kind,
    ) {
        if !self.all_answered() {
            return self.hold(frame, ranges);
        }
        self.lane = Lane::Blocking;
        self.fence = true;
        Metrics::incr(&self.shared.metrics.blocking_commands);
        let parts = smallvec::smallvec![Part::new(frame, slot)];
        let track = Track::default();
        self.push_forwarded(Pending { reply: None, readonly, parts, remaining: 1, merge: None, kind, track });
    }

    /// Notes a write for `client.read_your_writes` (only then is the clock read).
    fn wrote(&mut self) {
        if self.live.config.listen.read_your_writes.is_some() {
            self.last_write_at = Some(Instant::now());
        }
    }

    /// With `client.read_your_writes`: the client wrote within the window, so its reads go to the primary (a
    /// replica may not have its write yet).
    fn reads_own_writes(&self) -> bool {
        match (self.live.config.listen.read_your_writes, self.last_write_at) {
            (Some(window), Some(at)) => at.elapsed() < window,
            _ => false,
        }
    }

    /// Whether a request for `lane` may be sent now: the outstanding requests use the same connections and no
    /// fence is up, or every earlier request is answered (then the session switches to `lane`).
    fn ready_for(&mut self, lane: Lane) -> bool {
        if self.lane == lane && !self.fence {
            return true;
        }
        if !self.all_answered() {
            return false;
        }
        self.lane = lane;
        self.fence = false;
        true
    }

    /// Every pending request has its reply (some may still wait to be written).
    fn all_answered(&self) -> bool {
        self.pending.iter().all(|p| p.reply.is_some())
    }

    /// Keeps the request until earlier ones are answered; reading from the client pauses meanwhile.
    fn hold(&mut self, frame: Bytes, ranges: &[Range<usize>]) {
        debug_assert!(self.held.is_none());
        self.held = Some(Box::new(Held { frame, ranges: ranges.iter().cloned().collect(), arrived: self.arrival }));
    }

    /// Routes the held request if it may go now, then what else the client sent.
    fn release_held(&mut self) {
        while let Some(h) = self.held.take() {
            self.arrival = h.arrived;
            self.route_counted(h.frame, &h.ranges);
            if self.held.is_some() {
                return;
            }
            self.process_input();
        }
    }

    fn push_final(&mut self, reply: Bytes) {
        self.pending.push_back(Pending {
            reply: Some(reply),
            readonly: true,
            parts: SmallVec::new(),
            remaining: 0,
            merge: None,
            kind: Kind::Normal,
            track: Track::default(),
        });
    }

    /// Queues a request for the nodes and sends each of its parts.
    fn push_forwarded(&mut self, pending: Pending) {
        let parts = pending.parts.len();
        self.pending.push_back(pending);
        let seq = self.base + self.pending.len() as u64 - 1;
        for part in 0..parts {
            self.send_routed(seq, part);
        }
    }

    /// Queues a request whose parts' replies are merged into the client's reply, and sends the parts.
    fn push_merged(&mut self, parts: SmallVec<[Part; 1]>, merge: Merge, readonly: bool) {
        let remaining = parts.len();
        let merge = Some(Box::new(merge));
        let track = Track::default();
        self.push_forwarded(Pending { reply: None, readonly, parts, remaining, merge, kind: Kind::Normal, track });
    }

    fn push_error(&mut self, msg: &str) {
        self.push_final(error_reply(msg));
    }

    fn part_mut(&mut self, seq: u64, part: usize) -> &mut Part {
        &mut self.pending[(seq - self.base) as usize].parts[part]
    }

    /// Sends one part of pending request `seq` to the node the current topology says serves it.
    fn send_routed(&mut self, seq: u64, part: usize) {
        if let Some(pool) = self.part_mut(seq, part).node.clone() {
            return self.send_to(seq, part, pool, false);
        }
        let topo = self.shared.topology.load();
        let (slot, replica_ok) = {
            let p = self.part_mut(seq, part);
            (p.slot, p.replica_ok)
        };
        let target = match slot {
            Some(slot) if replica_ok => {
                self.reads = self.reads.wrapping_add(1);
                match topo.reader_for(slot, self.read_from, self.pick.wrapping_add(self.reads)) {
                    Ok(pool) => pool,
                    Err(crate::topology::NoReplica) => {
                        let msg = match &self.placement {
                            Placement::Slots => format!(
                                "ERR slotway: no healthy replica serves slot {} (read_from = replica)",
                                slot.get()
                            ),
                            Placement::Single => "ERR slotway: no healthy replica (read_from = replica)".to_string(),
                            Placement::Ring(ring) => format!(
                                "ERR slotway: shard '{}' has no healthy replica (read_from = replica)",
                                ring.name_of(slot.get() as usize)
                            ),
                        };
                        self.finish_part(seq, part, error_reply(&msg));
                        return;
                    }
                }
            }
            _ => dispatch::target(&topo, slot, self.pick),
        };
        match target {
            Some(pool) => {
                let pool = pool.clone();
                self.send_to(seq, part, pool, false);
            }
            None => {
                self.shared.topology.request_refresh_for(slot, RefreshReason::ClusterDown);
                let error = topo.unserved_error(slot);
                self.retry_or_fail(seq, part, || error);
            }
        }
    }

    fn send_to(&mut self, seq: u64, part: usize, pool: Arc<NodePool>, asking: bool) {
        let (worker, protocol, pick) = (self.worker, self.client.protocol, self.pick);
        let reply_to = ReplyTo::Session { inbox: self.inbox.0.clone(), seq, part: part as u32 };
        let idx = (seq - self.base) as usize;
        let kind = self.pending[idx].kind;
        if self.tracking {
            self.pending[idx].parts[part].sent_at = self.now;
        }
        let req = UpstreamRequest { frame: self.pending[idx].parts[part].frame.clone(), asking, reply_to };
        match kind {
            Kind::Normal => pool.send(self.identity, self.client.db, worker, protocol, pick, req),
            Kind::Blocking | Kind::Wait => {
                if let Some(old) = self.blocking.take_if(|c| !Arc::ptr_eq(c.pool(), &pool)) {
                    // Redirected elsewhere: the command didn't run, so the old connection is clean.
                    old.release();
                }
                if self.blocking.is_none() {
                    match pool.take_dedicated(self.identity, self.client.db, worker, protocol) {
                        Ok(c) => self.blocking = Some(Box::new(c)),
                        Err(e) => return self.finish_part(seq, part, error_reply(&format!("ERR slotway: {e}"))),
                    }
                }
                let conn = self.blocking.as_ref().expect("just set");
                if let (Kind::Wait, Some(slot)) = (kind, self.pending[idx].parts[part].slot) {
                    write_offset_marker(conn, slot);
                }
                // CLIENT UNBLOCK from another client finds the node and the node's id of this connection here.
                self.client.handle.set_blocked_on(Some(super::clients::BlockedOn {
                    pool: pool.clone(),
                    node_client_id: conn.node_client_id(),
                    sent: conn.sent(),
                }));
                conn.send(req);
            }
            Kind::Txn(_) => {
                if let Err(msg) = self.send_watch(&pool, req) {
                    return self.finish_part(seq, part, error_reply(&msg));
                }
            }
            Kind::PubSub => self.pubsub_send(seq, part, &pool),
            Kind::Side => match pool.take_dedicated(self.identity, self.client.db, worker, protocol) {
                Ok(conn) => {
                    conn.send(req);
                    self.pending[idx].parts[part].side = Some(conn);
                }
                Err(e) => return self.finish_part(seq, part, error_reply(&format!("ERR slotway: {e}"))),
            },
            Kind::Message | Kind::MonitorLine => {}
        }
        self.pending[idx].parts[part].sent_to = Some(pool);
    }

    /// Records a part's final reply; when it was the last one outstanding, the request's reply is complete.
    fn finish_part(&mut self, seq: u64, part: usize, reply: Bytes) {
        if self.pending[(seq - self.base) as usize].kind == Kind::PubSub {
            return self.finish_pubsub_part(seq, part, reply);
        }
        let p = &mut self.pending[(seq - self.base) as usize];
        // A script's reply: it no longer runs.
        p.parts[part].script = None;
        if p.parts[part].reply.is_some() {
            return;
        }
        p.remaining -= 1;
        match &p.merge {
            None if p.kind == Kind::Txn(txn::Step::Watch { first: true }) && reply.first() == Some(&b'-') => {
                // The WATCH that was to choose the transaction's node failed: nothing is watched.
                p.reply = Some(reply);
                self.txn = None;
            }
            None => p.reply = Some(reply),
            Some(merge) => {
                p.parts[part].reply = Some(reply);
                if p.remaining == 0 {
                    let replies: Vec<Bytes> = p.parts.iter_mut().map(|x| x.reply.take().unwrap_or_default()).collect();
                    p.reply = Some(merge.merge(&replies));
                }
            }
        }
    }

    /// A node's reply (or failure) for one part of request `seq`: final, or a redirect/retry to act on.
    fn on_delivery(&mut self, d: Delivery) {
        let (seq, part) = (d.seq, d.part as usize);
        let Some(p) = d.seq.checked_sub(self.base).and_then(|i| self.pending.get_mut(i as usize)) else { return };
        if part >= p.parts.len() {
            return;
        }
        let x = &mut p.parts[part];
        if x.sent_at != 0 {
            let ns = self.now.saturating_sub(std::mem::take(&mut x.sent_at));
            x.waited_us = x.waited_us.saturating_add((ns / 1000) as u32);
            // Node round trips on the shared connections (a blocking command's wait is the client's choice).
            if let (Kind::Normal, Ok(_), Some(node)) = (p.kind, &d.result, &x.sent_to) {
                if let Some(h) = node.round_trip.get(self.worker) {
                    h.record(ns);
                }
            }
        }
        match p.kind {
            Kind::Normal => {}
            Kind::Blocking | Kind::Wait => {
                if d.result.is_err() {
                    // The connection failed: a retry takes a new one.
                    self.blocking = None;
                }
                self.on_forwarded_delivery(seq, part, d.result);
                if self.pending[(seq - self.base) as usize].reply.is_some() {
                    self.client.handle.set_blocked_on(None);
                    if let Some(c) = self.blocking.take() {
                        c.release();
                    }
                }
                return;
            }
            Kind::Side => {
                // Answered (or failed): the connection goes back to the lot, or closes with the failure.
                if let Some(conn) = self.part_mut(seq, part).side.take() {
                    if d.result.is_ok() {
                        conn.release();
                    }
                }
            }
            Kind::Txn(step) => return self.on_txn_delivery(seq, part, step, d.result),
            // Their replies come from the pub/sub connections' events, never as deliveries.
            Kind::PubSub | Kind::Message | Kind::MonitorLine => return,
        }
        self.on_forwarded_delivery(seq, part, d.result);
    }

    /// A reply for a request with redirect and retry handling (shared connections, blocking commands).
    fn on_forwarded_delivery(&mut self, seq: u64, part: usize, result: crate::upstream::UpstreamResult) {
        let p = &self.pending[(seq - self.base) as usize];
        let x = &p.parts[part];
        let readonly = p.readonly;
        let redirects = x.redirects;
        let slot = x.slot;
        let sender_host = x.sent_to.as_ref().map(|n| n.addr.host.clone());
        let metrics = self.shared.metrics.clone();
        match result {
            Ok(frame) => match classify_reply(&frame, sender_host.as_deref().unwrap_or("")) {
                ReplyClass::Final => self.finish_part(seq, part, frame),
                _ if redirects >= self.live.config.upstream.max_redirects => self.finish_part(seq, part, frame),
                ReplyClass::Moved(addr) => {
                    Metrics::incr(&metrics.redirects_moved);
                    self.flag(seq, flags::REDIRECTED);
                    self.part_mut(seq, part).redirects += 1;
                    self.shared.topology.request_refresh(RefreshReason::Moved);
                    let pool = self.shared.topology.upstreams().pool(&addr);
                    self.send_to(seq, part, pool, false);
                }
                ReplyClass::Ask(addr) => {
                    Metrics::incr(&metrics.redirects_ask);
                    self.flag(seq, flags::REDIRECTED);
                    self.part_mut(seq, part).redirects += 1;
                    let pool = self.shared.topology.upstreams().pool(&addr);
                    self.send_to(seq, part, pool, true);
                }
                ReplyClass::TryAgain => {
                    Metrics::incr(&metrics.retries_tryagain);
                    self.retry_or_reply(seq, part, frame);
                }
                ReplyClass::NoScript => {
                    if !self.reload_script(seq, part) {
                        self.finish_part(seq, part, frame);
                    }
                }
                ReplyClass::ClusterDown => {
                    Metrics::incr(&metrics.retries_clusterdown);
                    self.shared.topology.request_refresh_for(slot, RefreshReason::ClusterDown);
                    self.retry_or_reply(seq, part, frame);
                }
                ReplyClass::NodeNotReady => {
                    // Nothing ran: the node refused (e.g. a demoted primary answering READONLY). The refreshed map
                    // names the new primary; until then the retry backs off.
                    Metrics::incr(&metrics.retries_node_not_ready);
                    self.shared.topology.request_refresh_for(slot, RefreshReason::NodeNotReady);
                    self.retry_or_reply(seq, part, frame);
                }
            },
            Err(e @ UpstreamError::NotSent { .. }) => {
                Metrics::incr(&metrics.retries_unreachable);
                self.shared.topology.request_refresh_for(slot, RefreshReason::Unreachable);
                self.retry_or_fail(seq, part, || format!("ERR slotway: node unavailable: {e}"));
            }
            Err(e @ UpstreamError::Lost { .. }) => {
                self.shared.topology.request_refresh_for(slot, RefreshReason::Unreachable);
                if readonly {
                    Metrics::incr(&metrics.retries_connection_lost);
                    self.retry_or_fail(seq, part, || format!("ERR slotway: {e}"));
                } else if self.live.config.upstream.retry_writes_on_connection_loss {
                    Metrics::incr(&metrics.retries_write_connection_lost);
                    self.retry_or_fail(seq, part, || format!("ERR slotway: {e}"));
                } else {
                    Metrics::incr(&metrics.upstream_failures_returned);
                    self.flag(seq, flags::UNAVAILABLE);
                    // The write may have run: resending could apply it twice, so the client decides.
                    let msg = format!("ERR slotway: {e}; the command was sent and may or may not have been applied");
                    self.finish_part(seq, part, error_reply(&msg));
                }
            }
        }
    }

    /// NOSCRIPT recovery: when the part is an EVALSHA / EVALSHA_RO of a script slotway has seen, queues
    /// `SCRIPT LOAD body` and the EVALSHA again on the same connection of the node that answered (so they run in
    /// that order). Once per part; false when it doesn't apply (the NOSCRIPT then goes to the client).
    fn reload_script(&mut self, seq: u64, part: usize) -> bool {
        let p = self.part_mut(seq, part);
        let Some(pool) = p.sent_to.clone().filter(|_| !p.script_reloaded) else { return false };
        let frame = p.frame.clone();
        let mut decoder = RequestDecoder::new(self.live.limits);
        let Ok(Some(Request::Array { args, .. })) = decoder.decode(&frame) else { return false };
        let args = Args { frame: &frame, ranges: &args };
        if args.len() < 2
            || !(args.get(0).eq_ignore_ascii_case(b"evalsha") || args.get(0).eq_ignore_ascii_case(b"evalsha_ro"))
        {
            return false;
        }
        let Some(body) = self.shared.scripts.get(args.get(1)) else { return false };
        Metrics::incr(&self.shared.metrics.scripts_reloaded);
        let mut load = BytesMut::with_capacity(body.len() + 40);
        resp::encode::command(&mut load, &[&b"SCRIPT"[..], &b"LOAD"[..], &body[..]]);
        pool.send(
            self.identity,
            self.client.db,
            self.worker,
            self.client.protocol,
            self.pick,
            UpstreamRequest { frame: load.freeze(), asking: false, reply_to: ReplyTo::Discard },
        );
        self.part_mut(seq, part).script_reloaded = true;
        self.send_to(seq, part, pool, false);
        true
    }

    /// Schedules a resend with exponential backoff, or gives up with the node's own reply.
    fn retry_or_reply(&mut self, seq: u64, part: usize, reply: Bytes) {
        self.retry_or_fail(seq, part, || {
            let body = reply.strip_prefix(b"-").unwrap_or(&reply);
            String::from_utf8_lossy(body.strip_suffix(b"\r\n").unwrap_or(body)).into_owned()
        });
    }

    fn retry_or_fail(&mut self, seq: u64, part: usize, error: impl FnOnce() -> String) {
        // A read from a replica that failed is retried on the primary (unless only replicas may serve reads).
        if self.read_from != ReadFrom::Replica {
            self.part_mut(seq, part).replica_ok = false;
        }
        let cfg = &self.live.config.upstream;
        let (max, base, cap, deadline) =
            (cfg.max_retries, cfg.retry_base_delay, cfg.retry_max_delay, cfg.retry_deadline);
        let p = self.part_mut(seq, part);
        let now = Instant::now();
        let first_failure = *p.first_failure.get_or_insert(now);
        if p.retries >= max || now >= first_failure + deadline {
            Metrics::incr(&self.shared.metrics.upstream_failures_returned);
            let timed_out = now >= first_failure + deadline;
            self.flag(seq, if timed_out { flags::TIMEOUT } else { flags::UNAVAILABLE });
            self.finish_part(seq, part, error_reply(&error()));
            return;
        }
        let delay = base.saturating_mul(1 << p.retries.min(16)).min(cap).min(first_failure + deadline - now);
        p.retries += 1;
        p.retry_at = Some(now + delay);
        // A topology change from now on makes it retry at once.
        self.topology_changes.borrow_and_update();
        self.retries_waiting += 1;
        self.flag(seq, flags::RETRIED);
    }

    /// Notes what happened to request `seq` on its way (for its outcome).
    fn flag(&mut self, seq: u64, flag: u8) {
        self.pending[(seq - self.base) as usize].track.flags |= flag;
    }

    fn next_retry(&self) -> Option<Instant> {
        if self.retries_waiting == 0 {
            return None;
        }
        self.pending.iter().flat_map(|p| p.parts.iter().filter_map(|x| x.retry_at)).min()
    }

    /// Resends every part whose retry time has come, in request order.
    /// Makes every waiting retry due now, and sends them (the topology changed).
    fn retry_now(&mut self) {
        let now = Instant::now();
        for p in &mut self.pending {
            for x in &mut p.parts {
                if x.retry_at.is_some() {
                    x.retry_at = Some(now);
                }
            }
        }
        self.resend_due();
    }

    fn resend_due(&mut self) {
        let now = Instant::now();
        for idx in 0..self.pending.len() {
            for part in 0..self.pending[idx].parts.len() {
                let x = &mut self.pending[idx].parts[part];
                if x.retry_at.is_some_and(|t| t <= now) {
                    x.retry_at = None;
                    self.retries_waiting -= 1;
                    self.send_routed(self.base + idx as u64, part);
                }
            }
        }
    }

    fn on_monitor_line(&mut self, line: Bytes) {
        if let Some(m) = &self.monitor {
            m.budget.release(line.len());
        }
        self.push_monitor_line(line);
    }

    /// A MONITOR line: out of band like a pub/sub message, between replies, never inside one.
    fn push_monitor_line(&mut self, line: Bytes) {
        if self.pending.is_empty() {
            self.out.extend_from_slice(&line);
        } else {
            self.pending.push_back(Pending {
                reply: Some(line),
                readonly: true,
                parts: SmallVec::new(),
                remaining: 0,
                merge: None,
                kind: Kind::MonitorLine,
                track: Track::default(),
            });
        }
    }

    /// More pub/sub output waits for this client than `client.pubsub_output_limit_bytes` allows: it is
    /// disconnected (its connections close with the session), as Redis does at its pub/sub output limit.
    fn pubsub_overflow(&mut self) {
        Metrics::incr(&self.shared.metrics.pubsub_output_limit_disconnects);
        tracing::info!(
            client = %self.client.addr(),
            limit = self.live.config.listen.pubsub_output_limit,
            "subscriber too slow: pub/sub output limit reached; disconnecting"
        );
    }

    /// Moves the finished replies at the head of the FIFO into the output buffer.
    fn collect_ready(&mut self) {
        while self.pending.front().is_some_and(|p| p.reply.is_some()) {
            let mut p = self.pending.pop_front().expect("checked");
            let reply = p.reply.take().expect("checked");
            if p.kind != Kind::Message {
                self.observe(&p, &reply);
            }
            if self.muted.front() == Some(&self.base) {
                self.muted.pop_front();
            } else {
                if p.kind == Kind::Message {
                    self.out_pushed += reply.len();
                }
                self.out.push(reply);
            }
            self.base += 1;
        }
    }
}

/// The next MONITOR line; never completes when the client doesn't monitor.
async fn monitor_line(m: &mut Option<Box<super::monitor::Watching>>) -> Option<Bytes> {
    match m {
        Some(m) => m.rx.recv().await,
        None => std::future::pending().await,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Records a request whose reply leaves the FIFO: its command, outcome and end-to-end time, its error code, and
    /// the slow log and trace when they apply.
    #[inline]
    fn observe(&mut self, p: &Pending, reply: &Bytes) {
        let error = matches!(reply.first(), Some(b'-' | b'!'));
        if error {
            self.stats.error(reply);
        }
        let outcome = Outcome::classify(p.track.flags, error);
        let elapsed = (p.track.arrived != 0).then(|| self.now.saturating_sub(p.track.arrived));
        self.stats.finish(p.track.command, outcome, elapsed);
        if elapsed.is_some_and(|ns| ns >= self.slow_ns) || self.trace {
            self.observe_slow_path(p, reply, outcome, elapsed);
        }
    }

    /// The slow log entry and the trace line of a request (rare: off the fast path).
    #[cold]
    fn observe_slow_path(&mut self, p: &Pending, reply: &Bytes, outcome: Outcome, elapsed: Option<u64>) {
        let observe = &self.shared.observe;
        let mut nodes: Vec<String> = Vec::new();
        for x in &p.parts {
            if let Some(n) = &x.sent_to {
                let addr = n.addr.to_string();
                if !nodes.contains(&addr) {
                    nodes.push(addr);
                }
            }
        }
        let nodes = nodes.join(",");
        let upstream_us = u64::from(p.parts.iter().map(|x| x.waited_us).max().unwrap_or(0));
        let command = observe.command_name(p.track.command as usize);
        let known = (p.track.command != 0).then_some(command);
        if let Some(ns) = elapsed.filter(|&ns| ns >= self.slow_ns) {
            let frame = p.track.request.as_ref().or(p.parts.first().map(|x| &x.frame));
            let mut decoder = RequestDecoder::new(self.live.limits);
            if let Some(Ok(Some(Request::Array { args, .. }))) = frame.map(|f| decoder.decode(f)) {
                let frame = frame.expect("decoded");
                let args: Vec<&[u8]> = args.iter().map(|r| &frame[r.clone()]).collect();
                observe.slowlog.record(crate::observe::slowlog::SlowRequest {
                    command: known,
                    args: &args,
                    duration_us: ns / 1000,
                    client: self.client.addr().to_string(),
                    client_name: self.client.name().map(|n| &n[..]),
                    nodes: nodes.clone(),
                    upstream_us,
                });
            }
        }
        if self.trace {
            let kind = match reply.first() {
                Some(b'-' | b'!') => dispatch::printable(reply.strip_suffix(b"\r\n").unwrap_or(reply), 200),
                Some(&t) => format!("type '{}', {} bytes", t as char, reply.len()),
                None => String::new(),
            };
            tracing::info!(
                target: "slotway::trace",
                client = self.client.id,
                addr = %self.client.addr(),
                command,
                outcome = outcome.name(),
                us = elapsed.map(|ns| ns / 1000),
                upstream_us,
                nodes = %nodes,
                reply = %kind,
                "reply"
            );
        }
    }

    /// The trace line of a request as it arrives (`SLOTWAY TRACE`): its arguments as the slow log shows them
    /// (secrets redacted, cut at 32 arguments of 128 bytes).
    #[cold]
    fn trace_request(&self, frame: &Bytes, ranges: &[Range<usize>]) {
        let args: Vec<&[u8]> = ranges.iter().map(|r| &frame[r.clone()]).collect();
        let info = self.shared.table.resolve(Args { frame, ranges });
        let shown = crate::observe::slowlog::shown_args(info.map(|i| i.name.as_str()), &args);
        let text: Vec<String> = shown.iter().map(|a| dispatch::printable(a, 200)).collect();
        tracing::info!(
            target: "slotway::trace",
            client = self.client.id,
            addr = %self.client.addr(),
            name = %self.client.name().map(|n| &n[..]).map(String::from_utf8_lossy).unwrap_or_default(),
            request = %text.join(" "),
            "request"
        );
    }
}

/// WAIT and WAITAOF count the replicas that have every write made *on the connection they are sent on*, but the
/// client's writes went over the shared connections. An empty write on the WAIT's own connection, right before
/// it and after the client's writes were answered, moves that connection's replication offset past them: a
/// transaction that sets and deletes a key of slotway's own (`__slotway_wait__{tag}`, in the slot of the
/// client's last write so this node owns it). No other client can ever see the key; replicas and the AOF get
/// the SET and DEL.
fn write_offset_marker(conn: &Dedicated, slot: Slot) {
    let key = format!("__slotway_wait__{{{}}}", slot.tag());
    let cmds: [&[&[u8]]; 4] = [&[b"MULTI"], &[b"SET", key.as_bytes(), b"1"], &[b"DEL", key.as_bytes()], &[b"EXEC"]];
    for cmd in cmds {
        let mut frame = BytesMut::new();
        resp::encode::command(&mut frame, cmd);
        conn.send(UpstreamRequest { frame: frame.freeze(), asking: false, reply_to: ReplyTo::Discard });
    }
}

async fn sleep_until(t: Option<Instant>) {
    if let Some(t) = t {
        tokio::time::sleep_until(t.into()).await;
    }
}

/// The session's inbox, closed when the session ends (so replies still in flight are dropped as they come).
struct InboxOwner(Arc<Inbox>);

impl Drop for InboxOwner {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// `-<msg>\r\n` as Bytes.
pub(crate) fn error_reply(msg: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(msg.len() + 3);
    resp::encode::error(&mut b, msg);
    b.freeze()
}

/// Byte ranges of each argument in a frame that `resp::encode::command` just wrote for `args`.
fn arg_ranges(frame: &[u8], args: &[Vec<u8>]) -> SmallVec<[Range<usize>; 8]> {
    let mut ranges = SmallVec::new();
    let mut end = frame.len();
    // Walk backwards: each argument is followed by CRLF and preceded by its `$len\r\n` header.
    for a in args.iter().rev() {
        let start = end - 2 - a.len();
        ranges.push(start..start + a.len());
        end = start - format!("${}\r\n", a.len()).len();
    }
    ranges.reverse();
    ranges
}
