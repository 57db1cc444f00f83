//! CLIENT commands about slotway's own clients: LIST / INFO in Redis 7.2's line format, SETINFO, KILL (old and
//! filter forms, a blocked client, oneself), REPLY OFF/SKIP, and the subcommands slotway refuses or answers
//! for a client that never tracks (TRACKING, CACHING, PAUSE) — through a real cluster.

mod support;
mod support_raw;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// A reply, flattened for comparisons: `+OK`, `-ERR ...`, `:1`, the text of a bulk or verbatim string (`$nil`
/// for a null), `[a, b]` for arrays, maps and sets.
fn parse(buf: &[u8]) -> Option<(String, usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&buf[1..end]).into_owned();
    let rest = end + 2;
    match buf.first()? {
        b'+' | b'-' | b':' => Some((format!("{}{line}", buf[0] as char), rest)),
        b'_' => Some(("$nil".into(), rest)),
        b'$' | b'=' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                return Some(("$nil".into(), rest));
            }
            let n = n as usize;
            if buf.len() < rest + n + 2 {
                return None;
            }
            let mut text = String::from_utf8_lossy(&buf[rest..rest + n]).into_owned();
            if buf[0] == b'=' {
                assert!(text.starts_with("txt:"), "verbatim format: {text}");
                text.drain(..4);
            }
            Some((text, rest + n + 2))
        }
        b'*' | b'%' | b'~' => {
            let n: i64 = line.parse().ok()?;
            let n = if buf[0] == b'%' { n * 2 } else { n };
            let mut at = rest;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                let (item, used) = parse(&buf[at..])?;
                items.push(item);
                at += used;
            }
            Some((format!("[{}]", items.join(", ")), at))
        }
        other => panic!("unexpected reply type {:?}", *other as char),
    }
}

struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(proxy: &Proxy) -> Client {
        let s = proxy.tcp();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { s, buf: Vec::new() }
    }

    fn local_addr(&self) -> String {
        self.s.local_addr().unwrap().to_string()
    }

    /// Sends one command (arguments as given, so they may contain spaces) without reading.
    fn send(&mut self, args: &[&str]) {
        self.s.write_all(&support_raw::c(args)).unwrap();
    }

    fn read(&mut self) -> String {
        loop {
            if let Some((reply, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return reply;
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("connection closed; got {:?}", String::from_utf8_lossy(&self.buf)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("no reply: {e}; got {:?}", String::from_utf8_lossy(&self.buf)),
            }
        }
    }

    fn call(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.read()
    }

    /// Waits up to `within` for the server to close the connection; anything it sends meanwhile is returned.
    fn closed_within(&mut self, within: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut got = std::mem::take(&mut self.buf);
        self.s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        while Instant::now() < deadline {
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return Some(got),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(got),
                Err(_) => {}
            }
        }
        None
    }
}

