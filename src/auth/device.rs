//! `elevate login` without a token: OAuth 2.0 device authorization (RFC 8628). The CLI gets a
//! device code (a secret it keeps, stored hashed) and a short user code; a signed-in person
//! enters or confirms the user code on `/device`, sees which client asks, and approves or denies;
//! the CLI polls and, once approved, receives a new API token of its own ("CLI on HOST", the
//! person's non-admin scopes, 12 hours). A login that asks for the admin scope (`elevate login
//! --admin`) is approved only by an admin whose session confirmed with a passkey in the last
//! five minutes, and gets a one-hour token. Codes are single use and expire in 10 minutes; every
//! step is audited.

use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::admin::{self, IssuedToken};
use crate::audit::{Actor, Ctx, NewEvent, Origin};
use crate::crypto::token::TokenKind;
use crate::crypto::{SecretToken, TokenHash};
use crate::error::{AppError, AppResult};
use crate::model::{DeviceGrant, Role, Scope, Tenant, User};
use crate::store::Store;

pub const CODE_TTL: Duration = Duration::minutes(10);
/// How often the CLI may poll; faster polls are told `slow_down`.
pub const INTERVAL: Duration = Duration::seconds(5);
pub const CLI_TOKEN_TTL: Duration = Duration::hours(12);
/// An admin token from a device login lives one hour: admin rights are for the task at hand.
pub const ADMIN_CLI_TOKEN_TTL: Duration = Duration::hours(1);

/// RFC 8628 §6.1: consonants only (no words, no 0/O or 1/I look-alikes).
const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::internal(anyhow::anyhow!("{e}"))
}

fn user_code() -> AppResult<String> {
    let bytes = crate::crypto::random_bytes::<8>().map_err(internal)?;
    let chars: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    Ok(format!("{}-{}", &chars[..4], &chars[4..]))
}

/// A user code as people type it: any case, with or without the dash or spaces.
pub fn normalize_user_code(typed: &str) -> String {
    let chars: String = typed
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if chars.len() == 8 {
        format!("{}-{}", &chars[..4], &chars[4..])
    } else {
        chars
    }
}

/// What `POST /api/v1/device/code` hands the CLI.
pub struct Begun {
    pub tenant: Tenant,
    pub device_code: SecretToken,
    pub user_code: String,
}

/// Starts a device login for `tenant_slug` (or the only tenant there is).
pub async fn begin(
    store: &Store,
    tenant_slug: Option<&str>,
    client: &str,
    admin: bool,
    origin: &Origin,
    now: OffsetDateTime,
) -> AppResult<Begun> {
    let tenant = match tenant_slug.map(str::trim).filter(|s| !s.is_empty()) {
        Some(slug) => store
            .tenant_by_slug(slug)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no organisation {slug}")))?,
        None => {
            let mut all = store.tenants().await?;
            if all.len() != 1 {
                return Err(AppError::Unprocessable(
                    "say which organisation to log in to (--tenant)".into(),
                ));
            }
            all.remove(0)
        }
    };
    crate::text::check("client", client, crate::text::Lines::One)
        .map_err(AppError::Unprocessable)?;
    let client: String = client.chars().take(200).collect();
    let (device_code, hash) = SecretToken::generate(TokenKind::Device).map_err(internal)?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let code = user_code()?;
    let id = tx
        .insert_device_grant(
            &hash,
            &code,
            (&client, origin.ip.as_deref()),
            admin,
            now,
            now + CODE_TTL,
        )
        .await?;
    tx.append_audit(
        &NewEvent::new(Actor::System, "device.code_issued", &client)
            .origin(origin.clone())
            .details(json!({ "grant_id": id, "client": client, "admin": admin })),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Begun {
        tenant,
        device_code,
        user_code: code,
    })
}

/// The pending, unexpired grant with `user_code` in `tenant`, for `/device` to show.
pub async fn pending(
    store: &Store,
    tenant: &Tenant,
    user_code: &str,
    now: OffsetDateTime,
) -> AppResult<DeviceGrant> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let grant = tx
        .device_grant_by_user_code(&normalize_user_code(user_code))
        .await?;
    tx.commit().await?;
    grant
        .filter(|g| g.state == "pending" && now < g.expires_at)
        .ok_or_else(|| {
            AppError::NotFound(
                "no login is waiting for that code: it may have expired (10 minutes) or been used"
                    .into(),
            )
        })
}

