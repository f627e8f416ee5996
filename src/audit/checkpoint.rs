//! Signed checkpoints: every N events or M seconds elevate signs the head of a tenant's chain
//! `(tenant, seq, hash, time, key)` with the tenant's Ed25519 audit key. A copy of a checkpoint
//! kept anywhere else (webhook receivers, an auditor's notes) pins everything before it: rewriting
//! history then needs the private key, which never leaves elevate sealed.
//!
//! Signatures are OpenSSH `SSHSIG` (namespace [`NAMESPACE`]) over [`Checkpoint::message`], so a
//! checkpoint can also be checked with stock `ssh-keygen -Y check-novalidate`.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::crypto::MasterKey;
use crate::error::{AppError, AppResult};
use crate::model::KeyPurpose;
use crate::store::{Store, TenantTx};

/// The SSHSIG namespace: a signature made for anything else never verifies as a checkpoint.
pub const NAMESPACE: &str = "elevate-audit@elevate";

/// What a signature vouches for. `Checkpoint` rows are stored; a `Head` is signed when an export
/// is made and ends it, so an export cut short is told apart from one that is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Checkpoint,
    Head,
}

/// A signed statement "the chain of `tenant_id` had `head_hash` at `seq` at time `at`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub tenant_id: Uuid,
    pub seq: i64,
    #[serde(with = "hex::serde")]
    pub head_hash: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub signing_key_id: Uuid,
    /// Heads only: how many checkpoints the export carries before it, so dropping one is
    /// detected too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<u64>,
    /// PEM-armoured SSHSIG.
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is malformed")]
    Malformed,
    #[error("signed by a key that is not the tenant's audit key")]
    UnknownKey,
    #[error("the signature does not match the checkpoint")]
    Invalid,
}

impl Checkpoint {
    /// A statement about a chain head, to be signed with [`Checkpoint::sign`].
    pub fn unsigned(
        tenant_id: Uuid,
        seq: i64,
        head_hash: &[u8],
        at: OffsetDateTime,
        signing_key_id: Uuid,
    ) -> Self {
        Checkpoint {
            tenant_id,
            seq,
            head_hash: head_hash.to_vec(),
            at: crate::clock::truncate(at),
            signing_key_id,
            checkpoints: None,
            signature: String::new(),
        }
    }

    /// The bytes signed. Every field is in it (the key id too), so no byte of a checkpoint can
    /// change without breaking its signature.
    pub fn message(&self, kind: Kind) -> Vec<u8> {
        let kind = match kind {
            Kind::Checkpoint => "checkpoint",
            Kind::Head => "head",
        };
        let at = self.at.format(&Rfc3339).unwrap_or_default();
        let mut m = format!(
            "elevate audit {kind} v1\ntenant {}\nseq {}\nhash {}\nat {at}\nkey {}\n",
            self.tenant_id,
            self.seq,
            hex::encode(&self.head_hash),
            self.signing_key_id,
        );
        if let Some(n) = self.checkpoints {
            m.push_str(&format!("checkpoints {n}\n"));
        }
        m.into_bytes()
    }

    pub fn sign(mut self, kind: Kind, key: &PrivateKey) -> AppResult<Self> {
        let sig = key
            .sign(NAMESPACE, HashAlg::Sha512, &self.message(kind))
            .map_err(AppError::internal)?;
        self.signature = sig.to_pem(LineEnding::LF).map_err(AppError::internal)?;
        Ok(self)
    }

