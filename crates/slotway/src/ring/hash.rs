//! twemproxy's key hashes (`src/hashkit/` in its source), bit for bit.
//!
//! Most of them read the key as C `char`s and widen each to 32 bits: on x86-64 (and i386) `char` is signed, so a
//! byte ≥ 0x80 becomes 0xFFFFFF80.. and the result differs from the textbook hash; on ARM it is unsigned. Which one
//! a twemproxy build used decides where its keys are, so it is a setting ([`CharSign`], x86-64's by default).
//! Hashes that read `unsigned char` (md5, crc32a, murmur, jenkins) or mask each byte (crc16, crc32) don't care.
//!
//! Note that twemproxy's `fnv1a_64` and `fnv1_64` return 32 bits: `fnv1a_64` is FNV-1a over 32-bit arithmetic with
//! the 64-bit basis and prime truncated (basis 0x84222325, prime 0x1b3), not 64-bit FNV-1a.
use md5::{Digest, Md5};

/// How twemproxy's C code widened key bytes: as signed `char`s (x86-64, i386) or unsigned ones (ARM).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum CharSign {
    #[default]
    Signed,
    Unsigned,
}

impl CharSign {
    /// A key byte as `(uint32_t)key[x]` makes it.
    #[inline]
    fn widen(self, b: u8) -> u32 {
        match self {
            CharSign::Signed => b as i8 as i32 as u32,
            CharSign::Unsigned => b as u32,
        }
    }
}

/// A twemproxy hash function, by its configuration name (variants spelled as twemproxy spells them).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum KeyHash {
    OneAtATime,
    Md5,
    Crc16,
    Crc32,
    Crc32a,
    Fnv1_64,
    Fnv1a_64,
    Fnv1_32,
    Fnv1a_32,
    Hsieh,
    Murmur,
    Jenkins,
}

impl KeyHash {
    /// Every hash, with the name twemproxy's `hash:` takes.
    pub const ALL: [(KeyHash, &'static str); 12] = [
        (KeyHash::OneAtATime, "one_at_a_time"),
        (KeyHash::Md5, "md5"),
        (KeyHash::Crc16, "crc16"),
        (KeyHash::Crc32, "crc32"),
        (KeyHash::Crc32a, "crc32a"),
        (KeyHash::Fnv1_64, "fnv1_64"),
        (KeyHash::Fnv1a_64, "fnv1a_64"),
        (KeyHash::Fnv1_32, "fnv1_32"),
        (KeyHash::Fnv1a_32, "fnv1a_32"),
        (KeyHash::Hsieh, "hsieh"),
        (KeyHash::Murmur, "murmur"),
        (KeyHash::Jenkins, "jenkins"),
    ];

    pub fn parse(name: &str) -> Option<KeyHash> {
        KeyHash::ALL.iter().find(|(_, n)| *n == name).map(|(h, _)| *h)
    }

    pub fn name(self) -> &'static str {
        KeyHash::ALL.iter().find(|(h, _)| *h == self).map(|(_, n)| *n).expect("every hash is listed")
    }

    /// The hash of `key` as twemproxy computes it (`pool->key_hash`); the caller handles the empty key (hash 0).
    pub fn hash(self, key: &[u8], sign: CharSign) -> u32 {
        match self {
            KeyHash::OneAtATime => one_at_a_time(key, sign),
            KeyHash::Md5 => md5_u32(key, 0),
            KeyHash::Crc16 => crc16(key),
            KeyHash::Crc32 => crc32(key),
            KeyHash::Crc32a => crc32a(key),
            KeyHash::Fnv1_64 => fnv1_64(key, sign),
            KeyHash::Fnv1a_64 => fnv1a_64(key, sign),
            KeyHash::Fnv1_32 => fnv1_32(key, sign),
            KeyHash::Fnv1a_32 => fnv1a_32(key, sign),
            KeyHash::Hsieh => hsieh(key, sign),
            KeyHash::Murmur => murmur(key),
            KeyHash::Jenkins => jenkins(key),
        }
    }
}