/// A signed-in person approves or denies the login waiting for `user_code`. Approving one that
/// asks for the admin scope needs the admin role and a passkey confirmation of `session` in the
/// last five minutes, whatever the organisation's settings. Audited.
pub async fn decide(
    store: &Store,
    (ctx, links): (&Ctx, &str),
    (tenant, user, session): (&Tenant, &User, uuid::Uuid),
    user_code: &str,
    approve: bool,
) -> AppResult<DeviceGrant> {
    let grant = pending(store, tenant, user_code, ctx.now).await?;
    if approve && grant.admin {
        if !user.has_role(Role::Admin) {
            return Err(AppError::Forbidden(
                "this login asks for admin rights, and you are not an admin: deny it, or run \
                 `elevate login` without --admin"
                    .into(),
            ));
        }
        if let Some(refusal) = crate::passkeys::admin_change_refusal(
            store,
            links,
            tenant,
            user,
            session,
            ctx.now,
            crate::passkeys::PasskeyNeeded::Always,
        )
        .await?
        {
            return Err(refusal);
        }
    }
    let mut tx = store.tenant(tenant.tenant_id).await?;
    if !tx.decide_device_grant(grant.id, user.id, approve).await? {
        return Err(AppError::Conflict("that login was decided already".into()));
    }
    let action = if approve {
        "device.approved"
    } else {
        "device.denied"
    };
    tx.append_audit(
        &ctx.event(action, &user.email).details(json!({
            "grant_id": grant.id, "client": grant.client, "client_ip": grant.ip, "admin": grant.admin,
        })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(grant)
}

/// What a poll of the token endpoint finds (RFC 8628 §3.5).
pub enum Poll {
    Pending,
    SlowDown,
    Denied,
    Expired,
    /// Not a device code of this organisation, or one already exchanged.
    Invalid,
    Token(IssuedToken),
}

impl Poll {
    /// The RFC's error code, for everything but a token.
    pub fn error(&self) -> Option<&'static str> {
        Some(match self {
            Poll::Pending => "authorization_pending",
            Poll::SlowDown => "slow_down",
            Poll::Denied => "access_denied",
            Poll::Expired => "expired_token",
            Poll::Invalid => "invalid_grant",
            Poll::Token(_) => return None,
        })
    }
}

/// The CLI polls with its device code. Once approved, the grant is exchanged exactly once for a
/// new token with the person's non-admin scopes.
pub async fn poll(
    store: &Store,
    tenant_slug: &str,
    device_code: &str,
    origin: &Origin,
    now: OffsetDateTime,
) -> AppResult<Poll> {
    let Some(tenant) = store.tenant_by_slug(tenant_slug.trim()).await? else {
        return Ok(Poll::Invalid);
    };
    let Some(hash) = TokenHash::of_presented(TokenKind::Device, device_code.trim()) else {
        return Ok(Poll::Invalid);
    };
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let Some(grant) = tx.device_grant_by_hash(&hash).await? else {
        tx.commit().await?;
        return Ok(Poll::Invalid);
    };
    let found = match grant.state.as_str() {
        _ if now >= grant.expires_at && grant.state != "used" => Poll::Expired,
        "denied" => Poll::Denied,
        "used" => Poll::Invalid,
        "pending" if grant.last_polled_at.is_some_and(|at| now - at < INTERVAL) => {
            tx.touch_device_poll(grant.id, now).await?;
            Poll::SlowDown
        }
        "pending" => {
            tx.touch_device_poll(grant.id, now).await?;
            Poll::Pending
        }
        _ => {
            // Approved: take it (single use) in this transaction, then mint.
            if !tx.claim_device_grant(grant.id).await? {
                tx.commit().await?;
                return Ok(Poll::Invalid);
            }
            tx.append_audit(
                &NewEvent::new(Actor::System, "device.exchanged", &grant.client)
                    .origin(origin.clone())
                    .details(json!({ "grant_id": grant.id })),
                now,
            )
            .await?;
            let user = match grant.user_id {
                Some(id) => tx.user_by_id(id).await?,
                None => None,
            };
            tx.commit().await?;
            let user = user.ok_or_else(|| internal("approved device grant without a person"))?;
            return mint(store, &grant, &user, origin, now)
                .await
                .map(Poll::Token);
        }
    };
    tx.commit().await?;
    Ok(found)
}

async fn mint(
    store: &Store,
    grant: &DeviceGrant,
    user: &User,
    origin: &Origin,
    now: OffsetDateTime,
) -> AppResult<IssuedToken> {
    let scopes: Vec<Scope> = Scope::allowed_for(&user.roles.0)
        .into_iter()
        .filter(|s| *s != Scope::Metrics && (grant.admin || *s != Scope::Admin))
        .collect();
    let (name_suffix, ttl) = if grant.admin {
        (" (admin)", ADMIN_CLI_TOKEN_TTL)
    } else {
        ("", CLI_TOKEN_TTL)
    };
    let ctx = Ctx {
        actor: Actor::User {
            id: user.id,
            email: user.email.clone(),
        },
        origin: origin.clone(),
        now,
    };
    let host = grant
        .client
        .rsplit_once(" on ")
        .map_or(grant.client.as_str(), |(_, host)| host);
    admin::create_token(
        store,
        &ctx,
        user,
        &format!("CLI on {host}{name_suffix}"),
        &scopes,
        ttl,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_eight_unambiguous_letters() {
        for _ in 0..100 {
            let code = user_code().unwrap();
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            assert!(
                code.chars()
                    .filter(|c| *c != '-')
                    .all(|c| ALPHABET.contains(&(c as u8)))
            );
            assert_eq!(
                normalize_user_code(&code.to_lowercase().replace('-', " ")),
                code
            );
        }
    }
}
