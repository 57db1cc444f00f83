#!/usr/bin/env bash
# Fuzzes slotway with cargo-fuzz (libFuzzer): every target in fuzz/fuzz_targets/, one after the other.
#
#   ./scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Default: 60 s per target, every target. Installs cargo-fuzz if missing (cargo install --locked). Works on a
# stable toolchain: RUSTC_BOOTSTRAP=1 lets rustc take cargo-fuzz's nightly-only flags (ASan's -Zsanitizer).
# Each target starts from the committed seeds (fuzz/corpus/<target>/, read only) plus what earlier runs found
# (fuzz/work/<target>/, not committed), with fuzz/dicts/ as dictionary.
# Environment: FUZZ_SANITIZER=none|address (default none: slotway and resp forbid unsafe code, and ASan
# halves the speed), FUZZ_MAX_LEN (input bytes, default 4096), FUZZ_RSS_LIMIT_MB (default 1024; also the
# largest single allocation), FUZZ_TIMEOUT (seconds one input may take, default 10), FUZZ_FALLBACK=1 (for CI:
# when cargo-fuzz can't be installed, run the same target bodies on random mutations of the corpus for the same
# budget, through the fuzz_smoke test).
# Exits non-zero when a target crashes, hangs or runs out of memory, printing the input that did it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_PER_TARGET=60
if (($#)); then
  case "$1" in
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *[!0-9]*) ;;
    *) SECONDS_PER_TARGET=$1; shift ;;
  esac
fi
SANITIZER=${FUZZ_SANITIZER:-none}
MAX_LEN=${FUZZ_MAX_LEN:-4096}
RSS_LIMIT_MB=${FUZZ_RSS_LIMIT_MB:-1024}
TIMEOUT=${FUZZ_TIMEOUT:-10}
export RUSTC_BOOTSTRAP=1

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  step "installing cargo-fuzz"
  if ! cargo install cargo-fuzz --locked; then
    [[ "${FUZZ_FALLBACK:-0}" == 1 ]] || { echo "fuzz.sh: cannot install cargo-fuzz" >&2; exit 1; }
    # Not coverage-guided, but the same bodies and checks over the same budget; the seed is printed so a
    # failure reproduces (FUZZ_SMOKE_SEED=... cargo test -p slotway --test fuzz_smoke).
    seed=$(( $(date +%s) ))
    step "cargo-fuzz unavailable: running the target bodies on random inputs, ${SECONDS_PER_TARGET}s each (seed $seed)"
    filter=()
    (($#)) && filter=(--exact "$@")
    env -u RUSTC_BOOTSTRAP FUZZ_SMOKE_SECONDS="$SECONDS_PER_TARGET" FUZZ_SMOKE_SEED="$seed" \
      cargo test -p slotway --test fuzz_smoke -- --nocapture --test-threads=1 "${filter[@]}"
    exit $?
  fi
fi

if (($#)); then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cargo fuzz list)
fi

step "building ${TARGETS[*]} (sanitizer: $SANITIZER)"
cargo fuzz build --sanitizer "$SANITIZER"

failed=()
for t in "${TARGETS[@]}"; do
  step "fuzzing $t for ${SECONDS_PER_TARGET}s"
  work="fuzz/work/$t"
  artifacts="fuzz/artifacts/$t"
  mkdir -p "$work" "$artifacts"
  dict="fuzz/dicts/$t.dict"
  [[ -f "$dict" ]] || dict=fuzz/dicts/resp.dict
  log="fuzz/work/$t.log"
  before=$(find "$artifacts" -type f | sort)
  if cargo fuzz run --sanitizer "$SANITIZER" "$t" "$work" "fuzz/corpus/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -max_len="$MAX_LEN" -rss_limit_mb="$RSS_LIMIT_MB" \
      -timeout="$TIMEOUT" -dict="$dict" -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
  else
    failed+=("$t")
    # libFuzzer's report (the panic message and stack are in it), then the input(s) it saved.
    report=$(awk '/panicked at|ERROR: libFuzzer|==ERROR/ {p = 1} p {print} /^Base64:/ {exit}' "$log" | head -n 80)
    if [[ -n "$report" ]]; then echo "$report"; else tail -n 40 "$log"; fi
    new=$(comm -13 <(echo "$before") <(find "$artifacts" -type f | sort) | grep . || true)
    echo
    echo "fuzz.sh: $t FAILED; log: $log"
    for f in $new; do
      echo "fuzz.sh: crash input: $f  (replay: RUSTC_BOOTSTRAP=1 cargo fuzz run -s $SANITIZER $t $f)"
    done
  fi
done

if ((${#failed[@]})); then
  step "FAILED: ${failed[*]}"
  exit 1
fi
step "all ${#TARGETS[@]} targets ran ${SECONDS_PER_TARGET}s without a crash"
