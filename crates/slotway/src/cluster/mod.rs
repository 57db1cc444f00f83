//! Pure cluster model: hash slots (CRC16 + hash tags), node addresses, the slot map built from
//! CLUSTER SHARDS / CLUSTER SLOTS replies (config epochs from CLUSTER NODES), and MOVED/ASK parsing. No I/O.
use std::fmt;
use std::sync::Arc;

#[cfg(test)]
mod tests;
mod topology;

pub use topology::{
    parse_cluster_nodes_epochs, parse_cluster_shards, parse_cluster_shards_with, parse_cluster_slots, PortPreference,
};

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: usize = 16384;

/// A hash slot; always `< SLOT_COUNT`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u16);

impl Slot {
    /// Slot 0. In a single replication group every key is placed here: the group has no slots, and one constant
    /// token makes every "same slot?" check pass.
    pub const ZERO: Slot = Slot(0);

    /// `None` when `n >= 16384`.
    pub fn new(n: u16) -> Option<Slot> {
        ((n as usize) < SLOT_COUNT).then_some(Slot(n))
    }
    pub fn get(self) -> u16 {
        self.0
    }
    /// The slot of a key: CRC16 (XMODEM) of its hash tag (or the whole key) modulo 16384, as the cluster spec says.
    pub fn for_key(key: &[u8]) -> Slot {
        Slot(crc16(hash_tag(key)) & (SLOT_COUNT as u16 - 1))
    }

    /// A short hash tag (decimal digits) whose slot is this one, for keys slotway itself must place in a slot.
    pub fn tag(self) -> &'static str {
        static TAGS: std::sync::OnceLock<Box<[Box<str>]>> = std::sync::OnceLock::new();
        let tags = TAGS.get_or_init(|| {
            let mut tags: Vec<Option<Box<str>>> = vec![None; SLOT_COUNT];
            let mut missing = SLOT_COUNT;
            // About 170,000 CRCs: every slot is covered by then (coupon collector), done once.
            let mut n = 0u64;
            while missing > 0 {
                let s = n.to_string();
                let slot = crc16(s.as_bytes()) as usize & (SLOT_COUNT - 1);
                if tags[slot].is_none() {
                    tags[slot] = Some(s.into_boxed_str());
                    missing -= 1;
                }
                n += 1;
            }
            tags.into_iter().map(|t| t.expect("every slot covered")).collect()
        });
        &tags[self.0 as usize]
    }
}

/// A node's address as the cluster (or the user) names it: an IP or a hostname, and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    pub host: Arc<str>,
    pub port: u16,
}

impl NodeAddr {
    pub fn new(host: &str, port: u16) -> NodeAddr {
        NodeAddr { host: Arc::from(host), port }
    }
    /// Parses `host:port`, `[v6]:port` or `v6addr:port` (last colon splits).
    ///
    /// The host must be non-empty and free of whitespace, control characters and stray brackets; the port must be
    /// plain decimal digits in `1..=65535`.
    pub fn parse(s: &str) -> Option<NodeAddr> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once("]:")?;
            if !host.contains(':') {
                return None;
            }
            (host, port)
        } else {
            s.rsplit_once(':')?
        };
        if host.is_empty()
            || host.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'[' || b == b']')
        {
            return None;
        }
        Some(NodeAddr::new(host, parse_port(port)?))
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

/// What the cluster says about a node's health (CLUSTER SHARDS `health`; CLUSTER SLOTS has none → Online).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Online,
    Loading,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's 40-hex cluster id, when the reply gave one.
    pub id: Option<Arc<str>>,
    pub addr: NodeAddr,
    /// The node's IP when the reply reported one besides `addr` (CLUSTER SHARDS `ip`, the `ip` metadata of
    /// CLUSTER SLOTS); replication replies (ROLE, INFO) name nodes by IP.
    pub ip: Option<Arc<str>>,
    pub role: Role,
    pub health: Health,
    /// Replication offset when known (CLUSTER SHARDS), for lag checks.
    pub replication_offset: Option<i64>,
}

/// One shard: a primary, its replicas and the slot ranges it serves (inclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub primary: NodeInfo,
    pub replicas: Vec<NodeInfo>,
    pub slots: Vec<(u16, u16)>,
}

/// Index of a shard within a [`SlotMap`].
pub type ShardId = u16;

