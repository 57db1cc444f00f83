//! Pure cluster model: hash slots (CRC16 + hash tags), node addresses, the slot map built from
//! CLUSTER SHARDS / CLUSTER SLOTS replies, and MOVED/ASK parsing. No I/O.
//! STUB: the signatures are the contract; bodies are being written.
use resp::Value;
use std::fmt;
use std::sync::Arc;

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: usize = 16384;

/// A hash slot; always `< SLOT_COUNT`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u16);

impl Slot {
    /// `None` when `n >= 16384`.
    pub fn new(n: u16) -> Option<Slot> {
        ((n as usize) < SLOT_COUNT).then_some(Slot(n))
    }
    pub fn get(self) -> u16 {
        self.0
    }
    /// The slot of a key: CRC16 (XMODEM) of its hash tag (or the whole key) modulo 16384, as the cluster spec says.
    pub fn for_key(key: &[u8]) -> Slot {
        let _ = key;
        todo!()
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
    pub fn parse(s: &str) -> Option<NodeAddr> {
        let _ = s;
        todo!()
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
    pub fn new(shards: Vec<ShardInfo>) -> SlotMap {
        let _ = shards;
        todo!()
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

/// Parses a CLUSTER SHARDS reply (RESP2 or RESP3). `asked_host` fills in empty or `?` endpoints.
pub fn parse_cluster_shards(reply: &Value, asked_host: &str) -> Result<Vec<ShardInfo>, TopologyParseError> {
    let _ = (reply, asked_host);
    todo!()
}

/// Parses a CLUSTER SLOTS reply. `asked_host` fills in empty or `?` endpoints.
pub fn parse_cluster_slots(reply: &Value, asked_host: &str) -> Result<Vec<ShardInfo>, TopologyParseError> {
    let _ = (reply, asked_host);
    todo!()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    Moved { slot: Slot, addr: NodeAddr },
    Ask { slot: Slot, addr: NodeAddr },
}

/// Parses an error reply's text (without the leading `-` and trailing CRLF), e.g. `MOVED 3999 127.0.0.1:6381`.
/// An empty host (`MOVED 3999 :6381`) means the host of the node that sent it: `sender_host`.
pub fn parse_redirect(error: &[u8], sender_host: &str) -> Option<Redirect> {
    let _ = (error, sender_host);
    todo!()
}
