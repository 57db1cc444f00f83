use super::*;
use bytes::Bytes;

/// Owned request args for tests.
struct Req {
    frame: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl Req {
    fn new(args: &[&[u8]]) -> Req {
        let mut frame = Vec::new();
        let mut ranges = Vec::new();
        for a in args {
            // Some filler between arguments, as in a real frame.
            frame.extend_from_slice(b"\r\n");
            ranges.push(frame.len()..frame.len() + a.len());
            frame.extend_from_slice(a);
        }
        Req { frame, ranges }
    }

    fn split(line: &str) -> Req {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        Req::new(&args)
    }

    fn args(&self) -> Args<'_> {
        Args { frame: &self.frame, ranges: &self.ranges }
    }
}

fn table() -> &'static CommandTable {
    builtin_table()
}

fn keys_of(t: &CommandTable, line: &str) -> Result<Vec<usize>, KeyError> {
    let req = Req::split(line);
    let info = t.resolve(req.args()).unwrap_or_else(|| panic!("unknown command in {line:?}"));
    let mut out = SmallVec::new();
    key_indexes(info, req.args(), &mut out)?;
    Ok(out.to_vec())
}

fn route_of(t: &CommandTable, line: &str) -> Route {
    let req = Req::split(line);
    let info = t.resolve(req.args()).unwrap_or_else(|| panic!("unknown command in {line:?}"));
    route_for(info, req.args())
}

#[test]
fn builtin_table_loads() {
    let t = CommandTable::builtin();
    assert_eq!(
        t.len(),
        375,
        "240 commands and 126 subcommands in redis 7.0.15, plus CLIENT SETINFO and NO-TOUCH, plus SLOTWAY and its 5, \
         plus SENTINEL"
    );
    assert!(!t.is_empty());
    let get = t.lookup(b"get").unwrap();
    assert_eq!(get.name, "get");
    assert_eq!(get.arity, 2);
    assert!(get.flags.readonly && !get.flags.write);
    assert_eq!(get.acl_categories, ["read", "string", "fast"]);
    assert_eq!(get.route, Route::Keys);
    assert!(get.has_keys());
    let set = t.lookup(b"set").unwrap();
    assert!(set.flags.write);
    let blpop = t.lookup(b"blpop").unwrap();
    assert!(blpop.flags.blocking);
    let eval = t.lookup(b"eval").unwrap();
    assert!(eval.flags.movablekeys && eval.flags.noscript);
    assert!(t.lookup(b"subscribe").unwrap().flags.pubsub);
    assert!(t.lookup(b"flushall").unwrap().flags.write);
    assert!(t.lookup(b"config|set").unwrap().flags.admin);
    assert!(t.lookup(b"object").unwrap().has_subcommands());
    assert!(!t.lookup(b"object|encoding").unwrap().has_subcommands());
}

#[test]
fn resp3_reply_gives_the_same_table() {
    let buf = Bytes::from_static(include_bytes!("testdata/commands-7.0-resp3.resp"));
    let (reply, used) = Value::parse(&buf, &resp::Limits::default()).unwrap().unwrap();
    assert_eq!(used, buf.len());
    let t3 = CommandTable::from_command_reply(&reply).unwrap();
    let t2 = table();
    assert_eq!(t3.len(), t2.len());
    for c in t2.iter() {
        let d = t3.lookup(c.name.as_bytes()).unwrap();
        assert_eq!(
            (&d.name, d.arity, d.flags, &d.acl_categories, d.route, &d.keys, d.has_subcommands),
            (&c.name, c.arity, c.flags, &c.acl_categories, c.route, &c.keys, c.has_subcommands)
        );
    }
}

#[test]
fn lookup_is_case_insensitive_and_bounded() {
    let t = table();
    for name in [&b"GET"[..], b"get", b"gEt", b"Get"] {
        assert_eq!(t.lookup(name).unwrap().name, "get");
    }
    assert_eq!(t.lookup(b"OBJECT|Encoding").unwrap().name, "object|encoding");
    assert!(t.lookup(b"").is_none());
    assert!(t.lookup(b"nosuchcommand").is_none());
    assert!(t.lookup(b"get ").is_none());
    assert!(t.lookup(&[b'a'; 65]).is_none());
    assert!(t.lookup(&[b'G'; 1000]).is_none());
    assert!(t.lookup("GÉT".as_bytes()).is_none());
}

#[test]
fn resolve_subcommands() {
    let t = table();
    let name = |line: &str| t.resolve(Req::split(line).args()).map(|i| i.name.clone());
    assert_eq!(name("OBJECT ENCODING k").as_deref(), Some("object|encoding"));
    assert_eq!(name("object freq k").as_deref(), Some("object|freq"));
    assert_eq!(name("XINFO STREAM s").as_deref(), Some("xinfo|stream"));
    assert_eq!(name("Memory Usage k").as_deref(), Some("memory|usage"));
    assert_eq!(name("CLIENT LIST").as_deref(), Some("client|list"));
    assert_eq!(name("client setname x").as_deref(), Some("client|setname"));
    assert_eq!(name("COMMAND GETKEYS get k").as_deref(), Some("command|getkeys"));
    assert_eq!(name("CONFIG GET maxmemory").as_deref(), Some("config|get"));
    // Missing or unknown subcommand: the container.
    assert_eq!(name("OBJECT").as_deref(), Some("object"));
    assert_eq!(name("OBJECT NOPE k").as_deref(), Some("object"));
    assert_eq!(name(&format!("OBJECT {}", "x".repeat(100))).as_deref(), Some("object"));
    // Not containers: args[1] is ignored.
    assert_eq!(name("GET encoding").as_deref(), Some("get"));
    // Unknown commands, and `|` in the name.
    assert_eq!(name("NOSUCH x"), None);
    assert_eq!(name("object|encoding k"), None);
    assert_eq!(name("OBJECT encoding|x k").as_deref(), Some("object"));
    assert!(t.resolve(Req::new(&[]).args()).is_none());
}

