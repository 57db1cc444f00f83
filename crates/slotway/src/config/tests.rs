use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

/// A self-signed certificate and its key, written as `<name>.pem` and `<name>.key` in `dir`.
pub(crate) fn self_signed(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
    let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn seeds_only() -> Overrides {
    Overrides { cluster: vec!["127.0.0.1:7001".into()], ..Default::default() }
}

#[test]
fn defaults_apply_when_only_seeds_are_given() {
    let c = Config::from_raw(RawConfig::default(), &seeds_only(), &no_env).unwrap();
    assert_eq!(c.listen.addr.unwrap().to_string(), "127.0.0.1:6380");
    assert!(c.listen.tls_addr.is_none());
    assert_eq!(c.upstream.seeds, vec![NodeAddr::new("127.0.0.1", 7001)]);
    assert_eq!(c.upstream.connections_per_node, 1);
    assert_eq!(c.upstream.max_dedicated_per_node, 64);
    assert!(c.workers >= 1);
    assert!(c.upstream.tls.is_none());
    assert!(c.upstream.password.is_none());
    assert_eq!(c.scripts, ScriptsConfig { cache_entries: 1024, cache_bytes: 16 * 1024 * 1024 });
    assert_eq!(c.listen.pubsub_output_limit, 32 * 1024 * 1024);
    assert!(c.listen.busy_endpoint, "a busy script makes the endpoint busy, as one server");
}

#[test]
fn busy_script_scope_and_provision_new_users_from_the_file() {
    let raw = RawConfig::parse("[client]\nbusy_script_scope = \"node\"\n[auth]\nprovision_new_users = true\n").unwrap();
    let c = Config::from_raw(raw, &seeds_only(), &no_env).unwrap();
    assert!(!c.listen.busy_endpoint);
    assert!(c.provision_new_users);
    let raw = RawConfig::parse("[client]\nbusy_script_scope = \"shard\"\n").unwrap();
    let err = Config::from_raw(raw, &seeds_only(), &no_env).unwrap_err().to_string();
    assert!(err.contains("client.busy_script_scope must be endpoint or node, not 'shard'"), "{err}");
}

#[test]
fn pubsub_output_limit_from_the_file() {
    let raw = RawConfig::parse("[client]\npubsub_output_limit_bytes = 65536\n").unwrap();
    let c = Config::from_raw(raw, &seeds_only(), &no_env).unwrap();
    assert_eq!(c.listen.pubsub_output_limit, 65536);
}

#[test]
fn script_cache_limits_from_the_file() {
    let raw = RawConfig::parse("[scripts]\ncache_entries = 0\ncache_bytes = 1000\n").unwrap();
    let c = Config::from_raw(raw, &seeds_only(), &no_env).unwrap();
    assert_eq!(c.scripts, ScriptsConfig { cache_entries: 0, cache_bytes: 1000 });
    assert!(RawConfig::parse("[scripts]\nsize = 1\n").is_err());
}

#[test]
fn flags_override_the_file() {
    let raw = RawConfig::parse(
        r#"
        listen = "127.0.0.1:7000"
        [cluster]
        seeds = ["a:1", "b:2"]
        [upstream]
        user = "file-user"
        connections_per_node = 4
        max_dedicated_per_node = 8
        "#,
    )
    .unwrap();
    let o = Overrides {
        listen: Some("0.0.0.0:6390".into()),
        upstream_user: Some("flag-user".into()),
        ..Default::default()
    };
    let c = Config::from_raw(raw, &o, &no_env).unwrap();
    assert_eq!(c.listen.addr.unwrap().to_string(), "0.0.0.0:6390");
    assert_eq!(c.upstream.user.as_deref(), Some("flag-user"));
    assert_eq!(c.upstream.connections_per_node, 4);
    assert_eq!(c.upstream.max_dedicated_per_node, 8);
    assert_eq!(c.upstream.seeds.len(), 2);
}

#[test]
fn password_sources_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-file\n").unwrap();
    let raw = || {
        RawConfig::parse(&format!(
            "[upstream]\npassword_file = {:?}\npassword_env = \"MY_PW\"\n",
            file.display().to_string()
        ))
        .unwrap()
    };
    let env_both = |k: &str| match k {
        UPSTREAM_PASSWORD_ENV => Some("from-main-env".to_string()),
        "MY_PW" => Some("from-named-env".to_string()),
        _ => None,
    };
    let c = Config::from_raw(raw(), &seeds_only(), &env_both).unwrap();
    assert_eq!(c.upstream.password.unwrap().expose(), "from-main-env");
    // Without the main variable the file wins, with its trailing newline removed.
    let env_named = |k: &str| (k == "MY_PW").then(|| "from-named-env".to_string());
    let c = Config::from_raw(raw(), &seeds_only(), &env_named).unwrap();
    assert_eq!(c.upstream.password.unwrap().expose(), "from-file");
    let only_env = RawConfig::parse("[upstream]\npassword_env = \"MY_PW\"\n").unwrap();
    let c = Config::from_raw(only_env, &seeds_only(), &env_named).unwrap();
    assert_eq!(c.upstream.password.unwrap().expose(), "from-named-env");
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let env = |k: &str| (k == UPSTREAM_PASSWORD_ENV).then(|| "hunter2-secret".to_string());
    let c = Config::from_raw(RawConfig::default(), &seeds_only(), &env).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2-secret"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
}

