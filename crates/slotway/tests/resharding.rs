//! Resharding under load: clients write and read through slotway while a slot range moves between primaries.
//!
//! Phase 1 moves a range of slots from primary A to primary B slot by slot with the low-level protocol
//! (SETSLOT IMPORTING/MIGRATING, GETKEYSINSLOT + MIGRATE in small batches with pauses, SETSLOT NODE), so clients
//! hit keys mid-migration and slotway has to follow ASK, MOVED and TRYAGAIN. Phase 2 moves the range back with
//! `redis-cli --cluster reshard`. In both phases the clients must see no error and no wrong value.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use support::*;

/// Slots moved (the last `RANGE_LEN` slots of A's first range, so `redis-cli --cluster reshard --cluster-from B`
/// takes exactly them back: it takes a source's lowest slots first, and B's own slots come right after A's).
const RANGE_LEN: u16 = 128;
/// Preloaded keys per moved slot (2,048 keys in all).
const KEYS_PER_SLOT: usize = 16;
/// Concurrent clients.
const CLIENTS: usize = 8;
/// Keys per MIGRATE batch in phase 1, and the pause between batches.
const MIGRATE_BATCH: usize = 8;
const MIGRATE_PAUSE: Duration = Duration::from_millis(12);
/// Hard limits of one load phase (the load normally stops when the migration is done).
const PHASE_MAX: Duration = Duration::from_secs(35);
const MAX_OPS_PER_CLIENT: u64 = 1_000_000;
/// Errors kept verbatim (all are counted).
const KEEP_ERRORS: usize = 25;
/// No slot is marked hot.
const NO_SLOT: u32 = u32::MAX;

// ------------------------------------------------------------------ keys

/// The moving slots and, for each, a hash tag that maps to it.
struct Layout {
    slots: Vec<u16>,
    tags: Vec<String>,
}

impl Layout {
    fn new(first: u16, len: u16) -> Layout {
        let slots: Vec<u16> = (first..first + len).collect();
        let mut tags: Vec<Option<String>> = vec![None; slots.len()];
        let mut missing = slots.len();
        let mut n = 0u64;
        while missing > 0 {
            let tag = format!("rs{n}");
            let s = key_slot(tag.as_bytes());
            if s >= first && s < first + len && tags[(s - first) as usize].is_none() {
                tags[(s - first) as usize] = Some(tag);
                missing -= 1;
            }
            n += 1;
            assert!(n < 10_000_000, "no hash tag found for some slot");
        }
        let tags: Vec<String> = tags.into_iter().map(|t| t.unwrap()).collect();
        let layout = Layout { slots, tags };
        for (i, &s) in layout.slots.iter().enumerate() {
            assert_eq!(key_slot(layout.preload_key(i, 0).as_bytes()), s);
        }
        layout
    }
    fn preload_key(&self, idx: usize, j: usize) -> String {
        format!("{{{}}}:p{j}", self.tags[idx])
    }
    /// The key a client writes (SET then GET) in slot `idx`.
    fn write_key(&self, idx: usize, client: usize) -> String {
        format!("{{{}}}:w{client}", self.tags[idx])
    }
    /// The two keys a client MSETs/MGETs together.
    fn multi_keys(&self, idx: usize, client: usize) -> (String, String) {
        (format!("{{{}}}:m{client}a", self.tags[idx]), format!("{{{}}}:m{client}b", self.tags[idx]))
    }
    /// Source and destination of a client's RENAME.
    fn rename_keys(&self, idx: usize, client: usize) -> (String, String) {
        (format!("{{{}}}:r{client}src", self.tags[idx]), format!("{{{}}}:r{client}dst", self.tags[idx]))
    }
}

fn preload_value(key: &str) -> String {
    format!("preloaded:{key}:{}", "x".repeat(40))
}

// ------------------------------------------------------------------ load