/// `COMMAND GETKEYS <args>` answers from redis-server 7.0.15, as argument indexes.
const REAL_GETKEYS: &[(&str, &[usize])] = &[
    ("GET k1", &[1]),
    ("set k1 v ex 10", &[1]),
    ("MSET k1 v1 k2 v2 k3 v3", &[1, 3, 5]),
    ("MGET k1 k2 k3", &[1, 2, 3]),
    ("DEL k1 k2", &[1, 2]),
    ("EVAL s 0", &[]),
    ("EVAL s 2 k1 k2 a1 a2", &[3, 4]),
    ("EVALSHA s 1 k1 a1", &[3]),
    ("FCALL f 2 k1 k2 a", &[3, 4]),
    ("FCALL_RO f 1 k1", &[3]),
    ("ZUNIONSTORE d 2 k1 k2 WEIGHTS 1 2", &[1, 3, 4]),
    ("ZINTERSTORE d 1 k1", &[1, 3]),
    ("ZDIFFSTORE d 2 k1 k2", &[1, 3, 4]),
    ("ZUNION 2 k1 k2 WITHSCORES", &[2, 3]),
    ("ZINTERCARD 2 k1 k2 LIMIT 3", &[2, 3]),
    ("SINTERCARD 3 k1 k2 k3", &[2, 3, 4]),
    ("XREAD COUNT 2 STREAMS s1 s2 0 0", &[4, 5]),
    ("XREAD BLOCK 0 STREAMS s1 0", &[4]),
    ("XREADGROUP GROUP g c COUNT 1 STREAMS s1 s2 > >", &[7, 8]),
    ("XREADGROUP GROUP streams c STREAMS s1 0", &[5]),
    ("SORT k1 BY w_* GET # STORE d", &[1, 7]),
    ("SORT k1", &[1]),
    ("SORT k1 LIMIT 0 1 STORE d", &[1, 6]),
    ("SORT_RO k1 BY x", &[1]),
    ("OBJECT ENCODING k1", &[2]),
    ("OBJECT FREQ k1", &[2]),
    ("MEMORY USAGE k1 SAMPLES 5", &[2]),
    ("XINFO STREAM s1 FULL", &[2]),
    ("XGROUP CREATE s1 g $", &[2]),
    ("LMPOP 2 k1 k2 LEFT COUNT 2", &[2, 3]),
    ("ZMPOP 1 k1 MIN", &[2]),
    ("BLMPOP 0 2 k1 k2 RIGHT", &[3, 4]),
    ("BZMPOP 1 3 k1 k2 k3 MAX", &[3, 4, 5]),
    ("GEORADIUS k1 0 0 10 km STORE d", &[1, 7]),
    ("GEORADIUS k1 0 0 10 km STOREDIST d", &[1, 7]),
    ("GEORADIUSBYMEMBER k1 m 10 km STORE d", &[1, 6]),
    ("GEOSEARCHSTORE d k1 FROMMEMBER m BYRADIUS 1 km", &[1, 2]),
    ("BITFIELD_RO k1 GET u8 0", &[1]),
    ("BITFIELD k1 SET u8 0 1", &[1]),
    ("BITOP AND d k1 k2", &[2, 3, 4]),
    ("RENAME k1 k2", &[1, 2]),
    ("SMOVE k1 k2 m", &[1, 2]),
    ("LMOVE k1 k2 LEFT RIGHT", &[1, 2]),
    ("BLMOVE k1 k2 LEFT RIGHT 0", &[1, 2]),
    ("BLPOP k1 k2 0", &[1, 2]),
    ("BRPOPLPUSH k1 k2 0", &[1, 2]),
    ("BZPOPMIN k1 k2 0", &[1, 2]),
    ("PFCOUNT k1 k2", &[1, 2]),
    ("PFMERGE d k1 k2", &[1, 2, 3]),
    ("COPY k1 k2", &[1, 2]),
    ("LCS k1 k2", &[1, 2]),
    ("MSETNX k1 v k2 v", &[1, 3]),
    ("TOUCH k1 k2", &[1, 2]),
    ("UNLINK k1 k2 k3", &[1, 2, 3]),
    ("EXISTS k1 k2", &[1, 2]),
    ("WATCH k1 k2", &[1, 2]),
    ("SDIFFSTORE d k1 k2", &[1, 2, 3]),
    ("SINTER k1 k2", &[1, 2]),
    ("HSET k1 f v", &[1]),
    ("XADD s1 * f v", &[1]),
    ("RESTORE k1 0 x", &[1]),
    ("DUMP k1", &[1]),
    ("SUBSTR k1 0 1", &[1]),
    ("GETEX k1 PERSIST", &[1]),
    ("PFDEBUG GETREG k1", &[2]),
    ("XAUTOCLAIM s1 g c 0 0", &[1]),
    ("ZRANGESTORE d k1 0 1", &[1, 2]),
    ("EVAL_RO s 1 k1", &[3]),
    ("EVALSHA_RO s 0", &[]),
];

#[test]
fn keys_match_real_command_getkeys() {
    for &(line, expect) in REAL_GETKEYS {
        assert_eq!(keys_of(table(), line).unwrap(), expect, "{line}");
        // Case of the command name and of keywords does not matter.
        assert_eq!(keys_of(table(), &line.to_ascii_lowercase()).unwrap(), expect, "{line}");
    }
}

