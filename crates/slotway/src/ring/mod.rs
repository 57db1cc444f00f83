//! Pure: twemproxy's key placement (`distribution: ketama | modula` over its hashes, `hash_tag`, weights, server
//! names), bit for bit, so a pool moved from twemproxy to slotway keeps every key where it is. No I/O.
//!
//! What twemproxy does, and so what [`Ring`] does (all of it checked against the `nutcracker` binary in
//! `tests/twemproxy.rs`):
//! - The servers are sorted by name, shorter names first, then bytewise (`string_compare`), and indexed in that
//!   order. A server's name is its `name` column, else `host:port` exactly as written (just `host` when the port is
//!   11211, for libmemcached compatibility); the weight is never part of it.
//! - **ketama**: a server of weight `w` in a pool of total weight `W` and `n` servers gets
//!   `floor((w/W)*160/4*n + 1e-10) * 4` points, computed in 32-bit float (so equal weights in pools of 25, 47, 50, ...
//!   servers give 156 points each, not 160). Each group of 4 points is the MD5 of `"<name>-<i>"` read as four
//!   little-endian u32. Points are sorted by value (ties keep their order); a key goes to the first point ≥ its hash,
//!   wrapping to the first point.
//! - **modula**: each server is listed `weight` times in sorted order; a key goes to entry `hash % entries`.
//! - The key hashed is the part inside `hash_tag`'s two characters when that part is non-empty (first opening
//!   character, then the first closing one after it), else the whole key. An empty key hashes to 0. A pool of one
//!   server sends everything there.
//! - `auto_eject_hosts`: an ejected server is left out of the ring (its points, and its weight in `W`), so its keys
//!   — and, with modula, most keys — move to other servers while it is out ([`Ring::set_ejected`]).
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub mod hash;

pub use hash::{CharSign, KeyHash};

/// How keys are spread over the servers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Distribution {
    Ketama,
    Modula,
}

impl Distribution {
    pub fn parse(name: &str) -> Option<Distribution> {
        match name {
            "ketama" => Some(Distribution::Ketama),
            "modula" => Some(Distribution::Modula),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Distribution::Ketama => "ketama",
            Distribution::Modula => "modula",
        }
    }
}

/// One server of the ring, in configuration order (its index is its replication group's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingServer {
    /// The name hashed into the ring (ketama) and sorted by.
    pub name: Vec<u8>,
    /// At least 1.
    pub weight: u32,
}

/// Everything that decides where a key goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingSpec {
    pub distribution: Distribution,
    pub hash: KeyHash,
    pub sign: CharSign,
    /// The two characters that enclose the hashed part of a key (`{}`), if any.
    pub hash_tag: Option<[u8; 2]>,
    /// In configuration order; at least one, names distinct.
    pub servers: Vec<RingServer>,
}

/// ketama's points per server before weighting, and per MD5 digest.
const KETAMA_POINTS_PER_SERVER: f32 = 160.0;
const POINTS_PER_HASH: u32 = 4;
/// twemproxy formats `"<name>-<i>"` into a buffer of this size: longer strings are cut to one byte less.
const KETAMA_MAX_HOSTLEN: usize = 273;

/// The ring as built for one set of live servers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Continuum {
    /// ketama: (point, server in configuration order), sorted by point. modula: (0, server) per unit of weight.
    points: Vec<(u32, u32)>,
}

/// A pool's placement: key → server (its index in configuration order, which is its replication group).
#[derive(Debug)]
pub struct Ring {
    spec: RingSpec,
    /// Configuration indexes in twemproxy's order (by name: shorter first, then bytewise).
    sorted: Vec<u32>,
    /// The ring of the servers not ejected; replaced whole when one is ejected or comes back.
    live: ArcSwap<Continuum>,
    /// Which servers are ejected (read without a lock; changed under `writer`).
    ejected: Vec<AtomicBool>,
    writer: Mutex<()>,
}

impl Ring {
    /// Builds the ring with every server live. The spec must have been validated (servers, weights, names).
    pub fn new(spec: RingSpec) -> Ring {
        let mut sorted: Vec<u32> = (0..spec.servers.len() as u32).collect();
        sorted.sort_by(|&a, &b| {
            let (x, y) = (&spec.servers[a as usize].name, &spec.servers[b as usize].name);
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        });
        let continuum = build(&spec, &sorted, &vec![false; spec.servers.len()]);
        let ejected = spec.servers.iter().map(|_| AtomicBool::new(false)).collect();
        Ring { spec, sorted, live: ArcSwap::from_pointee(continuum), ejected, writer: Mutex::new(()) }
    }

    pub fn spec(&self) -> &RingSpec {
        &self.spec
    }

