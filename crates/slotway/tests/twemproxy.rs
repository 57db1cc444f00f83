//! Placement compatibility with twemproxy: the real `nutcracker` (Debian's package) and slotway in front of the
//! same standalone Redis servers put every key on the same server. Each key's server is found by reading every
//! server directly (nothing is taken from either proxy's word).
//!
//! - 100,000 keys (ASCII, binary with bytes >= 0x80, CR, LF and NUL, with and without hash tags, empty and unclosed
//!   tags, the empty key) through both, for ketama with named and unnamed servers of different weights, for modula,
//!   and for a 25-server pool (156 ketama points per server, not 160).
//! - Every hash twemproxy has, through nutcracker, against slotway's ring (`slotway::ring`) computed here.
mod support;
mod support_raw;

use slotway::ring::{CharSign, Distribution, KeyHash, Ring, RingServer, RingSpec};
use std::collections::HashSet;
use support::*;
use support_raw::*;

/// `n` distinct keys of every kind, in a fixed order (a fixed seed).
fn keys(n: usize) -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    let mut push = |k: Vec<u8>, out: &mut Vec<Vec<u8>>| {
        if seen.insert(k.clone()) {
            out.push(k);
        }
    };
    push(Vec::new(), &mut out);
    let mut i = 0u64;
    while out.len() < n {
        let r = next();
        let random_bytes = |len: usize, seed: u64| -> Vec<u8> {
            let mut s = seed | 1;
            (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 24) as u8
                })
                .collect()
        };
        let key = match i % 8 {
            0 => format!("user:{i}:profile").into_bytes(),
            1 => format!("{}", r % 1_000_000_007).into_bytes(),
            2 => random_bytes(1 + (r % 40) as usize, r),
            3 => format!("{{tag{}}}:item:{i}", r % 997).into_bytes(),
            4 => {
                // A tag around binary bytes, with binary around it.
                let mut k = random_bytes((r % 5) as usize, r ^ 1);
                k.push(b'{');
                k.extend(random_bytes(1 + (r % 6) as usize, r ^ 2).into_iter().filter(|&b| b != b'}'));
                k.push(b'}');
                k.extend(random_bytes((r % 7) as usize, r ^ 3));
                k
            }
            5 => format!("order:{{}}:{i}").into_bytes(), // an empty tag: the whole key is hashed
            6 => format!("session:{{{i}").into_bytes(),  // an unclosed tag
            _ => format!("caf\u{e9}:\u{1f600}:{i}\r\n\0").into_bytes(),
        };
        push(key, &mut out);
        i += 1;
    }
    out
}

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Sends `cmds` in pipelined batches and returns every reply.
fn pipeline(raw: &mut Raw, cmds: impl Iterator<Item = Vec<u8>>) -> Vec<Reply> {
    let cmds: Vec<Vec<u8>> = cmds.collect();
    let mut replies = Vec::with_capacity(cmds.len());
    for batch in cmds.chunks(2000) {
        raw.send(&batch.concat());
        replies.extend(batch.iter().map(|_| raw.read_reply()));
    }
    replies
}

fn connect(pool: &Pool, addr: &str, auth: bool) -> Raw {
    let mut raw = Raw::connect(addr);
    if let (true, Some(pw)) = (auth, pool.opts.password.as_deref()) {
        assert_eq!(raw.call(&["AUTH", pw]), ok());
    }
    raw
}

/// Writes every key through the proxy at `addr`, then finds where each one is by reading every server of `pool`
/// directly: `owner[i]` is the index (in `pool.primaries()`) of the server holding key `i`.
fn owners_through(pool: &Pool, addr: &str, auth: bool, keys: &[Vec<u8>]) -> Vec<usize> {
    let servers = pool.primaries();
    for &p in &servers {
        assert_eq!(pool.cli(p, &["FLUSHALL"]), "OK");
    }
    let mut proxy = connect(pool, addr, auth);
    let replies = pipeline(&mut proxy, keys.iter().map(|k| command(&[b"SET", k, b"x"])));
    for (k, r) in keys.iter().zip(&replies) {
        assert_eq!(*r, ok(), "SET {} through {addr}", show(k));
    }
    let mut owner = vec![usize::MAX; keys.len()];
    for (s, &port) in servers.iter().enumerate() {
        let mut direct = connect(pool, &format!("127.0.0.1:{port}"), true);
        for (c, chunk) in keys.chunks(1000).enumerate() {
            let mut args: Vec<&[u8]> = vec![b"MGET"];
            args.extend(chunk.iter().map(|k| &k[..]));
            let Reply::Array(Some(values)) = direct.call_bytes(&command(&args)) else { panic!("MGET on {port}") };
            for (j, v) in values.iter().enumerate() {
                if *v != nil() {
                    let i = c * 1000 + j;
                    assert_eq!(owner[i], usize::MAX, "{} is on two servers", show(&keys[i]));
                    owner[i] = s;
                }
            }
        }
    }
    let missing: Vec<String> =
        keys.iter().zip(&owner).filter(|(_, &o)| o == usize::MAX).map(|(k, _)| show(k)).collect();
    assert!(
        missing.is_empty(),
        "{} keys written through {addr} are on no server: {:?}",
        missing.len(),
        &missing[..5.min(missing.len())]
    );
    owner
}

