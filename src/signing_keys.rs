//! Per-tenant signing keys (SSH user CA, audit checkpoint key): Ed25519, private half sealed.

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::crypto::{MasterKey, SealError};
use crate::error::{AppError, AppResult};
use crate::model::{CaKey, KeyPurpose};
use crate::store::{Store, TenantTx};

/// A fresh Ed25519 key with a comment naming its tenant and purpose.
pub fn generate_signing_key(purpose: KeyPurpose, tenant_slug: &str) -> AppResult<PrivateKey> {
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(AppError::internal)?;
    key.set_comment(format!("elevate {} {tenant_slug}", purpose.as_str()));
    Ok(key)
}

/// Generates, seals and stores an active key; returns audit details (id and fingerprint).
pub async fn add_signing_key(
    tx: &mut TenantTx,
    master: &MasterKey,
    purpose: KeyPurpose,
    tenant_slug: &str,
    now: OffsetDateTime,
) -> AppResult<Value> {
    let key = generate_signing_key(purpose, tenant_slug)?;
    let id = Uuid::now_v7();
    let private = key.to_openssh(LineEnding::LF).map_err(AppError::internal)?;
    let sealed = master.seal(&CaKey::seal_context(tx.tenant_id(), id), private.as_bytes())?;
    let public = key.public_key().to_openssh().map_err(AppError::internal)?;
    tx.insert_ca_key(id, purpose, &public, &sealed, now).await?;
    Ok(json!({
        "key_id": id,
        "fingerprint": key.fingerprint(HashAlg::Sha256).to_string(),
        "master_key_id": master.active_key_id(),
    }))
}

/// Opens a stored key's private half.
pub fn open_signing_key(master: &MasterKey, key: &CaKey) -> Result<PrivateKey, SealError> {
    let plain = master.open(
        &CaKey::seal_context(key.tenant_id, key.id),
        &key.private_sealed,
    )?;
    let text = std::str::from_utf8(plain.expose_secret()).map_err(|_| SealError::Malformed)?;
    PrivateKey::from_openssh(text).map_err(|_| SealError::Malformed)
}

/// The tenant's active key for `purpose`, unsealed: what SSH issuance and the audit signer sign
/// with.
pub async fn active_signing_key(
    tx: &mut TenantTx,
    master: &MasterKey,
    purpose: KeyPurpose,
) -> AppResult<(Uuid, PrivateKey)> {
    let key = tx.active_ca_key(purpose).await?.ok_or_else(|| {
        AppError::internal(anyhow::anyhow!(
            "the tenant has no active {} key",
            purpose.as_str()
        ))
    })?;
    let private = open_signing_key(master, &key)?;
    Ok((key.id, private))
}

/// Every tenant's active signing keys (SSH user CA, audit) that the master key does not open:
/// (tenant slug, key purpose, why). `/readyz` asks this: without them nothing can be certified
/// or signed.
pub async fn unopenable_signing_keys(
    store: &Store,
    master: &MasterKey,
) -> AppResult<Vec<(String, &'static str, String)>> {
    let mut failing = Vec::new();
    for tenant in store.tenants().await? {
        let mut tx = store.tenant(tenant.tenant_id).await?;
        for purpose in [KeyPurpose::SshUserCa, KeyPurpose::AuditSigning] {
            if let Some(key) = tx.active_ca_key(purpose).await?
                && let Err(e) = open_signing_key(master, &key)
            {
                failing.push((tenant.slug.clone(), purpose.as_str(), e.to_string()));
            }
        }
        tx.commit().await?;
    }
    Ok(failing)
}

/// Start-up check: the master key must open every tenant's active keys. A wrong key file ends
/// start-up here with a message naming the tenant and key ids, not at the first signature.
pub async fn verify_master_key(store: &Store, master: &MasterKey) -> anyhow::Result<usize> {
    let mut checked = 0;
    for tenant in store.tenants().await? {
        let mut tx = store.tenant(tenant.tenant_id).await?;
        for purpose in [KeyPurpose::SshUserCa, KeyPurpose::AuditSigning] {
            let Some(key) = tx.active_ca_key(purpose).await? else {
                continue;
            };
            open_signing_key(master, &key).map_err(|e| {
                anyhow::anyhow!(
                    "the master key cannot unseal the {} key of tenant {} (sealed under master key {}, \
                     configured key {}): {e}. Is ELEVATE_MASTER_KEY_FILE the key this database was created with?",
                    purpose.as_str(),
                    tenant.slug,
                    MasterKey::key_id_of(&key.private_sealed).unwrap_or_default(),
                    master.active_key_id(),
                )
            })?;
            checked += 1;
        }
        tx.commit().await?;
    }
    Ok(checked)
}

/// The tenant's audit public keys (active first, then retired), for verifiers.
pub async fn audit_public_keys(tx: &mut TenantTx) -> AppResult<Vec<(Uuid, String)>> {
    let mut keys = tx.ca_keys(KeyPurpose::AuditSigning).await?;
    keys.sort_by_key(|k| !k.active);
    Ok(keys.into_iter().map(|k| (k.id, k.public_key)).collect())
}
