//! The bodies of slotway's fuzz targets: hostile input never crashes slotway or grows it without bound.
//!
//! Each body takes arbitrary bytes and panics when an invariant breaks. They run under libFuzzer
//! (`fuzz/fuzz_targets/*.rs`, `scripts/fuzz.sh`) and, over the seed corpus plus pseudo-random mutations, as an
//! ordinary test (`crates/slotway/tests/fuzz_smoke.rs` includes this file as a module).
//!
//! - [`request_decoder`]: client bytes through [`resp::RequestDecoder`], whole and in pseudo-random splits.
//! - [`reply_parser`]: node bytes through [`resp::ReplyScanner`] and [`resp::Value::parse`].
//! - [`routing`]: client requests through the command table, [`slotway::dispatch::plan`] and the split/fan-out
//!   planners.
use bytes::{Bytes, BytesMut};
use resp::{encode, Limits, Protocol, ReplyKind, ReplyScanner, Request, RequestDecoder, Value};
use slotway::cluster::{Health, NodeAddr, NodeInfo, Role, ShardInfo, Slot, SlotMap};
use slotway::command::{key_indexes, route_for, Args, CommandTable, Route, SplitKind};
use slotway::dispatch::{self, fanout, split, Plan};
use slotway::observe::info::LocalInfo;
use slotway::topology::Topology;
use smallvec::SmallVec;
use std::ops::Range;
use std::sync::OnceLock;

/// The limits every input is decoded with: the defaults, small ones, and ones smaller than ordinary lines (so
/// every bound is reached by short inputs).
pub const LIMITS: [Limits; 3] = [
    Limits {
        max_bulk_len: 512 * 1024 * 1024,
        max_array_len: 1024 * 1024 * 1024,
        max_inline_len: 64 * 1024,
        max_depth: 128,
    },
    Limits { max_bulk_len: 40, max_array_len: 6, max_inline_len: 24, max_depth: 3 },
    Limits { max_bulk_len: 3, max_array_len: 2, max_inline_len: 3, max_depth: 1 },
];

/// A small deterministic PRNG (xorshift64*), seeded from the input so runs are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// Seeded with the FNV-1a hash of `data`.
    pub fn for_input(data: &[u8]) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Rng::new(h)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome<T> {
    Frame(T),
    Error(String),
    Incomplete,
}

/// How a stream is fed to a decoder: all at once, in pseudo-random pieces, a byte at a time, or in pieces where
/// the buffer sometimes shrinks back a little (the caller broke the append-only rule: the decoder's documented
/// safety net restarts from offset 0 when its progress is past the end, and the bytes are the same anyway).
#[derive(Clone, Copy)]
enum Feed {
    Whole,
    Random(u64),
    Bytewise,
    Shrinking(u64),
}

/// Feeds `stream` to `step` as `feed` says; `step(buf)` is one decode call on the unconsumed bytes that have
/// "arrived", returning the outcome and the bytes consumed (0 unless a frame).
fn drive<T>(stream: &[u8], feed: Feed, mut step: impl FnMut(&[u8]) -> (Outcome<T>, usize)) -> Vec<Outcome<T>> {
    let mut out = Vec::new();
    let (mut at, mut avail) = (0, if matches!(feed, Feed::Whole) { stream.len() } else { 0 });
    let mut rng = match feed {
        Feed::Random(seed) | Feed::Shrinking(seed) => Some(Rng::new(seed)),
        _ => None,
    };
    let shrinking = matches!(feed, Feed::Shrinking(_));
    loop {
        match step(&stream[at..avail]) {
            (Outcome::Frame(f), used) => {
                assert!(used > 0 && used <= avail - at, "a frame of {used} bytes in a buffer of {}", avail - at);
                out.push(Outcome::Frame(f));
                at += used;
            }
            (Outcome::Incomplete, _) if avail == stream.len() => {
                out.push(Outcome::Incomplete);
                return out;
            }
            (Outcome::Incomplete, _) => {
                avail = match rng.as_mut() {
                    Some(rng) => {
                        let r = rng.next() as usize;
                        if shrinking && avail > at && r.is_multiple_of(4) {
                            // Back by at most 8 bytes, so the stream still arrives in the end.
                            avail - 1 - (r >> 8) % (avail - at).min(8)
                        } else {
                            avail + 1 + (r >> 8) % 9
                        }
                    }
                    None => avail + 1,
                }
                .min(stream.len());
            }
            (Outcome::Error(e), _) => {
                out.push(Outcome::Error(e));
                return out;
            }
        }
    }
}

