//! Command-line conventions: `--version`, `--check-config` (like `nginx -t`: every problem at once, nothing
//! connected or bound, exit 0 or 1), `--log-format json`, and `--probe` for container health checks.
mod support;

use std::fs;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;
use support::*;

fn slotway(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slotway"))
        .args(args)
        .env_remove("SLOTWAY_UPSTREAM_PASSWORD")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn version_names_the_commit_and_the_build() {
    let out = slotway(&["--version"], &[]);
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let expected_start = format!("slotway {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&expected_start), "{line}");
    assert!(line.trim_end().ends_with(" build)"), "{line}");
    let commit = line[expected_start.len()..].split(',').next().unwrap();
    // In a git checkout the commit is the one HEAD names (this test runs from one).
    if let Ok(head) = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output() {
        if head.status.success() && std::env::var("SLOTWAY_GIT_COMMIT").is_err() {
            assert_eq!(commit, String::from_utf8_lossy(&head.stdout).trim(), "{line}");
        }
    }
    let profile = if cfg!(debug_assertions) { "debug build)" } else { "release build)" };
    assert!(line.trim_end().ends_with(profile), "{line}");
}

#[test]
fn check_config_accepts_a_valid_file_without_connecting_or_binding() {
    let dir = tempfile::tempdir().unwrap();
    // The listen address is taken by someone else and nothing answers at the seeds: a check must not care.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_seed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let password = dir.path().join("pw");
    fs::write(&password, "hunter2-upstream\n").unwrap();
    let file = dir.path().join("slotway.toml");
    fs::write(
        &file,
        format!(
            r#"
listen = "{}"
metrics_listen = "127.0.0.1:0"
log_format = "json"
[shutdown]
grace_ms = 1000
[cluster]
seeds = ["{dead_seed}"]
[upstream]
password_file = {password:?}
[[users]]
name = "app"
passwords_sha256 = ["{}"]
rules = "on +@all -@dangerous ~app:*"
"#,
            taken.local_addr().unwrap(),
            "a".repeat(64),
        ),
    )
    .unwrap();
    let out = slotway(&["--check-config", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = text(&out);
    assert!(report.contains("configuration OK (sha256 "), "{report}");
    assert!(!report.contains("hunter2"), "a secret in the report: {report}");
    // Flags are checked with the file: a bad one makes the same file fail.
    let out = slotway(&["--check-config", "--config", file.to_str().unwrap(), "--read-from", "nowhere"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn check_config_names_all_five_mistakes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A certificate whose key belongs to another one.
    let other = rcgen::KeyPair::generate().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
    fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    fs::write(dir.path().join("key.pem"), other.serialize_pem()).unwrap();
    let file = dir.path().join("slotway.toml");
    fs::write(
        &file,
        format!(
            r#"
listen = "127.0.0.1:99999"                      # 1: not a port
listen_tls = "127.0.0.1:6443"
workers = 0                                     # 2: out of range
[listen_tls_options]
cert = "{dir}/cert.pem"                         # 3: the key doesn't match the certificate
key = "{dir}/key.pem"
[cluster]
seeds = ["127.0.0.1:7000"]
[upstream]
password = "hunter2-upstream"
password_file = "{dir}/missing-password"        # 4: unreadable
[[users]]
name = "app"
rules = "on +@all >plaintext"                   # 5: a rule slotway refuses
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let out = slotway(&["--check-config", "--config", file.to_str().unwrap()], &[]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    for mistake in [
        "listen: '127.0.0.1:99999' is not an IP:port address",
        "workers must be 1..=256, got 0",
        "client TLS: certificate/key",
        "missing-password",
        "unsupported ACL rule '>plaintext'",
    ] {
        assert!(report.contains(mistake), "{mistake:?} not reported:\n{report}");
    }
    assert!(report.contains("5 problems found"), "{report}");
    assert_eq!(report.lines().filter(|l| l.starts_with("error: ")).count(), 5, "{report}");
    assert!(!report.contains("hunter2") && !report.contains("plaintext\""), "{report}");

    // A file that isn't TOML at all: one problem, exit 1.
    fs::write(&file, "listen = [unterminated\n").unwrap();
    let out = slotway(&["--check-config", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("1 problem found"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_and_the_probe() {
    let cluster = Cluster::start(ClusterOpts::default());
    let metrics = format!("127.0.0.1:{}", free_port());
    let proxy = Proxy::start(&cluster, &["--log-format", "json", "--metrics-listen", &metrics, "--log-level", "debug"]);
    let mut con = proxy.client().await;
    let _: () = redis::cmd("SET").arg("cli:k").arg("v").query_async(&mut con).await.unwrap();

    // The image's HEALTHCHECK: exit 0 while ready, with the answer on stdout.
    let out = slotway(&["--probe", &metrics], &[]);
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).trim()), (Some(0), "200 ready"));
    let out = slotway(&["--probe", &format!("{metrics}/live")], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = slotway(&["--probe", &format!("{metrics}/nope")], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let nobody = format!("127.0.0.1:{}", free_port());
    let out = slotway(&["--probe", &nobody], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    proxy.signal("TERM");
    let mut proxy = proxy;
    assert!(proxy.wait_exit(Duration::from_secs(15)).is_some_and(|s| s.success()), "{}", proxy.log());
    let log = proxy.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 5, "{log}");
    for line in &lines {
        assert!(line.starts_with("{\"timestamp\":\"") && line.ends_with('}'), "not a JSON log line: {line}");
        for field in ["\"level\":", "\"target\":", "\"message\":"] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
    }
    assert!(log.contains("\"message\":\"slotway listening\""), "{log}");
    // An event's own fields are top-level keys.
    assert!(log.contains("\"addr\":\"") && log.contains("\"workers\":"), "{log}");
    assert!(!log.contains(cluster.password_str()), "the upstream password was logged");
}
