//! The Lua script bodies slotway has seen (from SCRIPT LOAD, EVAL and EVAL_RO), by SHA1, so that when a node answers
//! EVALSHA with NOSCRIPT (it joined later, was restarted, failed over to a replica that never saw the script, or
//! had its scripts flushed) slotway can load the body there and resend the EVALSHA once.
//!
//! Bounded: at most `cache_entries` bodies and `cache_bytes` bytes; the least recently seen go first. One cache per
//! process, shared by the workers (a short mutex; only script commands touch it).
use crate::config::ScriptsConfig;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// A script's SHA1, as EVALSHA names it (20 bytes; 40 hex digits on the wire).
pub type Sha = [u8; 20];

pub struct ScriptCache {
    limits: ScriptsConfig,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// SHA1 → (body, stamp of its last use).
    bodies: HashMap<Sha, (Bytes, u64)>,
    /// Stamp → SHA1, oldest first.
    order: BTreeMap<u64, Sha>,
    next_stamp: u64,
    bytes: usize,
}

impl ScriptCache {
    pub fn new(limits: ScriptsConfig) -> ScriptCache {
        ScriptCache { limits, inner: Mutex::new(Inner::default()) }
    }

    /// Remembers `body` (or marks it recently seen). Returns its SHA1.
    pub fn learn(&self, body: &[u8]) -> Sha {
        let sha = sha1(body);
        if self.limits.cache_entries == 0 || body.len() > self.limits.cache_bytes {
            return sha;
        }
        let mut inner = self.inner.lock().expect("script cache poisoned");
        let stamp = inner.next_stamp;
        inner.next_stamp += 1;
        if let Some((_, old)) = inner.bodies.get_mut(&sha) {
            let old = std::mem::replace(old, stamp);
            inner.order.remove(&old);
            inner.order.insert(stamp, sha);
            return sha;
        }
        while inner.bodies.len() >= self.limits.cache_entries || inner.bytes + body.len() > self.limits.cache_bytes {
            let Some((_, oldest)) = inner.order.pop_first() else { break };
            if let Some((b, _)) = inner.bodies.remove(&oldest) {
                inner.bytes -= b.len();
            }
        }
        inner.bytes += body.len();
        inner.bodies.insert(sha, (Bytes::copy_from_slice(body), stamp));
        inner.order.insert(stamp, sha);
        sha
    }

    /// The body whose SHA1 is `hex` (40 hex digits, any case), if remembered.
    pub fn get(&self, hex: &[u8]) -> Option<Bytes> {
        let sha = parse_hex(hex)?;
        let inner = self.inner.lock().expect("script cache poisoned");
        inner.bodies.get(&sha).map(|(b, _)| b.clone())
    }

    /// Forgets every body (SCRIPT FLUSH through slotway: EVALSHA must then fail as on a single server).
    pub fn clear(&self) {
        let mut inner = self.inner.lock().expect("script cache poisoned");
        inner.bodies.clear();
        inner.order.clear();
        inner.bytes = 0;
    }

    /// Number of bodies remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("script cache poisoned").bodies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn sha1(body: &[u8]) -> Sha {
    sha1_smol::Sha1::from(body).digest().bytes()
}

/// Lower-case hex, as SCRIPT LOAD answers.
pub fn to_hex(sha: &Sha) -> String {
    sha.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(hex: &[u8]) -> Option<Sha> {
    if hex.len() != 40 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut sha = [0u8; 20];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        sha[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: usize, bytes: usize) -> ScriptCache {
        ScriptCache::new(ScriptsConfig { cache_entries: entries, cache_bytes: bytes })
    }

    #[test]
    fn sha1_is_what_redis_answers() {
        // redis-cli SCRIPT LOAD "return 1"
        assert_eq!(to_hex(&sha1(b"return 1")), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }

    #[test]
    fn remembers_by_sha_in_any_case() {
        let c = cache(10, 1000);
        let sha = to_hex(&c.learn(b"return 1"));
        assert_eq!(c.get(sha.as_bytes()).as_deref(), Some(&b"return 1"[..]));
        assert_eq!(c.get(sha.to_ascii_uppercase().as_bytes()).as_deref(), Some(&b"return 1"[..]));
        assert_eq!(c.get(b"nope"), None);
        assert_eq!(c.get(&[b'0'; 40]), None);
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.get(sha.as_bytes()), None);
    }

    #[test]
    fn bounded_by_count_and_bytes_least_recently_seen_first() {
        let c = cache(3, 1000);
        let a = to_hex(&c.learn(b"a"));
        let b = to_hex(&c.learn(b"b"));
        c.learn(b"c");
        c.learn(b"a"); // seen again: now the newest
        c.learn(b"d"); // evicts b
        assert_eq!(c.len(), 3);
        assert!(c.get(a.as_bytes()).is_some());
        assert!(c.get(b.as_bytes()).is_none());

        let c = cache(100, 10);
        let big = to_hex(&c.learn(&[b'x'; 11]));
        assert!(c.get(big.as_bytes()).is_none(), "larger than the byte cap: not kept");
        let x = to_hex(&c.learn(&[b'x'; 6]));
        let y = to_hex(&c.learn(&[b'y'; 6])); // 12 bytes > 10: x goes
        assert!(c.get(x.as_bytes()).is_none());
        assert!(c.get(y.as_bytes()).is_some());

        let off = cache(0, 1000);
        off.learn(b"z");
        assert!(off.is_empty());
    }
}
