//! The `ACL` command about slotway's own users, with Redis 7's reply formats and errors.
//!
//! Without `[[users]]`, slotway behaves like a Redis whose only user is the `default` one with every permission
//! (`on nopass ~* &* +@all`). Users come from the configuration file, so the subcommands that would change them
//! (SETUSER, DELUSER, LOAD, SAVE) are refused with a reason.
use super::{User, Users, CATEGORIES};
use crate::command::{Args, CommandInfo, CommandTable};
use bytes::BytesMut;
use resp::encode::{self, Protocol};

/// What `ACL GENPASS` may be asked for, in bits (Redis's GENPASS_MAX_BITS).
const GENPASS_MAX_BITS: i64 = 4096;

/// The `ACL LOG` entries slotway keeps, newest first, at most this many (Redis's `acllog-max-len` default).
pub const LOG_MAX_LEN: usize = 128;

/// What the ACL command needs to know about the asking client and slotway's users.
pub struct AclContext<'a> {
    pub table: &'a CommandTable,
    /// slotway's users; None = none configured (the implicit `default` user).
    pub users: Option<&'a Users>,
    /// The user the client is authenticated as.
    pub me: Option<&'a User>,
    pub protocol: Protocol,
}

/// Answers `ACL <subcommand> ...`; the reply is complete RESP (errors included).
pub fn acl(args: Args<'_>, ctx: &AclContext<'_>) -> BytesMut {
    let mut b = BytesMut::new();
    let Some(info) = ctx.table.resolve(args) else {
        encode::error(&mut b, "ERR unknown command 'acl'");
        return b;
    };
    if !arity_ok(info, args) {
        encode::error(&mut b, &format!("ERR wrong number of arguments for '{}' command", info.name));
        return b;
    }
    let sub = info.name.strip_prefix("acl|").unwrap_or("");
    let argc = args.len();
    match sub {
        "whoami" => encode::bulk(&mut b, ctx.me.map_or("default", |u| u.name.as_str()).as_bytes()),
        "users" => with_users(ctx, |users| {
            encode::array_header(&mut b, users.len());
            for u in users {
                encode::bulk(&mut b, u.name.as_bytes());
            }
        }),
        "list" => with_users(ctx, |users| {
            encode::array_header(&mut b, users.len());
            for u in users {
                encode::bulk(&mut b, u.acl_list_line().as_bytes());
            }
        }),
        "getuser" => match find_user(ctx, args.get(2)) {
            Some(u) => getuser(&mut b, &u, ctx.protocol),
            None => encode::nil(&mut b, ctx.protocol),
        },
        "cat" if argc == 2 => {
            encode::array_header(&mut b, CATEGORIES.len());
            for c in CATEGORIES {
                encode::bulk(&mut b, c.as_bytes());
            }
        }
        "cat" if argc == 3 => {
            let wanted = String::from_utf8_lossy(args.get(2)).to_ascii_lowercase();
            let known =
                CATEGORIES.contains(&wanted.as_str()) || ctx.table.iter().any(|c| c.acl_categories.contains(&wanted));
            if !known {
                encode::error(&mut b, &format!("ERR Unknown category '{}'", truncated(args.get(2))));
                return b;
            }
            let names: Vec<&str> =
                ctx.table.iter().filter(|c| c.acl_categories.contains(&wanted)).map(|c| c.name.as_str()).collect();
            encode::array_header(&mut b, names.len());
            for n in names {
                encode::bulk(&mut b, n.as_bytes());
            }
        }
        "genpass" if argc <= 3 => {
            let bits = match args.ranges.get(2).map(|_| args.get(2)) {
                None => 256,
                Some(a) => match std::str::from_utf8(a).ok().and_then(|s| s.parse::<i64>().ok()) {
                    Some(n) => n,
                    None => {
                        encode::error(&mut b, "ERR value is not an integer or out of range");
                        return b;
                    }
                },
            };
            if bits <= 0 || bits > GENPASS_MAX_BITS {
                encode::error(
                    &mut b,
                    &format!(
                        "ERR ACL GENPASS argument must be the number of bits for the output password, a positive \
                         number up to {GENPASS_MAX_BITS}"
                    ),
                );
                return b;
            }
            encode::bulk(&mut b, random_hex(((bits + 3) / 4) as usize).as_bytes());
        }
        "dryrun" => dryrun(&mut b, args, ctx),
        "log" if argc <= 3 => acl_log(&mut b, args, ctx),
        "setuser" | "deluser" => encode::error(
            &mut b,
            &format!(
                "ERR slotway: ACL {} is not supported yet: slotway's users come from its configuration file \
                 ([[users]])",
                sub.to_ascii_uppercase()
            ),
        ),
        "load" | "save" => encode::error(
            &mut b,
            "ERR This slotway instance is not configured to use an ACL file: its users come from its \
             configuration file ([[users]])",
        ),
        "help" => {
            encode::array_header(&mut b, HELP.len());
            for l in HELP {
                encode::simple(&mut b, l);
            }
        }
        // The container itself (an unknown subcommand), or a known one with arguments it doesn't take.
        _ => encode::error(&mut b, &format!("ERR unknown subcommand '{}'. Try ACL HELP.", truncated(args.get(1)))),
    }
    b
}