trait CallBytes {
    fn call_bytes(&mut self, cmd: &[u8]) -> Reply;
}

impl CallBytes for Raw {
    fn call_bytes(&mut self, cmd: &[u8]) -> Reply {
        self.send(cmd);
        self.read_reply()
    }
}

/// Both owner maps must agree on every key; on failure, say how many and show a few.
fn assert_same_owners(what: &str, keys: &[Vec<u8>], nutcracker: &[usize], slotway: &[usize]) {
    let differ: Vec<usize> = (0..keys.len()).filter(|&i| nutcracker[i] != slotway[i]).collect();
    let shown: Vec<String> = differ
        .iter()
        .take(8)
        .map(|&i| format!("{} nutcracker:{} slotway:{}", show(&keys[i]), nutcracker[i], slotway[i]))
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: {} of {} keys on another server than nutcracker's: {shown:?}",
        differ.len(),
        keys.len()
    );
}

fn count_per_server(owner: &[usize], servers: usize) -> Vec<usize> {
    let mut v = vec![0; servers];
    owner.iter().for_each(|&o| v[o] += 1);
    v
}

/// A pool of four servers, two named and two by address, of weights 1, 2, 1, 3; hash tag `{}`. The same pool
/// for nutcracker (YAML) and slotway (TOML), for `distribution`.
fn mixed_pool(pool: &Pool, distribution: &str) -> (String, String) {
    let p = pool.primaries();
    let pw = pool.opts.password.as_deref().unwrap();
    let yml = format!(
        "  hash: fnv1a_64\n  hash_tag: \"{{}}\"\n  distribution: {distribution}\n  redis: true\n  redis_auth: {pw}\n  \
         servers:\n    - 127.0.0.1:{}:1 cache-a\n    - 127.0.0.1:{}:2\n    - 127.0.0.1:{}:1 b\n    - 127.0.0.1:{}:3\n",
        p[0], p[1], p[2], p[3]
    );
    let toml = format!(
        "[sharding]\ndistribution = \"{distribution}\"\nhash = \"fnv1a_64\"\nhash_tag = \"{{}}\"\n\n\
         [[shards]]\nname = \"cache-a\"\nservers = [\"127.0.0.1:{}\"]\n\n\
         [[shards]]\nservers = [\"127.0.0.1:{}\"]\nweight = 2\n\n\
         [[shards]]\nname = \"b\"\nservers = [\"127.0.0.1:{}\"]\n\n\
         [[shards]]\nservers = [\"127.0.0.1:{}\"]\nweight = 3\n",
        p[0], p[1], p[2], p[3]
    );
    (yml, toml)
}

fn compare_100k(distribution: &str) {
    let pool = Pool::start(PoolOpts { shards: 4, ..PoolOpts::default() });
    let (yml, toml) = mixed_pool(&pool, distribution);
    let nutcracker = Nutcracker::start(&yml);
    let proxy = Proxy::start_pool(&pool, &toml, &[]);
    let keys = keys(100_000);
    let by_nutcracker = owners_through(&pool, &nutcracker.addr, true, &keys);
    let by_slotway = owners_through(&pool, &proxy.addr, false, &keys);
    let spread = count_per_server(&by_slotway, 4);
    println!("{distribution}: keys per server (weights 1, 2, 1, 3): {spread:?}");
    assert_same_owners(distribution, &keys, &by_nutcracker, &by_slotway);
    // The weights show: the server of weight 3 holds the most, the two of weight 1 the least.
    assert!(spread[3] > spread[1] && spread[1] > spread[0] && spread[1] > spread[2], "{spread:?}");
    // And every key reads back through slotway from where it is.
    let mut raw = Raw::connect(&proxy.addr);
    let replies = pipeline(&mut raw, keys.iter().step_by(97).map(|k| command(&[b"GET", k])));
    assert!(replies.iter().all(|r| *r == bulk("x")), "a key did not read back through slotway");
}