#[test]
fn keys_where_slotway_differs_from_getkeys() {
    // SPUBLISH's shard channel is a `not_key` spec: GETKEYS says "no key arguments", but it names the slot.
    assert_eq!(keys_of(table(), "SPUBLISH ch m").unwrap(), [1]);
    assert_eq!(route_of(table(), "SPUBLISH ch m"), Route::Keys);
    // MIGRATE's keys spec is incomplete; it is unsupported, and no keys are given.
    assert_eq!(keys_of(table(), "MIGRATE h 1 k1 0 10").unwrap(), Vec::<usize>::new());
    assert_eq!(route_of(table(), "MIGRATE h 1 k1 0 10"), Route::Unsupported(UNSUPPORTED_MIGRATE));
}

#[test]
fn more_key_positions() {
    let t = table();
    // MSET with a repeated key: every occurrence.
    assert_eq!(keys_of(t, "MSET a 1 a 2").unwrap(), [1, 3]);
    // SORT: STORE inside GET/BY/LIMIT arguments is not the option; the last STORE wins.
    assert_eq!(keys_of(t, "SORT k GET store BY store LIMIT store store").unwrap(), [1]);
    assert_eq!(keys_of(t, "SORT k STORE a STORE b").unwrap(), [1, 5]);
    assert_eq!(keys_of(t, "SORT k STORE").unwrap(), [1]);
    assert_eq!(keys_of(t, "sort k store d").unwrap(), [1, 3]);
    // XREAD: the first half after STREAMS are keys (an odd rest rounds down; the node reports the error).
    assert_eq!(keys_of(t, "XREAD STREAMS a b c 1 2 3").unwrap(), [2, 3, 4]);
    assert_eq!(keys_of(t, "XREAD STREAMS a b c").unwrap(), [2]);
    assert_eq!(keys_of(t, "XREAD COUNT 1 STREAMS").unwrap(), Vec::<usize>::new());
    assert_eq!(keys_of(t, "XREAD COUNT 1 2 3").unwrap(), Vec::<usize>::new());
    // GEORADIUS without STORE: just the source.
    assert_eq!(keys_of(t, "GEORADIUS k 0 0 10 km WITHDIST").unwrap(), [1]);
    assert_eq!(keys_of(t, "GEORADIUS_RO k 0 0 10 km").unwrap(), [1]);
    // ZUNIONSTORE numkeys 0: the destination only (the node says "at least 1 input key is needed").
    assert_eq!(keys_of(t, "ZUNIONSTORE d 0 x").unwrap(), [1]);
    assert_eq!(keys_of(t, "LMPOP 0 x LEFT").unwrap(), Vec::<usize>::new());
    // Keyless.
    assert_eq!(keys_of(t, "PING").unwrap(), Vec::<usize>::new());
    assert_eq!(keys_of(t, "TIME").unwrap(), Vec::<usize>::new());
    // Appends to what's already there.
    let req = Req::split("MGET a b");
    let mut out: SmallVec<[usize; 8]> = SmallVec::from_slice(&[9]);
    key_indexes(t.resolve(req.args()).unwrap(), req.args(), &mut out).unwrap();
    assert_eq!(out.as_slice(), [9, 1, 2]);
}

#[test]
fn arity_errors() {
    let t = table();
    let err = |line: &str| keys_of(t, line).unwrap_err().to_string();
    assert_eq!(err("GET"), "ERR wrong number of arguments for 'get' command");
    assert_eq!(err("get a b"), "ERR wrong number of arguments for 'get' command");
    assert_eq!(err("MSET a"), "ERR wrong number of arguments for 'mset' command");
    assert_eq!(err("OBJECT ENCODING"), "ERR wrong number of arguments for 'object|encoding' command");
    assert_eq!(err("OBJECT"), "ERR wrong number of arguments for 'object' command");
    assert_eq!(err("xinfo stream"), "ERR wrong number of arguments for 'xinfo|stream' command");
    assert_eq!(err("MEMORY USAGE"), "ERR wrong number of arguments for 'memory|usage' command");
    assert_eq!(err("EVAL s"), "ERR wrong number of arguments for 'eval' command");
    assert_eq!(keys_of(t, "GET").unwrap_err(), KeyError::Arity("get".into()));
    // Arity is fine for these.
    assert!(keys_of(t, "MSET a b").is_ok());
    assert!(keys_of(t, "PING").is_ok());
    assert!(keys_of(t, "PING x").is_ok());
}

#[test]
fn numkeys_errors_use_redis_wording() {
    let t = table();
    let err = |line: &str| keys_of(t, line).unwrap_err().to_string();
    // Compared with redis-server 7.0.15's replies to the same commands.
    let cases = [
        ("EVAL s x a", "ERR value is not an integer or out of range"),
        ("EVAL s 5 a", "ERR Number of keys can't be greater than number of args"),
        ("EVAL s -1 a", "ERR Number of keys can't be negative"),
        ("EVAL_RO s 99999999999999999999 a", "ERR value is not an integer or out of range"),
        ("EVAL s 2 a", "ERR Number of keys can't be greater than number of args"),
        ("EVAL s +1 a", "ERR value is not an integer or out of range"),
        ("EVAL s 01 a", "ERR value is not an integer or out of range"),
        ("FCALL f 3 a b", "ERR Number of keys can't be greater than number of args"),
        ("ZUNIONSTORE d x a", "ERR value is not an integer or out of range"),
        ("ZUNIONSTORE d 5 a", "ERR syntax error"),
        ("ZUNIONSTORE d -1 a", "ERR at least 1 input key is needed for 'zunionstore' command"),
        ("ZINTER -1 a", "ERR at least 1 input key is needed for 'zinter' command"),
        ("ZDIFF 5 a", "ERR syntax error"),
        ("ZINTERCARD x a", "ERR value is not an integer or out of range"),
        ("SINTERCARD x a", "ERR numkeys should be greater than 0"),
        ("SINTERCARD -1 a", "ERR numkeys should be greater than 0"),
        ("SINTERCARD 5 a", "ERR Number of keys can't be greater than number of args"),
        ("LMPOP x a LEFT", "ERR numkeys should be greater than 0"),
        ("LMPOP 5 a LEFT", "ERR syntax error"),
        ("ZMPOP -1 a MIN", "ERR numkeys should be greater than 0"),
        ("BLMPOP 0 x a LEFT", "ERR numkeys should be greater than 0"),
        ("BZMPOP 0 5 a MIN", "ERR syntax error"),
    ];
    for (line, msg) in cases {
        assert_eq!(err(line), msg, "{line}");
        assert!(matches!(keys_of(t, line), Err(KeyError::Syntax(_))));
    }
}