// ------------------------------------------------------------------------------------------- request decoder

/// A decoded request: its length and arguments, and whether it was an array.
type Decoded = (usize, Vec<Vec<u8>>, bool);

fn decode_requests(stream: &[u8], limits: Limits, feed: Feed) -> Vec<Outcome<Decoded>> {
    let mut d = RequestDecoder::new(limits);
    drive(stream, feed, |buf| match d.decode(buf) {
        Ok(Some(req)) => {
            let len = req.len();
            assert!(!req.is_empty() && len <= buf.len());
            let (args, array) = match req {
                Request::Array { args, .. } => {
                    for r in &args {
                        assert!(r.start <= r.end && r.end <= len, "argument {r:?} outside a {len}-byte frame");
                    }
                    (args.iter().map(|r| buf[r.clone()].to_vec()).collect(), true)
                }
                Request::Inline { args, .. } => (args, false),
            };
            (Outcome::Frame((len, args, array)), len)
        }
        Ok(None) => (Outcome::Incomplete, 0),
        Err(e) => (Outcome::Error(e.0), 0),
    })
}

/// An inline line that `sdssplitargs` reads back as `args`.
fn quote_inline(args: &[Vec<u8>]) -> Vec<u8> {
    let mut line = Vec::new();
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

fn check_requests(stream: &[u8], limits: Limits) {
    let whole = decode_requests(stream, limits, Feed::Whole);
    let mut at = 0;
    for o in &whole {
        let Outcome::Frame((len, args, array)) = o else { break };
        let src = &stream[at..at + len];
        if *array {
            assert_eq!(src[0], b'*');
            assert!(args.len() <= limits.max_array_len, "{} args over the limit", args.len());
            // Memory follows the bytes that arrived: every argument costs at least `$0\r\n\r\n`.
            assert!(args.len() * 6 < *len);
            if args.is_empty() {
                // `*0` or `*-N`: the only arrays with no args.
                let n: i64 = std::str::from_utf8(&src[1..len - 2]).unwrap().parse().unwrap();
                assert!(n <= 0, "*{n} gave no args");
                assert_eq!(&src[len - 2..], b"\r\n");
            } else {
                for a in args {
                    assert!(a.len() <= limits.max_bulk_len);
                }
                // Every array frame re-encodes to exactly the bytes it came from.
                let mut re = BytesMut::new();
                encode::command(&mut re, args);
                assert_eq!(&re[..], src, "array frame does not re-encode to its bytes");
            }
        } else {
            // Inline: the line ends at the first newline, within the limit, and unquoting never grows it.
            let nl = src.iter().position(|&b| b == b'\n');
            assert_eq!(nl, Some(len - 1), "inline frame does not end at its first newline");
            assert!(len - 1 <= limits.max_inline_len);
            assert!(args.iter().map(Vec::len).sum::<usize>() <= *len);
            // Quoting the args reads back the same args.
            let requoted = quote_inline(args);
            let back = decode_requests(&requoted, Limits::default(), Feed::Whole);
            assert_eq!(back[0], Outcome::Frame((requoted.len(), args.clone(), false)), "inline args don't round-trip");
        }
        at += len;
    }
    // Resumable decoding agrees with one-shot decoding however the bytes arrive.
    let seed = Rng::for_input(stream).next();
    assert_eq!(decode_requests(stream, limits, Feed::Random(seed)), whole, "random splits disagree");
    assert_eq!(decode_requests(stream, limits, Feed::Bytewise), whole, "byte-at-a-time disagrees");
    assert_eq!(decode_requests(stream, limits, Feed::Shrinking(seed ^ 1)), whole, "shrinking buffer disagrees");
}

/// Client → proxy bytes: no panic; resumable and one-shot decoding agree; frames re-encode to their bytes.
pub fn request_decoder(data: &[u8]) {
    for limits in LIMITS {
        check_requests(data, limits);
    }
}

// ----------------------------------------------------------------------------------------------- reply parser

fn scan_replies(stream: &[u8], limits: Limits, feed: Feed) -> Vec<Outcome<(usize, ReplyKind)>> {
    let mut s = ReplyScanner::new(limits);
    drive(stream, feed, |buf| match s.scan(buf) {
        Ok(Some(r)) => (Outcome::Frame((r.len, r.kind)), r.len),
        Ok(None) => (Outcome::Incomplete, 0),
        Err(e) => (Outcome::Error(e.0), 0),
    })
}

/// Nesting of non-empty aggregates (what `Limits::max_depth` bounds), and the number of values.
fn shape(v: &Value) -> (usize, usize) {
    let children: Vec<&Value> = match v {
        Value::Array(items) | Value::Set(items) | Value::Push(items) => items.iter().collect(),
        Value::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return (0, 1),
    };
    let (mut depth, mut count) = (0, 1);
    for c in &children {
        let (d, n) = shape(c);
        depth = depth.max(d);
        count += n;
    }
    (if children.is_empty() { 0 } else { depth + 1 }, count)
}

fn check_replies(stream: &[u8], limits: Limits) {
    let whole = scan_replies(stream, limits, Feed::Whole);
    let seed = Rng::for_input(stream).next();
    assert_eq!(scan_replies(stream, limits, Feed::Random(seed)), whole, "random splits disagree");
    assert_eq!(scan_replies(stream, limits, Feed::Bytewise), whole, "byte-at-a-time disagrees");
    assert_eq!(scan_replies(stream, limits, Feed::Shrinking(seed ^ 1)), whole, "shrinking buffer disagrees");

    // Value::parse at the start of every frame the scanner found (and where it stopped) agrees with it.
    let bytes = Bytes::copy_from_slice(stream);
    let mut at = 0;
    for o in &whole {
        let rest = bytes.slice(at..);
        match (o, Value::parse(&rest, &limits)) {
            (_, Ok(Some((v, used)))) => {
                assert_eq!(o, &Outcome::Frame((used, v.reply_kind())), "parse and scanner disagree");
                let (depth, count) = shape(&v);
                assert!(depth <= limits.max_depth, "depth {depth} over the limit {}", limits.max_depth);
                // Memory follows the bytes: every value costs at least 3 bytes (`_\r\n`, `*0\r\n`, ...).
                assert!(count * 3 <= used, "{count} values from {used} bytes");
                // The value re-encodes to something that parses back to the same encoding, and that the scanner
                // frames identically (RESP3 and RESP2).
                for proto in [Protocol::Resp3, Protocol::Resp2] {
                    let re = v.to_bytes(proto);
                    let (v2, used2) = Value::parse(&re, &Limits::default()).unwrap().unwrap();
                    assert_eq!(used2, re.len());
                    assert_eq!(v2.to_bytes(proto), re, "re-encoding is not stable");
                    let scanned = ReplyScanner::new(Limits::default()).scan(&re).unwrap().unwrap();
                    assert_eq!(scanned.len, re.len());
                }
            }
            (Outcome::Frame(_), Ok(None)) => panic!("the scanner found a frame where parse wants more bytes"),
            // Parse validates scalars (integers, doubles, ...) the scanner only delimits; where the scanner is
            // waiting or has failed, parse may wait or fail too.
            _ => {}
        }
        match o {
            Outcome::Frame((len, _)) => at += len,
            _ => break,
        }
    }
}

/// Node → proxy bytes: no panic; the scanner and `Value::parse` agree on lengths and kinds; depth is bounded.
pub fn reply_parser(data: &[u8]) {
    for limits in LIMITS {
        check_replies(data, limits);
    }
}

// ---------------------------------------------------------------------------------------------------- routing

fn table() -> &'static CommandTable {
    static TABLE: OnceLock<CommandTable> = OnceLock::new();
    TABLE.get_or_init(CommandTable::builtin)
}

