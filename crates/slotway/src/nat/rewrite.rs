//! Rewriting every node address a reply carries to the address slotway announces for that node. Pure functions.
//!
//! A node is recognised by its cluster id when the reply gives one, else by `host:port` (its endpoint, IP or
//! hostname). Its announced address is `announce_host:<the node's listener port>`.
//!
//! # Addresses slotway doesn't know
//! Every function counts the node addresses it could not map (`unknown`). The session then asks for a topology
//! refresh, waits for it (bounded) and rewrites the original reply again. What is still unknown after that is
//! never passed on:
//! - entries of a list are dropped: a CLUSTER SLOTS range whose primary is unknown (its replicas are dropped
//!   alone), a node of a CLUSTER SHARDS shard, a CLUSTER NODES / REPLICAS line, a replica of ROLE, a `slaveN`
//!   line of INFO, the `master_host`/`master_port` lines of INFO;
//! - a single address that *is* the reply becomes an error: `-MOVED`/`-ASK` to an unknown node becomes
//!   `-TRYAGAIN` (cluster clients retry it, by which time slotway knows the node), and the ROLE of a replica
//!   whose primary is unknown becomes `-ERR`.
use bytes::{Bytes, BytesMut};
use resp::encode::Protocol;
use resp::{Limits, Value};

/// What slotway knows about the cluster's nodes.
pub trait Directory {
    /// The listener port of the node with this id (when given), or else at `host:port` (an IP or a hostname).
    fn port_of(&self, id: Option<&str>, host: &str, port: u16) -> Option<u16>;
}

/// Everything a rewrite needs besides the reply.
pub struct Ctx<'a> {
    pub dir: &'a dyn Directory,
    /// The host every node is announced at.
    pub announce_host: &'a str,
    /// The client connected over TLS: CLUSTER SHARDS reports the announced port as `tls-port`, else as `port`.
    pub client_tls: bool,
    /// Host of the node this connection goes to: a redirect or endpoint with an empty host means this one.
    pub node_host: &'a str,
}

impl Ctx<'_> {
    fn lookup(&self, id: Option<&str>, host: &str, port: u16) -> Option<u16> {
        let host = if host.is_empty() || host == "?" { self.node_host } else { host };
        self.dir.port_of(id.filter(|i| !i.is_empty()), host, port)
    }
}

/// A reply that needs more than the MOVED/ASK check, chosen by the request that asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ClusterSlots,
    ClusterShards,
    ClusterNodes,
    /// CLUSTER REPLICAS / CLUSTER SLAVES: CLUSTER NODES lines as an array.
    ClusterReplicas,
    Role,
    Info,
    /// CLIENT LIST / CLIENT INFO: `laddr=` is the node's own address.
    ClientList,
}