#[test]
fn routes() {
    let t = table();
    let local = [
        ("PING", LocalCommand::Ping),
        ("ping hello", LocalCommand::Ping),
        ("ECHO x", LocalCommand::Echo),
        ("QUIT", LocalCommand::Quit),
        ("SELECT 0", LocalCommand::Select),
        ("HELLO 3", LocalCommand::Hello),
        ("AUTH pw", LocalCommand::Auth),
        ("RESET", LocalCommand::Reset),
        ("READONLY", LocalCommand::ReadOnly),
        ("READWRITE", LocalCommand::ReadWrite),
        ("CLIENT SETNAME x", LocalCommand::Client),
        ("CLIENT LIST", LocalCommand::Client),
        ("CLIENT NOPE", LocalCommand::Client),
        ("CLIENT", LocalCommand::Client),
        ("client help", LocalCommand::Client),
        ("CLIENT SETINFO LIB-NAME x", LocalCommand::Client),
        ("CLIENT KILL ID 1", LocalCommand::Client),
        ("CLIENT PAUSE 10", LocalCommand::Client),
        ("ACL WHOAMI", LocalCommand::Acl),
        ("ACL NOPE", LocalCommand::Acl),
        ("ACL", LocalCommand::Acl),
    ];
    for (line, cmd) in local {
        assert_eq!(route_of(t, line), Route::Local(cmd), "{line}");
    }
    for line in [
        "TIME",
        "LASTSAVE",
        "PUBLISH ch m",
        "COMMAND",
        "COMMAND COUNT",
        "COMMAND INFO get",
        "COMMAND DOCS",
        "COMMAND GETKEYS get k",
        "LOLWUT",
        "OBJECT HELP",
        "XINFO HELP",
        "MEMORY HELP",
        "OBJECT NOPE k",
    ] {
        assert_eq!(route_of(t, line), Route::AnyNode, "{line}");
    }
    for line in [
        "GET k",
        "SET k v",
        "EVAL s 0",
        "EVALSHA s 0",
        "FCALL f 0",
        "FCALL_RO f 1 k",
        "OBJECT ENCODING k",
        "OBJECT FREQ k",
        "MEMORY USAGE k",
        "XINFO STREAM s",
        "XGROUP CREATE s g $",
        "SORT k STORE d",
        "SORT_RO k",
        "XREAD STREAMS s 0",
        "XREAD COUNT 1 STREAMS s 0",
        "XREADGROUP GROUP g c STREAMS s >",
        "XREADGROUP GROUP block c NOACK STREAMS s >",
        "XREAD STREAMS block 0",
        "SPUBLISH ch m",
        "LMPOP 1 k LEFT",
        "ZMPOP 1 k MIN",
        "GEORADIUS k 0 0 1 km STORE d",
        "BITFIELD_RO k GET u8 0",
        "PFDEBUG GETREG k",
    ] {
        assert_eq!(route_of(t, line), Route::Keys, "{line}");
    }
    let unsupported = [
        ("MONITOR", UNSUPPORTED_ADMIN),
        ("SYNC", UNSUPPORTED_ADMIN),
        ("PSYNC x 0", UNSUPPORTED_ADMIN),
        ("REPLICAOF NO ONE", UNSUPPORTED_ADMIN),
        ("SLAVEOF NO ONE", UNSUPPORTED_ADMIN),
        ("SHUTDOWN", UNSUPPORTED_ADMIN),
        ("DEBUG SLEEP 0", UNSUPPORTED_ADMIN),
        ("CLUSTER NODES", UNSUPPORTED_ADMIN),
        ("CLUSTER KEYSLOT k", UNSUPPORTED_ADMIN),
        ("CLUSTER", UNSUPPORTED_ADMIN),
        ("FAILOVER", UNSUPPORTED_ADMIN),
        ("MODULE LIST", UNSUPPORTED_ADMIN),
        ("ASKING", UNSUPPORTED_ADMIN),
        ("MIGRATE h 1 k 0 10", UNSUPPORTED_MIGRATE),
        ("MOVE k 1", UNSUPPORTED_DATABASES),
        ("SWAPDB 0 1", UNSUPPORTED_DATABASES),
        ("CONFIG SET x y", UNSUPPORTED_CONFIG),
        ("CONFIG REWRITE", UNSUPPORTED_CONFIG),
        ("SCRIPT DEBUG YES", UNSUPPORTED_SCRIPT_DEBUG),
        ("SAVE", UNSUPPORTED_KEYLESS),
        ("BGSAVE", UNSUPPORTED_KEYLESS),
        ("BGREWRITEAOF", UNSUPPORTED_KEYLESS),
        ("MEMORY STATS", UNSUPPORTED_KEYLESS),
        ("MEMORY DOCTOR", UNSUPPORTED_KEYLESS),
        ("MEMORY NOPE", UNSUPPORTED_KEYLESS),
        ("PFSELFTEST", UNSUPPORTED_KEYLESS),
    ];
    for (line, reason) in unsupported {
        assert_eq!(route_of(t, line), Route::Unsupported(reason), "{line}");
    }
    // slotway answers these about its own clients' requests.
    for (line, cmd) in [
        ("SLOWLOG GET", LocalCommand::Slowlog),
        ("slowlog reset", LocalCommand::Slowlog),
        ("SLOWLOG NOPE", LocalCommand::Slowlog),
        ("LATENCY LATEST", LocalCommand::Latency),
        ("LATENCY HISTOGRAM get", LocalCommand::Latency),
    ] {
        assert_eq!(route_of(t, line), Route::Local(cmd), "{line}");
    }
    // slotway answers ROLE (master, in every mode) and SENTINEL (as its clients' sentinel) itself.
    assert_eq!(route_of(t, "ROLE"), Route::Local(LocalCommand::Role));
    assert_eq!(route_of(t, "SENTINEL get-master-addr-by-name mymaster"), Route::Local(LocalCommand::Sentinel));
}

