//! The command table: arity, flags, key positions and routing shape, filled from the nodes' COMMAND reply,
//! with built-in rules for the commands slotway handles itself. No I/O.
//!
//! Use: [`CommandTable::resolve`] the request, take [`route_for`] (not just [`CommandInfo::route`]: a few routes
//! depend on the arguments), and for [`Route::Keys`] get the keys with [`key_indexes`].
use resp::Value;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

mod rules;
mod spec;
#[cfg(test)]
mod tests;

use rules::Dynamic;
pub use rules::{
    UNSUPPORTED_ADMIN, UNSUPPORTED_BLOCKING, UNSUPPORTED_CONFIG, UNSUPPORTED_DATABASES, UNSUPPORTED_KEYLESS,
    UNSUPPORTED_MIGRATE, UNSUPPORTED_PUBSUB, UNSUPPORTED_SCRIPT_DEBUG, UNSUPPORTED_UNKNOWN_KEYS,
};
use spec::{BeginSearch, FindKeys, KeyRule, KeySpec, NumkeysWording};

/// The longest command name (or `container|subcommand`) [`CommandTable::lookup`] and [`CommandTable::resolve`]
/// look up; longer names are unknown.
pub const MAX_NAME_LEN: usize = 64;

/// Arguments of one request: the frame's bytes and each argument's byte range in it (index 0 = command name).
#[derive(Clone, Copy)]
pub struct Args<'a> {
    pub frame: &'a [u8],
    pub ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.frame[self.ranges[i].clone()]
    }
}

/// Commands slotway answers itself instead of forwarding.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LocalCommand {
    Ping,
    Echo,
    Quit,
    Select,
    Info,
    Hello,
    Auth,
    Reset,
    ReadOnly,
    ReadWrite,
    Client,
    /// `SLOTWAY REFRESH|TOPOLOGY|TRACE|HELP`: slotway's own administration.
    Slotway,
    /// SLOWLOG about slotway's own clients' requests.
    Slowlog,
    /// LATENCY LATEST/HISTORY/RESET/HISTOGRAM about slotway's own clients' requests.
    Latency,
    /// `SENTINEL get-master-addr-by-name|masters|master|replicas|sentinels|...`: slotway as its clients' sentinel.
    Sentinel,
    /// ROLE: `master`, whatever is behind slotway (it is the endpoint for writes).
    Role,
    /// `ACL ...` about slotway's own users.
    Acl,
}

/// How a command is routed through the standalone endpoint.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Key-bearing: all keys must hash to one slot; sent to that slot's primary.
    /// (A command whose key spec yields zero keys for these args, e.g. EVAL with numkeys 0, goes to any primary.)
    Keys,
    /// Keyless, and any primary answers it the same way (TIME, LASTSAVE, PUBLISH, COMMAND ..., ECHO).
    AnyNode,
    /// Multi-key and splittable: keys in one slot go to that slot's primary as is; keys across slots are split
    /// into one sub-request per slot and the replies merged as [`SplitKind`] says.
    Split(SplitKind),
    /// Answered by slotway.
    Local(LocalCommand),
    /// Keyless, and its answer depends on the whole keyspace or every node: sent to every primary that serves
    /// slots (one sub-request per shard) and the replies merged as [`FanOut`] says.
    AllPrimaries(FanOut),
    /// SCAN: one cursor that walks every shard in turn (see `dispatch::fanout` for the cursor encoding).
    Scan,
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH: the session runs the transaction on a dedicated connection to the node
    /// of its keys (WATCH's keys are found as for [`Route::Keys`]).
    Transaction(TxnCommand),
    /// A blocking command (BLPOP, BLMOVE, BZPOPMIN, XREAD ... BLOCK, ...): keys as for [`Route::Keys`], sent on a
    /// dedicated connection so that it can't stall the shared ones.
    Blocking,
    /// WAIT / WAITAOF: keyless and blocking; sent on a dedicated connection to the node of the client's last write.
    Wait,
    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UN... forms: run by the session on dedicated pub/sub
    /// connections (SSUBSCRIBE/SUNSUBSCRIBE routed by the shard channel's slot, found as keys).
    PubSub(PubSubCommand),
    /// Not available through the standalone endpoint (yet); the text says why, e.g. "blocking commands are not supported yet".
    Unsupported(&'static str),
}

