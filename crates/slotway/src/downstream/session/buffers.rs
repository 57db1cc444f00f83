//! A session's buffers: held only while data flows.
//!
//! An idle client costs its task and registry entry, not buffers: the read buffer is taken from a small per-worker
//! pool when the socket becomes readable (readiness needs no buffer) and given back once the session is idle;
//! output is copied into a pooled buffer too, except large replies (1 MiB or more), which are written from the node's own buffer
//! without a copy (so a value passes through slotway once, not twice).
use bytes::{Bytes, BytesMut};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::task::{Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// Replies at least this large are queued as they are instead of being copied into the output buffer. Not
/// smaller: a kept reply pins the node reader's whole buffer (up to about twice the reply, as it grew by doubling),
/// so for a client that doesn't read, copies of many medium replies cost less than the buffers they came in.
const DIRECT_WRITE_MIN: usize = 1024 * 1024;
/// Buffers kept per worker for sessions that wake up: enough for the clients busy at one moment; beyond that,
/// buffers go back to the allocator.
const POOL_MAX: usize = 64;

/// A client connection whose readiness can be awaited without a buffer.
pub(crate) trait ClientStream: tokio::io::AsyncRead + AsyncWrite + Unpin {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ClientStream for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

/// TLS: ready at once while rustls holds decrypted data nobody has read (records that came with the end of the
/// handshake, or more than the last read's buffer took) or the peer's close; otherwise the socket's readiness (a
/// partial record waiting in rustls needs more bytes from the socket anyway).
impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (socket, tls) = self.get_ref();
        if !tls.wants_read() {
            return Poll::Ready(Ok(()));
        }
        socket.poll_read_ready(cx)
    }
}

thread_local! {
    /// Empty buffers of READ_CHUNK..=4 × READ_CHUNK bytes, for the sessions of this worker thread.
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of at least READ_CHUNK bytes: the pool's, or a new one.
pub(crate) fn take() -> BytesMut {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK))
}

/// Returns an empty buffer to the pool if nothing else shares its memory and it is of the usual size; otherwise
/// it is simply dropped (its memory is freed once whatever shares it lets go).
pub(crate) fn give_back(mut buf: BytesMut) {
    buf.clear();
    if buf.capacity() > 4 * READ_CHUNK || !buf.try_reclaim(READ_CHUNK) {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(buf);
        }
    });
}

/// Reads what the client sent into `buf`; returns the bytes read and whether they filled the free space. With no
/// buffer, waits for the socket first. `need`: bytes still missing of a large argument being received, so the
/// buffer grows towards it (at most doubling per read, so a declared length that never comes reserves nothing
/// beyond what arrived).
pub(crate) async fn read_client<S: ClientStream>(
    stream: &mut S,
    buf: &mut BytesMut,
    need: usize,
) -> io::Result<(usize, bool)> {
    if buf.capacity() == 0 {
        std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await?;
        *buf = take();
    }
    // A buffer that grew for a large request is not kept for the small ones after it.
    crate::upstream::make_room(buf, READ_CHUNK);
    if need > buf.capacity() - buf.len() {
        buf.reserve(need.min(buf.capacity().max(READ_CHUNK)));
    }
    let spare = buf.capacity() - buf.len();
    let n = stream.read_buf(buf).await?;
    Ok((n, n == spare))
}

/// Replies waiting to be written, in order: small ones copied into one buffer, large ones kept as they came.
#[derive(Default)]
pub(crate) struct Output {
    buf: BytesMut,
    /// Large replies and the buffered bytes that came before them, in order (`buf` follows them). Boxed: only a
    /// client that gets a large reply needs it, and only until it is written.
    large: Option<Box<Chunks>>,
}

#[derive(Default)]
struct Chunks {
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    len: usize,
}

impl Output {
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.large.as_ref().is_none_or(|c| c.queue.is_empty())
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len() + self.large.as_ref().map_or(0, |c| c.len)
    }

    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        if self.buf.capacity() == 0 {
            self.buf = take();
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Queues a reply: copied when small, kept as it is when large.
    pub(crate) fn push(&mut self, reply: Bytes) {
        if reply.len() < DIRECT_WRITE_MIN {
            return self.extend_from_slice(&reply);
        }
        let large = self.large.get_or_insert_with(Default::default);
        if !self.buf.is_empty() {
            let head = self.buf.split().freeze();
            large.len += head.len();
            large.queue.push_back(head);
        }
        large.len += reply.len();
        large.queue.push_back(reply);
    }

    /// Writes everything (not flushed). Large replies are dropped as soon as they are written.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(&mut self, stream: &mut W) -> io::Result<()> {
        if let Some(large) = &mut self.large {
            while let Some(chunk) = large.queue.front() {
                stream.write_all(chunk).await?;
                large.len -= chunk.len();
                large.queue.pop_front();
            }
        }
        stream.write_all(&self.buf).await?;
        self.buf.clear();
        Ok(())
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        if let Some(large) = &mut self.large {
            large.queue.clear();
            large.len = 0;
        }
    }

    /// Gives the buffer back to the pool when nothing waits in it.
    pub(crate) fn release(&mut self) {
        if self.is_empty() {
            if self.buf.capacity() != 0 {
                give_back(std::mem::take(&mut self.buf));
            }
            self.large = None;
        }
    }
}
