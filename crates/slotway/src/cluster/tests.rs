use super::*;
use bytes::Bytes;
use resp::{Limits, Value};

// ---------------------------------------------------------------------------------------------------------------
// Hash slots

#[test]
fn crc16_spec_vector() {
    assert_eq!(crc16(b"123456789"), 0x31C3);
    assert_eq!(crc16(b""), 0);
}

#[test]
fn slot_spec_examples() {
    assert_eq!(Slot::for_key(b"foo").get(), 12182);
    assert_eq!(Slot::for_key(b"bar").get(), 5061);
    assert_eq!(Slot::for_key(b"{user1000}.following"), Slot::for_key(b"{user1000}.followers"));
    assert_eq!(Slot::for_key(b"{user1000}.following"), Slot::for_key(b"user1000"));
    // `{}` is empty: the whole key is hashed.
    assert_eq!(Slot::for_key(b"foo{}{bar}").get(), crc16(b"foo{}{bar}") % 16384);
    assert_ne!(Slot::for_key(b"foo{}{bar}"), Slot::for_key(b"bar"));
    // First `{`, first `}` after it.
    assert_eq!(Slot::for_key(b"foo{{bar}}zap"), Slot::for_key(b"{bar"));
    assert_eq!(Slot::for_key(b"foo{{bar}}zap").get(), crc16(b"{bar") % 16384);
    assert_eq!(Slot::for_key(b"foo{bar}{zap}"), Slot::for_key(b"bar"));
}

/// `CLUSTER KEYSLOT <key>` answers from redis-server 7.0.15.
const REAL_KEYSLOTS: &[(&[u8], u16)] = &[
    (b"", 0),
    (b"foo", 12182),
    (b"bar", 5061),
    (b"123456789", 12739),
    (b"{user1000}.following", 3443),
    (b"{user1000}.followers", 3443),
    (b"foo{}{bar}", 8363),
    (b"foo{{bar}}zap", 4015),
    (b"foo{bar}{zap}", 5061),
    (b"{}", 15257),
    (b"{", 4092),
    (b"}", 12090),
    (b"}{", 12793),
    (b"{a}", 15495),
    (b"a{b", 13340),
    (b"a}b{c}", 7365),
    (b"{{}}", 4092),
    (b"\x00", 0),
    (b"\xff\xfe\x00\x01", 9169),
    (b"\x00{\x00}\x00", 0),
    ("héllo".as_bytes(), 11061),
    ("日本語キー".as_bytes(), 15866),
    ("{ключ}:1".as_bytes(), 10303),
    ("🔑{😀}".as_bytes(), 2959),
    (b"key:with spaces", 8020),
    (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 5960),
    (b"\r\n", 5910),
    (b"user:{42}:profile", 8000),
    (b"x{}y{z}", 15453),
];

#[test]
fn slots_match_real_redis() {
    for &(key, slot) in REAL_KEYSLOTS {
        assert_eq!(Slot::for_key(key).get(), slot, "key {:?}", String::from_utf8_lossy(key));
    }
}

#[test]
fn slot_new_bounds() {
    assert_eq!(Slot::new(0).map(Slot::get), Some(0));
    assert_eq!(Slot::new(16383).map(Slot::get), Some(16383));
    assert_eq!(Slot::new(16384), None);
    assert_eq!(Slot::new(u16::MAX), None);
}

// ---------------------------------------------------------------------------------------------------------------
// Addresses

