//! Property tests: random byte streams never panic and decode to frames that re-encode to the same bytes;
//! chunked (resumable) decoding agrees with whole-buffer decoding; random Values round-trip.
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use resp::{encode, Limits, Protocol, ReplyKind, ReplyScanner, Request, RequestDecoder, Value};

fn tiny_limits() -> Limits {
    Limits { max_bulk_len: 40, max_array_len: 6, max_inline_len: 24, max_depth: 3 }
}

/// Smaller than some lines, so the line-length bounds are hit by ordinary frames.
fn minuscule_limits() -> Limits {
    Limits { max_bulk_len: 3, max_array_len: 2, max_inline_len: 3, max_depth: 1 }
}

/// Streams that look like RESP often enough to reach every branch.
fn resp_ish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\\x4".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"0".to_vec()),
        Just(b"?".to_vec()),
        Just(b"+OK".to_vec()),
        Just(b"%".to_vec()),
        Just(b"|".to_vec()),
        Just(b"~".to_vec()),
        Just(b">".to_vec()),
        Just(b":".to_vec()),
        Just(b"_".to_vec()),
        Just(b"=".to_vec()),
        Just(b",".to_vec()),
        Just(b"#t".to_vec()),
        (0u8..12).prop_map(|n| n.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..6),
        prop::collection::vec(b'a'..=b'e', 1..4),
    ];
    // Whole, mostly valid pieces, so frames (and nesting) actually occur.
    let piece = prop_oneof![
        4 => (-2i32..5).prop_map(|n| format!("*{n}\r\n").into_bytes()),
        6 => prop::collection::vec(any::<u8>(), 0..6).prop_map(|d| {
            let mut v = format!("${}\r\n", d.len()).into_bytes();
            v.extend_from_slice(&d);
            v.extend_from_slice(b"\r\n");
            v
        }),
        1 => (prop::sample::select(vec!['%', '~', '>', '|']), 0u8..3).prop_map(|(t, n)| format!("{t}{n}\r\n").into_bytes()),
        1 => prop::sample::select(vec![
            &b"+OK\r\n"[..], b":-12\r\n", b"_\r\n", b",1.5\r\n", b"#f\r\n", b"(123\r\n", b"=5\r\ntxt:a\r\n",
            b"!1\r\nE\r\n", b"-ERR\r\n", b"$-1\r\n", b"GET \"k\" 'v'\r\n",
        ]).prop_map(|p| p.to_vec()),
        1 => prop::collection::vec(any::<u8>(), 1..3),
    ];
    prop_oneof![
        prop::collection::vec(token, 0..40).prop_map(|t| t.concat()),
        prop::collection::vec(piece, 0..16).prop_map(|t| t.concat()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// Random cut points for feeding a stream in pieces.
fn chunks() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..9, 1..40)
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome<T> {
    Frame(T),
    Error(String),
    Incomplete,
}

/// Decodes `stream` front to back with whole-buffer calls.
fn requests_whole(stream: &[u8], limits: Limits) -> Vec<Outcome<(usize, Vec<Vec<u8>>)>> {
    let mut d = RequestDecoder::new(limits);
    let mut out = vec![];
    let mut at = 0;
    loop {
        match d.decode(&stream[at..]) {
            Ok(Some(r)) => {
                let len = r.len();
                out.push(Outcome::Frame((len, args_of(&stream[at..], r))));
                at += len;
            }
            Ok(None) => {
                out.push(Outcome::Incomplete);
                return out;
            }
            Err(e) => {
                out.push(Outcome::Error(e.0));
                return out;
            }
        }
    }
}

/// The same, but the stream arrives in pieces (cut at `cuts`, then byte by byte) through one decoder.
fn requests_chunked(stream: &[u8], limits: Limits, cuts: &[usize]) -> Vec<Outcome<(usize, Vec<Vec<u8>>)>> {
    let mut d = RequestDecoder::new(limits);
    let mut out = vec![];
    let (mut at, mut avail) = (0, 0);
    let mut cuts = cuts.iter().copied().chain(std::iter::repeat(1));
    loop {
        match d.decode(&stream[at..avail]) {
            Ok(Some(r)) => {
                let len = r.len();
                out.push(Outcome::Frame((len, args_of(&stream[at..], r))));
                at += len;
            }
            Ok(None) if avail == stream.len() => {
                out.push(Outcome::Incomplete);
                return out;
            }
            Ok(None) => avail = (avail + cuts.next().unwrap()).min(stream.len()),
            Err(e) => {
                out.push(Outcome::Error(e.0));
                return out;
            }
        }
    }
}

fn args_of(buf: &[u8], r: Request) -> Vec<Vec<u8>> {
    match r {
        Request::Array { args, .. } => args.iter().map(|a| buf[a.clone()].to_vec()).collect(),
        Request::Inline { args, .. } => args,
    }
}

/// An inline line that `sdssplitargs` reads back as `args`.
fn quote_inline(args: &[Vec<u8>]) -> Vec<u8> {
    let mut line = vec![];
    for a in args {
        line.extend_from_slice(b" \"");
        for &b in a {
            line.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
        line.push(b'"');
    }
    line.push(b'\n');
    line
}

fn check_request_stream(stream: &[u8], limits: Limits, cuts: &[usize]) -> Result<(), TestCaseError> {
    let whole = requests_whole(stream, limits);
    // Every frame re-encodes to exactly the bytes it came from.
    let mut at = 0;
    for o in &whole {
        let Outcome::Frame((len, args)) = o else { break };
        let src = &stream[at..at + len];
        if src[0] == b'*' {
            if args.is_empty() {
                // `*0` or `*-N`: the only arrays with no args.
                let n = std::str::from_utf8(&src[1..len - 2]).unwrap().parse::<i64>().unwrap();
                prop_assert!(n <= 0);
                prop_assert_eq!(&src[len - 2..], b"\r\n");
            } else {
                let mut re = BytesMut::new();
                encode::command(&mut re, args);
                prop_assert_eq!(&re[..], src);
            }
        } else {
            // Inline: the line ends at the first newline, and quoting the args reads back the same args.
            prop_assert_eq!(memchr::memchr(b'\n', src), Some(len - 1));
            let requoted = quote_inline(args);
            let mut d = RequestDecoder::new(Limits::default());
            let back = d.decode(&requoted).unwrap().unwrap();
            prop_assert_eq!(&args_of(&requoted, back), args);
        }
        at += len;
    }
    // Feeding the same bytes in pieces changes nothing.
    prop_assert_eq!(requests_chunked(stream, limits, cuts), whole);
    Ok(())
}

fn scan_whole(stream: &[u8], limits: Limits) -> Vec<Outcome<(usize, ReplyKind)>> {
    let mut s = ReplyScanner::new(limits);
    let mut out = vec![];
    let mut at = 0;
    loop {
        match s.scan(&stream[at..]) {
            Ok(Some(r)) => {
                out.push(Outcome::Frame((r.len, r.kind)));
                at += r.len;
            }
            Ok(None) => {
                out.push(Outcome::Incomplete);
                return out;
            }
            Err(e) => {
                out.push(Outcome::Error(e.0));
                return out;
            }
        }
    }
}

fn scan_chunked(stream: &[u8], limits: Limits, cuts: &[usize]) -> Vec<Outcome<(usize, ReplyKind)>> {
    let mut s = ReplyScanner::new(limits);
    let mut out = vec![];
    let (mut at, mut avail) = (0, 0);
    let mut cuts = cuts.iter().copied().chain(std::iter::repeat(1));
    loop {
        match s.scan(&stream[at..avail]) {
            Ok(Some(r)) => {
                out.push(Outcome::Frame((r.len, r.kind)));
                at += r.len;
            }
            Ok(None) if avail == stream.len() => {
                out.push(Outcome::Incomplete);
                return out;
            }
            Ok(None) => avail = (avail + cuts.next().unwrap()).min(stream.len()),
            Err(e) => {
                out.push(Outcome::Error(e.0));
                return out;
            }
        }
    }
}

fn check_reply_stream(stream: &[u8], limits: Limits, cuts: &[usize]) -> Result<(), TestCaseError> {
    let whole = scan_whole(stream, limits);
    prop_assert_eq!(scan_chunked(stream, limits, cuts), whole.clone());
    // Whatever Value::parse accepts, the scanner frames identically, and the value re-encodes and re-parses.
    let bytes = Bytes::copy_from_slice(stream);
    if let Ok(Some((v, used))) = Value::parse(&bytes, &limits) {
        prop_assert!(matches!(whole[0], Outcome::Frame((len, _)) if len == used), "{:?} vs {}", whole[0], used);
        let re = v.to_bytes(Protocol::Resp3);
        let (v2, used2) = Value::parse(&re, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(used2, re.len());
        prop_assert_eq!(v2.to_bytes(Protocol::Resp3), re);
    }
    Ok(())
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn arb_line(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'), 0..max)
        .prop_map(Bytes::from)
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        arb_line(12).prop_map(Value::Simple),
        arb_line(12).prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        arb_bytes(20).prop_map(Value::Bulk),
        Just(Value::Nil),
        (prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO | prop::num::f64::INFINITE)
            .prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
        "-?[1-9][0-9]{0,40}".prop_map(|s| Value::BigNumber(Bytes::from(s))),
        (any::<[u8; 3]>(), arb_bytes(12)).prop_map(|(format, text)| Value::Verbatim { format, text }),
        arb_bytes(12).prop_map(Value::BlobError),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Value::Map),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Set),
            prop::collection::vec(inner, 0..6).prop_map(Value::Push),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn request_streams(stream in resp_ish(), cuts in chunks()) {
        check_request_stream(&stream, Limits::default(), &cuts)?;
        check_request_stream(&stream, tiny_limits(), &cuts)?;
        check_request_stream(&stream, minuscule_limits(), &cuts)?;
    }

    #[test]
    fn request_frames_of_random_args(
        frames in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..30), 1..12), 1..4),
        cuts in chunks(),
    ) {
        let mut stream = BytesMut::new();
        for f in &frames {
            encode::command(&mut stream, f);
        }
        let whole = requests_whole(&stream, Limits::default());
        prop_assert_eq!(whole.len(), frames.len() + 1);
        for (o, f) in whole.iter().zip(&frames) {
            prop_assert!(matches!(o, Outcome::Frame((_, args)) if args == f));
        }
        prop_assert_eq!(requests_chunked(&stream, Limits::default(), &cuts), whole);
    }

    #[test]
    fn reply_streams(stream in resp_ish(), cuts in chunks()) {
        check_reply_stream(&stream, Limits::default(), &cuts)?;
        check_reply_stream(&stream, tiny_limits(), &cuts)?;
        check_reply_stream(&stream, minuscule_limits(), &cuts)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn values_round_trip(v in arb_value(), cuts in chunks()) {
        let limits = Limits::default();
        let enc = v.to_bytes(Protocol::Resp3);
        let mut with_next = BytesMut::from(&enc[..]);
        with_next.extend_from_slice(b"+next\r\n");
        let mut s = ReplyScanner::new(limits);
        let scanned = s.scan(&with_next).unwrap().unwrap();
        prop_assert_eq!(scanned.len, enc.len());
        prop_assert_eq!(scanned.kind, v.reply_kind());
        prop_assert_eq!(scan_chunked(&enc, limits, &cuts)[0].clone(), Outcome::Frame((enc.len(), v.reply_kind())));
        let (back, used) = Value::parse(&with_next.freeze(), &limits).unwrap().unwrap();
        prop_assert_eq!(used, enc.len());
        prop_assert_eq!(&back, &v);

        // RESP2 framing: same scanner/parser agreement on lengths (the value itself is flattened).
        let enc2 = v.to_bytes(Protocol::Resp2);
        prop_assert_eq!(ReplyScanner::new(limits).scan(&enc2).unwrap().map(|r| r.len), Some(enc2.len()));
        let (_, used2) = Value::parse(&enc2, &limits).unwrap().unwrap();
        prop_assert_eq!(used2, enc2.len());
    }
}