/// The kind of reply a request gets, from its command name and first argument (case-insensitive).
pub fn kind_of(name: &[u8], sub: Option<&[u8]>) -> Option<Kind> {
    match name.len() {
        4 if name.eq_ignore_ascii_case(b"ROLE") => Some(Kind::Role),
        4 if name.eq_ignore_ascii_case(b"INFO") => Some(Kind::Info),
        6 if name.eq_ignore_ascii_case(b"CLIENT") => {
            let sub = sub?;
            (sub.eq_ignore_ascii_case(b"LIST") || sub.eq_ignore_ascii_case(b"INFO")).then_some(Kind::ClientList)
        }
        7 if name.eq_ignore_ascii_case(b"CLUSTER") => {
            let sub = sub?;
            if sub.eq_ignore_ascii_case(b"SLOTS") {
                Some(Kind::ClusterSlots)
            } else if sub.eq_ignore_ascii_case(b"SHARDS") {
                Some(Kind::ClusterShards)
            } else if sub.eq_ignore_ascii_case(b"NODES") {
                Some(Kind::ClusterNodes)
            } else if sub.eq_ignore_ascii_case(b"REPLICAS") || sub.eq_ignore_ascii_case(b"SLAVES") {
                Some(Kind::ClusterReplicas)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A rewritten reply and how many node addresses in it were unknown (dropped or replaced, see the module docs).
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub frame: Bytes,
    pub unknown: usize,
}

/// Whether a whole error frame is a redirect (`-MOVED ` / `-ASK `): the cheap check done on every error reply.
pub fn is_redirect(frame: &[u8]) -> bool {
    frame.starts_with(b"-MOVED ") || frame.starts_with(b"-ASK ")
}

/// `-MOVED <slot> <host>:<port>\r\n` / `-ASK …` → the same with the announced address. `None` if `frame` is
/// not a well-formed redirect (it is then passed on as is: it names no address).
pub fn redirect(frame: &[u8], ctx: &Ctx) -> Option<Outcome> {
    let text = std::str::from_utf8(frame.strip_prefix(b"-")?).ok()?.trim_end_matches(['\r', '\n']);
    let text = redirect_text(text, ctx)?;
    let mut out = BytesMut::with_capacity(text.0.len() + 3);
    resp::encode::error(&mut out, &text.0);
    Some(Outcome { frame: out.freeze(), unknown: text.1 })
}

/// The text of a redirect error (without `-`), rewritten; `(text, unknown)`.
fn redirect_text(text: &str, ctx: &Ctx) -> Option<(String, usize)> {
    let mut parts = text.splitn(3, ' ');
    let (code, slot, addr) = (parts.next()?, parts.next()?, parts.next()?);
    if code != "MOVED" && code != "ASK" {
        return None;
    }
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok()?;
    Some(match ctx.lookup(None, host, port) {
        Some(p) => (format!("{code} {slot} {}:{p}", ctx.announce_host), 0),
        None => (format!("TRYAGAIN slotway: the {code} target for slot {slot} is not known yet, retry"), 1),
    })
}

/// Rewrites a whole reply of `kind` (`frame` as the node sent it, in `proto`). Errors (a MOVED included) are
/// handled as redirects; other shapes the kind doesn't expect are passed on unchanged.
pub fn reply(kind: Kind, frame: &Bytes, proto: Protocol, ctx: &Ctx) -> Outcome {
    if frame.first() == Some(&b'-') {
        return redirect(frame, ctx).unwrap_or(Outcome { frame: frame.clone(), unknown: 0 });
    }
    let Ok(Some((mut v, _))) = Value::parse(frame, &Limits::default()) else {
        return Outcome { frame: frame.clone(), unknown: 0 };
    };
    let unknown = value(kind, &mut v, ctx);
    Outcome { frame: v.to_bytes(proto), unknown }
}

/// An EXEC reply: element `i` is the reply of the `i`-th queued command, rewritten by `kinds[i]`; errors anywhere
/// (a MOVED inside) are rewritten too.
pub fn exec_reply(kinds: &[Option<Kind>], frame: &Bytes, proto: Protocol, ctx: &Ctx) -> Outcome {
    if frame.first() == Some(&b'-') {
        return redirect(frame, ctx).unwrap_or(Outcome { frame: frame.clone(), unknown: 0 });
    }
    let Ok(Some((mut v, _))) = Value::parse(frame, &Limits::default()) else {
        return Outcome { frame: frame.clone(), unknown: 0 };
    };
    let mut unknown = 0;
    if let Value::Array(items) = &mut v {
        for (i, item) in items.iter_mut().enumerate() {
            match item {
                Value::Error(e) => {
                    if let Some((t, u)) = std::str::from_utf8(e).ok().and_then(|t| redirect_text(t, ctx)) {
                        *e = Bytes::from(t);
                        unknown += u;
                    }
                }
                _ => {
                    if let Some(Some(kind)) = kinds.get(i) {
                        unknown += value(*kind, item, ctx);
                    }
                }
            }
        }
    }
    Outcome { frame: v.to_bytes(proto), unknown }
}

/// Rewrites a decoded reply of `kind` in place; returns the number of unknown addresses.
pub fn value(kind: Kind, v: &mut Value, ctx: &Ctx) -> usize {
    match kind {
        Kind::ClusterSlots => cluster_slots(v, ctx),
        Kind::ClusterShards => cluster_shards(v, ctx),
        Kind::ClusterNodes => text_in_place(v, |t| cluster_nodes_text(t, ctx)),
        Kind::ClusterReplicas => match v {
            Value::Array(lines) | Value::Set(lines) => {
                let mut unknown = 0;
                lines.retain_mut(|line| {
                    let u = text_in_place(line, |t| cluster_nodes_text(t, ctx));
                    unknown += u;
                    u == 0
                });
                unknown
            }
            _ => 0,
        },
        Kind::Role => role(v, ctx),
        Kind::Info => text_in_place(v, |t| info_text(t, ctx)),
        Kind::ClientList => text_in_place(v, |t| client_list_text(t, ctx)),
    }
}

/// Applies a text rewrite to a bulk, simple or verbatim string.
fn text_in_place(v: &mut Value, f: impl FnOnce(&str) -> (String, usize)) -> usize {
    let (Value::Bulk(b) | Value::Simple(b) | Value::Verbatim { text: b, .. }) = v else { return 0 };
    let Ok(text) = std::str::from_utf8(b) else { return 0 };
    let (new, unknown) = f(text);
    *b = Bytes::from(new);
    unknown
}

fn str_of(v: &Value) -> Option<&str> {
    v.as_str()
}

/// A string value of the same type as `like` (bulk for bulk, simple for simple).
fn string_like(like: &Value, s: &str) -> Value {
    match like {
        Value::Simple(_) => Value::simple(s),
        _ => Value::bulk(Bytes::copy_from_slice(s.as_bytes())),
    }
}

/// CLUSTER SLOTS: `[[start, end, [host, port, id, {meta}], replica...], ...]`.
pub fn cluster_slots(v: &mut Value, ctx: &Ctx) -> usize {
    let Value::Array(ranges) = v else { return 0 };
    let mut unknown = 0;
    ranges.retain_mut(|range| {
        let Value::Array(items) = range else { return true };
        if items.len() < 3 {
            return true;
        }
        let mut nodes = items.split_off(2);
        let mut keep = true;
        for (i, node) in nodes.iter_mut().enumerate() {
            if !slots_node(node, ctx) {
                unknown += 1;
                if i == 0 {
                    keep = false;
                }
                *node = Value::Nil; // marker: dropped below
            }
        }
        nodes.retain(|n| *n != Value::Nil);
        items.extend(nodes);
        keep
    });
    unknown
}

/// One node of a CLUSTER SLOTS range; false if it is unknown.
fn slots_node(node: &mut Value, ctx: &Ctx) -> bool {
    let Value::Array(f) = node else { return true };
    if f.len() < 2 {
        return true;
    }
    let host = match &f[0] {
        Value::Nil | Value::NilArray => String::new(),
        h => str_of(h).unwrap_or("").to_string(),
    };
    let Some(port) = f[1].as_int().and_then(|p| u16::try_from(p).ok()) else { return true };
    let id = f.get(2).and_then(str_of).map(str::to_string);
    let Some(announced) = ctx.lookup(id.as_deref(), &host, port) else { return false };
    f[0] = string_like(&f[0], ctx.announce_host);
    f[1] = Value::Integer(announced as i64);
    if let Some(meta) = f.get_mut(3) {
        rewrite_meta(meta, ctx);
    }
    true
}

/// Networking metadata (`ip`, `hostname`) of a CLUSTER SLOTS node, RESP3 map or RESP2 flat array.
fn rewrite_meta(meta: &mut Value, ctx: &Ctx) {
    let is_addr_key = |k: &Value| matches!(str_of(k), Some("ip" | "hostname"));
    match meta {
        Value::Map(pairs) => {
            for (k, v) in pairs.iter_mut() {
                if is_addr_key(k) {
                    *v = string_like(v, ctx.announce_host);
                }
            }
        }
        Value::Array(flat) if flat.len() % 2 == 0 => {
            for kv in flat.chunks_exact_mut(2) {
                if is_addr_key(&kv[0]) {
                    kv[1] = string_like(&kv[1], ctx.announce_host);
                }
            }
        }
        _ => {}
    }
}

/// CLUSTER SHARDS: each shard's `nodes` get the announced `ip`/`endpoint`/`hostname` and the listener port as
/// `tls-port` (TLS client) or `port` (plain client); the other port field is removed. Unknown nodes are dropped.
pub fn cluster_shards(v: &mut Value, ctx: &Ctx) -> usize {
    let (Value::Array(shards) | Value::Set(shards)) = v else { return 0 };
    let mut unknown = 0;
    for shard in shards {
        for_each_pair(shard, |k, nodes| {
            if str_of(k) != Some("nodes") {
                return;
            }
            let (Value::Array(list) | Value::Set(list)) = nodes else { return };
            list.retain_mut(|node| {
                let ok = shard_node(node, ctx);
                unknown += usize::from(!ok);
                ok
            });
        });
    }
    unknown
}

fn for_each_pair(v: &mut Value, mut f: impl FnMut(&Value, &mut Value)) {
    match v {
        Value::Map(pairs) => pairs.iter_mut().for_each(|(k, v)| f(k, v)),
        Value::Array(flat) if flat.len() % 2 == 0 => flat.chunks_exact_mut(2).for_each(|kv| {
            let (k, v) = kv.split_at_mut(1);
            f(&k[0], &mut v[0])
        }),
        _ => {}
    }
}

/// One node of a CLUSTER SHARDS shard; false if it is unknown.
fn shard_node(node: &mut Value, ctx: &Ctx) -> bool {
    // Read what identifies the node.
    let (mut id, mut endpoint, mut ip, mut port, mut tls_port) = (None, None, None, None, None);
    let mut read = |k: &Value, v: &Value| match str_of(k) {
        Some("id") => id = str_of(v).map(str::to_string),
        Some("endpoint") => endpoint = str_of(v).map(str::to_string),
        Some("ip") => ip = str_of(v).map(str::to_string),
        Some("port") => port = v.as_int().and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0),
        Some("tls-port") => tls_port = v.as_int().and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0),
        _ => {}
    };
    let is_map = matches!(node, Value::Map(_));
    let mut pairs: Vec<(Value, Value)> = match std::mem::replace(node, Value::Nil) {
        Value::Map(p) => p,
        Value::Array(flat) if flat.len() % 2 == 0 => {
            let mut it = flat.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        other => {
            *node = other;
            return true;
        }
    };
    pairs.iter().for_each(|(k, v)| read(k, v));
    let host = endpoint.as_deref().filter(|e| !e.is_empty() && *e != "?").or(ip.as_deref()).unwrap_or("");
    let announced = match (tls_port, port) {
        (Some(p), _) | (None, Some(p)) => ctx.lookup(id.as_deref(), host, p),
        (None, None) => id.as_deref().and_then(|id| ctx.lookup(Some(id), host, 0)),
    };
    let Some(announced) = announced else { return false };
    let (keep_port, drop_port) = if ctx.client_tls { ("tls-port", "port") } else { ("port", "tls-port") };
    pairs.retain(|(k, _)| str_of(k) != Some(drop_port));
    let mut have_port = false;
    for (k, v) in pairs.iter_mut() {
        match str_of(k) {
            Some("ip" | "endpoint") => *v = string_like(v, ctx.announce_host),
            Some("hostname") if v.as_bytes().is_some_and(|b| !b.is_empty()) => *v = string_like(v, ctx.announce_host),
            Some(p) if p == keep_port => {
                *v = Value::Integer(announced as i64);
                have_port = true;
            }
            _ => {}
        }
    }
    if !have_port {
        // Insert the port field where the other one was: right after `id`, as Redis orders them.
        let at = pairs.iter().position(|(k, _)| str_of(k) == Some("id")).map_or(0, |i| i + 1);
        pairs.insert(at, (Value::bulk(Bytes::from_static(keep_port.as_bytes())), Value::Integer(announced as i64)));
    }
    *node =
        if is_map { Value::Map(pairs) } else { Value::Array(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()) };
    true
}

/// CLUSTER NODES text (and each CLUSTER REPLICAS line): `<id> <ip>:<port>@<cport>[,<hostname>] <flags> …`.
/// The address becomes `<announce>:<listener port>@0` (`,<announce>` when the node had a hostname); lines of
/// unknown nodes are dropped. Nodes without an address (`:0@0`, flagged `noaddr`) are left as they are.
pub fn cluster_nodes_text(text: &str, ctx: &Ctx) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut unknown = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        if body.is_empty() {
            out.push_str(line);
            continue;
        }
        match nodes_line(body, ctx) {
            Some(Some(new)) => {
                out.push_str(&new);
                out.push_str(&line[body.len()..]);
            }
            Some(None) => unknown += 1,
            None => out.push_str(line),
        }
    }
    (out, unknown)
}

