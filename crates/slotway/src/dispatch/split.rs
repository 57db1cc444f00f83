//! Splitting a multi-key command whose keys span slots (or, in a pool, groups) into one sub-request per slot (per
//! group), and merging the replies back into the one reply the client expects. Pure functions over bytes.
use super::fanout;
use crate::cluster::Slot;
use crate::command::{Args, SplitKind};
use crate::topology::Placement;
use bytes::{Bytes, BytesMut};
use resp::{Limits, ReplyScanner};

/// The sub-requests of one split command and how to merge their replies.
#[derive(Debug)]
pub struct Split {
    /// One per slot: the slot and a complete RESP request for it (same command, that slot's keys).
    pub parts: Vec<(Slot, Bytes)>,
    pub merge: Merge,
}

/// How the parts' replies become the client's one reply: for split multi-key commands (this module) and for
/// commands sent to every primary or walking the shards ([`super::fanout`]).
#[derive(Debug)]
pub enum Merge {
    /// For each key in request order: (part, position of the key within that part's reply array).
    MGet(Vec<(u32, u32)>),
    /// `+OK` when every part said `+OK` (MSET, FLUSHALL, ...).
    AllOk,
    /// The sum of the parts' integers (DEL, EXISTS, DBSIZE, ...).
    SumIntegers,
    /// The parts' arrays concatenated (KEYS).
    Concat,
    /// The first non-nil reply from part `start` on, wrapping (RANDOMKEY; `start` is drawn at random).
    RandomKey { start: usize },
    /// `+OK` if any part said so, else the first part's reply (SCRIPT KILL, FUNCTION KILL).
    AnyOk,
    /// Every part must answer the same bytes (SCRIPT LOAD, FUNCTION LOAD).
    SameReply,
    /// Integer arrays merged element-wise by minimum (SCRIPT EXISTS), or 1 where `known` says so (a script
    /// slotway remembers runs on every node: EVALSHA loads it where it is missing).
    AllOnes { known: Vec<bool> },
    /// PUBSUB CHANNELS / SHARDCHANNELS: the names of every part, each once.
    Union,
    /// PUBSUB NUMSUB: (channel, count) pairs summed per position.
    NumSub,
    /// PUBSUB SHARDNUMSUB: for each channel in argument order, (part, position of its pair in that part's reply).
    Pairs(Vec<(u32, u32)>),
    /// INFO: slotway's own sections, rendered when the request came; the nodes' are merged in (see
    /// [`crate::observe::info::merge`]).
    Info(Box<crate::observe::info::LocalInfo>),
    /// SCAN: the node's cursor re-encoded for the client (see [`super::fanout`]).
    Scan { slot: u16, next: Option<u16> },
}

/// Most bytes RESP adds around one bulk string or array header: `$`, up to 20 digits and two CRLFs.
const BULK_OVERHEAD: usize = 25;

/// Builds one sub-request per token of `placement` (a cluster's slots, a pool's groups). Keys keep their relative
/// order inside each part, so MSET's last-value-wins for a repeated key still holds.
pub fn split(kind: SplitKind, args: Args<'_>, placement: &Placement) -> Split {
    let step = kind.step();
    let name = args.get(0);
    let nkeys = (args.len() - 1) / step;
    // (slot, key number) sorted by slot; stable, so key order within a slot is kept.
    let mut keyed: Vec<(Slot, u32)> = (0..nkeys).map(|k| (placement.token(args.get(1 + k * step)), k as u32)).collect();
    keyed.sort_by_key(|&(slot, _)| slot);

    // Every part's frame is encoded into one buffer and split off it (the parts share one allocation instead of
    // one each: a 100-key MGET over 100 slots otherwise spends a fifth of its CPU in malloc and free).
    let groups = 1 + keyed.windows(2).filter(|w| w[0].0 != w[1].0).count();
    let mut parts = Vec::with_capacity(groups);
    let args_len: usize = (1..args.len()).map(|i| args.get(i).len() + BULK_OVERHEAD).sum();
    let mut frames = BytesMut::with_capacity(args_len + groups * (name.len() + 2 * BULK_OVERHEAD));
    let mut order = vec![(0u32, 0u32); if kind == SplitKind::MGet { nkeys } else { 0 }];
    let mut i = 0;
    while i < keyed.len() {
        let slot = keyed[i].0;
        let end = i + keyed[i..].iter().take_while(|(s, _)| *s == slot).count();
        let group = &keyed[i..end];
        resp::encode::array_header(&mut frames, 1 + group.len() * step);
        resp::encode::bulk(&mut frames, name);
        for (pos, &(_, k)) in group.iter().enumerate() {
            for j in 0..step {
                resp::encode::bulk(&mut frames, args.get(1 + k as usize * step + j));
            }
            if kind == SplitKind::MGet {
                order[k as usize] = (parts.len() as u32, pos as u32);
            }
        }
        parts.push((slot, frames.split().freeze()));
        i = end;
    }
    let merge = match kind {
        SplitKind::MGet => Merge::MGet(order),
        SplitKind::MSet => Merge::AllOk,
        SplitKind::SumIntegers => Merge::SumIntegers,
    };
    Split { parts, merge }
}

