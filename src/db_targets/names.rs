//! Names and secrets of the logins elevate creates. Role names are generated, never taken from
//! input: `elv_<tenant tag>_<request>_<random>` (28 characters, lower-case ASCII, within MySQL's
//! 32), so the start-up sweep can tell one tenant's roles from another's on a shared server.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

const PASSWORD_LEN: usize = 32;
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const BASE32_LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The prefix of every role elevate creates for a tenant.
pub fn tenant_prefix(tenant_id: Uuid) -> String {
    let digest = Sha256::digest(format!("elevate-tenant:{tenant_id}"));
    format!("elv_{}_", &hex::encode(digest)[..8])
}

/// The request's short id as it appears in role names: the last 8 hex digits (the random end
/// of a v7 id; the leading digits are a timestamp shared by requests filed together).
pub fn short_request_id(request: Uuid) -> String {
    let simple = request.simple().to_string();
    simple[simple.len() - 8..].to_owned()
}

fn random_from(alphabet: &[u8], len: usize) -> Result<Zeroizing<String>, getrandom::Error> {
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - (256 % alphabet.len());
    let mut out = Zeroizing::new(String::with_capacity(len));
    let mut buf = Zeroizing::new([0u8; 64]);
    while out.len() < len {
        getrandom::getrandom(buf.as_mut())?;
        for &b in buf.iter() {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    Ok(out)
}

pub fn role_name(tenant_id: Uuid, request: Uuid) -> Result<String, getrandom::Error> {
    let suffix = random_from(BASE32_LOWER, 6)?;
    Ok(format!(
        "{}{}_{}",
        tenant_prefix(tenant_id),
        short_request_id(request),
        suffix.as_str()
    ))
}

/// 32 random alphanumerics (about 190 bits).
pub fn password() -> Result<Zeroizing<String>, getrandom::Error> {
    random_from(ALPHANUMERIC, PASSWORD_LEN)
}

/// A PostgreSQL `SCRAM-SHA-256` verifier for `password`: the server stores it as given, so the
/// password itself never reaches the target (nor its statement log).
pub fn scram_sha256_verifier(password: &str) -> anyhow::Result<String> {
    const ITERATIONS: u32 = 4096;
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)?;
    scram_with_salt(password, &salt, ITERATIONS)
}

fn scram_with_salt(password: &str, salt: &[u8], iterations: u32) -> anyhow::Result<String> {
    let mut salted = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, salted.as_mut());
    let hmac = |msg: &[u8]| -> anyhow::Result<_> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(salted.as_ref())?;
        m.update(msg);
        Ok(m.finalize().into_bytes())
    };
    let stored_key = Sha256::digest(hmac(b"Client Key")?);
    let server_key = hmac(b"Server Key")?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_short_safe_and_carry_tenant_and_request() {
        let tenant = Uuid::now_v7();
        let request = Uuid::now_v7();
        let a = role_name(tenant, request).unwrap();
        let b = role_name(tenant, request).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 28);
        assert!(a.starts_with(&tenant_prefix(tenant)));
        assert!(a.contains(&short_request_id(request)));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        assert_ne!(tenant_prefix(tenant), tenant_prefix(Uuid::now_v7()));
    }

    #[test]
    fn passwords_are_long_and_alphanumeric() {
        let p = password().unwrap();
        assert_eq!(p.len(), 32);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(*p, *password().unwrap());
    }

    #[test]
    fn scram_verifier_has_postgres_format() {
        // That PostgreSQL accepts the verifier is proven by the integration tests logging in.
        let v = scram_with_salt("pencil", b"0123456789abcdef", 4096).unwrap();
        assert!(v.starts_with("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$"));
        let (_, keys) = v.rsplit_once('$').unwrap();
        let (stored, server) = keys.split_once(':').unwrap();
        assert_eq!(stored.len(), 44);
        assert_eq!(server.len(), 44);
        assert_ne!(
            v,
            scram_with_salt("pencil", b"fedcba9876543210", 4096).unwrap()
        );
    }
}
