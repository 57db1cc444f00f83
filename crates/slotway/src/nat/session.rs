//! One client connection on a node listener: a dedicated connection to that node, the client's bytes forwarded as
//! they are, the node's replies forwarded as they are except where they carry node addresses.
//!
//! Two loops share one task: the request loop (client → node) decodes each request only to know what its reply
//! will be, and queues that in a FIFO of [`Entry`]s (run-length: most requests are `Plain`); the reply loop
//! (node → client) scans the node's replies and pops one entry per reply. Pub/sub frames don't pop entries:
//! RESP3 pushes never do, RESP2 `message`/`pmessage`/`smessage` arrays don't while the connection may be
//! subscribed, and subscribe-family confirmations are counted against their own command's entry.
//! AUTH is slotway's own ([`NatConfig::password`]) and never reaches the node.
use super::listeners::{NatAccepted, NatMap, NodeTarget};
use super::rewrite::{self, Ctx, Kind};
use crate::config::{Config, NatConfig};
use crate::downstream::ClientTls;
use crate::metrics::Metrics;
use crate::topology::{RefreshReason, TopologyManager};
use crate::upstream::connect::{connect, ConnectContext};
use bytes::{Buf, Bytes, BytesMut};
use resp::encode::Protocol;
use resp::{Limits, ReplyKind, ReplyScanner, Request, RequestDecoder};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

const READ_CHUNK: usize = 16 * 1024;

/// What every nat session reads.
pub struct NatShared {
    pub config: Arc<Config>,
    pub nat: NatConfig,
    pub connect: Arc<ConnectContext>,
    pub topology: Arc<TopologyManager>,
    pub map: watch::Receiver<Arc<NatMap>>,
    pub client_tls: Option<Arc<ClientTls>>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// The settings in force: a reload can change the password clients give slotway.
    pub live: Arc<crate::live::Live>,
}

impl NatShared {
    /// The password clients must give slotway now (`[nat]`), if any.
    fn password(&self) -> Option<crate::config::Secret> {
        self.live.load().config.nat.as_ref().and_then(|n| n.password.clone())
    }
}

