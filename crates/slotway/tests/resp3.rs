//! RESP3 through slotway: HELLO 3 switches the client's protocol, and replies from every shard come back as the
//! node sends them in RESP3 (maps, sets, nulls, doubles), while RESP2 clients keep RESP2.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// Sends `input` and reads until the reply ends with `tail` (or 5 s pass).
fn exchange(stream: &mut TcpStream, input: &[u8], tail: &[u8]) -> Vec<u8> {
    stream.write_all(input).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65536];
    while !got.ends_with(tail) && Instant::now() < deadline {
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        if let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }
    got
}

#[test]
fn hello_3_gives_resp3_replies_from_every_shard() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let keys = cluster.keys_on_every_primary("r3:");
    let mut s = TcpStream::connect(&proxy.addr).unwrap();

    // HELLO 3 answers with a RESP3 map describing a standalone server.
    let hello = exchange(&mut s, b"HELLO 3 SETNAME r3client\r\n", b"*0\r\n");
    let text = String::from_utf8_lossy(&hello);
    assert!(text.starts_with("%7\r\n"), "{text}");
    assert!(text.contains("$5\r\nproto\r\n:3\r\n"), "{text}");
    assert!(text.contains("$10\r\nstandalone\r\n"), "{text}");

    for (_, key) in &keys {
        let h = format!("{key}:h");
        let z = format!("{key}:z");
        let cmds = format!(
            "HSET {h} f v\r\nHGETALL {h}\r\nSADD {key}:s m\r\nSMEMBERS {key}:s\r\nZADD {z} 1.5 a\r\nZSCORE {z} a\r\nGET {key}:missing\r\nMGET {key}:missing {h}\r\nPING\r\n"
        );
        let got = exchange(&mut s, cmds.as_bytes(), b"+PONG\r\n");
        let expected: &[u8] =
            b":1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n:1\r\n~1\r\n$1\r\nm\r\n:1\r\n,1.5\r\n_\r\n*2\r\n_\r\n_\r\n+PONG\r\n";
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(expected), "shard of {key}");
    }
    // Local replies follow the protocol too.
    let got = exchange(&mut s, b"CLIENT GETNAME\r\nCLIENT SETNAME \"\"\r\nCLIENT GETNAME\r\n", b"_\r\n");
    assert_eq!(got, b"$8\r\nr3client\r\n+OK\r\n_\r\n");

    // HELLO 2 switches back: the same data in RESP2 forms.
    let (_, key) = &keys[0];
    let hello2 = exchange(&mut s, b"HELLO 2\r\n", b"*0\r\n");
    assert!(hello2.starts_with(b"*14\r\n"), "{}", String::from_utf8_lossy(&hello2));
    let got = exchange(
        &mut s,
        format!("HGETALL {key}:h\r\nGET {key}:missing\r\nZSCORE {key}:z a\r\n").as_bytes(),
        b"1.5\r\n",
    );
    assert_eq!(got, b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n$-1\r\n$3\r\n1.5\r\n");

    // Unknown protocol versions get Redis's NOPROTO; the connection stays usable.
    let got = exchange(&mut s, b"HELLO 4\r\nPING\r\n", b"+PONG\r\n");
    assert_eq!(got, b"-NOPROTO unsupported protocol version\r\n+PONG\r\n");

    // A RESP2 client next to it is unaffected.
    let mut plain = TcpStream::connect(&proxy.addr).unwrap();
    let got = exchange(&mut plain, format!("HGETALL {key}:h\r\n").as_bytes(), b"v\r\n");
    assert_eq!(got, b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate_with_resp3() {
    use redis::AsyncCommands;
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let client = redis::Client::open(format!("redis://{}/?protocol=resp3", proxy.addr)).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    for (_, key) in cluster.keys_on_every_primary("r3c:") {
        let () = con.hset(&key, "field", "value").await.unwrap();
        let map: std::collections::HashMap<String, String> = con.hgetall(&key).await.unwrap();
        assert_eq!(map.get("field").map(String::as_str), Some("value"));
        let missing: Option<String> = con.get(format!("{key}:none")).await.unwrap();
        assert_eq!(missing, None);
    }
}