/// Bytes `4*word .. 4*word+4` of the MD5 digest of `data`, little-endian: `ketama_hash(key, len, word)` (and
/// `hash_md5` for word 0).
pub fn md5_u32(data: &[u8], word: usize) -> u32 {
    let digest = Md5::digest(data);
    u32::from_le_bytes(digest[4 * word..4 * word + 4].try_into().expect("4 bytes"))
}

/// The four ketama points of one `"<name>-<i>"` string: the MD5 digest read as four little-endian u32.
pub fn md5_points(data: &[u8]) -> [u32; 4] {
    let d = Md5::digest(data);
    std::array::from_fn(|w| u32::from_le_bytes(d[4 * w..4 * w + 4].try_into().expect("4 bytes")))
}

const FNV_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_64_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV_32_INIT: u32 = 2_166_136_261;
const FNV_32_PRIME: u32 = 16_777_619;

/// `hash_fnv1_64`: 64-bit FNV-1 whose result is cut to 32 bits. Each byte is widened to 64 bits, sign included;
/// only the low 32 bits of the state ever reach the result, so 32-bit arithmetic on the widened byte is the same.
fn fnv1_64(key: &[u8], sign: CharSign) -> u32 {
    let mut hash = FNV_64_INIT as u32;
    for &b in key {
        hash = hash.wrapping_mul(FNV_64_PRIME as u32);
        hash ^= sign.widen(b);
    }
    hash
}

/// `hash_fnv1a_64`: FNV-1a in 32-bit arithmetic with the 64-bit basis and prime truncated to 32 bits.
pub fn fnv1a_64(key: &[u8], sign: CharSign) -> u32 {
    let mut hash = FNV_64_INIT as u32;
    for &b in key {
        hash ^= sign.widen(b);
        hash = hash.wrapping_mul(FNV_64_PRIME as u32);
    }
    hash
}

fn fnv1_32(key: &[u8], sign: CharSign) -> u32 {
    let mut hash = FNV_32_INIT;
    for &b in key {
        hash = hash.wrapping_mul(FNV_32_PRIME);
        hash ^= sign.widen(b);
    }
    hash
}

fn fnv1a_32(key: &[u8], sign: CharSign) -> u32 {
    let mut hash = FNV_32_INIT;
    for &b in key {
        hash ^= sign.widen(b);
        hash = hash.wrapping_mul(FNV_32_PRIME);
    }
    hash
}

fn one_at_a_time(key: &[u8], sign: CharSign) -> u32 {
    let mut value: u32 = 0;
    for &b in key {
        value = value.wrapping_add(sign.widen(b));
        value = value.wrapping_add(value << 10);
        value ^= value >> 6;
    }
    value = value.wrapping_add(value << 3);
    value ^= value >> 11;
    value.wrapping_add(value << 15)
}

/// `hash_crc16`: the XMODEM table, but the state is a `uint32_t` that is shifted without being cut back to 16
/// bits, so the result keeps growing past 16 bits (the table index only sees bits 8..16, so it is unaffected).
fn crc16(key: &[u8]) -> u32 {
    let mut crc: u32 = 0;
    for &b in key {
        // `((crc >> 8) ^ *key) & 0x00ff`: the byte's sign bits are masked away.
        let index = ((crc >> 8) ^ b as u32) & 0xff;
        crc = (crc << 8) ^ CRC16_TABLE[index as usize] as u32;
    }
    crc
}

/// `hash_crc32`: CRC-32, then only bits 16..31 of the complement (15 bits).
fn crc32(key: &[u8]) -> u32 {
    (!crc32_state(key) >> 16) & 0x7fff
}

/// `hash_crc32a`: the standard CRC-32 (IEEE).
fn crc32a(key: &[u8]) -> u32 {
    !crc32_state(key)
}

fn crc32_state(key: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &b in key {
        crc = (crc >> 8) ^ crc32_table()[((crc ^ b as u32) & 0xff) as usize];
    }
    crc
}

fn crc32_table() -> &'static [u32; 256] {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        std::array::from_fn(|n| {
            let mut c = n as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            c
        })
    })
}