/// Slot → shard, dense, built once per topology and never mutated.
#[derive(Clone, Debug)]
pub struct SlotMap {
    pub shards: Vec<ShardInfo>,
    /// `owner[slot]` is an index into `shards`, or `u16::MAX` where no shard serves the slot.
    owner: Box<[ShardId]>,
}

impl SlotMap {
    /// Builds the owner table. Where shards claim overlapping slots, the **later** shard in `shards` wins (a
    /// transient state during resharding; the caller may log it, see [`SlotMap::overlapping_slots`]). Ranges with
    /// `start > end` are ignored and ends are clamped to the last slot. Shards beyond index `u16::MAX - 1` are kept
    /// in `shards` but serve no slots (not reachable with 16384 slots).
    pub fn new(shards: Vec<ShardInfo>) -> SlotMap {
        let mut owner = vec![u16::MAX; SLOT_COUNT].into_boxed_slice();
        for (i, shard) in shards.iter().enumerate().take(u16::MAX as usize) {
            for &(start, end) in &shard.slots {
                let end = end.min(SLOT_COUNT as u16 - 1);
                if start <= end {
                    owner[start as usize..=end as usize].fill(i as u16);
                }
            }
        }
        SlotMap { shards, owner }
    }

    /// Slots claimed by more than one shard in `shards` (they went to the later shard).
    pub fn overlapping_slots(&self) -> usize {
        let mut claims = vec![0u8; SLOT_COUNT];
        for shard in &self.shards {
            for &(start, end) in &shard.slots {
                let end = end.min(SLOT_COUNT as u16 - 1);
                if start <= end {
                    for c in &mut claims[start as usize..=end as usize] {
                        *c = c.saturating_add(1);
                    }
                }
            }
        }
        claims.iter().filter(|&&c| c > 1).count()
    }
    pub fn shard_of(&self, slot: Slot) -> Option<ShardId> {
        let id = self.owner[slot.get() as usize];
        (id != u16::MAX).then_some(id)
    }
    pub fn shard(&self, id: ShardId) -> &ShardInfo {
        &self.shards[id as usize]
    }
    /// Slots that no shard serves.
    pub fn unassigned_slots(&self) -> usize {
        self.owner.iter().filter(|&&o| o == u16::MAX).count()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unexpected {command} reply: {reason}")]
pub struct TopologyParseError {
    pub command: &'static str,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    Moved { slot: Slot, addr: NodeAddr },
    Ask { slot: Slot, addr: NodeAddr },
}

/// Parses an error reply's text (without the leading `-` and trailing CRLF), e.g. `MOVED 3999 127.0.0.1:6381`.
/// An empty host (`MOVED 3999 :6381`) means the host of the node that sent it: `sender_host`.
///
/// Returns `None` for any other error, a slot outside `0..16384`, a bad address, or the unknown endpoint `?`
/// (`MOVED 3999 ?:6381`, sent in `cluster-preferred-endpoint-type hostname` mode by a node without a hostname).
/// IPv6 hosts may come bare (`::1:6381`, which is what Redis sends) or bracketed (`[::1]:6381`).
/// A trailing CR/LF is tolerated.
pub fn parse_redirect(error: &[u8], sender_host: &str) -> Option<Redirect> {
    let text = std::str::from_utf8(error).ok()?.trim_end_matches(['\r', '\n']);
    let mut parts = text.split(' ');
    let kind = parts.next()?;
    let slot = parts.next()?;
    let addr = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let slot = Slot::new(parse_decimal_u16(slot)?)?;
    let addr = if let Some(port) = addr.strip_prefix(':').filter(|p| !p.contains(':')) {
        if sender_host.is_empty() {
            return None;
        }
        NodeAddr::new(sender_host, parse_port(port)?)
    } else {
        let addr = NodeAddr::parse(addr)?;
        if &*addr.host == "?" {
            return None;
        }
        addr
    };
    match kind {
        "MOVED" => Some(Redirect::Moved { slot, addr }),
        "ASK" => Some(Redirect::Ask { slot, addr }),
        _ => None,
    }
}

/// Plain ASCII decimal (no sign, no spaces) that fits a `u16`.
fn parse_decimal_u16(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A TCP port: plain decimal in `1..=65535`.
fn parse_port(s: &str) -> Option<u16> {
    parse_decimal_u16(s).filter(|&p| p != 0)
}

/// The part of a key that is hashed: the content of the first `{...}` when it is non-empty, else the whole key.
fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection, no final XOR.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| (crc << 8) ^ CRC16_TABLE[((crc >> 8) as u8 ^ b) as usize])
}
