//! Plain loops over the same cases as `scan.rs`, for counting instructions, which stay meaningful on a busy
//! machine where wall-clock numbers don't:
//!
//! cargo bench -p resp --bench instr --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/instr-<hash> <case> <iters>
//!
//! Cases: set16-resp set16-rp mget-resp mget-rp arr-scan arr-value arr-rp chunked-resp chunked-rp.
//! Instructions per iteration = (count at 2N iterations - count at N) / N.
use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::decode::decode_range;
use resp::{encode, Limits, Protocol, ReplyScanner, RequestDecoder, Value};
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_default();
    let iters: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    if case.is_empty() || case.starts_with("--") {
        return; // `cargo bench` runs every bench target with `--bench`: nothing to do here.
    }

    let mut pipeline = BytesMut::new();
    for i in 0..16 {
        encode::command(&mut pipeline, &["SET", &format!("key:{i:04}"), "value"]);
    }
    let mut mget_args = vec!["MGET".to_string()];
    mget_args.extend((0..100).map(|i| format!("key:{i:04}")));
    let mut mget = BytesMut::new();
    encode::command(&mut mget, &mget_args);
    let items = (0..100).map(|i| Value::bulk(format!("value:{i:04}"))).collect();
    let array = Value::Array(items).to_bytes(Protocol::Resp2);
    let array_bytes = Bytes::from(array.to_vec());

    let limits = Limits::default();
    let mut d = RequestDecoder::new(limits);
    let mut s = ReplyScanner::new(limits);
    let run = |f: &mut dyn FnMut() -> usize| {
        for _ in 0..iters {
            black_box(f());
        }
    };
    match case.as_str() {
        "set16-resp" => run(&mut || {
            let (mut at, mut n) = (0, 0);
            while let Some(r) = d.decode(black_box(&pipeline[at..])).unwrap() {
                n += r.arg_count();
                at += r.len();
            }
            n
        }),
        "set16-rp" => run(&mut || {
            let (mut at, mut n) = (0, 0);
            while let Some((f, used)) = decode_range(black_box(&pipeline[at..])).unwrap() {
                black_box(&f);
                n += 1;
                at += used;
            }
            n
        }),
        "mget-resp" => run(&mut || d.decode(black_box(&mget)).unwrap().unwrap().len()),
        "mget-rp" => run(&mut || decode_range(black_box(&mget)).unwrap().unwrap().1),
        "arr-scan" => run(&mut || s.scan(black_box(&array)).unwrap().unwrap().len),
        "arr-value" => run(&mut || Value::parse(black_box(&array_bytes), &limits).unwrap().unwrap().1),
        "arr-rp" => run(&mut || decode_range(black_box(&array)).unwrap().unwrap().1),
        "chunked-resp" => run(&mut || {
            let mut end = 0;
            loop {
                end = (end + 64).min(mget.len());
                if let Some(r) = d.decode(black_box(&mget[..end])).unwrap() {
                    return r.len();
                }
            }
        }),
        "chunked-rp" => run(&mut || {
            let mut end = 0;
            loop {
                end = (end + 64).min(mget.len());
                if let Some((_, used)) = decode_range(black_box(&mget[..end])).unwrap() {
                    return used;
                }
            }
        }),
        other => panic!("unknown case {other}"),
    }
}