/// `Some(Some(line))` rewritten, `Some(None)` unknown node, `None` not a node line (kept as is).
fn nodes_line(line: &str, ctx: &Ctx) -> Option<Option<String>> {
    let mut fields = line.splitn(3, ' ');
    let (id, addr, rest) = (fields.next()?, fields.next()?, fields.next().unwrap_or(""));
    let (hostport, hostname) = match addr.split_once(',') {
        Some((hp, h)) => (hp, Some(h)),
        None => (addr, None),
    };
    let hostport = hostport.split('@').next()?;
    let (host, port) = hostport.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if port == 0 {
        return Some(Some(line.to_string()));
    }
    let host = if host.is_empty() { hostname.filter(|h| !h.is_empty()).unwrap_or("") } else { host };
    let Some(announced) = ctx.lookup(Some(id), host, port) else { return Some(None) };
    let a = ctx.announce_host;
    let hostname = match hostname {
        Some(h) if !h.is_empty() => format!(",{a}"),
        Some(_) => ",".to_string(),
        None => String::new(),
    };
    let sep = if rest.is_empty() { "" } else { " " };
    Some(Some(format!("{id} {a}:{announced}@0{hostname}{sep}{rest}")))
}

/// ROLE: a primary's replicas `[ip, port, offset]` and a replica's primary `ip, port`.
pub fn role(v: &mut Value, ctx: &Ctx) -> usize {
    let Value::Array(items) = v else { return 0 };
    match items.first().and_then(str_of) {
        Some("master") => {
            let Some(Value::Array(replicas)) = items.get_mut(2) else { return 0 };
            let mut unknown = 0;
            replicas.retain_mut(|r| {
                let Value::Array(f) = r else { return true };
                if f.len() < 2 {
                    return true;
                }
                let host = str_of(&f[0]).unwrap_or("").to_string();
                let Some(port) = f[1].as_int().and_then(|p| u16::try_from(p).ok()) else { return true };
                match ctx.lookup(None, &host, port) {
                    Some(p) => {
                        f[0] = string_like(&f[0], ctx.announce_host);
                        f[1] = match &f[1] {
                            Value::Integer(_) => Value::Integer(p as i64),
                            like => string_like(like, &p.to_string()),
                        };
                        true
                    }
                    None => {
                        unknown += 1;
                        false
                    }
                }
            });
            unknown
        }
        Some("slave" | "replica") if items.len() >= 3 => {
            let host = str_of(&items[1]).unwrap_or("").to_string();
            let Some(port) = items[2].as_int().and_then(|p| u16::try_from(p).ok()) else { return 0 };
            if port == 0 && host.is_empty() {
                return 0;
            }
            match ctx.lookup(None, &host, port) {
                Some(p) => {
                    items[1] = string_like(&items[1], ctx.announce_host);
                    items[2] = match &items[2] {
                        Value::Integer(_) => Value::Integer(p as i64),
                        like => string_like(like, &p.to_string()),
                    };
                    0
                }
                None => {
                    *v = Value::error("ERR slotway: this replica's primary is not known to slotway yet, retry");
                    1
                }
            }
        }
        _ => 0,
    }
}

