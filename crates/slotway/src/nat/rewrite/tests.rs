use super::*;
use crate::cluster::{parse_cluster_shards_with, parse_cluster_slots, PortPreference};

/// Knows nodes 17101..=17106 (any host: the fixtures name them by 127.0.0.1 and by node-<port>.example) and
/// announces node 171xx at port 70xx; `missing` ports are unknown.
struct Dir {
    missing: Vec<u16>,
}

impl Directory for Dir {
    fn port_of(&self, _id: Option<&str>, host: &str, port: u16) -> Option<u16> {
        let known_host = host == "127.0.0.1" || host.ends_with(".example") || host == "::1";
        (known_host && (17101..=17111).contains(&port) && !self.missing.contains(&port)).then(|| port - 10100)
    }
}

static ALL: Dir = Dir { missing: Vec::new() };

fn ctx<'a>(dir: &'a Dir, tls: bool) -> Ctx<'a> {
    Ctx { dir, announce_host: "proxy.test", client_tls: tls, node_host: "127.0.0.1" }
}

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/src/cluster/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// No private address (a 171xx port, 127.0.0.1, a `.example` host) is left in the frame.
fn assert_no_private(frame: &[u8]) {
    let text = String::from_utf8_lossy(frame);
    for bad in ["17101", "17102", "17103", "17104", "17105", "17106", "17111", "127.0.0.1", ".example"] {
        assert!(!text.contains(bad), "{bad} left in {text:?}");
    }
}

fn parse(frame: &Bytes) -> Value {
    Value::parse(frame, &Limits::default()).unwrap().unwrap().0
}

#[test]
fn kinds() {
    assert_eq!(kind_of(b"cluster", Some(b"slots")), Some(Kind::ClusterSlots));
    assert_eq!(kind_of(b"CLUSTER", Some(b"Shards")), Some(Kind::ClusterShards));
    assert_eq!(kind_of(b"CLUSTER", Some(b"NODES")), Some(Kind::ClusterNodes));
    assert_eq!(kind_of(b"CLUSTER", Some(b"slaves")), Some(Kind::ClusterReplicas));
    assert_eq!(kind_of(b"CLUSTER", Some(b"REPLICAS")), Some(Kind::ClusterReplicas));
    assert_eq!(kind_of(b"CLUSTER", Some(b"KEYSLOT")), None);
    assert_eq!(kind_of(b"CLUSTER", None), None);
    assert_eq!(kind_of(b"role", None), Some(Kind::Role));
    assert_eq!(kind_of(b"info", Some(b"replication")), Some(Kind::Info));
    assert_eq!(kind_of(b"GET", Some(b"k")), None);
    assert_eq!(kind_of(b"client", Some(b"list")), Some(Kind::ClientList));
    assert_eq!(kind_of(b"CLIENT", Some(b"INFO")), Some(Kind::ClientList));
    assert_eq!(kind_of(b"CLIENT", Some(b"ID")), None);
}

#[test]
fn cluster_slots_every_fixture() {
    for (name, proto) in [
        ("p3-slots-resp2.resp", Protocol::Resp2),
        ("p3-slots-resp3.resp", Protocol::Resp3),
        ("r3-slots-resp2.resp", Protocol::Resp2),
        ("r3-slots-resp3.resp", Protocol::Resp3),
        ("host-slots-resp2.resp", Protocol::Resp2),
        ("fail-slots-resp2.resp", Protocol::Resp2),
        ("pfail-slots-resp2.resp", Protocol::Resp2),
    ] {
        let frame = fixture(name);
        let before = parse_cluster_slots(&parse(&frame), "127.0.0.1").unwrap();
        let out = reply(Kind::ClusterSlots, &frame, proto, &ctx(&ALL, false));
        assert_eq!(out.unknown, 0, "{name}");
        assert_no_private(&out.frame);
        let after = parse_cluster_slots(&parse(&out.frame), "x").unwrap();
        assert_eq!(before.len(), after.len(), "{name}");
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b.slots, a.slots);
            assert_eq!(&*a.primary.addr.host, "proxy.test", "{name}");
            assert_eq!(a.primary.addr.port, b.primary.addr.port - 10100);
            assert_eq!(a.primary.id, b.primary.id);
            assert_eq!(a.replicas.len(), b.replicas.len());
        }
        if proto == Protocol::Resp3 {
            assert_eq!(out.frame[0], frame[0]);
        }
    }
}

