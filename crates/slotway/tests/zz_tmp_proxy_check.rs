mod support;
use std::time::Duration;
use redis::AsyncCommands;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_helpers() {
    let cluster = Cluster::start(ClusterOpts::default());
    let proxy = Proxy::start(&cluster, &[]);
    assert_eq!(proxy.cli(&["PING"]), "PONG");
    let mut con = proxy.client().await;
    for (port, key) in cluster.keys_on_every_primary("p:") {
        let _: () = con.set(&key, "v").await.unwrap();
        assert_eq!(cluster.cli(port, &["GET", &key]), "v");
    }
    assert!(proxy.log().contains("listening"), "{}", proxy.log());
    // wrong CA: exits or keeps failing
    let mut args: Vec<String> = vec!["--upstream-tls".into(), "--upstream-tls-ca".into(), cluster.other_ca_path().display().to_string()];
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let (st, log) = Proxy::try_start(&cluster, &a, &Proxy::password_env(&cluster));
    eprintln!("wrong CA: {st:?}\n{log}");
    args.clear();
    let (st, log) = Proxy::try_start_for(&cluster, &["--upstream-tls", "--upstream-tls-ca", &cluster.ca_path().display().to_string()], &[("SLOTWAY_UPSTREAM_PASSWORD", "wrong")], Duration::from_secs(5));
    eprintln!("wrong password: {st:?}\n{log}");
    let pid = proxy.pid();
    drop(proxy);
    assert!(!std::path::Path::new(&format!("/proc/{pid}/status")).exists() || std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap().contains("zombie"));
}
