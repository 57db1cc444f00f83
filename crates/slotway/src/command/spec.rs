//! Key positions: Redis 7 key specs (interpreted as `getKeysUsingKeySpecs` in Redis's db.c does), the legacy
//! first/last/step triple, and the built-in rules for commands whose specs can't say (SORT).
use super::{Args, KeyError};
use smallvec::SmallVec;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum BeginSearch {
    /// The search starts at this argument index (may be negative in theory: counted from the end).
    Index(i32),
    /// The search starts right after `keyword`, looked for from `startfrom` (forward when positive, backward from
    /// `argc + startfrom` when negative).
    Keyword {
        keyword: Box<[u8]>,
        startfrom: i32,
    },
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum FindKeys {
    /// `lastkey` relative to the begin index (negative: from the end, or with `limit`, a fraction of the rest).
    Range {
        lastkey: i32,
        keystep: i32,
        limit: i32,
    },
    /// The number of keys is the argument at `begin + keynumidx`; keys start at `begin + firstkey`.
    Keynum {
        keynumidx: i32,
        firstkey: i32,
        keystep: i32,
    },
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KeySpec {
    pub begin: BeginSearch,
    pub find: FindKeys,
    /// `not_key`: the argument names a slot without being a key (SPUBLISH's shard channel). Included for routing.
    pub not_key: bool,
    /// `incomplete`: the spec may miss keys; the command needs a built-in rule.
    pub incomplete: bool,
    /// `variable_flags`: with `movablekeys`, a module's getkeys callback decides.
    pub variable_flags: bool,
}

impl KeySpec {
    /// Whether Redis could evaluate this spec at all (known search types, sane steps).
    pub fn is_complete(&self) -> bool {
        !self.incomplete && !matches!(self.begin, BeginSearch::Unknown) && !matches!(self.find, FindKeys::Unknown)
    }
}

/// Where a command's keys are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum KeyRule {
    /// Keyless.
    None,
    /// Redis 7 key specs (all complete).
    Specs(Arc<[KeySpec]>),
    /// Redis 6 style first/last/step (first > 0).
    Legacy { first: i32, last: i32, step: i32 },
    /// SORT / SORT_RO: the key at 1, plus the argument after the last STORE (options parsed as Redis does).
    Sort,
    /// The command has keys but they can't be found without the server (module getkeys callbacks, incomplete or
    /// unknown specs without a built-in rule, MIGRATE).
    Unknown,
}

impl KeyRule {
    pub fn has_keys(&self) -> bool {
        !matches!(self, KeyRule::None)
    }
}

/// Which error texts a bad numkeys argument gets: each family of Redis commands words it differently.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum NumkeysWording {
    /// EVAL, EVALSHA, FCALL (and their _RO forms), and unknown commands.
    Eval,
    /// ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE, ZUNION, ZINTER, ZDIFF, ZINTERCARD.
    Zset,
    /// SINTERCARD.
    SinterCard,
    /// LMPOP, BLMPOP, ZMPOP, BZMPOP.
    Mpop,
}

impl NumkeysWording {
    pub fn for_command(name: &str) -> NumkeysWording {
        match name {
            "zunionstore" | "zinterstore" | "zdiffstore" | "zunion" | "zinter" | "zdiff" | "zintercard" => {
                NumkeysWording::Zset
            }
            "sintercard" => NumkeysWording::SinterCard,
            "lmpop" | "blmpop" | "zmpop" | "bzmpop" => NumkeysWording::Mpop,
            _ => NumkeysWording::Eval,
        }
    }

    fn not_integer(self) -> KeyError {
        KeyError::Syntax(
            match self {
                NumkeysWording::Eval | NumkeysWording::Zset => "ERR value is not an integer or out of range",
                NumkeysWording::SinterCard | NumkeysWording::Mpop => "ERR numkeys should be greater than 0",
            }
            .to_string(),
        )
    }

    fn negative(self, name: &str) -> KeyError {
        KeyError::Syntax(match self {
            NumkeysWording::Eval => "ERR Number of keys can't be negative".to_string(),
            NumkeysWording::Zset => format!("ERR at least 1 input key is needed for '{name}' command"),
            NumkeysWording::SinterCard | NumkeysWording::Mpop => "ERR numkeys should be greater than 0".to_string(),
        })
    }

    fn too_many(self) -> KeyError {
        KeyError::Syntax(
            match self {
                NumkeysWording::Eval | NumkeysWording::SinterCard => {
                    "ERR Number of keys can't be greater than number of args"
                }
                NumkeysWording::Zset | NumkeysWording::Mpop => "ERR syntax error",
            }
            .to_string(),
        )
    }
}

