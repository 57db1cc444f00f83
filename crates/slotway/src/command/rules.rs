//! The built-in routing rules, applied on top of what COMMAND says.
use super::spec::KeyRule;
use super::{Args, CommandFlags, FanOut, LocalCommand, PubSubCommand, Route, SplitKind, TxnCommand};

/// Reason given for keyless commands flagged `blocking` that no rule knows (a module's): without keys slotway
/// can't tell which node should block.
pub const UNSUPPORTED_BLOCKING: &str = "keyless blocking commands are not supported";
/// Reason given for pub/sub commands no rule knows (a module's command flagged `pubsub`).
pub const UNSUPPORTED_PUBSUB: &str = "this pub/sub command is not supported through the standalone endpoint";
/// Reason given for keyless node-level commands slotway has no rule for (SAVE, ACL, MEMORY STATS, ...) and for
/// keyless commands no rule knows.
pub const UNSUPPORTED_KEYLESS: &str = "not supported through the standalone endpoint yet";
/// Reason given for CONFIG SET and CONFIG REWRITE.
pub const UNSUPPORTED_CONFIG: &str =
    "node configuration is not changed through the proxy; configure every node of the cluster directly";
/// Reason given for SCRIPT DEBUG.
pub const UNSUPPORTED_SCRIPT_DEBUG: &str = "the Lua debugger needs a connection of its own to one node";
/// Reason given for node administration and replication commands (MONITOR, SYNC, SHUTDOWN, CLUSTER, DEBUG, ...).
pub const UNSUPPORTED_ADMIN: &str = "node administration commands are not supported through the proxy";
/// Reason given for MIGRATE.
pub const UNSUPPORTED_MIGRATE: &str = "MIGRATE is not supported through the proxy";
/// Reason given for MOVE and SWAPDB.
pub const UNSUPPORTED_DATABASES: &str = "only database 0 exists in cluster mode";
/// Reason given for commands whose keys can't be found without the server (a module's getkeys callback, or key
/// specs marked incomplete/unknown without a built-in rule).
pub const UNSUPPORTED_UNKNOWN_KEYS: &str = "the keys of this command cannot be determined";

/// A routing decision that depends on the arguments (see [`super::route_for`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(super) enum Dynamic {
    #[default]
    None,
    /// XREAD / XREADGROUP: blocking only when BLOCK is given.
    XreadBlock,
    /// EVAL / EVAL_RO: routed by keys; the script body is remembered for NOSCRIPT recovery.
    Eval,
}

