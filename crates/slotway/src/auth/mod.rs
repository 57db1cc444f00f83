//! slotway's own users: who may connect, and what each may run and touch, in a subset of Redis ACL syntax.
//! Pure: parsing rules, matching keys and channels, checking passwords, describing users as Redis prints them.
//! The session asks [`User::check_request`] per request; [`command`] answers the `ACL` command.

pub mod command;
mod glob;

pub use glob::glob_match;

use crate::command::{Args, CommandInfo, CommandTable};
use smallvec::SmallVec;
use std::collections::HashSet;

/// Redis 7.0's ACL categories, in the order `ACL CAT` lists them.
pub const CATEGORIES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The commands that run a script or a function on a node, where every `redis.call` is checked against the
/// connection's cluster user, never against slotway's rules.
const SCRIPT_COMMANDS: [&str; 6] = ["eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"];

/// What a user may do with channels that no rule names: Redis 7's `acl-pubsub-default`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PubSubDefault {
    /// No channel unless granted (`&pattern`, `allchannels`): Redis 7's default.
    #[default]
    ResetChannels,
    /// Every channel (Redis 6's behaviour).
    AllChannels,
}

/// A rule set compiled against the command table: the allowed command names are computed once, so the check per
/// request is one hash lookup plus the key and channel patterns.
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
    keys: KeyRules,
    channels: ChannelRules,
    /// The command rules as Redis 7.2 keeps them for `ACL GETUSER`/`LIST`: starting from everything (`+@all`)
    /// or nothing, then the later rules in order, a rule mentioned again moved to the end.
    commands_from_all: bool,
    command_rules: Vec<String>,
    /// Why scripts (EVAL, FCALL) and read-only scripts (EVAL_RO, FCALL_RO) would escape this user's rules when
    /// they run as slotway's own cluster user: the kinds of rule that restrict it. Empty = nothing to escape.
    script_limits: Vec<&'static str>,
    script_ro_limits: Vec<&'static str>,
    /// The cluster user this user's requests run as on the nodes (set by the caller after `compile`).
    pub upstream: crate::upstream::Identity,
    /// `provision_upstream`: `upstream` is an ACL user slotway creates on the nodes with these rules (set by the
    /// caller after `compile`).
    pub provisioned: bool,
}

/// Key patterns, as a Redis selector holds them.
#[derive(Debug, Clone, Default)]
struct KeyRules {
    /// `allkeys` / `~*`: every key, read and write.
    all: bool,
    patterns: Vec<KeyPattern>,
}

#[derive(Debug, Clone)]
struct KeyPattern {
    pattern: Vec<u8>,
    read: bool,
    write: bool,
}

/// Channel patterns, as a Redis selector holds them.
#[derive(Debug, Clone, Default)]
struct ChannelRules {
    /// `allchannels` / `&*`.
    all: bool,
    patterns: Vec<Vec<u8>>,
}

