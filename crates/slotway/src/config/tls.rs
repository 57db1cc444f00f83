//! Building rustls client configurations for connections to the nodes.
use super::UpstreamTls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read {what} {path}: {reason}")]
    File { what: &'static str, path: String, reason: String },
    #[error("{0}")]
    Other(String),
}

fn the_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain.
pub fn load_certs(path: &std::path::Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let file_err = |reason: String| TlsConfigError::File { what, path: path.display().to_string(), reason };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("no PEM certificates in it".to_string()));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsConfigError::File {
        what: "private key",
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The client-side TLS configuration shared by every upstream connection.
pub fn client_config(tls: &UpstreamTls) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let builder = ClientConfig::builder_with_provider(the_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Other(e.to_string()))?;
    let builder = if tls.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(the_provider())))
    } else {
        let mut roots = RootCertStore::empty();
        match &tls.ca {
            Some(path) => {
                for cert in load_certs(path, "CA file")? {
                    roots.add(cert).map_err(|e| TlsConfigError::Other(format!("CA file {}: {e}", path.display())))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(TlsConfigError::Other(
                        "no system CA certificates found; give --upstream-tls-ca".to_string(),
                    ));
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert, "client certificate")?, load_key(key)?)
            .map_err(|e| TlsConfigError::Other(format!("client certificate/key: {e}")))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name a node's certificate is checked against: the configured override, else the node's own host.
pub fn server_name_for(host: &str, tls: &UpstreamTls) -> Result<ServerName<'static>, String> {
    let name = tls.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_string()).map_err(|e| format!("'{name}' is not a valid TLS server name: {e}"))
}

/// Accepts any certificate; only for `--upstream-tls-insecure`. Signatures are still checked so the handshake
/// itself stays well-formed.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The server-side TLS configuration for client connections: TLS 1.2 and 1.3 only (rustls offers nothing older),
/// and, with a client CA, mandatory client certificates signed by it.
pub fn server_config(tls: &super::DownstreamTls) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let builder = rustls::ServerConfig::builder_with_provider(the_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsConfigError::Other(e.to_string()))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(ca, "client CA file")? {
                roots.add(cert).map_err(|e| TlsConfigError::Other(format!("client CA file {}: {e}", ca.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), the_provider())
                .build()
                .map_err(|e| TlsConfigError::Other(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(load_certs(&tls.cert, "certificate")?, load_key(&tls.key)?)
        .map_err(|e| TlsConfigError::Other(format!("certificate/key {}: {e}", tls.cert.display())))?;
    Ok(Arc::new(config))
}
