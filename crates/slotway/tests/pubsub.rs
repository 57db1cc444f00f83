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

fn push(items: &[&str]) -> Value {
    Value::Push(items.iter().map(|s| b(s)).collect())
}

fn arr(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| b(s)).collect())
}

/// A confirmation as Redis sends it: `[kind, channel, count]` (an array in RESP2).
fn conf(kind: &str, channel: &str, count: i64) -> Value {
    Value::Array(vec![b(kind), b(channel), Value::Integer(count)])
}

fn conf3(kind: &str, channel: &str, count: i64) -> Value {
    Value::Push(vec![b(kind), b(channel), Value::Integer(count)])
}

/// A RESP2 NUMSUB-style reply: channel, count, ...
fn arr_int(pairs: &[(&str, i64)]) -> Value {
    Value::Array(pairs.iter().flat_map(|(k, n)| [b(k), Value::Integer(*n)]).collect())
}

fn error(msg: &str) -> Value {
    Value::Error(Bytes::copy_from_slice(msg.as_bytes()))
}

/// `name:value` of slotway's INFO proxy.
fn proxy_counter(proxy: &Proxy, name: &str) -> i64 {
    let info = proxy.cli(&["INFO", "proxy"]);
    let prefix = format!("{name}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in INFO proxy:\n{info}"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits (at most 5 s) until INFO proxy shows `name` at `value`.
fn wait_counter(proxy: &Proxy, name: &str, value: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = proxy_counter(proxy, name);
        if now == value {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {now}, expected {value}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The next `n` frames, in any order (messages published on different nodes may race).
fn next_frames(c: &mut Conn, n: usize) -> Vec<Value> {
    (0..n).map(|_| c.next()).collect()
}

fn assert_same_frames(mut got: Vec<Value>, mut want: Vec<Value>, what: &str) {
    let key = |v: &Value| format!("{v:?}");
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want, "{what}");
}

#[test]
fn messages_published_on_every_node_reach_a_subscriber() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut sub = Conn::connect(&proxy.addr);
    sub.send(&["SUBSCRIBE", "news", "other", "news"]);
    assert_eq!(
        next_frames(&mut sub, 3),
        vec![conf("subscribe", "news", 1), conf("subscribe", "other", 2), conf("subscribe", "news", 2)]
    );
    assert_eq!(sub.call(&["PSUBSCRIBE", "ne*"]), conf("psubscribe", "ne*", 3));
    assert_eq!(proxy_counter(&proxy, "pubsub_clients"), 1);
    assert_eq!(proxy_counter(&proxy, "pubsub_connections"), 1, "channels and patterns share one connection");

    // PUBLISH on each of the six nodes, primaries and replicas: the cluster forwards it to every node.
    let ports = cluster.ports.clone();
    assert_eq!(ports.len(), 6);
    for port in &ports {
        let payload = format!("from-{port}");
        cluster.cli(*port, &["PUBLISH", "news", &payload]);
        assert_same_frames(
            next_frames(&mut sub, 2),
            vec![arr(&["message", "news", &payload]), arr(&["pmessage", "ne*", "news", &payload])],
            &format!("published on node {port}"),
        );
        cluster.cli(*port, &["PUBLISH", "nexus", &payload]);
        assert_eq!(sub.next(), arr(&["pmessage", "ne*", "nexus", &payload]), "pattern only, node {port}");
    }
    // And through slotway, by another client; binary-safe payloads.
    let mut publisher = Conn::connect(&proxy.addr);
    // (PUBLISH answers the receivers on the node it reached, as in Redis Cluster: not asserted.)
    assert!(matches!(publisher.call(&["PUBLISH", "other", "a\r\nb c"]), Value::Integer(_)));
    assert_eq!(sub.next(), arr(&["message", "other", "a\r\nb c"]));
    assert!(sub.read_within(Duration::from_millis(200)).is_none(), "nothing else arrives");

    // Unsubscribing from everything returns to normal mode and closes the connection.
    sub.send(&["UNSUBSCRIBE", "news", "other"]);
    assert_eq!(next_frames(&mut sub, 2), vec![conf("unsubscribe", "news", 2), conf("unsubscribe", "other", 1)]);
    assert_eq!(sub.call(&["PUNSUBSCRIBE"]), conf("punsubscribe", "ne*", 0));
    assert_eq!(sub.call(&["GET", "ps:missing"]), Value::Nil, "normal mode again");
    // Nothing subscribed: answered without a node, as Redis answers.
    assert_eq!(sub.call(&["UNSUBSCRIBE"]), Value::Array(vec![b("unsubscribe"), Value::Nil, Value::Integer(0)]));
    wait_counter(&proxy, "pubsub_connections", 0);
    wait_counter(&proxy, "pubsub_clients", 0);
    assert_eq!(proxy_counter(&proxy, "dedicated_open"), 0);
    assert_eq!(publisher.call(&["PUBSUB", "NUMSUB", "news"]), arr_int(&[("news", 0)]), "no subscriber left");

    // A client that disconnects while subscribed releases its connection too.
    let mut gone = Conn::connect(&proxy.addr);
    assert_eq!(gone.call(&["SUBSCRIBE", "x"]), conf("subscribe", "x", 1));
    wait_counter(&proxy, "pubsub_connections", 1);
    drop(gone);
    wait_counter(&proxy, "pubsub_connections", 0);
    wait_counter(&proxy, "pubsub_clients", 0);

    // A pub/sub connection the node closes takes the subscriptions with it: the subscriber is disconnected (it
    // reconnects and subscribes again, as after losing a direct connection).
    let mut victim = Conn::connect(&proxy.addr);
    assert_eq!(victim.call(&["SUBSCRIBE", "y"]), conf("subscribe", "y", 1));
    for port in cluster.primaries() {
        cluster.cli(port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
    }
    victim.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    assert_eq!(victim.s.read_to_end(&mut rest).unwrap(), 0, "disconnected; got {rest:?}");
    assert_eq!(proxy_counter(&proxy, "pubsub_connection_failures"), 1);
    wait_counter(&proxy, "pubsub_clients", 0);
    assert_eq!(publisher.call(&["PING"]), Value::Simple(Bytes::from_static(b"PONG")));
}

#[test]
fn shard_channels_of_every_shard_in_one_stream() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let channels = cluster.keys_on_every_primary("sch:");
    assert_eq!(channels.len(), 3);
    let mut sub = Conn::connect(&proxy.addr);
    // Separate commands for channels of different shards: the count is the client's total, as one Redis reports.
    for (i, (_, ch)) in channels.iter().enumerate() {
        assert_eq!(sub.call(&["SSUBSCRIBE", ch]), conf("ssubscribe", ch, i as i64 + 1));
    }
    assert_eq!(sub.call(&["SSUBSCRIBE", &channels[0].1]), conf("ssubscribe", &channels[0].1, 3), "already subscribed");
    // Shard channels of different slots in one command: Redis Cluster's own answer.
    assert_eq!(
        sub.call(&["SSUBSCRIBE", &channels[0].1, &channels[1].1]),
        error("CROSSSLOT Keys in request don't hash to the same slot")
    );
    // Same slot, several channels in one command (hash tags).
    let (t1, t2) = (format!("{{{}}}:t1", channels[2].1), format!("{{{}}}:t2", channels[2].1));
    sub.send(&["SSUBSCRIBE", &t1, &t2]);
    assert_eq!(next_frames(&mut sub, 2), vec![conf("ssubscribe", &t1, 4), conf("ssubscribe", &t2, 5)]);
    assert_eq!(proxy_counter(&proxy, "pubsub_connections"), 3, "one connection per shard");

    // SPUBLISH through slotway (routed by slot) and directly on the owning primary: one stream.
    let mut publisher = Conn::connect(&proxy.addr);
    for (port, ch) in &channels {
        assert_eq!(publisher.call(&["SPUBLISH", ch, "via-slotway"]), Value::Integer(1));
        assert_eq!(sub.next(), arr(&["smessage", ch, "via-slotway"]));
        cluster.cli(*port, &["SPUBLISH", ch, "direct"]);
        assert_eq!(sub.next(), arr(&["smessage", ch, "direct"]), "published on {port}");
    }
    assert_eq!(publisher.call(&["SPUBLISH", &t2, "tagged"]), Value::Integer(1));
    assert_eq!(sub.next(), arr(&["smessage", &t2, "tagged"]));

    // Regular channels beside shard channels: separate counts, as in Redis.
    assert_eq!(sub.call(&["SUBSCRIBE", "plain"]), conf("subscribe", "plain", 1));
    assert_eq!(sub.call(&["UNSUBSCRIBE", "plain"]), conf("unsubscribe", "plain", 0));
    // Still subscribed (shard channels): RESP2 rules hold.
    assert_eq!(
        sub.call(&["GET", "k"]),
        error("ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
    );

    // SUNSUBSCRIBE one channel, one not subscribed, then all (across the shards, counts down to 0).
    assert_eq!(sub.call(&["SUNSUBSCRIBE", &channels[1].1]), conf("sunsubscribe", &channels[1].1, 4));
    assert_eq!(sub.call(&["SUNSUBSCRIBE", &channels[1].1]), conf("sunsubscribe", &channels[1].1, 4));
    wait_counter(&proxy, "pubsub_connections", 2);
    sub.send(&["SUNSUBSCRIBE"]);
    let frames = next_frames(&mut sub, 4);
    let counts: Vec<i64> = frames.iter().map(|f| f.as_array().unwrap()[2].as_int().unwrap()).collect();
    assert_eq!(counts, vec![3, 2, 1, 0]);
    let mut names: Vec<String> =
        frames.iter().map(|f| f.as_array().unwrap()[1].as_str().unwrap().to_string()).collect();
    names.sort();
    let mut want = vec![channels[0].1.clone(), channels[2].1.clone(), t1, t2];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(sub.call(&["GET", "k"]), Value::Nil);
    wait_counter(&proxy, "pubsub_connections", 0);
    assert_eq!(publisher.call(&["SPUBLISH", &channels[0].1, "x"]), Value::Integer(0));
}

const CONTEXT: &str = "only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context";

#[test]
fn resp2_subscribed_state_follows_redis() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut sub = Conn::connect(&proxy.addr);
    // Pipelined in one write: the GET is judged after the SUBSCRIBE, as on one Redis connection.
    sub.s.write_all(b"SUBSCRIBE ch\r\nGET k\r\nPING\r\nPING hi\r\n").unwrap();
    assert_eq!(sub.next(), conf("subscribe", "ch", 1));
    assert_eq!(sub.next(), error(&format!("ERR Can't execute 'get': {CONTEXT}")));
    assert_eq!(sub.next(), arr(&["pong", ""]));
    assert_eq!(sub.next(), arr(&["pong", "hi"]));
    for (cmd, want) in [
        (&["CLIENT", "LIST"][..], format!("ERR Can't execute 'client|list': {CONTEXT}")),
        (&["PUBSUB", "NUMSUB", "ch"], format!("ERR Can't execute 'pubsub|numsub': {CONTEXT}")),
        (&["HELLO", "3"], format!("ERR Can't execute 'hello': {CONTEXT}")),
        (&["MULTI"], format!("ERR Can't execute 'multi': {CONTEXT}")),
        (&["BLPOP", "l", "0"], format!("ERR Can't execute 'blpop': {CONTEXT}")),
        // Unknown commands and wrong arity are judged first, as in Redis.
        (&["NOSUCH"], "ERR unknown command 'NOSUCH', with args beginning with: ".to_string()),
        (&["GET"], "ERR wrong number of arguments for 'get' command".to_string()),
        (&["PING", "a", "b"], "ERR wrong number of arguments for 'ping' command".to_string()),
    ] {
        assert_eq!(sub.call(cmd), error(&want), "{cmd:?}");
    }
    // Still subscribed after all that: a message arrives.
    let mut publisher = Conn::connect(&proxy.addr);
    publisher.call(&["PUBLISH", "ch", "m1"]);
    assert_eq!(sub.next(), arr(&["message", "ch", "m1"]));
    // SUBSCRIBE inside MULTI is refused (the transaction is aborted).
    let got: Vec<Value> =
        ["MULTI", "SUBSCRIBE x", "EXEC"].iter().map(|c| publisher.call(&c.split(' ').collect::<Vec<_>>())).collect();
    assert_eq!(got[1], error("ERR slotway: 'subscribe' cannot be queued in a transaction"));
    assert_eq!(got[2], error("EXECABORT Transaction discarded because of previous errors."));

    // RESET leaves subscribed mode and releases the connection; QUIT answers +OK and closes.
    assert_eq!(sub.call(&["RESET"]), Value::Simple(Bytes::from_static(b"RESET")));
    assert_eq!(sub.call(&["GET", "ps:k"]), Value::Nil);
    wait_counter(&proxy, "pubsub_connections", 0);
    assert_eq!(publisher.call(&["PUBSUB", "NUMSUB", "ch"]), arr_int(&[("ch", 0)]));
    assert_eq!(sub.call(&["SUBSCRIBE", "ch"]), conf("subscribe", "ch", 1));
    sub.send(&["QUIT"]);
    assert_eq!(sub.next(), Value::Simple(Bytes::from_static(b"OK")));
    let mut rest = Vec::new();
    sub.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(sub.s.read_to_end(&mut rest).unwrap(), 0, "closed after QUIT");
    wait_counter(&proxy, "pubsub_clients", 0);
}

#[test]
fn resp3_subscriber_runs_commands_and_gets_push_messages() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let (_, tag) = cluster.keys_on_every_primary("r3ps").remove(1);
    let h = format!("{{{tag}}}:h");
    let mut c = Conn::connect(&proxy.addr);
    hello3(&mut c);
    assert_eq!(c.call(&["SUBSCRIBE", "r3ch"]), conf3("subscribe", "r3ch", 1));
    assert_eq!(c.call(&["PSUBSCRIBE", "r3*"]), conf3("psubscribe", "r3*", 2));
    assert_eq!(c.call(&["SSUBSCRIBE", &tag]), conf3("ssubscribe", &tag, 1));
    // Any command runs while subscribed in RESP3.
    assert_eq!(c.call(&["HSET", &h, "f", "v"]), Value::Integer(1));
    assert_eq!(c.call(&["PING"]), Value::Simple(Bytes::from_static(b"PONG")));
    let mut publisher = Conn::connect(&proxy.addr);
    publisher.call(&["PUBLISH", "r3ch", "hello"]);
    assert_eq!(publisher.call(&["SPUBLISH", &tag, "shard"]), Value::Integer(1));
    // Push messages and a map reply on the same connection.
    c.send(&["HGETALL", &h]);
    let frames = next_frames(&mut c, 4);
    let map = frames.iter().find(|f| matches!(f, Value::Map(_))).expect("the HGETALL reply");
    assert_eq!(string_pairs(map), vec![("f".into(), "v".into())]);
    let mut pushes: Vec<Value> = frames.into_iter().filter(|f| matches!(f, Value::Push(_))).collect();
    assert_same_frames(
        std::mem::take(&mut pushes),
        vec![
            push(&["message", "r3ch", "hello"]),
            push(&["pmessage", "r3*", "r3ch", "hello"]),
            push(&["smessage", &tag, "shard"]),
        ],
        "push messages",
    );
    // A transaction while subscribed: its map reply stays a map.
    c.send(&["MULTI"]);
    c.send(&["HGETALL", &h]);
    c.send(&["EXEC"]);
    let frames = next_frames(&mut c, 3);
    let Value::Array(exec) = &frames[2] else { panic!("EXEC: {frames:?}") };
    assert_eq!(string_pairs(&exec[0]), vec![("f".into(), "v".into())]);
    // HELLO 2 while subscribed: messages then come as RESP2 arrays, and RESP2's rules apply.
    assert!(matches!(c.call(&["HELLO", "2"]), Value::Array(_)));
    publisher.call(&["PUBLISH", "r3ch", "again"]);
    assert_same_frames(
        next_frames(&mut c, 2),
        vec![arr(&["message", "r3ch", "again"]), arr(&["pmessage", "r3*", "r3ch", "again"])],
        "after HELLO 2",
    );
    assert_eq!(c.call(&["GET", "k"]), error(&format!("ERR Can't execute 'get': {CONTEXT}")));
    assert_eq!(c.call(&["RESET"]), Value::Simple(Bytes::from_static(b"RESET")));
    wait_counter(&proxy, "pubsub_connections", 0);
}

fn sorted_names(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

#[test]
fn pubsub_introspection_is_merged_over_the_nodes() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let shard: Vec<String> = cluster.keys_on_every_primary("psi:").into_iter().map(|(_, k)| k).collect();
    // Four subscribers; slotway spreads their connections over the primaries.
    let mut subs: Vec<Conn> = (0..4).map(|_| Conn::connect(&proxy.addr)).collect();
    for (i, c) in subs.iter_mut().enumerate() {
        assert_eq!(c.call(&["SUBSCRIBE", "pc:a"]), conf("subscribe", "pc:a", 1));
        if i < 2 {
            assert_eq!(c.call(&["SUBSCRIBE", "pc:b"]), conf("subscribe", "pc:b", 2));
        }
    }
    assert_eq!(subs[2].call(&["PSUBSCRIBE", "pc:*"]), conf("psubscribe", "pc:*", 2));
    subs[3].send(&["PSUBSCRIBE", "pc:*", "pq*"]);
    assert_eq!(next_frames(&mut subs[3], 2), vec![conf("psubscribe", "pc:*", 2), conf("psubscribe", "pq*", 3)]);
    for ch in &shard {
        assert_eq!(subs[0].call(&["SSUBSCRIBE", ch]).as_array().unwrap()[0], b("ssubscribe"));
    }
    assert_eq!(subs[1].call(&["SSUBSCRIBE", &shard[0]]), conf("ssubscribe", &shard[0], 1));

    // The regular subscriptions really are on several nodes, so the merge matters.
    let primaries = cluster.primaries();
    let per_node: Vec<i64> = primaries
        .iter()
        .map(|&p| cluster.cli(p, &["PUBSUB", "NUMSUB", "pc:a"]).lines().nth(1).unwrap().trim().parse().unwrap())
        .collect();
    assert_eq!(per_node.iter().sum::<i64>(), 4, "{per_node:?}");
    assert!(per_node.iter().filter(|&&n| n > 0).count() >= 2, "subscribers on one node only: {per_node:?}");
    let numpat_direct: i64 =
        primaries.iter().map(|&p| cluster.cli(p, &["PUBSUB", "NUMPAT"]).trim().parse::<i64>().unwrap()).sum();

    let mut q = Conn::connect(&proxy.addr);
    assert_eq!(sorted_names(&q.call(&["PUBSUB", "CHANNELS"])), ["pc:a", "pc:b"]);
    assert_eq!(sorted_names(&q.call(&["PUBSUB", "CHANNELS", "pc:[a]"])), ["pc:a"]);
    assert_eq!(sorted_names(&q.call(&["PUBSUB", "CHANNELS", "none*"])), Vec::<String>::new());
    assert_eq!(
        q.call(&["PUBSUB", "NUMSUB", "pc:b", "pc:a", "pc:none"]),
        arr_int(&[("pc:b", 2), ("pc:a", 4), ("pc:none", 0)])
    );
    assert_eq!(q.call(&["PUBSUB", "NUMSUB"]), Value::Array(vec![]));
    // NUMPAT: each node counts its own patterns; slotway sums them (2 or 3 here: "pc:*" twice on one node
    // counts once there, as in Redis Cluster).
    let numpat = q.call(&["PUBSUB", "NUMPAT"]);
    assert_eq!(numpat, Value::Integer(numpat_direct));
    assert!(matches!(numpat, Value::Integer(2 | 3)), "{numpat:?}");
    let mut want = shard.clone();
    want.sort();
    assert_eq!(sorted_names(&q.call(&["PUBSUB", "SHARDCHANNELS"])), want);
    assert_eq!(sorted_names(&q.call(&["PUBSUB", "SHARDCHANNELS", &shard[1]])), [shard[1].clone()]);
    assert_eq!(
        q.call(&["PUBSUB", "SHARDNUMSUB", &shard[2], &shard[0], "psi:none", &shard[1]]),
        arr_int(&[(&shard[2], 1), (&shard[0], 2), ("psi:none", 0), (&shard[1], 1)])
    );
    assert_eq!(q.call(&["PUBSUB", "SHARDNUMSUB"]), Value::Array(vec![]));
    assert!(matches!(q.call(&["PUBSUB", "HELP"]), Value::Array(_)));
    assert!(matches!(q.call(&["PUBSUB", "NOSUCH"]), Value::Error(_)));
    assert_eq!(proxy_counter(&proxy, "pubsub_clients"), 4);
    assert_eq!(proxy_counter(&proxy, "pubsub_connections"), 4 + 3 + 1);

    // After the subscribers leave, nothing is left anywhere.
    drop(subs);
    wait_counter(&proxy, "pubsub_connections", 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while q.call(&["PUBSUB", "NUMSUB", "pc:a"]) != arr_int(&[("pc:a", 0)]) {
        assert!(Instant::now() < deadline, "subscriptions outlived their clients");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(q.call(&["PUBSUB", "SHARDCHANNELS"]), Value::Array(vec![]));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_slow_subscriber_is_disconnected_at_the_output_limit() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotway.toml");
    let limit = 4 * 1024 * 1024;
    std::fs::write(&config, format!("[client]\npubsub_output_limit_bytes = {limit}\n")).unwrap();
    let mut args = Proxy::base_args(&cluster);
    args.extend(["--config".to_string(), config.display().to_string()]);
    let proxy = Proxy::start_raw(&args, &Proxy::password_env(&cluster));
    let pid = proxy.pid();

    // A subscriber that never reads after its confirmation, and a well-behaved one.
    let mut slow = Conn::connect(&proxy.addr);
    assert_eq!(slow.call(&["SUBSCRIBE", "flood"]), conf("subscribe", "flood", 1));
    let mut good = Conn::connect(&proxy.addr);
    assert_eq!(good.call(&["SUBSCRIBE", "other"]), conf("subscribe", "other", 1));
    let base = rss_kib(pid);

    // Flood: at most 2,000 messages of 100 KB (200 MB), stopping once slotway has dropped the slow subscriber.
    let payload = "p".repeat(100_000);
    let mut publisher = Conn::connect(&proxy.addr);
    let (mut sent, mut peak) = (0, base);
    let started = Instant::now();
    while sent < 2_000 {
        assert!(matches!(publisher.call(&["PUBLISH", "flood", &payload]), Value::Integer(_)));
        sent += 1;
        if sent % 20 == 0 {
            peak = peak.max(rss_kib(pid));
            if proxy_counter(&proxy, "pubsub_output_limit_disconnects") == 1 {
                break;
            }
        }
    }
    let took = started.elapsed();
    peak = peak.max(rss_kib(pid));
    println!(
        "slow subscriber dropped after {sent} messages of 100 KB in {took:?}; RSS {base} KiB before, peak {peak} KiB \
         (limit {limit} bytes)"
    );
    assert_eq!(proxy_counter(&proxy, "pubsub_output_limit_disconnects"), 1, "after {sent} messages");
    assert!(sent < 2_000);
    // Bounded: the limit plus buffers, far below the 200 MB published.
    assert!(peak.saturating_sub(base) < 48 * 1024, "RSS grew by {} KiB", peak.saturating_sub(base));

    // The slow subscriber's connection ends (after whatever the kernel buffered) ...
    slow.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = vec![0u8; 1 << 20];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match slow.s.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => assert!(Instant::now() < deadline, "the slow subscriber was never closed"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the slow subscriber: {e}"),
        }
    }
    // ... its subscription is released, and the others keep working.
    wait_counter(&proxy, "pubsub_clients", 1);
    wait_counter(&proxy, "pubsub_connections", 1);
    publisher.call(&["PUBLISH", "other", "still here"]);
    assert_eq!(good.next(), arr(&["message", "other", "still here"]));
    assert_eq!(publisher.call(&["PING"]), Value::Simple(Bytes::from_static(b"PONG")));
}

#[test]
fn redis_cli_subscribe_mode() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &proxy.port.to_string(), "SUBSCRIBE", "cli:a", "cli:b"])
        .env_remove("REDISCLI_AUTH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run redis-cli");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Each line within 10 s, or fewer lines than asked.
    let read_lines =
        |n: usize| -> Vec<String> { (0..n).map_while(|_| rx.recv_timeout(Duration::from_secs(10)).ok()).collect() };
    let confirmations = read_lines(6);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_eq!(confirmations, ["subscribe", "cli:a", "1", "subscribe", "cli:b", "2"]);
        proxy.cli(&["PUBLISH", "cli:b", "hello from slotway"]);
        assert_eq!(read_lines(3), ["message", "cli:b", "hello from slotway"]);
        cluster.cli(cluster.replicas()[0], &["PUBLISH", "cli:a", "from a replica"]);
        assert_eq!(read_lines(3), ["message", "cli:a", "from a replica"]);
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    wait_counter(&proxy, "pubsub_connections", 0);
}