/// State shared by the load tasks and the test body.
struct Load {
    layout: Arc<Layout>,
    stop: AtomicBool,
    /// Index (in the layout) of the slot being migrated now, or NO_SLOT: clients aim half their operations at it.
    hot: AtomicU32,
    ops: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
    started: Instant,
}

impl Load {
    fn new(layout: Arc<Layout>) -> Arc<Load> {
        Arc::new(Load {
            layout,
            stop: AtomicBool::new(false),
            hot: AtomicU32::new(NO_SLOT),
            ops: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_errors: Mutex::new(Vec::new()),
            started: Instant::now(),
        })
    }

    fn error(&self, client: usize, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut v = self.first_errors.lock().unwrap();
        if v.len() < KEEP_ERRORS {
            v.push(format!("[t+{:.3}s client {client}] {what}", self.started.elapsed().as_secs_f64()));
        }
    }
}

/// What one client last wrote and expects to read back at the end (None: unknown after an error).
#[derive(Default)]
struct Expected {
    values: HashMap<String, Option<String>>,
    /// Keys that must not exist (renamed away).
    absent: HashMap<String, bool>,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

async fn q<T: redis::FromRedisValue>(con: &mut MultiplexedConnection, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    cmd.query_async(con).await
}

/// One client: loops over operations on the moving slots until told to stop (or a limit is reached).
async fn client_loop(
    load: Arc<Load>,
    client: usize,
    mut con: MultiplexedConnection,
    mut expected: Expected,
    phase: u32,
) -> Expected {
    let layout = load.layout.clone();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((client as u64 + 1) * 7919) ^ ((phase as u64) << 40));
    let deadline = Instant::now() + PHASE_MAX;
    let mut n: u64 = 0;
    while !load.stop.load(Ordering::Relaxed) && n < MAX_OPS_PER_CLIENT && Instant::now() < deadline {
        n += 1;
        load.ops.fetch_add(1, Ordering::Relaxed);
        let hot = load.hot.load(Ordering::Relaxed);
        let idx = if hot != NO_SLOT && rng.below(2) == 0 { hot as usize } else { rng.below(layout.slots.len()) };
        let version = format!("c{client}:p{phase}:n{n}");
        match n % 6 {
            // SET then GET: the value just written comes back.
            0 | 1 => {
                let key = layout.write_key(idx, client);
                match q::<()>(&mut con, redis::cmd("SET").arg(&key).arg(&version)).await {
                    Ok(()) => {
                        expected.values.insert(key.clone(), Some(version.clone()));
                        match q::<Option<String>>(&mut con, redis::cmd("GET").arg(&key)).await {
                            Ok(Some(v)) if v == version => {}
                            Ok(other) => load.error(client, format!("GET {key} after SET {version}: got {other:?}")),
                            Err(e) => load.error(client, format!("GET {key} after SET: {e}")),
                        }
                    }
                    Err(e) => {
                        expected.values.insert(key.clone(), None);
                        load.error(client, format!("SET {key}: {e}"));
                    }
                }
            }
            // SET + GET pipelined: ordering holds even when the two are redirected.
            2 => {
                let key = layout.write_key(idx, client);
                let mut pipe = redis::pipe();
                pipe.cmd("SET").arg(&key).arg(&version).ignore().cmd("GET").arg(&key);
                match pipe.query_async::<(Option<String>,)>(&mut con).await {
                    Ok((Some(v),)) if v == version => {
                        expected.values.insert(key, Some(version));
                    }
                    Ok(other) => {
                        expected.values.insert(key.clone(), Some(version.clone()));
                        load.error(client, format!("pipelined SET {key} {version}; GET: got {other:?}"));
                    }
                    Err(e) => {
                        expected.values.insert(key.clone(), None);
                        load.error(client, format!("pipelined SET/GET {key}: {e}"));
                    }
                }
            }
            // Preloaded keys: one GET and one same-slot MGET.
            3 => {
                let j = rng.below(KEYS_PER_SLOT);
                let key = layout.preload_key(idx, j);
                match q::<Option<String>>(&mut con, redis::cmd("GET").arg(&key)).await {
                    Ok(Some(v)) if v == preload_value(&key) => {}
                    Ok(other) => load.error(client, format!("GET preloaded {key}: got {other:?}")),
                    Err(e) => load.error(client, format!("GET preloaded {key}: {e}")),
                }
                let k2 = layout.preload_key(idx, (j + 1 + rng.below(KEYS_PER_SLOT - 1)) % KEYS_PER_SLOT);
                match q::<Vec<Option<String>>>(&mut con, redis::cmd("MGET").arg(&key).arg(&k2)).await {
                    Ok(v) if v == vec![Some(preload_value(&key)), Some(preload_value(&k2))] => {}
                    Ok(other) => load.error(client, format!("MGET preloaded {key} {k2}: got {other:?}")),
                    Err(e) => load.error(client, format!("MGET preloaded {key} {k2}: {e}")),
                }
            }
            // Same-slot MSET + MGET (TRYAGAIN while the two keys are split between the nodes).
            4 => {
                let (a, b) = layout.multi_keys(idx, client);
                let (va, vb) = (format!("{version}:a"), format!("{version}:b"));
                match q::<()>(&mut con, redis::cmd("MSET").arg(&a).arg(&va).arg(&b).arg(&vb)).await {
                    Ok(()) => {
                        expected.values.insert(a.clone(), Some(va.clone()));
                        expected.values.insert(b.clone(), Some(vb.clone()));
                        match q::<Vec<Option<String>>>(&mut con, redis::cmd("MGET").arg(&a).arg(&b)).await {
                            Ok(v) if v == vec![Some(va.clone()), Some(vb.clone())] => {}
                            Ok(other) => {
                                load.error(client, format!("MGET {a} {b} after MSET {version}: got {other:?}"))
                            }
                            Err(e) => load.error(client, format!("MGET {a} {b} after MSET: {e}")),
                        }
                    }
                    Err(e) => {
                        expected.values.insert(a.clone(), None);
                        expected.values.insert(b.clone(), None);
                        load.error(client, format!("MSET {a} {b}: {e}"));
                    }
                }
            }
            // SET src, RENAME src dst, GET dst (a same-slot two-key write).
            _ => {
                let (src, dst) = layout.rename_keys(idx, client);
                if let Err(e) = q::<()>(&mut con, redis::cmd("SET").arg(&src).arg(&version)).await {
                    expected.values.insert(src.clone(), None);
                    expected.absent.remove(&src);
                    load.error(client, format!("SET {src}: {e}"));
                    continue;
                }
                match q::<()>(&mut con, redis::cmd("RENAME").arg(&src).arg(&dst)).await {
                    Ok(()) => {
                        expected.values.remove(&src);
                        expected.absent.insert(src.clone(), true);
                        expected.values.insert(dst.clone(), Some(version.clone()));
                        match q::<Option<String>>(&mut con, redis::cmd("GET").arg(&dst)).await {
                            Ok(Some(v)) if v == version => {}
                            Ok(other) => load.error(client, format!("GET {dst} after RENAME: got {other:?}")),
                            Err(e) => load.error(client, format!("GET {dst} after RENAME: {e}")),
                        }
                    }
                    Err(e) => {
                        expected.values.insert(src.clone(), None);
                        expected.absent.remove(&src);
                        expected.values.insert(dst.clone(), None);
                        load.error(client, format!("RENAME {src} {dst}: {e}"));
                    }
                }
            }
        }
    }
    expected
}

