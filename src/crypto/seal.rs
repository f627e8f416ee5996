//! Secrets at rest (CA private keys, target passwords, webhook secrets) are sealed with
//! XChaCha20-Poly1305 under the master key. Each sealed blob names the key that sealed it, so the
//! master key can be rotated: the first key of the key file seals, every key in it can open.
//!
//! Blob layout: `0x01 | key id (8 bytes) | nonce (24 bytes) | ciphertext+tag`. The caller passes
//! associated data naming what the secret is and whose it is (`"ca:<tenant>:<key id>"`), so a
//! blob copied into another row or tenant does not open.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox};
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed under master key {0}, which is not in the configured master key set")]
    UnknownKey(String),
    #[error("cannot open sealed value: wrong master key or tampered data")]
    Tampered,
    #[error("master key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("operating system random number generator failed")]
    Random,
}

/// One 256-bit key with its id (the first 8 bytes of a SHA-256 over the key, so an id can never
/// name the wrong key).
struct KeyEntry {
    id: [u8; KEY_ID_LEN],
    cipher: XChaCha20Poly1305,
}

/// The set of master keys: the first seals, all open.
pub struct MasterKey {
    keys: Vec<KeyEntry>,
    /// Where this replica keeps local state that must stay outside the database (the audit
    /// anchors, see `audit::anchor`): beside the key file unless set otherwise.
    anchor_dir: Option<PathBuf>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("active_key_id", &self.active_key_id())
            .finish()
    }
}

impl MasterKey {
    fn from_raw(raw: &[SecretBox<[u8; 32]>]) -> Result<Self, SealError> {
        if raw.is_empty() {
            return Err(SealError::Malformed);
        }
        let keys = raw
            .iter()
            .map(|k| {
                let bytes = k.expose_secret();
                let digest = Sha256::new()
                    .chain_update(b"elevate master key id\0")
                    .chain_update(bytes)
                    .finalize();
                let mut id = [0u8; KEY_ID_LEN];
                id.copy_from_slice(&digest[..KEY_ID_LEN]);
                KeyEntry {
                    id,
                    cipher: XChaCha20Poly1305::new(Key::from_slice(bytes)),
                }
            })
            .collect();
        Ok(Self {
            keys,
            anchor_dir: None,
        })
    }

    /// The directory for this replica's audit anchors (`None`: a key that lives only in memory,
    /// which keeps no anchor).
    pub fn anchor_dir(&self) -> Option<&Path> {
        self.anchor_dir.as_deref()
    }

    /// Keeps the audit anchors in `dir` instead of beside the key file (a read-only secret
    /// mount, for one).
    pub fn with_anchor_dir(mut self, dir: PathBuf) -> Self {
        self.anchor_dir = Some(dir);
        self
    }

    fn beside(mut self, path: &Path) -> Self {
        self.anchor_dir = Some(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        );
        self
    }

    /// A fresh random key (development and tests).
    pub fn generate() -> Result<Self, SealError> {
        let raw = super::random_bytes::<32>().map_err(|_| SealError::Random)?;
        Self::from_raw(&[SecretBox::new(Box::new(raw))])
    }

