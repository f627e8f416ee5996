//! Building a user certificate from a grant (DESIGN §4): which public keys we accept, the
//! validity window, the key id, the extensions and critical options. Pure: no store, no clock.

use ssh_key::certificate::{Builder, CertType};
use ssh_key::public::KeyData;
use ssh_key::rand_core::OsRng;
use ssh_key::{Certificate, EcdsaCurve, HashAlg, PrivateKey, PublicKey};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::policy::SshGrant;

/// Clock skew allowance: certificates are valid from a minute ago.
pub const BACKDATE: Duration = Duration::seconds(60);
/// The smallest RSA modulus we certify.
pub const MIN_RSA_BITS: usize = 3072;
/// The largest: OpenSSH itself refuses moduli over 16384 bits (`SSH_RSA_MAXIMUM_MODULUS_SIZE`),
/// and a huge one is only a way to make every signature check slow.
pub const MAX_RSA_BITS: usize = 16384;
/// The extension carrying the request id (and ticket) into `sshd`'s logs and `ssh-keygen -L`.
pub const REQUEST_EXTENSION: &str = "request-id@elevate";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRefusal {
    #[error("no public key given: paste the contents of a .pub file (e.g. ~/.ssh/id_ed25519.pub)")]
    Empty,
    #[error(
        "that is a private key: never share it. Paste the public key (the .pub file) instead, and consider this private key exposed"
    )]
    PrivateKey,
    #[error("that is a certificate: paste the public key (the .pub file), not a -cert.pub file")]
    Certificate,
    #[error("one public key only, on one line")]
    Several,
    #[error("not an OpenSSH public key (expected a line like `ssh-ed25519 AAAA... comment`)")]
    Malformed,
    #[error(
        "RSA keys need at least {MIN_RSA_BITS} bits; this one has {0}. Use Ed25519 (ssh-keygen -t ed25519)"
    )]
    WeakRsa(usize),
    #[error(
        "RSA keys over {MAX_RSA_BITS} bits are not accepted; this one has {0}. Use Ed25519 (ssh-keygen -t ed25519)"
    )]
    HugeRsa(usize),
    #[error(
        "this RSA key's public exponent is unsafe (it must be odd and at least 65537, NIST SP 800-89): make a new key with ssh-keygen -t ed25519"
    )]
    RsaExponent,
    #[error("{0} keys are not accepted: use Ed25519, ECDSA or RSA (3072 bits or more)")]
    Algorithm(String),
}

/// Parses a user's public key in OpenSSH format and checks it is a kind we certify. Errors never
/// echo the input (someone may paste a private key).
pub fn parse_user_key(text: &str) -> Result<PublicKey, KeyRefusal> {
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyRefusal::Empty);
    }
    if text.contains("PRIVATE KEY") {
        return Err(KeyRefusal::PrivateKey);
    }
    if text.lines().filter(|l| !l.trim().is_empty()).count() > 1 {
        return Err(KeyRefusal::Several);
    }
    if text
        .split_whitespace()
        .next()
        .is_some_and(|a| a.contains("-cert-v01@openssh.com"))
    {
        return Err(KeyRefusal::Certificate);
    }
    let key = PublicKey::from_openssh(text).map_err(|_| KeyRefusal::Malformed)?;
    match key.key_data() {
        KeyData::Ed25519(_) => {}
        KeyData::Ecdsa(k) => match k.curve() {
            EcdsaCurve::NistP256 | EcdsaCurve::NistP384 | EcdsaCurve::NistP521 => {}
        },
        KeyData::Rsa(k) => {
            let bits = mpint_bits(k.n.as_positive_bytes().unwrap_or_default());
            if bits < MIN_RSA_BITS {
                return Err(KeyRefusal::WeakRsa(bits));
            }
            if bits > MAX_RSA_BITS {
                return Err(KeyRefusal::HugeRsa(bits));
            }
            if !rsa_exponent_ok(k.e.as_positive_bytes().unwrap_or_default()) {
                return Err(KeyRefusal::RsaExponent);
            }
        }
        other => return Err(KeyRefusal::Algorithm(other.algorithm().to_string())),
    }
    Ok(key)
}

/// NIST SP 800-89 §5.3.3: an RSA public exponent is odd and at least 65537 (an exponent of 1
/// makes every "signature" its own message; small ones invite other attacks). Big-endian bytes.
fn rsa_exponent_ok(bytes: &[u8]) -> bool {
    let odd = bytes.last().is_some_and(|b| b & 1 == 1);
    odd && mpint_bits(bytes) >= 17
}