impl Merge {
    /// The client's reply from every part's reply (in part order). The first error reply, if any, wins (except
    /// for [`Merge::AnyOk`]): the client sees what went wrong, as it would from one node.
    pub fn merge(&self, replies: &[Bytes]) -> Bytes {
        if !matches!(self, Merge::AnyOk) {
            if let Some(err) = replies.iter().find(|r| matches!(r.first(), Some(b'-' | b'!'))) {
                return err.clone();
            }
        }
        let mut out = BytesMut::new();
        let or_unexpected = |r: Result<Bytes, usize>| r.unwrap_or_else(|i| unexpected(&replies[i]));
        match self {
            Merge::AllOk => resp::encode::simple(&mut out, "OK"),
            Merge::Concat => return or_unexpected(fanout::concat(replies)),
            Merge::RandomKey { start } => return fanout::random_key(replies, *start),
            Merge::AnyOk => return fanout::any_ok(replies),
            Merge::SameReply => return fanout::same_reply(replies),
            Merge::AllOnes { known } => return or_unexpected(fanout::all_ones(replies, known)),
            Merge::Union => return or_unexpected(fanout::union(replies)),
            Merge::NumSub => return or_unexpected(fanout::numsub(replies)),
            Merge::Pairs(order) => return or_unexpected(fanout::pick_pairs(replies, order)),
            Merge::Info(local) => return or_unexpected(fanout::info(replies, local)),
            Merge::Scan { slot, next } => {
                return match fanout::scan_reply(&replies[0], *slot, *next) {
                    Ok(r) => r,
                    Err(e) if e.starts_with(b"-") => e,
                    Err(r) => unexpected(&r),
                }
            }
            Merge::SumIntegers => {
                let mut sum: i64 = 0;
                for r in replies {
                    match parse_integer(r) {
                        Some(n) => sum = sum.saturating_add(n),
                        None => return unexpected(r),
                    }
                }
                resp::encode::integer(&mut out, sum);
            }
            Merge::MGet(order) => {
                // Every part's elements in one list (`starts[part]..starts[part + 1]`), not a list per part.
                let mut elements = Vec::with_capacity(order.len());
                let mut starts = Vec::with_capacity(replies.len() + 1);
                for r in replies {
                    starts.push(elements.len());
                    if array_elements(r, &mut elements).is_none() {
                        return unexpected(r);
                    }
                }
                starts.push(elements.len());
                out.reserve(replies.iter().map(|r| r.len()).sum::<usize>() + BULK_OVERHEAD);
                resp::encode::array_header(&mut out, order.len());
                for &(part, pos) in order {
                    let (part, pos) = (part as usize, pos as usize);
                    match elements[starts[part]..starts[part + 1]].get(pos) {
                        Some(range) => out.extend_from_slice(&replies[part][range.clone()]),
                        None => return unexpected(&replies[part]),
                    }
                }
            }
        }
        out.freeze()
    }
}

fn unexpected(reply: &[u8]) -> Bytes {
    let shown = String::from_utf8_lossy(&reply[..reply.len().min(64)]).replace(['\r', '\n'], " ");
    let mut out = BytesMut::new();
    resp::encode::error(&mut out, &format!("ERR slotway: unexpected reply from a node to part of a command: {shown}"));
    out.freeze()
}

/// `:<n>\r\n` → n.
fn parse_integer(reply: &[u8]) -> Option<i64> {
    let body = reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(body).ok()?.parse().ok()
}