#[test]
fn all_errors_are_reported_at_once() {
    let raw =
        RawConfig::parse("listen = \"nope\"\n[upstream]\nconnections_per_node = 0\npassword_env = \"UNSET_VAR\"\n")
            .unwrap();
    let o = Overrides { upstream_tls_ca: Some("/nonexistent/ca.pem".into()), ..Default::default() };
    let err = Config::from_raw(raw, &o, &no_env).unwrap_err();
    let text = err.to_string();
    for expected in ["listen", "no seed nodes", "UNSET_VAR", "connections_per_node", "without --upstream-tls"] {
        assert!(text.contains(expected), "missing {expected:?} in {text}");
    }
}

#[test]
fn unknown_keys_are_rejected() {
    let err = RawConfig::parse("[upstream]\npasword = \"typo\"\n").unwrap_err();
    assert!(err.contains("pasword"), "{err}");
}

#[test]
fn tls_settings_merge() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = self_signed(dir.path(), "ca");
    let raw = RawConfig::parse(&format!(
        "[upstream.tls]\nenabled = true\nca = {:?}\nserver_name = \"redis.internal\"\n",
        ca.display().to_string()
    ))
    .unwrap();
    let c = Config::from_raw(raw, &seeds_only(), &no_env).unwrap();
    let tls = c.upstream.tls.unwrap();
    assert_eq!(tls.ca.as_deref(), Some(ca.as_path()));
    assert_eq!(tls.server_name.as_deref(), Some("redis.internal"));
    assert!(!tls.insecure_skip_verify);
}

#[test]
fn tls_listener_alone_or_beside_the_plain_one() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "c");
    let tls_only = Overrides {
        listen_tls: Some("127.0.0.1:6443".into()),
        listen_tls_cert: Some(cert.clone()),
        listen_tls_key: Some(key.clone()),
        ..seeds_only()
    };
    let c = Config::from_raw(RawConfig::default(), &tls_only, &no_env).unwrap();
    assert!(c.listen.addr.is_none(), "a TLS listener alone means no plain listener");
    assert_eq!(c.listen.tls_addr.unwrap().to_string(), "127.0.0.1:6443");
    assert_eq!(c.listen.tls.as_ref().unwrap().handshake_timeout, std::time::Duration::from_secs(5));
    let both = Overrides { listen: Some("127.0.0.1:6380".into()), ..tls_only.clone() };
    let c = Config::from_raw(RawConfig::default(), &both, &no_env).unwrap();
    assert!(c.listen.addr.is_some() && c.listen.tls_addr.is_some());
    // A certificate without a TLS listener, or a listener without a certificate, is an error.
    let no_listener = Overrides { listen_tls: None, ..tls_only.clone() };
    assert!(Config::from_raw(RawConfig::default(), &no_listener, &no_env).is_err());
    let no_cert = Overrides { listen_tls_cert: None, listen_tls_key: None, ..tls_only };
    assert!(Config::from_raw(RawConfig::default(), &no_cert, &no_env).is_err());
}

