//! SSH hosts that run the session helper: registered by name with a host token of their own,
//! listed with when they last called, removed (their token stops at once). And how long the
//! tenant keeps session recordings.

use serde_json::json;

use crate::audit::Ctx;
use crate::crypto::SecretToken;
use crate::crypto::token::TokenKind;
use crate::error::{AppError, AppResult};
use crate::model::Tenant;
use crate::store::{Host, Store};

/// The longest a tenant may keep recordings (about ten years), and the shortest.
const RETENTION_DAYS: std::ops::RangeInclusive<i32> = 1..=3660;

fn check_name(name: &str) -> AppResult<&str> {
    let name = name.trim();
    let ok = (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(name)
    } else {
        Err(AppError::Unprocessable(format!(
            "host name {name:?}: use 1-253 letters, digits, dots, dashes or underscores (like web-1.prod)"
        )))
    }
}

/// Registers host `name` and returns it with its token (shown once, stored as a hash).
pub async fn add_host(
    store: &Store,
    ctx: &Ctx,
    tenant: &Tenant,
    name: &str,
) -> AppResult<(Host, SecretToken)> {
    let name = check_name(name)?;
    let (secret, hash) = SecretToken::generate(TokenKind::Host)
        .map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let host = tx.insert_host(name, &hash, ctx.now).await?;
    tx.append_audit(
        &ctx.event("host.added", name)
            .details(json!({ "host_id": host.id })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok((host, secret))
}

/// The tenant's hosts, by name.
pub async fn hosts(store: &Store, tenant: &Tenant) -> AppResult<Vec<Host>> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let hosts = tx.hosts().await?;
    tx.commit().await?;
    Ok(hosts)
}

/// Removes host `name`: its token is refused from now on, so its open sessions end at their
/// next check.
pub async fn remove_host(store: &Store, ctx: &Ctx, tenant: &Tenant, name: &str) -> AppResult<()> {
    let name = name.trim();
    let mut tx = store.tenant(tenant.tenant_id).await?;
    if !tx.remove_host(name, ctx.now).await? {
        return Err(AppError::NotFound(format!("no host {name}")));
    }
    tx.append_audit(&ctx.event("host.removed", name), ctx.now)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// How many days recordings are kept after their session ends.
pub async fn recording_retention(store: &Store, tenant: &Tenant) -> AppResult<i32> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let days = tx.recording_retention_days().await?;
    tx.commit().await?;
    Ok(days)
}

/// Sets how many days recordings are kept (audited).
pub async fn set_recording_retention(
    store: &Store,
    ctx: &Ctx,
    tenant: &Tenant,
    days: i32,
) -> AppResult<()> {
    if !RETENTION_DAYS.contains(&days) {
        return Err(AppError::Unprocessable(format!(
            "recording retention must be {}-{} days",
            RETENTION_DAYS.start(),
            RETENTION_DAYS.end()
        )));
    }
    let mut tx = store.tenant(tenant.tenant_id).await?;
    tx.set_recording_retention_days(days).await?;
    tx.append_audit(
        &ctx.event("tenant.settings_changed", &tenant.slug)
            .details(json!({ "recording_retention_days": days })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