/// Starts the clients (one slotway connection each).
async fn start_load(
    proxy: &Proxy,
    load: &Arc<Load>,
    expected: Vec<Expected>,
    phase: u32,
) -> Vec<tokio::task::JoinHandle<Expected>> {
    let mut handles = Vec::new();
    for (client, exp) in expected.into_iter().enumerate() {
        let con = proxy.client().await;
        handles.push(tokio::spawn(client_loop(load.clone(), client, con, exp, phase)));
    }
    handles
}

async fn stop_load(load: &Arc<Load>, handles: Vec<tokio::task::JoinHandle<Expected>>) -> Vec<Expected> {
    load.stop.store(true, Ordering::Relaxed);
    let mut out = Vec::new();
    for h in handles {
        out.push(
            tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("client task stuck")
                .expect("client task panicked"),
        );
    }
    out
}

fn assert_no_client_errors(load: &Load, phase: &str) {
    let errors = load.errors.load(Ordering::Relaxed);
    let ops = load.ops.load(Ordering::Relaxed);
    eprintln!("{phase}: {ops} client operations, {errors} client-visible errors");
    if errors > 0 {
        let first = load.first_errors.lock().unwrap();
        panic!("{phase}: {errors} client-visible errors in {ops} operations; first ones:\n  {}", first.join("\n  "));
    }
    assert!(ops > 500, "{phase}: only {ops} operations ran");
}

