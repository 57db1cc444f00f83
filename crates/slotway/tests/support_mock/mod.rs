//! Scripted mock cluster nodes for what a real `redis-server` can't be made to do: stall, send garbage, close in
//! the middle of a reply, or report a stale view of the cluster.
//!
//! Each [`MockNode`] is a plain-TCP listener on a free port, served by std threads (one per connection), speaking
//! just enough RESP2/RESP3 for slotway: AUTH, HELLO, PING, READONLY, COMMAND (refused, so slotway uses its built-in
//! table), CLUSTER SHARDS/SLOTS/NODES from the node's own [`MockView`], and GET/SET/DEL on an in-memory map. What
//! it does with requests is switched at run time with [`MockNode::set_mode`].
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a mock node treats requests.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Answers everything.
    Normal = 0,
    /// Reads every request and never answers anything again (a hung node), also on new connections.
    Stall = 1,
    /// Answers data commands (GET, SET, ...) with bytes that are not RESP; handshake and CLUSTER commands as usual.
    Garbage = 2,
    /// Sends the first half of a data command's reply, then closes the connection.
    CloseMidReply = 3,
}

/// One shard of a node's view of the cluster.
#[derive(Clone, Debug)]
pub struct MockShard {
    pub primary: u16,
    pub replicas: Vec<u16>,
    pub slots: Vec<(u16, u16)>,
    /// Config epoch of the primary (CLUSTER NODES).
    pub epoch: u64,
}

/// What a node says the cluster looks like.
pub type MockView = Vec<MockShard>;

/// The id mock node `port` has in every view: 40 hex digits.
pub fn mock_id(port: u16) -> String {
    format!("{port:040x}")
}

struct State {
    port: u16,
    mode: AtomicU8,
    view: Mutex<MockView>,
    data: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    /// Answer CLUSTER SHARDS/SLOTS/NODES with an error (a node that can't tell its view).
    topology_refused: AtomicBool,
    /// Delay before answering CLUSTER SHARDS (ms), to decide who answers a refresh first.
    topology_delay_ms: AtomicU64,
    connections: AtomicU64,
    pings: AtomicU64,
    data_commands: AtomicU64,
    stop: AtomicBool,
}

pub struct MockNode {
    pub port: u16,
    state: Arc<State>,
}

impl MockNode {
    /// Starts a node on a free port with an empty view (set one with [`MockNode::set_view`]).
    pub fn start() -> MockNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock node");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            port,
            mode: AtomicU8::new(Mode::Normal as u8),
            view: Mutex::new(Vec::new()),
            data: Mutex::new(HashMap::new()),
            topology_refused: AtomicBool::new(false),
            topology_delay_ms: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            data_commands: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(conn) = conn {
                    st.connections.fetch_add(1, Ordering::Relaxed);
                    let st = st.clone();
                    std::thread::spawn(move || serve(conn, st));
                }
            }
        });
        MockNode { port, state }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    pub fn set_view(&self, view: MockView) {
        *self.state.view.lock().unwrap() = view;
    }
    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::Relaxed);
    }
    pub fn refuse_topology(&self, refuse: bool) {
        self.state.topology_refused.store(refuse, Ordering::Relaxed);
    }
    pub fn delay_topology(&self, delay: Duration) {
        self.state.topology_delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }
    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }
    /// PINGs received so far (connection set-up and health checks).
    pub fn pings(&self) -> u64 {
        self.state.pings.load(Ordering::Relaxed)
    }
    /// GET/SET/DEL/... received so far.
    pub fn data_commands(&self) -> u64 {
        self.state.data_commands.load(Ordering::Relaxed)
    }
    /// The value this node holds for `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.state.data.lock().unwrap().get(key.as_bytes()).map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