/// A worker thread's loop: serves the clients the node listeners hand it.
pub async fn work(
    mut incoming: mpsc::UnboundedReceiver<NatAccepted>,
    shared: Arc<NatShared>,
    shutdown: watch::Receiver<bool>,
) {
    while let Some(NatAccepted { stream, addr, node }) = incoming.recv().await {
        let Ok(stream) = tokio::net::TcpStream::from_std(stream) else { continue };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            Metrics::incr(&shared.metrics.connections_accepted);
            shared.metrics.connections_current.fetch_add(1, Ordering::Relaxed);
            match shared.client_tls.clone() {
                Some(tls) => {
                    let (acceptor, timeout) = tls.acceptor();
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve(s, true, node, &shared, shutdown).await,
                        Ok(Err(e)) => {
                            Metrics::incr(&shared.metrics.tls_handshake_failures);
                            tracing::debug!(client = %addr, error = %e, "client TLS handshake failed");
                        }
                        Err(_) => {
                            Metrics::incr(&shared.metrics.tls_handshake_failures);
                            tracing::debug!(client = %addr, "client TLS handshake timed out");
                        }
                    }
                }
                None => serve(stream, false, node, &shared, shutdown).await,
            }
            shared.metrics.connections_current.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// What the reply to one request (or a run of requests) needs.
#[derive(Debug)]
enum Entry {
    /// `n` ordinary replies: passed on, except MOVED/ASK, which are rewritten.
    Plain(u32),
    /// A reply that carries node addresses.
    Rewrite(Kind),
    /// A command inside MULTI: `+QUEUED` now, and its kind applies to its element of EXEC's reply.
    Queued(Option<Kind>),
    Exec,
    Discard,
    /// A subscribe-family command: `count` confirmations (0: one per current subscription of its class, or one).
    PubSub {
        class: Class,
        count: u32,
    },
    /// HELLO: the protocol it switches to when it succeeds.
    Hello(Option<Protocol>),
    /// RESET: RESP2, no subscriptions, no MULTI; its reply is followed by the reply of slotway's re-AUTH.
    Reset,
    /// A reply slotway asked for itself (the re-AUTH after RESET): not passed on.
    Swallow,
    Monitor,
    /// A reply slotway makes itself, written when every earlier reply has been.
    Local(Bytes),
    /// Close once every earlier reply has been written.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Channel,
    Pattern,
    Shard,
}

/// The pub/sub frame type named by a frame's first element.
fn pubsub_frame(name: &[u8]) -> Option<(Class, bool /* confirmation */)> {
    Some(match name {
        b"message" => (Class::Channel, false),
        b"pmessage" => (Class::Pattern, false),
        b"smessage" => (Class::Shard, false),
        b"subscribe" | b"unsubscribe" => (Class::Channel, true),
        b"psubscribe" | b"punsubscribe" => (Class::Pattern, true),
        b"ssubscribe" | b"sunsubscribe" => (Class::Shard, true),
        _ => return None,
    })
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    client: S,
    tls: bool,
    node: Arc<NodeTarget>,
    shared: &NatShared,
    shutdown: watch::Receiver<bool>,
) {
    let addr = node.addr.load_full();
    let (node_rd, node_wr) = match connect(&addr, &shared.connect, Protocol::Resp2, false, 0).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(node = %addr, error = %e, "cannot reach the node for a client; closing the client");
            return;
        }
    };
    let (client_rd, client_wr) = tokio::io::split(client);
    let handover = Handover { queue: std::sync::Mutex::new(Vec::new()), wake: tokio::sync::Notify::new() };
    let requests = Requests {
        shared,
        client: client_rd,
        node: node_wr,
        handover: &handover,
        decoder: RequestDecoder::new(shared.limits),
        inbuf: BytesMut::with_capacity(READ_CHUNK),
        out: BytesMut::with_capacity(READ_CHUNK),
        batch: Vec::new(),
        authed: shared.password().is_none(),
        in_multi: false,
        reply_off: false,
        skip_next: false,
    };
    let replies = Replies {
        shared,
        node_host: addr.host.clone(),
        tls,
        client: client_wr,
        node: node_rd,
        handover: &handover,
        fifo: VecDeque::new(),
        scanner: ReplyScanner::new(shared.limits),
        inbuf: BytesMut::with_capacity(READ_CHUNK),
        out: BytesMut::with_capacity(READ_CHUNK),
        proto: Protocol::Resp2,
        counts: [0; 3],
        pubsub_left: None,
        exec_kinds: Vec::new(),
        monitor: false,
        map: shared.map.clone(),
    };
    let requests = async move {
        // The client went away: as Redis does, drop what it still had pending (a blocked BLPOP, say).
        if requests.run().await {
            return;
        }
        // QUIT or a protocol error: the replies before it are still delivered, then the reply side closes.
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = requests => {}
        _ = replies.run(shutdown) => {}
    }
}

/// The FIFO's hand-over from the request side to the reply side (two halves of one task).
struct Handover {
    queue: std::sync::Mutex<Vec<Entry>>,
    /// Rung when a reply slotway makes itself (or a Close) is queued; ordinary entries wait for the node's reply.
    wake: tokio::sync::Notify,
}

// ------------------------------------------------------------------ client → node

struct Requests<'a, R, W> {
    shared: &'a NatShared,
    client: R,
    node: W,
    handover: &'a Handover,
    decoder: RequestDecoder,
    inbuf: BytesMut,
    /// Bytes for the node, written once per read.
    out: BytesMut,
    /// Entries for this read, sent before the bytes are written (so a reply never arrives before its entry).
    batch: Vec<Entry>,
    authed: bool,
    in_multi: bool,
    /// CLIENT REPLY OFF / SKIP: the node sends no reply.
    reply_off: bool,
    skip_next: bool,
}