    /// Number of servers (live or not).
    pub fn len(&self) -> usize {
        self.spec.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spec.servers.is_empty()
    }

    /// The server (configuration index) that `key` belongs on now.
    #[inline]
    pub fn locate(&self, key: &[u8]) -> usize {
        if self.spec.servers.len() == 1 {
            return 0;
        }
        self.locate_hash(self.key_hash(key))
    }

    /// The server (configuration index) of a key whose hash is `hash`.
    pub fn locate_hash(&self, hash: u32) -> usize {
        let live = self.live.load();
        let points = &live.points;
        match self.spec.distribution {
            Distribution::Ketama => {
                let i = points.partition_point(|&(p, _)| p < hash);
                points.get(i).unwrap_or(&points[0]).1 as usize
            }
            Distribution::Modula => points[(hash % points.len() as u32) as usize].1 as usize,
        }
    }

    /// The hash twemproxy computes for `key`: of its hash-tagged part, 0 for an empty key.
    pub fn key_hash(&self, key: &[u8]) -> u32 {
        let key = match self.spec.hash_tag {
            Some(tag) => tagged(key, tag),
            None => key,
        };
        if key.is_empty() {
            return 0;
        }
        self.spec.hash.hash(key, self.spec.sign)
    }

    /// Ejects (`true`) or restores server `index`; the ring is rebuilt when that changes anything. The last live
    /// server is never ejected (twemproxy would then have no server for any key). Returns whether it changed.
    pub fn set_ejected(&self, index: usize, ejected: bool) -> bool {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut state: Vec<bool> = self.ejected.iter().map(|e| e.load(Ordering::Acquire)).collect();
        if state[index] == ejected || (ejected && state.iter().filter(|&&e| !e).count() <= 1) {
            return false;
        }
        state[index] = ejected;
        self.live.store(Arc::new(build(&self.spec, &self.sorted, &state)));
        self.ejected[index].store(ejected, Ordering::Release);
        true
    }

    pub fn is_ejected(&self, index: usize) -> bool {
        self.ejected[index].load(Ordering::Acquire)
    }

    /// Points (ketama) or entries (modula) server `index` has in the ring now.
    pub fn points_of(&self, index: usize) -> usize {
        self.live.load().points.iter().filter(|&&(_, s)| s as usize == index).count()
    }

    /// The servers' names, in configuration order, as text (for logs and errors).
    pub fn name_of(&self, index: usize) -> String {
        String::from_utf8_lossy(&self.spec.servers[index].name).into_owned()
    }
}

/// The part of `key` inside the hash tag when it is non-empty, else `key` (twemproxy's `server_pool_idx`).
pub fn tagged(key: &[u8], tag: [u8; 2]) -> &[u8] {
    let Some(start) = key.iter().position(|&b| b == tag[0]) else { return key };
    match key[start + 1..].iter().position(|&b| b == tag[1]) {
        Some(len) if len > 0 => &key[start + 1..start + 1 + len],
        _ => key,
    }
}

/// ketama's points for a server of `weight` among live servers of `total` weight, `live` of them, in 32-bit
/// float as twemproxy computes them (`ketama_update`).
pub fn ketama_points(weight: u32, total: u32, live: u32) -> u32 {
    let pct = weight as f32 / total as f32;
    let x = pct * KETAMA_POINTS_PER_SERVER / 4.0 * live as f32;
    // `+ 0.0000000001` is a double: the float is widened, the sum rounded back to float by the cast.
    let x = (x as f64 + 0.000_000_000_1) as f32;
    (x.floor() * 4.0) as u32
}

fn build(spec: &RingSpec, sorted: &[u32], ejected: &[bool]) -> Continuum {
    let live: Vec<u32> = sorted.iter().copied().filter(|&i| !ejected[i as usize]).collect();
    let total: u32 = live.iter().map(|&i| spec.servers[i as usize].weight).sum();
    let mut points = Vec::new();
    match spec.distribution {
        Distribution::Ketama => {
            for &i in &live {
                let server = &spec.servers[i as usize];
                let n = ketama_points(server.weight, total, live.len() as u32);
                for p in 0..n / POINTS_PER_HASH {
                    let mut host = server.name.clone();
                    host.extend_from_slice(format!("-{p}").as_bytes());
                    host.truncate(KETAMA_MAX_HOSTLEN - 1);
                    points.extend(hash::md5_points(&host).map(|v| (v, i)));
                }
            }
            // Stable: equal points keep their insertion order (glibc's qsort is a merge sort here).
            points.sort_by_key(|&(v, _)| v);
        }
        Distribution::Modula => {
            for &i in &live {
                points.extend(std::iter::repeat_n((0, i), spec.servers[i as usize].weight as usize));
            }
        }
    }
    Continuum { points }
}

#[cfg(test)]
mod tests;