/// Redis's `string2ll`: optional `-`, digits, no leading zeros (except "0"), no `+`, no spaces, fits an i64.
pub(super) fn parse_i64_strict(s: &[u8]) -> Option<i64> {
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || digits.len() != s.len()) {
        return None; // "01", "-0"
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Appends the key positions the specs give for these args, as `getKeysUsingKeySpecs` does with
/// `GET_KEYSPEC_INCLUDE_NOT_KEYS`, except:
/// - a spec whose range falls outside the args contributes nothing (Redis gives up on the whole command and lets
///   the command itself report the syntax error; the node will, as zero or partial keys still reach a node);
/// - a keynum of 0 contributes nothing (Redis calls that out of bounds, then its fallback finds no keys either);
/// - a keynum that is not an integer, negative, or larger than the args is an error worded as the command's own.
pub(super) fn keys_from_specs(
    specs: &[KeySpec],
    name: &str,
    wording: NumkeysWording,
    args: Args<'_>,
    out: &mut SmallVec<[usize; 8]>,
) -> Result<(), KeyError> {
    let argc = args.len() as i64;
    for spec in specs {
        let mut first: i64 = match &spec.begin {
            BeginSearch::Index(i) => *i as i64,
            BeginSearch::Keyword { keyword, startfrom } => {
                let startfrom = *startfrom as i64;
                let start = if startfrom > 0 { startfrom } else { argc + startfrom };
                let end = if startfrom > 0 { argc - 1 } else { 1 };
                let mut found = 0;
                let mut i = start;
                while i != end {
                    if i >= argc || i < 1 {
                        break;
                    }
                    if args.get(i as usize).eq_ignore_ascii_case(keyword) {
                        found = i + 1;
                        break;
                    }
                    i = if start <= end { i + 1 } else { i - 1 };
                }
                if found == 0 {
                    continue;
                }
                found
            }
            BeginSearch::Unknown => continue,
        };
        let (last, step) = match spec.find {
            FindKeys::Range { lastkey, keystep, limit } => {
                let (lastkey, limit) = (lastkey as i64, limit as i64);
                let last = if lastkey >= 0 {
                    first + lastkey
                } else if limit == 0 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (last, keystep as i64)
            }
            FindKeys::Keynum { keynumidx, firstkey, keystep } => {
                let at = first + keynumidx as i64;
                if at < 0 || at >= argc {
                    continue;
                }
                let numkeys = match parse_i64_strict(args.get(at as usize)) {
                    Some(n) if n < 0 => return Err(wording.negative(name)),
                    Some(n) => n,
                    None => return Err(wording.not_integer()),
                };
                first += firstkey as i64;
                if numkeys == 0 {
                    continue;
                }
                let last = first.saturating_add(numkeys - 1);
                if last >= argc {
                    return Err(wording.too_many());
                }
                (last, keystep as i64)
            }
            FindKeys::Unknown => continue,
        };
        if first < 1 || last >= argc || last < first || first >= argc {
            continue;
        }
        let step = step.max(1);
        let mut i = first;
        while i <= last {
            out.push(i as usize);
            i += step;
        }
    }
    Ok(())
}

/// `getKeysUsingLegacyRangeSpec`: keys `first..=last` (negative `last` counts from the end) every `step`; none at
/// all when the range runs past the args.
pub(super) fn keys_from_legacy(first: i32, last: i32, step: i32, args: Args<'_>, out: &mut SmallVec<[usize; 8]>) {
    let argc = args.len() as i64;
    let (first, step) = (first as i64, (step as i64).max(1));
    let last = if last < 0 { argc + last as i64 } else { last as i64 };
    if first < 1 {
        return;
    }
    let mut positions: SmallVec<[usize; 8]> = SmallVec::new();
    let mut i = first;
    while i <= last {
        if i >= argc {
            return;
        }
        positions.push(i as usize);
        i += step;
    }
    out.extend(positions);
}

/// `sortGetKeys`: the key at 1, and (`store`: SORT, not SORT_RO) the argument after the last `STORE`, skipping
/// the arguments of LIMIT (2), GET (1) and BY (1).
pub(super) fn keys_for_sort(args: Args<'_>, out: &mut SmallVec<[usize; 8]>, store: bool) {
    let argc = args.len();
    if argc < 2 {
        return;
    }
    out.push(1);
    if !store {
        return;
    }
    let mut store = None;
    let mut i = 2;
    while i < argc {
        let arg = args.get(i);
        if arg.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if arg.eq_ignore_ascii_case(b"get") || arg.eq_ignore_ascii_case(b"by") {
            i += 1;
        } else if arg.eq_ignore_ascii_case(b"store") && i + 1 < argc {
            store = Some(i + 1);
        }
        i += 1;
    }
    out.extend(store);
}