#[test]
fn subscribe_family_and_pubsub_introspection() {
    let t = table();
    for (line, cmd) in [
        ("SUBSCRIBE ch", PubSubCommand::Subscribe),
        ("unsubscribe", PubSubCommand::Unsubscribe),
        ("PSUBSCRIBE p*", PubSubCommand::PSubscribe),
        ("PUNSUBSCRIBE", PubSubCommand::PUnsubscribe),
        ("SSUBSCRIBE ch", PubSubCommand::SSubscribe),
        ("SUNSUBSCRIBE ch", PubSubCommand::SUnsubscribe),
    ] {
        assert_eq!(route_of(t, line), Route::PubSub(cmd), "{line}");
    }
    for (line, kind) in [
        ("PUBSUB CHANNELS", FanOut::Union),
        ("PUBSUB CHANNELS news.*", FanOut::Union),
        ("PUBSUB SHARDCHANNELS", FanOut::Union),
        ("PUBSUB NUMSUB a b", FanOut::NumSub),
        ("PUBSUB NUMPAT", FanOut::SumIntegers),
        ("PUBSUB SHARDNUMSUB a b", FanOut::ShardNumSub),
    ] {
        assert_eq!(route_of(t, line), Route::AllPrimaries(kind), "{line}");
    }
    assert_eq!(route_of(t, "PUBSUB HELP"), Route::AnyNode);
    assert_eq!(route_of(t, "PUBSUB NOSUCH"), Route::AnyNode, "the node words the error");
    assert_eq!(route_of(t, "PUBLISH ch m"), Route::AnyNode);
}

#[test]
fn keyless_commands_for_every_primary() {
    let t = table();
    let all = [
        ("INFO", FanOut::Info),
        ("INFO keyspace", FanOut::Info),
        ("info proxy", FanOut::Info),
        ("DBSIZE", FanOut::SumIntegers),
        ("KEYS *", FanOut::ConcatArrays),
        ("RANDOMKEY", FanOut::RandomKey),
        ("FLUSHALL", FanOut::AllOk),
        ("FLUSHALL ASYNC", FanOut::AllOk),
        ("FLUSHDB SYNC", FanOut::AllOk),
        ("SCRIPT LOAD x", FanOut::ScriptLoad),
        ("script exists a b", FanOut::AllOnes),
        ("SCRIPT FLUSH ASYNC", FanOut::ScriptFlush),
        ("SCRIPT KILL", FanOut::AnyOk),
        ("FUNCTION LOAD x", FanOut::SameReply),
        ("FUNCTION DELETE lib", FanOut::AllOk),
        ("FUNCTION FLUSH", FanOut::AllOk),
        ("FUNCTION RESTORE payload", FanOut::AllOk),
        ("FUNCTION KILL", FanOut::AnyOk),
        ("CONFIG RESETSTAT", FanOut::AllOk),
    ];
    for (line, kind) in all {
        assert_eq!(route_of(t, line), Route::AllPrimaries(kind), "{line}");
    }
    assert_eq!(route_of(t, "SCAN 0 MATCH a* COUNT 10 TYPE string"), Route::Scan);
    for line in [
        "FUNCTION LIST",
        "FUNCTION DUMP",
        "FUNCTION STATS",
        "FUNCTION HELP",
        "FUNCTION NOPE",
        "SCRIPT HELP",
        "SCRIPT NOPE",
        "SCRIPT",
        "CONFIG GET maxmemory",
        "CONFIG HELP",
        "CONFIG",
    ] {
        assert_eq!(route_of(t, line), Route::AnyNode, "{line}");
    }
    // Scripts route by their declared keys; EVAL and EVAL_RO also carry a body to remember.
    for line in ["EVAL s 0", "EVAL_RO s 1 k", "EVALSHA s 0", "EVALSHA_RO s 1 k", "FCALL f 0", "FCALL_RO f 1 k"] {
        assert_eq!(route_of(t, line), Route::Keys, "{line}");
    }
    assert!(t.lookup(b"eval").unwrap().carries_script());
    assert!(t.lookup(b"eval_ro").unwrap().carries_script());
    assert!(!t.lookup(b"evalsha").unwrap().carries_script());
    assert!(!t.lookup(b"get").unwrap().carries_script());
}

#[test]
fn transactions_and_blocking_commands() {
    let t = table();
    for (line, cmd) in [
        ("MULTI", TxnCommand::Multi),
        ("exec", TxnCommand::Exec),
        ("DISCARD", TxnCommand::Discard),
        ("WATCH k", TxnCommand::Watch),
        ("UNWATCH", TxnCommand::Unwatch),
    ] {
        assert_eq!(route_of(t, line), Route::Transaction(cmd), "{line}");
    }
    assert_eq!(keys_of(t, "WATCH a b").unwrap(), [1, 2]);
    for line in [
        "BLPOP k 0",
        "BRPOP k 0",
        "BLMOVE a b LEFT LEFT 0",
        "BRPOPLPUSH a b 0",
        "BLMPOP 0 1 k LEFT",
        "BZPOPMIN k 0",
        "BZPOPMAX k 0",
        "BZMPOP 0 1 k MIN",
        "XREAD BLOCK 0 STREAMS s 0",
        "xread count 1 block 100 streams s $",
        "XREADGROUP GROUP g c BLOCK 0 STREAMS s >",
        "XREADGROUP GROUP g c NOACK BLOCK 0 STREAMS s >",
    ] {
        assert_eq!(route_of(t, line), Route::Blocking, "{line}");
    }
    assert_eq!(keys_of(t, "BLMOVE a b LEFT LEFT 0").unwrap(), [1, 2]);
    assert_eq!(keys_of(t, "XREAD BLOCK 0 STREAMS s1 s2 0 0").unwrap(), [4, 5]);
    assert_eq!(route_of(t, "WAIT 1 0"), Route::Wait);
}

