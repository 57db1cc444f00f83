//! One client connection: read requests, route them, collect replies in request order, write them in batches.
//!
//! Each request gets a [`Pending`] entry in a FIFO. Entries are filled in any order (replies from different nodes
//! race) and written strictly in order. The FIFO is capped (`max_pending_per_client`): when it is full slotway
//! stops reading from the client, so a client that pipelines without reading costs bounded memory.
use super::local::{self, ClientState};
use super::Shared;
use crate::cluster::Slot;
use crate::command::Args;
use crate::dispatch::{self, classify_reply, Plan, ReplyClass};
use crate::metrics::Metrics;
use crate::topology::RefreshReason;
use crate::upstream::{Delivery, NodePool, ReplyTo, Request as UpstreamRequest, UpstreamError};
use bytes::{Buf, Bytes, BytesMut};
use resp::{Request, RequestDecoder};
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

const READ_CHUNK: usize = 16 * 1024;

/// One request between arrival and the moment its reply is written.
struct Pending {
    /// The final reply, once known.
    reply: Option<Bytes>,
    /// The request exactly as the client sent it (RESP), kept to resend after a redirect or a retry.
    frame: Bytes,
    /// Where it is routed: a slot's primary, or any primary when None.
    slot: Option<Slot>,
    /// Safe to resend after its connection died (it doesn't write).
    readonly: bool,
    /// The node it was last sent to; a redirect with an empty host means this node's host.
    sent_to: Option<Arc<NodePool>>,
    redirects: u32,
    retries: u32,
    /// Waiting to be resent at this time (after TRYAGAIN, CLUSTERDOWN or an unreachable node).
    retry_at: Option<Instant>,
}

pub(super) struct Session<S> {
    stream: S,
    shared: Arc<Shared>,
    client: ClientState,
    decoder: RequestDecoder,
    inbuf: BytesMut,
    out: BytesMut,
    pending: VecDeque<Pending>,
    /// Sequence number of `pending[0]`.
    base: u64,
    replies_tx: mpsc::UnboundedSender<Delivery>,
    replies_rx: mpsc::UnboundedReceiver<Delivery>,
    /// Set after QUIT, a protocol error or shutdown: read nothing more, finish what is pending, close.
    closing: bool,
    /// The worker thread this session runs on: it only uses connections driven by that thread.
    worker: usize,
    /// Which of the worker's connections to a node this client uses (the same one always, so its requests to one
    /// node keep their order).
    pick: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn new(stream: S, shared: Arc<Shared>, client: ClientState, worker: usize) -> Self {
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        let pick = client.id as usize;
        Session {
            stream,
            decoder: RequestDecoder::new(shared.limits),
            shared,
            client,
            inbuf: BytesMut::with_capacity(READ_CHUNK),
            out: BytesMut::with_capacity(READ_CHUNK),
            pending: VecDeque::new(),
            base: 0,
            replies_tx,
            replies_rx,
            closing: false,
            worker,
            pick,
        }
    }

