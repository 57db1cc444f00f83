//! The fuzz targets' bodies (`fuzz/src/lib.rs`) as ordinary tests, so every `cargo test` exercises them without
//! cargo-fuzz or a nightly toolchain: each body runs over its committed seed corpus (`fuzz/corpus/<target>/`)
//! and over pseudo-random mutations of it.
//!
//! `FUZZ_SMOKE_CASES` (default 5000) sets the number of mutated inputs per target, `FUZZ_SMOKE_SEED` the PRNG
//! seed (default fixed, so a failure reproduces). `FUZZ_SMOKE_SECONDS` instead runs mutated inputs for that long
//! per target: `scripts/fuzz.sh` falls back to that when cargo-fuzz can't be installed. A failing input is written to `target/fuzz-smoke/<target>-*`;
//! replay it with `cargo fuzz run <target> FILE` or add it to the corpus. For real fuzzing: `scripts/fuzz.sh`.
#[path = "../../../fuzz/src/lib.rs"]
mod bodies;

use bodies::Rng;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Tokens the mutator inserts: RESP framing, and command names and keywords the routing rules look at.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"*",
    b"$",
    b"*1\r\n",
    b"*2\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"$-1\r\n",
    b"$0\r\n\r\n",
    b"$1\r\nk\r\n",
    b"+OK\r\n",
    b":",
    b"_\r\n",
    b",",
    b"#t",
    b"(",
    b"=",
    b"!",
    b"%",
    b"%1\r\n",
    b"~",
    b">",
    b"|",
    b"|1\r\n",
    b"?",
    b"\"",
    b"'",
    b"\\x",
    b"\\",
    b" ",
    b"\n",
    b"-1",
    b"0",
    b"1",
    b"2",
    b"16384",
    b"9223372036854775807",
    b"{",
    b"}",
    b"{a}",
    b"MSET",
    b"MGET",
    b"DEL",
    b"EVAL",
    b"XREAD",
    b"BLOCK",
    b"STREAMS",
    b"SORT",
    b"STORE",
    b"LIMIT",
    b"GET",
    b"BY",
    b"SCAN",
    b"INFO",
    b"proxy",
    b"SCRIPT",
    b"LOAD",
    b"OBJECT",
    b"ZUNIONSTORE",
    b"LMPOP",
    b"GEORADIUS",
    b"SPUBLISH",
    b"CLIENT",
    b"MEMORY",
    b"USAGE",
    b"FUNCTION",
    b"CONFIG",
];

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A seed with a few random edits: byte flips, insertions, deletions, tokens, duplicated ranges, splices.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if at < v.len() => v[at] ^= 1 << rng.below(8),
            1 => v.insert(at, rng.next() as u8),
            2 if at < v.len() => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                v.drain(at..end);
            }
            3 | 4 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            5 if at < v.len() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                let dup = v[at..end].to_vec();
                v.splice(at..at, dup);
            }
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let end = (from + rng.below(32)).min(other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
        }
    }
    v.truncate(4096);
    v
}

fn run(target: &str, body: fn(&[u8])) {
    let seeds = corpus(target);
    let mut rng = Rng::new(env_u64("FUZZ_SMOKE_SEED", 0x5107_03a7));
    // A time budget (the fallback for cargo-fuzz) or a number of cases (every `cargo test`).
    let budget = std::env::var("FUZZ_SMOKE_SECONDS").ok().and_then(|v| v.parse().ok()).map(Duration::from_secs);
    let cases = if budget.is_some() { u64::MAX } else { env_u64("FUZZ_SMOKE_CASES", 5000) };
    let start = Instant::now();
    let mut ran = 0u64;
    let mutated = (0..cases).map(|_| mutate(&mut rng, &seeds));
    for input in seeds.iter().cloned().chain(mutated) {
        if budget.is_some_and(|b| ran >= seeds.len() as u64 && start.elapsed() >= b) {
            break;
        }
        ran += 1;
        let input = &input;
        if let Err(panic) = std::panic::catch_unwind(|| body(input)) {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-smoke");
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{target}-{:016x}", Rng::for_input(input).next()));
            let _ = std::fs::write(&file, input);
            eprintln!("{target}: failing input {:?} written to {}", String::from_utf8_lossy(input), file.display());
            std::panic::resume_unwind(panic);
        }
    }
    if budget.is_some() {
        println!("{target}: {ran} inputs in {:.1?} without a failure", start.elapsed());
    }
}

#[test]
fn request_decoder() {
    run("request_decoder", bodies::request_decoder);
}

#[test]
fn reply_parser() {
    run("reply_parser", bodies::reply_parser);
}

#[test]
fn routing() {
    run("routing", bodies::routing);
}