/// Appends the byte ranges of each element of an array reply (RESP2 `*` or RESP3 `*`), in order, to `ranges`;
/// None if the reply is not a whole array.
fn array_elements(reply: &[u8], ranges: &mut Vec<std::ops::Range<usize>>) -> Option<()> {
    let header_end = reply.iter().position(|&b| b == b'\n')? + 1;
    let count: usize = std::str::from_utf8(reply.strip_prefix(b"*")?.get(..header_end - 3)?).ok()?.parse().ok()?;
    let mut scanner = ReplyScanner::new(Limits::node_replies());
    let mut at = header_end;
    for _ in 0..count {
        let found = scanner.scan(&reply[at..]).ok()??;
        ranges.push(at..at + found.len);
        at += found.len;
    }
    (at == reply.len()).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dispatch::tests::words as args_of;

    fn split_words(kind: SplitKind, words: &[&str]) -> Split {
        let (frame, ranges) = args_of(words);
        split(kind, Args { frame: &frame, ranges: &ranges }, &Placement::Slots)
    }

    #[test]
    fn mget_groups_keys_by_slot_and_merges_in_key_order() {
        // {a}x and {a}y share a slot; b and c are elsewhere.
        let s = split_words(SplitKind::MGet, &["MGET", "{a}x", "b", "{a}y", "c"]);
        assert_eq!(s.parts.len(), 3);
        let part_of =
            |key: &str| s.parts.iter().position(|(_, f)| f.windows(key.len()).any(|w| w == key.as_bytes())).unwrap();
        let pa = part_of("{a}x");
        assert_eq!(pa, part_of("{a}y"));
        assert_eq!(&s.parts[pa].1[..], b"*3\r\n$4\r\nMGET\r\n$4\r\n{a}x\r\n$4\r\n{a}y\r\n");
        // Replies: the {a} part answers [x, y], b → nil, c → "C".
        let mut replies = vec![Bytes::new(); 3];
        replies[pa] = Bytes::from_static(b"*2\r\n$1\r\nX\r\n$1\r\nY\r\n");
        replies[part_of("b")] = Bytes::from_static(b"*1\r\n$-1\r\n");
        replies[part_of("c")] = Bytes::from_static(b"*1\r\n$1\r\nC\r\n");
        assert_eq!(&s.merge.merge(&replies)[..], b"*4\r\n$1\r\nX\r\n$-1\r\n$1\r\nY\r\n$1\r\nC\r\n");
    }

    #[test]
    fn mset_keeps_pairs_and_order_within_a_slot() {
        let s = split_words(SplitKind::MSet, &["MSET", "k", "1", "other", "2", "k", "3"]);
        assert_eq!(s.parts.len(), 2);
        let k_part = s.parts.iter().find(|(_, f)| f.starts_with(b"*5\r\n")).expect("k's part has both pairs");
        assert_eq!(&k_part.1[..], b"*5\r\n$4\r\nMSET\r\n$1\r\nk\r\n$1\r\n1\r\n$1\r\nk\r\n$1\r\n3\r\n");
        let ok = Bytes::from_static(b"+OK\r\n");
        assert_eq!(&s.merge.merge(&[ok.clone(), ok])[..], b"+OK\r\n");
    }

    #[test]
    fn sums_and_errors() {
        let s = split_words(SplitKind::SumIntegers, &["DEL", "a", "b", "c"]);
        let n = s.parts.len();
        let replies: Vec<Bytes> = (0..n).map(|_| Bytes::from_static(b":1\r\n")).collect();
        assert_eq!(s.merge.merge(&replies), format!(":{n}\r\n").as_bytes());
        let mut with_err = replies.clone();
        with_err[n - 1] = Bytes::from_static(b"-ERR boom\r\n");
        assert_eq!(&s.merge.merge(&with_err)[..], b"-ERR boom\r\n");
        let garbage = vec![Bytes::from_static(b"+what\r\n"); n];
        assert!(s.merge.merge(&garbage).starts_with(b"-ERR slotway: unexpected reply"));
    }

    #[test]
    fn mget_of_many_keys_splits_per_slot() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("key:{i}")).collect();
        let mut words = vec!["MGET"];
        words.extend(keys.iter().map(|k| k.as_str()));
        let s = split_words(SplitKind::MGet, &words);
        let distinct: std::collections::BTreeSet<u16> =
            keys.iter().map(|k| Slot::for_key(k.as_bytes()).get()).collect();
        assert_eq!(s.parts.len(), distinct.len());
        let Merge::MGet(order) = &s.merge else { panic!() };
        assert_eq!(order.len(), 10_000);
    }
}
