//! The packaging in `deploy/` and the project's shell scripts, checked with the tools operators and CI use:
//! `shellcheck` on every shell script, `systemd-analyze verify` on the unit, the Kubernetes manifests against the
//! Kubernetes API schemas (`kubernetes-validate`, which ships them), `--check-config` on every sample config, and
//! slotway started the way the image and the unit start it: an unprivileged user, a read-only filesystem, the
//! config and secrets from mounted paths, serving a client.
//!
//! The tools: shellcheck, systemd-analyze, setpriv and unshare on PATH (scripts/test.sh installs them), and the
//! Python package `kubernetes_validate` importable by `$SLOTWAY_PYTHON` (else `python3`; `.ci/run` installs it
//! in its venv). When one is missing the test fails if `SLOTWAY_REQUIRE_DEPLOY_TOOLS=1` (set by `.ci/run`) and is
//! skipped with a message otherwise.
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Whether `tool` answers `--version`; when it doesn't: a panic under SLOTWAY_REQUIRE_DEPLOY_TOOLS=1, else false.
fn have(tool: &str, args: &[&str]) -> bool {
    let ok = Command::new(tool).args(args).output().is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("SLOTWAY_REQUIRE_DEPLOY_TOOLS").as_deref() == Ok("1") {
            panic!("SLOTWAY_REQUIRE_DEPLOY_TOOLS=1 but `{tool} {}` does not run", args.join(" "));
        }
        eprintln!("SKIPPED: `{tool}` is not available (scripts/test.sh installs it; .ci/run requires it)");
    }
    ok
}

/// Every shell script in the repository: `*.sh`, and files whose first line is a sh/bash shebang.
fn shell_scripts() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), ".git" | "target" | "work" | "artifacts" | "corpus" | ".dev-cluster") {
                    walk(&path, out);
                }
            } else if name.ends_with(".sh") || {
                let head = fs::read(&path).map(|b| b.into_iter().take(64).collect::<Vec<u8>>()).unwrap_or_default();
                let first = String::from_utf8_lossy(&head);
                let first = first.lines().next().unwrap_or("");
                first.starts_with("#!") && (first.ends_with("/sh") || first.contains("bash") || first.ends_with(" sh"))
            } {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo(), &mut out);
    out.sort();
    out
}

#[test]
fn shellcheck_passes_on_every_shell_script() {
    if !have("shellcheck", &["--version"]) {
        return;
    }
    let scripts = shell_scripts();
    let names: Vec<String> = scripts.iter().map(|p| p.strip_prefix(repo()).unwrap().display().to_string()).collect();
    for expected in [".ci/run", "scripts/test.sh", "scripts/dev-cluster.sh", "bench/run.sh"] {
        assert!(names.iter().any(|n| n == expected), "{expected} not found among {names:?}");
    }
    let out = Command::new("shellcheck").args(&scripts).output().unwrap();
    assert!(out.status.success(), "shellcheck found problems in {names:?}:\n{}", text(&out));

    // The check itself catches a classic mistake.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.sh");
    fs::write(&bad, "#!/bin/bash\nrm -rf $1/data\n").unwrap();
    let out = Command::new("shellcheck").arg(&bad).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("SC2086"), "{}", text(&out));
}

/// The unit with ExecStart and ExecStartPre pointing at the binary under test (verify wants it to exist).
fn unit_for_test(dir: &Path, unit: &str) -> PathBuf {
    let path = dir.join("slotway.service");
    fs::write(&path, unit.replace("/usr/local/bin/slotway", env!("CARGO_BIN_EXE_slotway"))).unwrap();
    path
}