/// How the replies of a command sent to every primary are merged into the client's one reply.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FanOut {
    /// DBSIZE: the sum of the integers.
    SumIntegers,
    /// KEYS: the arrays concatenated.
    ConcatArrays,
    /// RANDOMKEY: a random non-nil reply (nil only when every shard is empty).
    RandomKey,
    /// FLUSHALL, FLUSHDB, FUNCTION DELETE/FLUSH/RESTORE, CONFIG RESETSTAT: `+OK` when every node said so.
    AllOk,
    /// SCRIPT KILL, FUNCTION KILL: `+OK` when some node killed something, else the first node's error (NOTBUSY).
    AnyOk,
    /// FUNCTION LOAD: every node must give the same reply (the library name); it is the client's reply.
    SameReply,
    /// SCRIPT LOAD: as [`FanOut::SameReply`] (the SHA1), and slotway remembers the body for NOSCRIPT recovery.
    ScriptLoad,
    /// SCRIPT FLUSH: as [`FanOut::AllOk`], and slotway forgets the bodies it remembered.
    ScriptFlush,
    /// SCRIPT EXISTS: arrays of 0/1, merged element-wise: 1 only where every node has the script.
    AllOnes,
    /// PUBSUB CHANNELS / SHARDCHANNELS: the union of the nodes' channel names.
    Union,
    /// PUBSUB NUMSUB: each channel's subscriber counts summed over the nodes, in argument order.
    NumSub,
    /// PUBSUB SHARDNUMSUB: each channel asked of its slot's primary (one part per slot), in argument order.
    ShardNumSub,
    /// INFO: see [`crate::observe::info`] (sections summed over the primaries, slotway's own sections, the
    /// rest from one node). INFO asking only for slotway's own sections is answered locally.
    Info,
}

impl FanOut {
    /// Safe to resend after a connection died with it in flight, whatever the command's flags say.
    pub fn idempotent(self) -> bool {
        matches!(
            self,
            FanOut::ScriptLoad
                | FanOut::AllOnes
                | FanOut::Info
                | FanOut::SumIntegers
                | FanOut::ConcatArrays
                | FanOut::Union
                | FanOut::NumSub
                | FanOut::ShardNumSub
        )
    }
}

/// The subscribe family.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PubSubCommand {
    Subscribe,
    Unsubscribe,
    PSubscribe,
    PUnsubscribe,
    SSubscribe,
    SUnsubscribe,
}

/// The transaction commands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TxnCommand {
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
}

/// How the replies of a split multi-key command are merged.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SplitKind {
    /// MGET: one key per argument; the reply is an array of values in the original key order.
    MGet,
    /// MSET: key/value pairs; the reply is `+OK` when every part said so.
    MSet,
    /// DEL, UNLINK, EXISTS, TOUCH: one key per argument; the reply is the sum of the parts' integers.
    SumIntegers,
}

impl SplitKind {
    /// Arguments per key in the request (2 for MSET's key/value pairs).
    pub fn step(self) -> usize {
        match self {
            SplitKind::MSet => 2,
            _ => 1,
        }
    }
}

/// Flags slotway cares about, from COMMAND's flags.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandFlags {
    pub write: bool,
    pub readonly: bool,
    pub blocking: bool,
    pub pubsub: bool,
    pub admin: bool,
    pub noscript: bool,
    pub movablekeys: bool,
}

#[derive(Clone, Debug)]
pub struct CommandInfo {
    /// Lower-case name (`get`, or `client|list` for a subcommand).
    pub name: String,
    /// Redis arity: positive = exact argument count (including the name); negative = at least -arity.
    pub arity: i32,
    pub flags: CommandFlags,
    /// ACL categories without the `@` (`read`, `string`, ...), for later ACL support.
    pub acl_categories: Vec<String>,
    /// The route for most requests; [`route_for`] refines it per request (XREAD/XREADGROUP with BLOCK).
    pub route: Route,
    keys: KeyRule,
    wording: NumkeysWording,
    dynamic: Dynamic,
    /// A container (OBJECT, XINFO, ...) whose subcommands are in the table as `name|sub`.
    has_subcommands: bool,
    /// Position in its table ([`CommandTable::by_index`]): a session records its last command as this number (one
    /// relaxed store) for CLIENT LIST, instead of copying the name.
    pub index: u32,
}