const HELP: &[&str] = &[
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "(slotway's users come from its configuration file: SETUSER, DELUSER, LOAD and SAVE are not supported.)",
    "HELP",
    "    Prints this help.",
];

/// Redis's arity rule: positive = exactly that many arguments (with the name), negative = at least -arity.
fn arity_ok(info: &CommandInfo, args: Args<'_>) -> bool {
    let (argc, arity) = (args.len() as i64, i64::from(info.arity));
    if arity > 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// Runs `f` over every user sorted by name: the configured ones, or the implicit `default`.
fn with_users(ctx: &AclContext<'_>, f: impl FnOnce(Vec<&User>)) {
    match ctx.users {
        Some(users) => f(users.sorted().into_iter().map(|u| &**u).collect()),
        None => f(vec![&User::implicit_default(ctx.table)]),
    }
}

fn find_user(ctx: &AclContext<'_>, name: &[u8]) -> Option<User> {
    match ctx.users {
        Some(users) => users.get(name).map(|u| User::clone(u)),
        None => (name == b"default").then(|| User::implicit_default(ctx.table)),
    }
}

/// ACL GETUSER's reply, as Redis 7.0 gives it: flags (a set in RESP3), passwords, commands, keys, channels, and
/// the (always empty) selectors.
fn getuser(b: &mut BytesMut, u: &User, protocol: Protocol) {
    encode::map_header(b, 6, protocol);
    encode::bulk(b, b"flags");
    let flags = u.flags();
    encode::set_header(b, flags.len(), protocol);
    for f in flags {
        encode::bulk(b, f.as_bytes());
    }
    encode::bulk(b, b"passwords");
    let hashes = u.password_hashes();
    encode::array_header(b, hashes.len());
    for h in hashes {
        encode::bulk(b, h.as_bytes());
    }
    for (field, value) in
        [("commands", u.describe_commands()), ("keys", u.describe_keys()), ("channels", u.describe_channels())]
    {
        encode::bulk(b, field.as_bytes());
        encode::bulk(b, value.as_bytes());
    }
    encode::bulk(b, b"selectors");
    encode::array_header(b, 0);
}

/// ACL DRYRUN user command [arg ...]: `+OK`, or a bulk string saying why not (Redis 7.0's form).
fn dryrun(b: &mut BytesMut, args: Args<'_>, ctx: &AclContext<'_>) {
    let Some(user) = find_user(ctx, args.get(2)) else {
        encode::error(b, &format!("ERR User '{}' not found", String::from_utf8_lossy(args.get(2))));
        return;
    };
    let inner = Args { frame: args.frame, ranges: &args.ranges[3..] };
    let info = match ctx.table.resolve(inner) {
        // A container with an unknown subcommand is no command at all.
        Some(info) if !(info.has_subcommands() && inner.len() >= 2) => info,
        _ => {
            encode::error(b, &format!("ERR Command '{}' not found", String::from_utf8_lossy(args.get(3))));
            return;
        }
    };
    if !arity_ok(info, inner) {
        encode::error(b, &format!("ERR wrong number of arguments for '{}' command", info.name));
        return;
    }
    match user.check_dryrun(info, inner) {
        Ok(()) => encode::simple(b, "OK"),
        Err(denied) => encode::bulk(b, denied.dryrun_message(inner).as_bytes()),
    }
}

/// Hex digits from the system's secure random source.
pub fn random_hex(chars: usize) -> String {
    let mut bytes = vec![0u8; chars.div_ceil(2)];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("system random source");
    let mut text = super::hex(&bytes);
    text.truncate(chars);
    text
}

/// An argument for an error message: at most 128 bytes, as Redis's `%.128s`.
fn truncated(arg: &[u8]) -> String {
    String::from_utf8_lossy(&arg[..arg.len().min(128)]).into_owned()
}

/// ACL LOG [count | RESET]: the newest `count` (default 10) entries, as Redis 7.0 shows them.
fn acl_log(b: &mut BytesMut, args: Args<'_>, ctx: &AclContext<'_>) {
    let empty = AclLog::default();
    let log = ctx.users.map_or(&empty, |u| &u.log);
    let mut count = 10usize;
    if args.len() == 3 {
        let arg = args.get(2);
        if arg.eq_ignore_ascii_case(b"reset") {
            log.entries.lock().expect("ACL log lock").clear();
            encode::simple(b, "OK");
            return;
        }
        match std::str::from_utf8(arg).ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(n) => count = usize::try_from(n).unwrap_or(0),
            None => {
                encode::error(b, "ERR value is not an integer or out of range");
                return;
            }
        }
    }
    let entries = log.entries.lock().expect("ACL log lock");
    let now = std::time::Instant::now();
    let shown: Vec<&LogEntry> = entries.iter().take(count).collect();
    encode::array_header(b, shown.len());
    for e in shown {
        encode::map_header(b, 7, ctx.protocol);
        encode::bulk(b, b"count");
        encode::integer(b, e.count as i64);
        for (field, value) in [("reason", e.reason), ("context", e.context)] {
            encode::bulk(b, field.as_bytes());
            encode::bulk(b, value.as_bytes());
        }
        encode::bulk(b, b"object");
        encode::bulk(b, &e.object);
        encode::bulk(b, b"username");
        encode::bulk(b, e.username.as_bytes());
        encode::bulk(b, b"age-seconds");
        encode::double(b, now.duration_since(e.updated).as_millis() as f64 / 1000.0, ctx.protocol);
        encode::bulk(b, b"client-info");
        encode::bulk(b, e.client_info.as_bytes());
    }
}