    /// Serves the client until it disconnects, sends QUIT, breaks the protocol, or shutdown completes.
    pub(super) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let max_pending = self.shared.config.listen.max_pending_per_client;
        loop {
            if self.closing && self.pending.is_empty() {
                break;
            }
            let can_read = !self.closing && self.pending.len() < max_pending;
            let retry_at = self.next_retry();
            if self.inbuf.capacity() - self.inbuf.len() < READ_CHUNK / 4 {
                self.inbuf.reserve(READ_CHUNK);
            }
            tokio::select! {
                r = self.stream.read_buf(&mut self.inbuf), if can_read => match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => self.process_input(),
                },
                Some(d) = self.replies_rx.recv() => self.on_delivery(d),
                _ = sleep_until(retry_at), if retry_at.is_some() => self.resend_due(),
                _ = shutdown.changed(), if !self.closing => self.closing = true,
            }
            while let Ok(d) = self.replies_rx.try_recv() {
                self.on_delivery(d);
            }
            self.collect_ready();
            if !self.out.is_empty() {
                if self.stream.write_all(&self.out).await.is_err() || self.stream.flush().await.is_err() {
                    break;
                }
                self.out.clear();
            }
        }
        let _ = self.stream.shutdown().await;
    }

    /// Decodes every whole request in the input buffer and dispatches it.
    fn process_input(&mut self) {
        while !self.closing {
            match self.decoder.decode(&self.inbuf) {
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
                Ok(None) => break,
                Err(e) => {
                    Metrics::incr(&self.shared.metrics.protocol_errors);
                    tracing::debug!(client = %self.client.addr, error = %e, "protocol error; closing the connection");
                    self.push_error(&format!("ERR Protocol error: {e}"));
                    self.closing = true;
                    self.inbuf.clear();
                }
            }
        }
    }

    /// Routes one request: answers it here, or queues it for a node.
    fn handle(&mut self, frame: Bytes, ranges: &[Range<usize>]) {
        Metrics::incr(&self.shared.metrics.commands_received);
        let args = Args { frame: &frame, ranges };
        match dispatch::plan(&self.shared.table, args) {
            Plan::Forward { slot, readonly } => {
                self.pending.push_back(Pending {
                    reply: None,
                    frame,
                    slot,
                    readonly,
                    sent_to: None,
                    redirects: 0,
                    retries: 0,
                    retry_at: None,
                });
                let seq = self.base + self.pending.len() as u64 - 1;
                self.send_routed(seq);
            }
            Plan::Local(cmd) => {
                Metrics::incr(&self.shared.metrics.commands_local);
                let outcome = local::execute(cmd, args, &mut self.client, &self.shared);
                self.push_final(outcome.reply);
                if outcome.close {
                    self.closing = true;
                }
            }
            Plan::Reject(msg) => {
                Metrics::incr(&self.shared.metrics.commands_local);
                self.push_error(&msg);
            }
        }
    }

    fn push_final(&mut self, reply: Bytes) {
        self.pending.push_back(Pending {
            reply: Some(reply),
            frame: Bytes::new(),
            slot: None,
            readonly: true,
            sent_to: None,
            redirects: 0,
            retries: 0,
            retry_at: None,
        });
    }

    fn push_error(&mut self, msg: &str) {
        self.push_final(error_reply(msg));
    }

    /// Sends pending request `seq` to the node the current topology says serves it.
    fn send_routed(&mut self, seq: u64) {
        let topo = self.shared.topology.load();
        let idx = (seq - self.base) as usize;
        let slot = self.pending[idx].slot;
        match dispatch::target(&topo, slot, self.pick) {
            Some(pool) => {
                let pool = pool.clone();
                self.send_to(seq, pool, false);
            }
            None => {
                self.shared.topology.request_refresh(RefreshReason::ClusterDown);
                self.retry_or_fail(seq, || "CLUSTERDOWN Hash slot not served".to_string());
            }
        }
    }

    fn send_to(&mut self, seq: u64, pool: Arc<NodePool>, asking: bool) {
        let p = &mut self.pending[(seq - self.base) as usize];
        let reply_to = ReplyTo::Session { tx: self.replies_tx.clone(), seq, part: 0 };
        pool.send(self.worker, self.pick, UpstreamRequest { frame: p.frame.clone(), asking, reply_to });
        p.sent_to = Some(pool);
    }

    /// A node's reply (or failure) for request `seq`: final, or a redirect/retry to act on.
    fn on_delivery(&mut self, d: Delivery) {
        let Some(idx) = d.seq.checked_sub(self.base).map(|i| i as usize) else { return };
        let Some(p) = self.pending.get_mut(idx) else { return };
        let metrics = &self.shared.metrics;
        let max_redirects = self.shared.config.upstream.max_redirects;
        match d.result {
            Ok(frame) => {
                let sender_host = p.sent_to.as_ref().map(|n| n.addr.host.clone()).unwrap_or_else(|| Arc::from(""));
                match classify_reply(&frame, &sender_host) {
                    ReplyClass::Final => p.reply = Some(frame),
                    _ if p.redirects >= max_redirects => p.reply = Some(frame),
                    ReplyClass::Moved(addr) => {
                        Metrics::incr(&metrics.redirects_moved);
                        p.redirects += 1;
                        self.shared.topology.request_refresh(RefreshReason::Moved);
                        let pool = self.shared.topology.upstreams().pool(&addr);
                        self.send_to(d.seq, pool, false);
                    }
                    ReplyClass::Ask(addr) => {
                        Metrics::incr(&metrics.redirects_ask);
                        p.redirects += 1;
                        let pool = self.shared.topology.upstreams().pool(&addr);
                        self.send_to(d.seq, pool, true);
                    }
                    ReplyClass::TryAgain => {
                        Metrics::incr(&metrics.retries_tryagain);
                        self.retry_or_reply(d.seq, frame);
                    }
                    ReplyClass::ClusterDown => {
                        Metrics::incr(&metrics.retries_clusterdown);
                        self.shared.topology.request_refresh(RefreshReason::ClusterDown);
                        self.retry_or_reply(d.seq, frame);
                    }
                }
            }
            Err(e @ UpstreamError::NotSent { .. }) => {
                Metrics::incr(&metrics.retries_unreachable);
                self.shared.topology.request_refresh(RefreshReason::Unreachable);
                self.retry_or_fail(d.seq, || format!("ERR slotway: node unavailable: {e}"));
            }
            Err(e @ UpstreamError::Lost { .. }) => {
                self.shared.topology.request_refresh(RefreshReason::Unreachable);
                if p.readonly {
                    Metrics::incr(&metrics.retries_connection_lost);
                    self.retry_or_fail(d.seq, || format!("ERR slotway: {e}"));
                } else {
                    Metrics::incr(&metrics.upstream_failures_returned);
                    // The write may have run: resending could apply it twice, so the client decides.
                    p.reply = Some(error_reply(&format!(
                        "ERR slotway: {e}; the command was sent and may or may not have been applied"
                    )));
                }
            }
        }
    }

    /// Schedules a resend with exponential backoff, or gives up with the node's own reply.
    fn retry_or_reply(&mut self, seq: u64, reply: Bytes) {
        self.retry_or_fail(seq, || {
            let body = reply.strip_prefix(b"-").unwrap_or(&reply);
            String::from_utf8_lossy(body.strip_suffix(b"\r\n").unwrap_or(body)).into_owned()
        });
    }

    fn retry_or_fail(&mut self, seq: u64, error: impl FnOnce() -> String) {
        let cfg = &self.shared.config.upstream;
        let p = &mut self.pending[(seq - self.base) as usize];
        if p.retries >= cfg.max_retries {
            Metrics::incr(&self.shared.metrics.upstream_failures_returned);
            p.reply = Some(error_reply(&error()));
            return;
        }
        let delay = cfg.retry_base_delay.saturating_mul(1 << p.retries.min(16)).min(cfg.retry_max_delay);
        p.retries += 1;
        p.retry_at = Some(Instant::now() + delay);
    }

    fn next_retry(&self) -> Option<Instant> {
        self.pending.iter().filter_map(|p| p.retry_at).min()
    }

    /// Resends every request whose retry time has come, in request order.
    fn resend_due(&mut self) {
        let now = Instant::now();
        for idx in 0..self.pending.len() {
            if self.pending[idx].retry_at.is_some_and(|t| t <= now) {
                self.pending[idx].retry_at = None;
                self.send_routed(self.base + idx as u64);
            }
        }
    }

    /// Moves the finished replies at the head of the FIFO into the output buffer.
    fn collect_ready(&mut self) {
        while self.pending.front().is_some_and(|p| p.reply.is_some()) {
            let p = self.pending.pop_front().expect("checked");
            self.out.extend_from_slice(&p.reply.expect("checked"));
            self.base += 1;
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    if let Some(t) = t {
        tokio::time::sleep_until(t.into()).await;
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