/// Three shards, like a fresh `redis-cli --cluster create` of three primaries.
fn topology() -> &'static Topology {
    static TOPO: OnceLock<Topology> = OnceLock::new();
    TOPO.get_or_init(|| {
        let shards = [(0, 5460), (5461, 10922), (10923, 16383)]
            .iter()
            .enumerate()
            .map(|(i, &range)| ShardInfo {
                primary: NodeInfo {
                    id: None,
                    addr: NodeAddr::new("127.0.0.1", 7000 + i as u16),
                    ip: None,
                    role: Role::Primary,
                    health: Health::Online,
                    replication_offset: None,
                },
                replicas: vec![],
                slots: vec![range],
            })
            .collect::<Vec<_>>();
        Topology {
            primaries: vec![None; shards.len()],
            replicas: Vec::new(),
            map: SlotMap::new(shards),
            placement: slotway::topology::Placement::Slots,
            version: 1,
            problems: Vec::new(),
        }
    })
}

/// `args` as a RESP frame and each argument's range in it, as the session has them.
fn frame_of(args: &[Vec<u8>]) -> (Bytes, Vec<Range<usize>>) {
    let mut frame = BytesMut::new();
    encode::command(&mut frame, args);
    let mut d = RequestDecoder::new(Limits::default());
    let ranges = match d.decode(&frame).unwrap().unwrap() {
        Request::Array { args, .. } => args.to_vec(),
        Request::Inline { .. } => unreachable!(),
    };
    (frame.freeze(), ranges)
}

