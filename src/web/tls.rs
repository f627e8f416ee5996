//! TLS 1.3 only, via rustls with the ring provider. Without a configured certificate, a
//! development certificate for `localhost`/`127.0.0.1` is generated once and kept beside the
//! database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

pub use crate::config::{DEV_CERT_FILE, DEV_KEY_FILE};

/// The dev certificate's paths in `dir`, generating it if absent. Returns whether it was made now.
pub fn ensure_dev_certificate(
    dir: &Path,
    now: OffsetDateTime,
) -> anyhow::Result<(PathBuf, PathBuf, bool)> {
    let cert_path = dir.join(DEV_CERT_FILE);
    let key_path = dir.join(DEV_KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path, false));
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating TLS key")?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .context("certificate names")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "elevate development certificate");
    dn.push(DnType::OrganizationName, "elevate (development only)");
    params.distinguished_name = dn;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365);
    let cert = params
        .self_signed(&key)
        .context("signing development certificate")?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    Ok((cert_path, key_path, true))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::files::write_private(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// A rustls server configuration offering TLS 1.3 only, HTTP/2 and HTTP/1.1.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("reading TLS certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "TLS certificate file {} holds no certificate",
            cert_path.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("reading TLS key {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// SHA-256 fingerprint of the first certificate in a PEM file, for people to compare.
pub fn fingerprint(cert_path: &Path) -> anyhow::Result<String> {
    let cert = CertificateDer::from_pem_file(cert_path).context("reading TLS certificate")?;
    let digest = Sha256::digest(cert.as_ref());
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}