#[test]
fn splittable_multi_key_commands() {
    let t = table();
    assert_eq!(route_of(t, "MGET a b"), Route::Split(SplitKind::MGet));
    assert_eq!(route_of(t, "mset a 1 b 2"), Route::Split(SplitKind::MSet));
    for line in ["DEL a b", "UNLINK a", "EXISTS a b c", "TOUCH a"] {
        assert_eq!(route_of(t, line), Route::Split(SplitKind::SumIntegers), "{line}");
    }
    // Not splittable: atomic across keys, so they stay same-slot only.
    assert_eq!(route_of(t, "MSETNX a 1 b 2"), Route::Keys);
}

#[test]
fn every_builtin_command_has_a_sensible_route() {
    for c in table().iter() {
        match c.route {
            Route::Keys => assert!(c.has_keys(), "{} routes by keys but has none", c.name),
            Route::Unsupported(UNSUPPORTED_UNKNOWN_KEYS) => panic!("{}: keys unknown", c.name),
            _ => {}
        }
        // Every key-bearing command that isn't explicitly refused routes by keys.
        if c.has_keys()
            && !matches!(
                c.route,
                Route::Unsupported(_)
                    | Route::Split(_)
                    | Route::Blocking
                    | Route::Transaction(TxnCommand::Watch)
                    | Route::PubSub(PubSubCommand::SSubscribe | PubSubCommand::SUnsubscribe)
            )
        {
            assert_eq!(c.route, Route::Keys, "{}", c.name);
        }
    }
}

// -------------------------------------------------------------------------------------------------------------
// Hand-built COMMAND replies: module commands and Redis 6