#[test]
fn cluster_slots_unknown_nodes_are_dropped() {
    let frame = fixture("r3-slots-resp2.resp");
    let before = parse_cluster_slots(&parse(&frame), "127.0.0.1").unwrap();
    let replica = before[0].replicas[0].addr.port;
    let dir = Dir { missing: vec![replica] };
    let out = reply(Kind::ClusterSlots, &frame, Protocol::Resp2, &ctx(&dir, false));
    assert_eq!(out.unknown, 1);
    assert_no_private(&out.frame);
    let after = parse_cluster_slots(&parse(&out.frame), "x").unwrap();
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|s| s.replicas.iter().all(|r| r.addr.port != replica - 10100)));
    // An unknown primary takes its range with it.
    let dir = Dir { missing: vec![before[0].primary.addr.port] };
    let out = reply(Kind::ClusterSlots, &frame, Protocol::Resp2, &ctx(&dir, false));
    assert_eq!(out.unknown, 1);
    assert_eq!(parse_cluster_slots(&parse(&out.frame), "x").unwrap().len(), before.len() - 1);
}

#[test]
fn cluster_shards_every_fixture() {
    for (name, proto) in [
        ("p3-shards-resp2.resp", Protocol::Resp2),
        ("p3-shards-resp3.resp", Protocol::Resp3),
        ("r3-shards-resp2.resp", Protocol::Resp2),
        ("r3-shards-resp3.resp", Protocol::Resp3),
        ("host-shards-resp2.resp", Protocol::Resp2),
        ("fail-shards-resp2.resp", Protocol::Resp2),
        ("pfail-shards-resp2.resp", Protocol::Resp2),
        ("unk-shards-resp2.resp", Protocol::Resp2),
        ("tls-shards-resp2.resp", Protocol::Resp2),
    ] {
        let frame = fixture(name);
        let before = parse_cluster_shards_with(&parse(&frame), "127.0.0.1", PortPreference::Tls).unwrap();
        for tls in [false, true] {
            let out = reply(Kind::ClusterShards, &frame, proto, &ctx(&ALL, tls));
            assert_eq!(out.unknown, 0, "{name}");
            assert_no_private(&out.frame);
            let text = String::from_utf8_lossy(&out.frame);
            if tls {
                assert!(!text.contains("$4\r\nport\r\n"), "{name}: {text}");
            } else {
                assert!(!text.contains("tls-port"), "{name}: {text}");
            }
            let pref = if tls { PortPreference::Tls } else { PortPreference::Plain };
            let after = parse_cluster_shards_with(&parse(&out.frame), "x", pref).unwrap();
            assert_eq!(before.len(), after.len());
            for (b, a) in before.iter().zip(&after) {
                assert_eq!(b.slots, a.slots);
                assert_eq!(b.primary.id, a.primary.id);
                assert_eq!(b.replicas.len(), a.replicas.len());
                if b.primary.addr.port != 0 {
                    assert_eq!(
                        a.primary.addr,
                        crate::cluster::NodeAddr::new("proxy.test", b.primary.addr.port - 10100)
                    );
                }
            }
        }
    }
}

#[test]
fn cluster_shards_unknown_node_dropped() {
    let frame = fixture("r3-shards-resp3.resp");
    let dir = Dir { missing: vec![17104] };
    let out = reply(Kind::ClusterShards, &frame, Protocol::Resp3, &ctx(&dir, false));
    assert_eq!(out.unknown, 1);
    assert_no_private(&out.frame);
    let after = parse_cluster_shards_with(&parse(&out.frame), "x", PortPreference::Plain).unwrap();
    assert_eq!(after.iter().map(|s| s.replicas.len()).sum::<usize>(), 2);
}

const NODES: &str = "\
2c7dc15a0ef66034f14708657fa9b62fb1f08830 127.0.0.1:17103@27103,node-17103.example master - 0 1700000000000 3 connected 10923-16383
ca47c6e099cbb4ecb6b885457dc93b1562b3705b 127.0.0.1:17101@27101 myself,master - 0 1700000000000 1 connected 0-5460 [5461->-9d9e4a0dd52e5cb86f5071c543b33ac16d1feebf]
9d4d1e67486f641898ae99905aa7ca30a7690a9c 127.0.0.1:17104@27104, slave ca47c6e099cbb4ecb6b885457dc93b1562b3705b 0 1700000000000 1 connected
0000000000000000000000000000000000000000 :0@0 master,noaddr - 0 0 0 disconnected
";