/// INFO text: `master_host`/`master_port` and `slaveN:ip=…,port=…,…`.
pub fn info_text(text: &str, ctx: &Ctx) -> (String, usize) {
    if !text.contains("master_host:") && !text.contains("slave0:") {
        return (text.to_string(), 0);
    }
    let field =
        |name: &str| text.split('\n').find_map(|l| l.strip_prefix(name).map(|v| v.trim_end_matches('\r').to_string()));
    // The primary of a replica: both lines or neither.
    let master = match (field("master_host:"), field("master_port:").and_then(|p| p.parse::<u16>().ok())) {
        (Some(h), Some(p)) => Some(ctx.lookup(None, &h, p)),
        _ => None,
    };
    let mut unknown = usize::from(matches!(master, Some(None)));
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let eol = &line[body.len()..];
        if body.starts_with("master_host:") {
            if let Some(Some(_)) = master {
                out.push_str("master_host:");
                out.push_str(ctx.announce_host);
                out.push_str(eol);
            }
        } else if body.starts_with("master_port:") {
            if let Some(Some(p)) = master {
                out.push_str(&format!("master_port:{p}{eol}"));
            }
        } else if let Some((name, fields)) = body.split_once(':').filter(|(n, _)| is_slave_line(n)) {
            match slave_fields(fields, ctx) {
                Some(Some(new)) => {
                    out.push_str(name);
                    out.push(':');
                    out.push_str(&new);
                    out.push_str(eol);
                }
                Some(None) => unknown += 1,
                None => out.push_str(line),
            }
        } else {
            out.push_str(line);
        }
    }
    (out, unknown)
}

