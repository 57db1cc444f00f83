//! slotway's own clients, as CLIENT LIST, CLIENT INFO and CLIENT KILL see them: a registry shared by every worker
//! thread.
//!
//! Each session registers a [`ClientHandle`] when its connection is accepted and is removed when it ends (or is
//! killed). The registry's lock is taken on connect, on disconnect and by the CLIENT commands that list or kill
//! clients, never per request. What changes per request lives in relaxed atomics that only the client's own
//! session writes: the last command (its index in the command table) and the time of its last read. What changes
//! rarely (name, user, protocol, library) is copied into a small mutex by the commands that change it.
//!
//! Killing a client signals its inbox (see [`Inbox::kill`]); the session closes the connection at once, dropping
//! whatever it had not written yet, as Redis does. Shutdown signals every client's inbox the same way.
use crate::auth::User;
use crate::command::CommandTable;
use crate::upstream::Inbox;
use bytes::Bytes;
use resp::encode::Protocol;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Every live client connection of the standalone endpoint, by id (so listed in connection order, as Redis does).
#[derive(Debug, Default)]
pub struct Clients {
    by_id: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
}

/// One client as other clients see it.
#[derive(Debug)]
pub struct ClientHandle {
    pub id: u64,
    pub addr: SocketAddr,
    /// The local address the client connected to (which listener).
    pub laddr: Option<SocketAddr>,
    /// The socket's file descriptor (-1 where there is none to show).
    pub fd: i64,
    created: Instant,
    /// Milliseconds after `created` of the client's last read with data (for `idle`).
    last_active_ms: AtomicU64,
    /// [`crate::command::CommandInfo::index`] + 1 of the last command run; 0 = none yet.
    last_command: AtomicU32,
    /// [`SessionState`] packed: see [`SessionState::pack`].
    state: AtomicU64,
    /// Channel, pattern and shard channel subscriptions (set by the pub/sub code; TYPE pubsub and flag `P`).
    sub: AtomicU32,
    psub: AtomicU32,
    ssub: AtomicU32,
    /// None while everything in it has its default (most clients never set a name): an idle client's entry stays
    /// small.
    meta: Mutex<Option<Box<Meta>>>,
    /// The session's inbox: node replies, and the kill and shutdown signals.
    inbox: Arc<Inbox>,
    /// `SLOTWAY TRACE` is on for this client (the session looks once per wake-up).
    trace: AtomicBool,
    /// The node connection a blocking command of this client runs on, for CLIENT UNBLOCK (set and cleared by the
    /// session around each blocking command: not on the ordinary path).
    blocked_on: Mutex<Option<BlockedOn>>,
}

/// Where a client's blocking command waits: the node, and the node's id for the connection.
#[derive(Debug, Clone)]
pub struct BlockedOn {
    pub pool: Arc<crate::upstream::NodePool>,
    /// The node's CLIENT ID of the connection (0 while unknown).
    pub node_client_id: Arc<AtomicU64>,
    /// The command is written to the node (and not answered yet).
    pub sent: Arc<std::sync::atomic::AtomicBool>,
}

/// What the client set about itself; changed only by CLIENT SETNAME/SETINFO/NO-EVICT/NO-TOUCH, HELLO, AUTH, RESET.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub name: Option<Bytes>,
    pub user: Option<Arc<User>>,
    pub protocol: Protocol,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    pub no_evict: bool,
    pub no_touch: bool,
}

impl Meta {
    fn is_default(&self) -> bool {
        let Meta { name, user, protocol, lib_name, lib_ver, no_evict, no_touch } = self;
        name.is_none()
            && user.is_none()
            && *protocol == Protocol::default()
            && lib_name.is_none()
            && lib_ver.is_none()
            && !no_evict
            && !no_touch
    }
}

/// The connection state CLIENT LIST shows in `flags` and `multi`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionState {
    /// In MULTI, with this many commands received since.
    pub multi: Option<u32>,
    /// A blocking command is in flight.
    pub blocked: bool,
    /// The database the client selected (`db=`).
    pub db: u16,
}

