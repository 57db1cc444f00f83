//! slotway's own users: who may connect, and what each may run and touch, in a subset of Redis ACL syntax.
//! Pure: parsing rules, matching keys, checking passwords. The session asks [`User::check`] per request.

mod glob;

pub use glob::glob_match;

use crate::command::{CommandInfo, CommandTable};
use std::collections::HashSet;

/// A rule set compiled against the command table: the allowed command names are computed once, so the check per
/// request is one hash lookup plus the key patterns.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// SHA-256 digests of the accepted passwords (Redis's `#<hex>` form).
    password_hashes: Vec<[u8; 32]>,
    /// `nopass`: any password is accepted.
    nopass: bool,
    enabled: bool,
    /// Lower-case command names (`get`, `client|list`) the user may run.
    allowed: HashSet<String>,
    /// Key patterns with the access they grant.
    keys: Vec<KeyPattern>,
    /// The cluster user this user's requests run as on the nodes (set by the caller after `compile`).
    pub upstream: crate::upstream::Identity,
}

#[derive(Debug, Clone)]
struct KeyPattern {
    pattern: Vec<u8>,
    read: bool,
    write: bool,
}

/// Why a request is refused; the text is Redis's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Command(String),
    Key,
}

impl Denied {
    pub fn message(&self) -> String {
        match self {
            Denied::Command(name) => format!("NOPERM this user has no permissions to run the '{name}' command"),
            Denied::Key => {
                "NOPERM this user has no permissions to access one of the keys used as arguments".to_string()
            }
        }
    }
}

/// A command rule in the order written (later rules override earlier ones, as in Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
enum CommandRule {
    All(bool),
    Category(String, bool),
    Command(String, bool),
}

/// Parses `rules` (space-separated, Redis ACL SETUSER syntax subset) for `name`, resolving categories against
/// `table`. Unsupported rules are an error naming the rule.
pub fn compile(name: &str, password_hashes: Vec<[u8; 32]>, rules: &str, table: &CommandTable) -> Result<User, String> {
    let mut command_rules = Vec::new();
    let mut keys = Vec::new();
    let mut nopass = false;
    let mut enabled = true;
    for rule in rules.split_whitespace() {
        let lower = rule.to_ascii_lowercase();
        match lower.as_str() {
            "on" => enabled = true,
            "off" => enabled = false,
            "nopass" => nopass = true,
            "allcommands" | "+@all" => command_rules.push(CommandRule::All(true)),
            "nocommands" | "-@all" => command_rules.push(CommandRule::All(false)),
            "allkeys" => keys.push(KeyPattern { pattern: b"*".to_vec(), read: true, write: true }),
            "resetkeys" => keys.clear(),
            _ => {
                if let Some(cat) = lower.strip_prefix("+@") {
                    command_rules.push(CommandRule::Category(known_category(cat, table, rule)?, true));
                } else if let Some(cat) = lower.strip_prefix("-@") {
                    command_rules.push(CommandRule::Category(known_category(cat, table, rule)?, false));
                } else if let Some(cmd) = lower.strip_prefix('+') {
                    command_rules.push(CommandRule::Command(known_command(cmd, table, rule)?, true));
                } else if let Some(cmd) = lower.strip_prefix('-') {
                    command_rules.push(CommandRule::Command(known_command(cmd, table, rule)?, false));
                } else if let Some(p) = rule.strip_prefix('~') {
                    keys.push(KeyPattern { pattern: p.as_bytes().to_vec(), read: true, write: true });
                } else if let Some(rest) = rule.strip_prefix('%') {
                    let (perm, p) =
                        rest.split_once('~').ok_or_else(|| format!("user {name}: malformed key rule '{rule}'"))?;
                    let perm = perm.to_ascii_uppercase();
                    if perm.is_empty() || !perm.chars().all(|c| c == 'R' || c == 'W') {
                        return Err(format!("user {name}: key permission must be R, W or RW in '{rule}'"));
                    }
                    keys.push(KeyPattern {
                        pattern: p.as_bytes().to_vec(),
                        read: perm.contains('R'),
                        write: perm.contains('W'),
                    });
                } else {
                    return Err(format!(
                        "user {name}: unsupported ACL rule '{rule}' (supported: on, off, nopass, +@cat, -@cat, +cmd, \
                         -cmd, allcommands, nocommands, ~pattern, %R~pattern, %W~pattern, %RW~pattern, allkeys, resetkeys)"
                    ));
                }
            }
        }
    }
    let allowed = table.iter().filter(|info| allowed_by(&command_rules, info)).map(|info| info.name.clone()).collect();
    Ok(User {
        name: name.to_string(),
        password_hashes,
        nopass,
        enabled,
        allowed,
        keys,
        upstream: crate::upstream::Identity::DEFAULT,
    })
}

fn known_category(cat: &str, table: &CommandTable, rule: &str) -> Result<String, String> {
    if table.iter().any(|c| c.acl_categories.iter().any(|x| x == cat)) {
        Ok(cat.to_string())
    } else {
        Err(format!("unknown ACL category in '{rule}'"))
    }
}

fn known_command(cmd: &str, table: &CommandTable, rule: &str) -> Result<String, String> {
    if table.iter().any(|c| c.name == cmd) {
        Ok(cmd.to_string())
    } else {
        Err(format!("unknown command in ACL rule '{rule}'"))
    }
}

