//! Keyless commands that need the whole cluster, and SCAN. Pure functions over bytes and a topology.
//!
//! **All primaries.** A command such as DBSIZE or FLUSHALL becomes one part per shard that serves slots. Each part
//! is routed by the *first slot* its shard served when the request arrived, not by a node address: a retry after
//! an unreachable node or CLUSTERDOWN goes to whichever primary serves that slot by then (the failed-over one), and
//! a shard whose primary is down fails the request (after the usual retries) instead of leaving its keys out. The
//! parts' replies are merged as [`FanOut`] says ([`Merge`]).
//!
//! **SCAN.** The client sees one cursor that walks the shards in turn, ordered by their first slot:
//!
//! ```text
//! client cursor = node_cursor << 14 | slot        (slot: 14 bits, the first slot of the shard being walked)
//! ```
//!
//! Cursor 0 starts at the shard with the lowest first slot. A request goes to the primary serving `slot` with the
//! node's own cursor; when the node answers cursor 0 the shard is done and the client gets the next shard's first
//! slot as cursor (node cursor 0), or 0 after the last shard. MATCH, COUNT and TYPE go to the node as given. As long
//! as the topology doesn't change, every key that exists for the whole walk is returned at least once (Redis's own
//! guarantee, per shard). Across a failover the node's cursor is meaningless to the new primary (each process hashes
//! with its own seed), and across resharding keys move between shards walked and not yet walked: keys may then be
//! missed or repeated; the walk itself always ends. A node cursor that doesn't fit in 50 bits can't be encoded and
//! is an error (a node's cursor is bounded by its hash table size, far below that).
use super::split::Merge;
use crate::cluster::{Slot, SLOT_COUNT};
use crate::command::{Args, FanOut};
use crate::observe::info::{InfoRequest, LocalInfo};
use crate::topology::{Placement, Topology};
use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

/// Bits of the client's SCAN cursor that name the slot (and so the shard) being walked.
pub const SCAN_SLOT_BITS: u32 = 14;
const SCAN_SLOT_MASK: u64 = (1 << SCAN_SLOT_BITS) - 1;

/// The error for a request when no shard serves slots (or the cursor's slot).
pub const NOT_SERVED: &str = "CLUSTERDOWN Hash slot not served";

/// The sub-requests of a fan-out: each part's routing slot (None: any primary) and frame, and how to merge.
#[derive(Debug)]
pub struct Parts {
    pub parts: Vec<(Option<Slot>, Bytes)>,
    pub merge: Merge,
}