impl SessionState {
    /// Bits 0: blocked, 1: in MULTI, 2..34: the MULTI count, 40..56: the database.
    fn pack(self) -> u64 {
        let db = u64::from(self.db) << 40;
        db | match self.multi {
            Some(n) => (u64::from(n) << 2) | 2 | u64::from(self.blocked),
            None => u64::from(self.blocked),
        }
    }

    fn unpack(v: u64) -> SessionState {
        SessionState {
            multi: (v & 2 != 0).then_some(((v >> 2) & u64::from(u32::MAX)) as u32),
            blocked: v & 1 != 0,
            db: (v >> 40) as u16,
        }
    }
}

/// Redis's client types (CLIENT LIST TYPE, CLIENT KILL TYPE). slotway has no replica or master clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientType {
    Normal,
    Replica,
    Master,
    PubSub,
}

impl ClientType {
    /// Redis's names (`slave` is the old name of `replica`); None for anything else.
    pub fn parse(name: &[u8]) -> Option<ClientType> {
        match name.to_ascii_lowercase().as_slice() {
            b"normal" => Some(ClientType::Normal),
            b"replica" | b"slave" => Some(ClientType::Replica),
            b"master" => Some(ClientType::Master),
            b"pubsub" => Some(ClientType::PubSub),
            _ => None,
        }
    }
}

/// Which clients CLIENT KILL closes; every filter given must match.
#[derive(Debug, Clone, Default)]
pub struct KillFilter {
    pub id: Option<u64>,
    pub addr: Option<Vec<u8>>,
    pub laddr: Option<Vec<u8>>,
    /// A user name (CLIENT KILL USER); clients not authenticated count as `default`, as in Redis.
    pub user: Option<String>,
    pub kind: Option<ClientType>,
    /// Spare the client that asked (SKIPME yes, the default of the filter form).
    pub skip_me: bool,
}

/// Removes the client from the registry when its session ends (dropped with the session's task).
pub struct Registered {
    clients: Arc<Clients>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.clients.by_id.lock().expect("clients lock").remove(&self.id);
    }
}

