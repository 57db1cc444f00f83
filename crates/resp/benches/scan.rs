//! Hand-written framing vs the `redis-protocol` crate (its zero-copy RESP2 `decode_range`).
//!
//! cargo bench -p resp --bench scan -- --warm-up-time 1 --measurement-time 2
use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use redis_protocol::resp2::decode::decode_range;
use resp::{encode, Limits, Protocol, ReplyScanner, RequestDecoder, Value};

fn pipeline_16_set() -> Vec<u8> {
    let mut out = BytesMut::new();
    for i in 0..16 {
        encode::command(&mut out, &["SET", &format!("key:{i:04}"), "value"]);
    }
    out.to_vec()
}

fn mget_100() -> Vec<u8> {
    let mut args = vec!["MGET".to_string()];
    args.extend((0..100).map(|i| format!("key:{i:04}")));
    let mut out = BytesMut::new();
    encode::command(&mut out, &args);
    out.to_vec()
}

fn array_reply_100() -> Vec<u8> {
    let items = (0..100).map(|i| Value::bulk(format!("value:{i:04}"))).collect();
    Value::Array(items).to_bytes(Protocol::Resp2).to_vec()
}

/// Decodes every frame in `buf` with our decoder; returns the number of args seen (to keep the work observable).
fn ours_requests(d: &mut RequestDecoder, buf: &[u8]) -> usize {
    let (mut at, mut n) = (0, 0);
    while let Some(r) = d.decode(&buf[at..]).unwrap() {
        n += r.arg_count();
        at += r.len();
    }
    n
}

fn baseline_frames(buf: &[u8]) -> usize {
    let (mut at, mut n) = (0, 0);
    while let Some((frame, used)) = decode_range(&buf[at..]).unwrap() {
        black_box(&frame);
        n += 1;
        at += used;
    }
    n
}

fn requests(c: &mut Criterion) {
    let limits = Limits::default();
    for (name, buf, frames) in [("pipeline_16_set", pipeline_16_set(), 16u64), ("mget_100", mget_100(), 1)] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(frames));
        let mut d = RequestDecoder::new(limits);
        g.bench_function("resp", |b| b.iter(|| ours_requests(&mut d, black_box(&buf))));
        g.bench_function("redis-protocol", |b| b.iter(|| baseline_frames(black_box(&buf))));
        g.finish();
    }
}

fn replies(c: &mut Criterion) {
    let limits = Limits::default();
    let buf = array_reply_100();
    let bytes = Bytes::from(buf.clone());
    let mut g = c.benchmark_group("array_reply_100");
    g.throughput(Throughput::Elements(1));
    let mut s = ReplyScanner::new(limits);
    g.bench_function("resp_scan", |b| b.iter(|| s.scan(black_box(&buf)).unwrap().unwrap().len));
    g.bench_function("resp_value_parse", |b| b.iter(|| Value::parse(black_box(&bytes), &limits).unwrap().unwrap().1));
    g.bench_function("redis-protocol", |b| b.iter(|| decode_range(black_box(&buf)).unwrap().unwrap().1));
    g.finish();
}

/// The MGET frame arriving in 64-byte reads: ours resumes, the baseline has to restart on every read.
fn chunked(c: &mut Criterion) {
    let limits = Limits::default();
    let buf = mget_100();
    let mut g = c.benchmark_group("mget_100_in_64_byte_reads");
    g.throughput(Throughput::Elements(1));
    let mut d = RequestDecoder::new(limits);
    g.bench_function(BenchmarkId::from_parameter("resp"), |b| {
        b.iter(|| {
            let mut end = 0;
            loop {
                end = (end + 64).min(buf.len());
                if let Some(r) = d.decode(black_box(&buf[..end])).unwrap() {
                    return r.len();
                }
            }
        })
    });
    g.bench_function(BenchmarkId::from_parameter("redis-protocol"), |b| {
        b.iter(|| {
            let mut end = 0;
            loop {
                end = (end + 64).min(buf.len());
                if let Some((_, used)) = decode_range(black_box(&buf[..end])).unwrap() {
                    return used;
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, requests, replies, chunked);
criterion_main!(benches);