fn mpint_bits(bytes: &[u8]) -> usize {
    let bytes = match bytes.iter().position(|b| *b != 0) {
        Some(i) => &bytes[i..],
        None => return 0,
    };
    bytes.len() * 8 - bytes[0].leading_zeros() as usize
}

/// The file name `ssh` looks for beside the private key: `id_ed25519-cert.pub` and so on.
pub fn cert_file_name(key: &KeyData) -> &'static str {
    match key {
        KeyData::Ecdsa(_) => "id_ecdsa-cert.pub",
        KeyData::Rsa(_) => "id_rsa-cert.pub",
        _ => "id_ed25519-cert.pub",
    }
}

/// `[valid_after, valid_before)`: from a minute ago to the grant's end or the certificate TTL,
/// whichever comes first.
pub fn validity(
    now: OffsetDateTime,
    grant_end: OffsetDateTime,
    ttl: Duration,
) -> (OffsetDateTime, OffsetDateTime) {
    (now - BACKDATE, grant_end.min(now + ttl))
}

/// `elevate:<tenant>:<email>:<request id>`, as DESIGN §4 names it.
pub fn key_id(tenant_slug: &str, email: &str, request: Uuid) -> String {
    format!("elevate:{tenant_slug}:{email}:{request}")
}

/// What goes into one certificate.
#[derive(Debug, Clone)]
pub struct CertSpec<'a> {
    pub serial: u64,
    pub key_id: String,
    pub request: Uuid,
    pub ticket: Option<&'a str>,
    pub grant: &'a SshGrant,
    pub valid_after: OffsetDateTime,
    pub valid_before: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot sign the certificate: {0}")]
pub struct SignError(String);

fn unix(t: OffsetDateTime) -> Result<u64, SignError> {
    u64::try_from(t.unix_timestamp()).map_err(|_| SignError(format!("time {t} before 1970")))
}

/// Signs a user certificate for `key` with the CA. Extensions are exactly the profile's plus the
/// request extension; critical options only those the profile sets.
pub fn sign(
    ca: &PrivateKey,
    key: &PublicKey,
    spec: &CertSpec<'_>,
) -> Result<Certificate, SignError> {
    let e = |e: ssh_key::Error| SignError(e.to_string());
    let mut b = Builder::new_with_random_nonce(
        &mut OsRng,
        key.key_data().clone(),
        unix(spec.valid_after)?,
        unix(spec.valid_before)?,
    )
    .map_err(e)?;
    b.serial(spec.serial).map_err(e)?;
    b.cert_type(CertType::User).map_err(e)?;
    b.key_id(spec.key_id.clone()).map_err(e)?;
    for p in &spec.grant.principals {
        b.valid_principal(p.clone()).map_err(e)?;
    }
    for x in &spec.grant.extensions {
        b.extension(x.clone(), "").map_err(e)?;
    }
    let carried = match spec.ticket {
        Some(t) if !t.is_empty() => format!("{};ticket={t}", spec.request),
        _ => spec.request.to_string(),
    };
    b.extension(REQUEST_EXTENSION, carried).map_err(e)?;
    if let Some(cmd) = &spec.grant.force_command {
        b.critical_option("force-command", cmd.clone()).map_err(e)?;
    }
    if !spec.grant.source_address.is_empty() {
        b.critical_option("source-address", spec.grant.source_address.join(","))
            .map_err(e)?;
    }
    b.comment(spec.key_id.clone()).map_err(e)?;
    b.sign(ca).map_err(e)
}

/// A certificate a host saw presented at login (`SSH_USER_AUTH`), checked against the CA keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub serial: u64,
    pub key_id: String,
    pub principals: Vec<String>,
    /// From the request extension; None in a certificate elevate did not sign.
    pub request: Option<Uuid>,
    pub valid_before: OffsetDateTime,
}

