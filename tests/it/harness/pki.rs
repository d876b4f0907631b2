//! Test certificates made with rcgen, as PEM files: a CA, a server certificate for `localhost`
//! and 127.0.0.1, a client certificate for mutual TLS, and an unrelated CA. Every TLS test
//! (rsyslog, the OTLP receiver) uses these.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// A test PKI as PEM files under `<dir>/pki`: a CA, a server certificate for `localhost` /
/// 127.0.0.1, a client certificate for mutual TLS, and an unrelated CA for "wrong CA" tests.
/// Keys are ECDSA P-256 (rcgen's default); both rsyslog drivers and rustls accept them.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The test CA that signed the server and client certificates.
    pub ca_pem: PathBuf,
    /// CN and SAN `localhost`, SAN IP 127.0.0.1, EKU serverAuth.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// CN (and SAN) `siem-agent`, EKU clientAuth.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A self-signed CA that signed nothing here: trusting only it must fail the handshake.
    pub other_ca_pem: PathBuf,
}

/// Makes a fresh [`Pki`] under `<dir>/pki`.
pub fn make_pki(dir: &Path) -> Pki {
    let pki_dir = dir.join("pki");
    fs::create_dir_all(&pki_dir).unwrap();
    let write = |name: &str, pem: String| {
        let path = pki_dir.join(name);
        fs::write(&path, pem).unwrap();
        path
    };

    let (root_params, ca_key) = ca_params("auditrelay test CA");
    let ca_cert = root_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(root_params, ca_key);

    let mut server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "localhost");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server.signed_by(&server_key, &ca).unwrap();

    let mut client = CertificateParams::new(vec!["siem-agent".to_owned()]).unwrap();
    client.distinguished_name.push(DnType::CommonName, "siem-agent");
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().unwrap();
    let client_cert = client.signed_by(&client_key, &ca).unwrap();

    let (other_params, other_key) = ca_params("unrelated test CA");
    let other_cert = other_params.self_signed(&other_key).unwrap();

    Pki {
        ca_pem: write("ca.pem", ca_cert.pem()),
        server_cert: write("server.pem", server_cert.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_cert: write("client.pem", client_cert.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
        other_ca_pem: write("other-ca.pem", other_cert.pem()),
    }
}

fn ca_params(common_name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (params, KeyPair::generate().unwrap())
}