/// A sub-request a planner built: one whole RESP array of bulks, nothing after it. Its arguments.
fn sub_request(frame: &[u8]) -> Vec<Vec<u8>> {
    let mut d = RequestDecoder::new(Limits::default());
    match d.decode(frame) {
        Ok(Some(Request::Array { len, args })) if len == frame.len() => {
            args.iter().map(|r| frame[r.clone()].to_vec()).collect()
        }
        other => panic!("a sub-request is not one RESP array: {other:?} for {:?}", String::from_utf8_lossy(frame)),
    }
}

fn check_routing(args_owned: &[Vec<u8>]) {
    let (frame, ranges) = frame_of(args_owned);
    let args = Args { frame: &frame, ranges: &ranges };
    let table = table();

    let info = table.resolve(args);
    let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
    let keys_result = info.map(|info| {
        let r = key_indexes(info, args, &mut keys);
        for &k in &keys {
            assert!(k >= 1 && k < args.len(), "key index {k} of {} args", args.len());
        }
        r
    });
    let route = info.map(|info| route_for(info, args));

    let plan = dispatch::plan(table, args);
    let slot_of = |i: usize| Slot::for_key(args.get(i));
    match &plan {
        // PUBLISH: keyless, routed by its channel (where its subscribers through slotway are).
        Plan::Forward { slot, .. } if route == Some(Route::Publish) => {
            let want = match dispatch::channel_placement(&slotway::topology::Placement::Slots, args.get(1)) {
                dispatch::ChannelPlacement::Slot(s) => Some(s),
                dispatch::ChannelPlacement::EveryPrimary => None,
            };
            assert_eq!(*slot, want, "PUBLISH routed away from its channel's placement");
        }
        Plan::Forward { slot: Some(slot), .. } | Plan::Eval { slot: Some(slot), .. } => {
            assert!(matches!(keys_result, Some(Ok(()))) && !keys.is_empty());
            assert!(keys.iter().all(|&k| slot_of(k) == *slot), "forwarded to a slot that is not every key's");
        }
        Plan::Forward { slot: None, .. } | Plan::Eval { slot: None, .. } => {
            assert!(keys.is_empty() || route == Some(Route::AnyNode), "keys {keys:?} but no slot: {route:?}");
        }
        Plan::Split { kind, .. } => check_split(*kind, args, &keys, route),
        Plan::AllPrimaries { kind, .. } => {
            let parts = fanout::build(*kind, args, &frame, topology(), |request| LocalInfo {
                sum_keyspace: request.wants("keyspace"),
                sum_stats: request.wants("stats"),
                proxy: Some("# Proxy\r\n".to_string()),
                ..LocalInfo::default()
            })
            .expect("three shards serve every slot");
            assert!(!parts.parts.is_empty());
            for (_, part) in &parts.parts {
                sub_request(part);
            }
        }
        Plan::Scan => {
            if let Ok((_, part, _)) = fanout::scan(args, topology()) {
                let sub = sub_request(&part);
                assert_eq!(sub.len(), args.len());
                assert_eq!(sub[0], args.get(0));
            }
        }
        Plan::Blocking { slot: Some(slot), .. } | Plan::Txn { slot: Some(slot), .. } => {
            assert!(keys.iter().all(|&k| slot_of(k) == *slot), "sent to a slot that is not every key's");
        }
        Plan::Blocking { slot: None, .. } | Plan::Txn { slot: None, .. } | Plan::Wait => {}
        Plan::PubSub { slot: Some(slot), .. } => {
            assert!(keys.iter().all(|&k| slot_of(k) == *slot), "shard channels of another slot");
        }
        Plan::PubSub { slot: None, .. } => assert!(keys.is_empty(), "shard channels {keys:?} but no slot"),
        Plan::Local(_) => assert!(matches!(route, Some(Route::Local(_) | Route::AllPrimaries(_)))),
        Plan::Reject(msg) => {
            // The error frame is one well-formed reply.
            let e = dispatch::error_frame(msg);
            let scanned = ReplyScanner::new(Limits::default()).scan(&e).unwrap().unwrap();
            assert_eq!((scanned.len, scanned.kind), (e.len(), ReplyKind::Error));
        }
    }
    check_single_group(info, args, &keys, &plan);
    check_pool(info, args, &keys, &plan);
}

