//! One shared, pipelined connection to a node: a handle, a driver task that (re)connects and writes batches,
//! and a reader task that hands replies back in FIFO order.
//!
//! Health checks (when configured): the writer sends a PING when it has written nothing for an interval, and the
//! reader closes the connection when requests are outstanding and nothing at all has come back for the timeout
//! (a stalled or vanished node), so those requests fail as lost instead of waiting forever.
use super::connect::{connect, BoxRead, BoxWrite, ConnectContext, HealthCheck, NodeTrouble};
use super::{ReplyTo, Request, UpstreamError};
use crate::cluster::NodeAddr;
use bytes::{Bytes, BytesMut};
use resp::encode::Protocol;
use resp::{Limits, ReplyKind, ReplyScanner};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Frames at least this large are written straight from the client's buffer instead of being copied into the batch.
const DIRECT_WRITE_MIN: usize = 64 * 1024;
/// A batch stops growing at this many bytes, so one busy connection can't build an unbounded write buffer.
const MAX_BATCH_BYTES: usize = 512 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// The reader looks at its progress this many times per health check timeout.
const CHECKS_PER_TIMEOUT: u32 = 4;
static PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// Sending side of one connection. Cloning the node pool's handles is never needed: the pool owns them.
#[derive(Debug)]
pub(super) struct ConnHandle {
    tx: mpsc::UnboundedSender<Request>,
}

impl ConnHandle {
    /// Starts the connection's tasks on `worker` (they stay on that thread for their whole life).
    pub(super) fn spawn(
        worker: &tokio::runtime::Handle,
        addr: NodeAddr,
        ctx: Arc<ConnectContext>,
        protocol: Protocol,
        readonly: bool,
        db: u16,
    ) -> ConnHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        worker.spawn(drive(addr, ctx, protocol, readonly, db, rx));
        ConnHandle { tx }
    }

    pub(super) fn send(&self, addr: &NodeAddr, req: Request) {
        if let Err(mpsc::error::SendError(req)) = self.tx.send(req) {
            req.reply_to.deliver(Err(not_sent(addr, "connection task stopped")));
        }
    }
}

fn not_sent(addr: &NodeAddr, reason: &str) -> UpstreamError {
    UpstreamError::NotSent { addr: addr.clone(), reason: Arc::from(reason) }
}

/// Reconnect delays: doubled per consecutive failure, capped, with jitter so many proxies don't retry in step.
struct Backoff {
    failures: u32,
    until: Option<Instant>,
    last_error: Arc<str>,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(2);

    fn failed(&mut self, error: String) {
        self.failures = self.failures.saturating_add(1);
        let exp = Self::BASE.saturating_mul(1u32 << self.failures.min(6)).min(Self::MAX);
        let jitter = rand::random_range(0.5..1.0);
        self.until = Some(Instant::now() + exp.mul_f64(jitter));
        self.last_error = Arc::from(error);
    }

    fn blocked(&self) -> bool {
        self.until.is_some_and(|t| Instant::now() < t)
    }
}

/// The connection's life: wait for work, connect, serve until the connection fails, repeat.
/// Ends when the pool (the only sender) is dropped.
async fn drive(
    addr: NodeAddr,
    ctx: Arc<ConnectContext>,
    protocol: Protocol,
    readonly: bool,
    db: u16,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    let mut backoff = Backoff { failures: 0, until: None, last_error: Arc::from("") };
    while let Some(first) = rx.recv().await {
        if backoff.blocked() {
            // Fail fast while backing off: the caller refreshes the topology and retries elsewhere or later.
            let reason = format!("not connected (last attempt: {})", backoff.last_error);
            fail_all(first, &mut rx, &addr, &reason);
            continue;
        }
        match connect(&addr, &ctx, protocol, readonly, db).await {
            Err(e) => {
                ctx.metrics.upstream_connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %addr, error = %e, "upstream connection failed");
                let reason = e.to_string();
                fail_all(first, &mut rx, &addr, &reason);
                backoff.failed(reason);
            }
            Ok((rd, wr)) => {
                backoff.failures = 0;
                backoff.until = None;
                ctx.metrics.upstream_connects.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node = %addr, "upstream connected");
                if !serve(&addr, &ctx, rd, wr, first, &mut rx).await {
                    return;
                }
            }
        }
    }
}

fn fail_all(first: Request, rx: &mut mpsc::UnboundedReceiver<Request>, addr: &NodeAddr, reason: &str) {
    first.reply_to.deliver(Err(not_sent(addr, reason)));
    while let Ok(req) = rx.try_recv() {
        req.reply_to.deliver(Err(not_sent(addr, reason)));
    }
}