#[test]
fn ketama_named_and_unnamed_weighted_servers_100k_keys_land_where_nutcracker_puts_them() {
    compare_100k("ketama");
}

#[test]
fn modula_100k_keys_land_where_nutcracker_puts_them() {
    compare_100k("modula");
}

/// 25 servers of equal weight, unnamed: twemproxy's 32-bit float arithmetic gives each 156 points, not 160.
#[test]
fn a_25_server_pool_has_156_points_per_server_and_matches_nutcracker() {
    let pool = Pool::start(PoolOpts { shards: 25, ..PoolOpts::default() });
    let p = pool.primaries();
    let pw = pool.opts.password.as_deref().unwrap();
    let servers: String = p.iter().map(|port| format!("    - 127.0.0.1:{port}:1\n")).collect();
    let yml = format!(
        "  hash: fnv1a_64\n  hash_tag: \"{{}}\"\n  distribution: ketama\n  redis: true\n  redis_auth: {pw}\n  servers:\n{servers}"
    );
    let mut toml = String::from("[sharding]\nhash_tag = \"{}\"\n");
    for port in &p {
        toml.push_str(&format!("\n[[shards]]\nservers = [\"127.0.0.1:{port}\"]\n"));
    }
    let nutcracker = Nutcracker::start(&yml);
    let proxy = Proxy::start_pool(&pool, &toml, &[]);
    let topology = proxy.cli(&["SLOTWAY", "TOPOLOGY"]);
    let shard_lines: Vec<&str> = topology.lines().filter(|l| l.starts_with("shard ")).collect();
    assert_eq!(shard_lines.len(), 25, "{topology}");
    assert!(shard_lines.iter().all(|l| l.contains(" points 156 ")), "{topology}");
    let keys = keys(100_000);
    let by_nutcracker = owners_through(&pool, &nutcracker.addr, true, &keys);
    let by_slotway = owners_through(&pool, &proxy.addr, false, &keys);
    assert_same_owners("25 servers", &keys, &by_nutcracker, &by_slotway);
    println!("25 servers: keys per server {:?}", count_per_server(&by_slotway, 25));
}

/// Every hash twemproxy knows, through nutcracker, against slotway's ring computed in this process: ketama over
/// four named servers and modula over weights 3, 5, 7, 11 (a key's place then depends on its hash modulo 26).
#[test]
fn every_hash_places_keys_as_nutcracker_does() {
    let pool = Pool::start(PoolOpts { shards: 4, ..PoolOpts::default() });
    let p = pool.primaries();
    let pw = pool.opts.password.as_deref().unwrap();
    let keys = keys(3_000);
    let weights = [3u32, 5, 7, 11];
    let names = ["alpha", "beta", "gamma", "delta"];
    let mut checked = 0;
    for (hash, name) in KeyHash::ALL {
        for distribution in [Distribution::Ketama, Distribution::Modula] {
            let servers: String =
                (0..4).map(|i| format!("    - 127.0.0.1:{}:{} {}\n", p[i], weights[i], names[i])).collect();
            let yml = format!(
                "  hash: {name}\n  hash_tag: \"{{}}\"\n  distribution: {}\n  redis: true\n  redis_auth: {pw}\n  \
                 servers:\n{servers}",
                distribution.name()
            );
            let nutcracker = Nutcracker::start(&yml);
            let by_nutcracker = owners_through(&pool, &nutcracker.addr, true, &keys);
            let ring = Ring::new(RingSpec {
                distribution,
                hash,
                sign: CharSign::Signed,
                hash_tag: Some(*b"{}"),
                servers: (0..4)
                    .map(|i| RingServer { name: names[i].as_bytes().to_vec(), weight: weights[i] })
                    .collect(),
            });
            let by_ring: Vec<usize> = keys.iter().map(|k| ring.locate(k)).collect();
            assert_same_owners(&format!("{name} {}", distribution.name()), &keys, &by_nutcracker, &by_ring);
            checked += 1;
        }
    }
    assert_eq!(checked, 24);
    println!("24 pools (12 hashes x ketama, modula): {} keys each, all placed as nutcracker places them", keys.len());
}