    /// Parses the key-file text: one base64 key per line, `#` comments, first key active.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SealError> {
        let bad = |reason: String| SealError::KeyFile {
            path: origin.to_owned(),
            reason,
        };
        let mut raw = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = B64
                .decode(line)
                .map_err(|_| bad(format!("line {} is not base64", n + 1)))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| bad(format!("line {} is not a 32-byte key", n + 1)))?;
            raw.push(SecretBox::new(Box::new(key)));
        }
        if raw.is_empty() {
            return Err(bad("contains no key".into()));
        }
        Self::from_raw(&raw)
    }

    pub fn load(path: &Path) -> Result<Self, SealError> {
        let text = std::fs::read_to_string(path).map_err(|e| SealError::KeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self::parse(&text, &path.display().to_string())?.beside(path))
    }

    /// Writes a new random key to `path` with mode 0600, refusing to overwrite an existing file.
    pub fn generate_file(path: &Path) -> Result<Self, SealError> {
        let io = |e: std::io::Error| SealError::KeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let raw = super::random_bytes::<32>().map_err(|_| SealError::Random)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        let text = format!(
            "# elevate master key. Seals CA keys and target passwords: keep it secret, back it up.\n\
             # To rotate, put a new key on the first line and keep the old ones below it.\n{}\n",
            B64.encode(raw)
        );
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self::from_raw(&[SecretBox::new(Box::new(raw))])?.beside(path))
    }

    pub fn active_key_id(&self) -> String {
        self.keys
            .first()
            .map(|k| hex::encode(k.id))
            .unwrap_or_default()
    }

    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let key = self.keys.first().ok_or(SealError::Malformed)?;
        let nonce = super::random_bytes::<NONCE_LEN>().map_err(|_| SealError::Random)?;
        let ciphertext = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Malformed)?;
        let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<SecretBox<Vec<u8>>, SealError> {
        if sealed.len() < HEADER_LEN + 16 || sealed[0] != VERSION {
            return Err(SealError::Malformed);
        }
        let id = &sealed[1..1 + KEY_ID_LEN];
        let nonce = &sealed[1 + KEY_ID_LEN..HEADER_LEN];
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(hex::encode(id)))?;
        let plaintext = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Tampered)?;
        Ok(SecretBox::new(Box::new(plaintext)))
    }

    /// The key id a blob was sealed under, for diagnostics.
    pub fn key_id_of(sealed: &[u8]) -> Option<String> {
        sealed.get(1..1 + KEY_ID_LEN).map(hex::encode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_binds_aad() {
        let key = MasterKey::generate().unwrap();
        let blob = key.seal("ca:t1", b"secret").unwrap();
        assert!(!blob.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            key.open("ca:t1", &blob).unwrap().expose_secret().as_slice(),
            b"secret"
        );
        assert!(matches!(key.open("ca:t2", &blob), Err(SealError::Tampered)));
    }

    #[test]
    fn wrong_key_and_tampering_are_refused() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::generate().unwrap();
        let mut blob = a.seal("x", b"secret").unwrap();
        assert!(matches!(b.open("x", &blob), Err(SealError::UnknownKey(_))));
        let last = blob.len() - 1;
        blob[last] ^= 1;
        assert!(matches!(a.open("x", &blob), Err(SealError::Tampered)));
        assert!(matches!(
            a.open("x", &blob[..10]),
            Err(SealError::Malformed)
        ));
    }

    #[test]
    fn rotation_keeps_old_keys_able_to_open() {
        let old = "cOgZ0m0o7C9m3bfyvXGgq5q0b1GkQ6t9bJ8Qn5lqYgM=";
        let new = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let before = MasterKey::parse(old, "t").unwrap();
        let blob = before.seal("x", b"v").unwrap();
        let after = MasterKey::parse(&format!("# rotated\n{new}\n{old}\n"), "t").unwrap();
        assert_ne!(after.active_key_id(), before.active_key_id());
        assert_eq!(
            after.open("x", &blob).unwrap().expose_secret().as_slice(),
            b"v"
        );
        let resealed = after.seal("x", b"v").unwrap();
        assert_eq!(
            MasterKey::key_id_of(&resealed).unwrap(),
            after.active_key_id()
        );
    }

    #[test]
    fn bad_key_files_name_the_problem() {
        let err = MasterKey::parse("not base64!!", "k.key")
            .unwrap_err()
            .to_string();
        assert!(err.contains("k.key") && err.contains("line 1"), "{err}");
        let err = MasterKey::parse("# only a comment\n", "k.key")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no key"), "{err}");
        let err = MasterKey::parse("AAAA", "k.key").unwrap_err().to_string();
        assert!(err.contains("32-byte"), "{err}");
    }

    #[test]
    fn generated_file_is_private_and_not_overwritten() {
        let dir = std::env::temp_dir().join(format!("elevate-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("elevate.key");
        let generated = MasterKey::generate_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(
            MasterKey::load(&path).unwrap().active_key_id(),
            generated.active_key_id()
        );
        assert!(MasterKey::generate_file(&path).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