// ------------------------------------------------------------------ cluster helpers

fn node_id(cluster: &Cluster, port: u16) -> String {
    cluster.cluster_nodes(port).into_iter().find(|n| n.is_myself()).expect("myself in CLUSTER NODES").id
}

async fn cmd_ok(con: &mut MultiplexedConnection, cmd: &redis::Cmd, what: &str) {
    let r: redis::RedisResult<redis::Value> = cmd.query_async(con).await;
    match r {
        Ok(redis::Value::Okay) => {}
        other => panic!("{what}: {other:?}"),
    }
}

async fn setslot(con: &mut MultiplexedConnection, slot: u16, sub: &str, id: &str, port: u16) {
    cmd_ok(
        con,
        redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg(sub).arg(id),
        &format!("CLUSTER SETSLOT {slot} {sub} {id} on {port}"),
    )
    .await;
}

/// Migration of one slot with the low-level protocol. Returns (keys moved, MIGRATE batches).
#[allow(clippy::too_many_arguments)]
async fn migrate_slot(
    src: &mut MultiplexedConnection,
    dst: &mut MultiplexedConnection,
    others: &mut [(u16, MultiplexedConnection)],
    slot: u16,
    (src_port, src_id): (u16, &str),
    (dst_port, dst_id): (u16, &str),
    password: &str,
) -> (usize, usize) {
    setslot(dst, slot, "IMPORTING", src_id, dst_port).await;
    setslot(src, slot, "MIGRATING", dst_id, src_port).await;
    let (mut moved, mut batches) = (0, 0);
    loop {
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(MIGRATE_BATCH)
            .query_async(src)
            .await
            .unwrap_or_else(|e| panic!("CLUSTER GETKEYSINSLOT {slot} on {src_port}: {e}"));
        if keys.is_empty() {
            break;
        }
        let mut cmd = redis::cmd("MIGRATE");
        cmd.arg("127.0.0.1").arg(dst_port).arg("").arg(0).arg(5000);
        if !password.is_empty() {
            cmd.arg("AUTH").arg(password);
        }
        cmd.arg("KEYS").arg(&keys);
        let r: redis::RedisResult<redis::Value> = cmd.query_async(src).await;
        match r {
            Ok(redis::Value::Okay) => {}
            Ok(redis::Value::SimpleString(s)) if s == "NOKEY" => {}
            other => panic!("MIGRATE of {} keys of slot {slot} from {src_port} to {dst_port}: {other:?}", keys.len()),
        }
        moved += keys.len();
        batches += 1;
        tokio::time::sleep(MIGRATE_PAUSE).await;
    }
    // As redis-cli does it: the destination first, then the source, then everybody else.
    setslot(dst, slot, "NODE", dst_id, dst_port).await;
    setslot(src, slot, "NODE", dst_id, src_port).await;
    for (port, con) in others.iter_mut() {
        setslot(con, slot, "NODE", dst_id, *port).await;
    }
    (moved, batches)
}