#[test]
fn node_addr_parse() {
    let ok = [
        ("127.0.0.1:6379", "127.0.0.1", 6379),
        ("redis-0.example.com:7000", "redis-0.example.com", 7000),
        ("localhost:1", "localhost", 1),
        ("[::1]:6379", "::1", 6379),
        ("::1:6379", "::1", 6379),
        ("fe80::1:2:65535", "fe80::1:2", 65535),
        ("[2001:db8::7]:30001", "2001:db8::7", 30001),
    ];
    for (s, host, port) in ok {
        assert_eq!(NodeAddr::parse(s), Some(NodeAddr::new(host, port)), "{s}");
    }
    let bad = [
        "",
        ":",
        ":6379",
        "host",
        "host:",
        "host:0",
        "host:65536",
        "host:-1",
        "host:+80",
        "host: 80",
        "host:80 ",
        " host:80",
        "ho st:80",
        "[::1]",
        "[::1]6379",
        "[]:6379",
        "[host]:6379",
        "[::1:6379",
        "::1]:6379",
        "host:99999999999999999999",
    ];
    for s in bad {
        assert_eq!(NodeAddr::parse(s), None, "{s:?}");
    }
}

#[test]
fn node_addr_display_round_trips() {
    for s in ["127.0.0.1:6379", "[::1]:6379", "example.com:7000"] {
        let a = NodeAddr::parse(s).unwrap();
        assert_eq!(a.to_string(), s);
        assert_eq!(NodeAddr::parse(&a.to_string()), Some(a));
    }
    assert_eq!(NodeAddr::parse("::1:6379").unwrap().to_string(), "[::1]:6379");
}

// ---------------------------------------------------------------------------------------------------------------
// Slot map

fn node(host: &str, port: u16, role: Role) -> NodeInfo {
    NodeInfo {
        id: None,
        addr: NodeAddr::new(host, port),
        ip: None,
        role,
        health: Health::Online,
        replication_offset: None,
    }
}

fn shard(port: u16, slots: &[(u16, u16)]) -> ShardInfo {
    ShardInfo { primary: node("10.0.0.1", port, Role::Primary), replicas: vec![], slots: slots.to_vec() }
}

#[test]
fn slot_map_dense_owners() {
    let map = SlotMap::new(vec![shard(1, &[(0, 5460)]), shard(2, &[(5461, 10922)]), shard(3, &[(10923, 16383)])]);
    assert_eq!(map.unassigned_slots(), 0);
    assert_eq!(map.overlapping_slots(), 0);
    assert_eq!(map.shard_of(Slot::new(0).unwrap()), Some(0));
    assert_eq!(map.shard_of(Slot::new(5460).unwrap()), Some(0));
    assert_eq!(map.shard_of(Slot::new(5461).unwrap()), Some(1));
    assert_eq!(map.shard_of(Slot::new(16383).unwrap()), Some(2));
    assert_eq!(map.shard(2).primary.addr.port, 3);
    assert_eq!(map.shard_of(Slot::for_key(b"foo")), Some(2));
}

#[test]
fn slot_map_gaps_overlaps_and_empty_shards() {
    let map = SlotMap::new(vec![
        shard(1, &[(0, 99), (200, 299)]),
        shard(2, &[]),
        shard(3, &[(250, 349)]),
        shard(4, &[(500, 400)]),     // start > end: ignored
        shard(5, &[(16000, 20000)]), // end clamped
    ]);
    assert_eq!(map.shards.len(), 5);
    assert_eq!(map.shard_of(Slot::new(50).unwrap()), Some(0));
    assert_eq!(map.shard_of(Slot::new(100).unwrap()), None);
    assert_eq!(map.shard_of(Slot::new(249).unwrap()), Some(0));
    assert_eq!(map.shard_of(Slot::new(250).unwrap()), Some(2), "later shard wins");
    assert_eq!(map.shard_of(Slot::new(349).unwrap()), Some(2));
    assert_eq!(map.shard_of(Slot::new(450).unwrap()), None);
    assert_eq!(map.shard_of(Slot::new(16383).unwrap()), Some(4));
    assert_eq!(map.overlapping_slots(), 50);
    assert_eq!(map.unassigned_slots(), 16384 - 100 - 150 - 384);
    assert_eq!(SlotMap::new(vec![]).unassigned_slots(), 16384);
}

