use super::*;
use crate::command::Args;

fn table() -> &'static CommandTable {
    static T: std::sync::OnceLock<CommandTable> = std::sync::OnceLock::new();
    T.get_or_init(CommandTable::builtin)
}

fn user(rules: &str) -> User {
    compile("u", vec![sha256(b"pw")], rules, table(), PubSubDefault::ResetChannels).unwrap()
}

/// Args over `line`'s words (split at spaces), with the command's table entry.
fn request(line: &str) -> (&'static CommandInfo, Args<'static>) {
    let words: Vec<&str> = line.split(' ').collect();
    let mut frame = Vec::new();
    let mut ranges = Vec::new();
    for w in &words {
        ranges.push(frame.len()..frame.len() + w.len());
        frame.extend_from_slice(w.as_bytes());
    }
    let frame: &'static [u8] = Box::leak(frame.into_boxed_slice());
    let ranges: &'static [std::ops::Range<usize>] = Box::leak(ranges.into_boxed_slice());
    let args = Args { frame, ranges };
    (table().resolve(args).expect("known command"), args)
}

fn check(u: &User, line: &str) -> Result<(), Denied> {
    let (info, args) = request(line);
    u.check_request(info, args)
}

#[test]
fn read_only_user() {
    let u = user("on +@read ~*");
    assert!(check(&u, "GET k").is_ok());
    assert_eq!(check(&u, "SET k v"), Err(Denied::Command("set".into())));
    assert_eq!(Denied::Command("set".into()).message(), "NOPERM this user has no permissions to run the 'set' command");
}

#[test]
fn rules_apply_in_order() {
    let u = user("+@all -@dangerous +flushdb ~*");
    assert!(check(&u, "SET k v").is_ok());
    assert!(check(&u, "FLUSHALL").is_err(), "flushall is @dangerous");
    assert!(check(&u, "FLUSHDB").is_ok(), "re-allowed by name after the category");
    let u = user("+@all -get ~*");
    assert!(check(&u, "GET k").is_err());
    let u = user("+client ~*");
    assert!(check(&u, "CLIENT LIST").is_ok(), "a container rule covers its subcommands");
}

#[test]
fn key_patterns_and_read_write_permissions() {
    let u = user("+@all ~app1:* %R~shared:*");
    assert!(check(&u, "GET app1:x").is_ok());
    assert_eq!(check(&u, "GET app2:x"), Err(Denied::Key(1)));
    assert!(check(&u, "GET shared:x").is_ok());
    assert_eq!(check(&u, "SET shared:x v"), Err(Denied::Key(1)));
    // Every key must be allowed.
    assert_eq!(check(&u, "MGET app1:a app2:b"), Err(Denied::Key(2)));
    let w = user("+@all %W~log:*");
    assert!(check(&w, "SET log:1 v").is_ok());
    assert_eq!(check(&w, "GET log:1"), Err(Denied::Key(1)));
}

#[test]
fn passwords_nopass_and_off() {
    let u = user("on +@all ~*");
    assert!(u.accepts(b"pw") && !u.accepts(b"nope"));
    assert!(user("nopass +@all").accepts(b"anything"));
    assert!(!user("off +@all ~*").accepts(b"pw"));
    assert_eq!(
        parse_sha256_hex("#5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"),
        Some(sha256(b"password"))
    );
    assert_eq!(parse_sha256_hex("abc"), None);
}

#[test]
fn unsupported_rules_are_errors() {
    for bad in ["+@nosuchcategory", "+nosuchcommand", "%X~k", "%~k", ">plaintext", "reset", "allkeys ~k", "&* &c"] {
        let err = compile("u", vec![], bad, table(), PubSubDefault::ResetChannels).unwrap_err();
        let rule = bad.split(' ').next_back().unwrap();
        assert!(err.contains(rule), "{bad}: {err}");
    }
    let err = compile("u", vec![], "allkeys ~k", table(), PubSubDefault::ResetChannels).unwrap_err();
    assert!(err.contains("Try 'resetkeys'"), "Redis's reason: {err}");
}