#[test]
fn systemd_unit_verifies() {
    if !have("systemd-analyze", &["--version"]) {
        return;
    }
    let unit = fs::read_to_string(repo().join("deploy/systemd/slotway.service")).unwrap();
    for must in [
        "Type=notify",
        "ExecStartPre=/usr/local/bin/slotway --check-config",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "LimitNOFILE=",
    ] {
        assert!(unit.contains(must), "the unit lacks {must:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(unit_for_test(dir.path(), &unit)).output().unwrap();
    assert!(out.status.success() && text(&out).trim().is_empty(), "systemd-analyze verify:\n{}", text(&out));

    // A broken unit fails the same check.
    let broken = unit.replace("ExecStart=/usr/local/bin/slotway", "ExecStart=slotway-nowhere/slotway");
    let out = Command::new("systemd-analyze").arg("verify").arg(unit_for_test(dir.path(), &broken)).output().unwrap();
    assert!(!out.status.success() || !text(&out).trim().is_empty(), "a broken unit passed verify");
}

/// `$SLOTWAY_PYTHON` (or python3) if it can import `kubernetes_validate`.
fn kubernetes_validate() -> Option<String> {
    let python = std::env::var("SLOTWAY_PYTHON").unwrap_or_else(|_| "python3".to_string());
    if have(&python, &["-c", "import kubernetes_validate"]) {
        Some(python)
    } else {
        None
    }
}

#[test]
fn kubernetes_manifests_match_the_api_schemas() {
    let Some(python) = kubernetes_validate() else { return };
    let dir = repo().join("deploy/kubernetes");
    let manifests = [dir.join("standalone.yaml"), dir.join("nat.yaml")];
    let out = Command::new(&python).args(["-m", "kubernetes_validate", "--strict"]).args(&manifests).output().unwrap();
    let report = text(&out);
    assert!(out.status.success(), "kubernetes-validate:\n{report}");
    for resource in [
        "configmap/slotway-config",
        "deployment/slotway ",
        "service/slotway ",
        "poddisruptionbudget/slotway ",
        "configmap/slotway-nat-config",
        "deployment/slotway-nat",
        "service/slotway-nat",
        "poddisruptionbudget/slotway-nat",
    ] {
        assert!(report.contains(&format!("passed for resource {resource}")), "{resource} not validated:\n{report}");
    }
    for (file, must) in [
        (&manifests[0], &["path: /live", "path: /ready", "readOnlyRootFilesystem: true", "runAsNonRoot: true"][..]),
        (&manifests[1], &["path: /live", "path: /ready", "port: 7005", "mode = \"nat\""][..]),
    ] {
        let text = fs::read_to_string(file).unwrap();
        for m in must {
            assert!(text.contains(m), "{} lacks {m:?}", file.display());
        }
    }

    // A manifest with a wrong type fails.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    fs::write(&bad, fs::read_to_string(&manifests[0]).unwrap().replace("replicas: 2", "replicas: two")).unwrap();
    let out = Command::new(&python).args(["-m", "kubernetes_validate", "--strict"]).arg(&bad).output().unwrap();
    assert!(!out.status.success(), "a Deployment with `replicas: two` passed:\n{}", text(&out));
}

/// The TOML inside a ConfigMap's `slotway.toml: |` block.
fn configmap_toml(yaml: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in yaml.lines() {
        if line.trim_end() == "  slotway.toml: |" {
            inside = true;
            continue;
        }
        if inside {
            if !line.is_empty() && !line.starts_with("    ") {
                break;
            }
            out.push_str(line.strip_prefix("    ").unwrap_or(""));
            out.push('\n');
        }
    }
    assert!(!out.is_empty(), "no slotway.toml in the ConfigMap");
    out
}

/// A CA certificate, and a certificate + key for `localhost` signed by it (PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    (issuer.pem(), leaf.pem(), key.serialize_pem())
}

/// Moves every absolute path the config names under `root` and creates the file it names there: certificates
/// for `.crt`/`.pem`/`.key` files, a password otherwise. Returns the rewritten config.
fn materialize(config: &str, root: &Path) -> String {
    let (ca, cert, key) = certificates();
    let mut out = config.to_string();
    let mut paths: Vec<String> = config
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/') && !s.contains(' '))
        .map(str::to_string)
        .collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        let local = root.join(p.trim_start_matches('/'));
        fs::create_dir_all(local.parent().unwrap()).unwrap();
        let content = if p.ends_with(".key") {
            key.clone()
        } else if p.contains("ca") && (p.ends_with(".pem") || p.ends_with(".crt")) {
            ca.clone()
        } else if p.ends_with(".crt") || p.ends_with(".pem") {
            cert.clone()
        } else {
            "a-secret-password\n".to_string()
        };
        fs::write(&local, content).unwrap();
        out = out.replace(&format!("\"{p}\""), &format!("\"{}\"", local.display()));
    }
    out
}

