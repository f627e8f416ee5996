//! A tenant's user CA over time: rotation, the public keys hosts trust, and the KRL.

use std::collections::HashMap;

use serde_json::{Value, json};
use ssh_key::PublicKey;
use time::OffsetDateTime;

use super::krl::{self, KrlHeader, RevokedUnderCa};
use crate::audit::Ctx;
use crate::crypto::MasterKey;
use crate::error::{AppError, AppResult};
use crate::model::{KeyPurpose, Tenant};
use crate::signing_keys::add_signing_key;
use crate::store::Store;

/// Makes a new CA the signer. The old public key stays published until the last certificate it
/// signed has expired; its private half is destroyed now.
pub async fn rotate(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    tenant: &Tenant,
) -> AppResult<Value> {
    rotate_with(store, master, ctx, tenant, None).await
}

/// After a restore from a backup: makes a new CA the signer and distrusts every older key at
/// once — none stays in `user-ca.pub`, whatever certificates it signed — because the restored
/// store knows neither the certificates issued nor the revocations made after the backup. Hosts
/// stop trusting the old keys at their next `elevate host sync`; holders of a still-active grant
/// ask for a new certificate.
pub async fn rotate_after_restore(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    tenant: &Tenant,
    reason: &str,
) -> AppResult<Value> {
    rotate_with(store, master, ctx, tenant, Some(reason)).await
}

async fn rotate_with(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    tenant: &Tenant,
    distrust: Option<&str>,
) -> AppResult<Value> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let old = tx.active_ca_key(KeyPurpose::SshUserCa).await?;
    let mut details = json!({});
    if let Some(old) = &old {
        let publish_until = match distrust {
            Some(_) => ctx.now,
            None => tx
                .last_cert_end(old.id)
                .await?
                .map_or(ctx.now, |end| end.max(ctx.now)),
        };
        tx.retire_ca_key(old.id, publish_until, ctx.now).await?;
        details["retired"] = json!({
            "key_id": old.id,
            "fingerprint": fingerprint_of(&old.public_key),
            "publish_until": publish_until.unix_timestamp(),
        });
    }
    if let Some(reason) = distrust {
        let n = tx.distrust_user_ca_keys(ctx.now).await?;
        details["distrusted_keys"] = json!(n);
        details["reason"] = json!(reason);
    }
    let new = add_signing_key(
        &mut tx,
        master,
        KeyPurpose::SshUserCa,
        &tenant.slug,
        ctx.now,
    )
    .await?;
    details["active"] = new;
    tx.append_audit(
        &ctx.event("ssh.ca_rotated", &tenant.slug)
            .details(details.clone()),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(details)
}

pub fn fingerprint_of(openssh: &str) -> String {
    PublicKey::from_openssh(openssh)
        .map(|k| super::cert::fingerprint(&k))
        .unwrap_or_default()
}

/// Every user-CA public key hosts must trust now, one per line (`TrustedUserCAKeys`).
pub async fn trusted_keys(
    store: &Store,
    tenant: &Tenant,
    now: OffsetDateTime,
) -> AppResult<String> {
    let mut tx = store.read(tenant.tenant_id).await?;
    let keys = tx.published_user_ca_keys(now).await?;
    tx.commit().await?;
    let mut out = String::new();
    for k in keys {
        out.push_str(k.public_key.trim());
        out.push('\n');
    }
    Ok(out)
}

/// The tenant's KRL: every revoked certificate that has not expired, per signing CA.
pub async fn revocation_list(
    store: &Store,
    tenant: &Tenant,
    now: OffsetDateTime,
) -> AppResult<Vec<u8>> {
    let mut tx = store.read(tenant.tenant_id).await?;
    let keys = tx.published_user_ca_keys(now).await?;
    let revoked = tx.revoked_ssh_certs(now).await?;
    tx.commit().await?;
    let mut by_ca: HashMap<uuid::Uuid, RevokedUnderCa> = HashMap::new();
    for k in &keys {
        let ca = PublicKey::from_openssh(&k.public_key).map_err(AppError::internal)?;
        by_ca.insert(
            k.id,
            RevokedUnderCa {
                ca,
                serials: vec![],
                key_ids: vec![],
            },
        );
    }
    for r in revoked {
        // A certificate of a key no longer published cannot be valid anywhere that syncs.
        if let Some(entry) = by_ca.get_mut(&r.ca_key_id) {
            entry
                .serials
                .push(u64::try_from(r.serial).map_err(AppError::internal)?);
            entry.key_ids.push(r.key_id);
        }
    }
    let mut sections: Vec<RevokedUnderCa> = by_ca.into_values().collect();
    sections.sort_by(|a, b| a.ca.key_data().cmp(b.ca.key_data()));
    let at = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let comment = format!("elevate {}", tenant.slug);
    krl::encode(
        KrlHeader {
            version: at,
            generated_at: at,
            comment: &comment,
        },
        &sections,
    )
    .map_err(AppError::internal)
}