#[test]
fn keys_are_checked_with_every_request() {
    let u = user("on +@all ~app:* &*");
    let nokey = Err(Denied::Key(2));
    assert_eq!(check(&u, "RENAME app:a other:b"), nokey);
    assert_eq!(check(&u, "COPY app:a other:b"), nokey);
    assert_eq!(check(&u, "SMOVE app:a other:b m"), nokey);
    assert_eq!(check(&u, "LMOVE app:a other:b LEFT RIGHT"), nokey);
    assert_eq!(check(&u, "EVAL x 2 app:a other:b"), Err(Denied::Key(4)));
    assert_eq!(check(&u, "SORT app:l STORE other:o"), Err(Denied::Key(3)));
    assert!(check(&u, "COPY app:a app:b").is_ok());
    // Malformed requests are left to the planner (its error is Redis's).
    assert!(check(&u, "GET").is_ok());
}

#[test]
fn channel_rules_as_redis_7() {
    let noperm = "NOPERM this user has no permissions to access one of the channels used as arguments";
    // Redis 7's default: no channel unless granted.
    let u = user("on +@all ~*");
    assert_eq!(check(&u, "PUBLISH news x"), Err(Denied::Channel(1)));
    assert_eq!(Denied::Channel(1).message(), noperm);
    assert!(u.has_pubsub_but_no_channels());
    let all = compile("u", vec![], "on +@all ~*", table(), PubSubDefault::AllChannels).unwrap();
    assert!(check(&all, "PUBLISH news x").is_ok() && !all.has_pubsub_but_no_channels());
    assert_eq!(all.describe_channels(), "&*");

    let u = user("on +@all ~* &news.* &alerts");
    assert!(check(&u, "SUBSCRIBE news.1 alerts").is_ok());
    assert_eq!(check(&u, "SUBSCRIBE news.1 other"), Err(Denied::Channel(2)));
    assert!(check(&u, "SSUBSCRIBE news.1").is_ok());
    assert_eq!(check(&u, "SSUBSCRIBE other"), Err(Denied::Channel(1)));
    assert!(check(&u, "PUBLISH news.x m").is_ok() && check(&u, "SPUBLISH alerts m").is_ok());
    assert_eq!(check(&u, "SPUBLISH other m"), Err(Denied::Channel(1)));
    // PSUBSCRIBE's patterns are compared literally.
    assert!(check(&u, "PSUBSCRIBE news.*").is_ok());
    assert_eq!(check(&u, "PSUBSCRIBE news.a*"), Err(Denied::Channel(1)));
    assert_eq!(check(&u, "PSUBSCRIBE alerts news.1"), Err(Denied::Channel(2)));
    // Unsubscribing is never checked; channels are not keys.
    assert!(check(&u, "UNSUBSCRIBE other").is_ok() && check(&u, "PUNSUBSCRIBE x").is_ok());
    let k = user("on +@all ~app:* &*");
    assert!(check(&k, "SPUBLISH other m").is_ok() && check(&k, "SSUBSCRIBE other").is_ok());
    // allchannels and resetchannels, in order.
    let r = user("on +@all ~* &* resetchannels &x");
    assert_eq!(r.describe_channels(), "&x");
    assert_eq!(check(&r, "PUBLISH y m"), Err(Denied::Channel(1)));
}

#[test]
fn sort_by_and_get_need_every_key() {
    let u = user("on +@all ~app:* &*");
    let by = Err(Denied::Sort("BY"));
    let get = Err(Denied::Sort("GET"));
    assert_eq!(check(&u, "SORT app:l BY w_*"), by);
    assert_eq!(Denied::Sort("BY").message(), "ERR BY option of SORT denied due to insufficient ACL permissions.");
    assert!(check(&u, "SORT app:l BY nosort").is_ok(), "a constant BY reads no other key");
    assert_eq!(check(&u, "SORT app:l GET #"), get);
    assert_eq!(check(&u, "SORT app:l LIMIT 0 1 ALPHA DESC GET #"), get);
    assert_eq!(check(&u, "SORT_RO app:l GET #"), get);
    assert!(check(&u, "SORT app:l BOGUS GET #").is_ok(), "a syntax error first: the node says so");
    assert!(check(&u, "SORT app:l LIMIT x 1 GET #").is_ok(), "Redis's integer error first");
    assert!(check(&u, "SORT app:l ALPHA LIMIT 0 5").is_ok());
    // Read access to every key is enough, as in Redis.
    assert!(check(&user("on +@all ~app:* %R~* &*"), "SORT app:l BY w_* GET #").is_ok());
    assert!(check(&user("on +@all allkeys"), "SORT app:l GET #").is_ok());
    assert_eq!(check(&user("on +@all %W~* ~app:*"), "SORT app:l GET #"), get);
}

