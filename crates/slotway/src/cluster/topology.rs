//! CLUSTER SHARDS / CLUSTER SLOTS reply parsing.
//!
//! # Which address a node gets
//! Both parsers pick the same address for the same node, so a topology read with either command agrees:
//! - the reported endpoint (`endpoint` in SHARDS, the first element of a node in SLOTS) when it is a real host;
//! - an empty or missing/null endpoint means "the host you asked" (`cluster-preferred-endpoint-type unknown-endpoint`,
//!   or a node that does not know its own IP yet): `asked_host`;
//! - `?` means "hostname preferred but this node has none": the node's IP (`ip` in SHARDS, the `ip` metadata in
//!   SLOTS) when reported, else `asked_host`.
use super::{Health, NodeAddr, NodeInfo, Role, ShardInfo, TopologyParseError, SLOT_COUNT};
use resp::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Which port [`parse_cluster_shards_with`] takes when a node reports both `port` and `tls-port`.
///
/// Redis 7.0 reports exactly one of them: `tls-port` when `tls-cluster yes`, else `port`. Redis 7.2+ and Valkey
/// report `port` (plain TCP, when enabled) and `tls-port` (when TLS is enabled) side by side.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum PortPreference {
    /// `tls-port` when present and non-zero, else `port` (for a proxy that talks TLS to the nodes).
    #[default]
    Tls,
    /// `port` when present and non-zero, else `tls-port` (for a proxy that talks plain TCP to the nodes).
    Plain,
}

/// Parses a CLUSTER SHARDS reply (RESP2 or RESP3). `asked_host` fills in empty or `?` endpoints.
///
/// Same as [`parse_cluster_shards_with`] with [`PortPreference::Tls`]: a node's `tls-port` is used when present
/// and non-zero, else its `port`.
pub fn parse_cluster_shards(reply: &Value, asked_host: &str) -> Result<Vec<ShardInfo>, TopologyParseError> {
    parse_cluster_shards_with(reply, asked_host, PortPreference::Tls)
}

fn shards_err(reason: impl Into<String>) -> TopologyParseError {
    TopologyParseError { command: "CLUSTER SHARDS", reason: reason.into() }
}

fn slots_err(reason: impl Into<String>) -> TopologyParseError {
    TopologyParseError { command: "CLUSTER SLOTS", reason: reason.into() }
}

/// Parses a CLUSTER SHARDS reply (RESP2 flat key/value arrays or RESP3 maps), choosing ports by `ports`.
///
/// - Shards are returned in reply order. Shards without slots are kept (they serve none).
/// - The primary is the first `master` node that is not failed, else the first `master` node. Other `master`
///   nodes in the same shard (a failed former primary, in Redis 7.2+) are dropped.
/// - A shard with no `master` node at all gets a placeholder primary: no id, address `""`:0 and
///   [`Health::Failed`], so its slots are known to be down rather than unassigned. A shard with no nodes at all is
///   skipped.
/// - `health` `online` → Online, `loading` → Loading, `fail`/`failed` (7.0 says `fail`) and anything unknown →
///   Failed; missing → Online.
/// - Unknown fields are ignored. A node without any port, an unknown role or a bad slot range is an error.
pub fn parse_cluster_shards_with(
    reply: &Value,
    asked_host: &str,
    ports: PortPreference,
) -> Result<Vec<ShardInfo>, TopologyParseError> {
    let shards = reply.as_array().ok_or_else(|| shards_err("not an array"))?;
    let mut out = Vec::with_capacity(shards.len());
    for (n, shard) in shards.iter().enumerate() {
        let fields = shard.to_pairs().ok_or_else(|| shards_err(format!("shard {n} is not a map")))?;
        let mut slots = Vec::new();
        let mut nodes = Vec::new();
        for (k, v) in fields {
            match k.as_str() {
                Some("slots") => {
                    let bounds = v.as_array().ok_or_else(|| shards_err(format!("shard {n}: slots is not an array")))?;
                    if bounds.len() % 2 != 0 {
                        return Err(shards_err(format!("shard {n}: odd number of slot bounds")));
                    }
                    for pair in bounds.chunks_exact(2) {
                        let range = slot_range(&pair[0], &pair[1]).ok_or_else(|| {
                            shards_err(format!("shard {n}: bad slot range {:?}..{:?}", pair[0], pair[1]))
                        })?;
                        slots.push(range);
                    }
                }
                Some("nodes") => {
                    let list = v.as_array().ok_or_else(|| shards_err(format!("shard {n}: nodes is not an array")))?;
                    for node in list {
                        nodes.push(
                            shard_node(node, asked_host, ports).map_err(|e| shards_err(format!("shard {n}: {e}")))?,
                        );
                    }
                }
                _ => {}
            }
        }
        if nodes.is_empty() {
            continue;
        }
        let primary_at = nodes
            .iter()
            .position(|n| n.role == Role::Primary && n.health != Health::Failed)
            .or_else(|| nodes.iter().position(|n| n.role == Role::Primary));
        let primary = match primary_at {
            Some(i) => nodes.remove(i),
            None => NodeInfo {
                id: None,
                addr: NodeAddr::new("", 0),
                ip: None,
                role: Role::Primary,
                health: Health::Failed,
                replication_offset: None,
            },
        };
        nodes.retain(|n| n.role == Role::Replica);
        out.push(ShardInfo { primary, replicas: nodes, slots });
    }
    Ok(out)
}