/// Why a request is refused; [`Denied::message`] is Redis's own wording where Redis has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The command (full name, `client|list`) is not allowed.
    Command(String),
    /// A key is outside the user's patterns (argument index of the first such key).
    Key(usize),
    /// A channel (or, for PSUBSCRIBE, a pattern) is outside the user's channel rules (its argument index).
    Channel(usize),
    /// SORT's BY or GET option names other keys: Redis 7 requires read access to every key for them.
    Sort(&'static str),
    /// A script or function would run on the nodes as slotway's own cluster user, unchecked: the user's rules of
    /// these kinds (`key`, `channel`, `command`) restrict it and it has no cluster user of its own.
    Script { command: String, limits: Vec<&'static str> },
}

impl Denied {
    /// The error reply, without the leading `-`.
    pub fn message(&self) -> String {
        match self {
            Denied::Command(name) => format!("NOPERM this user has no permissions to run the '{name}' command"),
            Denied::Key(_) => {
                "NOPERM this user has no permissions to access one of the keys used as arguments".to_string()
            }
            Denied::Channel(_) => {
                "NOPERM this user has no permissions to access one of the channels used as arguments".to_string()
            }
            Denied::Sort(option) => format!("ERR {option} option of SORT denied due to insufficient ACL permissions."),
            Denied::Script { command, limits } => format!(
                "NOPERM this user has no permissions to run the '{command}' command: its {} rules restrict it, and \
                 a script would run on the nodes as slotway's own cluster user, which slotway can't check. Allow \
                 it by mapping the user to a cluster ACL user ([users.upstream]) or with provision_upstream = true",
                match limits.split_last() {
                    Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
                    _ => limits.join(""),
                }
            ),
        }
    }

    /// What ACL LOG records for this denial: the reason and the object (the command, key or channel). None for
    /// SORT's options, which Redis refuses while running the command, without a log entry.
    pub fn log_entry<'a>(&'a self, args: Args<'a>) -> Option<(command::LogReason, &'a [u8])> {
        match self {
            Denied::Command(name) | Denied::Script { command: name, .. } => {
                Some((command::LogReason::Command, name.as_bytes()))
            }
            Denied::Key(i) => Some((command::LogReason::Key, args.get(*i))),
            Denied::Channel(i) => Some((command::LogReason::Channel, args.get(*i))),
            Denied::Sort(_) => None,
        }
    }

    /// What `ACL DRYRUN` answers (a bulk string in Redis 7.0), naming the key or channel as Redis does.
    pub fn dryrun_message(&self, args: Args<'_>) -> String {
        let arg = |i: usize| String::from_utf8_lossy(args.get(i)).into_owned();
        match self {
            Denied::Command(name) => format!("This user has no permissions to run the '{name}' command"),
            Denied::Key(i) => format!("This user has no permissions to access the '{}' key", arg(*i)),
            Denied::Channel(i) => format!("This user has no permissions to access the '{}' channel", arg(*i)),
            other => {
                let text = other.message();
                let text = text.strip_prefix("NOPERM ").or_else(|| text.strip_prefix("ERR ")).unwrap_or(&text);
                let mut chars = text.chars();
                chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
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

/// Parses `rules` (space-separated, Redis ACL SETUSER syntax subset) for `name`, resolving categories and commands
/// against `table`. `pubsub` says which channels a user has before any channel rule (Redis 7: none). Unsupported
/// rules are an error naming the rule.
pub fn compile(
    name: &str,
    password_hashes: Vec<[u8; 32]>,
    rules: &str,
    table: &CommandTable,
    pubsub: PubSubDefault,
) -> Result<User, String> {
    let mut command_rules = Vec::new();
    let mut described: Vec<String> = Vec::new();
    let mut commands_from_all = false;
    let mut keys = KeyRules::default();
    let mut channels = ChannelRules { all: pubsub == PubSubDefault::AllChannels, patterns: Vec::new() };
    let mut nopass = false;
    let mut enabled = true;
    for rule in rules.split_whitespace() {
        let lower = rule.to_ascii_lowercase();
        match lower.as_str() {
            "on" => enabled = true,
            "off" => enabled = false,
            "nopass" => nopass = true,
            "allcommands" | "+@all" => {
                command_rules.push(CommandRule::All(true));
                commands_from_all = true;
                described.clear();
            }
            "nocommands" | "-@all" => {
                command_rules.push(CommandRule::All(false));
                commands_from_all = false;
                described.clear();
            }
            "allkeys" | "~*" => keys = KeyRules { all: true, patterns: Vec::new() },
            "resetkeys" => keys = KeyRules::default(),
            "allchannels" | "&*" => channels = ChannelRules { all: true, patterns: Vec::new() },
            "resetchannels" => channels = ChannelRules::default(),
            _ => {
                if let Some(cat) = lower.strip_prefix("+@").or_else(|| lower.strip_prefix("-@")) {
                    let allow = lower.starts_with('+');
                    command_rules.push(CommandRule::Category(known_category(cat, table, rule)?, allow));
                    describe_command_rule(&mut described, &format!("@{cat}"), allow);
                } else if let Some(cmd) = lower.strip_prefix('+').or_else(|| lower.strip_prefix('-')) {
                    let allow = lower.starts_with('+');
                    command_rules.push(CommandRule::Command(known_command(cmd, table, rule)?, allow));
                    describe_command_rule(&mut described, cmd, allow);
                } else if rule.starts_with('~') || rule.starts_with('%') {
                    add_key_pattern(&mut keys, rule).map_err(|e| format!("user {name}: {e} in '{rule}'"))?;
                } else if let Some(p) = rule.strip_prefix('&') {
                    if channels.all {
                        return Err(format!("user {name}: {ADDING_AFTER_ALLCHANNELS} ('{rule}')"));
                    }
                    if !channels.patterns.iter().any(|c| c == p.as_bytes()) {
                        channels.patterns.push(p.as_bytes().to_vec());
                    }
                } else {
                    return Err(format!(
                        "user {name}: unsupported ACL rule '{rule}' (supported: on, off, nopass, +@cat, -@cat, +cmd, \
                         -cmd, allcommands, nocommands, ~pattern, %R~pattern, %W~pattern, %RW~pattern, allkeys, \
                         resetkeys, &pattern, allchannels, resetchannels)"
                    ));
                }
            }
        }
    }
    let allowed: HashSet<String> =
        table.iter().filter(|info| allowed_by(&command_rules, info)).map(|info| info.name.clone()).collect();
    let mut user = User {
        name: name.to_string(),
        password_hashes,
        nopass,
        enabled,
        allowed,
        keys,
        channels,
        commands_from_all,
        command_rules: described,
        script_limits: Vec::new(),
        script_ro_limits: Vec::new(),
        upstream: crate::upstream::Identity::DEFAULT,
        provisioned: false,
    };
    user.script_limits = user.script_escape(table, false);
    user.script_ro_limits = user.script_escape(table, true);
    Ok(user)
}

const ADDING_AFTER_ALLKEYS: &str = "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and \
     does not have any effect. Try 'resetkeys' to start with an empty list of patterns";
const ADDING_AFTER_ALLCHANNELS: &str = "Adding a pattern after the * pattern (or the 'allchannels' flag) is not \
     valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels";

/// `~pattern` or `%R~` / `%W~` / `%RW~pattern`, as Redis's ACLSetSelector reads them (the same pattern again only
/// widens its permissions).
fn add_key_pattern(keys: &mut KeyRules, rule: &str) -> Result<(), &'static str> {
    if keys.all {
        return Err(ADDING_AFTER_ALLKEYS);
    }
    let (read, write, pattern) = match rule.strip_prefix('~') {
        Some(p) => (true, true, p),
        None => {
            let rest = &rule[1..];
            let (perm, p) = rest.split_once('~').ok_or("key permission must be R, W or RW followed by ~")?;
            let (mut read, mut write) = (false, false);
            for c in perm.chars() {
                match c.to_ascii_uppercase() {
                    'R' if !read => read = true,
                    'W' if !write => write = true,
                    _ => return Err("key permission must be R, W or RW followed by ~"),
                }
            }
            if !read && !write {
                return Err("key permission must be R, W or RW followed by ~");
            }
            (read, write, p)
        }
    };
    match keys.patterns.iter_mut().find(|k| k.pattern == pattern.as_bytes()) {
        Some(k) => {
            k.read |= read;
            k.write |= write;
        }
        None => keys.patterns.push(KeyPattern { pattern: pattern.as_bytes().to_vec(), read, write }),
    }
    Ok(())
}

/// Keeps `+name`/`-name` in the described rules as Redis 7.2 does: an earlier mention of the same command or
/// category (or of a subcommand of this container) is dropped, and the rule goes at the end.
fn describe_command_rule(described: &mut Vec<String>, name: &str, allow: bool) {
    let sub_prefix = format!("{name}|");
    described.retain(|r| {
        let existing = &r[1..];
        existing != name && !existing.starts_with(&sub_prefix)
    });
    described.push(format!("{}{name}", if allow { '+' } else { '-' }));
}

fn known_category(cat: &str, table: &CommandTable, rule: &str) -> Result<String, String> {
    if CATEGORIES.contains(&cat) || table.iter().any(|c| c.acl_categories.iter().any(|x| x == cat)) {
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

/// Lower-case hex, as Redis prints password hashes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    /// The implicit user of a slotway without `[[users]]`: Redis's `default` user (`on nopass ~* &* +@all`).
    pub fn implicit_default(table: &CommandTable) -> User {
        compile("default", Vec::new(), "on nopass allkeys allchannels allcommands", table, PubSubDefault::default())
            .expect("the default user's rules are valid")
    }

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

    /// Everything Redis 7 checks before running a request, in Redis's order — the command, its keys, its
    /// channels — plus the two checks Redis makes while running one: SORT's BY/GET patterns and, because
    /// slotway can't see into scripts, whether a script would escape the user's rules. `Denied::Key` and
    /// `Denied::Channel` carry the argument index.
    pub fn check_request(&self, info: &CommandInfo, args: Args<'_>) -> Result<(), Denied> {
        self.check_permissions(info, args)?;
        self.check_sort(info, args)?;
        self.check_script(info)
    }

    /// What `ACL DRYRUN` checks: the command, keys and channels, as Redis does, and whether a script would be
    /// refused (Redis would find that out only while running it; slotway refuses it beforehand).
    pub fn check_dryrun(&self, info: &CommandInfo, args: Args<'_>) -> Result<(), Denied> {
        self.check_permissions(info, args)?;
        self.check_script(info)
    }

    fn check_permissions(&self, info: &CommandInfo, args: Args<'_>) -> Result<(), Denied> {
        if !self.allowed.contains(&info.name) {
            return Err(Denied::Command(info.name.clone()));
        }
        // Shard channels (SSUBSCRIBE, SPUBLISH) are found like keys, for routing, but are not keys: Redis checks
        // them against channel rules only.
        if !self.keys.all && !info.flags.pubsub && info.has_keys() {
            let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
            // Malformed requests are left to the planner, which words the error as Redis does.
            let _ = crate::command::key_indexes(info, args, &mut keys);
            // Write commands need write access to their keys, everything else read access (Redis refines this per
            // key with key-spec flags; slotway is stricter for the few commands that read one key and write
            // another).
            if let Some(&i) = keys.iter().find(|&&i| !self.key_allowed(args.get(i), info.flags.write)) {
                return Err(Denied::Key(i));
            }
        }
        if !self.channels.all {
            if let Some((first, last, literal)) = channel_args(&info.name, args.len()) {
                for i in first..last {
                    if !self.channel_allowed(args.get(i), literal) {
                        return Err(Denied::Channel(i));
                    }
                }
            }
        }
        Ok(())
    }

    /// SORT / SORT_RO with `BY pattern` (a pattern with `*`: the elements are looked up in other keys) or `GET`:
    /// Redis 7 requires read access to every key, and checks it while parsing the options, in order.
    fn check_sort(&self, info: &CommandInfo, args: Args<'_>) -> Result<(), Denied> {
        let store = match info.name.as_str() {
            "sort" => true,
            "sort_ro" => false,
            _ => return Ok(()),
        };
        if self.reads_every_key() {
            return Ok(());
        }
        let mut j = 2;
        while j < args.len() {
            let left = args.len() - j - 1;
            let opt = args.get(j);
            let is = |name: &[u8]| opt.eq_ignore_ascii_case(name);
            if is(b"asc") || is(b"desc") || is(b"alpha") {
            } else if is(b"limit") && left >= 2 {
                let int = |i: usize| std::str::from_utf8(args.get(i)).ok().and_then(|s| s.parse::<i64>().ok());
                if int(j + 1).is_none() || int(j + 2).is_none() {
                    return Ok(()); // the node words the error
                }
                j += 2;
            } else if store && is(b"store") && left >= 1 {
                j += 1;
            } else if is(b"by") && left >= 1 {
                if args.get(j + 1).contains(&b'*') {
                    return Err(Denied::Sort("BY"));
                }
                j += 1;
            } else if is(b"get") && left >= 1 {
                return Err(Denied::Sort("GET"));
            } else {
                return Ok(()); // a syntax error: the node says so
            }
            j += 1;
        }
        Ok(())
    }

    /// Scripts and functions run on the nodes; every `redis.call` in them is checked against the connection's
    /// cluster user. A user with a cluster user of its own (mapped or provisioned) is confined there; one that runs
    /// as slotway's `[upstream]` user would not be, if its rules restrict anything a script can do.
    fn check_script(&self, info: &CommandInfo) -> Result<(), Denied> {
        if !SCRIPT_COMMANDS.contains(&info.name.as_str()) || self.upstream != crate::upstream::Identity::DEFAULT {
            return Ok(());
        }
        let limits = if info.name.ends_with("_ro") { &self.script_ro_limits } else { &self.script_limits };
        if limits.is_empty() {
            return Ok(());
        }
        Err(Denied::Script { command: info.name.clone(), limits: limits.clone() })
    }

    /// The kinds of rule a script (`read_only`: a read-only one) could get around when run as another user:
    /// keys (any key it may not read, or write), channels (a script can PUBLISH), commands (any command a script
    /// may call that the user may not run).
    fn script_escape(&self, table: &CommandTable, read_only: bool) -> Vec<&'static str> {
        // What a script may call: commands not flagged `noscript`; a read-only script nothing that writes or
        // publishes (EVAL_RO refuses writes and `may_replicate` commands, a flag COMMAND doesn't show: PUBLISH
        // and SPUBLISH are the ones that matter here). slotway's own SLOTWAY command never reaches a node.
        let publish = |c: &CommandInfo| matches!(c.name.as_str(), "publish" | "spublish");
        let callable = |c: &&CommandInfo| {
            !c.flags.noscript && !(read_only && (c.flags.write || publish(c))) && !c.name.starts_with("slotway")
        };
        let mut limits = Vec::new();
        if !self.keys.all && !self.key_access_everywhere(true, !read_only) {
            limits.push("key");
        }
        let publishes = table.iter().filter(callable).any(publish);
        if !self.channels.all && publishes {
            limits.push("channel");
        }
        if table.iter().filter(callable).any(|c| !self.allowed.contains(&c.name)) {
            limits.push("command");
        }
        limits
    }

    /// Whether the user may read every key (`allkeys`, or a `*` pattern with read access): what SORT's BY and
    /// GET need in Redis 7.
    pub fn reads_every_key(&self) -> bool {
        self.keys.all || self.key_access_everywhere(true, false)
    }

    /// Whether one pattern `*` grants this access (Redis's ACLSelectorHasUnrestrictedKeyAccess).
    fn key_access_everywhere(&self, read: bool, write: bool) -> bool {
        self.keys.patterns.iter().any(|p| p.pattern == b"*" && (p.read || !read) && (p.write || !write))
    }

    fn key_allowed(&self, key: &[u8], write: bool) -> bool {
        self.keys.all
            || self.keys.patterns.iter().any(|p| if write { p.write } else { p.read } && glob_match(&p.pattern, key))
    }

    /// Channel rules: a channel matches a pattern as in PUBLISH; a PSUBSCRIBE pattern (`literal`) must equal one
    /// of the user's patterns exactly, as Redis compares them.
    fn channel_allowed(&self, channel: &[u8], literal: bool) -> bool {
        self.channels.all
            || self.channels.patterns.iter().any(|p| if literal { p == channel } else { glob_match(p, channel) })
    }

    /// Whether the user may run this command (full name, `client|list`).
    pub fn may_run(&self, name: &str) -> bool {
        self.allowed.contains(name)
    }

    /// Whether the user may run a pub/sub command of the table but has no channel: worth a note at start,
    /// since Redis 7 users get no channels unless granted.
    pub fn has_pubsub_but_no_channels(&self) -> bool {
        !self.channels.all
            && self.channels.patterns.is_empty()
            && ["subscribe", "ssubscribe", "psubscribe", "publish", "spublish"]
                .iter()
                .any(|c| self.allowed.contains(*c))
    }

    /// ACL GETUSER's `flags`: `on` or `off`, then `nopass`.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        flags
    }

    /// The password hashes, as Redis prints them (lower-case hex).
    pub fn password_hashes(&self) -> Vec<String> {
        self.password_hashes.iter().map(|h| hex(h)).collect()
    }

    /// ACL GETUSER's `commands`: `+@all` or `-@all`, then the rules that followed, as Redis 7.2 prints them.
    pub fn describe_commands(&self) -> String {
        let base = if self.commands_from_all { "+@all" } else { "-@all" };
        std::iter::once(base).chain(self.command_rules.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
    }

    /// ACL GETUSER's `keys`: `~*` for every key, else the patterns (`~p`, `%R~p`, `%W~p`).
    pub fn describe_keys(&self) -> String {
        self.key_tokens().join(" ")
    }

    /// ACL GETUSER's `channels`: `&*` for every channel, else the patterns (`&p`), empty for none.
    pub fn describe_channels(&self) -> String {
        if self.channels.all {
            return "&*".to_string();
        }
        self.channels.patterns.iter().map(|p| format!("&{}", String::from_utf8_lossy(p))).collect::<Vec<_>>().join(" ")
    }

    fn key_tokens(&self) -> Vec<String> {
        if self.keys.all {
            return vec!["~*".to_string()];
        }
        self.keys
            .patterns
            .iter()
            .map(|p| {
                let perm = match (p.read, p.write) {
                    (true, true) => "~",
                    (true, false) => "%R~",
                    _ => "%W~",
                };
                format!("{perm}{}", String::from_utf8_lossy(&p.pattern))
            })
            .collect()
    }

    /// The line ACL LIST shows for this user, in Redis's config-file format:
    /// `user <name> <flags> <#hashes> <keys> <channels> <commands>`.
    pub fn acl_list_line(&self) -> String {
        let mut words = vec!["user".to_string(), self.name.clone()];
        words.extend(self.flags().into_iter().map(String::from));
        words.extend(self.password_hashes().into_iter().map(|h| format!("#{h}")));
        words.extend(self.key_tokens());
        words.extend(self.channel_tokens());
        words.push(self.describe_commands());
        words.join(" ")
    }

    fn channel_tokens(&self) -> Vec<String> {
        if self.channels.all {
            return vec!["&*".to_string()];
        }
        std::iter::once("resetchannels".to_string())
            .chain(self.channels.patterns.iter().map(|p| format!("&{}", String::from_utf8_lossy(p))))
            .collect()
    }

    /// The rules an ACL user on the nodes needs to enforce what this user may do (`users.provision_upstream`),
    /// as `ACL SETUSER` arguments after the name and before the password: every earlier rule of that node user
    /// reset, then this user's key, channel and command rules, plus what slotway itself sends on the user's
    /// connections (PING health checks, ASKING during resharding, READONLY for replica reads; DISCARD/UNWATCH
    /// and `SCRIPT LOAD` when the user may run transactions or EVALSHA; WAIT's marker key).
    pub fn node_acl_rules(&self) -> Vec<String> {
        let mut rules: Vec<String> = ["on", "clearselectors", "resetkeys", "resetchannels"].map(String::from).into();
        if self.keys.all {
            rules.push("allkeys".into());
        } else {
            rules.extend(self.key_tokens());
            if self.may_run("wait") || self.may_run("waitaof") {
                rules.push("~__slotway_wait__*".into());
            }
        }
        if self.channels.all {
            rules.push("allchannels".into());
        } else {
            rules.extend(self.channels.patterns.iter().map(|p| format!("&{}", String::from_utf8_lossy(p))));
        }
        rules.push(if self.commands_from_all { "+@all" } else { "-@all" }.into());
        // CLIENT and SLOTWAY are answered by slotway and never reach a node (nor can a script call them): rules
        // about them mean nothing there, and the nodes may not know SLOTWAY or CLIENT SETINFO.
        let local = |r: &String| {
            let name = &r[1..];
            ["client", "slotway"].iter().any(|c| name == *c || name.strip_prefix(c).is_some_and(|s| s.starts_with('|')))
        };
        rules.extend(self.command_rules.iter().filter(|r| !local(r)).cloned());
        rules.extend(["+ping", "+asking", "+readonly"].map(String::from));
        if self.may_run("multi") {
            rules.extend(["+discard", "+unwatch"].map(String::from));
        }
        if self.may_run("evalsha") || self.may_run("evalsha_ro") {
            rules.push("+script|load".into());
        }
        if self.may_run("wait") || self.may_run("waitaof") {
            rules.extend(["+multi", "+exec"].map(String::from));
        }
        rules
    }
}

/// The arguments of a pub/sub command that are channels: `[first, last)` and whether they are PSUBSCRIBE
/// patterns (compared literally). As Redis's channel specs: SUBSCRIBE, SSUBSCRIBE and PSUBSCRIBE every argument,
/// PUBLISH and SPUBLISH the first; the UNSUBSCRIBE family is never checked.
fn channel_args(name: &str, argc: usize) -> Option<(usize, usize, bool)> {
    match name {
        "subscribe" | "ssubscribe" => Some((1, argc, false)),
        "psubscribe" => Some((1, argc, true)),
        "publish" | "spublish" => Some((1, argc.min(2), false)),
        _ => None,
    }
}

/// Every configured user, plus the per-address record of failed AUTH attempts.
pub struct Users {
    by_name: std::collections::HashMap<String, std::sync::Arc<User>>,
    /// Shared with the sets that replace this one (a reload), so replacing the users doesn't reset the limit.
    failures: std::sync::Arc<FailureRecord>,
    /// Denied commands and failed AUTHs (ACL LOG); shared with the sets that replace this one, like `failures`.
    pub log: std::sync::Arc<command::AclLog>,
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
        Users { by_name, log: Default::default(), failures: Default::default(), max_failures_per_minute }
    }

    /// A new set of users that keeps this set's record of failed AUTH attempts (for a reload).
    pub fn replaced_by(&self, users: Vec<User>, max_failures_per_minute: u32) -> Users {
        Users { failures: self.failures.clone(), log: self.log.clone(), ..Users::new(users, max_failures_per_minute) }
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

    /// The user of this name.
    pub fn get(&self, name: &[u8]) -> Option<&std::sync::Arc<User>> {
        std::str::from_utf8(name).ok().and_then(|n| self.by_name.get(n))
    }

    /// Every user, sorted by name (the order ACL USERS and ACL LIST use, as Redis's radix tree does).
    pub fn sorted(&self) -> Vec<&std::sync::Arc<User>> {
        let mut users: Vec<_> = self.by_name.values().collect();
        users.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        users
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
