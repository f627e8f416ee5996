//! OpenSSH key revocation lists in their binary format (`PROTOCOL.krl` in the OpenSSH sources),
//! which `sshd`'s `RevokedKeys` and `ssh-keygen -Q` read. The `ssh-key` crate does not write
//! them. We emit certificate sections only: per CA key, a serial list and a key-id list.

use ssh_key::PublicKey;

const MAGIC: &[u8; 8] = b"SSHKRL\n\0";
const FORMAT_VERSION: u32 = 1;
const SECTION_CERTIFICATES: u8 = 1;
const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_KEY_ID: u8 = 0x23;

/// Certificates revoked under one CA key.
#[derive(Debug, Clone)]
pub struct RevokedUnderCa {
    pub ca: PublicKey,
    pub serials: Vec<u64>,
    pub key_ids: Vec<String>,
}

/// The KRL header fields we set.
#[derive(Debug, Clone, Copy)]
pub struct KrlHeader<'a> {
    /// Increases with every change (hosts can tell an older list from a newer one).
    pub version: u64,
    /// Unix seconds.
    pub generated_at: u64,
    pub comment: &'a str,
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), KrlError> {
    put_u32(
        out,
        u32::try_from(bytes.len()).map_err(|_| KrlError::TooLarge)?,
    );
    out.extend_from_slice(bytes);
    Ok(())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KrlError {
    #[error("a CA key cannot be encoded: {0}")]
    Key(String),
    #[error("serial 0 cannot be revoked (OpenSSH refuses it)")]
    ZeroSerial,
    #[error("a KRL section is larger than 4 GiB")]
    TooLarge,
}

/// Encodes a KRL. Serials are sorted and deduplicated; a CA with nothing revoked gets no section.
pub fn encode(header: KrlHeader<'_>, revoked: &[RevokedUnderCa]) -> Result<Vec<u8>, KrlError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, FORMAT_VERSION);
    put_u64(&mut out, header.version);
    put_u64(&mut out, header.generated_at);
    put_u64(&mut out, 0); // flags
    put_string(&mut out, b"")?; // reserved
    put_string(&mut out, header.comment.as_bytes())?;
    for under in revoked {
        let mut serials = under.serials.clone();
        serials.sort_unstable();
        serials.dedup();
        if serials.first() == Some(&0) {
            return Err(KrlError::ZeroSerial);
        }
        let mut key_ids = under.key_ids.clone();
        key_ids.sort();
        key_ids.dedup();
        if serials.is_empty() && key_ids.is_empty() {
            continue;
        }
        let ca_blob = under
            .ca
            .to_bytes()
            .map_err(|e| KrlError::Key(e.to_string()))?;
        let mut section = Vec::new();
        put_string(&mut section, &ca_blob)?;
        put_string(&mut section, b"")?; // reserved
        if !serials.is_empty() {
            let mut list = Vec::with_capacity(serials.len() * 8);
            for s in serials {
                put_u64(&mut list, s);
            }
            section.push(CERT_SERIAL_LIST);
            put_string(&mut section, &list)?;
        }
        if !key_ids.is_empty() {
            let mut ids = Vec::new();
            for id in &key_ids {
                put_string(&mut ids, id.as_bytes())?;
            }
            section.push(CERT_KEY_ID);
            put_string(&mut section, &ids)?;
        }
        out.push(SECTION_CERTIFICATES);
        put_string(&mut out, &section)?;
    }
    Ok(out)
}

/// Whether bytes look like a KRL we can hand to `sshd`: the magic and a format version it reads.
/// (`sshd` treats a file without the magic as a plain list of keys, so a garbled download would
/// silently revoke nothing: `host sync` checks this before replacing a file.)
pub fn looks_valid(bytes: &[u8]) -> bool {
    bytes.len() >= 44 && bytes.starts_with(MAGIC) && bytes[8..12] == FORMAT_VERSION.to_be_bytes()
}

#[cfg(test)]
mod tests;