fn shard_node(node: &Value, asked_host: &str, ports: PortPreference) -> Result<NodeInfo, String> {
    let fields = node.to_pairs().ok_or("a node is not a map")?;
    let (mut id, mut port, mut tls_port, mut ip, mut endpoint) = (None, None, None, None, None);
    let (mut role, mut health, mut offset) = (None, Health::Online, None);
    for (k, v) in fields {
        match k.as_str() {
            Some("id") => id = v.as_str().filter(|s| !s.is_empty()).map(Arc::<str>::from),
            Some("port") => port = v.as_int(),
            Some("tls-port") => tls_port = v.as_int(),
            Some("ip") => ip = v.as_str(),
            Some("endpoint") => endpoint = v.as_str(),
            Some("role") => {
                role = Some(match v.as_str() {
                    Some("master" | "primary") => Role::Primary,
                    Some("replica" | "slave") => Role::Replica,
                    other => return Err(format!("unknown node role {other:?}")),
                })
            }
            Some("health") => {
                health = match v.as_str() {
                    Some("online") => Health::Online,
                    Some("loading") => Health::Loading,
                    _ => Health::Failed,
                }
            }
            Some("replication-offset") => offset = v.as_int(),
            _ => {}
        }
    }
    let valid = |p: Option<i64>| p.filter(|&p| (1..=u16::MAX as i64).contains(&p));
    let port = match ports {
        PortPreference::Tls => valid(tls_port).or(valid(port)),
        PortPreference::Plain => valid(port).or(valid(tls_port)),
    }
    .ok_or_else(|| format!("node {id:?} has no valid port"))? as u16;
    let role = role.ok_or_else(|| format!("node {id:?} has no role"))?;
    let host = choose_host(endpoint, ip, asked_host);
    let ip = ip.filter(|ip| !ip.is_empty() && *ip != "?").map(Arc::<str>::from);
    Ok(NodeInfo { id, addr: NodeAddr::new(host, port), ip, role, health, replication_offset: offset })
}

/// See the module docs: a real endpoint; `""`/missing → `asked_host`; `?` → the IP, else `asked_host`.
fn choose_host<'a>(endpoint: Option<&'a str>, ip: Option<&'a str>, asked_host: &'a str) -> &'a str {
    match endpoint {
        Some("?") => ip.filter(|ip| !ip.is_empty() && *ip != "?").unwrap_or(asked_host),
        Some(e) if !e.is_empty() => e,
        _ => asked_host,
    }
}

