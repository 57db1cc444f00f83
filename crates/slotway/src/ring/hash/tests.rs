//! Known vectors for every hash. They were computed by twemproxy's own code: `src/hashkit/*.c` of its 0.5.0
//! release compiled with gcc 12 on x86-64 (signed `char`) and again with `-funsigned-char` (how ARM builds read
//! bytes). The integration test `tests/twemproxy.rs` checks the same functions against the `nutcracker` binary.
use super::*;

/// The keys, in the order of each row: ASCII, longer ASCII, bytes >= 0x80 (6 bytes), a 3-byte key ending in 0xff
/// (hsieh's tail reads it as a `char`), the empty key, and a tagged key with a 4-byte UTF-8 character.
const KEYS: [&[u8]; 6] =
    [b"apple", b"foo:bar:1234567", b"\xe9t\xe9\xff\x80z", b"ab\xff", b"", b"user:{42}:\xf0\x9f\x98\x80-payload!"];

/// (hash, values with signed chars, values with unsigned chars)
const VECTORS: [(&str, [u32; 6], [u32; 6]); 12] = [
    (
        "one_at_a_time",
        [2297466611, 3339666207, 419255689, 100913432, 0, 1939688044],
        [2297466611, 3339666207, 145584635, 4036555743, 0, 1031195757],
    ),
    (
        "md5",
        [3195025439, 3864046316, 2011779726, 2192293236, 3649838548, 3852413777],
        [3195025439, 3864046316, 2011779726, 2192293236, 3649838548, 3852413777],
    ),
    (
        "crc16",
        [3662830516, 3915770039, 3350670305, 2088034275, 0, 921848862],
        [3662830516, 3915770039, 3350670305, 2088034275, 0, 921848862],
    ),
    ("crc32", [10542, 2921, 4711, 19613, 0, 29051], [10542, 2921, 4711, 19613, 0, 29051]),
    (
        "crc32a",
        [2838417488, 2338925207, 308778960, 3432881837, 0, 1903940464],
        [2838417488, 2338925207, 308778960, 3432881837, 0, 1903940464],
    ),
    (
        "fnv1_64",
        [473199127, 1973099604, 2406095204, 2488291927, 2216829733, 1997976237],
        [473199127, 1973099604, 1751968612, 1806675287, 2216829733, 136676525],
    ),
    (
        "fnv1a_64",
        [1488911807, 2195947130, 2654147514, 4206756399, 2216829733, 4213965233],
        [1488911807, 2195947130, 4249834426, 88229167, 2216829733, 830260657],
    ),
    (
        "fnv1_32",
        [67176023, 1970023444, 2226395972, 3160658135, 2166136261, 3465202765],
        [67176023, 1970023444, 531187012, 1134309335, 2166136261, 2272635981],
    ),
    (
        "fnv1a_32",
        [280767167, 1157946074, 2822990458, 3283607919, 2166136261, 2441988305],
        [280767167, 1157946074, 1709867642, 2789683823, 2166136261, 779985617],
    ),
    (
        "hsieh",
        [3738850110, 1832785397, 1110006859, 1977393110, 0, 3305075577],
        [3738850110, 1832785397, 1110006859, 3485144093, 0, 3305075577],
    ),
    (
        "murmur",
        [4142305122, 2446603138, 3422548555, 3968893618, 0, 2559423977],
        [4142305122, 2446603138, 3422548555, 3968893618, 0, 2559423977],
    ),
    (
        "jenkins",
        [1442444624, 3944160316, 3135049850, 3920586603, 3735928572, 1278148847],
        [1442444624, 3944160316, 3135049850, 3920586603, 3735928572, 1278148847],
    ),
];

#[test]
fn every_hash_matches_twemproxys_code() {
    for (name, signed, unsigned) in VECTORS {
        let hash = KeyHash::parse(name).unwrap_or_else(|| panic!("{name} is a known hash"));
        assert_eq!(hash.name(), name);
        for (i, key) in KEYS.iter().enumerate() {
            assert_eq!(hash.hash(key, CharSign::Signed), signed[i], "{name}({key:?}), signed chars");
            assert_eq!(hash.hash(key, CharSign::Unsigned), unsigned[i], "{name}({key:?}), unsigned chars");
        }
    }
}

#[test]
fn fnv1a_64_is_32_bit_with_sign_extended_bytes() {
    // The vector from the issue, and the textbook 32-bit FNV-1a with the truncated 64-bit basis for ASCII.
    assert_eq!(fnv1a_64(b"apple", CharSign::Signed), 1_488_911_807);
    let textbook = |key: &[u8]| key.iter().fold(0x8422_2325u32, |h, &b| (h ^ b as u32).wrapping_mul(0x1b3));
    assert_eq!(fnv1a_64(b"apple", CharSign::Signed), textbook(b"apple"));
    // A byte >= 0x80 is widened with its sign on x86-64: the result differs from the textbook one there only.
    assert_ne!(fnv1a_64(b"\xe9", CharSign::Signed), textbook(b"\xe9"));
    assert_eq!(fnv1a_64(b"\xe9", CharSign::Unsigned), textbook(b"\xe9"));
}

#[test]
fn unknown_names_are_not_guessed() {
    assert_eq!(KeyHash::parse("fnv1a_64"), Some(KeyHash::Fnv1a_64));
    assert_eq!(KeyHash::parse("FNV1A_64"), None);
    assert_eq!(KeyHash::parse("xxhash"), None);
    assert_eq!(KeyHash::ALL.len(), 12);
}

#[test]
fn md5_points_are_the_digest_as_little_endian_words() {
    // MD5("") = d41d8cd98f00b204e9800998ecf8427e
    assert_eq!(md5_points(b""), [0xd98c_1dd4, 0x04b2_008f, 0x9809_80e9, 0x7e42_f8ec]);
    assert_eq!(md5_u32(b"apple", 0), KeyHash::Md5.hash(b"apple", CharSign::Signed));
}