impl CommandInfo {
    /// Whether the command names keys (so [`key_indexes`] can find some). False for keyless commands.
    pub fn has_keys(&self) -> bool {
        self.keys.has_keys()
    }

    /// Whether this is a container command with subcommands (OBJECT, XINFO, CLIENT, ...).
    pub fn has_subcommands(&self) -> bool {
        self.has_subcommands
    }

    /// EVAL and EVAL_RO: slotway remembers the script body (by SHA1) so it can reload it on a node that answers a
    /// later EVALSHA with NOSCRIPT.
    pub fn carries_script(&self) -> bool {
        self.dynamic == Dynamic::Eval
    }
}

/// Why a request's keys could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Wrong number of arguments: the client gets `ERR wrong number of arguments for '<name>' command`.
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(String),
    /// A numkeys argument that isn't a number or exceeds the arguments (Redis's own wording where it has one).
    #[error("{0}")]
    Syntax(String),
}

/// The COMMAND reply of redis-server 7.0.15 (RESP2), captured raw; the source of [`CommandTable::builtin`].
static COMMANDS_7_0: &[u8] = include_bytes!("commands-7.0.resp");

#[derive(Debug, Clone, Default)]
pub struct CommandTable {
    commands: Vec<CommandInfo>,
    /// Lower-case name (`get`, `object|encoding`) → index into `commands`.
    by_name: HashMap<Box<[u8]>, usize>,
}

impl CommandTable {
    /// Built-in table used when COMMAND cannot be had: core Redis commands slotway knows without asking.
    ///
    /// It is the COMMAND reply of redis-server 7.0.15, embedded, with the built-in rules applied.
    pub fn builtin() -> CommandTable {
        builtin_table().clone()
    }

    /// Builds the table from a node's `COMMAND` reply (Redis 6 and 7 forms; Redis 7 key specs are used when present,
    /// legacy first/last/step otherwise), then applies the built-in routing rules on top.
    ///
    /// Key positions, per command:
    /// - SORT and SORT_RO always use the built-in rule (their specs are `unknown`).
    /// - Redis 7 key specs when the command has some. If any is `incomplete` or of an unknown type, or the command
    ///   is `movablekeys` with `variable_flags` specs (a module's getkeys callback decides), the keys are unknown
    ///   and the command is [`Route::Unsupported`] ([`UNSUPPORTED_UNKNOWN_KEYS`]).
    /// - Otherwise first/last/step. A Redis 6 entry (no key specs field) marked `movablekeys` borrows the specs of
    ///   the same command from [`CommandTable::builtin`] (EVAL, ZUNIONSTORE, XREAD, GEORADIUS, ...); Redis 6
    ///   containers borrow the built-in table's subcommands too (so MEMORY USAGE has a key).
    ///
    /// Accepts RESP2 (flat arrays) and RESP3 (maps, sets). Malformed entries are an error.
    pub fn from_command_reply(reply: &Value) -> Result<CommandTable, String> {
        let entries = reply.as_array().ok_or_else(|| format!("COMMAND reply is not an array: {}", brief(reply)))?;
        let mut table = CommandTable::default();
        for entry in entries {
            table.add_entry(entry, None)?;
        }
        table.add_missing_client_subcommands();
        table.add_slotway_command();
        table.add_sentinel_command();
        Ok(table)
    }

    /// Looks a command up by name, case-insensitively, without allocating.
    ///
    /// Subcommands are found by their full name (`object|encoding`). Names longer than [`MAX_NAME_LEN`] are unknown.
    pub fn lookup(&self, name: &[u8]) -> Option<&CommandInfo> {
        let mut buf = [0u8; MAX_NAME_LEN];
        let lower = buf.get_mut(..name.len())?;
        for (d, s) in lower.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        self.by_name.get(&*lower).map(|&i| &self.commands[i])
    }