    /// Checks the signature against the trusted keys (one of them must have made it).
    pub fn verify(&self, kind: Kind, trusted: &[PublicKey]) -> Result<(), SignatureError> {
        let sig = SshSig::from_pem(&self.signature).map_err(|_| SignatureError::Malformed)?;
        // Only the canonical armour counts: base64 has spare bits, and a byte changed there
        // would otherwise decode to the same signature.
        if sig.to_pem(LineEnding::LF).ok().as_deref() != Some(self.signature.as_str()) {
            return Err(SignatureError::Malformed);
        }
        let key = trusted
            .iter()
            .find(|k| k.key_data() == sig.public_key())
            .ok_or(SignatureError::UnknownKey)?;
        key.verify(NAMESPACE, &self.message(kind), &sig)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Parses public keys in OpenSSH format, one per line (`#` comments and blank lines skipped).
pub fn parse_public_keys(text: &str) -> Result<Vec<PublicKey>, String> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(
            PublicKey::from_openssh(line)
                .map_err(|e| format!("line {}: not an OpenSSH public key: {e}", i + 1))?,
        );
    }
    if keys.is_empty() {
        return Err("no public key found".into());
    }
    Ok(keys)
}

/// The tenant's audit public keys (active first, then retired), for verifiers.
pub async fn public_keys(tx: &mut TenantTx) -> AppResult<Vec<(Uuid, String)>> {
    let mut keys = tx.ca_keys(KeyPurpose::AuditSigning).await?;
    keys.sort_by_key(|k| !k.active);
    Ok(keys.into_iter().map(|k| (k.id, k.public_key)).collect())
}

/// When to sign.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Sign every event whose seq is a multiple of this.
    pub every_events: i64,
    /// ... and the head once its oldest unsigned event is this old.
    pub every: time::Duration,
}

/// The last outcome per tenant, for the auditor's page and `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub last_pass: Option<OffsetDateTime>,
    /// Tenant slug → why signing stopped (a broken chain is never signed over).
    pub broken: std::collections::BTreeMap<String, String>,
    pub last_error: Option<String>,
}

pub type SharedStatus = Arc<Mutex<Status>>;

/// Events checked and signed over in one pass, at most.
const MAX_EVENTS_PER_PASS: i64 = 50_000;

/// Signs what is due for one tenant; returns how many checkpoints were stored. Before signing,
/// the events since the previous checkpoint are checked to link to it: elevate never vouches for
/// a chain that is already broken.
pub async fn checkpoint_tenant(
    store: &Store,
    master: &MasterKey,
    tenant_id: Uuid,
    schedule: Schedule,
    now: OffsetDateTime,
) -> AppResult<usize> {
    let mut tx = store.tenant(tenant_id).await?;
    let Some((head_seq, _)) = tx.audit_head().await? else {
        tx.commit().await?;
        return Ok(0);
    };
    let last = tx.latest_checkpoint().await?;
    let (from_seq, from_hash) = match &last {
        Some(c) => (c.seq, c.head_hash.clone()),
        None => (0, crate::audit::GENESIS_HASH.to_vec()),
    };
    if head_seq <= from_seq {
        tx.commit().await?;
        return Ok(0);
    }
    let every = schedule.every_events.max(1);
    // A long backlog (the signer was down) is worked off over several passes, so one pass never
    // holds more than this many events in memory.
    let reach = head_seq.min(from_seq.saturating_add(MAX_EVENTS_PER_PASS.max(every)));
    let mut targets: Vec<i64> = ((from_seq / every + 1) * every..=reach)
        .step_by(usize::try_from(every).unwrap_or(usize::MAX))
        .collect();
    let covered = targets.last().copied().unwrap_or(from_seq);
    if covered < reach {
        let oldest_unsigned = tx.audit_events(covered, 1).await?;
        if oldest_unsigned
            .first()
            .is_some_and(|e| now - e.at >= schedule.every)
        {
            targets.push(reach);
        }
    }
    let Some(&upto) = targets.last() else {
        tx.commit().await?;
        return Ok(0);
    };
    // The anchor must be one of ours: a row slipped into the table is not built upon.
    if let Some(c) = &last {
        let trusted: Vec<PublicKey> = public_keys(&mut tx)
            .await?
            .iter()
            .filter_map(|(_, k)| PublicKey::from_openssh(k).ok())
            .collect();
        c.verify(Kind::Checkpoint, &trusted).map_err(|e| {
            AppError::internal(anyhow::anyhow!(
                "not signing a broken chain: the checkpoint at seq {}: {e}",
                c.seq
            ))
        })?;
    }
    let events = tx.audit_events(from_seq, upto - from_seq).await?;
    crate::audit::verify::verify_segment(from_seq, &from_hash, &events)
        .map_err(|b| AppError::internal(anyhow::anyhow!("not signing a broken chain: {b}")))?;
    let (key_id, key) =
        crate::admin::active_signing_key(&mut tx, master, KeyPurpose::AuditSigning).await?;
    let mut stored = 0;
    for seq in targets {
        let Some(event) = events.iter().find(|e| e.seq == seq) else {
            continue;
        };
        let cp = Checkpoint::unsigned(tenant_id, seq, &event.hash, now, key_id)
            .sign(Kind::Checkpoint, &key)?;
        if tx.insert_checkpoint(&cp).await? {
            stored += 1;
        }
    }
    tx.commit().await?;
    Ok(stored)
}

