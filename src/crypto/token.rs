//! Bearer secrets: API tokens, session ids and sign-in links. Each is 256 random bits, shown to
//! its holder once and stored only as its SHA-256 hash. Looking one up by hash and then comparing
//! the hashes in constant time means neither the database nor the timing of a comparison reveals it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The kinds of bearer secret, each with its own visible prefix so a leaked one is recognisable
/// (secret scanners) and one kind can never be used as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Api,
    Session,
    SignIn,
    /// The device code of a CLI login (RFC 8628), polled until a person approves it.
    Device,
    /// An SSH host's token (`elevate admin host add`): host actions of one tenant only.
    Host,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Api => "elv_",
            TokenKind::Session => "els_",
            TokenKind::SignIn => "ell_",
            TokenKind::Device => "eld_",
            TokenKind::Host => "elh_",
        }
    }
}

/// The plaintext secret: only ever handed to its holder.
pub struct SecretToken(SecretString);

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken([REDACTED])")
    }
}

impl SecretToken {
    pub fn generate(kind: TokenKind) -> Result<(Self, TokenHash), getrandom::Error> {
        let raw = super::random_bytes::<32>()?;
        let text = format!("{}{}", kind.prefix(), B64URL.encode(raw));
        let hash = TokenHash::of(&text);
        Ok((Self(SecretString::from(text)), hash))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// SHA-256 of a bearer secret: the only form that is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", hex::encode(&self.0[..4]))
    }
}

impl TokenHash {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Hashes a presented secret, refusing anything that is not of the expected kind and shape
    /// before touching the store.
    pub fn of_presented(kind: TokenKind, presented: &str) -> Option<Self> {
        let body = presented.strip_prefix(kind.prefix())?;
        if body.len() != 43
            || !body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        Some(Self::of(presented))
    }

    /// Constant-time equality with a stored hash.
    pub fn matches(&self, stored: &[u8]) -> bool {
        stored.len() == 32 && bool::from(self.0.as_slice().ct_eq(stored))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_distinct_prefixed_and_hash_to_themselves() {
        let (a, ha) = SecretToken::generate(TokenKind::Api).unwrap();
        let (b, hb) = SecretToken::generate(TokenKind::Api).unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with("elv_"));
        assert_eq!(
            TokenHash::of_presented(TokenKind::Api, a.expose()),
            Some(ha)
        );
        assert!(ha.matches(&ha.0) && !ha.matches(&hb.0) && !ha.matches(&ha.0[..31]));
        assert_eq!(format!("{a:?}"), "SecretToken([REDACTED])");
    }

    #[test]
    fn presented_tokens_of_the_wrong_kind_or_shape_are_refused() {
        let (a, _) = SecretToken::generate(TokenKind::Session).unwrap();
        assert_eq!(TokenHash::of_presented(TokenKind::Api, a.expose()), None);
        assert_eq!(TokenHash::of_presented(TokenKind::Api, "elv_short"), None);
        assert_eq!(
            TokenHash::of_presented(TokenKind::Api, &format!("elv_{}", "!".repeat(43))),
            None
        );
    }
}