    /// The command (or, for container commands like OBJECT/XINFO/MEMORY/CLIENT, the subcommand) for these args.
    ///
    /// `None` when the command is unknown (or its name contains `|`, which Redis doesn't accept either). For a
    /// container with a missing or unknown subcommand, the container itself: its arity check rejects a missing
    /// one, and its route sends an unknown one to any node to word the error (or is the container-wide route,
    /// e.g. CLIENT's).
    pub fn resolve(&self, args: Args<'_>) -> Option<&CommandInfo> {
        if args.is_empty() {
            return None;
        }
        let name = args.get(0);
        if name.contains(&b'|') {
            return None;
        }
        let info = self.lookup(name)?;
        if !info.has_subcommands || args.len() < 2 {
            return Some(info);
        }
        let sub = args.get(1);
        let mut buf = [0u8; MAX_NAME_LEN];
        let len = name.len() + 1 + sub.len();
        if len > MAX_NAME_LEN || sub.contains(&b'|') {
            return Some(info);
        }
        buf[..name.len()].copy_from_slice(name);
        buf[name.len()] = b'|';
        buf[name.len() + 1..len].copy_from_slice(sub);
        Some(self.lookup(&buf[..len]).unwrap_or(info))
    }

    /// Every command and subcommand in the table.
    pub fn iter(&self) -> impl Iterator<Item = &CommandInfo> {
        self.commands.iter()
    }

    /// Number of commands and subcommands in the table.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The command at `index` ([`CommandInfo::index`]).
    pub fn by_index(&self, index: u32) -> Option<&CommandInfo> {
        self.commands.get(index as usize)
    }

    fn insert(&mut self, mut info: CommandInfo) {
        let key: Box<[u8]> = info.name.as_bytes().into();
        match self.by_name.get(&key) {
            Some(&i) => {
                info.index = i as u32;
                self.commands[i] = info;
            }
            None => {
                info.index = self.commands.len() as u32;
                self.by_name.insert(key, self.commands.len());
                self.commands.push(info);
            }
        }
    }

    /// CLIENT subcommands that nodes older than Redis 7.2 don't list, described as Redis 7.2 does, so that they
    /// have their own arity and ACL categories (`@slow @connection`, as in Redis 7.2) instead of the container's.
    /// slotway answers them itself whatever the nodes' version.
    fn add_missing_client_subcommands(&mut self) {
        if !self.lookup(b"client").is_some_and(|c| c.has_subcommands) {
            return;
        }
        for (name, arity) in [("client|setinfo", 4), ("client|no-touch", 3)] {
            if self.lookup(name.as_bytes()).is_some() {
                continue;
            }
            let text = |s: &str| Value::Simple(bytes::Bytes::copy_from_slice(s.as_bytes()));
            let entry = Value::Array(vec![
                text(name),
                Value::Integer(arity),
                Value::Array(vec![text("noscript"), text("loading"), text("stale")]),
                Value::Integer(0),
                Value::Integer(0),
                Value::Integer(0),
                Value::Array(vec![text("@slow"), text("@connection")]),
                Value::Array(vec![]),
                Value::Array(vec![]),
                Value::Array(vec![]),
            ]);
            // A well-formed entry by construction; a failure would only leave the container's rules in place.
            let _ = self.add_entry(&entry, Some("client"));
        }
    }

    /// slotway's own admin command, `SLOTWAY REFRESH|TOPOLOGY|TRACE|HELP`, described like a Redis command so that ACL rules
    /// (`-@admin`, `+slotway|topology`) and arity checks treat it as any other.
    fn add_slotway_command(&mut self) {
        if self.is_empty() {
            return; // not a command table at all
        }
        let text = |s: &str| Value::Simple(bytes::Bytes::copy_from_slice(s.as_bytes()));
        let entry = |name: &str, arity: i64, flags: &[&str], categories: &[&str], subs: Vec<Value>| {
            Value::Array(vec![
                text(name),
                Value::Integer(arity),
                Value::Array(flags.iter().map(|f| text(f)).collect()),
                Value::Integer(0),
                Value::Integer(0),
                Value::Integer(0),
                Value::Array(categories.iter().map(|c| text(c)).collect()),
                Value::Array(vec![]),
                Value::Array(vec![]),
                Value::Array(subs),
            ])
        };
        let admin = ["@admin", "@slow", "@dangerous"];
        let subs = vec![
            entry("slotway|refresh", 2, &["admin", "noscript", "loading", "stale"], &admin, vec![]),
            entry("slotway|topology", 2, &["admin", "noscript", "loading", "stale"], &admin, vec![]),
            entry("slotway|trace", -3, &["admin", "noscript", "loading", "stale"], &admin, vec![]),
            entry("slotway|reload", 2, &["admin", "noscript", "loading", "stale"], &admin, vec![]),
            entry("slotway|help", 2, &["loading", "stale"], &["@slow", "@connection"], vec![]),
        ];
        // A well-formed entry by construction.
        let _ = self.add_entry(&entry("slotway", -2, &[], &["@slow"], subs), None);
    }