#[test]
fn cluster_nodes_text_and_forms() {
    let (text, unknown) = cluster_nodes_text(NODES, &ctx(&ALL, false));
    assert_eq!(unknown, 0);
    assert_no_private(text.as_bytes());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "2c7dc15a0ef66034f14708657fa9b62fb1f08830 proxy.test:7003@0,proxy.test master - 0 1700000000000 3 connected 10923-16383"
    );
    assert!(lines[1].starts_with("ca47c6e099cbb4ecb6b885457dc93b1562b3705b proxy.test:7001@0 myself,master"));
    assert!(lines[1].ends_with("[5461->-9d9e4a0dd52e5cb86f5071c543b33ac16d1feebf]"));
    assert!(lines[2].starts_with("9d4d1e67486f641898ae99905aa7ca30a7690a9c proxy.test:7004@0, slave"));
    assert_eq!(lines[3], "0000000000000000000000000000000000000000 :0@0 master,noaddr - 0 0 0 disconnected");
    assert!(text.ends_with('\n'));

    let (text, unknown) = cluster_nodes_text(NODES, &ctx(&Dir { missing: vec![17104] }, false));
    assert_eq!((unknown, text.lines().count()), (1, 3));

    // RESP2 bulk and RESP3 verbatim keep their type.
    let bulk = resp::Value::bulk(Bytes::from_static(NODES.as_bytes())).to_bytes(Protocol::Resp2);
    let out = reply(Kind::ClusterNodes, &bulk, Protocol::Resp2, &ctx(&ALL, false));
    assert_eq!(out.frame[0], b'$');
    assert_no_private(&out.frame);
    let verbatim =
        resp::Value::Verbatim { format: *b"txt", text: Bytes::from_static(NODES.as_bytes()) }.to_bytes(Protocol::Resp3);
    let out = reply(Kind::ClusterNodes, &verbatim, Protocol::Resp3, &ctx(&ALL, false));
    assert_eq!(out.frame[0], b'=');
    assert_no_private(&out.frame);
}

#[test]
fn cluster_replicas() {
    let lines: Vec<Value> = NODES.lines().skip(2).take(1).map(|l| Value::bulk(l.to_string())).collect();
    let frame = Value::Array(lines).to_bytes(Protocol::Resp2);
    let out = reply(Kind::ClusterReplicas, &frame, Protocol::Resp2, &ctx(&ALL, false));
    assert_eq!(out.unknown, 0);
    assert_no_private(&out.frame);
    assert!(String::from_utf8_lossy(&out.frame).contains("proxy.test:7004@0"));
    let out = reply(Kind::ClusterReplicas, &frame, Protocol::Resp2, &ctx(&Dir { missing: vec![17104] }, false));
    assert_eq!((out.unknown, &out.frame[..]), (1, &b"*0\r\n"[..]));
}

#[test]
fn redirects() {
    let all = Dir { missing: Vec::new() };
    let c = ctx(&all, false);
    let moved = redirect(b"-MOVED 3999 127.0.0.1:17102\r\n", &c).unwrap();
    assert_eq!((&moved.frame[..], moved.unknown), (&b"-MOVED 3999 proxy.test:7002\r\n"[..], 0));
    let ask = redirect(b"-ASK 12 node-17105.example:17105\r\n", &c).unwrap();
    assert_eq!(&ask.frame[..], b"-ASK 12 proxy.test:7005\r\n");
    // Empty host: the node this connection goes to.
    assert_eq!(&redirect(b"-MOVED 1 :17103\r\n", &c).unwrap().frame[..], b"-MOVED 1 proxy.test:7003\r\n");
    // IPv6, bare as Redis sends it.
    assert_eq!(&redirect(b"-MOVED 1 ::1:17103\r\n", &c).unwrap().frame[..], b"-MOVED 1 proxy.test:7003\r\n");
    let unknown = redirect(b"-MOVED 1 10.9.9.9:6379\r\n", &c).unwrap();
    assert_eq!(unknown.unknown, 1);
    assert!(unknown.frame.starts_with(b"-TRYAGAIN "), "{:?}", unknown.frame);
    assert_no_private(&unknown.frame);
    assert!(!String::from_utf8_lossy(&unknown.frame).contains("10.9.9.9"));
    assert!(redirect(b"-ERR nope\r\n", &c).is_none());
    assert!(is_redirect(b"-MOVED 1 a:1\r\n") && is_redirect(b"-ASK 1 a:1\r\n") && !is_redirect(b"-ERR x\r\n"));
    // An error reply to any kind is handled as a redirect.
    let out = reply(Kind::ClusterSlots, &Bytes::from_static(b"-ASK 5 127.0.0.1:17101\r\n"), Protocol::Resp2, &c);
    assert_eq!(&out.frame[..], b"-ASK 5 proxy.test:7001\r\n");
}