fn check_config(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slotway"))
        .args(["--check-config", "--config"])
        .arg(file)
        .env_remove("SLOTWAY_UPSTREAM_PASSWORD")
        .env_remove("SLOTWAY_NAT_PASSWORD")
        .output()
        .unwrap()
}

#[test]
fn sample_configs_pass_check_config() {
    let deploy = repo().join("deploy");
    let samples = [
        ("systemd", fs::read_to_string(deploy.join("systemd/slotway.toml")).unwrap()),
        (
            "kubernetes standalone",
            configmap_toml(&fs::read_to_string(deploy.join("kubernetes/standalone.yaml")).unwrap()),
        ),
        ("kubernetes nat", configmap_toml(&fs::read_to_string(deploy.join("kubernetes/nat.yaml")).unwrap())),
    ];
    for (what, toml) in samples {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slotway.toml");
        fs::write(&file, materialize(&toml, dir.path())).unwrap();
        let out = check_config(&file);
        assert!(
            out.status.success() && text(&out).contains("configuration OK"),
            "{what} sample fails --check-config:\n{}",
            text(&out)
        );
        // Without its secret files, the same file fails, naming them.
        fs::remove_dir_all(dir.path().join("run")).unwrap();
        let out = check_config(&file);
        assert_eq!(out.status.code(), Some(1), "{what} without its secrets:\n{}", text(&out));
        assert!(text(&out).contains("password_file"), "{what}:\n{}", text(&out));
    }
}

/// slotway as the image and the unit run it: as an unprivileged user (uid/gid 65534, no capabilities, no new
/// privileges), with the whole filesystem read-only in its own mount namespace, its config and secrets read from
/// the mounted directory; it must serve a client. As root: `unshare --mount` + `setpriv`. Not root: `unshare
/// --user --map-root-user --mount` (the process is unprivileged already).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_as_an_unprivileged_user_on_a_read_only_filesystem() {
    if !have("unshare", &["--version"]) || !have("setpriv", &["--version"]) {
        return;
    }
    let cluster = Cluster::start(ClusterOpts::default());
    let root = tempfile::Builder::new().prefix("slotway-ro-").tempdir().unwrap();
    let base = root.path().to_path_buf();
    // The sample config, with the test cluster's CA and password and free ports; secrets as mounted files.
    let sample = fs::read_to_string(repo().join("deploy/systemd/slotway.toml")).unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let config = sample
        .replace("listen = \"0.0.0.0:6380\"", &format!("listen = \"127.0.0.1:{port}\""))
        .replace("metrics_listen = \"127.0.0.1:9121\"", &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""))
        .replace("user = \"slotway\"\n", "")
        .replace(
            "seeds = [\"10.0.0.11:6379\", \"10.0.0.12:6379\", \"10.0.0.13:6379\"]",
            &format!("seeds = {:?}", cluster.seeds()),
        );
    assert!(!config.contains("10.0.0.11") && !config.contains("\"slotway\""), "the sample changed: {config}");
    let config = materialize(&config, &base);
    let cred = base.join("run/credentials/slotway.service");
    fs::write(cred.join("upstream-password"), format!("{}\n", cluster.password_str())).unwrap();
    fs::write(cred.join("app-password"), "app-secret\n").unwrap();
    fs::copy(cluster.ca_path(), base.join("etc/slotway/tls/redis-ca.pem")).unwrap();
    fs::write(base.join("etc/slotway/slotway.toml"), &config).unwrap();
    let bin = base.join("slotway");
    fs::copy(env!("CARGO_BIN_EXE_slotway"), &bin).unwrap();
    // Readable (not writable) by the unprivileged user, as a mounted ConfigMap/Secret would be.
    Command::new("chmod").args(["-R", "a+rX,go-w"]).arg(&base).status().unwrap();

    let as_root = real_uid() == 0;
    let script = r#"