// ---------------------------------------------------------------------------------------------------------------
// Topology replies captured from redis-server 7.0.15 (see testdata/README.md)

fn fixture(bytes: &'static [u8]) -> Value {
    let buf = Bytes::from_static(bytes);
    let (value, used) = Value::parse(&buf, &Limits::default()).expect("valid RESP").expect("complete reply");
    assert_eq!(used, buf.len(), "one reply per fixture");
    value
}

macro_rules! testdata {
    ($name:literal) => {
        fixture(include_bytes!(concat!("testdata/", $name)))
    };
}

const ID1: &str = "ca47c6e099cbb4ecb6b885457dc93b1562b3705b"; // 127.0.0.1:17101, slots 0-5460
const ID2: &str = "9d9e4a0dd52e5cb86f5071c543b33ac16d1feebf"; // 127.0.0.1:17102, slots 5461-10922
const ID3: &str = "2c7dc15a0ef66034f14708657fa9b62fb1f08830"; // 127.0.0.1:17103, slots 10923-16383
const ID4: &str = "9d4d1e67486f641898ae99905aa7ca30a7690a9c"; // 127.0.0.1:17104, replica of 1, node-17104.example
const ID5: &str = "4c74a0411943386b2a4205e509f05ce0aa5f4b05"; // 127.0.0.1:17105, replica of 2, node-17105.example
const ID6: &str = "7f8d4268487254384e2c3b61a105a17d1c91acd8"; // 127.0.0.1:17106, replica of 3, node-17106.example

fn sorted(mut shards: Vec<ShardInfo>) -> Vec<ShardInfo> {
    shards.sort_by_key(|s| s.slots.first().copied());
    shards
}

fn id(node: &NodeInfo) -> &str {
    node.id.as_deref().unwrap_or("")
}

/// Checks the three-primary layout every fixture shares, with the given replica ids per shard.
fn check_layout(shards: &[ShardInfo], replicas: [&[&str]; 3]) {
    assert_eq!(shards.len(), 3);
    let expect = [(ID1, 17101, (0, 5460)), (ID2, 17102, (5461, 10922)), (ID3, 17103, (10923, 16383))];
    for ((shard, (pid, port, range)), reps) in shards.iter().zip(expect).zip(replicas) {
        assert_eq!(id(&shard.primary), pid);
        assert_eq!(shard.primary.addr.port, port);
        assert_eq!(shard.primary.role, Role::Primary);
        assert_eq!(shard.slots, vec![range]);
        assert_eq!(shard.replicas.iter().map(id).collect::<Vec<_>>(), reps);
        assert!(shard.replicas.iter().all(|r| r.role == Role::Replica));
    }
    let map = SlotMap::new(shards.to_vec());
    assert_eq!(map.unassigned_slots(), 0);
}

#[test]
fn shards_three_primaries_resp2_and_resp3() {
    let resp2 = parse_cluster_shards(&testdata!("p3-shards-resp2.resp"), "seed").unwrap();
    let resp3 = parse_cluster_shards(&testdata!("p3-shards-resp3.resp"), "seed").unwrap();
    assert_eq!(resp2, resp3);
    let shards = sorted(resp2);
    check_layout(&shards, [&[], &[], &[]]);
    for s in &shards {
        assert_eq!(&*s.primary.addr.host, "127.0.0.1");
        assert_eq!(s.primary.health, Health::Online);
        assert_eq!(s.primary.replication_offset, Some(0));
    }
}

#[test]
fn slots_three_primaries_resp2_and_resp3() {
    let resp2 = parse_cluster_slots(&testdata!("p3-slots-resp2.resp"), "seed").unwrap();
    let resp3 = parse_cluster_slots(&testdata!("p3-slots-resp3.resp"), "seed").unwrap();
    assert_eq!(resp2, resp3);
    let shards = sorted(resp2);
    check_layout(&shards, [&[], &[], &[]]);
    for s in &shards {
        assert_eq!(&*s.primary.addr.host, "127.0.0.1");
        assert_eq!(s.primary.health, Health::Online);
        assert_eq!(s.primary.replication_offset, None);
    }
}

