//! Sign-in by email link: single use, ten minutes, stored hashed, and only valid in the browser
//! that asked for it (a nonce cookie set when asking). Asking answers the same whether or not the
//! address belongs to someone; the mail is sent in the background.

use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::audit::{Actor, NewEvent, Origin};
use crate::crypto::token::TokenKind;
use crate::crypto::{SecretToken, TokenHash};
use crate::error::{AppError, AppResult};
use crate::model::{Session, Tenant, User, normalize_email};
use crate::store::{SecretKind, Store};

pub const LINK_TTL: Duration = Duration::minutes(10);

/// What a visitor is told for any link that does not work, whatever the reason.
pub const LINK_REFUSED: &str = "This sign-in link is not valid: it may have expired, been used already, or been opened in a \
     different browser from the one that asked for it. Ask for a new one.";

/// Records a sign-in request and, when `email` is an active user of the tenant, returns the tenant,
/// user and a new link secret to mail. Unknown tenants and addresses return `None` (and are
/// audited where there is a tenant to audit them in).
pub async fn request_link(
    store: &Store,
    tenant_slug: &str,
    email: &str,
    browser_nonce: &TokenHash,
    origin: &Origin,
    now: OffsetDateTime,
) -> AppResult<Option<(Tenant, User, SecretToken)>> {
    let Ok(email) = normalize_email(email) else {
        return Ok(None);
    };
    let Some(tenant) = store.tenant_by_slug(tenant_slug.trim()).await? else {
        return Ok(None);
    };
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let user = tx.user_by_email(&email).await?.filter(|u| !u.disabled);
    let event = NewEvent::new(Actor::System, "signin.requested", &email).origin(origin.clone());
    let Some(user) = user else {
        tx.append_audit(&event.details(json!({ "known": false })), now)
            .await?;
        tx.commit().await?;
        return Ok(None);
    };
    let (secret, hash) = SecretToken::generate(TokenKind::SignIn)
        .map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
    let link = tx
        .insert_signin_link(
            &email,
            &hash,
            browser_nonce,
            now + LINK_TTL,
            origin.ip.as_deref(),
            now,
        )
        .await?;
    tx.append_audit(&event.details(json!({ "known": true, "link_id": link.id, "expires_at": link.expires_at.unix_timestamp() })), now)
        .await?;
    tx.commit().await?;
    Ok(Some((tenant, user, secret)))
}

/// A redeemed link: the new session's secret to set as the cookie.
pub struct SignedIn {
    pub tenant: Tenant,
    pub user: User,
    pub session: Session,
    pub session_secret: SecretToken,
}

/// Redeems a link presented with the browser's nonce cookie. Any failure is audited (when its
/// tenant is known) and answered with [`LINK_REFUSED`].
pub async fn redeem(
    store: &Store,
    link: &str,
    browser_nonce: Option<&str>,
    session_absolute: Duration,
    origin: &Origin,
    now: OffsetDateTime,
) -> AppResult<SignedIn> {
    let refused = || AppError::BadRequest(LINK_REFUSED.into());
    let hash = TokenHash::of_presented(TokenKind::SignIn, link.trim()).ok_or_else(refused)?;
    let tenant_id = store
        .secret_tenant(SecretKind::SignIn, hash.as_bytes())
        .await?
        .ok_or_else(refused)?;
    let mut tx = store.tenant(tenant_id).await?;
    let link = tx.signin_link_by_hash(&hash).await?.ok_or_else(refused)?;
    let user = tx.user_by_email(&link.email).await?;
    let same_browser =
        browser_nonce.is_some_and(|n| TokenHash::of(n).matches(&link.browser_nonce_hash));
    let problem = if link.used_at.is_some() {
        Some("link already used")
    } else if now >= link.expires_at {
        Some("link expired")
    } else if !same_browser {
        Some("link opened in another browser")
    } else if user.as_ref().is_none_or(|u| u.disabled) {
        Some("user missing or disabled")
    } else if !tx.consume_signin_link(link.id, now).await? {
        Some("link already used")
    } else {
        None
    };
    let failed = |reason: &str| {
        NewEvent::new(Actor::System, "signin.failed", &link.email)
            .origin(origin.clone())
            .details(json!({ "method": "email_link", "link_id": link.id, "reason": reason }))
    };
    let user = match (problem, user) {
        (None, Some(user)) => user,
        (problem, _) => {
            // Record the refusal on its own: nothing else of this transaction is kept.
            tx.rollback().await?;
            let mut tx = store.tenant(tenant_id).await?;
            tx.append_audit(&failed(problem.unwrap_or("user missing")), now)
                .await?;
            tx.commit().await?;
            return Err(refused());
        }
    };
    let (session_secret, session) =
        super::session::start_session(&mut tx, &user, session_absolute, origin, now).await?;
    tx.append_audit(
        &NewEvent::new(
            Actor::User {
                id: user.id,
                email: user.email.clone(),
            },
            "signin.succeeded",
            &user.email,
        )
        .origin(origin.clone())
        .details(json!({ "method": "email_link", "link_id": link.id, "session_id": session.id })),
        now,
    )
    .await?;
    let tenant = tx.get_tenant().await?;
    tx.commit().await?;
    Ok(SignedIn {
        tenant,
        user,
        session,
        session_secret,
    })
}

/// Ends a session (sign-out).
pub async fn sign_out(
    store: &Store,
    who: &super::session::SessionUser,
    now: OffsetDateTime,
) -> AppResult<()> {
    let mut tx = store.tenant(who.tenant.tenant_id).await?;
    tx.delete_session(who.session.id).await?;
    tx.append_audit(
        &NewEvent::new(who.actor(), "signout", &who.user.email)
            .origin(who.origin.clone())
            .details(json!({ "session_id": who.session.id })),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
