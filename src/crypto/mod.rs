//! Cryptographic building blocks: sealing secrets at rest under the master key, and the opaque
//! bearer secrets (API tokens, sessions, sign-in links) that are stored only as hashes.

pub mod seal;
pub mod token;

pub use seal::{MasterKey, SealError};
pub use token::{SecretToken, TokenHash};

/// Fills a buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf)?;
    Ok(buf)
}