fn nat_overrides() -> Overrides {
    Overrides {
        mode: Some("nat".into()),
        nat_announce_host: Some("redis.example.com".into()),
        nat_ports: Some("7000-7099".into()),
        ..seeds_only()
    }
}

#[test]
fn nat_mode_from_flags() {
    let c = Config::from_raw(RawConfig::default(), &nat_overrides(), &no_env).unwrap();
    assert_eq!(c.mode, Mode::Nat);
    assert!(c.listen.addr.is_none(), "no standalone listener in nat mode");
    let nat = c.nat.unwrap();
    assert_eq!(nat.announce_host, "redis.example.com");
    assert_eq!(nat.ports, Some((7000, 7099)));
    assert_eq!(nat.bind.to_string(), "0.0.0.0");
    assert!(nat.password.is_none());
}

#[test]
fn nat_mode_from_file() {
    let raw = RawConfig::parse(
        r#"
        mode = "nat"
        [cluster]
        seeds = ["10.0.3.7:6379"]
        [nat]
        announce_host = "203.0.113.9"
        ports = "7000"
        bind = "127.0.0.1"
        password = "from-file"
        [nat.node_ports]
        "0123456789abcdef0123456789abcdef01234567" = 7100
        "10.0.3.8:6379" = 7101
        [nat.resolve]
        "node-1.internal" = "10.0.3.7"
        "#,
    )
    .unwrap();
    let env = |k: &str| (k == NAT_PASSWORD_ENV).then(|| "from-env".to_string());
    let c = Config::from_raw(raw, &Overrides::default(), &env).unwrap();
    let nat = c.nat.unwrap();
    assert_eq!(nat.ports, Some((7000, 7000)));
    assert_eq!(nat.bind.to_string(), "127.0.0.1");
    assert_eq!(nat.password.unwrap().expose(), "from-env");
    assert!(nat.node_ports.contains(&(NodeKey::Id("0123456789abcdef0123456789abcdef01234567".into()), 7100)));
    assert!(nat.node_ports.contains(&(NodeKey::Addr(NodeAddr::new("10.0.3.8", 6379)), 7101)));
    assert_eq!(c.resolve.get("node-1.internal").map(String::as_str), Some("10.0.3.7"));
}

#[test]
fn nat_mode_errors() {
    let bad = Overrides { nat_announce_host: None, nat_ports: Some("99-7".into()), ..nat_overrides() };
    let e = Config::from_raw(RawConfig::default(), &bad, &no_env).unwrap_err().to_string();
    assert!(e.contains("--nat-announce-host"), "{e}");
    assert!(e.contains("not a port range"), "{e}");
    let with_listen = Overrides { listen: Some("127.0.0.1:6380".into()), ..nat_overrides() };
    let e = Config::from_raw(RawConfig::default(), &with_listen, &no_env).unwrap_err().to_string();
    assert!(e.contains("standalone mode"), "{e}");
    let flags_without_mode = Overrides { mode: None, ..nat_overrides() };
    let e = Config::from_raw(RawConfig::default(), &flags_without_mode, &no_env).unwrap_err().to_string();
    assert!(e.contains("need --mode nat"), "{e}");
    let bad_mode = Overrides { mode: Some("proxy".into()), ..seeds_only() };
    assert!(Config::from_raw(RawConfig::default(), &bad_mode, &no_env).is_err());
}

#[test]
fn health_checks_default_on_and_can_be_turned_off() {
    let c = Config::from_raw(RawConfig::default(), &seeds_only(), &no_env).unwrap();
    assert_eq!(c.upstream.health_check_interval, Some(Duration::from_millis(3000)));
    assert_eq!(c.upstream.health_check_timeout, Duration::from_millis(5000));

    let raw = RawConfig::parse("[upstream]\nhealth_check_interval_ms = 250\nhealth_check_timeout_ms = 400\n").unwrap();
    let c = Config::from_raw(raw, &seeds_only(), &no_env).unwrap();
    assert_eq!(c.upstream.health_check_interval, Some(Duration::from_millis(250)));
    assert_eq!(c.upstream.health_check_timeout, Duration::from_millis(400));

    let raw = RawConfig::parse("[upstream]\nhealth_check_interval_ms = 0\nhealth_check_timeout_ms = 0\n").unwrap();
    let c = Config::from_raw(raw, &seeds_only(), &no_env).unwrap();
    assert_eq!(c.upstream.health_check_interval, None);

    let raw = RawConfig::parse("[upstream]\nhealth_check_timeout_ms = 0\n").unwrap();
    let e = Config::from_raw(raw, &seeds_only(), &no_env).unwrap_err();
    assert!(e.0.iter().any(|m| m.contains("health_check_timeout_ms")), "{e:?}");
}