/// CLIENT LIST / CLIENT INFO text: each line's `laddr=<ip>:<port>` (the node's own address) becomes the announced
/// address; an unknown one becomes `laddr=?:0`.
pub fn client_list_text(text: &str, ctx: &Ctx) -> (String, usize) {
    let mut unknown = 0;
    let mut out = String::with_capacity(text.len());
    for (i, field) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        // A field may end a line (`… laddr=…\n`): only whole `laddr=` fields are addresses.
        let Some(addr) = field.strip_prefix("laddr=").or_else(|| field.split_once("\nladdr=").map(|(_, a)| a)) else {
            out.push_str(field);
            continue;
        };
        let prefix = &field[..field.len() - addr.len()];
        let (hostport, tail) = addr.split_at(addr.find(['\r', '\n']).unwrap_or(addr.len()));
        let known = hostport
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .and_then(|(h, p)| ctx.lookup(None, h.trim_start_matches('[').trim_end_matches(']'), p));
        out.push_str(prefix);
        match known {
            Some(p) => out.push_str(&format!("{}:{p}", ctx.announce_host)),
            None => {
                unknown += 1;
                out.push_str("?:0");
            }
        }
        out.push_str(tail);
    }
    (out, unknown)
}

fn is_slave_line(name: &str) -> bool {
    name.strip_prefix("slave").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `ip=…,port=…,state=…` with the announced address; `Some(None)` if the replica is unknown, None if the line
/// has no address.
fn slave_fields(fields: &str, ctx: &Ctx) -> Option<Option<String>> {
    let get = |k: &str| fields.split(',').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='));
    let (ip, port) = (get("ip")?, get("port")?.parse::<u16>().ok()?);
    let Some(announced) = ctx.lookup(None, ip, port) else { return Some(None) };
    let parts: Vec<String> = fields
        .split(',')
        .map(|kv| match kv.split_once('=') {
            Some(("ip", _)) => format!("ip={}", ctx.announce_host),
            Some(("port", _)) => format!("port={announced}"),
            _ => kv.to_string(),
        })
        .collect();
    Some(Some(parts.join(",")))
}

#[cfg(test)]
mod tests;