/// The `key=value` fields of a CLIENT LIST line, in order.
fn fields(line: &str) -> Vec<(String, String)> {
    line.split(' ')
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap_or_else(|| panic!("field without '=' in {line}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn field_map(line: &str) -> HashMap<String, String> {
    fields(line).into_iter().collect()
}

/// Redis 7.2's CLIENT LIST fields, in its order.
const REDIS_FIELDS: &[&str] = &[
    "id",
    "addr",
    "laddr",
    "fd",
    "name",
    "age",
    "idle",
    "flags",
    "db",
    "sub",
    "psub",
    "ssub",
    "multi",
    "qbuf",
    "qbuf-free",
    "argv-mem",
    "multi-mem",
    "rbs",
    "rbp",
    "obl",
    "oll",
    "omem",
    "tot-mem",
    "events",
    "cmd",
    "user",
    "redir",
    "resp",
    "lib-name",
    "lib-ver",
];

#[test]
fn client_list_info_setinfo_and_kill() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);

    let mut a = Client::connect(&proxy);
    assert_eq!(a.call(&["CLIENT", "SETNAME", "alpha"]), "+OK");
    assert_eq!(a.call(&["CLIENT", "SETINFO", "LIB-NAME", "mylib"]), "+OK");
    assert_eq!(a.call(&["CLIENT", "SETINFO", "lib-ver", "1.2.3"]), "+OK");
    let id_a = a.call(&["CLIENT", "ID"]).trim_start_matches(':').to_string();
    let mut b = Client::connect(&proxy);
    assert_eq!(b.call(&["CLIENT", "SETNAME", "beta"]), "+OK");
    assert_eq!(b.call(&["SET", "clients:k", "v"]), "+OK");
    assert_eq!(b.call(&["GET", "clients:k"]), "v");
    let id_b = b.call(&["CLIENT", "ID"]).trim_start_matches(':').to_string();
    assert_eq!(b.call(&["GET", "clients:k"]), "v");

    // CLIENT LIST: one line per slotway client, Redis 7.2's fields in Redis's order.
    let list = a.call(&["CLIENT", "LIST"]);
    assert!(list.ends_with('\n'), "{list:?}");
    let line_a = list.lines().find(|l| l.contains(" name=alpha ")).unwrap_or_else(|| panic!("alpha in {list}"));
    let line_b = list.lines().find(|l| l.contains(" name=beta ")).unwrap_or_else(|| panic!("beta in {list}"));
    let keys: Vec<String> = fields(line_a).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, REDIS_FIELDS, "{line_a}");
    let fa = field_map(line_a);
    assert_eq!(fa["id"], id_a);
    assert_eq!(fa["addr"], a.local_addr(), "addr is the client's own address");
    assert_eq!(fa["laddr"], proxy.addr, "laddr is slotway's listening address");
    assert!(fa["fd"].parse::<i64>().unwrap() > 2, "{line_a}");
    assert_eq!(
        (&*fa["flags"], &*fa["multi"], &*fa["cmd"], &*fa["user"], &*fa["resp"]),
        ("N", "-1", "client|list", "default", "2")
    );
    assert_eq!((&*fa["lib-name"], &*fa["lib-ver"]), ("mylib", "1.2.3"));
    let fb = field_map(line_b);
    assert_eq!((&*fb["id"], &*fb["cmd"], &*fb["addr"]), (&*id_b, "get", &*b.local_addr()));

    // CLIENT INFO: the asking client's line.
    let info = a.call(&["CLIENT", "INFO"]);
    let fi = field_map(info.trim_end());
    assert_eq!((&*fi["id"], &*fi["name"], &*fi["cmd"]), (&*id_a, "alpha", "client|info"));
    assert!(info.ends_with('\n') && info.lines().count() == 1, "{info:?}");

    // LIST ID (in the order asked, unknown ids left out) and TYPE.
    let by_id = a.call(&["CLIENT", "LIST", "ID", &id_b, "999999", &id_a]);
    let ids: Vec<String> = by_id.lines().map(|l| field_map(l)["id"].clone()).collect();
    assert_eq!(ids, [id_b.clone(), id_a.clone()]);
    let normal = a.call(&["CLIENT", "LIST", "TYPE", "normal"]);
    assert!(normal.contains(" name=alpha ") && normal.contains(" name=beta "), "{normal}");
    assert_eq!(a.call(&["CLIENT", "LIST", "TYPE", "pubsub"]), "");
    assert_eq!(a.call(&["CLIENT", "LIST", "TYPE", "master"]), "");
    assert_eq!(a.call(&["CLIENT", "LIST", "TYPE", "bogus"]), "-ERR Unknown client type 'bogus'");
    assert_eq!(a.call(&["CLIENT", "LIST", "ID", "x"]), "-ERR Invalid client ID");
    assert_eq!(a.call(&["CLIENT", "LIST", "NOPE"]), "-ERR syntax error");

    // RESP3: CLIENT INFO is a verbatim string; the line says resp=3.
    let mut c = Client::connect(&proxy);
    assert!(c.call(&["HELLO", "3"]).contains("proto"));
    c.send(&["CLIENT", "INFO"]);
    let mut raw = Vec::new();
    while !raw.ends_with(b"\n\r\n") {
        let mut chunk = [0u8; 4096];
        let n = c.s.read(&mut chunk).unwrap();
        assert!(n > 0);
        raw.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with('=') && text.contains("\r\ntxt:id=") && text.contains(" resp=3 "), "{text}");

    // A client in MULTI shows flag x and its queued commands.
    let mut m = Client::connect(&proxy);
    assert_eq!(m.call(&["MULTI"]), "+OK");
    assert_eq!(m.call(&["SET", "{clients}a", "1"]), "+QUEUED");
    assert_eq!(m.call(&["SET", "{clients}b", "2"]), "+QUEUED");
    let id_m = m.call(&["CLIENT", "ID"]); // refused in MULTI: not queued, not counted
    assert!(id_m.starts_with("-ERR"), "{id_m}");
    let fm = field_map(a.call(&["CLIENT", "LIST"]).lines().find(|l| l.contains(" cmd=client|id ")).unwrap());
    assert_eq!((&*fm["flags"], &*fm["multi"]), ("x", "3"), "commands received since MULTI");

    // A blocked client shows flag b; CLIENT KILL ID frees it at once (long before its timeout).
    let mut blocked = Client::connect(&proxy);
    let id_blocked = blocked.call(&["CLIENT", "ID"]).trim_start_matches(':').to_string();
    blocked.send(&["BLPOP", "clients:queue", "30"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let line = a.call(&["CLIENT", "LIST", "ID", &id_blocked]);
        let f = field_map(line.trim_end());
        if f["flags"] == "b" {
            assert_eq!(f["cmd"], "blpop");
            break;
        }
        assert!(Instant::now() < deadline, "never shown blocked: {line}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    assert_eq!(a.call(&["CLIENT", "KILL", "ID", &id_blocked]), ":1");
    assert_eq!(blocked.closed_within(Duration::from_secs(3)), Some(Vec::new()), "killed without a reply");
    assert!(t.elapsed() < Duration::from_secs(3));
    // The killed client's dedicated node connection went back or was closed: a new BLPOP is served.
    let mut pusher = Client::connect(&proxy);
    let mut waiter = Client::connect(&proxy);
    waiter.send(&["BLPOP", "clients:queue", "5"]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(pusher.call(&["LPUSH", "clients:queue", "x"]), ":1");
    assert_eq!(waiter.read(), "[clients:queue, x]");

    // Old form: CLIENT KILL addr, +OK then the connection is gone; again: No such client.
    let b_addr = b.local_addr();
    assert_eq!(a.call(&["CLIENT", "KILL", &b_addr]), "+OK");
    assert!(b.closed_within(Duration::from_secs(3)).is_some(), "beta closed");
    assert_eq!(a.call(&["CLIENT", "KILL", &b_addr]), "-ERR No such client");
    assert!(!a.call(&["CLIENT", "LIST"]).contains(" name=beta "), "a killed client leaves the list");

    // Filter errors, with Redis's wording.
    for (args, want) in [
        (&["CLIENT", "KILL", "ID", "0"][..], "-ERR client-id should be greater than 0"),
        (&["CLIENT", "KILL", "ID", "abc"], "-ERR client-id should be greater than 0"),
        (&["CLIENT", "KILL", "TYPE", "nope"], "-ERR Unknown client type 'nope'"),
        (&["CLIENT", "KILL", "USER", "nobody"], "-ERR No such user 'nobody'"),
        (&["CLIENT", "KILL", "SKIPME", "maybe"], "-ERR syntax error"),
        (&["CLIENT", "KILL", "ID", "1", "ADDR"], "-ERR syntax error"),
        (&["CLIENT", "KILL", "FOO", "bar"], "-ERR syntax error"),
        (&["CLIENT", "KILL"], "-ERR wrong number of arguments for 'client|kill' command"),
        (&["CLIENT", "KILL", "ADDR", "10.9.9.9:1", "TYPE", "normal"], ":0"),
        (&["CLIENT", "KILL", "TYPE", "master"], ":0"),
    ] {
        assert_eq!(a.call(args), want, "{args:?}");
    }

    // New form: LADDR matches everyone on this listener; SKIPME (default yes) spares the asking client.
    let others = a.call(&["CLIENT", "LIST"]).lines().count() - 1;
    assert!(others >= 4, "c, m, pusher, waiter are connected");
    assert_eq!(a.call(&["CLIENT", "KILL", "LADDR", &proxy.addr, "USER", "default"]), format!(":{others}"));
    for (who, s) in [("c", &mut c), ("m", &mut m), ("pusher", &mut pusher), ("waiter", &mut waiter)] {
        assert!(s.closed_within(Duration::from_secs(3)).is_some(), "{who} closed");
    }
    assert_eq!(a.call(&["PING"]), "+PONG");
    let list = a.call(&["CLIENT", "LIST"]);
    assert_eq!(list.lines().count(), 1, "{list}");

    let stats = a.call(&["INFO", "proxy"]);
    assert!(stats.contains(&format!("clients_killed:{}\r\n", others + 2)), "{stats}");

    // Killing oneself (SKIPME no): the reply comes first, then the connection closes.
    a.send(&["CLIENT", "KILL", "ID", &id_a, "SKIPME", "no"]);
    a.send(&["PING"]);
    assert_eq!(a.closed_within(Duration::from_secs(3)).as_deref(), Some(&b":1\r\n"[..]), "reply, then closed");
}

#[test]
fn client_settings_reply_modes_and_refusals() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    let mut a = Client::connect(&proxy);

    // SETINFO validation, as Redis words it.
    assert_eq!(
        a.call(&["CLIENT", "SETINFO", "LIB-NAME", "a b"]),
        "-ERR LIB-NAME cannot contain spaces, newlines or special characters."
    );
    assert_eq!(a.call(&["CLIENT", "SETINFO", "FOO", "x"]), "-ERR Unrecognized option 'FOO'");
    assert_eq!(
        a.call(&["CLIENT", "SETINFO", "LIB-NAME"]),
        "-ERR wrong number of arguments for 'client|setinfo' command"
    );
    assert_eq!(a.call(&["CLIENT", "NOPE"]), "-ERR unknown subcommand 'NOPE'. Try CLIENT HELP.");

    // NO-EVICT / NO-TOUCH are accepted and shown as flags e and T.
    assert_eq!(a.call(&["CLIENT", "NO-EVICT", "on"]), "+OK");
    assert_eq!(a.call(&["CLIENT", "NO-TOUCH", "ON"]), "+OK");
    assert_eq!(a.call(&["CLIENT", "NO-EVICT", "maybe"]), "-ERR syntax error");
    assert_eq!(field_map(a.call(&["CLIENT", "INFO"]).trim_end())["flags"], "eT");

    // Tracking is never on: OFF is fine, ON is refused clearly, the tracking queries answer accordingly.
    assert_eq!(a.call(&["CLIENT", "TRACKING", "off"]), "+OK");
    let on = a.call(&["CLIENT", "TRACKING", "on", "BCAST"]);
    assert!(on.starts_with("-ERR unsupported command 'client|tracking': client-side caching"), "{on}");
    assert_eq!(a.call(&["CLIENT", "TRACKINGINFO"]), "[flags, [off], redirect, :-1, prefixes, []]");
    assert_eq!(a.call(&["CLIENT", "GETREDIR"]), ":-1");
    assert_eq!(
        a.call(&["CLIENT", "CACHING", "yes"]),
        "-ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled"
    );
    // PAUSE/UNPAUSE/UNBLOCK work on slotway's own clients (tests/standalone_view.rs).
    assert_eq!(a.call(&["CLIENT", "UNBLOCK", "999999"]), ":0", "no such client");
    assert_eq!(a.call(&["CLIENT", "PAUSE", "0"]), "+OK");
    assert_eq!(a.call(&["CLIENT", "UNPAUSE"]), "+OK");

    // CLIENT REPLY OFF: nothing is written (the OFF included) until ON; SKIP drops its own reply and the next.
    let key = "clients:reply";
    a.send(&["CLIENT", "REPLY", "OFF"]);
    a.send(&["SET", key, "1"]);
    a.send(&["GET", "clients:reply:missing"]);
    a.send(&["CLIENT", "REPLY", "SKIP"]); // ignored while OFF
    a.send(&["NOSUCHCOMMAND"]);
    a.send(&["CLIENT", "REPLY", "ON"]);
    a.send(&["GET", key]);
    a.send(&["CLIENT", "REPLY", "SKIP"]);
    a.send(&["INCR", key]);
    a.send(&["GET", key]);
    assert_eq!(a.read(), "+OK", "the ON's reply");
    assert_eq!(a.read(), "1", "the SET ran while replies were off");
    assert_eq!(a.read(), "2", "the INCR's reply was skipped, not the INCR");
    assert_eq!(a.call(&["PING"]), "+PONG", "nothing else came in between");
    assert_eq!(a.call(&["CLIENT", "REPLY", "MAYBE"]), "-ERR syntax error");
    // RESET turns replies back on and clears NO-EVICT / NO-TOUCH.
    a.send(&["CLIENT", "REPLY", "OFF"]);
    assert_eq!(a.call(&["RESET"]), "+RESET");
    assert_eq!(field_map(a.call(&["CLIENT", "INFO"]).trim_end())["flags"], "N");

    // idle counts seconds since the last request; age since the connection.
    let mut idle = Client::connect(&proxy);
    let id = idle.call(&["CLIENT", "ID"]).trim_start_matches(':').to_string();
    std::thread::sleep(Duration::from_millis(2100));
    let f = field_map(a.call(&["CLIENT", "LIST", "ID", &id]).trim_end());
    assert!(f["idle"].parse::<u64>().unwrap() >= 2 && f["age"].parse::<u64>().unwrap() >= 2, "{f:?}");
    assert_eq!(idle.call(&["PING"]), "+PONG");
    let f = field_map(a.call(&["CLIENT", "LIST", "ID", &id]).trim_end());
    assert_eq!((&*f["idle"], &*f["cmd"]), ("0", "ping"));
}

#[test]
fn client_commands_follow_acl_categories() {
    let cluster = Cluster::start(ClusterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotway.toml");
    // `app` may not run @dangerous commands (CLIENT LIST and KILL are @admin @dangerous in Redis); CLIENT INFO
    // and SETINFO are @connection, as in Redis 7.2, also when the nodes are Redis 7.0 (which lack SETINFO).
    std::fs::write(
        &config,
        "[[users]]\nname = \"default\"\nrules = \"on nopass +@all ~*\"\n\n\
         [[users]]\nname = \"app\"\nrules = \"on nopass +@all -@dangerous ~*\"\n",
    )
    .unwrap();
    let proxy = Proxy::start(&cluster, &["--config", config.to_str().unwrap()]);
    let mut admin = Client::connect(&proxy);
    let mut app = Client::connect(&proxy);
    assert_eq!(app.call(&["AUTH", "app", "x"]), "+OK");
    assert_eq!(app.call(&["CLIENT", "LIST"]), "-NOPERM this user has no permissions to run the 'client|list' command");
    assert_eq!(
        app.call(&["CLIENT", "KILL", "USER", "default"]),
        "-NOPERM this user has no permissions to run the 'client|kill' command"
    );
    assert_eq!(app.call(&["CLIENT", "SETINFO", "LIB-NAME", "py"]), "+OK");
    let info = field_map(app.call(&["CLIENT", "INFO"]).trim_end());
    assert_eq!((&*info["user"], &*info["lib-name"]), ("app", "py"));
    // The admin sees both and can kill by user; unknown users are Redis's error.
    let list = admin.call(&["CLIENT", "LIST"]);
    assert!(list.contains(" user=app ") && list.contains(" user=default "), "{list}");
    assert_eq!(admin.call(&["CLIENT", "KILL", "USER", "ghost"]), "-ERR No such user 'ghost'");
    assert_eq!(admin.call(&["CLIENT", "KILL", "USER", "app"]), ":1");
    assert!(app.closed_within(Duration::from_secs(3)).is_some());
}