#[test]
fn users_map_to_upstream_acl_users() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app1.pw");
    std::fs::write(&file, "app1-upstream\n").unwrap();
    let text = format!(
        r#"
        [[users]]
        name = "alice"
        rules = "on +@all ~*"
        [users.upstream]
        user = "app1"
        password_file = {:?}

        [[users]]
        name = "bob"
        rules = "on +@all ~*"
        upstream = {{ user = "app2", password_env = "APP2_PW" }}

        [[users]]
        name = "carol"
        "#,
        file.display().to_string()
    );
    let env = |k: &str| (k == "APP2_PW").then(|| "app2-upstream".to_string());
    let c = Config::from_raw(RawConfig::parse(&text).unwrap(), &seeds_only(), &env).unwrap();
    let up = |i: usize| c.users[i].upstream.clone().map(|u| (u.user, u.password.expose().to_string()));
    assert_eq!(up(0), Some(("app1".into(), "app1-upstream".into())));
    assert_eq!(up(1), Some(("app2".into(), "app2-upstream".into())));
    assert_eq!(up(2), None);
    let shown = format!("{:?}", c.users);
    assert!(!shown.contains("app1-upstream") && !shown.contains("app2-upstream"), "passwords are redacted: {shown}");

    // No password source, a missing variable, an inline password (not accepted here) and an empty user name.
    let err = Config::from_raw(RawConfig::parse(&text).unwrap(), &seeds_only(), &no_env).unwrap_err().to_string();
    assert!(err.contains("user bob: upstream.password_env: environment variable APP2_PW is not set"), "{err}");
    let raw = RawConfig::parse("[[users]]\nname = \"x\"\nupstream = { user = \"\" }\n").unwrap();
    let err = Config::from_raw(raw, &seeds_only(), &no_env).unwrap_err().to_string();
    assert!(err.contains("upstream.user '' must be non-empty"), "{err}");
    assert!(err.contains("give password_file or password_env"), "{err}");
    assert!(RawConfig::parse("[[users]]\nname = \"x\"\nupstream = { user = \"a\", password = \"p\" }\n").is_err());
}

#[test]
fn request_timeout_defaults_to_30s_and_0_turns_it_off() {
    let c = Config::from_raw(RawConfig::default(), &seeds_only(), &no_env).unwrap();
    assert_eq!(c.listen.request_timeout, Some(Duration::from_secs(30)));
    let raw = RawConfig::parse("[client]\nrequest_timeout_ms = 0\n").unwrap();
    assert_eq!(Config::from_raw(raw, &seeds_only(), &no_env).unwrap().listen.request_timeout, None);
    let raw = RawConfig::parse("[client]\nrequest_timeout_ms = 250\n").unwrap();
    let c = Config::from_raw(raw, &seeds_only(), &no_env).unwrap();
    assert_eq!(c.listen.request_timeout, Some(Duration::from_millis(250)));
}

#[test]
fn metrics_listen_is_off_by_default_and_set_by_file_or_flag() {
    let c = Config::from_raw(RawConfig::default(), &seeds_only(), &no_env).unwrap();
    assert!(c.metrics_listen.is_none());
    let raw = RawConfig::parse("metrics_listen = \"127.0.0.1:9121\"\n").unwrap();
    let c = Config::from_raw(raw, &seeds_only(), &no_env).unwrap();
    assert_eq!(c.metrics_listen.unwrap().to_string(), "127.0.0.1:9121");
    let raw = RawConfig::parse("metrics_listen = \"127.0.0.1:9121\"\n").unwrap();
    let o = Overrides { metrics_listen: Some("0.0.0.0:9200".into()), ..seeds_only() };
    assert_eq!(Config::from_raw(raw, &o, &no_env).unwrap().metrics_listen.unwrap().to_string(), "0.0.0.0:9200");
    let o = Overrides { metrics_listen: Some("localhost".into()), ..seeds_only() };
    let e = Config::from_raw(RawConfig::default(), &o, &no_env).unwrap_err().to_string();
    assert!(e.contains("metrics_listen: 'localhost' is not an IP:port address"), "{e}");
}