/// Writes batches until the connection fails (returns true: reconnect on next request) or the pool is dropped
/// (returns false: stop).
///
/// Before writing, the writer yields once: the worker first runs every session that became ready meanwhile (the
/// runtime polls for I/O before it comes back), so their requests join this batch. Under load that makes batches
/// bigger, and one write and one wake-up of the node serve more clients' commands, which lowers the CPU per request
/// of both slotway and the node (measured: 50 clients at pipeline 1, batches of 3.3 → 4.5 requests and about 12%
/// less CPU per request). An idle worker comes straight back, so a lone request is not delayed.
async fn serve(
    addr: &NodeAddr,
    ctx: &Arc<ConnectContext>,
    rd: BoxRead,
    mut wr: BoxWrite,
    first: Request,
    rx: &mut mpsc::UnboundedReceiver<Request>,
) -> bool {
    let (inflight_tx, inflight_rx) = mpsc::unbounded_channel::<Vec<ReplyTo>>();
    let (kill_tx, kill_rx) = oneshot::channel::<String>();
    tokio::spawn(read_replies(addr.clone(), rd, inflight_rx, kill_rx, ctx.clone()));

    let mut idle_check = ctx.health.map(|h| ticker(h.interval));
    // Whether anything was written since the last idle check.
    let mut wrote = true;
    let mut next = Some(first);
    let mut batch = Batch::default();
    loop {
        let first = match next.take() {
            Some(r) => {
                wrote = true;
                r
            }
            None => tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => {
                        wrote = true;
                        r
                    }
                    None => return false,
                },
                _ = inflight_tx.closed() => return true,
                _ = tick(&mut idle_check) => {
                    if std::mem::replace(&mut wrote, false) {
                        continue;
                    }
                    // Idle for a whole interval: a PING proves the node (and the path to it) still answers; the
                    // reader's timeout catches it if it doesn't. (It doesn't count as a write: an idle connection
                    // is checked every interval.)
                    ctx.metrics.health_check_pings.fetch_add(1, Ordering::Relaxed);
                    Request { frame: Bytes::from_static(PING), asking: false, reply_to: ReplyTo::Discard }
                }
            },
        };
        batch.add(first);
        tokio::task::yield_now().await;
        batch.take_queued(rx);
        let targets = batch.finish();
        ctx.metrics.upstream_batches.fetch_add(1, Ordering::Relaxed);
        ctx.metrics.upstream_batched_requests.fetch_add(targets.len() as u64, Ordering::Relaxed);
        // The reader must know about the requests before their replies can arrive, so targets go first.
        if let Err(mpsc::error::SendError(targets)) = inflight_tx.send(targets) {
            for t in targets {
                t.deliver(Err(not_sent(addr, "connection closed")));
            }
            batch.chunks.clear();
            return true;
        }
        for chunk in batch.chunks.drain(..) {
            if let Err(e) = wr.write_all(&chunk).await {
                let _ = kill_tx.send(format!("write failed: {e}"));
                return true;
            }
        }
        if let Err(e) = wr.flush().await {
            let _ = kill_tx.send(format!("write failed: {e}"));
            return true;
        }
    }
}

/// The requests of the next write: small frames copied into one buffer, large ones kept as their own chunks.
struct Batch {
    buf: BytesMut,
    chunks: Vec<Bytes>,
    targets: Vec<ReplyTo>,
    size: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch { buf: BytesMut::with_capacity(16 * 1024), chunks: Vec::new(), targets: Vec::new(), size: 0 }
    }
}

impl Batch {
    fn add(&mut self, req: Request) {
        if req.asking {
            resp::encode::command(&mut self.buf, &[b"ASKING"]);
            self.targets.push(ReplyTo::Discard);
        }
        self.size += req.frame.len();
        if req.frame.len() >= DIRECT_WRITE_MIN {
            if !self.buf.is_empty() {
                self.chunks.push(self.buf.split().freeze());
            }
            self.chunks.push(req.frame);
        } else {
            self.buf.extend_from_slice(&req.frame);
        }
        self.targets.push(req.reply_to);
    }

    /// Adds the requests already queued, up to the size limit.
    fn take_queued(&mut self, rx: &mut mpsc::UnboundedReceiver<Request>) {
        while !self.is_full() {
            match rx.try_recv() {
                Ok(req) => self.add(req),
                Err(_) => break,
            }
        }
    }

