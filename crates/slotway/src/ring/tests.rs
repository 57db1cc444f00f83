use super::*;

fn spec(distribution: Distribution, servers: &[(&str, u32)]) -> RingSpec {
    RingSpec {
        distribution,
        hash: KeyHash::Fnv1a_64,
        sign: CharSign::Signed,
        hash_tag: Some(*b"{}"),
        servers: servers.iter().map(|&(n, w)| RingServer { name: n.as_bytes().to_vec(), weight: w }).collect(),
    }
}

#[test]
fn points_per_server_follow_twemproxys_float_arithmetic() {
    // Equal weights: 160 points each, except where 32-bit float rounding makes (1/n)*40*n fall just below 40.
    // The list of such pool sizes up to 200 was printed by twemproxy's expression compiled with gcc on x86-64.
    let short = [25u32, 47, 50, 55, 61, 71, 94, 100, 107, 109, 110, 115, 122, 142, 159, 163, 188, 193, 200];
    for n in 1..=200u32 {
        let want = if short.contains(&n) { 156 } else { 160 };
        assert_eq!(ketama_points(1, n, n), want, "{n} servers");
    }
    // Weights: 1, 2, 3, 4 of 10 over 4 servers.
    assert_eq!([1, 2, 3, 4].map(|w| ketama_points(w, 10, 4)), [64, 128, 192, 256]);
    let names: Vec<String> = (0..25).map(|i| format!("server{i}")).collect();
    let ring = Ring::new(spec(Distribution::Ketama, &names.iter().map(|n| (n.as_str(), 1)).collect::<Vec<_>>()));
    assert!((0..25).all(|i| ring.points_of(i) == 156));
    assert_eq!(ring.live.load().points.len(), 25 * 156);
}

#[test]
fn servers_are_sorted_by_length_then_bytes() {
    let ring = Ring::new(spec(Distribution::Ketama, &[("bb", 1), ("a", 1), ("ab", 1), ("c", 1)]));
    assert_eq!(ring.sorted, vec![1, 3, 2, 0], "a, c, ab, bb");
    // modula lists them in that order, each `weight` times.
    let ring = Ring::new(spec(Distribution::Modula, &[("bb", 2), ("a", 1), ("ab", 1)]));
    let order: Vec<u32> = ring.live.load().points.iter().map(|&(_, s)| s).collect();
    assert_eq!(order, vec![1, 2, 0, 0]);
}

#[test]
fn modula_takes_the_hash_modulo_the_entries() {
    let ring = Ring::new(spec(Distribution::Modula, &[("a", 1), ("b", 1), ("c", 1)]));
    for key in ["apple", "x", "user:1000", ""] {
        let h = ring.key_hash(key.as_bytes());
        assert_eq!(ring.locate(key.as_bytes()), (h % 3) as usize, "{key}");
    }
    // fnv1a_64("apple") = 1488911807 = 3 * 496303935 + 2
    assert_eq!(ring.locate(b"apple"), 2);
}

#[test]
fn ketama_takes_the_first_point_at_or_after_the_hash() {
    let ring = Ring::new(spec(Distribution::Ketama, &[("a", 1), ("b", 1)]));
    let points = ring.live.load().points.clone();
    assert_eq!(points.len(), 320);
    assert!(points.windows(2).all(|w| w[0].0 <= w[1].0));
    // "a-0" gives the first four points of server a.
    let a0 = hash::md5_points(b"a-0");
    for p in a0 {
        assert!(points.contains(&(p, 0)));
    }
    for key in ["apple", "banana", "k:1", "zzz"] {
        let h = ring.key_hash(key.as_bytes());
        let want = points.iter().find(|&&(p, _)| p >= h).unwrap_or(&points[0]).1 as usize;
        assert_eq!(ring.locate(key.as_bytes()), want, "{key}");
    }
    // A hash above every point wraps to the first; one equal to a point takes that point.
    let last = points.last().unwrap().0;
    assert!(last < u32::MAX);
    assert_eq!(ring.locate_hash(last + 1), points[0].1 as usize);
    assert_eq!(ring.locate_hash(points[7].0), points[7].1 as usize);
    assert_eq!(ring.locate_hash(0), points[0].1 as usize);
}