/// `hash_hsieh`: Paul Hsieh's SuperFastHash with 16-bit reads done byte by byte (twemproxy's build on x86-64); the
/// third byte of a 3-byte tail is read as a `char`.
fn hsieh(key: &[u8], sign: CharSign) -> u32 {
    if key.is_empty() {
        return 0;
    }
    let get16 = |d: &[u8]| (d[1] as u32) << 8 | d[0] as u32;
    let mut hash: u32 = 0;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        hash = hash.wrapping_add(get16(c));
        let tmp = (get16(&c[2..]) << 11) ^ hash;
        hash = (hash << 16) ^ tmp;
        hash = hash.wrapping_add(hash >> 11);
    }
    let rest = chunks.remainder();
    match rest.len() {
        3 => {
            hash = hash.wrapping_add(get16(rest));
            hash ^= hash << 16;
            hash ^= sign.widen(rest[2]) << 18;
            hash = hash.wrapping_add(hash >> 11);
        }
        2 => {
            hash = hash.wrapping_add(get16(rest));
            hash ^= hash << 11;
            hash = hash.wrapping_add(hash >> 17);
        }
        1 => {
            hash = hash.wrapping_add(rest[0] as u32);
            hash ^= hash << 10;
            hash = hash.wrapping_add(hash >> 1);
        }
        _ => {}
    }
    hash ^= hash << 3;
    hash = hash.wrapping_add(hash >> 5);
    hash ^= hash << 4;
    hash = hash.wrapping_add(hash >> 17);
    hash ^= hash << 25;
    hash.wrapping_add(hash >> 6)
}

/// `hash_murmur`: MurmurHash2 with the seed `0xdeadbeef * length`.
fn murmur(key: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let length = key.len() as u32;
    let seed = 0xdead_beef_u32.wrapping_mul(length);
    let mut h = seed ^ length;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// `hash_jenkins`: Bob Jenkins' lookup3 `hashlittle` with initval 13 (its aligned and unaligned paths agree on a
/// little-endian machine; this is the byte-at-a-time one).
fn jenkins(key: &[u8]) -> u32 {
    let rot = |x: u32, k: u32| x.rotate_left(k);
    let (mut a, mut b, mut c) = {
        let v = 0xdead_beef_u32.wrapping_add(key.len() as u32).wrapping_add(13);
        (v, v, v)
    };
    let mut k = key;
    while k.len() > 12 {
        a = a.wrapping_add(u32::from_le_bytes([k[0], k[1], k[2], k[3]]));
        b = b.wrapping_add(u32::from_le_bytes([k[4], k[5], k[6], k[7]]));
        c = c.wrapping_add(u32::from_le_bytes([k[8], k[9], k[10], k[11]]));
        // mix(a, b, c)
        a = a.wrapping_sub(c);
        a ^= rot(c, 4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= rot(a, 6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= rot(b, 8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c);
        a ^= rot(c, 16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= rot(a, 19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= rot(b, 4);
        b = b.wrapping_add(a);
        k = &k[12..];
    }
    if k.is_empty() {
        return c;
    }
    // The last 1..=12 bytes, zero-padded, as three little-endian words.
    let mut tail = [0u8; 12];
    tail[..k.len()].copy_from_slice(k);
    let word = |i: usize| u32::from_le_bytes([tail[i], tail[i + 1], tail[i + 2], tail[i + 3]]);
    a = a.wrapping_add(word(0));
    b = b.wrapping_add(word(4));
    c = c.wrapping_add(word(8));
    // final(a, b, c)
    c ^= b;
    c = c.wrapping_sub(rot(b, 14));
    a ^= c;
    a = a.wrapping_sub(rot(c, 11));
    b ^= a;
    b = b.wrapping_sub(rot(a, 25));
    c ^= b;
    c = c.wrapping_sub(rot(b, 16));
    a ^= c;
    a = a.wrapping_sub(rot(c, 4));
    b ^= a;
    b = b.wrapping_sub(rot(a, 14));
    c ^= b;
    c.wrapping_sub(rot(b, 24))
}

/// twemproxy's `crc16tab` (XMODEM, polynomial 0x1021).
static CRC16_TABLE: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = (n as u16) << 8;
        let mut i = 0;
        while i < 8 {
            c = if c & 0x8000 != 0 { (c << 1) ^ 0x1021 } else { c << 1 };
            i += 1;
        }
        t[n] = c;
        n += 1;
    }
    t
};

#[cfg(test)]
mod tests;