#[test]
fn a_shard_channel_whose_slot_moves_is_unsubscribed_and_can_be_subscribed_again() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let primaries = cluster.primaries();
    let (src, ch) = cluster.keys_on_every_primary("mv:").remove(0);
    let dst = *primaries.iter().find(|&&p| p != src).unwrap();
    let slot = key_slot(ch.as_bytes()).to_string();
    let id_of = |port: u16| cluster.cluster_nodes(port).into_iter().find(|n| n.is_myself()).unwrap().id;
    let dst_id = id_of(dst);

    let mut sub = Conn::connect(&proxy.addr);
    assert_eq!(sub.call(&["SSUBSCRIBE", &ch]), conf("ssubscribe", &ch, 1));
    assert_eq!(sub.call(&["SUBSCRIBE", "keep"]), conf("subscribe", "keep", 1));
    // Move the (empty) slot to another primary, as redis-cli does: the destination, the source, the others.
    for port in std::iter::once(dst)
        .chain(std::iter::once(src))
        .chain(primaries.iter().copied().filter(|&p| p != src && p != dst))
    {
        assert_eq!(cluster.cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &dst_id]), "OK");
    }
    // The old owner drops the shard channel; the client hears it as from Redis Cluster, with its own count.
    assert_eq!(sub.next(), conf("sunsubscribe", &ch, 0));
    wait_counter(&proxy, "pubsub_connections", 1);
    // Subscribing again reaches the new owner (slotway follows MOVED if its map is older).
    assert_eq!(sub.call(&["SSUBSCRIBE", &ch]), conf("ssubscribe", &ch, 1));
    cluster.cli(dst, &["SPUBLISH", &ch, "moved"]);
    assert_eq!(sub.next(), arr(&["smessage", &ch, "moved"]));
    assert_eq!(cluster.cli(dst, &["PUBSUB", "SHARDNUMSUB", &ch]).lines().nth(1), Some("1"));
    wait_counter(&proxy, "pubsub_connections", 2);
}