/// The first slot of every shard that serves slots, ascending: one routing target per shard. A single replication
/// group is one target (slot 0 stands for it: every key is its own); a pool's groups are their own tokens (those
/// not ejected from the ring).
pub fn shard_slots(topo: &Topology) -> SmallVec<[Slot; 8]> {
    match &topo.placement {
        Placement::Single => return smallvec::smallvec![Slot::ZERO],
        Placement::Ring(_) => return topo.serving_groups().filter_map(|g| Slot::new(g as u16)).collect(),
        Placement::Slots => {}
    }
    let mut v: SmallVec<[Slot; 8]> =
        topo.map.shards.iter().filter_map(|s| s.slots.iter().map(|&(a, _)| a).min()).filter_map(Slot::new).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Plans a command for every primary. `local_info` renders slotway's own INFO sections for the request (INFO
/// only). Errors (the client's reply, without `-`) when no shard serves slots.
pub fn build(
    kind: FanOut,
    args: Args<'_>,
    frame: &Bytes,
    topo: &Topology,
    local_info: impl FnOnce(&InfoRequest) -> LocalInfo,
) -> Result<Parts, String> {
    let shards = shard_slots(topo);
    if shards.is_empty() {
        return Err(NOT_SERVED.to_string());
    }
    let every = || shards.iter().map(|&s| (Some(s), frame.clone())).collect::<Vec<_>>();
    let (parts, merge) = match kind {
        FanOut::Info => {
            let request = InfoRequest::parse(args);
            let local = local_info(&request);
            // Sections summed over the primaries need every one; otherwise one node answers (the client's own
            // frame: nodes ignore `proxy`).
            let parts = if local.sum_keyspace || local.sum_stats { every() } else { vec![(None, frame.clone())] };
            (parts, Merge::Info(Box::new(local)))
        }
        FanOut::SumIntegers => (every(), Merge::SumIntegers),
        FanOut::ConcatArrays => (every(), Merge::Concat),
        FanOut::RandomKey => (every(), Merge::RandomKey { start: rand::random_range(0..shards.len()) }),
        // (The session sends EveryNode commands by `every_node`; as a plan of its own it is every primary.)
        FanOut::AllOk | FanOut::ScriptFlush | FanOut::EveryNode => (every(), Merge::AllOk),
        FanOut::AnyOk => (every(), Merge::AnyOk),
        FanOut::SameReply | FanOut::ScriptLoad => (every(), Merge::SameReply),
        FanOut::AllOnes => (every(), Merge::AllOnes { known: Vec::new() }),
        FanOut::Union => (every(), Merge::Union),
        FanOut::NumSub => (every(), Merge::NumSub),
        FanOut::ShardNumSub => shard_numsub(args, frame, &topo.placement),
    };
    Ok(Parts { parts, merge })
}

/// CONFIG SET parameters slotway doesn't send to the nodes: they decide how slotway (and the nodes among
/// themselves) reach and log in to the nodes, or which addresses the cluster announces, so changing them through
/// slotway would cut it off from the cluster it serves.
const CONFIG_NOT_THROUGH_SLOTWAY: &[&str] = &[
    "requirepass",
    "masterauth",
    "masteruser",
    "port",
    "tls-port",
    "bind",
    "bind-source-addr",
    "unixsocket",
    "tls-cert-file",
    "tls-key-file",
    "tls-key-file-pass",
    "tls-client-cert-file",
    "tls-client-key-file",
    "tls-client-key-file-pass",
    "tls-ca-cert-file",
    "tls-ca-cert-dir",
    "tls-auth-clients",
    "tls-cluster",
    "tls-replication",
    "cluster-port",
    "cluster-announce-ip",
    "cluster-announce-port",
    "cluster-announce-tls-port",
    "cluster-announce-bus-port",
    "cluster-announce-hostname",
    "cluster-preferred-endpoint-type",
];

/// The nodes a command for every node goes to (CONFIG SET / REWRITE / RESETSTAT): every primary and replica in
/// the slot map that the cluster doesn't report failed (a failed node comes back with its own config file), each
/// once. Errors (the client's reply, without `-`) for a CONFIG SET of a parameter slotway doesn't pass on, and
/// when no shard serves slots.
pub fn every_node(args: Args<'_>, topo: &Topology) -> Result<Vec<crate::cluster::NodeAddr>, String> {
    if args.len() >= 3 && args.get(1).eq_ignore_ascii_case(b"set") {
        for i in (2..args.len()).step_by(2) {
            let name = args.get(i);
            if let Some(p) = CONFIG_NOT_THROUGH_SLOTWAY.iter().find(|p| p.as_bytes().eq_ignore_ascii_case(name)) {
                return Err(format!(
                    "ERR slotway: CONFIG SET {p} is not sent to the nodes: it decides how slotway reaches or logs in \
                     to them; change it on each node directly (and slotway's [upstream] settings with it)"
                ));
            }
        }
    }
    if shard_slots(topo).is_empty() {
        return Err(NOT_SERVED.to_string());
    }
    let mut nodes: Vec<crate::cluster::NodeAddr> = Vec::new();
    for shard in &topo.map.shards {
        for node in std::iter::once(&shard.primary).chain(&shard.replicas) {
            if node.health != crate::cluster::Health::Failed && !nodes.contains(&node.addr) {
                nodes.push(node.addr.clone());
            }
        }
    }
    Ok(nodes)
}

/// PUBSUB SHARDNUMSUB ch ...: a shard channel's subscribers are all on its slot's primary, so each channel is asked
/// there: one part per slot (channels in argument order within it), picked back in argument order. Without
/// channels any node answers the empty reply.
fn shard_numsub(args: Args<'_>, frame: &Bytes, placement: &Placement) -> (Vec<(Option<Slot>, Bytes)>, Merge) {
    if args.len() <= 2 {
        return (vec![(None, frame.clone())], Merge::Pairs(Vec::new()));
    }
    let mut slots: Vec<(Slot, Vec<usize>)> = Vec::new();
    let mut order = Vec::with_capacity(args.len() - 2);
    for i in 2..args.len() {
        let slot = placement.token(args.get(i));
        let part = match slots.iter().position(|(s, _)| *s == slot) {
            Some(p) => p,
            None => {
                slots.push((slot, Vec::new()));
                slots.len() - 1
            }
        };
        order.push((part as u32, slots[part].1.len() as u32));
        slots[part].1.push(i);
    }
    let parts = slots
        .into_iter()
        .map(|(slot, channels)| {
            let mut f = BytesMut::new();
            resp::encode::array_header(&mut f, 2 + channels.len());
            resp::encode::bulk(&mut f, args.get(0));
            resp::encode::bulk(&mut f, args.get(1));
            for i in channels {
                resp::encode::bulk(&mut f, args.get(i));
            }
            (Some(slot), f.freeze())
        })
        .collect();
    (parts, Merge::Pairs(order))
}

/// Plans one SCAN step: the slot to route by, the frame for the node (its own cursor), and the cursor merge.
/// Errors (without `-`) for a cursor that isn't a number and when no shard serves slots.
pub fn scan(args: Args<'_>, topo: &Topology) -> Result<(Slot, Bytes, Merge), String> {
    let cursor = parse_u64(args.get(1)).ok_or_else(|| "ERR invalid cursor".to_string())?;
    let shards = shard_slots(topo);
    let (slot, node_cursor) = if cursor == 0 {
        (*shards.first().ok_or_else(|| NOT_SERVED.to_string())?, 0)
    } else {
        let slot = Slot::new((cursor & SCAN_SLOT_MASK) as u16).expect("14 bits");
        (slot, cursor >> SCAN_SLOT_BITS)
    };
    // The shard walked now, by its first slot (the cursor's slot may be elsewhere in a shard after resharding). A
    // pool's token is its group.
    let first = match topo.placement {
        Placement::Ring(_) => slot.get(),
        _ => topo
            .map
            .shard_of(slot)
            .and_then(|id| topo.map.shard(id).slots.iter().map(|&(a, _)| a).min())
            .unwrap_or(slot.get()),
    };
    let next = shards.iter().map(|s| s.get()).find(|&s| s > first);

    let mut frame = BytesMut::with_capacity(args.frame.len() + 24);
    resp::encode::array_header(&mut frame, args.len());
    resp::encode::bulk(&mut frame, args.get(0));
    resp::encode::bulk(&mut frame, node_cursor.to_string().as_bytes());
    for i in 2..args.len() {
        resp::encode::bulk(&mut frame, args.get(i));
    }
    Ok((slot, frame.freeze(), Merge::Scan { slot: slot.get(), next }))
}

/// A SCAN cursor as Redis parses one: plain decimal digits, fits in 64 bits.
fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

// ------------------------------------------------------------------------------------------------ merges

/// The header of an array reply: (element count, where the elements start). None for nil or non-arrays.
fn array_header(reply: &[u8]) -> Option<(usize, usize)> {
    let rest = reply.strip_prefix(b"*")?;
    let end = rest.iter().position(|&b| b == b'\r')?;
    let count: i64 = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    Some((usize::try_from(count).ok()?, 1 + end + 2))
}

/// KEYS: every array's elements, in part order.
pub(super) fn concat(replies: &[Bytes]) -> Result<Bytes, usize> {
    let mut total = 0;
    let mut bodies = Vec::with_capacity(replies.len());
    for (i, r) in replies.iter().enumerate() {
        let (n, at) = array_header(r).ok_or(i)?;
        total += n;
        bodies.push(&r[at..]);
    }
    let mut out = BytesMut::with_capacity(16 + bodies.iter().map(|b| b.len()).sum::<usize>());
    resp::encode::array_header(&mut out, total);
    for b in bodies {
        out.extend_from_slice(b);
    }
    Ok(out.freeze())
}

fn is_nil(reply: &[u8]) -> bool {
    matches!(reply, b"$-1\r\n" | b"*-1\r\n" | b"_\r\n")
}

/// RANDOMKEY: the first non-nil reply from part `start` on (wrapping); nil when every shard is empty.
pub(super) fn random_key(replies: &[Bytes], start: usize) -> Bytes {
    let n = replies.len();
    (0..n).map(|i| &replies[(start + i) % n]).find(|r| !is_nil(r)).unwrap_or(&replies[0]).clone()
}

/// SCRIPT KILL / FUNCTION KILL: `+OK` if some node killed a script, else the first reply (NOTBUSY).
pub(super) fn any_ok(replies: &[Bytes]) -> Bytes {
    replies.iter().find(|r| r.starts_with(b"+")).unwrap_or(&replies[0]).clone()
}

/// SCRIPT LOAD / FUNCTION LOAD: every node must answer the same.
pub(super) fn same_reply(replies: &[Bytes]) -> Bytes {
    match replies.iter().find(|r| *r != &replies[0]) {
        None => replies[0].clone(),
        Some(other) => super::error_frame(&format!(
            "ERR slotway: the primaries answered differently: {} / {}",
            super::printable(&replies[0], 64),
            super::printable(other, 64)
        )),
    }
}

/// SCRIPT EXISTS: element-wise minimum of integer arrays (1 only where every node has the script).
pub(super) fn all_ones(replies: &[Bytes], known: &[bool]) -> Result<Bytes, usize> {
    let mut result: Option<Vec<i64>> = None;
    for (i, r) in replies.iter().enumerate() {
        let (n, at) = array_header(r).ok_or(i)?;
        let mut values = Vec::with_capacity(n);
        for line in r[at..].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v = line.strip_prefix(b":").and_then(|l| l.strip_suffix(b"\r")).and_then(parse_i64).ok_or(i)?;
            values.push(v);
        }
        if values.len() != n {
            return Err(i);
        }
        result = Some(match result {
            None => values,
            Some(acc) if acc.len() == n => acc.into_iter().zip(values).map(|(a, b)| a.min(b)).collect(),
            Some(_) => return Err(i),
        });
    }
    let mut values = result.unwrap_or_default();
    for (v, &k) in values.iter_mut().zip(known) {
        if k {
            *v = 1;
        }
    }
    let mut out = BytesMut::with_capacity(4 + values.len() * 4);
    resp::encode::array_header(&mut out, values.len());
    for v in values {
        resp::encode::integer(&mut out, v);
    }
    Ok(out.freeze())
}

fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// The text of a bulk (or RESP3 verbatim) string reply.
fn bulk_text(reply: &[u8]) -> Option<&[u8]> {
    let (kind, rest) = reply.split_first()?;
    let end = rest.iter().position(|&b| b == b'\r')?;
    let len: usize = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    let body = rest.get(end + 2..end + 2 + len)?;
    match kind {
        b'$' => Some(body),
        b'=' => body.get(4..), // "txt:"
        _ => None,
    }
}

/// INFO: the nodes' texts merged with slotway's sections (see [`crate::observe::info::merge`]).
pub(super) fn info(replies: &[Bytes], local: &LocalInfo) -> Result<Bytes, usize> {
    let mut texts = Vec::with_capacity(replies.len());
    for (i, r) in replies.iter().enumerate() {
        texts.push(std::str::from_utf8(bulk_text(r).ok_or(i)?).map_err(|_| i)?);
    }
    let text = crate::observe::info::merge(&texts, local);
    let mut b = BytesMut::with_capacity(text.len() + 16);
    resp::encode::bulk(&mut b, text.as_bytes());
    Ok(b.freeze())
}

/// SCAN: the node's `[cursor, keys]` with the cursor encoded for the client.
pub(super) fn scan_reply(reply: &Bytes, slot: u16, next: Option<u16>) -> Result<Bytes, Bytes> {
    let bad = || Err(reply.clone());
    let Some((2, at)) = array_header(reply) else { return bad() };
    let Some(cursor) = bulk_text(&reply[at..]) else { return bad() };
    let Some(node_cursor) = parse_u64(cursor) else { return bad() };
    let cursor_len = reply[at..].iter().position(|&b| b == b'\n').map_or(0, |p| p + 1) + cursor.len() + 2;
    let keys = &reply[at + cursor_len..];
    let client_cursor = if node_cursor == 0 {
        next.map_or(0, u64::from)
    } else if node_cursor > u64::MAX >> SCAN_SLOT_BITS {
        return Err(super::error_frame("ERR slotway: a node's SCAN cursor is too large to encode"));
    } else {
        node_cursor << SCAN_SLOT_BITS | u64::from(slot)
    };
    debug_assert!(u64::from(slot) < SLOT_COUNT as u64);
    let mut out = BytesMut::with_capacity(keys.len() + 32);
    resp::encode::array_header(&mut out, 2);
    resp::encode::bulk(&mut out, client_cursor.to_string().as_bytes());
    out.extend_from_slice(keys);
    Ok(out.freeze())
}