#[test]
fn latency_tracking_and_slowlog_settings() {
    let c = Config::from_raw(RawConfig::default(), &seeds_only(), &no_env).unwrap();
    assert!(c.latency_tracking);
    assert_eq!(c.slowlog, SlowlogConfig { threshold_us: Some(10_000), max_len: 128 });
    let raw = RawConfig::parse("latency_tracking = false\n[slowlog]\nthreshold_us = 0\nmax_len = 5\n").unwrap();
    let c = Config::from_raw(raw, &seeds_only(), &no_env).unwrap();
    assert!(!c.latency_tracking);
    assert_eq!(c.slowlog, SlowlogConfig { threshold_us: Some(0), max_len: 5 });
    let raw = RawConfig::parse("[slowlog]\nthreshold_us = -1\n").unwrap();
    assert_eq!(Config::from_raw(raw, &seeds_only(), &no_env).unwrap().slowlog.threshold_us, None);
    let raw = RawConfig::parse("[slowlog]\nmax_len = 1000000\n").unwrap();
    let e = Config::from_raw(raw, &seeds_only(), &no_env).unwrap_err();
    assert!(e.to_string().contains("slowlog.max_len"), "{e}");
    assert!(RawConfig::parse("[slowlog]\nthreshold = 1\n").is_err());
}

#[test]
fn exactly_one_kind_of_backend() {
    let sentinel = Overrides {
        sentinels: vec!["10.0.0.1:26379".into(), "s2:26379".into()],
        sentinel_master: Some("mymaster".into()),
        ..Default::default()
    };
    let env = |k: &str| (k == SENTINEL_PASSWORD_ENV).then(|| "sentinel-secret".to_string());
    let c = Config::from_raw(RawConfig::default(), &sentinel, &env).unwrap();
    let Backend::Sentinel(s) = &c.backend else { panic!("{:?}", c.backend) };
    assert_eq!(s.addresses, vec![NodeAddr::new("10.0.0.1", 26379), NodeAddr::new("s2", 26379)]);
    assert_eq!((s.master_name.as_str(), s.poll_interval, s.timeout), ("mymaster", ms(1000), ms(500)));
    assert_eq!(s.password.as_ref().map(Secret::expose), Some("sentinel-secret"));
    assert!(s.tls.is_none());
    assert_eq!(c.service_name, "mymaster");
    assert!(c.backend.is_single_group());

    let servers = Overrides { servers: vec!["a:6379".into(), "b:6379".into()], ..Default::default() };
    let c = Config::from_raw(RawConfig::default(), &servers, &no_env).unwrap();
    let Backend::Servers(s) = &c.backend else { panic!() };
    assert_eq!(s.addresses.len(), 2);
    assert_eq!(c.service_name, "mymaster");
    assert!(matches!(
        Config::from_raw(RawConfig::default(), &seeds_only(), &no_env).unwrap().backend,
        Backend::Cluster
    ));

    let two = Overrides { servers: vec!["a:6379".into()], ..seeds_only() };
    let e = Config::from_raw(RawConfig::default(), &two, &no_env).unwrap_err().to_string();
    assert!(e.contains("exactly one kind of backend"), "{e}");
    let e = Config::from_raw(RawConfig::default(), &Overrides::default(), &no_env).unwrap_err().to_string();
    assert!(e.contains("no backend") && e.contains("--sentinel") && e.contains("--server"), "{e}");
    let no_name = Overrides { sentinel_master: None, ..sentinel.clone() };
    let e = Config::from_raw(RawConfig::default(), &no_name, &no_env).unwrap_err().to_string();
    assert!(e.contains("--sentinel-master"), "{e}");
    let nat = Overrides {
        mode: Some("nat".into()),
        nat_announce_host: Some("h".into()),
        nat_ports: Some("7000-7010".into()),
        ..servers
    };
    let e = Config::from_raw(RawConfig::default(), &nat, &no_env).unwrap_err().to_string();
    assert!(e.contains("nat mode is for Redis Cluster"), "{e}");
}

