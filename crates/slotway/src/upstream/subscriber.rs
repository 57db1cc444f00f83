//! Pub/sub connections: a dedicated connection (counted in the node's lot, see [`super::dedicated`]) that a
//! subscribed session owns. Unlike the request/reply connections it does not match frames to requests: a
//! subscribed connection sends confirmations (one per channel), messages and, for shard channels, unsubscriptions
//! the node decides on its own. Every frame goes to the session's [`Sink`] as it is, in order, and the session
//! makes sense of them.
//!
//! **Output budget.** A subscriber that doesn't read its socket must not make slotway buffer messages without
//! bound, and it must not stall the node either (a node whose output buffer to us fills up disconnects us). So
//! every frame handed to the session is charged to the session's [`OutputBudget`] and paid back once the session
//! has written it to the client; when the bytes outstanding exceed the limit the connection stops (the node
//! forgets the subscriptions) and the session disconnects the client — what Redis does at
//! `client-output-buffer-limit pubsub`.
use super::connect::{connect, BoxRead, BoxWrite, ConnectContext};
use super::dedicated::{write, DIRECT_WRITE_MIN, READ_CHUNK};
use super::{Request, UpstreamError};
use crate::cluster::NodeAddr;
use crate::metrics::Metrics;
use bytes::{Bytes, BytesMut};
use resp::encode::Protocol;
use resp::{Limits, ReplyScanner};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

/// One frame from a pub/sub connection, or its end.
#[derive(Debug)]
pub struct Event {
    /// The session's own number for the connection (frames of a connection it has dropped are ignored).
    pub conn: u64,
    /// A frame, or why the connection failed (the last event of this connection).
    pub frame: Result<Bytes, UpstreamError>,
}

/// Where a pub/sub connection hands its frames.
#[derive(Debug, Clone)]
pub struct Sink {
    pub tx: mpsc::UnboundedSender<Event>,
    pub conn: u64,
    pub budget: Arc<OutputBudget>,
}

/// Bytes of pub/sub frames handed to one session and not yet written to its client, against a limit.
#[derive(Debug)]
pub struct OutputBudget {
    queued: AtomicUsize,
    /// 0 = no limit.
    limit: usize,
    over: AtomicBool,
    notify: Notify,
}

impl OutputBudget {
    pub fn new(limit: usize) -> OutputBudget {
        OutputBudget { queued: AtomicUsize::new(0), limit, over: AtomicBool::new(false), notify: Notify::new() }
    }

    /// Charges `n` bytes; false (and the session is told) when that goes over the limit.
    pub fn charge(&self, n: usize) -> bool {
        let queued = self.queued.fetch_add(n, Ordering::AcqRel) + n;
        if self.limit > 0 && queued > self.limit {
            if !self.over.swap(true, Ordering::AcqRel) {
                self.notify.notify_one();
            }
            return false;
        }
        true
    }

    /// Pays back `n` bytes (written to the client, or consumed as a reply).
    pub fn release(&self, n: usize) {
        self.queued.fetch_sub(n.min(self.queued.load(Ordering::Acquire)), Ordering::AcqRel);
    }

    /// Whether the limit was exceeded.
    pub fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    /// Bytes charged and not yet paid back.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Completes once the limit was exceeded.
    pub async fn exceeded(&self) {
        if self.over.load(Ordering::Acquire) {
            return;
        }
        // notify_one leaves a permit when nobody waits, so a notification between the check and here isn't lost.
        self.notify.notified().await;
    }
}

