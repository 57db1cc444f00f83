//! TLS between clients and slotway: a TLS listener beside the plain one, verification by clients, mutual TLS,
//! expired certificates, and certificate rotation by SIGHUP without dropping open connections.

mod support;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// A TLS client connection to slotway that trusts `ca` (and presents `client` when given).
fn tls_connect(
    port: u16,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    // Force the handshake (and, in TLS 1.3, the server's verdict on our certificate) with one round trip.
    ping(&mut stream).map(|_| stream)
}

fn ping(stream: &mut impl ReadWrite) -> Result<(), String> {
    stream.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
    if &buf[..n] == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(format!("unexpected reply {:?}", String::from_utf8_lossy(&buf[..n])))
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A fresh CA and a certificate for localhost/127.0.0.1 signed by it, valid or already expired.
fn make_cert(dir: &Path, name: &str, expired: bool) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    if expired {
        leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2020, 1, 2);
    }
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let paths = (dir.join(format!("{name}-ca.pem")), dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn start_with_tls(cluster: &Cluster, cert: &Path, key: &Path, extra: &[String]) -> (Proxy, u16) {
    let tls_port = free_port();
    let mut args = Proxy::base_args(cluster);
    args.extend([
        "--listen-tls".to_string(),
        format!("127.0.0.1:{tls_port}"),
        "--listen-tls-cert".to_string(),
        cert.display().to_string(),
        "--listen-tls-key".to_string(),
        key.display().to_string(),
    ]);
    args.extend(extra.iter().cloned());
    (Proxy::start_raw(&args, &Proxy::password_env(cluster)), tls_port)
}

#[test]
fn client_tls_verification_mutual_tls_and_rotation() {
    let cluster = Cluster::start(ClusterOpts::default());
    let (server_cert, server_key) = cluster.server_cert();
    let ca = cluster.ca_path();

    // TLS beside plain: the right CA connects and commands work on every shard.
    let (proxy, tls_port) = start_with_tls(&cluster, &server_cert, &server_key, &[]);
    let mut s = tls_connect(tls_port, &ca, None).expect("TLS client with the right CA");
    for (_, key) in cluster.keys_on_every_primary("tls:") {
        let cmd = format!("SET {key} over-tls\r\nGET {key}\r\n");
        s.write_all(cmd.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.ends_with(b"over-tls\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"+OK\r\n$8\r\nover-tls\r\n");
    }
    // redis-cli over TLS works too.
    let out = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert", &ca.display().to_string(), "-p", &tls_port.to_string(), "PING"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");

    // A client that trusts another CA refuses slotway's certificate.
    let Err(err) = tls_connect(tls_port, &cluster.other_ca_path(), None) else { panic!("wrong CA must fail") };
    assert!(err.contains("UnknownIssuer") || err.contains("certificate"), "{err}");

    // Plain TCP to the TLS port gets no Redis reply and is disconnected (handshake failure).
    let mut plain = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    plain.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = plain.read(&mut buf).unwrap_or(0);
    assert!(!buf[..n].starts_with(b"+PONG"), "plain text must not be served on the TLS port");
    let tls_failures = proxy.cli(&["INFO", "proxy"]);
    assert!(tls_failures.contains("tls_handshake_failures:"), "{tls_failures}");
    drop(proxy);

    // An expired certificate is refused by clients.
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, old_cert, old_key) = make_cert(dir.path(), "expired", true);
    let (_expired_proxy, port) = start_with_tls(&cluster, &old_cert, &old_key, &[]);
    let Err(err) = tls_connect(port, &old_ca, None) else { panic!("expired certificate must be refused") };
    assert!(err.contains("certificate expired"), "{err}");

    // Mutual TLS: a client certificate signed by the configured CA is required.
    let (client_cert, client_key) = cluster.client_cert();
    let (other_cert, other_key) = cluster.other_client_cert();
    let mtls = ["--listen-tls-client-ca".to_string(), ca.display().to_string()];
    let (_mtls_proxy, port) = start_with_tls(&cluster, &server_cert, &server_key, &mtls);
    tls_connect(port, &ca, Some((&client_cert, &client_key))).expect("trusted client certificate");
    assert!(tls_connect(port, &ca, None).is_err(), "no client certificate must be refused");
    assert!(tls_connect(port, &ca, Some((&other_cert, &other_key))).is_err(), "untrusted client certificate");

    // Rotation: slotway serves cert A; a client connects; the files are replaced with cert B and SIGHUP sent.
    let (a_ca, a_cert, a_key) = make_cert(dir.path(), "a", false);
    let (b_ca, b_cert, b_key) = make_cert(dir.path(), "b", false);
    let (live_cert, live_key) = (dir.path().join("live.pem"), dir.path().join("live.key"));
    std::fs::copy(&a_cert, &live_cert).unwrap();
    std::fs::copy(&a_key, &live_key).unwrap();
    let (rotating, port) = start_with_tls(&cluster, &live_cert, &live_key, &[]);
    let mut old_conn = tls_connect(port, &a_ca, None).expect("cert A before rotation");
    assert!(tls_connect(port, &b_ca, None).is_err(), "cert B isn't served yet");
    std::fs::copy(&b_cert, &live_cert).unwrap();
    std::fs::copy(&b_key, &live_key).unwrap();
    rotating.signal("HUP");
    rotating.wait_for_log("client TLS certificates reloaded", Duration::from_secs(5));
    tls_connect(port, &b_ca, None).expect("new connections get cert B");
    assert!(tls_connect(port, &a_ca, None).is_err(), "cert A is no longer served");
    ping(&mut old_conn).expect("the connection opened before the rotation keeps working");
}