/// CLUSTER SLOTS as (start, end, primary port).
async fn cluster_slots(con: &mut MultiplexedConnection) -> Vec<(u16, u16, u16)> {
    let v: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(con).await.expect("CLUSTER SLOTS");
    let int = |v: &redis::Value| -> i64 {
        match v {
            redis::Value::Int(i) => *i,
            other => panic!("expected int, got {other:?}"),
        }
    };
    let arr = |v: &redis::Value| -> Vec<redis::Value> {
        match v {
            redis::Value::Array(a) => a.clone(),
            other => panic!("expected array, got {other:?}"),
        }
    };
    arr(&v)
        .iter()
        .map(|range| {
            let r = arr(range);
            (int(&r[0]) as u16, int(&r[1]) as u16, int(&arr(&r[2])[1]) as u16)
        })
        .collect()
}

/// Asserts that every primary's CLUSTER SLOTS gives `owner` every slot of the layout.
async fn assert_range_owned_by(cluster: &Cluster, primaries: &[u16], layout: &Layout, owner: u16, phase: &str) {
    for &p in primaries {
        let mut con = node_client(cluster, p).await;
        let ranges = cluster_slots(&mut con).await;
        for &s in &layout.slots {
            let got = ranges.iter().find(|&&(a, b, _)| a <= s && s <= b).map(|r| r.2);
            assert_eq!(got, Some(owner), "{phase}: CLUSTER SLOTS on {p}: slot {s} owned by {got:?}, expected {owner}");
        }
    }
}

// ------------------------------------------------------------------ checks through slotway

fn info_counters(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
        .collect()
}

async fn proxy_counters(con: &mut MultiplexedConnection) -> HashMap<String, u64> {
    let text: String = redis::cmd("INFO").arg("proxy").query_async(con).await.expect("INFO proxy through slotway");
    let c = info_counters(&text);
    assert!(c.contains_key("redirects_ask"), "INFO proxy has no redirects_ask:\n{text}");
    c
}

fn show(c: &HashMap<String, u64>) -> String {
    [
        "redirects_moved",
        "redirects_ask",
        "retries_tryagain",
        "retries_clusterdown",
        "retries_unreachable",
        "upstream_failures_returned",
        "topology_refreshes",
        "topology_changes",
    ]
    .iter()
    .map(|k| format!("{k}={}", c.get(*k).copied().unwrap_or(0)))
    .collect::<Vec<_>>()
    .join(" ")
}

/// Every preloaded key and every value the clients expect, read through slotway; returns the number checked.
async fn check_values_through_proxy(con: &mut MultiplexedConnection, layout: &Layout, expected: &[Expected]) -> usize {
    let mut checked = 0;
    for idx in 0..layout.slots.len() {
        let keys: Vec<String> = (0..KEYS_PER_SLOT).map(|j| layout.preload_key(idx, j)).collect();
        let got: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(con).await.expect("MGET preloaded keys through slotway");
        for (k, v) in keys.iter().zip(got) {
            assert_eq!(v, Some(preload_value(k)), "preloaded key {k} through slotway");
            checked += 1;
        }
    }
    for (client, exp) in expected.iter().enumerate() {
        for (key, value) in &exp.values {
            if let Some(value) = value {
                let got: Option<String> =
                    redis::cmd("GET").arg(key).query_async(con).await.expect("GET through slotway");
                assert_eq!(got.as_ref(), Some(value), "client {client}'s last write of {key} through slotway");
                checked += 1;
            }
        }
        for key in exp.absent.keys() {
            let n: i64 = redis::cmd("EXISTS").arg(key).query_async(con).await.expect("EXISTS through slotway");
            assert_eq!(n, 0, "client {client}'s renamed-away key {key} still exists");
            checked += 1;
        }
    }
    checked
}