impl Drop for MockNode {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A two-node cluster where both nodes agree: `a` serves slots 0-8191 (epoch 1), `b` 8192-16383 (epoch 2).
pub fn two_node_cluster() -> (MockNode, MockNode) {
    let (a, b) = (MockNode::start(), MockNode::start());
    let view = vec![
        MockShard { primary: a.port, replicas: vec![], slots: vec![(0, 8191)], epoch: 1 },
        MockShard { primary: b.port, replicas: vec![], slots: vec![(8192, 16383)], epoch: 2 },
    ];
    a.set_view(view.clone());
    b.set_view(view);
    (a, b)
}

// ------------------------------------------------------------------ serving one connection

fn serve(mut conn: TcpStream, st: Arc<State>) {
    let _ = conn.set_nodelay(true);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut resp3 = false;
    loop {
        if st.stop.load(Ordering::Relaxed) {
            return;
        }
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        while let Some((args, used)) = parse_command(&buf) {
            buf.drain(..used);
            if st.mode.load(Ordering::Relaxed) == Mode::Stall as u8 {
                continue;
            }
            match answer(&st, &args, &mut resp3) {
                Answer::Reply(bytes) => {
                    if conn.write_all(&bytes).is_err() {
                        return;
                    }
                }
                Answer::HalfThenClose(bytes) => {
                    let _ = conn.write_all(&bytes[..bytes.len() / 2]);
                    let _ = conn.flush();
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
    }
}

enum Answer {
    Reply(Vec<u8>),
    HalfThenClose(Vec<u8>),
}

/// One RESP array of bulk strings at the start of `buf`: the arguments and the bytes used.
fn parse_command(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    if buf.first() != Some(&b'*') {
        return None;
    }
    let (n, mut at) = line(buf, 1)?;
    let n: usize = std::str::from_utf8(n).ok()?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        if buf.get(at) != Some(&b'$') {
            return None;
        }
        let (len, next) = line(buf, at + 1)?;
        let len: usize = std::str::from_utf8(len).ok()?.parse().ok()?;
        if buf.len() < next + len + 2 {
            return None;
        }
        args.push(buf[next..next + len].to_vec());
        at = next + len + 2;
    }
    Some((args, at))
}

fn bulk(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

fn answer(st: &State, args: &[Vec<u8>], resp3: &mut bool) -> Answer {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    let arg = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).to_ascii_uppercase()).unwrap_or_default();
    let mut out = Vec::new();
    match name.as_str() {
        "PING" => {
            st.pings.fetch_add(1, Ordering::Relaxed);
            out.extend_from_slice(b"+PONG\r\n");
        }
        "AUTH" | "READONLY" | "ASKING" => out.extend_from_slice(b"+OK\r\n"),
        "HELLO" => {
            *resp3 = arg(1) == "3";
            out.extend_from_slice(if *resp3 { b"%1\r\n+server\r\n+mock\r\n" } else { b"*2\r\n+server\r\n+mock\r\n" });
        }
        "COMMAND" => out.extend_from_slice(b"-ERR unknown command 'COMMAND' (mock node)\r\n"),
        "CLUSTER" if st.topology_refused.load(Ordering::Relaxed) => {
            out.extend_from_slice(b"-ERR this mock node refuses to tell its view\r\n")
        }
        "CLUSTER" => {
            let view = st.view.lock().unwrap().clone();
            match arg(1).as_str() {
                "SHARDS" => {
                    let delay = st.topology_delay_ms.load(Ordering::Relaxed);
                    if delay > 0 {
                        std::thread::sleep(Duration::from_millis(delay));
                    }
                    cluster_shards(&mut out, &view)
                }
                "NODES" => cluster_nodes(&mut out, &view, st.port),
                _ => out.extend_from_slice(b"-ERR unknown subcommand (mock node)\r\n"),
            }
        }
        "GET" | "SET" | "DEL" | "EXISTS" => {
            st.data_commands.fetch_add(1, Ordering::Relaxed);
            let mode = st.mode.load(Ordering::Relaxed);
            if mode == Mode::Garbage as u8 {
                return Answer::Reply(b"@this is not RESP\r\n".to_vec());
            }
            let mut data = st.data.lock().unwrap();
            match (name.as_str(), args.len()) {
                ("GET", 2) => match data.get(&args[1]) {
                    Some(v) => bulk(&mut out, &v.clone()),
                    None => out.extend_from_slice(b"$-1\r\n"),
                },
                ("SET", 3) => {
                    data.insert(args[1].clone(), args[2].clone());
                    out.extend_from_slice(b"+OK\r\n");
                }
                ("DEL" | "EXISTS", n) if n >= 2 => {
                    let mut count = 0;
                    for k in &args[1..] {
                        let hit = if name == "DEL" { data.remove(k).is_some() } else { data.contains_key(k) };
                        count += i64::from(hit);
                    }
                    out.extend_from_slice(format!(":{count}\r\n").as_bytes());
                }
                _ => {
                    out.extend_from_slice(format!("-ERR wrong number of arguments for '{name}' command\r\n").as_bytes())
                }
            }
            if mode == Mode::CloseMidReply as u8 {
                // Long enough that half of it is never a whole reply.
                let mut long = Vec::new();
                bulk(&mut long, &[b'x'; 64]);
                return Answer::HalfThenClose(long);
            }
        }
        _ => {
            out.extend_from_slice(format!("-ERR unknown command '{}' (mock node)\r\n", name.to_lowercase()).as_bytes())
        }
    }
    Answer::Reply(out)
}

fn node_fields(out: &mut Vec<u8>, port: u16, role: &str) {
    out.extend_from_slice(b"*14\r\n");
    for (k, v) in [("id", mock_id(port)), ("port", String::new()), ("ip", "127.0.0.1".into())] {
        bulk(out, k.as_bytes());
        if k == "port" {
            out.extend_from_slice(format!(":{port}\r\n").as_bytes());
        } else {
            bulk(out, v.as_bytes());
        }
    }
    for (k, v) in [("endpoint", "127.0.0.1"), ("role", role)] {
        bulk(out, k.as_bytes());
        bulk(out, v.as_bytes());
    }
    bulk(out, b"replication-offset");
    out.extend_from_slice(b":100\r\n");
    bulk(out, b"health");
    bulk(out, b"online");
}

fn cluster_shards(out: &mut Vec<u8>, view: &MockView) {
    out.extend_from_slice(format!("*{}\r\n", view.len()).as_bytes());
    for shard in view {
        out.extend_from_slice(b"*4\r\n");
        bulk(out, b"slots");
        out.extend_from_slice(format!("*{}\r\n", shard.slots.len() * 2).as_bytes());
        for (a, b) in &shard.slots {
            out.extend_from_slice(format!(":{a}\r\n:{b}\r\n").as_bytes());
        }
        bulk(out, b"nodes");
        out.extend_from_slice(format!("*{}\r\n", 1 + shard.replicas.len()).as_bytes());
        node_fields(out, shard.primary, "master");
        for &r in &shard.replicas {
            node_fields(out, r, "replica");
        }
    }
}

fn cluster_nodes(out: &mut Vec<u8>, view: &MockView, me: u16) {
    let mut text = String::new();
    for shard in view {
        let slots: Vec<String> = shard.slots.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        let myself = if shard.primary == me { "myself," } else { "" };
        text.push_str(&format!(
            "{} 127.0.0.1:{}@{} {myself}master - 0 0 {} connected {}\n",
            mock_id(shard.primary),
            shard.primary,
            shard.primary as u32 + 10000,
            shard.epoch,
            slots.join(" ")
        ));
        for &r in &shard.replicas {
            let myself = if r == me { "myself," } else { "" };
            text.push_str(&format!(
                "{} 127.0.0.1:{}@{} {myself}slave {} 0 0 {} connected\n",
                mock_id(r),
                r,
                r as u32 + 10000,
                mock_id(shard.primary),
                shard.epoch
            ));
        }
    }
    bulk(out, text.as_bytes());
}
