#!/usr/bin/env bash
# The project's test command: lint, build, then every test.
#
#   ./scripts/test.sh [--no-lint] [--profile NAME] [-- extra args for the test runner]
#
# Installs what is missing first (redis-server, redis-sentinel, redis-tools, openssl, shellcheck,
# systemd, util-linux, prometheus, prometheus-redis-exporter, nutcracker through apt-get; cargo-nextest
# through `cargo install`, falling back to `cargo test`).
# Runs: cargo fmt --check, cargo clippy -D warnings (fail fast), cargo build
# --workspace --all-targets, cargo nextest run --workspace --no-fail-fast
# (profile `ci` when $CI is set, else `default`; see .config/nextest.toml).
# Exits non-zero when anything fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

LINT=1
PROFILE=""
EXTRA=()
while (($#)); do
  case "$1" in
    --no-lint) LINT=0; shift ;;
    --profile) PROFILE="$2"; shift 2 ;;
    --) shift; EXTRA+=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
if [[ -z "$PROFILE" ]]; then
  if [[ -n "${CI:-}" ]]; then PROFILE=ci; else PROFILE=default; fi
fi

step() { printf '\n==> %s\n' "$*"; }

# ------------------------------------------------------------ toolchain
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "test.sh: cargo not found (install Rust with rustup)" >&2; exit 1; }

# ------------------------------------------------------------ system packages
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
{ command -v redis-cli >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1; } || missing+=(redis-tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The deployment checks (crates/slotway/tests/deploy.rs): shellcheck, systemd-analyze, setpriv and unshare.
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
{ command -v setpriv >/dev/null 2>&1 && command -v unshare >/dev/null 2>&1; } || missing+=(util-linux)
# Prometheus, promtool and the Redis exporter for crates/slotway/tests/observe.rs.
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || missing+=(prometheus)
command -v prometheus-redis-exporter >/dev/null 2>&1 || missing+=(prometheus-redis-exporter)
# twemproxy, to compare placement with (crates/slotway/tests/twemproxy.rs); Debian puts it in /usr/sbin.
{ command -v nutcracker >/dev/null 2>&1 || [[ -x /usr/sbin/nutcracker ]]; } || missing+=(nutcracker)
if ((${#missing[@]})); then
  step "installing ${missing[*]}"
  SUDO=()
  [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq "${missing[@]}"
fi

# ------------------------------------------------------------ test runner
RUNNER=nextest
if ! cargo nextest --version >/dev/null 2>&1; then
  if [[ "${SLOTWAY_NO_NEXTEST_INSTALL:-}" != 1 ]]; then
    step "installing cargo-nextest"
    cargo install cargo-nextest --locked || true
  fi
  cargo nextest --version >/dev/null 2>&1 || { echo "test.sh: cargo-nextest unavailable, using cargo test" >&2; RUNNER=cargo-test; }
fi

# ------------------------------------------------------------ lint (fail fast)
if ((LINT)); then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings
fi

# ------------------------------------------------------------ build + test
step "cargo build"
cargo build --workspace --all-targets

if [[ "$RUNNER" == nextest ]]; then
  # nextest does not run doctests; run them first so that nextest's summary
  # is the last thing printed.
  step "cargo test --doc"
  cargo test --workspace --doc
  step "cargo nextest run (profile $PROFILE)"
  cargo nextest run --workspace --no-fail-fast --profile "$PROFILE" "${EXTRA[@]}"
else
  step "cargo test"
  RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}" cargo test --workspace --no-fail-fast "${EXTRA[@]}"
fi
