//! Trusting a server's certificate by its SHA-256 fingerprint, as `ssh` trusts host keys: the
//! first `elevate login` to a server whose certificate the system does not trust shows the
//! fingerprint `elevate serve` printed at start and asks to pin it (`--pin` for scripts); later
//! connections accept exactly that certificate and nothing else.

use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// `AB:CD:...` (64 hex digits), as `elevate serve` prints it.
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A fingerprint as people type it: with or without colons, any case, `sha256:` or not.
pub fn normalize(pin: &str) -> anyhow::Result<String> {
    let hex: String = pin
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{pin:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)");
    }
    let bytes = hex::decode(&hex).context("fingerprint")?;
    Ok(bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Accepts the one certificate whose fingerprint is `pin` (the handshake signature is still
/// checked, so only the holder of its key can answer); records what it saw for `login`.
#[derive(Debug)]
struct Pinned {
    pin: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity.as_ref());
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(seen.clone());
        }
        match &self.pin {
            Some(pin) if *pin == seen => Ok(ServerCertVerified::assertion()),
            _ => Err(rustls::Error::General(format!(
                "the server's certificate {seen} is not the pinned one"
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client that trusts only the certificate pinned as `pin` (`None`: none at all, to see what
/// the server presents), and where it records what it saw.
pub fn client(
    timeout: std::time::Duration,
    pin: Option<String>,
) -> anyhow::Result<(reqwest::Client, Arc<Mutex<Option<String>>>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let verifier = Pinned {
        pin,
        seen: seen.clone(),
        provider: provider.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .use_preconfigured_tls(config)
        .build()?;
    Ok((http, seen))
}

/// The fingerprint of the certificate `server` presents, read without sending anything that
/// matters (no token): the handshake is refused as soon as the certificate is seen.
pub async fn probe(server: &str) -> anyhow::Result<String> {
    let (http, seen) = client(std::time::Duration::from_secs(10), None)?;
    let _ = http.get(format!("{server}/healthz")).send().await;
    let seen = seen.lock().ok().and_then(|s| s.clone());
    seen.with_context(|| format!("{server} did not present a TLS certificate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_as_people_type_them() {
        let fp = fingerprint(b"certificate");
        assert_eq!(normalize(&fp).unwrap(), fp);
        assert_eq!(normalize(&fp.replace(':', "").to_lowercase()).unwrap(), fp);
        assert_eq!(normalize(&format!("SHA256:{fp}")).unwrap(), fp);
        assert!(normalize("AB:CD").is_err());
        assert!(normalize(&"ZZ".repeat(32)).is_err());
    }
}
