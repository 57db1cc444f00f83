//! Commands slotway answers itself: connection-level commands whose answer is about the proxy, not the data.
use super::session::error_reply;
use super::Shared;
use crate::command::{Args, LocalCommand};
use bytes::{Bytes, BytesMut};
use resp::encode::{self, Protocol};
use std::net::SocketAddr;

/// What slotway knows about one client connection.
#[derive(Debug)]
pub struct ClientState {
    /// Unique per process, like Redis's CLIENT ID.
    pub id: u64,
    pub addr: SocketAddr,
    pub name: Option<Bytes>,
    pub protocol: Protocol,
    /// The user this client is authenticated as (None: not authenticated; only matters when users are configured).
    pub user: Option<std::sync::Arc<crate::auth::User>>,
}

pub struct Outcome {
    pub reply: Bytes,
    /// Close the connection once this reply (and those before it) are written.
    pub close: bool,
}

fn reply(b: BytesMut) -> Outcome {
    Outcome { reply: b.freeze(), close: false }
}

fn ok() -> Outcome {
    let mut b = BytesMut::new();
    encode::simple(&mut b, "OK");
    reply(b)
}

fn err(msg: &str) -> Outcome {
    Outcome { reply: error_reply(msg), close: false }
}

fn arity(name: &str) -> Outcome {
    err(&format!("ERR wrong number of arguments for '{name}' command"))
}

pub fn execute(cmd: LocalCommand, args: Args<'_>, client: &mut ClientState, shared: &Shared) -> Outcome {
    let mut b = BytesMut::new();
    match cmd {
        LocalCommand::Ping => match args.len() {
            1 => {
                encode::simple(&mut b, "PONG");
                reply(b)
            }
            2 => {
                encode::bulk(&mut b, args.get(1));
                reply(b)
            }
            _ => arity("ping"),
        },
        LocalCommand::Echo => {
            if args.len() != 2 {
                return arity("echo");
            }
            encode::bulk(&mut b, args.get(1));
            reply(b)
        }
        LocalCommand::Quit => {
            encode::simple(&mut b, "OK");
            Outcome { reply: b.freeze(), close: true }
        }
        LocalCommand::Select => {
            if args.len() != 2 {
                return arity("select");
            }
            match std::str::from_utf8(args.get(1)).ok().and_then(|s| s.parse::<i64>().ok()) {
                None => err("ERR value is not an integer or out of range"),
                Some(0) => ok(),
                // A cluster has only database 0; Redis Cluster itself answers the same.
                Some(_) => err("ERR SELECT is not allowed in cluster mode"),
            }
        }
        LocalCommand::ReadOnly | LocalCommand::ReadWrite => ok(),
        LocalCommand::Reset => {
            // As in Redis, RESET also logs the client out (back to the default user, if it needs no password).
            client.user = shared.users.as_ref().and_then(|u| u.initial());
            client.name = None;
            client.protocol = Protocol::Resp2;
            encode::simple(&mut b, "RESET");
            reply(b)
        }
        LocalCommand::Auth if shared.users.is_some() => match args.len() {
            2 => authenticate(None, args.get(1), client, shared).map_or_else(|e| e, |()| ok()),
            3 => authenticate(Some(args.get(1)), args.get(2), client, shared).map_or_else(|e| e, |()| ok()),
            _ => err("ERR syntax error"),
        },
        LocalCommand::Auth => {
            // No users configured: behave like a Redis whose default user has no password.
            if args.len() == 2 {
                err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
            } else if args.len() == 3 {
                if args.get(1).eq_ignore_ascii_case(b"default") {
                    ok()
                } else {
                    err("WRONGPASS invalid username-password pair or user is disabled.")
                }
            } else {
                err("ERR syntax error")
            }
        }
        LocalCommand::Hello => hello(args, client, shared),
        LocalCommand::Info => info(args, shared),
        LocalCommand::Client => client_command(args, client),
    }
}