/// A twemproxy-style pool of four shards (ketama over fnv1a_64, hash tag `{}`).
fn pool() -> &'static slotway::topology::Placement {
    static POOL: OnceLock<slotway::topology::Placement> = OnceLock::new();
    POOL.get_or_init(|| {
        use slotway::ring::{CharSign, Distribution, KeyHash, Ring, RingServer, RingSpec};
        let servers = (0..4).map(|i| RingServer { name: format!("127.0.0.1:{}", 6379 + i).into_bytes(), weight: 1 });
        slotway::topology::Placement::Ring(std::sync::Arc::new(Ring::new(RingSpec {
            distribution: Distribution::Ketama,
            hash: KeyHash::Fnv1a_64,
            sign: CharSign::Signed,
            hash_tag: Some(*b"{}"),
            servers: servers.collect(),
        })))
    })
}

/// The same request in front of a pool: keyed requests carry their keys' group and only go whole when every key
/// is in that group; split parts carry keys of their own group only; other cross-group requests are refused.
fn check_pool(info: Option<&slotway::command::CommandInfo>, args: Args<'_>, keys: &[usize], cluster: &Plan) {
    let placement = pool();
    let plan = dispatch::plan_resolved(info, args, placement);
    let group_of = |i: usize| placement.token(args.get(i));
    match &plan {
        Plan::Forward { slot: Some(slot), .. }
        | Plan::Eval { slot: Some(slot), .. }
        | Plan::Blocking { slot: Some(slot), .. }
        | Plan::Txn { slot: Some(slot), .. }
        | Plan::PubSub { slot: Some(slot), .. } => {
            assert!(slot.get() < 4, "a pool's token is one of its four groups: {plan:?}");
            if info.is_none_or(|i| i.name != "publish") {
                assert!(keys.iter().all(|&k| group_of(k) == *slot), "sent to a group that is not every key's");
            }
        }
        Plan::Split { kind, .. } => {
            let s = split::split(*kind, args, placement);
            assert!(s.parts.len() >= 2, "split into {} part(s)", s.parts.len());
            for (group, part) in &s.parts {
                let sub = sub_request(part);
                for k in sub[1..].iter().step_by(kind.step()) {
                    assert_eq!(placement.token(k), *group, "a key in another group's part");
                }
            }
        }
        Plan::Reject(msg) if msg.starts_with("CROSSSLOT") => {
            assert!(keys.iter().any(|&k| group_of(k) != group_of(keys[0])), "CROSSSLOT for keys of one group");
        }
        _ => {}
    }
    // What a cluster forwards whole, a pool forwards whole or splits; it never refuses it as cross-shard unless
    // its keys really are in different groups.
    if let (Plan::Forward { slot: Some(_), .. }, Plan::Reject(msg)) = (cluster, &plan) {
        assert!(!msg.starts_with("CROSSSLOT") || keys.iter().any(|&k| group_of(k) != group_of(keys[0])));
    }
}