/// A sample of the keys read directly on their owner (no redirects followed: a MOVED/ASK fails the check).
async fn check_values_on_node(
    cluster: &Cluster,
    port: u16,
    layout: &Layout,
    expected: &[Expected],
    phase: &str,
) -> usize {
    let mut con = node_client(cluster, port).await;
    let mut checked = 0;
    for idx in (0..layout.slots.len()).step_by(3) {
        let key = layout.preload_key(idx, idx % KEYS_PER_SLOT);
        let got: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(&key).query_async(&mut con).await;
        assert_eq!(got.ok(), Some(Some(preload_value(&key))), "{phase}: GET {key} directly on {port}");
        checked += 1;
    }
    for exp in expected {
        for (key, value) in exp.values.iter().step_by(5) {
            if let Some(value) = value {
                let got: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(key).query_async(&mut con).await;
                assert_eq!(got.ok(), Some(Some(value.clone())), "{phase}: GET {key} directly on {port}");
                checked += 1;
            }
        }
    }
    let n: usize = redis::cmd("DBSIZE").query_async(&mut con).await.expect("DBSIZE");
    assert!(n >= layout.slots.len() * KEYS_PER_SLOT, "{phase}: {port} holds only {n} keys");
    checked
}

// ------------------------------------------------------------------ the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_load_is_invisible_to_clients() {
    let t0 = Instant::now();
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    eprintln!("cluster + slotway up after {:.1}s", t0.elapsed().as_secs_f64());

    // A owns slot 0; B owns the slot right after A's first range. The moving range is A's last RANGE_LEN slots.
    let primaries = cluster.primaries();
    let nodes = cluster.any_cluster_nodes();
    let a = nodes.iter().find(|n| n.is_primary() && n.slots.iter().any(|&(s, _)| s == 0)).expect("owner of slot 0");
    let a_end = a.slots.iter().find(|&&(s, _)| s == 0).unwrap().1;
    assert!(a_end >= RANGE_LEN, "A's first range is too small: {:?}", a.slots);
    let (a_port, a_id) = (a.port, a.id.clone());
    let b_port = cluster.node_for_slot(a_end + 1);
    let b_id = node_id(&cluster, b_port);
    assert_ne!(a_port, b_port);
    let first = a_end + 1 - RANGE_LEN;
    let layout = Arc::new(Layout::new(first, RANGE_LEN));
    eprintln!("moving slots {first}-{a_end} from A={a_port} to B={b_port}");

    // Preload through slotway: one MSET per slot.
    let mut con = proxy.client().await;
    for idx in 0..layout.slots.len() {
        let mut cmd = redis::cmd("MSET");
        for j in 0..KEYS_PER_SLOT {
            let k = layout.preload_key(idx, j);
            cmd.arg(&k).arg(preload_value(&k));
        }
        let () = cmd.query_async(&mut con).await.expect("preload MSET through slotway");
    }
    let on_a: usize = redis::cmd("DBSIZE").query_async(&mut node_client(&cluster, a_port).await).await.unwrap();
    assert!(on_a >= layout.slots.len() * KEYS_PER_SLOT, "preloaded keys are not on A ({on_a} keys)");
    let before = proxy_counters(&mut con).await;
    eprintln!("preloaded {} keys; counters before: {}", layout.slots.len() * KEYS_PER_SLOT, show(&before));

    // ---------------------------------------------------------------- phase 1: A -> B, slowly, by hand
    let load = Load::new(layout.clone());
    let handles = start_load(&proxy, &load, (0..CLIENTS).map(|_| Expected::default()).collect(), 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t1 = Instant::now();
    let mut src = node_client(&cluster, a_port).await;
    let mut dst = node_client(&cluster, b_port).await;
    let mut others = Vec::new();
    for &p in primaries.iter().filter(|&&p| p != a_port && p != b_port) {
        others.push((p, node_client(&cluster, p).await));
    }
    let (mut keys_moved, mut batches) = (0, 0);
    for (idx, &slot) in layout.slots.iter().enumerate() {
        assert!(t1.elapsed() < PHASE_MAX, "phase 1 migration too slow: at slot {slot} after {:?}", t1.elapsed());
        load.hot.store(idx as u32, Ordering::Relaxed);
        let (k, b) = migrate_slot(
            &mut src,
            &mut dst,
            &mut others,
            slot,
            (a_port, &a_id),
            (b_port, &b_id),
            cluster.password_str(),
        )
        .await;
        keys_moved += k;
        batches += b;
    }
    load.hot.store(NO_SLOT, Ordering::Relaxed);
    eprintln!(
        "phase 1: migrated {} slots ({keys_moved} keys, {batches} MIGRATE batches) in {:.1}s",
        layout.slots.len(),
        t1.elapsed().as_secs_f64()
    );
    // Some more load on the new layout (slotway's map may still be stale: MOVED).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expected = stop_load(&load, handles).await;
    let after1 = proxy_counters(&mut con).await;
    eprintln!("phase 1 counters: {}", show(&after1));
    assert_no_client_errors(&load, "phase 1");

    assert_range_owned_by(&cluster, &primaries, &layout, b_port, "after phase 1").await;
    let n = check_values_through_proxy(&mut con, &layout, &expected).await;
    let m = check_values_on_node(&cluster, b_port, &layout, &expected, "after phase 1").await;
    eprintln!("phase 1: {n} values checked through slotway, {m} directly on B");

    let delta = |c: &HashMap<String, u64>, b: &HashMap<String, u64>, k: &str| {
        c.get(k).copied().unwrap_or(0) - b.get(k).copied().unwrap_or(0)
    };
    assert!(delta(&after1, &before, "redirects_ask") > 0, "no ASK followed in phase 1: {}", show(&after1));
    assert!(
        delta(&after1, &before, "redirects_moved") > 0 || delta(&after1, &before, "topology_changes") > 0,
        "neither MOVED nor a topology change in phase 1: {}",
        show(&after1)
    );

    // ---------------------------------------------------------------- phase 2: B -> A with redis-cli --cluster reshard
    cluster.wait_healthy(Duration::from_secs(20));
    let load2 = Load::new(layout.clone());
    let handles = start_load(&proxy, &load2, expected, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t2 = Instant::now();
    let mut reshard: Command = cluster.cli_command(b_port);
    reshard.args([
        "--cluster",
        "reshard",
        &format!("127.0.0.1:{b_port}"),
        "--cluster-from",
        &b_id,
        "--cluster-to",
        &a_id,
        "--cluster-slots",
        &RANGE_LEN.to_string(),
        "--cluster-yes",
        "--cluster-pipeline",
        "10",
    ]);
    let out =
        tokio::task::spawn_blocking(move || reshard.output()).await.unwrap().expect("run redis-cli --cluster reshard");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let reshard_secs = t2.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expected = stop_load(&load2, handles).await;
    assert!(
        out.status.success() && !text.contains("[ERR]"),
        "redis-cli --cluster reshard failed ({}):\n{}",
        out.status,
        text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    eprintln!("phase 2: redis-cli --cluster reshard moved {RANGE_LEN} slots back in {reshard_secs:.1}s");
    let after2 = proxy_counters(&mut con).await;
    eprintln!("phase 2 counters: {}", show(&after2));
    assert_no_client_errors(&load2, "phase 2");

    assert_range_owned_by(&cluster, &primaries, &layout, a_port, "after phase 2").await;
    let n = check_values_through_proxy(&mut con, &layout, &expected).await;
    let m = check_values_on_node(&cluster, a_port, &layout, &expected, "after phase 2").await;
    eprintln!("phase 2: {n} values checked through slotway, {m} directly on A");
    assert!(
        delta(&after2, &after1, "redirects_moved") > 0 || delta(&after2, &after1, "topology_changes") > 0,
        "neither MOVED nor a topology change in phase 2: {}",
        show(&after2)
    );
    eprintln!("total {:.1}s", t0.elapsed().as_secs_f64());
}