/// The static route of a command, from its lower-case `name` (`container|sub` for subcommands).
pub(super) fn route(name: &str, flags: &CommandFlags, keys: &KeyRule, has_subcommands: bool) -> (Route, Dynamic) {
    let (container, sub) = match name.split_once('|') {
        Some((c, s)) => (c, Some(s)),
        None => (name, None),
    };
    let unsupported = |reason| (Route::Unsupported(reason), Dynamic::None);
    let all = |merge| (Route::AllPrimaries(merge), Dynamic::None);
    let any = (Route::AnyNode, Dynamic::None);
    let local = match container {
        "ping" => Some(LocalCommand::Ping),
        "echo" => Some(LocalCommand::Echo),
        "quit" => Some(LocalCommand::Quit),
        "select" => Some(LocalCommand::Select),
        "hello" => Some(LocalCommand::Hello),
        "auth" => Some(LocalCommand::Auth),
        "reset" => Some(LocalCommand::Reset),
        "readonly" => Some(LocalCommand::ReadOnly),
        "readwrite" => Some(LocalCommand::ReadWrite),
        "client" => Some(LocalCommand::Client),
        "slotway" => Some(LocalCommand::Slotway),
        "slowlog" => Some(LocalCommand::Slowlog),
        "latency" => Some(LocalCommand::Latency),
        "sentinel" => Some(LocalCommand::Sentinel),
        "role" => Some(LocalCommand::Role),
        "acl" => Some(LocalCommand::Acl),
        _ => None,
    };
    if let Some(local) = local {
        return (Route::Local(local), Dynamic::None);
    }
    match container {
        "time" | "lastsave" | "publish" | "command" | "lolwut" => return (Route::AnyNode, Dynamic::None),
        "spublish" => return (Route::Keys, Dynamic::None),
        "mget" => return (Route::Split(SplitKind::MGet), Dynamic::None),
        "mset" => return (Route::Split(SplitKind::MSet), Dynamic::None),
        "del" | "unlink" | "exists" | "touch" => return (Route::Split(SplitKind::SumIntegers), Dynamic::None),
        "xread" | "xreadgroup" => return (Route::Keys, Dynamic::XreadBlock),
        "eval" | "eval_ro" if keys.has_keys() => return (Route::Keys, Dynamic::Eval),
        // INFO: a fan-out (keyspace summed), answered locally when only the `proxy` section is asked for.
        "info" => return all(FanOut::Info),
        "dbsize" => return all(FanOut::SumIntegers),
        "keys" => return all(FanOut::ConcatArrays),
        "randomkey" => return all(FanOut::RandomKey),
        "flushall" | "flushdb" => return all(FanOut::AllOk),
        "scan" => return (Route::Scan, Dynamic::None),
        // Containers resolved as themselves (unknown or missing subcommand) fall through to any node below.
        "script" if sub.is_some() => {
            return match sub {
                Some("load") => all(FanOut::ScriptLoad),
                Some("exists") => all(FanOut::AllOnes),
                Some("flush") => all(FanOut::ScriptFlush),
                Some("kill") => all(FanOut::AnyOk),
                Some("debug") => unsupported(UNSUPPORTED_SCRIPT_DEBUG),
                _ => any,
            }
        }
        "function" if sub.is_some() => {
            return match sub {
                Some("load") => all(FanOut::SameReply),
                Some("delete" | "flush" | "restore") => all(FanOut::AllOk),
                Some("kill") => all(FanOut::AnyOk),
                _ => any, // LIST, DUMP, STATS, HELP: one node
            };
        }
        "config" if sub.is_some() => {
            return match sub {
                Some("resetstat") => all(FanOut::AllOk),
                Some("set" | "rewrite") => unsupported(UNSUPPORTED_CONFIG),
                _ => any, // GET, HELP: one node
            };
        }
        "multi" => return (Route::Transaction(TxnCommand::Multi), Dynamic::None),
        "exec" => return (Route::Transaction(TxnCommand::Exec), Dynamic::None),
        "discard" => return (Route::Transaction(TxnCommand::Discard), Dynamic::None),
        "watch" => return (Route::Transaction(TxnCommand::Watch), Dynamic::None),
        "unwatch" => return (Route::Transaction(TxnCommand::Unwatch), Dynamic::None),
        "blpop" | "brpop" | "blmove" | "brpoplpush" | "blmpop" | "bzpopmin" | "bzpopmax" | "bzmpop" => {
            return (Route::Blocking, Dynamic::None)
        }
        "wait" | "waitaof" => return (Route::Wait, Dynamic::None),
        "subscribe" => return (Route::PubSub(PubSubCommand::Subscribe), Dynamic::None),
        "unsubscribe" => return (Route::PubSub(PubSubCommand::Unsubscribe), Dynamic::None),
        "psubscribe" => return (Route::PubSub(PubSubCommand::PSubscribe), Dynamic::None),
        "punsubscribe" => return (Route::PubSub(PubSubCommand::PUnsubscribe), Dynamic::None),
        "ssubscribe" => return (Route::PubSub(PubSubCommand::SSubscribe), Dynamic::None),
        "sunsubscribe" => return (Route::PubSub(PubSubCommand::SUnsubscribe), Dynamic::None),
        // Regular channels are node-local in what PUBSUB reports (a cluster forwards PUBLISH, not subscriptions):
        // merged over every primary. Shard channels live on their slot's primary.
        "pubsub" if sub.is_some() => {
            return match sub {
                Some("channels" | "shardchannels") => all(FanOut::Union),
                Some("numsub") => all(FanOut::NumSub),
                Some("numpat") => all(FanOut::SumIntegers),
                Some("shardnumsub") => all(FanOut::ShardNumSub),
                _ => any, // HELP
            };
        }
        "monitor" | "sync" | "psync" | "replicaof" | "slaveof" | "shutdown" | "debug" | "cluster" | "failover"
        | "module" | "replconf" | "asking" | "restore-asking" => return unsupported(UNSUPPORTED_ADMIN),
        "migrate" => return unsupported(UNSUPPORTED_MIGRATE),
        "move" | "swapdb" => return unsupported(UNSUPPORTED_DATABASES),
        "save" | "bgsave" | "bgrewriteaof" => return unsupported(UNSUPPORTED_KEYLESS),
        "memory" if !matches!(sub, Some("usage" | "help")) => return unsupported(UNSUPPORTED_KEYLESS),
        _ => {}
    }
    if flags.blocking {
        return match keys {
            KeyRule::Unknown => unsupported(UNSUPPORTED_UNKNOWN_KEYS),
            k if k.has_keys() => (Route::Blocking, Dynamic::None),
            _ => unsupported(UNSUPPORTED_BLOCKING),
        };
    }
    if flags.pubsub {
        return unsupported(UNSUPPORTED_PUBSUB);
    }
    if sub == Some("help") {
        return (Route::AnyNode, Dynamic::None);
    }
    match keys {
        KeyRule::Unknown => unsupported(UNSUPPORTED_UNKNOWN_KEYS),
        k if k.has_keys() => (Route::Keys, Dynamic::None),
        // A container resolved as itself has an unknown subcommand: any node words the error.
        _ if has_subcommands => (Route::AnyNode, Dynamic::None),
        _ => unsupported(UNSUPPORTED_KEYLESS),
    }
}

/// Whether XREAD/XREADGROUP options (before STREAMS) include BLOCK, parsed as `xreadCommand` does.
pub(super) fn xread_blocks(args: Args<'_>) -> bool {
    let argc = args.len();
    let mut i = 1;
    while i < argc {
        let more = argc - i - 1;
        let o = args.get(i);
        if o.eq_ignore_ascii_case(b"block") && more > 0 {
            return true;
        } else if o.eq_ignore_ascii_case(b"count") && more > 0 {
            i += 1;
        } else if o.eq_ignore_ascii_case(b"streams") && more > 0 {
            return false;
        } else if o.eq_ignore_ascii_case(b"group") && more >= 2 {
            i += 2;
        } else if o.eq_ignore_ascii_case(b"noack") {
        } else {
            return false; // syntax error: the node will say so
        }
        i += 1;
    }
    false
}