#[test]
fn scripts_of_restricted_users_need_a_cluster_user() {
    let script = |u: &User, line: &str| match check(u, line) {
        Err(Denied::Script { limits, .. }) => limits,
        Ok(()) => vec![],
        Err(other) => panic!("{line}: {other:?}"),
    };
    // Unrestricted: scripts run as slotway's cluster user, and nothing is escaped.
    let free = user("on +@all ~* &*");
    for line in ["EVAL x 0", "EVALSHA x 0", "EVAL_RO x 0", "EVALSHA_RO x 0", "FCALL f 0", "FCALL_RO f 0"] {
        assert!(script(&free, line).is_empty(), "{line}");
    }
    let keys = user("on +@all ~app:* &*");
    assert_eq!(script(&keys, "EVAL x 0"), ["key"]);
    assert_eq!(script(&keys, "FCALL_RO f 1 app:x"), ["key"]);
    assert_eq!(script(&user("on +@all ~*"), "EVALSHA x 0"), ["channel"], "Redis 7's default: no channels");
    // A read-only script can't publish (PUBLISH may replicate), so channels don't matter to it.
    assert!(script(&user("on +@all ~*"), "EVAL_RO x 0").is_empty());
    assert_eq!(script(&user("on +@all -@dangerous ~* &*"), "EVAL x 0"), ["command"], "FLUSHALL from a script");
    assert_eq!(script(&user("on +@all ~app:* %R~*"), "EVAL x 0"), ["key", "channel"]);
    let all_three = check(&user("on +@all -flushall ~app:*"), "EVAL x 0").unwrap_err().message();
    assert!(all_three.contains("its key, channel and command rules restrict it"), "{all_three}");
    assert!(script(&user("on +@all ~app:* %R~* &*"), "EVAL_RO x 0").is_empty(), "reads every key");
    assert_eq!(script(&user("on +@read +@scripting ~*"), "EVAL_RO x 0"), ["command"], "reads outside @read");
    let msg = check(&keys, "EVAL x 0").unwrap_err().message();
    assert!(
        msg.starts_with("NOPERM this user has no permissions to run the 'eval' command: its key rules restrict it")
            && msg.contains("[users.upstream]")
            && msg.contains("provision_upstream = true"),
        "{msg}"
    );
    // With a cluster user of its own, the nodes check every redis.call.
    let mut mapped = keys.clone();
    mapped.upstream = crate::upstream::Identity::new(1);
    assert!(check(&mapped, "EVAL x 0").is_ok() && check(&mapped, "FCALL f 0").is_ok());
    // The command itself and its declared keys are still slotway's to check first.
    assert_eq!(check(&user("on +@read ~*"), "EVAL x 0"), Err(Denied::Command("eval".into())));
    assert_eq!(check(&keys, "EVAL x 1 other"), Err(Denied::Key(3)));
    // FUNCTION LOAD / SCRIPT FLUSH follow Redis's categories only.
    assert!(check(&keys, "FUNCTION FLUSH").is_ok() && check(&keys, "SCRIPT FLUSH").is_ok());
    assert_eq!(
        check(&user("on +@all -@scripting ~*"), "FUNCTION FLUSH"),
        Err(Denied::Command("function|flush".into()))
    );
}