/// Why an entry was logged (ACL LOG's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogReason {
    Command,
    Key,
    Channel,
    Auth,
}

/// The longest object (key, channel) an ACL LOG entry keeps: a client can't make the log hold its huge keys.
const LOG_OBJECT_MAX: usize = 1024;

/// Denied commands and failed AUTHs, newest first (Redis's ACL LOG): similar entries within a minute are counted
/// in one, at most [`LOG_MAX_LEN`] entries are kept.
#[derive(Debug, Default)]
pub struct AclLog {
    entries: std::sync::Mutex<std::collections::VecDeque<LogEntry>>,
}

#[derive(Debug)]
struct LogEntry {
    count: u64,
    reason: &'static str,
    context: &'static str,
    object: Vec<u8>,
    username: String,
    /// When the entry was last counted (ACL LOG's age).
    updated: std::time::Instant,
    /// CLIENT LIST's line for the client, as of the last time.
    client_info: String,
}

impl AclLog {
    /// Records one denial: `object` is the command's full name, the key, the channel, or (for AUTH) the command
    /// name; `multi` says it happened while queueing a transaction. Entries with the same reason, context,
    /// object and user within 60 s are counted in one (among the 10 newest, as Redis looks).
    pub fn add(&self, reason: LogReason, multi: bool, object: &[u8], username: &str, client_info: String) {
        let reason = match reason {
            LogReason::Command => "command",
            LogReason::Key => "key",
            LogReason::Channel => "channel",
            LogReason::Auth => "auth",
        };
        let context = if multi { "multi" } else { "toplevel" };
        let object = &object[..object.len().min(LOG_OBJECT_MAX)];
        let now = std::time::Instant::now();
        let mut entries = self.entries.lock().expect("ACL log lock");
        let found = entries.iter().take(10).position(|e| {
            e.reason == reason
                && e.context == context
                && now.duration_since(e.updated) <= std::time::Duration::from_secs(60)
                && e.object == object
                && e.username == username
        });
        match found.and_then(|i| entries.remove(i)) {
            Some(mut e) => {
                e.count += 1;
                e.updated = now;
                e.client_info = client_info;
                entries.push_front(e);
            }
            None => {
                entries.push_front(LogEntry {
                    count: 1,
                    reason,
                    context,
                    object: object.to_vec(),
                    username: username.to_string(),
                    updated: now,
                    client_info,
                });
                entries.truncate(LOG_MAX_LEN);
            }
        }
    }
}