/// Applies the rules in order to one command: the last rule that mentions it (or its category, or all) wins.
/// A container rule (`+client`) also covers its subcommands (`client|list`).
fn allowed_by(rules: &[CommandRule], info: &CommandInfo) -> bool {
    let container = info.name.split('|').next().unwrap_or(&info.name);
    let mut allowed = false;
    for rule in rules {
        match rule {
            CommandRule::All(a) => allowed = *a,
            CommandRule::Category(cat, a) if info.acl_categories.iter().any(|c| c == cat) => allowed = *a,
            CommandRule::Command(name, a) if *name == info.name || name == container => allowed = *a,
            _ => {}
        }
    }
    allowed
}

/// SHA-256 of a password, as the config's `#<hex>` hashes are written.
pub fn sha256(password: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, password);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Parses 64 hex digits.
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.strip_prefix('#').unwrap_or(hex);
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

impl User {
    /// Whether `password` opens this user (constant-time comparison of digests).
    pub fn accepts(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let digest = sha256(password);
        // Compare every byte of every hash, so the time taken says nothing about how close a guess was.
        self.password_hashes
            .iter()
            .fold(false, |ok, h| ok | (h.iter().zip(&digest).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0))
    }

    /// May this user run `info` with these keys? `keys` are the request's key arguments.
    pub fn check<'k>(&self, info: &CommandInfo, keys: impl IntoIterator<Item = &'k [u8]>) -> Result<(), Denied> {
        if !self.allowed.contains(&info.name) {
            return Err(Denied::Command(info.name.clone()));
        }
        // Write commands need write access to their keys, everything else read access (Redis refines this per
        // key with key-spec flags; slotway is stricter for the few commands that read one key and write another).
        let write = info.flags.write;
        for key in keys {
            let ok = self.keys.iter().any(|p| if write { p.write } else { p.read } && glob_match(&p.pattern, key));
            if !ok {
                return Err(Denied::Key);
            }
        }
        Ok(())
    }

    /// May this user see `key` (used to filter keys the user can't read out of SCAN/KEYS results)?
    pub fn can_read_key(&self, key: &[u8]) -> bool {
        self.keys.iter().any(|p| p.read && glob_match(&p.pattern, key))
    }
}

/// Every configured user, plus the per-address record of failed AUTH attempts.
pub struct Users {
    by_name: std::collections::HashMap<String, std::sync::Arc<User>>,
    /// Shared with the sets that replace this one (a reload), so replacing the users doesn't reset the limit.
    failures: std::sync::Arc<FailureRecord>,
    max_failures_per_minute: u32,
}

/// Failed AUTH attempts per address: (count, since).
type FailureRecord = std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, std::time::Instant)>>;

/// The outcome of an AUTH attempt.
pub enum AuthResult {
    Ok(std::sync::Arc<User>),
    /// Wrong user or password (Redis's WRONGPASS).
    Denied,
    /// Too many recent failures from this address: not even checked.
    RateLimited,
}

impl Users {
    pub fn new(users: Vec<User>, max_failures_per_minute: u32) -> Users {
        let by_name = users.into_iter().map(|u| (u.name.clone(), std::sync::Arc::new(u))).collect();
        Users { by_name, failures: Default::default(), max_failures_per_minute }
    }

    /// A new set of users that keeps this set's record of failed AUTH attempts (for a reload).
    pub fn replaced_by(&self, users: Vec<User>, max_failures_per_minute: u32) -> Users {
        Users { failures: self.failures.clone(), ..Users::new(users, max_failures_per_minute) }
    }

    /// The user of this name.
    pub fn get(&self, name: &str) -> Option<std::sync::Arc<User>> {
        self.by_name.get(name).cloned()
    }

    /// The user a new connection starts as: `default` when it exists and needs no password (as in Redis),
    /// otherwise nobody (the client must AUTH).
    pub fn initial(&self) -> Option<std::sync::Arc<User>> {
        self.by_name.get("default").filter(|u| u.enabled && u.nopass).cloned()
    }

    /// Whether a user of this name is configured (CLIENT KILL USER).
    pub fn exists(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Checks `user` (None = `default`) and `password` for a client at `from`.
    pub fn authenticate(&self, user: Option<&[u8]>, password: &[u8], from: std::net::IpAddr) -> AuthResult {
        let now = std::time::Instant::now();
        let minute = std::time::Duration::from_secs(60);
        {
            let failures = self.failures.lock().expect("auth failures lock");
            if let Some(&(count, since)) = failures.get(&from) {
                if count >= self.max_failures_per_minute && now.duration_since(since) < minute {
                    return AuthResult::RateLimited;
                }
            }
        }
        let name = user.map(String::from_utf8_lossy).unwrap_or(std::borrow::Cow::Borrowed("default"));
        match self.by_name.get(name.as_ref()) {
            Some(u) if u.accepts(password) => AuthResult::Ok(u.clone()),
            _ => {
                let mut failures = self.failures.lock().expect("auth failures lock");
                // Forget stale entries so the map can't grow without bound across many addresses.
                failures.retain(|_, (_, since)| now.duration_since(*since) < minute);
                let entry = failures.entry(from).or_insert((0, now));
                entry.0 += 1;
                AuthResult::Denied
            }
        }
    }
}

#[cfg(test)]
mod tests;
