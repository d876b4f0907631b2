//! Outbound TLS: the one rustls client configuration every sink uses (syslog over TLS, HEC and
//! OTLP over https). The server is always verified, against the configured CA file or the
//! system's trusted roots; there is no option to turn verification off. It owns reading the PEM
//! files and naming the file at fault; connecting and classifying handshake errors stay with
//! each sink.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How a server's certificate is checked: against the CA certificates of `ca_file` only, or
/// the platform's verifier (the system's trusted roots). tonic takes it directly; every HTTP
/// client through `http::client` ([`client_config_with`]), syslog through [`client_config`].
pub fn server_verifier(ca_file: Option<&Path>) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("ca_file {}: cannot read PEM certificates: {e}", path.display()))?;
            let (added, ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "ca_file {}: holds no usable CA certificate ({ignored} unparsable)",
                    path.display()
                ));
            }
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            Ok(verifier)
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| format!("cannot load the system's trusted CA certificates: {e}"))?;
            Ok(Arc::new(verifier))
        }
    }
}

/// A PEM client certificate chain and its key, for mutual TLS.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The rustls client configuration: TLS 1.3 and 1.2 (RFC 9662), aws-lc-rs, the server checked
/// as [`server_verifier`] says, and the client certificate for mutual TLS.
pub fn client_config(ca_file: Option<&Path>, client_auth: Option<&ClientAuth>) -> Result<rustls::ClientConfig, String> {
    client_config_with(server_verifier(ca_file)?, client_auth)
}

/// [`client_config`] with a verifier already made (shared by two transports of one sink).
pub fn client_config_with(
    verifier: Arc<dyn ServerCertVerifier>,
    client_auth: Option<&ClientAuth>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS set-up: {e}"))?
        // Not "dangerous": the verifier is webpki's or the platform's, as the safe builders use.
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match client_auth {
        None => Ok(builder.with_no_client_auth()),
        Some(auth) => {
            let chain = CertificateDer::pem_file_iter(&auth.cert_file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    format!("client_cert_file {}: cannot read PEM certificates: {e}", auth.cert_file.display())
                })?;
            if chain.is_empty() {
                return Err(format!("client_cert_file {}: holds no certificate", auth.cert_file.display()));
            }
            crate::config::warn_if_shared(&auth.key_file);
            let key = PrivateKeyDer::from_pem_file(&auth.key_file).map_err(|e| {
                format!("client_key_file {}: cannot read a PEM private key: {e}", auth.key_file.display())
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!(
                    "client_cert_file {} and client_key_file {}: {e}",
                    auth.cert_file.display(),
                    auth.key_file.display()
                )
            })
        }
    }
}

/// An HTTP client error for an operator: reqwest's text and every cause below it (reqwest's own
/// text alone says only "error sending request"), without the URL (it may carry secrets; the
/// caller names the redacted URL), plus [`handshake_hint`] when a certificate was refused.
pub fn http_error(e: reqwest::Error) -> String {
    // The proxy the request went through, if any: a connection error is the proxy's to explain.
    let proxy = e.url().and_then(|url| crate::http::proxy_for(url).map(|proxy| (proxy, url.clone())));
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    // The rustls error sits behind boxed connector errors that cannot be downcast; its
    // Display names the variant.
    let refused = [
        ("UnknownIssuer", rustls::CertificateError::UnknownIssuer),
        ("NotValidForName", rustls::CertificateError::NotValidForName),
        ("Expired", rustls::CertificateError::Expired),
    ];
    if let Some((_, kind)) = refused.into_iter().find(|(name, _)| text.contains(name)) {
        text.push_str(handshake_hint(&rustls::Error::InvalidCertificate(kind)));
    }
    if let Some((proxy, url)) = proxy {
        if text.contains("proxy authorization required") {
            text.push_str(&format!(" ({})", crate::http::proxy_refused(&url)));
        } else {
            text.push_str(&format!(" (through proxy {proxy})"));
        }
    }
    text
}

/// What an operator should check after a handshake failed with `e`, as a clause to append.
pub fn handshake_hint(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            "; the receiver's certificate is not signed by a trusted CA: set ca_file to the CA that signed it"
        }
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
        ) => "; the certificate does not name the host connected to (check server_name, address or the URL's host)",
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. },
        ) => "; the receiver's certificate has expired",
        rustls::Error::AlertReceived(_) => {
            "; the receiver refused us: does it require a client certificate (client_cert_file, client_key_file) signed by a CA it trusts?"
        }
        _ => "",
    }
}