#[test]
fn described_as_redis_prints_users() {
    // As redis-server 7.0.15 prints the same rules (ACL LIST / ACL GETUSER).
    let u = compile(
        "app",
        vec![sha256(b"password")],
        "on +@all -@dangerous ~app:* %R~shared:* &news.*",
        table(),
        PubSubDefault::ResetChannels,
    )
    .unwrap();
    assert_eq!(
        u.acl_list_line(),
        "user app on #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 ~app:* %R~shared:* \
         resetchannels &news.* +@all -@dangerous"
    );
    assert_eq!(u.describe_commands(), "+@all -@dangerous");
    assert_eq!(u.describe_keys(), "~app:* %R~shared:*");
    assert_eq!(u.describe_channels(), "&news.*");
    assert_eq!(u.flags(), ["on"]);
    let d = User::implicit_default(table());
    assert_eq!(d.acl_list_line(), "user default on nopass ~* &* +@all");
    let x = compile("x", vec![], "off", table(), PubSubDefault::ResetChannels).unwrap();
    assert_eq!(x.acl_list_line(), "user x off resetchannels -@all");
    assert_eq!((x.describe_keys().as_str(), x.describe_channels().as_str()), ("", ""));
    // Redis 7.2's normalisation: a rule mentioned again moves to the end; +@all/-@all start over; the same key
    // pattern again widens its permissions in place.
    let n = user("+@read -get +get +client|list -client -@all +@write +@read -@write %R~a %W~a ~b");
    assert_eq!(n.describe_commands(), "-@all +@read -@write");
    assert_eq!(n.describe_keys(), "~a ~b");
    assert_eq!(user("nocommands +get allcommands").describe_commands(), "+@all");
    assert_eq!(user("~* resetkeys %W~log:*").describe_keys(), "%W~log:*");
}

#[test]
fn node_rules_for_provisioned_users() {
    let u = user("on +@all -@dangerous -slotway +client|setinfo ~app:* &news");
    assert_eq!(
        u.node_acl_rules().join(" "),
        "on clearselectors resetkeys resetchannels ~app:* ~__slotway_wait__* &news +@all -@dangerous +ping +asking \
         +readonly +discard +unwatch +script|load +multi +exec"
    );
    let r = user("on -@all +get +@connection ~* &*");
    assert_eq!(
        r.node_acl_rules().join(" "),
        "on clearselectors resetkeys resetchannels allkeys allchannels -@all +get +@connection +ping +asking +readonly \
         +multi +exec"
    );
}

#[test]
fn dryrun_messages_as_redis_7_0() {
    let u = user("on +@all -@dangerous ~app:* &news.*");
    let said = |line: &str| {
        let (info, args) = request(line);
        u.check_dryrun(info, args).map_err(|d| d.dryrun_message(args))
    };
    assert_eq!(said("GET other"), Err("This user has no permissions to access the 'other' key".into()));
    assert_eq!(said("PUBLISH foo x"), Err("This user has no permissions to access the 'foo' channel".into()));
    assert_eq!(said("FLUSHALL"), Err("This user has no permissions to run the 'flushall' command".into()));
    assert_eq!(said("GET app:1"), Ok(()));
    assert!(said("EVAL x 0").unwrap_err().starts_with("This user has no permissions to run the 'eval' command: "));
}

mod acl_command {
    use super::*;
    use crate::auth::command::{acl, AclContext, LogReason};
    use resp::encode::Protocol;

    fn run(users: Option<&Users>, me: Option<&User>, protocol: Protocol, line: &str) -> String {
        let (_, args) = request(line);
        let ctx = AclContext { table: table(), users, me, protocol };
        String::from_utf8(acl(args, &ctx).to_vec()).unwrap()
    }

    #[test]
    fn getuser_in_both_protocols() {
        let users = Users::new(vec![user("on +@all ~k:* &c")], 10);
        let resp2 = run(Some(&users), None, Protocol::Resp2, "ACL GETUSER u");
        let hash = hex(&sha256(b"pw"));
        assert_eq!(
            resp2,
            format!(
                "*12\r\n$5\r\nflags\r\n*1\r\n$2\r\non\r\n$9\r\npasswords\r\n*1\r\n$64\r\n{hash}\r\n\
                 $8\r\ncommands\r\n$5\r\n+@all\r\n$4\r\nkeys\r\n$4\r\n~k:*\r\n$8\r\nchannels\r\n$2\r\n&c\r\n\
                 $9\r\nselectors\r\n*0\r\n"
            )
        );
        let resp3 = run(Some(&users), None, Protocol::Resp3, "ACL GETUSER u");
        assert!(resp3.starts_with("%6\r\n$5\r\nflags\r\n~1\r\n"), "{resp3}");
        assert_eq!(run(Some(&users), None, Protocol::Resp3, "ACL GETUSER nobody"), "_\r\n");
        assert_eq!(run(Some(&users), None, Protocol::Resp2, "ACL GETUSER nobody"), "$-1\r\n");
    }