impl Clients {
    /// Adds a client; the guard removes it when dropped.
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        addr: SocketAddr,
        laddr: Option<SocketAddr>,
        fd: i64,
    ) -> (Arc<ClientHandle>, Registered) {
        let handle = Arc::new(ClientHandle {
            id,
            addr,
            laddr,
            fd,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            last_command: AtomicU32::new(0),
            state: AtomicU64::new(0),
            sub: AtomicU32::new(0),
            psub: AtomicU32::new(0),
            ssub: AtomicU32::new(0),
            meta: Mutex::new(None),
            inbox: Arc::default(),
            blocked_on: Mutex::new(None),
            trace: AtomicBool::new(false),
        });
        self.by_id.lock().expect("clients lock").insert(id, handle.clone());
        (handle, Registered { clients: self.clone(), id })
    }

    /// Shutdown: every client still connected reads nothing more, finishes what is pending and closes.
    pub fn shut_down(&self) {
        for c in self.by_id.lock().expect("clients lock").values() {
            c.inbox.stop();
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.lock().expect("clients lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// INFO clients: (connected, in a blocking command, subscribed).
    pub fn counts(&self) -> (usize, usize, usize) {
        let all = self.by_id.lock().expect("clients lock");
        // Blocked once the command has reached its node (before that the node would not count it either).
        let blocked = all
            .values()
            .filter(|c| c.state().blocked && c.blocked_on().is_none_or(|b| b.sent.load(Ordering::Acquire)))
            .count();
        let pubsub = all.values().filter(|c| c.client_type() == ClientType::PubSub).count();
        (all.len(), blocked, pubsub)
    }

    /// The clients of one type (all when None), in connection order.
    pub fn list(&self, kind: Option<ClientType>) -> Vec<Arc<ClientHandle>> {
        let all = self.by_id.lock().expect("clients lock");
        all.values().filter(|c| kind.is_none_or(|k| c.client_type() == k)).cloned().collect()
    }

    /// The client with this id, if it is connected.
    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.by_id.lock().expect("clients lock").get(&id).cloned()
    }

    /// The clients with these ids, in the order asked (unknown ids left out, repeated ones repeated, as in Redis).
    pub fn by_ids(&self, ids: &[u64]) -> Vec<Arc<ClientHandle>> {
        let all = self.by_id.lock().expect("clients lock");
        ids.iter().filter_map(|id| all.get(id).cloned()).collect()
    }

    /// Closes every client the filter matches; `me` is the asking client. Returns how many matched and whether
    /// `me` was among them (its session then closes after writing the reply, as Redis does). Killed clients leave
    /// the list at once, so a second KILL doesn't count them again.
    pub fn kill(&self, filter: &KillFilter, me: u64) -> (usize, bool) {
        let victims: Vec<Arc<ClientHandle>> = {
            let mut all = self.by_id.lock().expect("clients lock");
            let ids: Vec<u64> = all.values().filter(|c| filter.matches(c, me)).map(|c| c.id).collect();
            ids.iter().filter_map(|id| all.remove(id)).collect()
        };
        let mut killed_me = false;
        for c in &victims {
            if c.id == me {
                killed_me = true;
            } else {
                c.inbox.kill();
            }
        }
        (victims.len(), killed_me)
    }
}

impl KillFilter {
    fn matches(&self, c: &ClientHandle, me: u64) -> bool {
        if self.skip_me && c.id == me {
            return false;
        }
        if self.id.is_some_and(|id| id != c.id) {
            return false;
        }
        if self.addr.as_ref().is_some_and(|a| a.as_slice() != c.addr.to_string().as_bytes()) {
            return false;
        }
        if self.laddr.as_ref().is_some_and(|a| a.as_slice() != laddr_text(c.laddr).as_bytes()) {
            return false;
        }
        if self.kind.is_some_and(|k| k != c.client_type()) {
            return false;
        }
        if let Some(user) = &self.user {
            if *user != c.user_name() {
                return false;
            }
        }
        true
    }
}

fn laddr_text(laddr: Option<SocketAddr>) -> String {
    laddr.map(|a| a.to_string()).unwrap_or_default()
}

impl ClientHandle {
    /// The client read a request: resets `idle`. Called once per read, not per command.
    pub fn touch(&self) {
        let ms = self.created.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// The command the client ran last (its [`crate::command::CommandInfo::index`]).
    pub fn note_command(&self, index: u32) {
        self.last_command.store(index.wrapping_add(1), Ordering::Relaxed);
    }

    /// Publishes the session's MULTI/blocked state; a load and compare when nothing changed.
    pub fn set_state(&self, state: SessionState) {
        let v = state.pack();
        if self.state.load(Ordering::Relaxed) != v {
            self.state.store(v, Ordering::Relaxed);
        }
    }

    /// For the pub/sub code: the client's current subscription counts (channels, patterns, shard channels). A
    /// client with any is of type `pubsub` and shows flag `P`.
    /// Records where the client's blocking command runs (None once it is answered).
    pub fn set_blocked_on(&self, on: Option<BlockedOn>) {
        *self.blocked_on.lock().expect("blocked_on lock") = on;
    }

    /// Where the client's blocking command runs, if one is in flight.
    pub fn blocked_on(&self) -> Option<BlockedOn> {
        self.blocked_on.lock().expect("blocked_on lock").clone()
    }

    /// Loads and compares when nothing changed (the session publishes them on every wake-up).
    pub fn set_subscriptions(&self, sub: u32, psub: u32, ssub: u32) {
        for (cell, v) in [(&self.sub, sub), (&self.psub, psub), (&self.ssub, ssub)] {
            if cell.load(Ordering::Relaxed) != v {
                cell.store(v, Ordering::Relaxed);
            }
        }
    }

    fn state(&self) -> SessionState {
        SessionState::unpack(self.state.load(Ordering::Relaxed))
    }

    /// Turns per-request logging on or off for this client (`SLOTWAY TRACE`).
    pub fn set_trace(&self, on: bool) {
        self.trace.store(on, Ordering::Relaxed);
    }

    pub fn traced(&self) -> bool {
        self.trace.load(Ordering::Relaxed)
    }

    /// The name the client gave itself (CLIENT SETNAME, HELLO SETNAME).
    pub fn name(&self) -> Option<Bytes> {
        self.meta.lock().expect("client meta lock").as_ref().and_then(|m| m.name.clone())
    }

    /// Replaces what CLIENT LIST shows of the client's own settings.
    pub fn set_meta(&self, meta: Meta) {
        *self.meta.lock().expect("client meta lock") = (!meta.is_default()).then(|| Box::new(meta));
    }

    /// Where node replies for this client's session go, and how it is told to close.
    pub fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    fn subscriptions(&self) -> (u32, u32, u32) {
        (self.sub.load(Ordering::Relaxed), self.psub.load(Ordering::Relaxed), self.ssub.load(Ordering::Relaxed))
    }

    pub fn client_type(&self) -> ClientType {
        let (s, p, ss) = self.subscriptions();
        if s + p + ss > 0 {
            ClientType::PubSub
        } else {
            ClientType::Normal
        }
    }

    fn user_name(&self) -> String {
        let meta = self.meta.lock().expect("client meta lock");
        meta.as_ref().and_then(|m| m.user.as_ref()).map_or_else(|| "default".to_string(), |u| u.name.clone())
    }

    /// The client's line in CLIENT LIST / CLIENT INFO, in Redis 7.2's format (without the trailing newline).
    /// Fields about Redis's own buffers, which slotway doesn't keep per client, are 0.
    pub fn info_line(&self, table: &CommandTable, out: &mut String) {
        let meta = self.meta.lock().expect("client meta lock").as_deref().cloned().unwrap_or_default();
        let state = SessionState::unpack(self.state.load(Ordering::Relaxed));
        let (sub, psub, ssub) = self.subscriptions();
        let age_ms = self.created.elapsed().as_millis() as u64;
        let idle_ms = age_ms.saturating_sub(self.last_active_ms.load(Ordering::Relaxed));
        let mut flags = String::new();
        if sub + psub + ssub > 0 {
            flags.push('P');
        }
        if state.multi.is_some() {
            flags.push('x');
        }
        if state.blocked {
            flags.push('b');
        }
        if meta.no_evict {
            flags.push('e');
        }
        if meta.no_touch {
            flags.push('T');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let cmd = match self.last_command.load(Ordering::Relaxed) {
            0 => "NULL",
            i => table.by_index(i - 1).map_or("NULL", |c| c.name.as_str()),
        };
        let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        let user = meta.user.as_ref().map_or("default", |u| u.name.as_str());
        let resp = if meta.protocol == Protocol::Resp3 { 3 } else { 2 };
        let db = state.db;
        let _ = write!(
            out,
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={flags} db={db} sub={sub} psub={psub} \
             ssub={ssub} multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 \
             tot-mem=0 events=r cmd={cmd} user={user} redir=-1 resp={resp} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            laddr_text(self.laddr),
            self.fd,
            text(&meta.name),
            age_ms / 1000,
            idle_ms / 1000,
            state.multi.map_or(-1, i64::from),
            text(&meta.lib_name),
            text(&meta.lib_ver),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn registry() -> Arc<Clients> {
        Arc::new(Clients::default())
    }

    #[test]
    fn info_line_has_redis_fields_in_order() {
        let clients = registry();
        let table = CommandTable::builtin();
        let (c, _g) = clients.register(7, addr("10.0.0.1:5000"), Some(addr("127.0.0.1:6380")), 12);
        c.note_command(table.lookup(b"client|list").unwrap().index);
        c.set_meta(Meta {
            name: Some(Bytes::from_static(b"worker")),
            protocol: Protocol::Resp3,
            lib_name: Some(Bytes::from_static(b"redis-py")),
            lib_ver: Some(Bytes::from_static(b"5.0")),
            no_evict: true,
            ..Meta::default()
        });
        c.set_state(SessionState { multi: Some(3), blocked: false, db: 0 });
        let mut line = String::new();
        c.info_line(&table, &mut line);
        assert_eq!(
            line,
            "id=7 addr=10.0.0.1:5000 laddr=127.0.0.1:6380 fd=12 name=worker age=0 idle=0 flags=xe db=0 sub=0 psub=0 \
             ssub=0 multi=3 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 \
             events=r cmd=client|list user=default redir=-1 resp=3 lib-name=redis-py lib-ver=5.0"
        );
        // A fresh client: no command yet, flags N, outside MULTI.
        let (d, _g2) = clients.register(8, addr("[::1]:5001"), None, -1);
        line.clear();
        d.info_line(&table, &mut line);
        assert!(line.starts_with("id=8 addr=[::1]:5001 laddr= fd=-1 name= "), "{line}");
        assert!(line.contains(" flags=N ") && line.contains(" multi=-1 ") && line.contains(" cmd=NULL "), "{line}");
        d.set_state(SessionState { multi: None, blocked: true, db: 5 });
        d.set_subscriptions(1, 0, 0);
        line.clear();
        d.info_line(&table, &mut line);
        assert!(line.contains(" flags=Pb ") && line.contains(" sub=1 ") && line.contains(" db=5 "), "{line}");
        assert_eq!(d.client_type(), ClientType::PubSub);
    }

    #[test]
    fn list_and_kill_filters() {
        let clients = registry();
        let (a, _ga) = clients.register(1, addr("10.0.0.1:1"), Some(addr("127.0.0.1:6380")), 5);
        let (b, _gb) = clients.register(2, addr("10.0.0.2:2"), Some(addr("127.0.0.1:6381")), 6);
        let (c, gc) = clients.register(3, addr("10.0.0.3:3"), Some(addr("127.0.0.1:6380")), 7);
        c.set_subscriptions(0, 1, 0);
        assert_eq!(clients.list(None).iter().map(|c| c.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(clients.list(Some(ClientType::PubSub)).iter().map(|c| c.id).collect::<Vec<_>>(), [3]);
        assert!(clients.list(Some(ClientType::Master)).is_empty());
        assert_eq!(clients.by_ids(&[3, 9, 1, 3]).iter().map(|c| c.id).collect::<Vec<_>>(), [3, 1, 3]);

        // SKIPME yes spares the asking client even when it matches.
        let by_laddr = KillFilter { laddr: Some(b"127.0.0.1:6380".to_vec()), skip_me: true, ..Default::default() };
        assert_eq!(clients.kill(&by_laddr, 1), (1, false));
        assert!(c.inbox().take_signals().kill, "client 3 was told to close");
        assert_eq!(clients.len(), 2, "a killed client leaves the list at once");
        drop(gc); // its session ends later: removing it again is harmless
                  // Killing oneself is reported, not signalled (the session closes after its reply).
        let me = KillFilter { id: Some(1), ..Default::default() };
        assert_eq!(clients.kill(&me, 1), (1, true));
        assert!(!a.inbox().take_signals().kill);
        let nobody =
            KillFilter { addr: Some(b"10.0.0.2:3".to_vec()), user: Some("default".into()), ..Default::default() };
        assert_eq!(clients.kill(&nobody, 1), (0, false));
        let by_user = KillFilter { user: Some("default".into()), ..Default::default() };
        assert_eq!(clients.kill(&by_user, 1), (1, false));
        assert!(b.inbox().take_signals().kill);
        assert!(clients.is_empty());
    }

    #[test]
    fn shut_down_signals_every_client_once() {
        let clients = registry();
        let (a, _ga) = clients.register(1, addr("10.0.0.1:1"), None, 5);
        let (b, _gb) = clients.register(2, addr("10.0.0.2:2"), None, 6);
        clients.shut_down();
        for c in [&a, &b] {
            let signals = c.inbox().take_signals();
            assert!(signals.stop && !signals.kill);
            assert_eq!(c.inbox().take_signals(), Default::default(), "taken once");
        }
    }

    #[test]
    fn meta_with_only_defaults_is_not_kept() {
        let clients = registry();
        let (c, _g) = clients.register(1, addr("10.0.0.1:1"), None, 5);
        c.set_meta(Meta { name: Some(Bytes::from_static(b"app")), ..Meta::default() });
        assert_eq!(c.name().as_deref(), Some(&b"app"[..]));
        c.set_meta(Meta::default());
        assert!(c.meta.lock().unwrap().is_none());
        assert_eq!(c.name(), None);
    }
}
