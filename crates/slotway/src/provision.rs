//! `provision_upstream = true`: for each such slotway user, an ACL user `slotway:<name>` on every node (primaries
//! and replicas, nodes that join later included) with the same key, channel and command rules, so that what the
//! nodes run for that user — scripts and functions included, whose `redis.call`s slotway can't see — is checked
//! by the nodes against the user's own rules.
//!
//! - The password is random (256 bits), made when slotway starts and held only in memory; the user's node
//!   connections log in with it (an upstream [`Identity`] of their own).
//! - [`Provisioner::reprovision`] writes every provisioned user's rules to every node (`ACL SETUSER`, as the
//!   `[upstream]` user). It runs at start, and is the entry point for a reload that changed the users.
//! - [`Provisioner::run`] keeps them there: on every topology change and every [`CHECK_INTERVAL`] it reads each
//!   node's `ACL LIST` and writes the users that are missing or lack this process's password (a node that
//!   restarted, joined, or had the user deleted).
//! - Several slotway processes can provision the same users: each adds its own password (`ACL SETUSER` never
//!   resets the passwords), the rules are the same when their configs are, and each removes its password again
//!   when it shuts down ([`Provisioner::retire`]).
use crate::auth::Users;
use crate::cluster::NodeAddr;
use crate::config::Secret;
use crate::topology::{call_value, Topology, TopologyManager};
use crate::upstream::Identity;
use resp::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// The prefix of provisioned ACL users' names on the nodes.
pub const ACL_USER_PREFIX: &str = "slotway:";

/// How often every node's users are checked (a restarted node forgets users created with ACL SETUSER).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long one node may take to answer one ACL command.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long shutdown waits for a node to drop this process's password.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// A provisioned user's identity on the nodes, made at start before the node connections exist.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// The slotway user it is for.
    pub slotway_user: String,
    /// `slotway:<name>`.
    pub acl_user: String,
    /// Random, in memory only.
    pub password: Secret,
    /// The upstream identity whose connections log in as this user.
    pub identity: Identity,
}

impl NodeIdentity {
    /// A new identity with a fresh random password.
    pub fn generate(slotway_user: &str, identity: Identity) -> NodeIdentity {
        NodeIdentity {
            slotway_user: slotway_user.to_string(),
            acl_user: format!("{ACL_USER_PREFIX}{slotway_user}"),
            password: Secret::new(crate::auth::command::random_hex(64)),
            identity,
        }
    }

    /// The password as it appears in ACL LIST (`#` + SHA-256 hex).
    fn listed_hash(&self) -> String {
        format!("#{}", crate::auth::hex(&crate::auth::sha256(self.password.expose().as_bytes())))
    }
}

/// What a node must hold for one provisioned user.
#[derive(Debug, Clone)]
struct Wanted {
    id: NodeIdentity,
    /// ACL SETUSER arguments between the name and the password ([`crate::auth::User::node_acl_rules`]).
    rules: Vec<String>,
}

/// Why provisioning failed on some nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionError {
    /// One line per node and user: what the node said, or why it couldn't be asked.
    pub errors: Vec<String>,
    /// Whether a node refused (permissions, rules it doesn't know) rather than being unreachable: retrying
    /// won't help, so startup fails on it.
    pub refused: bool,
}

impl std::fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.errors.join("\n  "))
    }
}

/// Creates and keeps the provisioned users on the nodes.
pub struct Provisioner {
    topology: Arc<TopologyManager>,
    /// Every provisioned identity this process has (fixed at start: each has its own node connections).
    identities: Vec<NodeIdentity>,
    /// What every node must hold now (replaced by `reprovision`; never locked across an await).
    wanted: Mutex<Arc<Vec<Wanted>>>,
    /// Nodes that failed the last check, so a node that stays down is logged once, not every second.
    failing: Mutex<HashMap<NodeAddr, String>>,
    /// Asks the background task to check every node now.
    wake: Notify,
}