#[test]
fn users_rules_apply_to_channels_not_keys() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotway.toml");
    let users = r#"
[[users]]
name = "default"
rules = "on nopass +@all ~app:* &news"

[[users]]
name = "quiet"
rules = "on nopass +@all -@pubsub ~* allchannels"
"#;
    std::fs::write(&config, users).unwrap();
    let mut args = Proxy::base_args(&cluster);
    args.extend(["--config".to_string(), config.display().to_string()]);
    let proxy = Proxy::start_raw(&args, &Proxy::password_env(&cluster));
    // Channels are not keys: `~app:*` doesn't restrict them; channel rules do (tests/security.rs has the rest).
    let mut c = Conn::connect(&proxy.addr);
    assert_eq!(c.call(&["SSUBSCRIBE", "news"]), conf("ssubscribe", "news", 1));
    let mut p = Conn::connect(&proxy.addr);
    assert_eq!(p.call(&["SPUBLISH", "news", "hi"]), Value::Integer(1));
    assert_eq!(c.next(), arr(&["smessage", "news", "hi"]));
    assert_eq!(
        p.call(&["SPUBLISH", "app:news", "hi"]),
        error("NOPERM this user has no permissions to access one of the channels used as arguments")
    );
    assert!(matches!(p.call(&["GET", "other"]), Value::Error(_)), "keys still are");
    // Denied as commands.
    let mut q = Conn::connect(&proxy.addr);
    assert_eq!(q.call(&["AUTH", "quiet", "x"]), Value::Simple(Bytes::from_static(b"OK")));
    assert_eq!(
        q.call(&["SUBSCRIBE", "a"]),
        error("NOPERM this user has no permissions to run the 'subscribe' command")
    );
    assert_eq!(q.call(&["PING"]), Value::Simple(Bytes::from_static(b"PONG")), "not subscribed");
}
