//! Issuing a certificate for a grant: who may, when, and the record kept. The certificate is
//! handed out only after its credential row and audit event are committed together.

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Ctx;
use crate::broker::service;
use crate::crypto::MasterKey;
use crate::error::{AppError, AppResult};
use crate::model::{KeyPurpose, Tenant, User};
use crate::ssh::cert::{self, CertSpec};
use crate::store::{SshCertRecord, Store};

/// A signed certificate and what the caller shows about it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub certificate: String,
    pub serial: u64,
    pub key_id: String,
    pub principals: Vec<String>,
    pub fingerprint: String,
    pub valid_after: OffsetDateTime,
    pub valid_before: OffsetDateTime,
    /// `id_ed25519-cert.pub` and so on.
    pub file_name: &'static str,
}

/// A random serial in `[1, 2^53)`: unpredictable, and exact as a JSON number in any client.
/// Uniqueness per tenant is checked before use and enforced by the store's unique index.
fn random_serial() -> AppResult<u64> {
    loop {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).map_err(AppError::internal)?;
        let s = u64::from_be_bytes(b) >> 11;
        if s != 0 {
            return Ok(s);
        }
    }
}

/// Signs `public_key` for request `id` of `user`: only the requester, only while the grant is
/// active, only when the profile (as decided) grants SSH.
pub async fn issue(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    tenant: &Tenant,
    user: &User,
    id: Uuid,
    public_key: &str,
) -> AppResult<Issued> {
    let key =
        cert::parse_user_key(public_key).map_err(|e| AppError::Unprocessable(e.to_string()))?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let Some((stored, profile)) = service::lock_visible(&mut tx, user, id).await? else {
        tx.rollback().await?;
        return Err(AppError::NotFound(format!("no request {id}")));
    };
    if let Some(err) = service::lockdown_refusal(&mut tx).await? {
        tx.rollback().await?;
        return service::refuse_credential(store, tenant, ctx, id, "ssh.certificate_refused", err)
            .await;
    }
    let r = &stored.request;
    let now = ctx.now;
    if let Some(err) = crate::workflow::credential_refusal(
        r,
        user.id,
        profile.ssh.is_some(),
        "SSH",
        &profile.name,
        now,
    ) {
        tx.rollback().await?;
        return service::refuse_credential(store, tenant, ctx, id, "ssh.certificate_refused", err)
            .await;
    }
    let (Some(ssh), Some(grant)) = (&profile.ssh, &r.grant) else {
        return Err(AppError::internal(anyhow::anyhow!("checked above")));
    };
    let (ca_key_id, ca_private) =
        crate::signing_keys::active_signing_key(&mut tx, master, KeyPurpose::SshUserCa).await?;
    let (valid_after, valid_before) = cert::validity(
        now,
        grant.not_after,
        time::Duration::seconds(ssh.cert_ttl_secs),
    );
    let fingerprint = cert::fingerprint(&key);
    // A serial the tenant already used (one chance in 2^53 per certificate) is refused by the
    // store's unique index: sign again with another.
    let (spec, text) = loop {
        let spec = CertSpec {
            serial: random_serial()?,
            key_id: cert::key_id(&tenant.slug, &user.email, id),
            request: id,
            ticket: r.ticket.as_deref(),
            grant: ssh,
            valid_after,
            valid_before,
        };
        let signed = cert::sign(&ca_private, &key, &spec).map_err(AppError::internal)?;
        let text = signed.to_openssh().map_err(AppError::internal)?;
        let recorded = tx
            .insert_ssh_cert(&SshCertRecord {
                id: Uuid::now_v7(),
                request_id: id,
                serial: i64::try_from(spec.serial).map_err(AppError::internal)?,
                key_id: spec.key_id.clone(),
                fingerprint: fingerprint.clone(),
                principals: sqlx::types::Json(ssh.principals.clone()),
                ca_key_id: Some(ca_key_id),
                certificate: Some(text.clone()),
                valid_after,
                valid_before,
                revoked_at: None,
                created_at: now,
            })
            .await?;
        if recorded {
            break (spec, text);
        }
    };
    tx.append_audit(
        &ctx.event("ssh.certificate_issued", &profile.name)
            .request(id)
            .details(json!({
                "serial": spec.serial.to_string(),
                "key_id": spec.key_id,
                "fingerprint": fingerprint,
                "principals": ssh.principals,
                "valid_after": valid_after.unix_timestamp(),
                "valid_before": valid_before.unix_timestamp(),
                "ca_fingerprint": cert::fingerprint(ca_private.public_key()),
            })),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Issued {
        certificate: text,
        serial: spec.serial,
        key_id: spec.key_id,
        principals: ssh.principals.clone(),
        fingerprint,
        valid_after,
        valid_before,
        file_name: cert::cert_file_name(key.key_data()),
    })
}
