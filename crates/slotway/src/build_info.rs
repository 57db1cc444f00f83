//! What `slotway --version` and `INFO proxy` say about the build (filled in by `build.rs`).

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (12 hex digits), or `unknown` for a build outside a git checkout.
pub const COMMIT: &str = env!("SLOTWAY_GIT_COMMIT");
/// `release` or `debug`.
pub const PROFILE: &str = env!("SLOTWAY_BUILD_PROFILE");
/// `slotway --version`'s text after the program name.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SLOTWAY_GIT_COMMIT"),
    ", ",
    env!("SLOTWAY_BUILD_PROFILE"),
    " build)"
);