    fn is_full(&self) -> bool {
        self.size >= MAX_BATCH_BYTES
    }

    /// Closes the batch: its bytes are in `chunks`, and the returned targets are in write order.
    fn finish(&mut self) -> Vec<ReplyTo> {
        if !self.buf.is_empty() {
            self.chunks.push(self.buf.split().freeze());
        }
        // Reuse the buffer's allocation once every frozen chunk has been dropped.
        self.buf.reserve(16 * 1024);
        self.size = 0;
        std::mem::replace(&mut self.targets, Vec::with_capacity(8))
    }
}

/// A timer that first fires one `period` from now; a late tick is not made up for.
fn ticker(period: Duration) -> tokio::time::Interval {
    let period = period.max(Duration::from_millis(1));
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

/// The next tick of `timer`, or never when there is none (health checks off).
async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Reads replies and hands each to the oldest in-flight request. On any failure every outstanding request gets
/// `Lost` (it was written) and the channel is closed so the writer stops and the next request reconnects.
async fn read_replies(
    addr: NodeAddr,
    mut rd: BoxRead,
    mut inflight_rx: mpsc::UnboundedReceiver<Vec<ReplyTo>>,
    mut kill: oneshot::Receiver<String>,
    ctx: Arc<ConnectContext>,
) {
    let mut queue: VecDeque<ReplyTo> = VecDeque::new();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut scanner = ReplyScanner::new(Limits::default());
    let mut kill_armed = true;
    // Health: checked CHECKS_PER_TIMEOUT times per timeout; `silent` counts checks in a row that found requests
    // outstanding and nothing read since the previous check. One more check than CHECKS_PER_TIMEOUT is needed
    // because the first silent check may come right after the request was written.
    let mut progress_check = ctx.health.map(|h: HealthCheck| ticker(h.timeout / CHECKS_PER_TIMEOUT));
    let (mut progressed, mut silent) = (false, 0u32);
    let mut trouble = NodeTrouble::Closed;
    let reason = 'conn: loop {
        super::make_room(&mut buf, READ_CHUNK);
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break 'conn "connection closed by the node".to_string(),
                Ok(_) => progressed = true,
                Err(e) => break 'conn format!("read failed: {e}"),
            },
            _ = tick(&mut progress_check) => {
                let moved = std::mem::replace(&mut progressed, false);
                if queue.is_empty() || moved {
                    silent = 0;
                } else {
                    silent += 1;
                    if silent > CHECKS_PER_TIMEOUT {
                        trouble = NodeTrouble::NoReply;
                        let timeout = ctx.health.map(|h| h.timeout).unwrap_or_default();
                        break 'conn format!("no reply from the node within {timeout:?} (health check)");
                    }
                }
                continue;
            },
            batch = inflight_rx.recv(), if queue.is_empty() => match batch {
                Some(b) => {
                    queue.extend(b);
                    continue;
                }
                // The writer is gone and nothing is outstanding: a clean end.
                None => return,
            },
            k = &mut kill, if kill_armed => match k {
                Ok(reason) => break 'conn reason,
                // The writer ended normally (the pool was dropped): finish what is outstanding.
                Err(_) => {
                    kill_armed = false;
                    continue;
                }
            },
        }
        loop {
            match scanner.scan(&buf) {
                Ok(Some(reply)) => {
                    let frame = buf.split_to(reply.len).freeze();
                    if reply.kind == ReplyKind::Push {
                        // Out-of-band data (e.g. invalidations) has no request to answer on a shared connection.
                        continue;
                    }
                    if queue.is_empty() {
                        while let Ok(b) = inflight_rx.try_recv() {
                            queue.extend(b);
                        }
                    }
                    match queue.pop_front() {
                        Some(target) => target.deliver(Ok(frame)),
                        None => break 'conn "the node sent a reply nobody asked for".to_string(),
                    }
                }
                Ok(None) => break,
                Err(e) => break 'conn format!("protocol error from the node: {e}"),
            }
        }
    };
    tracing::warn!(node = %addr, reason = %reason, outstanding = queue.len(), "upstream connection failed");
    if trouble == NodeTrouble::NoReply {
        ctx.metrics.health_check_failures.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(hook) = ctx.on_trouble.get() {
        hook(&addr, trouble);
    }
    inflight_rx.close();
    while let Ok(b) = inflight_rx.try_recv() {
        queue.extend(b);
    }
    let reason: Arc<str> = Arc::from(reason);
    for target in queue {
        target.deliver(Err(UpstreamError::Lost { addr: addr.clone(), reason: reason.clone() }));
    }
}