/// The connection's task: connect, then write what the session sends and hand every frame to the sink, until the
/// session drops its handle (closed quietly), the node closes or fails (the sink gets the error), or the budget
/// is exceeded (closed; the session disconnects the client).
pub(super) async fn run(
    addr: NodeAddr,
    ctx: Arc<ConnectContext>,
    protocol: Protocol,
    mut rx: mpsc::UnboundedReceiver<Request>,
    sink: Sink,
) {
    let metrics = ctx.metrics.clone();
    metrics.pubsub_connections.fetch_add(1, Ordering::Relaxed);
    // Database 0: subscriptions don't depend on the database the client selected (pub/sub is server-wide).
    let reason = match connect(&addr, &ctx, protocol, false, 0).await {
        Ok((rd, wr)) => {
            Metrics::incr(&metrics.dedicated_connects);
            tracing::debug!(node = %addr, "pub/sub upstream connected");
            serve(&addr, rd, wr, &mut rx, &sink).await
        }
        Err(e) => {
            Metrics::incr(&metrics.upstream_connect_failures);
            tracing::warn!(node = %addr, error = %e, "pub/sub upstream connection failed");
            Some(Err(UpstreamError::NotSent { addr: addr.clone(), reason: Arc::from(e.to_string()) }))
        }
    };
    metrics.pubsub_connections.fetch_sub(1, Ordering::Relaxed);
    if let Some(Err(e)) = reason {
        tracing::debug!(node = %addr, error = %e, "pub/sub upstream connection ended");
        let _ = sink.tx.send(Event { conn: sink.conn, frame: Err(e) });
    }
}

/// None: the session is gone or over budget (nothing more to say); Some(Err): the connection failed.
async fn serve(
    addr: &NodeAddr,
    mut rd: BoxRead,
    mut wr: BoxWrite,
    rx: &mut mpsc::UnboundedReceiver<Request>,
    sink: &Sink,
) -> Option<Result<(), UpstreamError>> {
    let lost =
        |reason: String| Some(Err(UpstreamError::Lost { addr: addr.clone(), reason: Arc::from(reason.as_str()) }));
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::new();
    let mut scanner = ReplyScanner::new(Limits::node_replies());
    loop {
        super::make_room(&mut buf, READ_CHUNK);
        tokio::select! {
            req = rx.recv() => {
                let req = req?;
                let mut next = Some(req);
                while let Some(req) = next.take().or_else(|| rx.try_recv().ok()) {
                    if req.frame.len() >= DIRECT_WRITE_MIN {
                        if let Err(e) = write(&mut wr, &out).await {
                            return lost(e);
                        }
                        out.clear();
                        if let Err(e) = write(&mut wr, &req.frame).await {
                            return lost(e);
                        }
                    } else {
                        out.extend_from_slice(&req.frame);
                    }
                }
                if let Err(e) = write(&mut wr, &out).await {
                    return lost(e);
                }
                if let Err(e) = wr.flush().await {
                    return lost(format!("write failed: {e}"));
                }
                out.clear();
            }
            r = rd.read_buf(&mut buf) => {
                match r {
                    Ok(0) => return lost("connection closed by the node".to_string()),
                    Ok(_) => {}
                    Err(e) => return lost(format!("read failed: {e}")),
                }
                loop {
                    match scanner.scan(&buf) {
                        Ok(Some(reply)) => {
                            let frame = buf.split_to(reply.len).freeze();
                            if !sink.budget.charge(frame.len()) {
                                // The client is too far behind: stop here; the session disconnects it.
                                return None;
                            }
                            if sink.tx.send(Event { conn: sink.conn, frame: Ok(frame) }).is_err() {
                                return None; // the session is gone
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return lost(format!("protocol error from the node: {e}")),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_trips_once_over_the_limit_and_pays_back() {
        let b = OutputBudget::new(100);
        assert!(b.charge(60));
        assert!(b.charge(40));
        b.release(50);
        assert_eq!(b.queued(), 50);
        assert!(b.charge(50));
        assert!(!b.charge(1), "101 bytes outstanding");
        // Unlimited.
        let b = OutputBudget::new(0);
        assert!(b.charge(usize::MAX / 2));
    }

    #[tokio::test]
    async fn exceeded_completes_after_the_limit_is_crossed() {
        let b = Arc::new(OutputBudget::new(10));
        assert!(!b.charge(11));
        tokio::time::timeout(std::time::Duration::from_secs(1), b.exceeded()).await.expect("exceeded");
        let b = Arc::new(OutputBudget::new(10));
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.exceeded().await }
        });
        tokio::task::yield_now().await;
        assert!(!b.charge(20));
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter).await.expect("woken").unwrap();
    }
}