/// One pass over every tenant.
pub async fn run_once(
    store: &Store,
    master: &MasterKey,
    schedule: Schedule,
    now: OffsetDateTime,
    status: &SharedStatus,
) -> AppResult<usize> {
    let mut stored = 0;
    let mut broken = std::collections::BTreeMap::new();
    for tenant in store.tenants().await? {
        match checkpoint_tenant(store, master, tenant.tenant_id, schedule, now).await {
            Ok(n) => stored += n,
            Err(e) => {
                tracing::error!(tenant = %tenant.slug, error = %e, "audit checkpoint not signed");
                broken.insert(tenant.slug.clone(), e.to_string());
            }
        }
    }
    if let Ok(mut s) = status.lock() {
        s.last_pass = Some(now);
        s.broken = broken;
        s.last_error = None;
    }
    Ok(stored)
}

/// Signs checkpoints every second, forever; store failures are logged and retried.
pub fn spawn(
    store: Store,
    clock: SharedClock,
    master: Arc<MasterKey>,
    schedule: Schedule,
    status: SharedStatus,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            if let Err(e) = run_once(&store, &master, schedule, clock.now(), &status).await {
                tracing::warn!(error = %e, "audit checkpoint pass failed; retrying");
                if let Ok(mut s) = status.lock() {
                    s.last_error = Some(e.to_string());
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::rand_core::OsRng;

    fn key() -> PrivateKey {
        PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap()
    }

    #[test]
    fn signatures_cover_every_field_and_only_the_trusted_key() {
        let k = key();
        let t = Uuid::new_v4();
        let kid = Uuid::new_v4();
        let at = time::macros::datetime!(2030-01-01 00:00:00 UTC);
        let cp = Checkpoint::unsigned(t, 7, &[3; 32], at, kid)
            .sign(Kind::Checkpoint, &k)
            .unwrap();
        let trusted = [k.public_key().clone()];
        assert_eq!(cp.verify(Kind::Checkpoint, &trusted), Ok(()));
        assert_eq!(
            cp.verify(Kind::Head, &trusted),
            Err(SignatureError::Invalid)
        );
        for edit in [
            |c: &mut Checkpoint| c.seq += 1,
            |c: &mut Checkpoint| c.head_hash[0] ^= 1,
            |c: &mut Checkpoint| c.at += time::Duration::SECOND,
            |c: &mut Checkpoint| c.signing_key_id = Uuid::nil(),
            |c: &mut Checkpoint| c.tenant_id = Uuid::nil(),
            |c: &mut Checkpoint| c.checkpoints = Some(0),
        ] {
            let mut c = cp.clone();
            edit(&mut c);
            assert_eq!(
                c.verify(Kind::Checkpoint, &trusted),
                Err(SignatureError::Invalid)
            );
        }
        let other = [key().public_key().clone()];
        assert_eq!(
            cp.verify(Kind::Checkpoint, &other),
            Err(SignatureError::UnknownKey)
        );
    }
}
