//! Pub/sub through slotway's standalone endpoint against a real TLS+AUTH cluster with replicas: SUBSCRIBE and
//! PSUBSCRIBE on a dedicated connection per client (messages published on any node arrive), SSUBSCRIBE across
//! shards merged into one stream, PUBSUB introspection merged over the nodes, Redis's subscribed-state rules in
//! RESP2 and push messages in RESP3, connections released on unsubscribe, slow subscribers disconnected at the
//! output limit, redis-cli's subscribe mode; and RESP3 replies on dedicated (transaction) connections.

mod support;

use bytes::Bytes;
use resp::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// A raw client that reads RESP2 and RESP3 frames (pushes included) with `resp::Value`.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn connect(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Conn { s, buf: Vec::new() }
    }

    fn send(&mut self, args: &[&str]) {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        self.s.write_all(&v).expect("write to slotway");
    }

    /// The next frame, or None when nothing whole arrives within `wait`. Panics if the connection closes.
    fn read_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let bytes = Bytes::copy_from_slice(&self.buf);
            if let Some((v, used)) = Value::parse(&bytes, &resp::Limits::default()).expect("valid RESP") {
                self.buf.drain(..used);
                return Some(v);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            let mut chunk = [0u8; 64 * 1024];
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("connection closed; unread {:?}", String::from_utf8_lossy(&self.buf)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The next frame (10 s at most).
    fn next(&mut self) -> Value {
        self.read_within(Duration::from_secs(10)).expect("a frame within 10 s")
    }

    fn call(&mut self, args: &[&str]) -> Value {
        self.send(args);
        self.next()
    }
}

fn b(s: &str) -> Value {
    Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn hello3(c: &mut Conn) {
    match c.call(&["HELLO", "3"]) {
        Value::Map(_) => {}
        other => panic!("HELLO 3 answered {other:?}"),
    }
}

/// A map reply as (key, value) strings, sorted.
fn string_pairs(v: &Value) -> Vec<(String, String)> {
    let Value::Map(pairs) = v else { panic!("not a RESP3 map: {v:?}") };
    let mut out: Vec<(String, String)> =
        pairs.iter().map(|(k, v)| (k.as_str().unwrap().to_string(), v.as_str().unwrap().to_string())).collect();
    out.sort();
    out
}

#[test]
fn resp3_transaction_replies_keep_resp3_types() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut c = Conn::connect(&proxy.addr);
    hello3(&mut c);
    for (port, tag) in cluster.keys_on_every_primary("r3tx") {
        let (h, missing) = (format!("{{{tag}}}:h"), format!("{{{tag}}}:missing"));
        assert_eq!(c.call(&["HSET", &h, "f1", "v1", "f2", "v2"]), Value::Integer(2));
        assert_eq!(c.call(&["MULTI"]), Value::Simple(Bytes::from_static(b"OK")));
        assert_eq!(c.call(&["HGETALL", &h]), Value::Simple(Bytes::from_static(b"QUEUED")));
        assert_eq!(c.call(&["GET", &missing]), Value::Simple(Bytes::from_static(b"QUEUED")));
        let Value::Array(items) = c.call(&["EXEC"]) else { panic!("EXEC is not an array") };
        assert_eq!(items.len(), 2, "shard {port}");
        assert_eq!(string_pairs(&items[0]), vec![("f1".into(), "v1".into()), ("f2".into(), "v2".into())]);
        assert_eq!(items[1], Value::Nil, "a RESP3 null inside EXEC");

        // A watch conflict answers a RESP3 null, not RESP2's `*-1`.
        let mut other = Conn::connect(&proxy.addr);
        assert_eq!(c.call(&["WATCH", &h]), Value::Simple(Bytes::from_static(b"OK")));
        assert_eq!(other.call(&["HSET", &h, "f3", "v3"]), Value::Integer(1));
        assert_eq!(c.call(&["MULTI"]), Value::Simple(Bytes::from_static(b"OK")));
        assert_eq!(c.call(&["HGETALL", &h]), Value::Simple(Bytes::from_static(b"QUEUED")));
        c.send(&["EXEC"]);
        assert_eq!(c.buf.len(), 0);
        let mut raw = [0u8; 3];
        c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.s.read_exact(&mut raw).unwrap();
        assert_eq!(&raw, b"_\r\n", "shard {port}");
    }
    // A blocking command's dedicated connection speaks RESP3 too.
    let (_, tag) = cluster.keys_on_every_primary("r3bl").remove(0);
    let l = format!("{{{tag}}}:l");
    assert_eq!(c.call(&["RPUSH", &l, "a"]), Value::Integer(1));
    assert_eq!(c.call(&["BLMPOP", "1", "1", &l, "LEFT"]), Value::Array(vec![b(&l), Value::Array(vec![b("a")])]));
    let mut raw = [0u8; 3];
    c.send(&["BLPOP", &l, "0.2"]);
    c.s.read_exact(&mut raw).unwrap();
    assert_eq!(&raw, b"_\r\n", "BLPOP's timeout is a RESP3 null");
}