/// Parses a CLUSTER SLOTS reply. `asked_host` fills in empty or `?` endpoints.
///
/// Ranges are grouped into shards by primary id (by address when the reply has no ids), in order of first
/// appearance; replicas are the union over the shard's ranges. SLOTS reports no health (all nodes are
/// [`Health::Online`]; Redis leaves failed replicas out) and no replication offsets. A null or empty host is
/// `asked_host`; `?` is the `ip` metadata when present, else `asked_host`.
pub fn parse_cluster_slots(reply: &Value, asked_host: &str) -> Result<Vec<ShardInfo>, TopologyParseError> {
    let entries = reply.as_array().ok_or_else(|| slots_err("not an array"))?;
    let mut shards: Vec<ShardInfo> = Vec::new();
    let mut by_primary: HashMap<String, usize> = HashMap::new();
    for (n, entry) in entries.iter().enumerate() {
        let items = entry.as_array().ok_or_else(|| slots_err(format!("entry {n} is not an array")))?;
        if items.len() < 3 {
            return Err(slots_err(format!("entry {n} has {} elements, expected at least 3", items.len())));
        }
        let range = slot_range(&items[0], &items[1])
            .ok_or_else(|| slots_err(format!("entry {n}: bad slot range {:?}..{:?}", items[0], items[1])))?;
        let primary =
            slots_node(&items[2], Role::Primary, asked_host).map_err(|e| slots_err(format!("entry {n}: {e}")))?;
        let mut replicas = Vec::with_capacity(items.len() - 3);
        for item in &items[3..] {
            replicas
                .push(slots_node(item, Role::Replica, asked_host).map_err(|e| slots_err(format!("entry {n}: {e}")))?);
        }
        let key = node_key(&primary);
        match by_primary.get(&key) {
            Some(&i) => {
                let shard = &mut shards[i];
                shard.slots.push(range);
                for r in replicas {
                    if !shard.replicas.iter().any(|known| node_key(known) == node_key(&r)) {
                        shard.replicas.push(r);
                    }
                }
            }
            None => {
                by_primary.insert(key, shards.len());
                shards.push(ShardInfo { primary, replicas, slots: vec![range] });
            }
        }
    }
    Ok(shards)
}

fn node_key(node: &NodeInfo) -> String {
    match &node.id {
        Some(id) => format!("id:{id}"),
        None => format!("addr:{}", node.addr),
    }
}

fn slots_node(node: &Value, role: Role, asked_host: &str) -> Result<NodeInfo, String> {
    let items = node.as_array().ok_or("a node is not an array")?;
    if items.len() < 2 {
        return Err(format!("a node has {} elements, expected at least 2", items.len()));
    }
    let endpoint = match &items[0] {
        Value::Nil | Value::NilArray => None,
        v => Some(v.as_str().ok_or_else(|| format!("bad node host {v:?}"))?),
    };
    let port = items[1]
        .as_int()
        .filter(|&p| (1..=u16::MAX as i64).contains(&p))
        .ok_or_else(|| format!("bad node port {:?}", items[1]))? as u16;
    let id = items.get(2).and_then(Value::as_str).filter(|s| !s.is_empty()).map(Arc::<str>::from);
    let ip = items
        .get(3)
        .and_then(Value::to_pairs)
        .and_then(|meta| meta.into_iter().find(|(k, _)| k.as_str() == Some("ip")).and_then(|(_, v)| v.as_str()));
    Ok(NodeInfo {
        id,
        addr: NodeAddr::new(choose_host(endpoint, ip, asked_host), port),
        ip: ip.filter(|ip| !ip.is_empty() && *ip != "?").map(Arc::<str>::from),
        role,
        health: Health::Online,
        replication_offset: None,
    })
}

/// Each node's config epoch from a CLUSTER NODES reply (a bulk or verbatim string, one node per line:
/// `<id> <addr> <flags> <primary> <ping-sent> <pong-recv> <config-epoch> <link-state> <slots>...`).
///
/// Only the epochs are read: CLUSTER SHARDS gives everything else and says nothing about epochs. Lines that don't
/// have an id and a decimal epoch where they belong are skipped, so a partly garbled reply still gives what it can.
pub fn parse_cluster_nodes_epochs(reply: &Value) -> Result<HashMap<Arc<str>, u64>, TopologyParseError> {
    let text = reply
        .as_str()
        .ok_or_else(|| TopologyParseError { command: "CLUSTER NODES", reason: "not a string".to_string() })?;
    let mut epochs = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.len() < 8 || fields[0].is_empty() {
            continue;
        }
        if let Ok(epoch) = fields[6].parse::<u64>() {
            epochs.insert(Arc::<str>::from(fields[0]), epoch);
        }
    }
    Ok(epochs)
}

fn slot_range(start: &Value, end: &Value) -> Option<(u16, u16)> {
    let (start, end) = (start.as_int()?, end.as_int()?);
    (0 <= start && start <= end && end < SLOT_COUNT as i64).then_some((start as u16, end as u16))
}