#[test]
fn hash_tags_apply_to_a_non_empty_enclosed_part() {
    let tag = *b"{}";
    assert_eq!(tagged(b"user:{42}:name", tag), b"42");
    assert_eq!(tagged(b"{42}", tag), b"42");
    assert_eq!(tagged(b"user:{}:name", tag), b"user:{}:name", "empty tag: the whole key");
    assert_eq!(tagged(b"user:{42", tag), b"user:{42", "no closing character");
    assert_eq!(tagged(b"}x{y}", tag), b"y", "the first opening character, then the first closing one after it");
    assert_eq!(tagged(b"a{b{c}d}", tag), b"b{c");
    // Any two characters, even the same one twice.
    assert_eq!(tagged(b"a:b:c", *b"::"), b"b");
    let ring = Ring::new(spec(Distribution::Ketama, &[("a", 1), ("b", 1), ("c", 1)]));
    for i in 0..200 {
        let (x, y) = (format!("{{tag{i}}}:one"), format!("other:{{tag{i}}}"));
        assert_eq!(ring.locate(x.as_bytes()), ring.locate(y.as_bytes()));
    }
    assert_eq!(ring.key_hash(b""), 0);
    assert_eq!(ring.key_hash(b"{}"), KeyHash::Fnv1a_64.hash(b"{}", CharSign::Signed));
}

#[test]
fn ejecting_a_server_moves_only_its_keys_with_ketama() {
    let ring = Ring::new(spec(Distribution::Ketama, &[("a", 1), ("b", 1), ("c", 1), ("d", 1)]));
    let keys: Vec<String> = (0..2000).map(|i| format!("key:{i}")).collect();
    let before: Vec<usize> = keys.iter().map(|k| ring.locate(k.as_bytes())).collect();
    assert!(ring.set_ejected(2, true));
    assert!(!ring.set_ejected(2, true), "already ejected");
    assert_eq!(ring.points_of(2), 0);
    // Three live servers: 160 points each again.
    assert_eq!(ring.points_of(0), 160);
    for (k, &was) in keys.iter().zip(&before) {
        let now = ring.locate(k.as_bytes());
        assert_ne!(now, 2);
        if was != 2 {
            assert_eq!(now, was, "{k} moved although its server stayed");
        }
    }
    assert!(ring.set_ejected(2, false));
    let after: Vec<usize> = keys.iter().map(|k| ring.locate(k.as_bytes())).collect();
    assert_eq!(after, before);
    // The last live server stays.
    for i in 0..3 {
        assert!(ring.set_ejected(i, true));
    }
    assert!(!ring.set_ejected(3, true));
    assert_eq!(ring.locate(b"anything"), 3);
}

#[test]
fn one_server_takes_every_key() {
    let ring = Ring::new(spec(Distribution::Modula, &[("only", 3)]));
    assert_eq!(ring.locate(b"x"), 0);
    assert_eq!(ring.locate(b""), 0);
}

#[test]
fn very_long_names_are_cut_as_twemproxy_cuts_them() {
    // "<name>-<i>" is formatted into 273 bytes: longer strings lose their tail, so two long names that differ only
    // after byte 272 share their points.
    let long_a = "a".repeat(300);
    let long_b = format!("{}b", "a".repeat(299));
    let ring = Ring::new(spec(Distribution::Ketama, &[(&long_a, 1), (&long_b, 1)]));
    let points = ring.live.load().points.clone();
    let first: Vec<u32> = points.iter().filter(|p| p.1 == 0).map(|p| p.0).collect();
    let second: Vec<u32> = points.iter().filter(|p| p.1 == 1).map(|p| p.0).collect();
    assert_eq!(first, second);
}