    /// SENTINEL, which data nodes don't list (only a sentinel has it): slotway answers the queries a Sentinel client
    /// makes (`get-master-addr-by-name`, `masters`, `replicas`, ...) with its own address, so clients configured
    /// for Sentinel can use slotway as their sentinel. Categories as on a sentinel (`@admin @slow @dangerous`).
    fn add_sentinel_command(&mut self) {
        if self.is_empty() || self.lookup(b"sentinel").is_some() {
            return;
        }
        let text = |s: &str| Value::Simple(bytes::Bytes::copy_from_slice(s.as_bytes()));
        let entry = Value::Array(vec![
            text("sentinel"),
            Value::Integer(-2),
            Value::Array(vec![text("admin"), text("noscript"), text("loading"), text("stale")]),
            Value::Integer(0),
            Value::Integer(0),
            Value::Integer(0),
            Value::Array(vec![text("@admin"), text("@slow"), text("@dangerous")]),
            Value::Array(vec![]),
            Value::Array(vec![]),
            Value::Array(vec![]),
        ]);
        // A well-formed entry by construction.
        let _ = self.add_entry(&entry, None);
    }

    /// Adds one COMMAND entry (and its subcommands). `container` is set for subcommand entries.
    fn add_entry(&mut self, entry: &Value, container: Option<&str>) -> Result<(), String> {
        let items = entry.as_array().ok_or_else(|| format!("COMMAND entry is not an array: {}", brief(entry)))?;
        if items.len() < 6 {
            return Err(format!("COMMAND entry has {} elements, expected at least 6: {}", items.len(), brief(entry)));
        }
        let name = items[0]
            .as_str()
            .filter(|n| !n.is_empty() && n.len() <= MAX_NAME_LEN)
            .ok_or_else(|| format!("bad command name in COMMAND entry: {}", brief(&items[0])))?
            .to_ascii_lowercase();
        let bad = |what: &str| format!("bad {what} for command '{name}'");
        let arity = items[1].as_int().and_then(|a| i32::try_from(a).ok()).ok_or_else(|| bad("arity"))?;
        let flag_names = items[2].as_array().ok_or_else(|| bad("flags"))?;
        let mut flags = CommandFlags::default();
        for f in flag_names {
            match f.as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("write") => flags.write = true,
                Some("readonly") => flags.readonly = true,
                Some("blocking") => flags.blocking = true,
                Some("pubsub") => flags.pubsub = true,
                Some("admin") => flags.admin = true,
                Some("noscript") => flags.noscript = true,
                Some("movablekeys") => flags.movablekeys = true,
                _ => {}
            }
        }
        let legacy =
            |i: usize| items[i].as_int().and_then(|v| i32::try_from(v).ok()).ok_or_else(|| bad("first/last/step"));
        let (first, last, step) = (legacy(3)?, legacy(4)?, legacy(5)?);
        let acl_categories = match items.get(6) {
            Some(v) => v
                .as_array()
                .ok_or_else(|| bad("ACL categories"))?
                .iter()
                .filter_map(Value::as_str)
                .map(|c| c.trim_start_matches('@').to_string())
                .collect(),
            None => Vec::new(),
        };
        let specs = match items.get(8) {
            Some(v) => Some(
                v.as_array()
                    .ok_or_else(|| bad("key specs"))?
                    .iter()
                    .map(parse_key_spec)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("key spec"))?,
            ),
            None => None,
        };
        let redis6 = specs.is_none();
        let subcommands = match items.get(9) {
            Some(v) => v.as_array().ok_or_else(|| bad("subcommands"))?,
            None => &[],
        };

        let keys = if matches!(name.as_str(), "sort" | "sort_ro") {
            KeyRule::Sort
        } else {
            match specs {
                Some(specs) if !specs.is_empty() => {
                    if !specs.iter().all(KeySpec::is_complete)
                        || (flags.movablekeys && specs.iter().any(|s| s.variable_flags))
                    {
                        KeyRule::Unknown
                    } else {
                        KeyRule::Specs(specs.into())
                    }
                }
                Some(_) if flags.movablekeys => KeyRule::Unknown,
                // Redis 6: borrow the specs Redis 7.0 has for the same command.
                None if flags.movablekeys => match builtin_table().lookup(name.as_bytes()) {
                    Some(known) if !matches!(known.keys, KeyRule::None) => known.keys.clone(),
                    _ => KeyRule::Unknown,
                },
                _ if first > 0 => KeyRule::Legacy { first, last, step },
                _ => KeyRule::None,
            }
        };

        let mut has_subcommands = false;
        if container.is_none() {
            for sub in subcommands {
                self.add_entry(sub, Some(&name))?;
                has_subcommands = true;
            }
            if redis6 {
                // Redis 6 has no subcommands: take the built-in ones for this container.
                let prefix = format!("{name}|");
                let borrowed: Vec<CommandInfo> =
                    builtin_table().iter().filter(|c| c.name.starts_with(&prefix)).cloned().collect();
                for sub in borrowed {
                    if self.lookup(sub.name.as_bytes()).is_none() {
                        self.insert(sub);
                    }
                    has_subcommands = true;
                }
            }
        }
        let (route, dynamic) = rules::route(&name, &flags, &keys, has_subcommands);
        let wording = NumkeysWording::for_command(&name);
        self.insert(CommandInfo {
            name,
            arity,
            flags,
            acl_categories,
            route,
            keys,
            wording,
            dynamic,
            has_subcommands,
            index: 0,
        });
        Ok(())
    }
}