/// Parses an OpenSSH certificate and checks that one of `trusted` (OpenSSH public keys) signed it
/// and that it is valid at `now`. The refusal is a sentence for the person logging in.
pub fn check_presented(
    text: &str,
    trusted: &[String],
    now: OffsetDateTime,
) -> Result<Presented, String> {
    let cert = Certificate::from_openssh(text.trim())
        .map_err(|e| format!("the login's certificate does not parse: {e}"))?;
    let fingerprints: Vec<_> = trusted
        .iter()
        .filter_map(|k| PublicKey::from_openssh(k).ok())
        .map(|k| k.fingerprint(HashAlg::Sha256))
        .collect();
    let at = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    cert.validate_at(at, &fingerprints).map_err(|_| {
        "the certificate is not signed by this organisation's CA, or not valid now".to_owned()
    })?;
    let request = cert
        .extensions()
        .get(REQUEST_EXTENSION)
        .and_then(|v| v.split(';').next())
        .and_then(|id| id.parse().ok());
    let valid_before = i64::try_from(cert.valid_before())
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or_else(|| "the certificate's end of validity is out of range".to_owned())?;
    Ok(Presented {
        serial: cert.serial(),
        key_id: cert.key_id().to_owned(),
        principals: cert.valid_principals().to_vec(),
        request,
        valid_before,
    })
}

/// SHA-256 fingerprint as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(alg: &str) -> String {
        let dir = std::env::temp_dir().join(format!("elevate-keytest-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        let mut cmd = std::process::Command::new("ssh-keygen");
        cmd.args(["-q", "-N", "", "-f"]).arg(&path);
        match alg.split_once(':') {
            Some((t, bits)) => cmd.args(["-t", t, "-b", bits]),
            None => cmd.args(["-t", alg]),
        };
        assert!(cmd.status().unwrap().success());
        let text = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        text
    }

    #[test]
    fn accepts_ed25519_ecdsa_and_strong_rsa_only() {
        for ok in ["ed25519", "ecdsa:256", "ecdsa:384", "ecdsa:521", "rsa:3072"] {
            let key = parse_user_key(&key_of(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(!fingerprint(&key).is_empty());
        }
        assert_eq!(
            parse_user_key(&key_of("rsa:2048")).unwrap_err(),
            KeyRefusal::WeakRsa(2048)
        );
    }

    #[test]
    fn refuses_garbage_private_keys_and_certificates_without_echoing_them() {
        assert_eq!(parse_user_key("  ").unwrap_err(), KeyRefusal::Empty);
        assert_eq!(
            parse_user_key("ssh-ed25519 AAAAnotbase64").unwrap_err(),
            KeyRefusal::Malformed
        );
        let secret = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
        let err = parse_user_key(secret).unwrap_err();
        assert_eq!(err, KeyRefusal::PrivateKey);
        assert!(!err.to_string().contains("b3BlbnNzaC1rZXktdjEAAAAA"));
        let two = format!("{}\n{}", key_of("ed25519"), key_of("ed25519"));
        assert_eq!(parse_user_key(&two).unwrap_err(), KeyRefusal::Several);
        assert_eq!(
            parse_user_key("ssh-ed25519-cert-v01@openssh.com AAAA x").unwrap_err(),
            KeyRefusal::Certificate
        );
        // DSA: still generated by this OpenSSH, never certified by us.
        assert!(matches!(
            parse_user_key(&key_of("dsa")).unwrap_err(),
            KeyRefusal::Algorithm(a) if a == "ssh-dss"
        ));
    }

    #[test]
    fn validity_is_backdated_and_bounded_by_grant_and_ttl() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let (a, b) = validity(now, now + Duration::hours(4), Duration::hours(1));
        assert_eq!(a, now - Duration::seconds(60));
        assert_eq!(b, now + Duration::hours(1));
        let (_, b) = validity(now, now + Duration::minutes(5), Duration::hours(1));
        assert_eq!(b, now + Duration::minutes(5));
    }

    #[test]
    fn rsa_exponents_follow_sp_800_89() {
        assert!(rsa_exponent_ok(&[0x01, 0x00, 0x01])); // 65537
        assert!(rsa_exponent_ok(&[0x00, 0x01, 0x00, 0x01]));
        assert!(rsa_exponent_ok(&[0x01, 0x00, 0x00, 0x00, 0x01]));
        for bad in [
            &[][..],
            &[1],
            &[3],
            &[0x01, 0x00, 0x00],
            &[0xff, 0xff],
            &[0x02, 0x00, 0x00],
        ] {
            assert!(!rsa_exponent_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn rsa_bits_ignore_the_sign_byte() {
        assert_eq!(mpint_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(mpint_bits(&[0x01]), 1);
        assert_eq!(mpint_bits(&[]), 0);
    }
}