#[test]
fn role_primary_and_replica() {
    let all = Dir { missing: Vec::new() };
    let c = ctx(&all, false);
    let master = b"*3\r\n$6\r\nmaster\r\n:3129659\r\n*2\r\n*3\r\n$9\r\n127.0.0.1\r\n$5\r\n17104\r\n$7\r\n3129242\r\n*3\r\n$9\r\n127.0.0.1\r\n$5\r\n17199\r\n$7\r\n3129543\r\n";
    let out = reply(Kind::Role, &Bytes::from_static(master), Protocol::Resp2, &c);
    assert_eq!(out.unknown, 1, "17199 is unknown");
    assert_eq!(
        &out.frame[..],
        b"*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$10\r\nproxy.test\r\n$4\r\n7004\r\n$7\r\n3129242\r\n"
    );
    let replica = b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:17101\r\n$9\r\nconnected\r\n:3167038\r\n";
    for proto in [Protocol::Resp2, Protocol::Resp3] {
        let out = reply(Kind::Role, &Bytes::from_static(replica), proto, &c);
        assert_eq!(
            &out.frame[..],
            b"*5\r\n$5\r\nslave\r\n$10\r\nproxy.test\r\n:7001\r\n$9\r\nconnected\r\n:3167038\r\n"
        );
    }
    let out =
        reply(Kind::Role, &Bytes::from_static(replica), Protocol::Resp2, &ctx(&Dir { missing: vec![17101] }, false));
    assert_eq!(out.unknown, 1);
    assert!(out.frame.starts_with(b"-ERR slotway"));
}

#[test]
fn info_replication() {
    let all = Dir { missing: Vec::new() };
    let c = ctx(&all, false);
    let primary = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
        slave0:ip=127.0.0.1,port=17104,state=online,offset=3130288,lag=0\r\n\
        slave1:ip=10.1.1.1,port=6379,state=online,offset=3130288,lag=1\r\nmaster_failover_state:no-failover\r\n";
    let (text, unknown) = info_text(primary, &c);
    assert_eq!(unknown, 1);
    assert_eq!(
        text,
        "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
         slave0:ip=proxy.test,port=7004,state=online,offset=3130288,lag=0\r\nmaster_failover_state:no-failover\r\n"
    );
    let replica =
        "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:17102\r\nmaster_link_status:up\r\n";
    let (text, unknown) = info_text(replica, &c);
    assert_eq!(unknown, 0);
    assert_eq!(
        text,
        "# Replication\r\nrole:slave\r\nmaster_host:proxy.test\r\nmaster_port:7002\r\nmaster_link_status:up\r\n"
    );
    let (text, unknown) = info_text(replica, &ctx(&Dir { missing: vec![17102] }, false));
    assert_eq!(unknown, 1);
    assert_eq!(text, "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n");
    // Other sections pass through untouched; RESP3 verbatim stays verbatim.
    assert_eq!(
        info_text("# Server\r\nredis_version:7.0.15\r\n", &c),
        ("# Server\r\nredis_version:7.0.15\r\n".into(), 0)
    );
    let v = Value::Verbatim { format: *b"txt", text: Bytes::from(replica) }.to_bytes(Protocol::Resp3);
    let out = reply(Kind::Info, &v, Protocol::Resp3, &c);
    assert!(out.frame.starts_with(b"="));
    assert_no_private(&out.frame);
}

#[test]
fn exec_replies() {
    let all = Dir { missing: Vec::new() };
    let c = ctx(&all, false);
    let nodes = Value::bulk(NODES.to_string());
    let frame = Value::Array(vec![
        Value::simple("OK"),
        nodes,
        Value::error("MOVED 1 127.0.0.1:17101"),
        Value::bulk("127.0.0.1:17101"), // a plain GET of a value that looks like an address: left alone
    ])
    .to_bytes(Protocol::Resp2);
    let out = exec_reply(&[None, Some(Kind::ClusterNodes), None, None], &frame, Protocol::Resp2, &c);
    assert_eq!(out.unknown, 0);
    let v = parse(&out.frame);
    let items = v.as_array().unwrap();
    assert!(!items[1].as_str().unwrap().contains("17101"));
    assert_eq!(items[2], Value::error("MOVED 1 proxy.test:7001"));
    assert_eq!(items[3], Value::bulk("127.0.0.1:17101"));
}

#[test]
fn client_list_laddr() {
    let c = ctx(&ALL, false);
    let text = "id=3 addr=10.0.0.9:50412 laddr=127.0.0.1:17101 fd=8 name= age=0\n\
                id=4 addr=10.0.0.9:50414 laddr=127.0.0.1:17199 fd=9 name= age=0\n";
    let (out, unknown) = client_list_text(text, &c);
    assert_eq!(unknown, 1);
    assert_eq!(
        out,
        "id=3 addr=10.0.0.9:50412 laddr=proxy.test:7001 fd=8 name= age=0\n\
         id=4 addr=10.0.0.9:50414 laddr=?:0 fd=9 name= age=0\n"
    );
    let frame = Value::bulk("id=3 addr=1.2.3.4:5 laddr=127.0.0.1:17102 fd=8\n").to_bytes(Protocol::Resp2);
    let out = reply(Kind::ClientList, &frame, Protocol::Resp2, &c);
    assert_no_private(&out.frame);
    assert!(String::from_utf8_lossy(&out.frame).contains("laddr=proxy.test:7002"));
}