impl Provisioner {
    pub fn new(topology: Arc<TopologyManager>, identities: Vec<NodeIdentity>) -> Arc<Provisioner> {
        Arc::new(Provisioner {
            topology,
            identities,
            wanted: Mutex::new(Arc::new(Vec::new())),
            failing: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    /// Whether there is anything to provision.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Takes the rules of the provisioned users from `users` (compiled against the command table, each with its
    /// provisioned identity as `upstream`) and writes them to every node now. Run at start, and after a reload
    /// changed the users: the entry point for re-provisioning.
    ///
    /// A user that is no longer provisioned (removed, or mapped otherwise) loses this process's password on the
    /// nodes. Returns the names of provisioned users in `users` that have no identity of their own in this
    /// process (added after start: their node connections can't exist until a restart) in `Ok`, and the nodes'
    /// refusals in `Err`.
    pub async fn reprovision(&self, users: &Users) -> Result<Vec<String>, ProvisionError> {
        let mut wanted = Vec::new();
        let mut dropped = Vec::new();
        for id in &self.identities {
            match users.get(id.slotway_user.as_bytes()) {
                Some(u) if u.upstream == id.identity => {
                    wanted.push(Wanted { id: id.clone(), rules: u.node_acl_rules() })
                }
                _ => dropped.push(id.clone()),
            }
        }
        let without: Vec<String> = users
            .sorted()
            .into_iter()
            .filter(|u| u.provisioned && !self.identities.iter().any(|id| id.slotway_user == u.name))
            .map(|u| u.name.clone())
            .collect();
        let wanted = Arc::new(wanted);
        *self.wanted.lock().expect("provision lock") = wanted.clone();
        let topology: Arc<Topology> = Arc::clone(&self.topology.load());
        if !dropped.is_empty() {
            self.remove_passwords(&topology, &dropped).await;
        }
        let mut set = JoinSet::new();
        for addr in nodes_of(&topology) {
            let pool = self.topology.upstreams().pool(&addr);
            let wanted = wanted.clone();
            set.spawn(async move {
                let mut errors = Vec::new();
                let mut refused = false;
                for w in wanted.iter() {
                    if let Err((e, r)) = set_user(&pool, w).await {
                        errors.push(format!("{addr}: {}: {e}", w.id.acl_user));
                        refused |= r;
                    }
                }
                (errors, refused)
            });
        }
        let mut failed = ProvisionError { errors: Vec::new(), refused: false };
        while let Some(done) = set.join_next().await {
            if let Ok((errors, refused)) = done {
                failed.errors.extend(errors);
                failed.refused |= refused;
            }
        }
        if failed.errors.is_empty() {
            tracing::info!(users = wanted.len(), "cluster ACL users provisioned on every node");
            Ok(without)
        } else {
            failed.errors.sort();
            Err(failed)
        }
    }

    /// Whether the `[upstream]` user may read ACL LIST (what keeps the users on the nodes), asked of one primary:
    /// Err with the node's refusal. Run at start, so a missing permission stops slotway instead of leaving nodes
    /// that restart without the users.
    pub async fn verify_list(&self) -> Result<(), String> {
        let pool = self.topology.load().any_primary(0).cloned();
        let Some(pool) = pool else { return Ok(()) };
        match call_value(&pool, &[b"ACL", b"LIST"], CALL_TIMEOUT).await {
            Ok(Value::Error(e) | Value::BlobError(e)) => Err(format!("{}: {}", pool.addr, String::from_utf8_lossy(&e))),
            _ => Ok(()),
        }
    }

    /// Keeps every node's users as they should be until `shutdown`: checks on every topology change (a node that
    /// joined, a replica promoted) and every [`CHECK_INTERVAL`] (a node that restarted).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.topology.subscribe();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                r = changes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(CHECK_INTERVAL) => {}
                _ = self.wake.notified() => {}
            }
            self.check_all().await;
        }
    }

    /// Asks the background task to check every node now (e.g. after a node connection was refused).
    pub fn check_soon(&self) {
        self.wake.notify_one();
    }

    /// Checks every node once: its `ACL LIST`, then `ACL SETUSER` for each user missing there or lacking this
    /// process's password.
    pub async fn check_all(&self) {
        let wanted = self.wanted.lock().expect("provision lock").clone();
        if wanted.is_empty() {
            return;
        }
        let topology: Arc<Topology> = Arc::clone(&self.topology.load());
        let nodes = nodes_of(&topology);
        self.failing.lock().expect("provision lock").retain(|addr, _| nodes.contains(addr));
        let mut set = JoinSet::new();
        for addr in nodes {
            let pool = self.topology.upstreams().pool(&addr);
            let wanted = wanted.clone();
            set.spawn(async move {
                let result = check_node(&pool, &wanted).await;
                (addr, result)
            });
        }
        while let Some(done) = set.join_next().await {
            let Ok((addr, result)) = done else { continue };
            let mut failing = self.failing.lock().expect("provision lock");
            match result {
                Ok(repaired) => {
                    if failing.remove(&addr).is_some() {
                        tracing::info!(node = %addr, "cluster ACL users provisioned on the node again");
                    }
                    for user in repaired {
                        tracing::info!(node = %addr, acl_user = %user, "cluster ACL user was missing; provisioned");
                    }
                }
                Err(e) => {
                    if failing.get(&addr) != Some(&e) {
                        tracing::warn!(node = %addr, error = %e, "cannot provision cluster ACL users on the node");
                        failing.insert(addr, e);
                    }
                }
            }
        }
    }