/// HELLO [protover [AUTH user pass] [SETNAME name]]: switches the client to RESP2 or RESP3 and describes the
/// server, as Redis does. RESP3 clients get RESP3 replies: slotway forwards their requests over node connections
/// that speak RESP3 too.
fn hello(args: Args<'_>, client: &mut ClientState, shared: &Shared) -> Outcome {
    let mut protocol = client.protocol;
    let mut i = 1;
    if args.len() > 1 {
        match std::str::from_utf8(args.get(1)).ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(2) => protocol = Protocol::Resp2,
            Some(3) => protocol = Protocol::Resp3,
            Some(_) => return err("NOPROTO unsupported protocol version"),
            None => return err("ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    let mut name = None;
    while i < args.len() {
        let opt = args.get(i);
        if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < args.len() {
            if shared.users.is_some() {
                if let Err(e) = authenticate(Some(args.get(i + 1)), args.get(i + 2), client, shared) {
                    return e;
                }
            } else if !args.get(i + 1).eq_ignore_ascii_case(b"default") {
                // No users configured: like a Redis whose default user has no password.
                return err("WRONGPASS invalid username-password pair or user is disabled.");
            }
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < args.len() {
            name = Some(Bytes::copy_from_slice(args.get(i + 1)));
            i += 2;
        } else {
            return err(&format!("ERR Syntax error in HELLO option '{}'", crate::dispatch::printable(opt, 64)));
        }
    }
    if let Some(name) = name {
        if let Some(e) = invalid_name(&name) {
            return e;
        }
        client.name = Some(name);
    }
    client.protocol = protocol;
    let mut b = BytesMut::new();
    encode::map_header(&mut b, 7, protocol);
    for (k, v) in [("server", "redis"), ("version", "7.0.0")] {
        encode::bulk(&mut b, k.as_bytes());
        encode::bulk(&mut b, v.as_bytes());
    }
    encode::bulk(&mut b, b"proto");
    encode::integer(&mut b, if protocol == Protocol::Resp3 { 3 } else { 2 });
    encode::bulk(&mut b, b"id");
    encode::integer(&mut b, client.id as i64);
    // slotway presents the whole cluster as one standalone server.
    encode::bulk(&mut b, b"mode");
    encode::bulk(&mut b, b"standalone");
    encode::bulk(&mut b, b"role");
    encode::bulk(&mut b, b"master");
    encode::bulk(&mut b, b"modules");
    encode::array_header(&mut b, 0);
    reply(b)
}

/// AUTH against slotway's users: on success the client is that user; failures are counted, logged without the
/// password, and rate-limited per source address.
fn authenticate(
    user: Option<&[u8]>,
    password: &[u8],
    client: &mut ClientState,
    shared: &Shared,
) -> Result<(), Outcome> {
    let users = shared.users.as_ref().expect("only called with users configured");
    let shown = user.map(|u| crate::dispatch::printable(u, 64)).unwrap_or_else(|| "default".to_string());
    match users.authenticate(user, password, client.addr.ip()) {
        crate::auth::AuthResult::Ok(u) => {
            client.user = Some(u);
            Ok(())
        }
        crate::auth::AuthResult::Denied => {
            crate::metrics::Metrics::incr(&shared.metrics.auth_failures);
            tracing::warn!(client = %client.addr, user = %shown, "AUTH failed");
            Err(err("WRONGPASS invalid username-password pair or user is disabled."))
        }
        crate::auth::AuthResult::RateLimited => {
            crate::metrics::Metrics::incr(&shared.metrics.auth_rate_limited);
            tracing::warn!(client = %client.addr, user = %shown, "AUTH refused: too many failures from this address");
            Err(err("ERR too many failed authentication attempts from this address; try again later"))
        }
    }
}

/// Redis refuses client names with spaces, newlines or other special characters.
fn invalid_name(name: &[u8]) -> Option<Outcome> {
    name.iter()
        .any(|&c| c <= b' ' || c > b'~')
        .then(|| err("ERR Client names cannot contain spaces, newlines or special characters."))
}

/// INFO proxy: slotway's own section (INFO asking for node sections is a fan-out, see `dispatch::fanout`).
fn info(_args: Args<'_>, shared: &Shared) -> Outcome {
    let mut b = BytesMut::new();
    encode::bulk(&mut b, proxy_section(shared).as_bytes());
    reply(b)
}

/// The `# Proxy` section of INFO: slotway's version, uptime, topology and counters.
pub fn proxy_section(shared: &Shared) -> String {
    let topo = shared.topology.load();
    let mut text = String::new();
    text.push_str("# Proxy\r\n");
    text.push_str(&format!("slotway_version:{}\r\n", env!("CARGO_PKG_VERSION")));
    text.push_str(&format!("uptime_in_seconds:{}\r\n", shared.started.elapsed().as_secs()));
    text.push_str(&format!("topology_version:{}\r\n", topo.version));
    text.push_str(&format!("cluster_shards:{}\r\n", topo.map.shards.len()));
    text.push_str(&format!("unassigned_slots:{}\r\n", topo.map.unassigned_slots()));
    text.push_str(&format!("scripts_cached:{}\r\n", shared.scripts.len()));
    shared.metrics.render_info(&mut text);
    text
}

fn client_command(args: Args<'_>, client: &mut ClientState) -> Outcome {
    if args.len() < 2 {
        return arity("client");
    }
    let sub = args.get(1).to_ascii_lowercase();
    let mut b = BytesMut::new();
    match sub.as_slice() {
        b"id" if args.len() == 2 => {
            encode::integer(&mut b, client.id as i64);
            reply(b)
        }
        b"getname" if args.len() == 2 => {
            match &client.name {
                Some(n) => encode::bulk(&mut b, n),
                None => encode::nil(&mut b, client.protocol),
            }
            reply(b)
        }
        b"setname" if args.len() == 3 => {
            let name = args.get(2);
            if let Some(e) = invalid_name(name) {
                return e;
            }
            client.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
            ok()
        }
        b"setinfo" if args.len() == 4 => ok(),
        b"id" | b"getname" | b"setname" | b"setinfo" => arity(&format!("client|{}", String::from_utf8_lossy(&sub))),
        _ => err(&format!(
            "ERR unsupported command 'client|{}': not supported through slotway yet",
            crate::dispatch::printable(&sub, 64)
        )),
    }
}