/// The built-in table, parsed once.
fn builtin_table() -> &'static CommandTable {
    static TABLE: OnceLock<CommandTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let buf = bytes::Bytes::from_static(COMMANDS_7_0);
        let (reply, _) = Value::parse(&buf, &resp::Limits::default())
            .ok()
            .flatten()
            .expect("embedded commands-7.0.resp is one complete RESP reply");
        CommandTable::from_command_reply(&reply).expect("embedded commands-7.0.resp is a valid COMMAND reply")
    })
}

/// How this request is routed: [`CommandInfo::route`], refined by the arguments where the route depends on them
/// (XREAD / XREADGROUP are [`Route::Blocking`] only when BLOCK is given).
pub fn route_for(info: &CommandInfo, args: Args<'_>) -> Route {
    match info.dynamic {
        Dynamic::XreadBlock if rules::xread_blocks(args) => Route::Blocking,
        _ => info.route,
    }
}

/// Appends to `out` the indexes (into `args`) of every key the request names; checks arity first.
///
/// Keys are found as Redis's `getKeysUsingKeySpecs` finds them (including `not_key` specs, which name the slot
/// of SPUBLISH's shard channel), or by first/last/step, or by the SORT rule. Indexes may repeat (`MSET k 1 k 2`)
/// and are in spec order, not sorted. Commands without keys, or with keys that can't be determined
/// ([`Route::Unsupported`]), append nothing.
///
/// Errors: [`KeyError::Arity`] with the command's full name (`object|encoding`); [`KeyError::Syntax`] for a numkeys
/// argument that is not an integer, negative or larger than the arguments, worded as the command itself words it
/// (e.g. `ERR Number of keys can't be greater than number of args` for EVAL, `ERR syntax error` for ZUNIONSTORE,
/// `ERR numkeys should be greater than 0` for LMPOP). A numkeys of 0 gives no keys from that spec and no error.
pub fn key_indexes(info: &CommandInfo, args: Args<'_>, out: &mut SmallVec<[usize; 8]>) -> Result<(), KeyError> {
    let argc = args.len() as i64;
    let arity = info.arity as i64;
    if (arity > 0 && argc != arity) || argc < -arity {
        return Err(KeyError::Arity(info.name.clone()));
    }
    match &info.keys {
        KeyRule::None | KeyRule::Unknown => Ok(()),
        KeyRule::Specs(specs) => spec::keys_from_specs(specs, &info.name, info.wording, args, out),
        KeyRule::Legacy { first, last, step } => {
            spec::keys_from_legacy(*first, *last, *step, args, out);
            Ok(())
        }
        KeyRule::Sort => {
            spec::keys_for_sort(args, out);
            Ok(())
        }
    }
}