fn parse_value(reply: &Bytes) -> Option<resp::Value> {
    resp::Value::parse(reply, &resp::Limits::default()).ok().flatten().map(|(v, _)| v)
}

/// The protocol a node answered in, judged by the reply's type byte (a map or set only exists in RESP3).
fn protocol_of(reply: &[u8]) -> resp::encode::Protocol {
    match reply.first() {
        Some(b'%' | b'~') => resp::encode::Protocol::Resp3,
        _ => resp::encode::Protocol::Resp2,
    }
}

/// PUBSUB CHANNELS / SHARDCHANNELS: every node's channel names, each once, in the order first seen.
pub(super) fn union(replies: &[Bytes]) -> Result<Bytes, usize> {
    let mut seen = std::collections::HashSet::new();
    let mut names: Vec<Bytes> = Vec::new();
    for (i, r) in replies.iter().enumerate() {
        let v = parse_value(r).ok_or(i)?;
        for name in v.as_array().ok_or(i)? {
            let name = name.as_bytes().ok_or(i)?;
            if seen.insert(name.clone()) {
                names.push(name.clone());
            }
        }
    }
    // Same aggregate type as the nodes' (an array in Redis 7.0, in either protocol).
    let mut out = BytesMut::new();
    resp::encode::set_header(&mut out, names.len(), protocol_of(&replies[0]));
    for n in &names {
        resp::encode::bulk(&mut out, n);
    }
    Ok(out.freeze())
}