#[test]
fn sentinel_and_servers_from_the_file() {
    let raw = RawConfig::parse(
        r#"
        service_name = "cache"
        [sentinel]
        addresses = ["s1:26379"]
        master_name = "main"
        user = "watcher"
        password_env = "SENTINEL_PW"
        poll_interval_ms = 250
        timeout_ms = 200
        [sentinel.tls]
        enabled = true
        server_name = "sentinel.internal"
        [client]
        read_your_writes = true
        "#,
    )
    .unwrap();
    let env = |k: &str| (k == "SENTINEL_PW").then(|| "pw".to_string());
    let c = Config::from_raw(raw, &Overrides::default(), &env).unwrap();
    let Backend::Sentinel(s) = &c.backend else { panic!() };
    assert_eq!((s.user.as_deref(), s.password.as_ref().map(Secret::expose)), (Some("watcher"), Some("pw")));
    assert_eq!((s.poll_interval, s.timeout), (ms(250), ms(200)));
    assert_eq!(s.tls.as_ref().and_then(|t| t.server_name.as_deref()), Some("sentinel.internal"));
    assert_eq!(c.service_name, "cache");
    assert_eq!(c.listen.read_your_writes, Some(ms(2000)));
    let raw = RawConfig::parse("[servers]\naddresses = [\"a:1\"]\npoll_interval_ms = 5\n").unwrap();
    let e = Config::from_raw(raw, &Overrides::default(), &no_env).unwrap_err().to_string();
    assert!(e.contains("servers.poll_interval_ms"), "{e}");
    let raw = RawConfig::parse("[sentinel]\naddresses = [\"s:1\"]\nmaster_name = \"m\"\nnope = 1\n");
    assert!(raw.is_err(), "unknown keys are rejected");
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn certificates_must_parse_and_match_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed(dir.path(), "a");
    let (_, other_key) = self_signed(dir.path(), "b");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let with = |cert: &std::path::Path, key: &std::path::Path| Overrides {
        listen_tls: Some("127.0.0.1:6443".into()),
        listen_tls_cert: Some(cert.to_path_buf()),
        listen_tls_key: Some(key.to_path_buf()),
        ..seeds_only()
    };
    let e = Config::from_raw(RawConfig::default(), &with(&cert, &other_key), &no_env).unwrap_err();
    assert!(e.0.iter().any(|m| m.starts_with("client TLS:")), "{e}");
    let e = Config::from_raw(RawConfig::default(), &with(&garbage, &other_key), &no_env).unwrap_err();
    assert!(e.0.iter().any(|m| m.contains("garbage.pem")), "{e}");
    // Upstream: a CA file that holds no certificate.
    let o = Overrides { upstream_tls: true, upstream_tls_ca: Some(garbage.clone()), ..seeds_only() };
    let e = Config::from_raw(RawConfig::default(), &o, &no_env).unwrap_err();
    assert!(e.0.iter().any(|m| m.starts_with("upstream TLS:") && m.contains("garbage.pem")), "{e}");
}

#[test]
fn users_rules_log_settings_and_shutdown_are_checked() {
    let raw = RawConfig::parse(
        r#"
log_level = "slotway=loud"
log_format = "xml"
[shutdown]
grace_ms = 4000000
[[users]]
name = "a"
rules = "on +@all >plaintext"
[[users]]
name = "b"
rules = "on +json.get ~*"
"#,
    )
    .unwrap();
    let e = Config::from_raw(raw, &seeds_only(), &no_env).unwrap_err();
    let all = e.0.join("\n");
    assert!(all.contains("log_level 'slotway=loud'"), "{all}");
    assert!(all.contains("log_format must be 'text' or 'json'"), "{all}");
    assert!(all.contains("shutdown.grace_ms"), "{all}");
    assert!(all.contains("unsupported ACL rule '>plaintext'"), "{all}");
    assert_eq!(e.0.len(), 4, "{all}");
    // A command only a module would provide is a warning, not an error.
    let raw = RawConfig::parse("[[users]]\nname = \"b\"\nrules = \"on +json.get ~*\"\n").unwrap();
    let c = Config::from_raw(raw, &seeds_only(), &no_env).unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("json.get"), "{:?}", c.warnings);
    let raw = RawConfig::parse("shutdown_grace_ms = 100\n[shutdown]\ngrace_ms = 2000\n").unwrap();
    let c = Config::from_raw(raw, &seeds_only(), &no_env).unwrap();
    assert_eq!(c.shutdown.grace, std::time::Duration::from_secs(2));
    assert_eq!(c.shutdown.drain_timeout, std::time::Duration::from_millis(100), "the old name still works");
}