#[test]
fn shards_with_replicas() {
    let resp2 = parse_cluster_shards(&testdata!("r3-shards-resp2.resp"), "seed").unwrap();
    assert_eq!(resp2, parse_cluster_shards(&testdata!("r3-shards-resp3.resp"), "seed").unwrap());
    let shards = sorted(resp2);
    check_layout(&shards, [&[ID4], &[ID5], &[ID6]]);
    for s in &shards {
        let r = &s.replicas[0];
        // Preferred endpoint type is `ip`: the announced hostname is not used.
        assert_eq!(&*r.addr.host, "127.0.0.1");
        assert_eq!(r.health, Health::Online);
        assert_eq!(r.replication_offset, Some(14));
    }
    assert_eq!(shards[2].replicas[0].addr, NodeAddr::new("127.0.0.1", 17106));
}

#[test]
fn slots_with_replicas() {
    let resp2 = parse_cluster_slots(&testdata!("r3-slots-resp2.resp"), "seed").unwrap();
    assert_eq!(resp2, parse_cluster_slots(&testdata!("r3-slots-resp3.resp"), "seed").unwrap());
    let shards = sorted(resp2);
    check_layout(&shards, [&[ID4], &[ID5], &[ID6]]);
    assert_eq!(shards[0].replicas[0].addr, NodeAddr::new("127.0.0.1", 17104));
}

#[test]
fn shards_failed_replica_and_failed_primary() {
    // 17106 (replica of 17103) killed: marked `fail` (Redis 7.0 spells it so).
    let shards = sorted(parse_cluster_shards(&testdata!("fail-shards-resp2.resp"), "seed").unwrap());
    check_layout(&shards, [&[ID4], &[ID5], &[ID6]]);
    assert_eq!(shards[2].replicas[0].health, Health::Failed);
    assert_eq!(shards[2].primary.health, Health::Online);
    // CLUSTER SLOTS simply leaves the failed replica out.
    let slots = sorted(parse_cluster_slots(&testdata!("fail-slots-resp2.resp"), "seed").unwrap());
    check_layout(&slots, [&[ID4], &[ID5], &[]]);

    // Then 17103 killed too: a shard whose primary failed (no replica to take over) is kept, marked failed.
    let shards = sorted(parse_cluster_shards(&testdata!("pfail-shards-resp2.resp"), "seed").unwrap());
    check_layout(&shards, [&[ID4], &[ID5], &[ID6]]);
    assert_eq!(shards[2].primary.health, Health::Failed);
    assert_eq!(shards[2].replicas[0].health, Health::Failed);
    assert_eq!(shards[0].primary.health, Health::Online);
    let slots = sorted(parse_cluster_slots(&testdata!("pfail-slots-resp2.resp"), "seed").unwrap());
    check_layout(&slots, [&[ID4], &[ID5], &[]]);
}

#[test]
fn hostname_endpoints() {
    // cluster-preferred-endpoint-type hostname: replicas announce hostnames, primaries have none (`?` → IP).
    for shards in [
        parse_cluster_shards(&testdata!("host-shards-resp2.resp"), "seed").unwrap(),
        parse_cluster_slots(&testdata!("host-slots-resp2.resp"), "seed").unwrap(),
    ] {
        let shards = sorted(shards);
        assert_eq!(shards[0].primary.addr, NodeAddr::new("127.0.0.1", 17101));
        assert_eq!(shards[0].replicas[0].addr, NodeAddr::new("node-17104.example", 17104));
        assert_eq!(shards[1].replicas[0].addr, NodeAddr::new("node-17105.example", 17105));
    }
}