/// PUBSUB NUMSUB: every node lists the requested channels in argument order with its own subscriber count; the
/// counts are summed per position.
pub(super) fn numsub(replies: &[Bytes]) -> Result<Bytes, usize> {
    let mut merged: Vec<(Bytes, i64)> = Vec::new();
    for (i, r) in replies.iter().enumerate() {
        let v = parse_value(r).ok_or(i)?;
        let pairs = v.to_pairs().ok_or(i)?;
        if i > 0 && pairs.len() != merged.len() {
            return Err(i);
        }
        for (n, (k, count)) in pairs.into_iter().enumerate() {
            let (k, count) = (k.as_bytes().ok_or(i)?, count.as_int().ok_or(i)?);
            match merged.get_mut(n) {
                Some((name, total)) if name == k => *total = total.saturating_add(count),
                Some(_) => return Err(i),
                None => merged.push((k.clone(), count)),
            }
        }
    }
    let mut out = BytesMut::new();
    resp::encode::map_header(&mut out, merged.len(), protocol_of(&replies[0]));
    for (name, count) in merged {
        resp::encode::bulk(&mut out, &name);
        resp::encode::integer(&mut out, count);
    }
    Ok(out.freeze())
}

/// PUBSUB SHARDNUMSUB: for each channel in argument order, its (name, count) pair from its slot's part.
pub(super) fn pick_pairs(replies: &[Bytes], order: &[(u32, u32)]) -> Result<Bytes, usize> {
    if order.is_empty() {
        return Ok(replies[0].clone());
    }
    let values = replies.iter().enumerate().map(|(i, r)| parse_value(r).ok_or(i)).collect::<Result<Vec<_>, _>>()?;
    let pairs = values.iter().enumerate().map(|(i, v)| v.to_pairs().ok_or(i)).collect::<Result<Vec<_>, _>>()?;
    let mut out = BytesMut::new();
    resp::encode::map_header(&mut out, order.len(), protocol_of(&replies[0]));
    for &(part, pos) in order {
        let part = part as usize;
        let (name, count) = pairs[part].get(pos as usize).ok_or(part)?;
        resp::encode::bulk(&mut out, name.as_bytes().ok_or(part)?);
        resp::encode::integer(&mut out, count.as_int().ok_or(part)?);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Health, NodeAddr, NodeInfo, Role, ShardInfo, SlotMap};

    fn topo(ranges: &[&[(u16, u16)]]) -> Topology {
        let shards = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| ShardInfo {
                primary: NodeInfo {
                    id: None,
                    addr: NodeAddr::new("127.0.0.1", 7000 + i as u16),
                    ip: None,
                    role: Role::Primary,
                    health: Health::Online,
                    replication_offset: None,
                },
                replicas: vec![],
                slots: r.to_vec(),
            })
            .collect::<Vec<_>>();
        let primaries = vec![None; shards.len()];
        Topology {
            map: SlotMap::new(shards),
            placement: crate::topology::Placement::Slots,
            problems: Vec::new(),
            primaries,
            replicas: Vec::new(),
            version: 1,
        }
    }

    fn with_args<R>(words: &[&str], f: impl FnOnce(Args<'_>, &Bytes) -> R) -> R {
        let mut frame = BytesMut::new();
        let owned: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        resp::encode::command(&mut frame, &owned);
        let frame = frame.freeze();
        let mut ranges = Vec::new();
        let mut at = 0;
        for w in words {
            let start = at + frame[at..].windows(w.len().max(1)).position(|x| x == w.as_bytes()).unwrap();
            ranges.push(start..start + w.len());
            at = start + w.len();
        }
        f(Args { frame: &frame, ranges: &ranges }, &frame)
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn one_part_per_shard_by_first_slot() {
        let t = topo(&[&[(10000, 16383)], &[(5000, 9999), (0, 100)], &[(101, 4999)], &[]]);
        let slots: Vec<u16> = shard_slots(&t).iter().map(|s| s.get()).collect();
        assert_eq!(slots, vec![0, 101, 10000]);
        let p = with_args(&["DBSIZE"], |a, f| build(FanOut::SumIntegers, a, f, &t, |_| LocalInfo::default()).unwrap());
        assert_eq!(p.parts.len(), 3);
        assert!(p.parts.iter().all(|(_, f)| &f[..] == b"*1\r\n$6\r\nDBSIZE\r\n"));
        let empty = topo(&[&[]]);
        assert!(
            with_args(&["DBSIZE"], |a, f| build(FanOut::SumIntegers, a, f, &empty, |_| LocalInfo::default())).is_err()
        );
    }

    #[test]
    fn info_parts() {
        let t = topo(&[&[(0, 8000)], &[(8001, 16383)]]);
        let plan = |words: &[&str]| {
            with_args(words, |a, f| {
                build(FanOut::Info, a, f, &t, |r| LocalInfo {
                    sum_keyspace: r.wants("keyspace"),
                    sum_stats: r.wants("stats"),
                    proxy: r.wants("proxy").then(|| "# Proxy\r\nx:1\r\n".into()),
                    ..LocalInfo::default()
                })
                .unwrap()
            })
        };
        let p = plan(&["INFO"]);
        assert_eq!(p.parts.len(), 2);
        assert!(matches!(&p.merge, Merge::Info(l) if l.sum_keyspace && l.proxy.is_some()));
        let p = plan(&["INFO", "server"]);
        assert_eq!(p.parts.len(), 1);
        assert!(matches!(&p.merge, Merge::Info(l) if !l.sum_keyspace && l.proxy.is_none()));
        assert_eq!(plan(&["info", "KEYSPACE", "proxy"]).parts.len(), 2);
        assert_eq!(plan(&["info", "stats"]).parts.len(), 2, "stats are summed over the primaries");
    }

    #[test]
    fn info_sums_keyspace_and_appends_proxy() {
        let bulk = |text: &str| b(&format!("${}\r\n{text}\r\n", text.len()));
        let n1 = bulk("# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=1000\r\n");
        let n2 = bulk("# Keyspace\r\ndb0:keys=5,expires=6,avg_ttl=3000\r\n");
        let local = LocalInfo {
            sum_keyspace: true,
            proxy: Some("# Proxy\r\nslotway_version:0\r\n".into()),
            ..LocalInfo::default()
        };
        let out = info(&[n1, n2], &local).unwrap();
        let text = std::str::from_utf8(bulk_text(&out).unwrap()).unwrap();
        assert_eq!(
            text,
            "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=15,expires=8,avg_ttl=2500\r\n\r\n# Proxy\r\nslotway_version:0\r\n"
        );
        assert_eq!(info(&[b(":1\r\n")], &local), Err(0));
    }

    #[test]
    fn scan_cursor_walks_shards_in_slot_order() {
        let t = topo(&[&[(0, 5460)], &[(5461, 10922)], &[(10923, 16383)]]);
        let step =
            |cursor: &str| with_args(&["SCAN", cursor, "MATCH", "k*", "COUNT", "10"], |a, _| scan(a, &t).unwrap());
        let (slot, frame, merge) = step("0");
        assert_eq!(slot.get(), 0);
        assert_eq!(
            &frame[..],
            b"*6\r\n$4\r\nSCAN\r\n$1\r\n0\r\n$5\r\nMATCH\r\n$2\r\nk*\r\n$5\r\nCOUNT\r\n$2\r\n10\r\n"
        );
        let Merge::Scan { slot: s, next } = merge else { panic!() };
        assert_eq!((s, next), (0, Some(5461)));
        // Node cursor 7 on the first shard → 7 << 14 | 0; then the node finishes → next shard's first slot.
        assert_eq!(
            &scan_reply(&b("*2\r\n$1\r\n7\r\n*1\r\n$1\r\na\r\n"), 0, Some(5461)).unwrap()[..],
            b"*2\r\n$6\r\n114688\r\n*1\r\n$1\r\na\r\n"
        );
        assert_eq!(
            &scan_reply(&b("*2\r\n$1\r\n0\r\n*0\r\n"), 0, Some(5461)).unwrap()[..],
            b"*2\r\n$4\r\n5461\r\n*0\r\n"
        );
        let (slot, frame, _) = step("114688");
        assert_eq!(slot.get(), 0);
        assert!(frame.starts_with(b"*6\r\n$4\r\nSCAN\r\n$1\r\n7\r\n"));
        let (slot, frame, merge) = step("5461");
        assert_eq!(slot.get(), 5461);
        assert!(frame.starts_with(b"*6\r\n$4\r\nSCAN\r\n$1\r\n0\r\n"));
        assert!(matches!(merge, Merge::Scan { slot: 5461, next: Some(10923) }));
        let (_, _, merge) = step(&(3u64 << 14 | 10923).to_string());
        assert!(matches!(merge, Merge::Scan { slot: 10923, next: None }));
        // The last shard done: cursor 0.
        assert_eq!(&scan_reply(&b("*2\r\n$1\r\n0\r\n*0\r\n"), 10923, None).unwrap()[..], b"*2\r\n$1\r\n0\r\n*0\r\n");
        // Errors.
        assert_eq!(with_args(&["SCAN", "x"], |a, _| scan(a, &t).unwrap_err()), "ERR invalid cursor");
        assert_eq!(with_args(&["SCAN", "-1"], |a, _| scan(a, &t).unwrap_err()), "ERR invalid cursor");
        let huge = format!("*2\r\n$20\r\n{}\r\n*0\r\n", u64::MAX);
        assert!(scan_reply(&b(&huge), 0, None).unwrap_err().starts_with(b"-ERR slotway"));
    }

    #[test]
    fn merges() {
        let r = concat(&[b("*2\r\n$1\r\na\r\n$1\r\nb\r\n"), b("*0\r\n"), b("*1\r\n$1\r\nc\r\n")]).unwrap();
        assert_eq!(&r[..], b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
        assert_eq!(concat(&[b("*0\r\n"), b(":1\r\n")]), Err(1));

        let nil = b("$-1\r\n");
        assert_eq!(random_key(&[nil.clone(), b("$1\r\nk\r\n"), nil.clone()], 2), b("$1\r\nk\r\n"));
        assert_eq!(random_key(&[nil.clone(), nil.clone()], 1), nil);

        assert_eq!(any_ok(&[b("-NOTBUSY x\r\n"), b("+OK\r\n")]), b("+OK\r\n"));
        assert_eq!(any_ok(&[b("-NOTBUSY x\r\n"), b("-NOTBUSY y\r\n")]), b("-NOTBUSY x\r\n"));

        let sha = b("$40\r\ne0e1f9fabfc9d4800c877a703b823ac0578ff8db\r\n");
        assert_eq!(same_reply(&[sha.clone(), sha.clone()]), sha);
        assert!(same_reply(&[sha, b("$1\r\nx\r\n")]).starts_with(b"-ERR slotway: the primaries answered differently"));

        let r = all_ones(&[b("*3\r\n:1\r\n:1\r\n:0\r\n"), b("*3\r\n:1\r\n:0\r\n:0\r\n")], &[]).unwrap();
        assert_eq!(&r[..], b"*3\r\n:1\r\n:0\r\n:0\r\n");
        assert_eq!(all_ones(&[b("*1\r\n:1\r\n"), b("*2\r\n:1\r\n:1\r\n")], &[]), Err(1));
        // A script slotway remembers counts as everywhere (EVALSHA loads it where missing).
        let r = all_ones(&[b("*2\r\n:1\r\n:0\r\n"), b("*2\r\n:0\r\n:0\r\n")], &[true, false]).unwrap();
        assert_eq!(&r[..], b"*2\r\n:1\r\n:0\r\n");
    }

    #[test]
    fn pubsub_merges() {
        let r = union(&[b("*2\r\n$1\r\na\r\n$1\r\nb\r\n"), b("*0\r\n"), b("*2\r\n$1\r\nb\r\n$1\r\nc\r\n")]);
        assert_eq!(&r.unwrap()[..], b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
        assert_eq!(union(&[b("*0\r\n"), b(":1\r\n")]), Err(1));

        // RESP2 flat arrays and RESP3 maps, summed per channel in argument order.
        let two = [b("*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:0\r\n"), b("*4\r\n$1\r\na\r\n:2\r\n$1\r\nb\r\n:5\r\n")];
        assert_eq!(&numsub(&two).unwrap()[..], b"*4\r\n$1\r\na\r\n:3\r\n$1\r\nb\r\n:5\r\n");
        let three = [b("%1\r\n$1\r\na\r\n:1\r\n"), b("%1\r\n$1\r\na\r\n:1\r\n")];
        assert_eq!(&numsub(&three).unwrap()[..], b"%1\r\n$1\r\na\r\n:2\r\n");
        assert_eq!(numsub(&[two[0].clone(), three[0].clone()]), Err(1), "different channels");

        with_args(&["PUBSUB", "SHARDNUMSUB", "x", "{x}y", "z"], |a, f| {
            let (parts, merge) = shard_numsub(a, f, &Placement::Slots);
            assert_eq!(parts.len(), 2);
            assert_eq!(parts[0].0, Some(Slot::for_key(b"x")));
            assert_eq!(&parts[0].1[..], b"*4\r\n$6\r\nPUBSUB\r\n$11\r\nSHARDNUMSUB\r\n$1\r\nx\r\n$4\r\n{x}y\r\n");
            let Merge::Pairs(order) = merge else { panic!() };
            assert_eq!(order, vec![(0, 0), (0, 1), (1, 0)]);
            let replies = [b("*4\r\n$1\r\nx\r\n:1\r\n$4\r\n{x}y\r\n:2\r\n"), b("*2\r\n$1\r\nz\r\n:3\r\n")];
            let r = pick_pairs(&replies, &order).unwrap();
            assert_eq!(&r[..], b"*6\r\n$1\r\nx\r\n:1\r\n$4\r\n{x}y\r\n:2\r\n$1\r\nz\r\n:3\r\n");
        });
        with_args(&["PUBSUB", "SHARDNUMSUB"], |a, f| {
            let (parts, merge) = shard_numsub(a, f, &Placement::Slots);
            assert_eq!(parts, vec![(None, f.clone())]);
            assert_eq!(merge.merge(&[b("*0\r\n")]), b("*0\r\n"));
        });
    }
}
