//! Build facts for `slotway --version` and `INFO proxy`: the git commit and the build profile.
//!
//! The commit comes from `SLOTWAY_GIT_COMMIT` when set (a container build from a source tree without `.git` passes
//! it as a build argument), else from `git rev-parse`, else it is `unknown`: a source tarball still builds.
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SLOTWAY_GIT_COMMIT");
    let commit = match std::env::var("SLOTWAY_GIT_COMMIT").ok().filter(|c| !c.trim().is_empty()) {
        Some(c) => c.trim().to_string(),
        None => {
            // Rebuild when HEAD moves: HEAD itself, and the branch it points to (loose or packed).
            for path in ["HEAD", "packed-refs"] {
                if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo:rustc-env=SLOTWAY_GIT_COMMIT={commit}");
    // `debug` or `release` (cargo's PROFILE is the base profile: `bench` builds say release, `test` debug).
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=SLOTWAY_BUILD_PROFILE={profile}");
}
