//! Every sample frame fed at every byte boundary: to one decoder (the resumable path) and to a fresh one each
//! time; strict prefixes give `None`, the whole frame the right result; also two frames back to back.
use bytes::{Bytes, BytesMut};
use resp::{encode, Limits, ReplyKind, ReplyScanner, Request, RequestDecoder, ScannedReply, Value};

/// A decoded request as (len, inline?, args as bytes).
type Decoded = (usize, bool, Vec<Vec<u8>>);

fn materialize(buf: &[u8], req: Request) -> Decoded {
    match req {
        Request::Array { len, args } => (len, false, args.iter().map(|r| buf[r.clone()].to_vec()).collect()),
        Request::Inline { len, args } => (len, true, args),
    }
}

fn arr(items: &[&[u8]]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode::command(&mut out, items);
    out.to_vec()
}

fn request_samples() -> Vec<(Vec<u8>, Decoded)> {
    let owned = |v: &[&[u8]]| v.iter().map(|a| a.to_vec()).collect::<Vec<_>>();
    let mut samples = vec![
        (b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n".to_vec(), (33, false, owned(&[b"SET", b"key", b"value"]))),
        (b"*0\r\n".to_vec(), (4, false, vec![])),
        (b"*-1\r\n".to_vec(), (5, false, vec![])),
        (b"*2\r\n$0\r\n\r\n$4\r\n\r\n\r\n\r\n".to_vec(), (20, false, owned(&[b"", b"\r\n\r\n"]))),
        (b"PING\r\n".to_vec(), (6, true, owned(&[b"PING"]))),
        (b"PING\n".to_vec(), (5, true, owned(&[b"PING"]))),
        (b"\r\n".to_vec(), (2, true, vec![])),
        (b"SET \"a b\\x41\\n\" 'c\\'d' plain\r\n".to_vec(), (30, true, owned(&[b"SET", b"a bA\n", b"c'd", b"plain"]))),
    ];
    // 9 args: the SmallVec spills.
    let nine: Vec<&[u8]> = vec![b"MSET", b"a", b"1", b"b", b"2", b"c", b"3", b"d", b"4"];
    let f = arr(&nine);
    samples.push((f.clone(), (f.len(), false, owned(&nine))));
    // A big array: 300 keys.
    let keys: Vec<Vec<u8>> =
        std::iter::once(b"MGET".to_vec()).chain((0..300).map(|i| format!("key:{i:04}").into_bytes())).collect();
    let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    let f = arr(&key_refs);
    samples.push((f.clone(), (f.len(), false, keys.clone())));
    // A 2,000-byte binary value.
    let big: Vec<u8> = (0..2000u32).map(|i| (i % 256) as u8).collect();
    let f = arr(&[b"SET", b"k", &big]);
    samples.push((f.clone(), (f.len(), false, vec![b"SET".to_vec(), b"k".to_vec(), big])));
    samples
}

#[test]
fn requests_at_every_byte_boundary() {
    for (frame, expected) in request_samples() {
        assert_eq!(expected.0, frame.len(), "sample length");
        let name = String::from_utf8_lossy(&frame[..frame.len().min(40)]).into_owned();
        // Resumable: one decoder sees every prefix.
        let mut d = RequestDecoder::new(Limits::default());
        for k in 0..frame.len() {
            assert_eq!(d.decode(&frame[..k]).unwrap(), None, "{name}: resumable prefix {k}");
        }
        let got = d.decode(&frame).unwrap().expect("whole frame");
        assert_eq!(materialize(&frame, got), expected, "{name}: resumable");
        // Fresh decoder for each prefix.
        for k in 0..frame.len() {
            assert_eq!(RequestDecoder::new(Limits::default()).decode(&frame[..k]).unwrap(), None, "{name}: fresh {k}");
        }
        let got = RequestDecoder::new(Limits::default()).decode(&frame).unwrap().unwrap();
        assert_eq!(materialize(&frame, got), expected, "{name}: fresh");
    }
}

#[test]
fn requests_back_to_back() {
    let samples = request_samples();
    for (a, ea) in &samples {
        for (b, eb) in samples.iter().take(9) {
            let all = [a.as_slice(), b.as_slice()].concat();
            let expected = [ea.clone(), eb.clone()];
            // Whole buffer: two frames, then nothing.
            let mut d = RequestDecoder::new(Limits::default());
            let first = d.decode(&all).unwrap().unwrap();
            let l1 = first.len();
            assert_eq!(materialize(&all, first), expected[0]);
            let second = d.decode(&all[l1..]).unwrap().unwrap();
            assert_eq!(materialize(&all[l1..], second), expected[1]);
            assert_eq!(d.decode(&all[l1 + b.len()..]).unwrap(), None);
            // Byte by byte through one decoder, removing each frame as it is found.
            let mut d = RequestDecoder::new(Limits::default());
            let (mut consumed, mut found) = (0, 0);
            for k in 0..=all.len() {
                while let Some(req) = d.decode(&all[consumed..k]).unwrap() {
                    let len = req.len();
                    assert_eq!(materialize(&all[consumed..k], req), expected[found]);
                    assert_eq!(consumed + len, k, "found exactly when its last byte arrived");
                    consumed += len;
                    found += 1;
                }
            }
            assert_eq!((found, consumed), (2, all.len()));
        }
    }
}

fn reply_samples() -> Vec<(Vec<u8>, ReplyKind)> {
    use ReplyKind::*;
    let mut samples: Vec<(Vec<u8>, ReplyKind)> = [
        (&b"+OK\r\n"[..], Simple),
        (b"-MOVED 3999 127.0.0.1:6381\r\n", Error),
        (b":1000\r\n", Integer),
        (b"$5\r\nhello\r\n", Bulk),
        (b"$0\r\n\r\n", Bulk),
        (b"$-1\r\n", Null),
        (b"*-1\r\n", Null),
        (b"_\r\n", Null),
        (b"*0\r\n", Array),
        (b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n", Array),
        (b"%2\r\n+first\r\n*2\r\n:1\r\n~1\r\n+s\r\n$6\r\nsecond\r\n%1\r\n+k\r\n#f\r\n", Map),
        (b"~3\r\n+a\r\n,3.14\r\n(12345678901234567890\r\n", Set),
        (b">4\r\n$7\r\nmessage\r\n$2\r\nch\r\n=6\r\ntxt:hi\r\n!3\r\nERR\r\n", Push),
        (b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n", Array),
        (b"*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n%1\r\n|0\r\n+k\r\n_\r\n", Array),
        (b",-inf\r\n", Double),
        (b"#t\r\n", Boolean),
        (b"(-3492890328409238509324850943850943825024385\r\n", BigNumber),
        (b"=15\r\ntxt:Some string\r\n", Verbatim),
        (b"!21\r\nSYNTAX invalid syntax\r\n", BlobError),
    ]
    .iter()
    .map(|(f, k)| (f.to_vec(), *k))
    .collect();
    // A 300-element array of bulks.
    let items: Vec<Value> = (0..300).map(|i| Value::bulk(format!("value:{i}"))).collect();
    samples.push((Value::Array(items).to_bytes(resp::Protocol::Resp3).to_vec(), Array));
    // 60 levels deep.
    let mut deep = b"*1\r\n".repeat(60);
    deep.extend_from_slice(b"%1\r\n+k\r\n+v\r\n");
    samples.push((deep, Array));
    samples
}

#[test]
fn replies_at_every_byte_boundary() {
    let limits = Limits::default();
    for (frame, kind) in reply_samples() {
        let name = String::from_utf8_lossy(&frame[..frame.len().min(40)]).into_owned();
        let want = Some(ScannedReply { len: frame.len(), kind });
        let mut s = ReplyScanner::new(limits);
        for k in 0..frame.len() {
            assert_eq!(s.scan(&frame[..k]).unwrap(), None, "{name}: resumable prefix {k}");
        }
        assert_eq!(s.scan(&frame).unwrap(), want, "{name}: resumable");
        let bytes = Bytes::from(frame.clone());
        for k in 0..frame.len() {
            assert_eq!(ReplyScanner::new(limits).scan(&frame[..k]).unwrap(), None, "{name}: fresh {k}");
            assert_eq!(Value::parse(&bytes.slice(..k), &limits).unwrap(), None, "{name}: Value::parse {k}");
        }
        assert_eq!(ReplyScanner::new(limits).scan(&frame).unwrap(), want, "{name}: fresh");
        let (_, used) = Value::parse(&bytes, &limits).unwrap().unwrap();
        assert_eq!(used, frame.len(), "{name}: Value::parse");
    }
}

#[test]
fn replies_back_to_back() {
    let samples = reply_samples();
    for (a, ka) in &samples {
        for (b, kb) in samples.iter().take(16) {
            let all = [a.as_slice(), b.as_slice()].concat();
            let expected = [ScannedReply { len: a.len(), kind: *ka }, ScannedReply { len: b.len(), kind: *kb }];
            let mut s = ReplyScanner::new(Limits::default());
            assert_eq!(s.scan(&all).unwrap(), Some(expected[0]));
            assert_eq!(s.scan(&all[a.len()..]).unwrap(), Some(expected[1]));
            let mut s = ReplyScanner::new(Limits::default());
            let (mut consumed, mut found) = (0, 0);
            for k in 0..=all.len() {
                while let Some(r) = s.scan(&all[consumed..k]).unwrap() {
                    assert_eq!(r, expected[found]);
                    assert_eq!(consumed + r.len, k);
                    consumed += r.len;
                    found += 1;
                }
            }
            assert_eq!((found, consumed), (2, all.len()));
        }
    }
}