#[test]
fn provision_upstream_and_the_channel_default() {
    let text = "[auth]\nacl_pubsub_default = \"allchannels\"\n\n[[users]]\nname = \"a\"\nprovision_upstream = true\n\n\
                [[users]]\nname = \"b\"\n";
    let c = Config::from_raw(RawConfig::parse(text).unwrap(), &seeds_only(), &no_env).unwrap();
    assert!(c.users[0].provision_upstream && !c.users[1].provision_upstream);
    assert_eq!(c.acl_pubsub_default, crate::auth::PubSubDefault::AllChannels);
    assert!(!c.provision_new_users, "off unless asked");
    let c = Config::from_raw(RawConfig::default(), &seeds_only(), &no_env).unwrap();
    assert_eq!(c.acl_pubsub_default, crate::auth::PubSubDefault::ResetChannels, "Redis 7's default");

    let both = "[auth]\nacl_pubsub_default = \"some\"\n\n[[users]]\nname = \"a\"\nprovision_upstream = true\n\
                upstream = { user = \"u\", password_env = \"PW\" }\n";
    let env = |k: &str| (k == "PW").then(|| "pw".to_string());
    let err = Config::from_raw(RawConfig::parse(both).unwrap(), &seeds_only(), &env).unwrap_err().to_string();
    assert!(err.contains("user a: give either [users.upstream] or provision_upstream = true, not both"), "{err}");
    assert!(err.contains("auth.acl_pubsub_default must be resetchannels or allchannels, not 'some'"), "{err}");
}

fn pool_config(text: &str, o: &Overrides) -> Result<Config, ConfigError> {
    Config::from_raw(RawConfig::parse(text).unwrap(), o, &no_env)
}

#[test]
fn a_pool_from_sharding_and_shards() {
    let c = pool_config(
        r#"
        [sharding]
        distribution = "modula"
        hash = "murmur"
        hash_tag = "{}"
        signed_chars = false
        redis_db = 3
        [sentinel]
        addresses = ["127.0.0.1:26379"]
        [servers]
        poll_interval_ms = 250
        [[shards]]
        name = "redis-server-cluster1"
        servers = ["10.0.0.1:6379", "10.0.0.2:6379"]
        [[shards]]
        servers = ["10.0.0.3:6380"]
        weight = 3
        [[shards]]
        servers = ["memc:11211"]
        [[shards]]
        name = "redis-server-cluster2"
        sentinel_master = "cluster2"
        "#,
        &Overrides::default(),
    )
    .unwrap();
    assert!(!c.backend.is_cluster() && !c.backend.is_single_group());
    assert_eq!(c.initial_db(), 3);
    let Backend::Sharded(pool) = &c.backend else { panic!("a pool") };
    use crate::ring::{CharSign, Distribution, KeyHash};
    assert_eq!(pool.ring.distribution, Distribution::Modula);
    assert_eq!(pool.ring.hash, KeyHash::Murmur);
    assert_eq!(pool.ring.sign, CharSign::Unsigned);
    assert_eq!(pool.ring.hash_tag, Some(*b"{}"));
    let names: Vec<&str> = pool.shards.iter().map(|s| s.name.as_str()).collect();
    // Unnamed: the first server as written, without the port when it is 11211 (twemproxy's rule).
    assert_eq!(names, ["redis-server-cluster1", "10.0.0.3:6380", "memc", "redis-server-cluster2"]);
    let weights: Vec<u32> = pool.ring.servers.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [1, 3, 1, 1]);
    assert_eq!(pool.shards[3].group, ShardGroup::Sentinel("cluster2".into()));
    assert_eq!(
        pool.shards[0].group,
        ShardGroup::Servers(vec![NodeAddr::new("10.0.0.1", 6379), NodeAddr::new("10.0.0.2", 6379)])
    );
    assert_eq!(pool.servers_poll_interval, ms(250));
    assert_eq!(pool.sentinel.as_ref().unwrap().addresses, vec![NodeAddr::new("127.0.0.1", 26379)]);
    assert_eq!(pool.auto_eject, None, "auto_eject_hosts is off by default");
    // Defaults: ketama over fnv1a_64, no hash tag, signed chars (x86-64), database 0.
    let c = pool_config("[[shards]]\nservers = [\"a:1\"]\n", &Overrides::default()).unwrap();
    let Backend::Sharded(pool) = &c.backend else { panic!("a pool") };
    assert_eq!((pool.ring.distribution, pool.ring.hash), (Distribution::Ketama, KeyHash::Fnv1a_64));
    assert_eq!((pool.ring.hash_tag, pool.ring.sign, c.initial_db()), (None, CharSign::Signed, 0));
    let c = pool_config(
        "[sharding]\nauto_eject_hosts = true\nserver_failure_limit = 3\n[[shards]]\nservers = [\"a:1\"]\n",
        &Overrides::default(),
    )
    .unwrap();
    let Backend::Sharded(pool) = &c.backend else { panic!("a pool") };
    assert_eq!(pool.auto_eject, Some(AutoEject { server_failure_limit: 3, server_retry_timeout: ms(30_000) }));
}