    /// Removes this process's password from every provisioned user on every node (at shutdown), so passwords of
    /// processes that are gone don't pile up there. Best effort.
    pub async fn retire(&self) {
        let topology: Arc<Topology> = Arc::clone(&self.topology.load());
        self.remove_passwords(&topology, &self.identities).await;
    }

    async fn remove_passwords(&self, topology: &Topology, ids: &[NodeIdentity]) {
        let mut set = JoinSet::new();
        for addr in nodes_of(topology) {
            let pool = self.topology.upstreams().pool(&addr);
            let ids = ids.to_vec();
            set.spawn(async move {
                for id in ids {
                    let remove = format!("<{}", id.password.expose());
                    let args: [&[u8]; 4] = [b"ACL", b"SETUSER", id.acl_user.as_bytes(), remove.as_bytes()];
                    let _ = call_value(&pool, &args, RETIRE_TIMEOUT).await;
                }
            });
        }
        while set.join_next().await.is_some() {}
    }
}

/// Every node of the topology: each shard's primary and replicas.
fn nodes_of(topology: &Topology) -> Vec<NodeAddr> {
    let mut nodes = Vec::new();
    for shard in &topology.map.shards {
        for node in std::iter::once(&shard.primary).chain(&shard.replicas) {
            // Port 0: a node the cluster lists without an address (failed, or not yet known).
            if node.addr.port != 0 && !nodes.contains(&node.addr) {
                nodes.push(node.addr.clone());
            }
        }
    }
    nodes
}

/// `ACL SETUSER <name> <rules...> ><password>` on one node. Err: what failed, and whether the node refused.
async fn set_user(pool: &crate::upstream::NodePool, w: &Wanted) -> Result<(), (String, bool)> {
    let password = format!(">{}", w.id.password.expose());
    let mut args: Vec<&[u8]> = vec![b"ACL", b"SETUSER", w.id.acl_user.as_bytes()];
    args.extend(w.rules.iter().map(|r| r.as_bytes()));
    args.push(password.as_bytes());
    match call_value(pool, &args, CALL_TIMEOUT).await {
        Ok(Value::Simple(_)) => Ok(()),
        Ok(Value::Error(e) | Value::BlobError(e)) => Err((String::from_utf8_lossy(&e).into_owned(), true)),
        Ok(other) => Err((format!("unexpected reply {other:?}"), true)),
        Err(e) => Err((e, false)),
    }
}

/// Reads one node's ACL LIST and provisions the wanted users it lacks; returns their names.
async fn check_node(pool: &crate::upstream::NodePool, wanted: &[Wanted]) -> Result<Vec<String>, String> {
    let listed = match call_value(pool, &[b"ACL", b"LIST"], CALL_TIMEOUT).await? {
        Value::Array(lines) => lines,
        Value::Error(e) | Value::BlobError(e) => return Err(String::from_utf8_lossy(&e).into_owned()),
        other => return Err(format!("unexpected ACL LIST reply {other:?}")),
    };
    let lines: Vec<&[u8]> = listed.iter().filter_map(|v| v.as_bytes().map(|b| &b[..])).collect();
    let mut repaired = Vec::new();
    for w in wanted {
        if !holds(&lines, &w.id) {
            set_user(pool, w).await.map_err(|(e, _)| format!("{}: {e}", w.id.acl_user))?;
            repaired.push(w.id.acl_user.clone());
        }
    }
    Ok(repaired)
}

/// Whether ACL LIST shows `id`'s user with this process's password.
fn holds(lines: &[&[u8]], id: &NodeIdentity) -> bool {
    let prefix = format!("user {} ", id.acl_user);
    let hash = id.listed_hash();
    lines.iter().any(|line| {
        line.starts_with(prefix.as_bytes())
            && line.split(|&b| b == b' ').any(|word| word == hash.as_bytes())
            && line.split(|&b| b == b' ').nth(2) == Some(b"on")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_list_lines_hold_a_user_with_our_password() {
        let id = NodeIdentity::generate("alice", Identity::new(1));
        assert_eq!(id.acl_user, "slotway:alice");
        assert_eq!(id.password.expose().len(), 64);
        assert_ne!(id.password.expose(), NodeIdentity::generate("alice", Identity::new(1)).password.expose());
        let hash = id.listed_hash();
        let ours = format!("user slotway:alice on #0000 {hash} ~app:* resetchannels -@all +get");
        let line = |s: &str| s.as_bytes().to_vec();
        assert!(holds(&[&line(&ours)], &id));
        assert!(!holds(&[&line("user slotway:alice on #0000 ~app:* resetchannels -@all +get")], &id));
        assert!(!holds(&[&line(&format!("user slotway:alice2 on {hash} -@all"))], &id), "another user");
        assert!(!holds(&[&line(&format!("user slotway:alice off {hash} -@all"))], &id), "disabled");
        assert!(!holds(&[], &id));
    }
}
