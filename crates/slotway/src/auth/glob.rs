//! Redis's glob-style matching (`stringmatchlen` in util.c): `*`, `?`, `[abc]`, `[^a-z]`, `\x`.

/// Whether `string` matches `pattern` (case-sensitive), as Redis's KEYS and ACL key patterns do.
///
/// Iterative with one backtrack point (the last `*`), so it runs in O(len(pattern) × len(string)) even for hostile
/// patterns like `*a*a*a*…b`.
pub fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, string index it currently swallows up to).
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            let step = match p[pi] {
                b'*' => {
                    star = Some((pi + 1, si));
                    pi += 1;
                    continue;
                }
                b'?' => Some(pi + 1),
                b'[' => match class(p, pi, s[si]) {
                    (true, next) => Some(next),
                    (false, _) => None,
                },
                b'\\' if pi + 1 < p.len() => (p[pi + 1] == s[si]).then_some(pi + 2),
                c => (c == s[si]).then_some(pi + 1),
            };
            if let Some(next) = step {
                pi = next;
                si += 1;
                continue;
            }
        }
        match star {
            Some((after, swallowed)) => {
                pi = after;
                si = swallowed + 1;
                star = Some((after, swallowed + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Matches `ch` against the class starting at `p[start] == b'['`; returns whether it matched and the pattern
/// index after the closing `]` (the end of the pattern if there is none, as in Redis).
fn class(p: &[u8], start: usize, ch: u8) -> (bool, usize) {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < p.len() && p[i] != b']' {
        if p[i] == b'\\' && i + 1 < p.len() {
            matched |= p[i + 1] == ch;
            i += 2;
        } else if i + 2 < p.len() && p[i + 1] == b'-' {
            let (lo, hi) = if p[i] <= p[i + 2] { (p[i], p[i + 2]) } else { (p[i + 2], p[i]) };
            matched |= (lo..=hi).contains(&ch);
            i += 3;
        } else {
            matched |= p[i] == ch;
            i += 1;
        }
    }
    (matched != negate, (i + 1).min(p.len()))
}

#[cfg(test)]
mod tests {
    use super::glob_match as m;

    #[test]
    fn redis_glob_semantics() {
        assert!(m(b"*", b""));
        assert!(m(b"app1:*", b"app1:x"));
        assert!(!m(b"app1:*", b"app2:x"));
        assert!(m(b"h?llo", b"hello") && m(b"h?llo", b"hallo") && !m(b"h?llo", b"hllo"));
        assert!(m(b"h*llo", b"heeeello") && m(b"h*llo", b"hllo"));
        assert!(m(b"h[ae]llo", b"hello") && m(b"h[ae]llo", b"hallo") && !m(b"h[ae]llo", b"hillo"));
        assert!(m(b"h[^e]llo", b"hallo") && !m(b"h[^e]llo", b"hello"));
        assert!(m(b"h[a-b]llo", b"hallo") && m(b"h[a-b]llo", b"hbllo") && !m(b"h[a-b]llo", b"hcllo"));
        assert!(m(b"a\\*b", b"a*b") && !m(b"a\\*b", b"axb"));
        assert!(m(b"*a*b*", b"xxaxxbxx") && !m(b"*a*b*", b"xxbxxaxx"));
        // A pathological pattern finishes.
        let long = vec![b'a'; 10_000];
        assert!(!m(b"*a*a*a*a*a*a*a*a*a*b", &long));
        assert!(m(b"*a*a*a*a*a*a*a*a*a*", &long));
    }
}
