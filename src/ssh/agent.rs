//! Just enough of the ssh-agent protocol (draft-miller-ssh-agent) to hand an in-memory Ed25519
//! key and its certificate to the user's running agent with a lifetime: the key never touches
//! the disk.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ssh_key::private::KeypairData;
use ssh_key::{Certificate, PrivateKey};

const ADD_ID_CONSTRAINED: u8 = 25;
const CONSTRAIN_LIFETIME: u8 = 1;
const SUCCESS: u8 = 6;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot talk to ssh-agent at {0}: {1}")]
    Io(String, std::io::Error),
    #[error("ssh-agent refused the key")]
    Refused,
    #[error("only Ed25519 keys are handed to the agent")]
    KeyType,
    #[error("cannot encode the certificate: {0}")]
    Encode(String),
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The `SSH_AGENTC_ADD_ID_CONSTRAINED` message body for an Ed25519 certificate key.
fn add_message(
    key: &PrivateKey,
    cert: &Certificate,
    lifetime_secs: u32,
    comment: &str,
) -> Result<Vec<u8>, AgentError> {
    let KeypairData::Ed25519(pair) = key.key_data() else {
        return Err(AgentError::KeyType);
    };
    let cert_blob = cert
        .to_bytes()
        .map_err(|e| AgentError::Encode(e.to_string()))?;
    let mut msg = vec![ADD_ID_CONSTRAINED];
    put_string(&mut msg, b"ssh-ed25519-cert-v01@openssh.com");
    put_string(&mut msg, &cert_blob);
    put_string(&mut msg, &pair.public.0);
    // k || A, as OpenSSH keeps Ed25519 private keys.
    let secret = zeroize::Zeroizing::new(pair.to_bytes());
    put_string(&mut msg, secret.as_slice());
    put_string(&mut msg, comment.as_bytes());
    msg.push(CONSTRAIN_LIFETIME);
    msg.extend_from_slice(&lifetime_secs.to_be_bytes());
    Ok(msg)
}

/// Adds key + certificate to the agent at `socket`; the agent forgets them after `lifetime`.
pub fn add_certificate(
    socket: &Path,
    key: &PrivateKey,
    cert: &Certificate,
    lifetime: Duration,
    comment: &str,
) -> Result<(), AgentError> {
    let io = |e| AgentError::Io(socket.display().to_string(), e);
    let secs = u32::try_from(lifetime.as_secs().max(1)).unwrap_or(u32::MAX);
    let msg = zeroize::Zeroizing::new(add_message(key, cert, secs, comment)?);
    let mut stream = UnixStream::connect(socket).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut framed = zeroize::Zeroizing::new(Vec::with_capacity(msg.len() + 4));
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    stream.write_all(&framed).map_err(io)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(io)?;
    let n = u32::from_be_bytes(len) as usize;
    let mut reply = vec![0u8; n.min(1024)];
    stream.read_exact(&mut reply).map_err(io)?;
    if reply.first() == Some(&SUCCESS) {
        Ok(())
    } else {
        Err(AgentError::Refused)
    }
}