const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Requests<'_, R, W> {
    /// Returns true when the client disconnected, false when the session is to close after pending replies.
    async fn run(mut self) -> bool {
        loop {
            if self.inbuf.capacity() - self.inbuf.len() < READ_CHUNK / 4 {
                self.inbuf.reserve(READ_CHUNK);
            }
            match self.client.read_buf(&mut self.inbuf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
            let mut close = false;
            let mut inbuf = std::mem::take(&mut self.inbuf);
            loop {
                match self.decoder.decode(&inbuf) {
                    Ok(Some(req)) => {
                        let len = req.len();
                        Metrics::incr(&self.shared.metrics.commands_received);
                        if self.request(&inbuf, &req, len) {
                            close = true;
                        }
                        inbuf.advance(len);
                        if close {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        Metrics::incr(&self.shared.metrics.protocol_errors);
                        let mut err = BytesMut::new();
                        resp::encode::error(&mut err, &format!("ERR Protocol error: {e}"));
                        self.local(err.freeze());
                        close = true;
                        break;
                    }
                }
            }
            self.inbuf = inbuf;
            if close {
                self.batch.push(Entry::Close);
            }
            if !self.batch.is_empty() {
                // Entries go over before the bytes are written, so a reply never arrives before its entry. The
                // reply side is woken only for replies it must make itself: the others come with a node reply.
                let wake = self.batch.iter().any(|e| matches!(e, Entry::Local(_) | Entry::Close));
                self.handover.queue.lock().expect("handover lock").append(&mut self.batch);
                if wake {
                    self.handover.wake.notify_one();
                }
            }
            if !self.out.is_empty() {
                if self.node.write_all(&self.out).await.is_err() || self.node.flush().await.is_err() {
                    return true;
                }
                self.out.clear();
            }
            if close {
                return false;
            }
        }
    }

    fn push(&mut self, e: Entry) {
        if let (Entry::Plain(n), Some(Entry::Plain(m))) = (&e, self.batch.last_mut()) {
            *m += n;
            return;
        }
        self.batch.push(e);
    }

    fn local(&mut self, reply: Bytes) {
        Metrics::incr(&self.shared.metrics.commands_local);
        self.push(Entry::Local(reply));
    }

    fn forward(&mut self, buf: &[u8], len: usize, entry: Entry) {
        self.out.extend_from_slice(&buf[..len]);
        if self.reply_off {
            return;
        }
        if self.skip_next {
            self.skip_next = false;
            return;
        }
        self.push(entry);
    }

    /// Handles one request; true to close the connection after it.
    fn request(&mut self, buf: &[u8], req: &Request, len: usize) -> bool {
        let Some(name) = req.arg(buf, 0) else {
            // An empty request: Redis ignores it, and so does the node.
            self.out.extend_from_slice(&buf[..len]);
            return false;
        };
        let name_is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        let argc = req.arg_count();
        if name_is(b"AUTH") {
            let reply = match argc {
                2 => self.check(None, req.arg(buf, 1).unwrap_or_default()),
                3 => self.check(req.arg(buf, 1), req.arg(buf, 2).unwrap_or_default()),
                _ => Err(Bytes::from_static(b"-ERR wrong number of arguments for 'auth' command\r\n")),
            };
            let reply = reply.map(|()| Bytes::from_static(b"+OK\r\n")).unwrap_or_else(|e| e);
            self.local(reply);
            return false;
        }
        if name_is(b"HELLO") {
            return self.hello(buf, req, len);
        }
        if !self.authed {
            if name_is(b"QUIT") {
                self.local(Bytes::from_static(b"+OK\r\n"));
                return true;
            }
            self.local(Bytes::from_static(NOAUTH));
            return false;
        }
        let arg1 = req.arg(buf, 1);
        let entry = if self.in_multi {
            if name_is(b"EXEC") {
                self.in_multi = false;
                Entry::Exec
            } else if name_is(b"DISCARD") {
                self.in_multi = false;
                Entry::Discard
            } else if name_is(b"RESET") {
                return self.reset(buf, len);
            } else {
                Entry::Queued(rewrite::kind_of(name, arg1))
            }
        } else if let Some(kind) = rewrite::kind_of(name, arg1) {
            Entry::Rewrite(kind)
        } else if name_is(b"MULTI") {
            self.in_multi = true;
            Entry::Plain(1)
        } else if let Some(class) = subscribe_class(name) {
            Entry::PubSub { class, count: (argc - 1) as u32 }
        } else if name_is(b"RESET") {
            return self.reset(buf, len);
        } else if name_is(b"MONITOR") {
            Entry::Monitor
        } else if name_is(b"CLIENT") && arg1.is_some_and(|a| a.eq_ignore_ascii_case(b"REPLY")) {
            let mode = req.arg(buf, 2).unwrap_or_default();
            self.out.extend_from_slice(&buf[..len]);
            if mode.eq_ignore_ascii_case(b"ON") {
                self.reply_off = false;
                self.skip_next = false;
                self.push(Entry::Plain(1));
            } else if mode.eq_ignore_ascii_case(b"OFF") {
                self.reply_off = true;
            } else if mode.eq_ignore_ascii_case(b"SKIP") {
                if !self.reply_off {
                    self.skip_next = true;
                }
            } else if !self.reply_off {
                self.push(Entry::Plain(1)); // an error reply
            }
            return false;
        } else if name_is(b"QUIT") {
            self.forward(buf, len, Entry::Plain(1));
            self.push(Entry::Close);
            return true;
        } else {
            Entry::Plain(1)
        };
        self.forward(buf, len, entry);
        false
    }

    /// Checks AUTH credentials against slotway's own password. Without one, behaves as Redis without a password:
    /// `AUTH <password>` is an error, `AUTH default <anything>` succeeds.
    fn check(&mut self, user: Option<&[u8]>, password: &[u8]) -> Result<(), Bytes> {
        let default_user = user.is_none_or_default();
        match &self.shared.password() {
            Some(want) => {
                if default_user && constant_time_eq(want.expose().as_bytes(), password) {
                    self.authed = true;
                    Ok(())
                } else {
                    Err(Bytes::from_static(WRONGPASS))
                }
            }
            None if user.is_none() => Err(Bytes::from_static(
                b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n",
            )),
            None if default_user => Ok(()),
            None => Err(Bytes::from_static(WRONGPASS)),
        }
    }

    /// HELLO [protover [AUTH user pass] [SETNAME name]]: AUTH is checked here and removed; the rest is forwarded.
    fn hello(&mut self, buf: &[u8], req: &Request, len: usize) -> bool {
        let args: Vec<&[u8]> = (0..req.arg_count()).filter_map(|i| req.arg(buf, i)).collect();
        let proto = match args.get(1).copied() {
            Some(b"2") => Some(Protocol::Resp2),
            Some(b"3") => Some(Protocol::Resp3),
            _ => None,
        };
        let auth_at = (2..args.len()).find(|&i| args[i].eq_ignore_ascii_case(b"AUTH"));
        let Some(at) = auth_at else {
            if !self.authed {
                self.local(Bytes::from_static(
                    b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n",
                ));
                return false;
            }
            self.forward(buf, len, Entry::Hello(proto));
            return false;
        };
        if at + 2 >= args.len() {
            self.local(Bytes::from_static(b"-ERR Syntax error in HELLO option 'auth'\r\n"));
            return false;
        }
        let (user, password) = (args[at + 1].to_vec(), args[at + 2].to_vec());
        if let Err(e) = self.check(Some(&user), &password) {
            self.local(e);
            return false;
        }
        let mut rest: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        rest.drain(at..at + 3);
        resp::encode::command(&mut self.out, &rest);
        self.push(Entry::Hello(proto));
        false
    }

    /// RESET, then slotway's own AUTH again (RESET makes the node connection the default user), whose reply is
    /// swallowed. With a slotway password, the client must authenticate again, as with Redis.
    fn reset(&mut self, buf: &[u8], len: usize) -> bool {
        self.in_multi = false;
        self.reply_off = false;
        self.skip_next = false;
        self.forward(buf, len, Entry::Reset);
        let auth = self.shared.connect.auth.load();
        if let Some(pw) = &auth.password {
            let user = auth.user.as_deref().unwrap_or("default");
            resp::encode::command(&mut self.out, &[b"AUTH".as_slice(), user.as_bytes(), pw.expose().as_bytes()]);
            self.push(Entry::Swallow);
        }
        if self.shared.password().is_some() {
            self.authed = false;
        }
        false
    }
}

trait DefaultUser {
    fn is_none_or_default(&self) -> bool;
}

impl DefaultUser for Option<&[u8]> {
    fn is_none_or_default(&self) -> bool {
        self.is_none_or(|u| u == b"default")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn subscribe_class(name: &[u8]) -> Option<Class> {
    let n = |s: &[u8]| name.eq_ignore_ascii_case(s);
    if n(b"SUBSCRIBE") || n(b"UNSUBSCRIBE") {
        Some(Class::Channel)
    } else if n(b"PSUBSCRIBE") || n(b"PUNSUBSCRIBE") {
        Some(Class::Pattern)
    } else if n(b"SSUBSCRIBE") || n(b"SUNSUBSCRIBE") {
        Some(Class::Shard)
    } else {
        None
    }
}

// ------------------------------------------------------------------ node → client

struct Replies<'a, R, W> {
    shared: &'a NatShared,
    node_host: Arc<str>,
    tls: bool,
    client: W,
    node: R,
    handover: &'a Handover,
    fifo: VecDeque<Entry>,
    scanner: ReplyScanner,
    inbuf: BytesMut,
    out: BytesMut,
    proto: Protocol,
    /// Subscriptions per [`Class`], as the node's confirmations report them.
    counts: [u32; 3],
    /// Confirmations the head PubSub entry still expects (set by its first confirmation).
    pubsub_left: Option<u32>,
    exec_kinds: Vec<Option<Kind>>,
    monitor: bool,
    map: watch::Receiver<Arc<NatMap>>,
}

/// What to do with one reply.
enum Action {
    Pass,
    Replace(Bytes),
    Drop,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Replies<'_, R, W> {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut stopping = false;
        loop {
            self.take_entries();
            if self.emit_locals() {
                let _ = self.flush().await;
                return;
            }
            if !self.flush().await {
                return;
            }
            if stopping && self.fifo.is_empty() {
                return;
            }
            if self.inbuf.capacity() - self.inbuf.len() < READ_CHUNK / 4 {
                self.inbuf.reserve(READ_CHUNK);
            }
            tokio::select! {
                _ = self.handover.wake.notified() => {}
                r = self.node.read_buf(&mut self.inbuf) => match r {
                    Ok(0) | Err(_) => {
                        let _ = self.flush().await;
                        return;
                    }
                    Ok(_) => {
                        self.take_entries();
                        match self.process().await {
                            Ok(true) => {}
                            Ok(false) => {
                                let _ = self.flush().await;
                                return;
                            }
                            Err(()) => return,
                        }
                    }
                },
                _ = shutdown.changed(), if !stopping => stopping = true,
            }
        }
    }

    fn take_entries(&mut self) {
        let handover = self.handover;
        let mut queue = handover.queue.lock().expect("handover lock");
        for e in queue.drain(..) {
            self.enqueue(e);
        }
    }

    fn enqueue(&mut self, e: Entry) {
        if let (Entry::Plain(n), Some(Entry::Plain(m))) = (&e, self.fifo.back_mut()) {
            *m += n;
            return;
        }
        self.fifo.push_back(e);
    }

    /// Writes the Local entries at the head; true if a Close reached the head.
    fn emit_locals(&mut self) -> bool {
        loop {
            match self.fifo.front() {
                Some(Entry::Local(b)) => {
                    self.out.extend_from_slice(b);
                    self.fifo.pop_front();
                }
                Some(Entry::Close) => return true,
                _ => return false,
            }
        }
    }

    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let ok = self.client.write_all(&self.out).await.is_ok() && self.client.flush().await.is_ok();
        self.out.clear();
        ok
    }

    /// Handles every whole reply in the buffer. Ok(false): a Close reached the head.
    async fn process(&mut self) -> Result<bool, ()> {
        // Taken out of `self` so replies can be borrowed from it while `self` changes.
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let mut pos = 0;
        // Replies from `pass_from` to `pos` are passed on as they are (copied once, at the next change).
        let mut pass_from = 0;
        let mut closing = false;
        let mut failed = false;
        while pos < inbuf.len() {
            let r = match self.scanner.scan(&inbuf[pos..]) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(node = %self.node_host, error = %e, "malformed reply from the node; closing the client");
                    failed = true;
                    break;
                }
            };
            let end = pos + r.len;
            if matches!(self.fifo.front(), Some(Entry::Local(_) | Entry::Close)) {
                self.out.extend_from_slice(&inbuf[pass_from..pos]);
                pass_from = pos;
                if self.emit_locals() {
                    closing = true;
                    break;
                }
            }
            let action = match self.fifo.front_mut() {
                // The hot path: an ordinary reply to an ordinary request.
                Some(Entry::Plain(n))
                    if !self.monitor && !matches!(r.kind, ReplyKind::Error | ReplyKind::Push | ReplyKind::Array) =>
                {
                    if *n > 1 {
                        *n -= 1;
                    } else {
                        self.fifo.pop_front();
                    }
                    Action::Pass
                }
                _ => self.reply(&inbuf[pos..end], r.kind).await,
            };
            match action {
                Action::Pass => {}
                Action::Replace(b) => {
                    self.out.extend_from_slice(&inbuf[pass_from..pos]);
                    self.out.extend_from_slice(&b);
                    pass_from = end;
                }
                Action::Drop => {
                    self.out.extend_from_slice(&inbuf[pass_from..pos]);
                    pass_from = end;
                }
            }
            pos = end;
        }
        let mut result = Ok(!closing);
        if failed {
            result = Err(());
        } else if self.out.is_empty() && pass_from == 0 && pos > 0 {
            // The common case: every reply passed on unchanged; hand the bytes over without a copy.
            let chunk = inbuf.split_to(pos);
            if self.client.write_all(&chunk).await.is_err() || self.client.flush().await.is_err() {
                result = Err(());
            }
        } else {
            self.out.extend_from_slice(&inbuf[pass_from..pos]);
            inbuf.advance(pos);
        }
        self.inbuf = inbuf;
        if result == Ok(true) && self.emit_locals() {
            result = Ok(false);
        }
        result
    }

    /// Decides about one reply and pops its entry.
    async fn reply(&mut self, bytes: &[u8], kind: ReplyKind) -> Action {
        if self.monitor {
            if bytes == b"+RESET\r\n" && matches!(self.fifo.front(), Some(Entry::Reset)) {
                self.monitor = false;
                return self.pop_and_apply(bytes, kind).await;
            }
            return Action::Pass;
        }
        if kind == ReplyKind::Push {
            self.pubsub_frame(bytes);
            return Action::Pass;
        }
        if kind == ReplyKind::Array
            && self.proto == Protocol::Resp2
            && (self.counts.iter().any(|&c| c > 0) || matches!(self.fifo.front(), Some(Entry::PubSub { .. })))
            && self.pubsub_frame(bytes)
        {
            return Action::Pass;
        }
        self.pop_and_apply(bytes, kind).await
    }

    /// A pub/sub frame (RESP3 push, or RESP2 array while subscribed): updates the subscription counts and credits
    /// a confirmation to the head PubSub entry. False if it isn't one.
    fn pubsub_frame(&mut self, frame: &[u8]) -> bool {
        let Some((name, count)) = pubsub_header(frame) else { return false };
        let Some((class, confirmation)) = pubsub_frame(&name) else { return false };
        if !confirmation {
            return true;
        }
        let idx = class as usize;
        if let Some(Entry::PubSub { class: head_class, count: want }) = self.fifo.front() {
            if *head_class == class {
                let left = self.pubsub_left.unwrap_or(if *want == 0 { self.counts[idx].max(1) } else { *want });
                let left = left.saturating_sub(1);
                if left == 0 {
                    self.fifo.pop_front();
                    self.pubsub_left = None;
                } else {
                    self.pubsub_left = Some(left);
                }
            }
        }
        if let Some(n) = count {
            // `subscribe`/`unsubscribe` report channels + patterns; `psubscribe`/`punsubscribe` too; shard
            // frames report shard channels only.
            match class {
                Class::Shard => self.counts[2] = n,
                Class::Channel => self.counts[0] = n.saturating_sub(self.counts[1]),
                Class::Pattern => self.counts[1] = n.saturating_sub(self.counts[0]),
            }
        }
        true
    }

    fn pop(&mut self) -> Option<Entry> {
        match self.fifo.front_mut() {
            Some(Entry::Plain(n)) if *n > 1 => {
                *n -= 1;
                Some(Entry::Plain(1))
            }
            Some(_) => {
                self.pubsub_left = None;
                self.fifo.pop_front()
            }
            None => None,
        }
    }

    async fn pop_and_apply(&mut self, bytes: &[u8], kind: ReplyKind) -> Action {
        let entry = self.pop();
        match entry {
            None | Some(Entry::Plain(_)) | Some(Entry::PubSub { .. }) | Some(Entry::Discard) => {
                if let Some(Entry::Discard) = entry {
                    self.exec_kinds.clear();
                }
                if kind == ReplyKind::Error && rewrite::is_redirect(bytes) {
                    return self.rewrite(|ctx, f| rewrite::redirect(f, ctx), bytes).await;
                }
                Action::Pass
            }
            Some(Entry::Rewrite(k)) => {
                let proto = self.proto;
                self.rewrite(|ctx, f| Some(rewrite::reply(k, &Bytes::copy_from_slice(f), proto, ctx)), bytes).await
            }
            Some(Entry::Queued(k)) => {
                if bytes == b"+QUEUED\r\n" {
                    self.exec_kinds.push(k);
                    return Action::Pass;
                }
                if kind == ReplyKind::Error && rewrite::is_redirect(bytes) {
                    return self.rewrite(|ctx, f| rewrite::redirect(f, ctx), bytes).await;
                }
                Action::Pass
            }
            Some(Entry::Exec) => {
                let kinds = std::mem::take(&mut self.exec_kinds);
                let proto = self.proto;
                self.rewrite(|ctx, f| Some(rewrite::exec_reply(&kinds, &Bytes::copy_from_slice(f), proto, ctx)), bytes)
                    .await
            }
            Some(Entry::Hello(p)) => {
                if matches!(kind, ReplyKind::Map | ReplyKind::Array) {
                    if let Some(p) = p {
                        self.proto = p;
                    }
                }
                Action::Pass
            }
            Some(Entry::Reset) => {
                self.proto = Protocol::Resp2;
                self.counts = [0; 3];
                self.exec_kinds.clear();
                self.monitor = false;
                Action::Pass
            }
            Some(Entry::Swallow) => Action::Drop,
            Some(Entry::Monitor) => {
                if bytes == b"+OK\r\n" {
                    self.monitor = true;
                }
                Action::Pass
            }
            Some(Entry::Local(_) | Entry::Close) => unreachable!("emitted before any reply"),
        }
    }

    /// Runs a rewrite; if it met addresses slotway doesn't know, asks for a topology refresh and tries again as the
    /// node map changes, for at most `unknown_address_wait`. What is still unknown then is dropped or replaced.
    async fn rewrite(&mut self, f: impl Fn(&Ctx, &[u8]) -> Option<rewrite::Outcome>, bytes: &[u8]) -> Action {
        let deadline = Instant::now() + self.shared.nat.unknown_address_wait;
        let mut refreshes = self.shared.topology.refreshes();
        loop {
            let map = self.map.borrow_and_update().clone();
            let out = {
                let ctx = Ctx {
                    dir: &*map,
                    announce_host: &self.shared.nat.announce_host,
                    client_tls: self.tls,
                    node_host: &self.node_host,
                };
                f(&ctx, bytes)
            };
            let Some(out) = out else { return Action::Pass };
            if out.unknown == 0 || Instant::now() >= deadline {
                if out.unknown > 0 {
                    Metrics::incr(&self.shared.metrics.nat_unknown_addresses);
                    tracing::warn!(node = %self.node_host, unknown = out.unknown, "a reply named nodes slotway doesn't know even after a refresh; left out");
                }
                Metrics::incr(&self.shared.metrics.nat_rewrites);
                return Action::Replace(out.frame);
            }
            self.shared.topology.request_refresh(RefreshReason::Moved);
            let sleep = tokio::time::sleep_until(deadline.into());
            tokio::select! {
                _ = self.map.changed() => {}
                _ = refreshes.changed() => {}
                _ = sleep => {}
            }
        }
    }
}

/// The first element (a pub/sub frame's type) and, for confirmations, the third (the subscription count) of an
/// array or push frame of 3 or 4 elements; None for anything else.
fn pubsub_header(frame: &[u8]) -> Option<(Vec<u8>, Option<u32>)> {
    let (&t, rest) = frame.split_first()?;
    if t != b'*' && t != b'>' {
        return None;
    }
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let n: usize = std::str::from_utf8(&rest[..nl]).ok()?.trim_end_matches('\r').parse().ok()?;
    if !(3..=4).contains(&n) {
        return None;
    }
    let v = resp::Value::parse(&Bytes::copy_from_slice(frame), &Limits::default()).ok()??.0;
    let items = v.as_array()?;
    let name = items.first()?.as_bytes()?.to_vec();
    let count = items.get(2).and_then(|c| c.as_int()).and_then(|c| u32::try_from(c).ok());
    Some((name, count))
}
