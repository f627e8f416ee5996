//! SSH hosts as callers. A host presents the token `elevate admin host add` printed, on the
//! tenant's own URLs (`/t/{tenant}/host/...`); it may report sessions and stream their
//! recordings, and nothing else: its token is no API token and opens no person's actions.

use time::OffsetDateTime;

use crate::audit::{Actor, Ctx, Origin};
use crate::crypto::TokenHash;
use crate::crypto::token::TokenKind;
use crate::error::{AppError, AppResult};
use crate::model::Tenant;
use crate::store::{Host, Store};

/// An authenticated host of one tenant.
#[derive(Debug, Clone)]
pub struct HostPrincipal {
    pub tenant: Tenant,
    pub host: Host,
}

impl HostPrincipal {
    pub fn ctx(&self, origin: Origin, now: OffsetDateTime) -> Ctx {
        Ctx {
            actor: Actor::Host {
                id: self.host.id,
                name: self.host.name.clone(),
            },
            origin,
            now,
        }
    }
}

/// How often a host's `last_seen_at` is written (the admin page shows it to the minute).
const LAST_SEEN_EVERY: time::Duration = time::Duration::MINUTE;

/// The host a presented token stands for in tenant `slug`: refused (401) when the tenant or the
/// token is unknown, or the host was removed.
pub async fn host_principal(
    store: &Store,
    now: OffsetDateTime,
    slug: &str,
    presented: &str,
) -> AppResult<HostPrincipal> {
    let invalid = || AppError::Unauthorized("invalid host token".into());
    let hash = TokenHash::of_presented(TokenKind::Host, presented).ok_or_else(invalid)?;
    let tenant = store.tenant_by_slug(slug).await?.ok_or_else(invalid)?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let host = tx.host_by_hash(&hash).await?.ok_or_else(invalid)?;
    if host.removed_at.is_none()
        && host
            .last_seen_at
            .is_none_or(|at| now - at >= LAST_SEEN_EVERY)
    {
        tx.touch_host(host.id, now).await?;
    }
    tx.commit().await?;
    if host.removed_at.is_some() {
        return Err(AppError::Unauthorized("this host was removed".into()));
    }
    Ok(HostPrincipal { tenant, host })
}