    #[test]
    fn errors_and_the_implicit_default_user() {
        assert_eq!(run(None, None, Protocol::Resp2, "ACL WHOAMI"), "$7\r\ndefault\r\n");
        assert_eq!(run(None, None, Protocol::Resp2, "ACL USERS"), "*1\r\n$7\r\ndefault\r\n");
        assert_eq!(run(None, None, Protocol::Resp2, "ACL LIST"), "*1\r\n$34\r\nuser default on nopass ~* &* +@all\r\n");
        assert_eq!(run(None, None, Protocol::Resp2, "ACL NOPE x"), "-ERR unknown subcommand 'NOPE'. Try ACL HELP.\r\n");
        assert_eq!(
            run(None, None, Protocol::Resp2, "ACL CAT a b"),
            "-ERR unknown subcommand 'CAT'. Try ACL HELP.\r\n",
            "as Redis: arguments the subcommand doesn't take"
        );
        assert_eq!(
            run(None, None, Protocol::Resp2, "ACL WHOAMI x"),
            "-ERR wrong number of arguments for 'acl|whoami' command\r\n"
        );
        assert_eq!(run(None, None, Protocol::Resp2, "ACL DRYRUN default SET k v"), "+OK\r\n");
        assert!(run(None, None, Protocol::Resp2, "ACL CAT").starts_with("*21\r\n$8\r\nkeyspace\r\n"));
        let pass = run(None, None, Protocol::Resp2, "ACL GENPASS 9");
        assert!(pass.starts_with("$3\r\n") && pass.len() == 9, "{pass}");
        assert!(
            run(None, None, Protocol::Resp2, "ACL SETUSER x").starts_with("-ERR slotway: ACL SETUSER is not supported")
        );
    }

    #[test]
    fn log_groups_like_redis_and_stays_bounded() {
        let users = Users::new(vec![user("on +@all ~k:*")], 10);
        for _ in 0..3 {
            users.log.add(LogReason::Key, false, b"other", "u", "id=1".into());
        }
        users.log.add(LogReason::Key, true, b"other", "u", "id=1".into());
        users.log.add(LogReason::Channel, false, &vec![b'c'; 5000], "u", "id=2".into());
        let log = run(Some(&users), None, Protocol::Resp2, "ACL LOG");
        assert!(log.starts_with("*3\r\n*14\r\n$5\r\ncount\r\n:1\r\n$6\r\nreason\r\n$7\r\nchannel\r\n"), "{log}");
        assert!(log.contains(&format!("$6\r\nobject\r\n$1024\r\n{}\r\n", "c".repeat(1024))), "objects are cut");
        assert!(log.contains(":3\r\n$6\r\nreason\r\n$3\r\nkey\r\n$7\r\ncontext\r\n$8\r\ntoplevel"), "{log}");
        assert!(log.contains("$5\r\nmulti"), "another context is another entry");
        for i in 0..200 {
            users.log.add(LogReason::Command, false, format!("cmd{i}").as_bytes(), "u", String::new());
        }
        assert!(run(Some(&users), None, Protocol::Resp2, "ACL LOG 1000").starts_with("*128\r\n"));
        assert!(run(Some(&users), None, Protocol::Resp2, "ACL LOG 2").starts_with("*2\r\n"));
        assert_eq!(run(Some(&users), None, Protocol::Resp2, "ACL LOG RESET"), "+OK\r\n");
        assert_eq!(run(Some(&users), None, Protocol::Resp2, "ACL LOG"), "*0\r\n");
    }
}