fn bulk(s: &str) -> Value {
    Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn status(s: &str) -> Value {
    Value::Simple(Bytes::copy_from_slice(s.as_bytes()))
}

fn int_v(i: i64) -> Value {
    Value::Integer(i)
}

/// A RESP2 flat key/value array, or a RESP3 map.
fn kv(resp3: bool, entries: Vec<(&str, Value)>) -> Value {
    if resp3 {
        Value::Map(entries.into_iter().map(|(k, v)| (bulk(k), v)).collect())
    } else {
        Value::Array(entries.into_iter().flat_map(|(k, v)| [bulk(k), v]).collect())
    }
}

fn index_spec(resp3: bool, index: i64) -> Value {
    kv(resp3, vec![("type", bulk("index")), ("spec", kv(resp3, vec![("index", int_v(index))]))])
}

fn keyword_spec(resp3: bool, keyword: &str, startfrom: i64) -> Value {
    kv(
        resp3,
        vec![
            ("type", bulk("keyword")),
            ("spec", kv(resp3, vec![("keyword", bulk(keyword)), ("startfrom", int_v(startfrom))])),
        ],
    )
}

fn range(resp3: bool, lastkey: i64, keystep: i64, limit: i64) -> Value {
    kv(
        resp3,
        vec![
            ("type", bulk("range")),
            (
                "spec",
                kv(resp3, vec![("lastkey", int_v(lastkey)), ("keystep", int_v(keystep)), ("limit", int_v(limit))]),
            ),
        ],
    )
}

fn keynum(resp3: bool, keynumidx: i64, firstkey: i64, keystep: i64) -> Value {
    kv(
        resp3,
        vec![
            ("type", bulk("keynum")),
            (
                "spec",
                kv(
                    resp3,
                    vec![("keynumidx", int_v(keynumidx)), ("firstkey", int_v(firstkey)), ("keystep", int_v(keystep))],
                ),
            ),
        ],
    )
}

fn key_spec(resp3: bool, flags: &[&str], begin: Value, find: Value) -> Value {
    let flags = flags.iter().map(|f| status(f)).collect();
    let flags = if resp3 { Value::Set(flags) } else { Value::Array(flags) };
    kv(resp3, vec![("flags", flags), ("begin_search", begin), ("find_keys", find)])
}

fn entry7(resp3: bool, name: &str, arity: i64, flags: &[&str], specs: Vec<Value>, subs: Vec<Value>) -> Value {
    let set = |v: Vec<Value>| if resp3 { Value::Set(v) } else { Value::Array(v) };
    Value::Array(vec![
        bulk(name),
        int_v(arity),
        set(flags.iter().map(|f| status(f)).collect()),
        int_v(0),
        int_v(0),
        int_v(0),
        set(vec![status("@module")]),
        set(vec![]),
        Value::Array(specs),
        Value::Array(subs),
    ])
}

fn module_table(resp3: bool) -> CommandTable {
    let reply = Value::Array(vec![
        // mod.copy SRC DST [KEYS n k...] : an index spec, a range from the end, and a keyword + keynum spec.
        entry7(
            resp3,
            "mod.copy",
            -3,
            &["write"],
            vec![
                key_spec(resp3, &["RO"], index_spec(resp3, 1), range(resp3, 0, 1, 0)),
                key_spec(resp3, &["OW"], index_spec(resp3, 2), range(resp3, 0, 1, 0)),
                key_spec(resp3, &["RO"], keyword_spec(resp3, "KEYS", 3), keynum(resp3, 0, 1, 1)),
            ],
            vec![],
        ),
        // mod.tail ... KEYS k1 k2 : a backward keyword search from the end, then every other key up to the end.
        entry7(
            resp3,
            "mod.tail",
            -2,
            &["readonly"],
            vec![key_spec(resp3, &["RO"], keyword_spec(resp3, "KEYS", -1), range(resp3, -1, 2, 0))],
            vec![],
        ),
        // mod.half k... v... : the first half of the arguments after index 1.
        entry7(
            resp3,
            "mod.half",
            -3,
            &["readonly"],
            vec![key_spec(resp3, &["RO"], index_spec(resp3, 1), range(resp3, -1, 1, 2))],
            vec![],
        ),
        entry7(
            resp3,
            "mod.incomplete",
            -2,
            &["write"],
            vec![key_spec(resp3, &["RW", "incomplete"], index_spec(resp3, 1), range(resp3, 0, 1, 0))],
            vec![],
        ),
        entry7(
            resp3,
            "mod.getkeys",
            -2,
            &["write", "movablekeys"],
            vec![key_spec(resp3, &["RW", "variable_flags"], index_spec(resp3, 1), range(resp3, 0, 1, 0))],
            vec![],
        ),
        entry7(
            resp3,
            "mod.unknown",
            -2,
            &["write"],
            vec![key_spec(
                resp3,
                &["RW"],
                kv(resp3, vec![("type", bulk("unknown")), ("spec", kv(resp3, vec![]))]),
                range(resp3, 0, 1, 0),
            )],
            vec![],
        ),
        entry7(resp3, "mod.info", 1, &["readonly"], vec![], vec![]),
        entry7(
            resp3,
            "mod.container",
            -2,
            &[],
            vec![],
            vec![entry7(
                resp3,
                "mod.container|get",
                3,
                &["readonly"],
                vec![key_spec(resp3, &["RO"], index_spec(resp3, 2), range(resp3, 0, 1, 0))],
                vec![],
            )],
        ),
    ]);
    CommandTable::from_command_reply(&reply).unwrap()
}

#[test]
fn module_commands_with_key_specs() {
    for resp3 in [false, true] {
        let t = module_table(resp3);
        assert_eq!(t.len(), 9 + 6 + 1, "the module commands, plus SLOTWAY and its subcommands, plus SENTINEL");
        assert_eq!(keys_of(&t, "MOD.COPY a b").unwrap(), [1, 2]);
        assert_eq!(keys_of(&t, "mod.copy a b KEYS 2 c d x").unwrap(), [1, 2, 5, 6]);
        assert_eq!(keys_of(&t, "mod.copy a b keys 0").unwrap(), [1, 2]);
        assert_eq!(
            keys_of(&t, "mod.copy a b KEYS 3 c d").unwrap_err().to_string(),
            "ERR Number of keys can't be greater than number of args"
        );
        assert_eq!(
            keys_of(&t, "mod.copy a b KEYS x").unwrap_err().to_string(),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(keys_of(&t, "mod.copy a").unwrap_err(), KeyError::Arity("mod.copy".into()));
        assert_eq!(route_of(&t, "mod.copy a b"), Route::Keys);
        // Backward search finds the last KEYS.
        assert_eq!(keys_of(&t, "mod.tail x KEYS y KEYS k1 v1 k2 v2").unwrap(), [5, 7]);
        assert_eq!(keys_of(&t, "mod.tail x y").unwrap(), Vec::<usize>::new());
        // The search stops before index 1.
        assert_eq!(keys_of(&t, "mod.tail KEYS").unwrap(), Vec::<usize>::new());
        assert_eq!(keys_of(&t, "mod.half a b c 1 2 3").unwrap(), [1, 2, 3]);
        assert_eq!(keys_of(&t, "mod.half a b 1 2 3").unwrap(), [1, 2]);
        for line in ["mod.incomplete k", "mod.getkeys k", "mod.unknown k"] {
            assert_eq!(route_of(&t, line), Route::Unsupported(UNSUPPORTED_UNKNOWN_KEYS), "{line}");
            assert_eq!(keys_of(&t, line).unwrap(), Vec::<usize>::new());
        }
        assert_eq!(route_of(&t, "mod.info"), Route::Unsupported(UNSUPPORTED_KEYLESS));
        assert_eq!(route_of(&t, "mod.container get k"), Route::Keys);
        assert_eq!(keys_of(&t, "MOD.CONTAINER GET k").unwrap(), [2]);
        assert_eq!(
            keys_of(&t, "mod.container get").unwrap_err().to_string(),
            "ERR wrong number of arguments for 'mod.container|get' command"
        );
        assert_eq!(route_of(&t, "mod.container other"), Route::AnyNode);
        assert_eq!(t.lookup(b"mod.copy").unwrap().acl_categories, ["module"]);
    }
}

fn entry6(name: &str, arity: i64, flags: &[&str], first: i64, last: i64, step: i64) -> Value {
    Value::Array(vec![
        bulk(name),
        int_v(arity),
        Value::Array(flags.iter().map(|f| status(f)).collect()),
        int_v(first),
        int_v(last),
        int_v(step),
        Value::Array(vec![status("@keyspace")]),
    ])
}

#[test]
fn redis6_command_reply() {
    let reply = Value::Array(vec![
        entry6("get", 2, &["readonly", "fast"], 1, 1, 1),
        entry6("mset", -3, &["write", "denyoom"], 1, -1, 2),
        entry6("eval", -3, &["noscript", "movablekeys"], 0, 0, 0),
        entry6("zunionstore", -4, &["write", "denyoom", "movablekeys"], 0, 0, 0),
        entry6("xread", -4, &["readonly", "movablekeys"], 0, 0, 0),
        entry6("sort", -2, &["write", "denyoom", "movablekeys"], 1, 1, 1),
        entry6("object", -2, &["readonly", "random"], 2, 2, 1),
        entry6("memory", -2, &["readonly", "random", "movablekeys"], 0, 0, 0),
        entry6("blpop", -3, &["write", "noscript"], 1, -2, 1),
        entry6("ping", -1, &["stale", "fast"], 0, 0, 0),
        entry6("script", -2, &["noscript"], 0, 0, 0),
        entry6("mymod.cmd", -1, &["write", "movablekeys"], 0, 0, 0),
        entry6("mymod.legacy", -2, &["write"], 1, 1, 1),
        // Redis 5 entries have no ACL categories.
        Value::Array(vec![
            bulk("dbsize"),
            int_v(1),
            Value::Array(vec![status("readonly")]),
            int_v(0),
            int_v(0),
            int_v(0),
        ]),
    ]);
    let t = CommandTable::from_command_reply(&reply).unwrap();
    assert_eq!(keys_of(&t, "GET k").unwrap(), [1]);
    assert_eq!(keys_of(&t, "MSET a 1 b 2").unwrap(), [1, 3]);
    assert_eq!(keys_of(&t, "EVAL s 2 a b c").unwrap(), [3, 4]);
    assert_eq!(keys_of(&t, "ZUNIONSTORE d 2 a b").unwrap(), [1, 3, 4]);
    assert_eq!(keys_of(&t, "XREAD COUNT 1 STREAMS a b 0 0").unwrap(), [4, 5]);
    assert_eq!(route_of(&t, "XREAD BLOCK 1 STREAMS a 0"), Route::Blocking);
    assert_eq!(keys_of(&t, "SORT k LIMIT 0 1 STORE d").unwrap(), [1, 6]);
    assert_eq!(keys_of(&t, "OBJECT ENCODING k").unwrap(), [2]);
    assert_eq!(keys_of(&t, "OBJECT HELP").unwrap(), Vec::<usize>::new());
    assert_eq!(keys_of(&t, "MEMORY USAGE k").unwrap(), [2]);
    assert_eq!(route_of(&t, "MEMORY USAGE k"), Route::Keys);
    assert_eq!(route_of(&t, "MEMORY STATS"), Route::Unsupported(UNSUPPORTED_KEYLESS));
    assert_eq!(route_of(&t, "BLPOP a b 0"), Route::Blocking);
    assert_eq!(keys_of(&t, "BLPOP a b 0").unwrap(), [1, 2]);
    assert_eq!(route_of(&t, "PING"), Route::Local(LocalCommand::Ping));
    assert_eq!(route_of(&t, "mymod.cmd x"), Route::Unsupported(UNSUPPORTED_UNKNOWN_KEYS));
    assert_eq!(route_of(&t, "mymod.legacy k"), Route::Keys);
    assert_eq!(keys_of(&t, "mymod.legacy k").unwrap(), [1]);
    assert_eq!(route_of(&t, "DBSIZE"), Route::AllPrimaries(FanOut::SumIntegers));
    // Redis 6 has no subcommands: SCRIPT's come from the built-in table.
    assert_eq!(route_of(&t, "SCRIPT LOAD x"), Route::AllPrimaries(FanOut::ScriptLoad));
    assert!(t.lookup(b"eval").unwrap().carries_script());
    assert!(t.lookup(b"dbsize").unwrap().acl_categories.is_empty());
}

#[test]
fn legacy_range_out_of_bounds_gives_no_keys() {
    // getKeysUsingLegacyRangeSpec returns nothing at all when the range runs past the args.
    let reply = Value::Array(vec![entry6("mymod.pairs", -1, &["write"], 1, 4, 1)]);
    let t = CommandTable::from_command_reply(&reply).unwrap();
    assert_eq!(keys_of(&t, "mymod.pairs a b c d").unwrap(), [1, 2, 3, 4]);
    assert_eq!(keys_of(&t, "mymod.pairs a b").unwrap(), Vec::<usize>::new());
}

#[test]
fn bad_command_replies_are_errors() {
    assert!(
        CommandTable::from_command_reply(&Value::Error(Bytes::from_static(b"ERR unknown command 'COMMAND'"))).is_err()
    );
    assert!(CommandTable::from_command_reply(&Value::Array(vec![int_v(1)])).is_err());
    assert!(CommandTable::from_command_reply(&Value::Array(vec![Value::Array(vec![bulk("get"), int_v(2)])])).is_err());
    let bad_arity = Value::Array(vec![entry6("get", 2, &[], 1, 1, 1)]);
    assert!(CommandTable::from_command_reply(&bad_arity).is_ok());
    let mut e = entry6("get", 2, &[], 1, 1, 1);
    if let Value::Array(items) = &mut e {
        items[1] = bulk("two");
    }
    assert!(CommandTable::from_command_reply(&Value::Array(vec![e])).is_err());
    assert_eq!(CommandTable::from_command_reply(&Value::Array(vec![])).unwrap().len(), 0);
}

#[test]
fn client_setinfo_and_no_touch_have_their_own_acl_entries() {
    let t = table();
    // Redis 7.0 doesn't list CLIENT SETINFO / NO-TOUCH: slotway adds them as Redis 7.2 describes them, so ACL
    // categories apply to them and not to the CLIENT container.
    for (name, arity) in [("client|setinfo", 4), ("client|no-touch", 3)] {
        let info = t.lookup(name.as_bytes()).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(info.arity, arity, "{name}");
        assert_eq!(info.acl_categories, ["slow", "connection"], "{name}");
        assert_eq!(info.route, Route::Local(LocalCommand::Client));
    }
    assert!(t.lookup(b"client|kill").unwrap().acl_categories.iter().any(|c| c == "dangerous"));
    // Every entry knows its own position.
    for info in t.iter() {
        assert_eq!(t.by_index(info.index).map(|i| &i.name), Some(&info.name));
    }
}