/// `slotway --from-twemproxy FILE [--pool NAME]`: stdout, stderr and the exit code.
fn from_twemproxy(yml: &str, pool: Option<&str>) -> (String, String, i32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nutcracker.yml");
    std::fs::write(&path, yml).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_slotway"));
    cmd.arg("--from-twemproxy").arg(&path);
    if let Some(p) = pool {
        cmd.args(["--pool", p]);
    }
    let out = cmd.output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// The seed-style configuration: converted, the file starts slotway in front of the same two servers, and
/// keys land where nutcracker (with the very same YAML) puts them. The settings it can't carry over are listed.
#[test]
fn from_twemproxy_converts_the_seed_configuration_into_a_file_that_starts() {
    let pool = Pool::start(PoolOpts { shards: 2, password: None, ..PoolOpts::default() });
    let p = pool.primaries();
    let yml = format!(
        "sigma:
  listen: 127.0.0.1:22125
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: false
  redis: true
  server_retry_timeout: 2000
  server_failure_limit: 1
  servers:
    - 127.0.0.1:{}:1 redis-server-cluster1
    - 127.0.0.1:{}:1 redis-server-cluster2
",
        p[0], p[1]
    );
    let (toml, stderr, code) = from_twemproxy(&yml, Some("sigma"));
    assert_eq!(code, 0, "{stderr}");
    assert!(toml.contains("name = \"redis-server-cluster1\""), "{toml}");
    assert!(stderr.contains("server_retry_timeout:") && stderr.contains("server_failure_limit:"), "{stderr}");
    assert!(toml.contains("#   server_failure_limit: only matters with auto_eject_hosts"), "{toml}");
    // The file starts (on another port than the pool's own 22125, which may be taken here).
    let proxy = Proxy::start_pool(&pool, &toml, &[]);
    let keys = keys(5_000);
    let body: String = yml.lines().skip(2).map(|l| format!("{l}\n")).collect();
    let nutcracker = Nutcracker::start(&body);
    let by_nutcracker = owners_through(&pool, &nutcracker.addr, false, &keys);
    let by_slotway = owners_through(&pool, &proxy.addr, false, &keys);
    assert_same_owners("the imported pool", &keys, &by_nutcracker, &by_slotway);
}

#[test]
fn from_twemproxy_reports_what_it_cannot_carry_over() {
    let base = "beta:\n  listen: 127.0.0.1:22126\n  redis: true\n  servers:\n    - 127.0.0.1:6379:1\n";
    // Carried over with notes: each unsupported setting is named, on stderr and in the file.
    let yml =
        base.replace("  redis: true\n", "  redis: true\n  tcpkeepalive: true\n  backlog: 2048\n  reuseport: true\n");
    let (toml, stderr, code) = from_twemproxy(&yml, None);
    assert_eq!(code, 0, "{stderr}");
    for key in ["tcpkeepalive", "backlog", "reuseport"] {
        assert!(stderr.contains(&format!("  {key}: ")), "{key} not reported on stderr:\n{stderr}");
        assert!(toml.contains(&format!("#   {key}: ")), "{key} not reported in the file:\n{toml}");
    }
    // Settings that decide where keys go can't be guessed: an error, exit code 2, nothing on stdout.
    for (bad, why) in [
        ("  hash: crc64\n", "hash: 'crc64' is not one of twemproxy's hashes"),
        ("  distribution: random\n", "random sends each request to a random server"),
        ("  distribution: rendezvous\n", "distribution: 'rendezvous'"),
    ] {
        let (out, stderr, code) =
            from_twemproxy(&base.replace("  redis: true\n", &format!("  redis: true\n{bad}")), None);
        assert_eq!(code, 2, "{stderr}");
        assert!(out.is_empty());
        assert!(stderr.contains(why), "{stderr}");
    }
    let two = format!("{base}{}", base.replace("beta", "gamma"));
    let (_, stderr, code) = from_twemproxy(&two, None);
    assert_eq!(code, 2);
    assert!(stderr.contains("--pool NAME"), "{stderr}");
    assert_eq!(from_twemproxy(&two, Some("gamma")).2, 0);
}