#[test]
fn pool_errors_are_reported_together() {
    let e = pool_config(
        r#"
        [sharding]
        distribution = "random"
        hash = "crc64"
        hash_tag = "{"
        server_retry_timeout_ms = 5
        [[shards]]
        name = "a"
        servers = ["x:1"]
        [[shards]]
        name = "a"
        servers = ["y:1"]
        weight = 0
        [[shards]]
        sentinel_master = "m"
        [[shards]]
        servers = ["z:1"]
        sentinel_master = "n"
        [[shards]]
        "#,
        &Overrides::default(),
    )
    .unwrap_err()
    .0
    .join("\n");
    for want in [
        "distribution 'random'",
        "sharding.hash 'crc64' is not one of twemproxy's hashes",
        "hash_tag must be two characters",
        "only apply with auto_eject_hosts = true",
        "name 'a' is used by another shard",
        "shard 2: weight must be at least 1",
        "shard 3: a Sentinel-managed shard needs a name",
        "[[shards]] with sentinel_master need the sentinels",
        "shard 4: give either servers or sentinel_master, not both",
        "shard 5: give its servers",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    // One kind of backend only; [sharding] needs shards; a pool isn't for nat mode.
    let both = Overrides { cluster: vec!["c:1".into()], ..Default::default() };
    assert!(pool_config("[[shards]]\nservers = [\"a:1\"]\n", &both).unwrap_err().0[0].contains("exactly one kind"));
    let e = pool_config("[sharding]\nhash = \"md5\"\n[cluster]\nseeds = [\"c:1\"]\n", &Overrides::default());
    assert!(e.unwrap_err().0.join("\n").contains("[sharding] places keys on [[shards]]"));
    let e = pool_config(
        "[[shards]]\nservers = [\"a:1\"]\n[sentinel]\nmaster_name = \"m\"\naddresses = [\"s:1\"]\n",
        &Overrides::default(),
    );
    assert!(e.unwrap_err().0.join("\n").contains("exactly one kind"));
    let nat = Overrides {
        mode: Some("nat".into()),
        nat_announce_host: Some("h".into()),
        nat_ports: Some("7000-7001".into()),
        ..Default::default()
    };
    let e = pool_config("[[shards]]\nservers = [\"a:1\"]\n", &nat).unwrap_err().0.join("\n");
    assert!(e.contains("nat mode is for Redis Cluster"), "{e}");
    assert!(RawConfig::parse("[[shards]]\nserver = [\"a:1\"]\n").is_err(), "unknown keys are refused");
}