set -e
dir="$1"; shift
mount --bind "$dir" "$dir"
mount -o remount,bind,ro "$dir"
mount -o remount,bind,ro /
if touch "$dir/written" 2>/dev/null || touch /written-by-slotway-test 2>/dev/null; then
  echo "the filesystem is writable" >&2; exit 97
fi
exec "$@"
"#;
    let mut cmd = Command::new("unshare");
    if as_root {
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]).arg(&base).args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]);
    } else {
        cmd.args(["--user", "--map-root-user", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"])
            .arg(&base);
    }
    let log = base.join("..").join(format!("{}.log", base.file_name().unwrap().to_string_lossy()));
    let log_file = fs::File::create(&log).unwrap();
    cmd.arg(&bin)
        .arg("--config")
        .arg(base.join("etc/slotway/slotway.toml"))
        .env_remove("SLOTWAY_UPSTREAM_PASSWORD")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    let mut child = cmd.spawn().unwrap();
    let read_log = || fs::read_to_string(&log).unwrap_or_default();
    let addr = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("slotway exited ({st}):\n{}", read_log());
        }
        if raw_ping(&addr, Duration::from_secs(1)).is_ok_and(|r| r.starts_with("-NOAUTH")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slotway not serving after 30 s:\n{}", read_log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // It is the process we started, as the user we meant, without privileges.
    let status = fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.split_whitespace().next().unwrap().to_string())
    };
    assert_eq!(field("Name:").as_deref(), Some("slotway"), "{status}");
    if as_root {
        assert_eq!(field("Uid:").as_deref(), Some("65534"), "{status}");
        assert_eq!(field("Gid:").as_deref(), Some("65534"), "{status}");
        assert_eq!(field("CapEff:").as_deref(), Some("0000000000000000"), "{status}");
        assert_eq!(field("CapBnd:").as_deref(), Some("0000000000000000"), "{status}");
    }
    assert_eq!(field("NoNewPrivs:").as_deref().unwrap_or("1"), "1", "{status}");

    // A client authenticates as the sample's user (password from the mounted secret) and reads its write.
    let client = redis::Client::open(format!("redis://app:app-secret@{addr}/")).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET").arg("deploy:ro").arg("served").query_async(&mut con).await.unwrap();
    let got: String = redis::cmd("GET").arg("deploy:ro").query_async(&mut con).await.unwrap();
    assert_eq!(got, "served");
    let (status, _, body) = http(&format!("127.0.0.1:{metrics_port}"), "GET", "/ready");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    // JSON logs (the sample's log_format), and no secret in them.
    drop(con);
    kill_pid(child.id(), "TERM");
    let status = child.wait().unwrap();
    let logs = read_log();
    assert!(status.success(), "exit {status}:\n{logs}");
    assert!(!logs.contains("app-secret") && !logs.contains(cluster.password_str()), "a secret was logged:\n{logs}");
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.starts_with('{') && line.contains("\"level\":"), "not a JSON log line: {line}\n{logs}");
    }
    let _ = fs::remove_file(&log);
}

/// This process's real uid (from /proc, so the test needs no libc binding).
fn real_uid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}
