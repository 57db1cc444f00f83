//! Upstream authentication variants: an ACL user instead of the default user, a password from a config file, and
//! mutual TLS (nodes that require a client certificate).

mod support;

use redis::AsyncCommands;
use support::*;

/// Runs a command on every node of the cluster (as the default user).
fn on_every_node(cluster: &Cluster, args: &[&str]) {
    for port in cluster.live_ports() {
        cluster.cli(port, args);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_password_file_and_mutual_tls() {
    let cluster = Cluster::start(ClusterOpts::default());
    let keys = cluster.keys_on_every_primary("auth:");

    // An ACL user that may only touch `app:*`-free keys of its own pattern; slotway must log in as it.
    on_every_node(
        &cluster,
        &[
            "ACL",
            "SETUSER",
            "app",
            "on",
            ">app-secret",
            "~auth:*",
            "+@all",
            "-@dangerous",
            "+cluster",
            "+command",
            "+ping",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "app-secret\n").unwrap();
    let config = dir.path().join("slotway.toml");
    std::fs::write(
        &config,
        format!("[upstream]\nuser = \"app\"\npassword_file = {:?}\n", pw_file.display().to_string()),
    )
    .unwrap();

    {
        // No SLOTWAY_UPSTREAM_PASSWORD: the password comes from the file named in the config.
        let mut args = Proxy::base_args(&cluster);
        args.extend(["--config".to_string(), config.display().to_string()]);
        let proxy = Proxy::start_raw(&args, &[]);
        let mut con = proxy.client().await;
        for (_, key) in &keys {
            let () = con.set(key, "as-app").await.unwrap();
            let v: String = con.get(key).await.unwrap();
            assert_eq!(v, "as-app");
        }
        // The node's own ACL applies: a key outside the user's pattern is refused by the node.
        let err = con.set::<_, _, ()>("other:1", "x").await.unwrap_err();
        assert_eq!(err.code(), Some("NOPERM"), "{err}");
        // Every connection slotway opened is authenticated as `app`.
        for (port, _) in &keys {
            let list = cluster.cli(*port, &["CLIENT", "LIST"]);
            let slotway_conns: Vec<&str> = list.lines().filter(|l| l.contains("user=app")).collect();
            assert!(!slotway_conns.is_empty(), "node {port} has no connection of user app:\n{list}");
        }
        assert!(!proxy.log().contains("app-secret"), "the password must not be logged");
    }

    // A wrong password for the ACL user is a clear startup error.
    let (status, log) = Proxy::try_start(
        &cluster,
        &["--upstream-tls", "--upstream-tls-ca", &cluster.ca_path().display().to_string(), "--upstream-user", "app"],
        &[("SLOTWAY_UPSTREAM_PASSWORD", "wrong")],
    );
    assert!(status.is_some_and(|s| !s.success()), "slotway must refuse to start: {log}");
    assert!(log.contains("authentication failed") && log.contains("WRONGPASS"), "{log}");

    // Mutual TLS: the nodes now require a client certificate.
    on_every_node(&cluster, &["CONFIG", "SET", "tls-auth-clients", "yes"]);
    let ca = cluster.ca_path().display().to_string();
    let pw = cluster.password_str().to_string();
    let env = [("SLOTWAY_UPSTREAM_PASSWORD", pw.as_str())];
    let (status, log) = Proxy::try_start(&cluster, &["--upstream-tls", "--upstream-tls-ca", &ca], &env);
    assert!(status.is_some_and(|s| !s.success()), "without a client certificate slotway can't start: {log}");
    assert!(log.contains("TLS handshake failed") && log.contains("CertificateRequired"), "{log}");

    let (cert, key) = cluster.client_cert();
    let mut args = Proxy::base_args(&cluster);
    args.extend([
        "--upstream-tls-cert".to_string(),
        cert.display().to_string(),
        "--upstream-tls-key".to_string(),
        key.display().to_string(),
    ]);
    let proxy = Proxy::start_raw(&args, &env);
    let mut con = proxy.client().await;
    for (_, key) in &keys {
        let () = con.set(key, "over-mtls").await.unwrap();
        let v: String = con.get(key).await.unwrap();
        assert_eq!(v, "over-mtls");
    }
    on_every_node(&cluster, &["CONFIG", "SET", "tls-auth-clients", "optional"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_name_override_and_insecure_mode() {
    use redis::AsyncCommands;
    let cluster = Cluster::start(ClusterOpts::default());
    let pw = cluster.password_str().to_string();
    let env = [("SLOTWAY_UPSTREAM_PASSWORD", pw.as_str())];
    let ca = cluster.ca_path().display().to_string();
    let key = cluster.keys_on_every_primary("sni:").remove(0).1;

    // The node certificate lists node.slotway.test: verifying against that name works although the cluster
    // announces IPs.
    let mut args = Proxy::base_args(&cluster);
    args.extend(["--upstream-tls-server-name".to_string(), "node.slotway.test".to_string()]);
    let proxy = Proxy::start_raw(&args, &env);
    let mut con = proxy.client().await;
    let () = con.set(&key, "sni").await.unwrap();
    let v: String = con.get(&key).await.unwrap();
    assert_eq!(v, "sni");
    drop(proxy);

    // A name the certificate doesn't list is refused at start, saying why.
    let (status, log) = Proxy::try_start(
        &cluster,
        &["--upstream-tls", "--upstream-tls-ca", &ca, "--upstream-tls-server-name", "wrong.example"],
        &env,
    );
    assert!(status.is_some_and(|s| !s.success()), "{log}");
    assert!(log.contains("certificate was rejected") && log.contains("NotValidForName"), "{log}");

    // --upstream-tls-insecure accepts a certificate from a CA slotway doesn't trust (development only), and
    // says so in its log.
    let other = cluster.other_ca_path().display().to_string();
    let (status, log) = Proxy::try_start(&cluster, &["--upstream-tls", "--upstream-tls-ca", &other], &env);
    assert!(status.is_some_and(|s| !s.success()), "an untrusted CA must fail without --upstream-tls-insecure: {log}");
    let mut args = Proxy::seed_args(&cluster);
    args.extend(["--upstream-tls".to_string(), "--upstream-tls-insecure".to_string()]);
    let proxy = Proxy::start_raw(&args, &env);
    let mut con = proxy.client().await;
    let v: String = con.get(&key).await.unwrap();
    assert_eq!(v, "sni");
    assert!(proxy.log().contains("verification is OFF"), "{}", proxy.log());
}