/// The same request in front of a single replication group: never split, never CROSSSLOT; keyed requests carry
/// slot 0 (the group's token) and go whole; what a cluster forwards to one slot is forwarded here too.
fn check_single_group(info: Option<&slotway::command::CommandInfo>, args: Args<'_>, keys: &[usize], cluster: &Plan) {
    let plan = dispatch::plan_resolved(info, args, &slotway::topology::Placement::Single);
    assert!(!matches!(plan, Plan::Split { .. } | Plan::Scan), "a single group splits nothing: {plan:?}");
    if let Plan::Reject(msg) = &plan {
        assert!(!msg.starts_with("CROSSSLOT"), "CROSSSLOT in a single group");
    }
    let zero = Some(Slot::new(0).unwrap());
    match &plan {
        Plan::Forward { slot, .. } | Plan::Eval { slot, .. } | Plan::Blocking { slot, .. } | Plan::Txn { slot, .. } => {
            assert!(slot.is_none() || *slot == zero, "a single group's token is slot 0: {plan:?}");
        }
        _ => {}
    }
    if matches!(cluster, Plan::Forward { slot: Some(_), .. }) && !keys.is_empty() {
        assert!(matches!(plan, Plan::Forward { slot: Some(_), .. }), "{cluster:?} became {plan:?}");
    }
}

/// A split command: every key found goes to exactly one part, in a part of its own slot, keys keep their order
/// within a part, and merging well-formed part replies gives the reply one node would have given.
fn check_split(kind: SplitKind, args: Args<'_>, keys: &[usize], route: Option<Route>) {
    assert_eq!(route, Some(Route::Split(kind)));
    let step = kind.step();
    let s = split::split(kind, args, &slotway::topology::Placement::Slots);
    assert!(s.parts.len() >= 2, "split into {} part(s)", s.parts.len());
    let mut carried: Vec<Vec<u8>> = Vec::new();
    let mut replies = Vec::new();
    for (slot, part) in &s.parts {
        let sub = sub_request(part);
        assert_eq!(sub[0], args.get(0));
        assert_eq!((sub.len() - 1) % step, 0);
        let part_keys: Vec<&Vec<u8>> = sub[1..].iter().step_by(step).collect();
        for k in &part_keys {
            assert_eq!(Slot::for_key(k), *slot, "a key in another slot's part");
        }
        // Each part's reply, as a node would answer: MGET echoes the key names.
        let mut reply = BytesMut::new();
        match kind {
            SplitKind::MGet => {
                encode::array_header(&mut reply, part_keys.len());
                part_keys.iter().for_each(|k| encode::bulk(&mut reply, k));
            }
            SplitKind::MSet => encode::simple(&mut reply, "OK"),
            SplitKind::SumIntegers => encode::integer(&mut reply, part_keys.len() as i64),
        }
        replies.push(reply.freeze());
        carried.extend(sub[1..].iter().cloned());
    }
    // Every key (with its value, for MSET) the key spec found is carried by the parts, and nothing else.
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for &k in keys {
        for j in 0..step {
            let i = k + j;
            assert!(
                i < args.len(),
                "{} has key {k} without its value ({} args)",
                String::from_utf8_lossy(args.get(0)),
                args.len()
            );
            expected.push(args.get(i).to_vec());
        }
    }
    let mut sorted_carried = carried.clone();
    sorted_carried.sort();
    expected.sort();
    assert_eq!(sorted_carried, expected, "the parts don't carry exactly the request's keys");

    let merged = s.merge.merge(&replies);
    let mut want = BytesMut::new();
    match kind {
        SplitKind::MGet => {
            encode::array_header(&mut want, keys.len());
            keys.iter().for_each(|&k| encode::bulk(&mut want, args.get(k)));
        }
        SplitKind::MSet => encode::simple(&mut want, "OK"),
        SplitKind::SumIntegers => encode::integer(&mut want, keys.len() as i64),
    }
    assert_eq!(merged, want.freeze(), "merged reply differs from one node's");
}

/// Client requests (RESP arrays or inline lines, as the session decodes them) routed: no panic, and the plan is
/// consistent with the keys the command table finds. The empty request is routed too (the session skips it).
pub fn routing(data: &[u8]) {
    let mut d = RequestDecoder::new(Limits::default());
    let mut at = 0;
    while let Ok(Some(req)) = d.decode(&data[at..]) {
        let args: Vec<Vec<u8>> = match &req {
            Request::Array { args, .. } => args.iter().map(|r| data[at + r.start..at + r.end].to_vec()).collect(),
            Request::Inline { args, .. } => args.clone(),
        };
        check_routing(&args);
        at += req.len();
    }
}