/// One key spec from COMMAND (a map in RESP3, a flat array in RESP2). `None` when it isn't shaped like one;
/// unknown search types become `Unknown`.
fn parse_key_spec(v: &Value) -> Option<KeySpec> {
    let fields = v.to_pairs()?;
    let mut spec = KeySpec {
        begin: BeginSearch::Unknown,
        find: FindKeys::Unknown,
        not_key: false,
        incomplete: false,
        variable_flags: false,
    };
    for (k, v) in fields {
        match k.as_str()? {
            "flags" => {
                for f in v.as_array()? {
                    let f = f.as_str().unwrap_or("");
                    if f.eq_ignore_ascii_case("not_key") {
                        spec.not_key = true;
                    } else if f.eq_ignore_ascii_case("incomplete") {
                        spec.incomplete = true;
                    } else if f.eq_ignore_ascii_case("variable_flags") {
                        spec.variable_flags = true;
                    }
                }
            }
            "begin_search" => spec.begin = parse_begin_search(v).unwrap_or(BeginSearch::Unknown),
            "find_keys" => spec.find = parse_find_keys(v).unwrap_or(FindKeys::Unknown),
            _ => {}
        }
    }
    Some(spec)
}

/// `{type, spec}` → (type, spec fields).
fn typed_spec(v: &Value) -> Option<(&str, Vec<(&Value, &Value)>)> {
    let mut kind = None;
    let mut fields = Vec::new();
    for (k, v) in v.to_pairs()? {
        match k.as_str()? {
            "type" => kind = v.as_str(),
            "spec" => fields = v.to_pairs().unwrap_or_default(),
            _ => {}
        }
    }
    Some((kind?, fields))
}

fn field_int(fields: &[(&Value, &Value)], name: &str) -> Option<i32> {
    let (_, v) = fields.iter().find(|(k, _)| k.as_str() == Some(name))?;
    v.as_int().and_then(|i| i32::try_from(i).ok())
}

fn parse_begin_search(v: &Value) -> Option<BeginSearch> {
    let (kind, fields) = typed_spec(v)?;
    match kind {
        "index" => Some(BeginSearch::Index(field_int(&fields, "index")?)),
        "keyword" => {
            let (_, keyword) = fields.iter().find(|(k, _)| k.as_str() == Some("keyword"))?;
            let keyword = keyword.as_bytes().map(|b| &b[..])?;
            if keyword.is_empty() {
                return None;
            }
            Some(BeginSearch::Keyword { keyword: keyword.into(), startfrom: field_int(&fields, "startfrom")? })
        }
        _ => None,
    }
}

fn parse_find_keys(v: &Value) -> Option<FindKeys> {
    let (kind, fields) = typed_spec(v)?;
    match kind {
        "range" => {
            let (lastkey, keystep, limit) =
                (field_int(&fields, "lastkey")?, field_int(&fields, "keystep")?, field_int(&fields, "limit")?);
            (keystep >= 1 && limit >= 0).then_some(FindKeys::Range { lastkey, keystep, limit })
        }
        "keynum" => {
            let (keynumidx, firstkey, keystep) =
                (field_int(&fields, "keynumidx")?, field_int(&fields, "firstkey")?, field_int(&fields, "keystep")?);
            (keystep >= 1 && keynumidx >= 0 && firstkey >= 0).then_some(FindKeys::Keynum {
                keynumidx,
                firstkey,
                keystep,
            })
        }
        _ => None,
    }
}

/// A short description of a value for error messages.
fn brief(v: &Value) -> String {
    let mut s = format!("{v:?}");
    if s.len() > 120 {
        let mut end = 120;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}