#[test]
fn unknown_endpoints_use_the_asked_host() {
    // cluster-preferred-endpoint-type unknown-endpoint: SHARDS says `""`, SLOTS says null.
    for shards in [
        parse_cluster_shards(&testdata!("unk-shards-resp2.resp"), "lb.example").unwrap(),
        parse_cluster_slots(&testdata!("unk-slots-resp2.resp"), "lb.example").unwrap(),
    ] {
        let shards = sorted(shards);
        assert_eq!(shards[0].primary.addr, NodeAddr::new("lb.example", 17101));
        assert_eq!(shards[0].replicas[0].addr, NodeAddr::new("lb.example", 17104));
        assert_eq!(shards[2].primary.addr, NodeAddr::new("lb.example", 17103));
    }
}

#[test]
fn shards_and_slots_agree() {
    for (shards, slots) in [
        (testdata!("p3-shards-resp2.resp"), testdata!("p3-slots-resp2.resp")),
        (testdata!("r3-shards-resp2.resp"), testdata!("r3-slots-resp2.resp")),
        (testdata!("host-shards-resp2.resp"), testdata!("host-slots-resp2.resp")),
        (testdata!("unk-shards-resp2.resp"), testdata!("unk-slots-resp2.resp")),
    ] {
        let a = sorted(parse_cluster_shards(&shards, "seed").unwrap());
        let b = sorted(parse_cluster_slots(&slots, "seed").unwrap());
        // CLUSTER SLOTS leaves failed replicas out (17106 is down in the `host` and `unk` captures).
        let shape = |s: &[ShardInfo]| {
            s.iter()
                .map(|s| {
                    let replicas = s.replicas.iter().filter(|r| r.health != Health::Failed).map(|r| r.addr.clone());
                    (s.primary.addr.clone(), replicas.collect::<Vec<_>>(), s.slots.clone())
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(shape(&a), shape(&b));
    }
}

#[test]
fn tls_cluster_shards() {
    // A one-node cluster with `port 0`, `tls-port 17111`, `tls-cluster yes`: 7.0 reports only `tls-port`, and an
    // empty `ip`/`endpoint` (the node never met another one).
    let reply = testdata!("tls-shards-resp2.resp");
    for pref in [PortPreference::Tls, PortPreference::Plain] {
        let shards = parse_cluster_shards_with(&reply, "tls.example", pref).unwrap();
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].primary.addr, NodeAddr::new("tls.example", 17111));
        assert_eq!(shards[0].slots, vec![(0, 16383)]);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Hand-built replies: corner cases the fixtures don't cover

fn bulk(s: &str) -> Value {
    Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (bulk(k), v)).collect())
}

fn flat(entries: Vec<(&str, Value)>) -> Value {
    Value::Array(entries.into_iter().flat_map(|(k, v)| [bulk(k), v]).collect())
}

fn shards_node(id: &str, role: &str, health: &str, extra: Vec<(&'static str, Value)>) -> Vec<(&'static str, Value)> {
    let mut v: Vec<(&'static str, Value)> = vec![
        ("id", bulk(id)),
        ("ip", bulk("10.0.0.9")),
        ("endpoint", bulk("10.0.0.9")),
        ("role", bulk(role)),
        ("replication-offset", Value::Integer(42)),
        ("health", bulk(health)),
    ];
    v.extend(extra);
    v
}

#[test]
fn shards_port_preference() {
    let node = map(shards_node(
        "a",
        "master",
        "online",
        vec![("port", Value::Integer(6379)), ("tls-port", Value::Integer(6380))],
    ));
    let reply = Value::Array(vec![map(vec![
        ("slots", Value::Array(vec![Value::Integer(0), Value::Integer(16383)])),
        ("nodes", Value::Array(vec![node])),
    ])]);
    assert_eq!(parse_cluster_shards(&reply, "x").unwrap()[0].primary.addr.port, 6380);
    assert_eq!(parse_cluster_shards_with(&reply, "x", PortPreference::Tls).unwrap()[0].primary.addr.port, 6380);
    assert_eq!(parse_cluster_shards_with(&reply, "x", PortPreference::Plain).unwrap()[0].primary.addr.port, 6379);

    // tls-port 0 means "no TLS": fall back to port.
    let node = map(shards_node(
        "a",
        "master",
        "online",
        vec![("port", Value::Integer(6379)), ("tls-port", Value::Integer(0))],
    ));
    let reply = Value::Array(vec![map(vec![("slots", Value::Array(vec![])), ("nodes", Value::Array(vec![node]))])]);
    assert_eq!(parse_cluster_shards(&reply, "x").unwrap()[0].primary.addr.port, 6379);

    // No port at all: error.
    let node = map(shards_node("a", "master", "online", vec![]));
    let reply = Value::Array(vec![map(vec![("nodes", Value::Array(vec![node]))])]);
    assert!(parse_cluster_shards(&reply, "x").is_err());
}

#[test]
fn shards_primary_choice_and_missing_primary() {
    let port = |p| vec![("port", Value::Integer(p))];
    let reply = Value::Array(vec![
        // A failed former primary listed before the promoted one (7.2+ shard grouping): the online one is chosen.
        flat(vec![
            (
                "slots",
                Value::Array(vec![Value::Integer(0), Value::Integer(99), Value::Integer(200), Value::Integer(299)]),
            ),
            (
                "nodes",
                Value::Array(vec![
                    flat(shards_node("old", "master", "fail", port(1))),
                    flat(shards_node("new", "master", "online", port(2))),
                    flat(shards_node("rep", "replica", "loading", port(3))),
                ]),
            ),
        ]),
        // No primary at all: kept with a failed placeholder.
        flat(vec![
            ("slots", Value::Array(vec![Value::Integer(100), Value::Integer(199)])),
            ("nodes", Value::Array(vec![flat(shards_node("orphan", "slave", "online", port(4)))])),
        ]),
        // No slots: kept, serves none.
        flat(vec![
            ("slots", Value::Array(vec![])),
            ("nodes", Value::Array(vec![flat(shards_node("spare", "master", "online", port(5)))])),
        ]),
        // No nodes: skipped.
        flat(vec![
            ("slots", Value::Array(vec![Value::Integer(300), Value::Integer(399)])),
            ("nodes", Value::Array(vec![])),
        ]),
    ]);
    let shards = parse_cluster_shards(&reply, "x").unwrap();
    assert_eq!(shards.len(), 3);
    assert_eq!(id(&shards[0].primary), "new");
    assert_eq!(shards[0].slots, vec![(0, 99), (200, 299)]);
    assert_eq!(shards[0].replicas.len(), 1);
    assert_eq!(shards[0].replicas[0].health, Health::Loading);
    assert_eq!(shards[0].replicas[0].replication_offset, Some(42));
    assert_eq!(shards[1].primary.health, Health::Failed);
    assert_eq!(shards[1].primary.id, None);
    assert_eq!(id(&shards[1].replicas[0]), "orphan");
    assert!(shards[2].slots.is_empty());
    let map = SlotMap::new(shards);
    assert_eq!(map.shard_of(Slot::new(150).unwrap()), Some(1));
    assert_eq!(map.shard_of(Slot::new(350).unwrap()), None);
}

#[test]
fn shards_rejects_garbage() {
    let node = || map(shards_node("a", "master", "online", vec![("port", Value::Integer(1))]));
    let with_slots = |slots: Vec<Value>| {
        Value::Array(vec![map(vec![("slots", Value::Array(slots)), ("nodes", Value::Array(vec![node()]))])])
    };
    assert!(parse_cluster_shards(&with_slots(vec![Value::Integer(0), Value::Integer(16383)]), "x").is_ok());
    assert!(parse_cluster_shards(&with_slots(vec![Value::Integer(0), Value::Integer(16384)]), "x").is_err());
    assert!(parse_cluster_shards(&with_slots(vec![Value::Integer(10), Value::Integer(9)]), "x").is_err());
    assert!(parse_cluster_shards(&with_slots(vec![Value::Integer(-1), Value::Integer(9)]), "x").is_err());
    assert!(parse_cluster_shards(&with_slots(vec![Value::Integer(0)]), "x").is_err());
    assert!(parse_cluster_shards(&Value::Error(Bytes::from_static(b"ERR unknown command")), "x").is_err());
    assert!(parse_cluster_shards(&Value::Array(vec![Value::Integer(1)]), "x").is_err());
    let bad_role = map(shards_node("a", "arbiter", "online", vec![("port", Value::Integer(1))]));
    let reply = Value::Array(vec![map(vec![("nodes", Value::Array(vec![bad_role]))])]);
    let err = parse_cluster_shards(&reply, "x").unwrap_err();
    assert_eq!(err.command, "CLUSTER SHARDS");
    assert!(err.to_string().starts_with("unexpected CLUSTER SHARDS reply: "), "{err}");
}

fn slots_node(host: Value, port: i64, id: &str) -> Value {
    Value::Array(vec![host, Value::Integer(port), bulk(id)])
}

#[test]
fn slots_grouping_and_hosts() {
    let reply = Value::Array(vec![
        Value::Array(vec![
            Value::Integer(0),
            Value::Integer(99),
            slots_node(bulk("10.0.0.1"), 7000, "p1"),
            slots_node(bulk("10.0.0.2"), 7001, "r1"),
        ]),
        Value::Array(vec![Value::Integer(100), Value::Integer(199), slots_node(bulk(""), 7002, "p2")]),
        Value::Array(vec![
            Value::Integer(200),
            Value::Integer(299),
            slots_node(bulk("10.0.0.1"), 7000, "p1"),
            slots_node(bulk("10.0.0.3"), 7003, "r2"),
            slots_node(bulk("10.0.0.2"), 7001, "r1"),
        ]),
        // `?` without ip metadata → asked host; IPv6 host kept as is.
        Value::Array(vec![Value::Integer(300), Value::Integer(300), slots_node(bulk("?"), 7004, "p3")]),
        Value::Array(vec![Value::Integer(301), Value::Integer(301), slots_node(bulk("::1"), 7005, "p4")]),
    ]);
    let shards = parse_cluster_slots(&reply, "seed.example").unwrap();
    assert_eq!(shards.len(), 4);
    assert_eq!(shards[0].slots, vec![(0, 99), (200, 299)]);
    assert_eq!(shards[0].primary.addr, NodeAddr::new("10.0.0.1", 7000));
    assert_eq!(shards[0].replicas.iter().map(id).collect::<Vec<_>>(), ["r1", "r2"]);
    assert_eq!(shards[1].primary.addr, NodeAddr::new("seed.example", 7002));
    assert_eq!(shards[2].primary.addr, NodeAddr::new("seed.example", 7004));
    assert_eq!(shards[3].primary.addr.to_string(), "[::1]:7005");

    // Redis < 4 style: no ids, grouped by address.
    let reply = Value::Array(vec![
        Value::Array(vec![Value::Integer(0), Value::Integer(1), Value::Array(vec![bulk("h"), Value::Integer(1)])]),
        Value::Array(vec![Value::Integer(5), Value::Integer(6), Value::Array(vec![bulk("h"), Value::Integer(1)])]),
    ]);
    let shards = parse_cluster_slots(&reply, "x").unwrap();
    assert_eq!(shards.len(), 1);
    assert_eq!(shards[0].slots, vec![(0, 1), (5, 6)]);
    assert_eq!(shards[0].primary.id, None);
}

#[test]
fn slots_rejects_garbage() {
    let entry = |start, end, port| {
        Value::Array(vec![Value::Integer(start), Value::Integer(end), slots_node(bulk("h"), port, "id")])
    };
    assert!(parse_cluster_slots(&Value::Array(vec![entry(0, 16383, 1)]), "x").is_ok());
    assert!(parse_cluster_slots(&Value::Array(vec![entry(0, 16384, 1)]), "x").is_err());
    assert!(parse_cluster_slots(&Value::Array(vec![entry(5, 4, 1)]), "x").is_err());
    assert!(parse_cluster_slots(&Value::Array(vec![entry(0, 1, 0)]), "x").is_err());
    assert!(parse_cluster_slots(&Value::Array(vec![entry(0, 1, 70000)]), "x").is_err());
    assert!(parse_cluster_slots(&Value::Array(vec![Value::Array(vec![Value::Integer(0), Value::Integer(1)])]), "x")
        .is_err());
    assert!(parse_cluster_slots(&Value::Nil, "x").is_err());
    assert_eq!(parse_cluster_slots(&Value::Array(vec![]), "x").unwrap(), vec![]);
}

// ---------------------------------------------------------------------------------------------------------------
// Redirects

#[test]
fn redirects() {
    let slot = |n| Slot::new(n).unwrap();
    assert_eq!(
        parse_redirect(b"MOVED 3999 127.0.0.1:6381", "h"),
        Some(Redirect::Moved { slot: slot(3999), addr: NodeAddr::new("127.0.0.1", 6381) })
    );
    assert_eq!(
        parse_redirect(b"ASK 3999 127.0.0.1:6381", "h"),
        Some(Redirect::Ask { slot: slot(3999), addr: NodeAddr::new("127.0.0.1", 6381) })
    );
    assert_eq!(
        parse_redirect(b"MOVED 0 :6381", "10.1.1.1"),
        Some(Redirect::Moved { slot: slot(0), addr: NodeAddr::new("10.1.1.1", 6381) })
    );
    assert_eq!(
        parse_redirect(b"MOVED 16383 ::1:7000", "h"),
        Some(Redirect::Moved { slot: slot(16383), addr: NodeAddr::new("::1", 7000) })
    );
    assert_eq!(
        parse_redirect(b"ASK 1 [fe80::1]:7000", "h"),
        Some(Redirect::Ask { slot: slot(1), addr: NodeAddr::new("fe80::1", 7000) })
    );
    assert_eq!(
        parse_redirect(b"MOVED 12182 redis-2.example.com:6379\r\n", "h"),
        Some(Redirect::Moved { slot: slot(12182), addr: NodeAddr::new("redis-2.example.com", 6379) })
    );
    for bad in [
        &b"MOVED 16384 h:1"[..],
        b"MOVED -1 h:1",
        b"MOVED x h:1",
        b"MOVED 1 h",
        b"MOVED 1 h:0",
        b"MOVED 1 h:65536",
        b"MOVED 1",
        b"MOVED",
        b"MOVED 1 h:1 extra",
        b"MOVED  1 h:1",
        b"moved 1 h:1",
        b"ERR unknown command",
        b"TRYAGAIN Multiple keys request during rehashing of slot",
        b"CROSSSLOT Keys in request don't hash to the same slot",
        b"MOVED 1 ?:6379",
        b"",
        b"MOVED 1 \xff:1",
    ] {
        assert_eq!(parse_redirect(bad, "h"), None, "{:?}", String::from_utf8_lossy(bad));
    }
    assert_eq!(parse_redirect(b"MOVED 1 :6379", ""), None);
}

#[test]
fn every_slot_has_a_tag() {
    for n in 0..SLOT_COUNT as u16 {
        let slot = Slot::new(n).unwrap();
        let key = format!("x{{{}}}y", slot.tag());
        assert_eq!(Slot::for_key(key.as_bytes()), slot);
    }
}
