//! Small helpers shared by the decoders.

/// Parses a decimal `i64` exactly as Redis's `string2ll` does: an optional `-`, then digits with no leading zero
/// (except `0` itself), no `+`, no spaces, no overflow. `-0` is rejected.
#[inline]
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] => return if neg { None } else { Some(0) },
        [b'1'..=b'9', ..] if digits.len() <= 19 => {}
        _ => return None,
    }
    // 19 digits never overflow a u64.
    let mut v: u64 = 0;
    for &d in digits {
        let d = d.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as u64;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else if v > i64::MAX as u64 {
        None
    } else {
        Some(v as i64)
    }
}

/// `buf[i..i + 2] == "\r\n"` (false if not all there).
#[inline(always)]
pub(crate) fn crlf_at(buf: &[u8], i: usize) -> bool {
    match buf.get(i..i.wrapping_add(2)) {
        Some(two) => two == b"\r\n",
        None => false,
    }
}

/// Fast path for a length line: a canonical non-negative number of at most 18 digits starting at `start` and
/// followed by `\r\n`, all present in `buf`: `Some((value, index of the \r))`. Anything else (`-1`, a partial
/// line, garbage) gives `None` and the caller takes its general path, which decides between waiting and erroring.
#[inline(always)]
pub(crate) fn fast_len(buf: &[u8], start: usize) -> Option<(u64, usize)> {
    let s = buf.get(start..)?;
    let first = *s.first()?;
    let mut v = first.wrapping_sub(b'0') as u64;
    if v > 9 {
        return None;
    }
    let mut i = 1;
    loop {
        let d = s.get(i)?.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        if i == 18 {
            return None;
        }
        v = v * 10 + d as u64;
        i += 1;
    }
    if !crlf_at(s, i) || (i > 1 && first == b'0') {
        return None;
    }
    Some((v, start + i))
}

/// Position of the first `\r` at or after `from`. Length and count lines are a few bytes long, so a short
/// inline loop comes before memchr's setup cost.
#[inline]
pub(crate) fn find_cr(buf: &[u8], from: usize) -> Option<usize> {
    let short_end = buf.len().min(from.saturating_add(24));
    let mut i = from;
    while i < short_end {
        if buf[i] == b'\r' {
            return Some(i);
        }
        i += 1;
    }
    if short_end >= buf.len() {
        return None;
    }
    memchr::memchr(b'\r', &buf[short_end..]).map(|j| short_end + j)
}

/// `b` printed as Redis's `%c` would (a byte, shown as a char).
pub(crate) fn byte_char(b: u8) -> char {
    b as char
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string2ll_rules() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"12"), Some(12));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
            b"12345678901234567890123",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn fast_len_accepts_only_the_common_case() {
        assert_eq!(fast_len(b"$3\r\n", 1), Some((3, 2)));
        assert_eq!(fast_len(b"$0\r\n", 1), Some((0, 2)));
        assert_eq!(fast_len(b"*123456789012345678\r\n", 1), Some((123456789012345678, 19)));
        for bad in
            [&b"$\r\n"[..], b"$01\r\n", b"$-1\r\n", b"$3\r", b"$3", b"$", b"$3x\r\n", b"$1234567890123456789\r\n"]
        {
            assert_eq!(fast_len(bad, 1), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(fast_len(b"", 1), None);
    }

    #[test]
    fn find_cr_short_and_long() {
        assert_eq!(find_cr(b"12\r\n", 0), Some(2));
        assert_eq!(find_cr(b"12\r\n", 3), None);
        assert_eq!(find_cr(b"12", 0), None);
        let mut long = vec![b'x'; 100];
        assert_eq!(find_cr(&long, 0), None);
        long.push(b'\r');
        assert_eq!(find_cr(&long, 0), Some(100));
        assert_eq!(find_cr(&long, 50), Some(100));
        assert_eq!(find_cr(&long, 101), None);
    }
}
