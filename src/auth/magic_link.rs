//! Sign-in by email link: single use, ten minutes, stored hashed, and only valid in the browser
//! that asked for it (a nonce cookie set when asking). Asking answers the same, and does the same
//! work, whether or not the address belongs to someone; the mail is sent in the background.

use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::audit::{Actor, NewEvent, Origin};
use crate::crypto::token::TokenKind;
use crate::crypto::{SecretToken, TokenHash};
use crate::error::{AppError, AppResult};
use crate::model::{Session, Tenant, User, normalize_email};
use crate::notify::Mailer;
use crate::store::{SecretKind, Store};

pub const LINK_TTL: Duration = Duration::minutes(10);

/// What a visitor is told for any link that does not work, whatever the reason.
pub const LINK_REFUSED: &str = "This sign-in link is not valid: it may have expired, been used already, or been opened in a \
     different browser from the one that asked for it. Ask for a new one.";

/// What asking for a sign-in link did, step by step. A known address and an unknown one (or a
/// disabled person's) take exactly the same steps — the same queries, the same token work, the
/// same hand-off to the background mailer — so the answer's timing does not tell them apart; only
/// whether the finished message has a recipient differs, and that is decided in the background.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    pub steps: Vec<&'static str>,
}

impl Asked {
    fn step(&mut self, s: &'static str) {
        self.steps.push(s);
    }
}

/// Records a sign-in request and mails a link when `email` is an active user of the tenant.
///
/// Whatever the address, a link secret is generated, hashed and stored (an unknown address's
/// secret is dropped unsent, so its row can never be redeemed), the request is audited, and a
/// message is composed and handed to the mailer's background queue, which sends it only when
/// there is a recipient. An address that is not an address, or an unknown organisation, stops
/// early: neither is a secret.
#[allow(clippy::too_many_arguments)]
pub async fn request_link(
    store: &Store,
    mailer: &Mailer,
    public_url: &str,
    tenant_slug: &str,
    email: &str,
    browser_nonce: &TokenHash,
    origin: &Origin,
    now: OffsetDateTime,
) -> AppResult<Asked> {
    let mut asked = Asked::default();
    let Ok(email) = normalize_email(email) else {
        asked.step("refused: not an address");
        return Ok(asked);
    };
    let Some(tenant) = store.tenant_by_slug(tenant_slug.trim()).await? else {
        asked.step("refused: no such organisation");
        return Ok(asked);
    };
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let user = tx.user_by_email(&email).await?.filter(|u| !u.disabled);
    asked.step("look up the person");
    let (secret, hash) = SecretToken::generate(TokenKind::SignIn)
        .map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
    asked.step("generate and hash a link secret");
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
    asked.step("store the link");
    tx.append_audit(
        &NewEvent::new(Actor::System, "signin.requested", &email)
            .origin(origin.clone())
            .details(json!({
                "known": user.is_some(),
                "link_id": link.id,
                "expires_at": link.expires_at.unix_timestamp(),
            })),
        now,
    )
    .await?;
    tx.commit().await?;
    asked.step("audit and commit");
    let name = user.as_ref().map_or_else(
        || email.split('@').next().unwrap_or_default().to_owned(),
        |u| u.display_name.clone(),
    );
    let url = format!(
        "{}/login/verify?token={}",
        public_url.trim_end_matches('/'),
        secret.expose()
    );
    let body = format!(
        "Hello {},\n\nUse this link to sign in to elevate ({}). It works once, for {} minutes, \
         in the browser where you asked for it:\n\n{url}\n\nIf you did not ask to sign in, ignore this message.\n",
        crate::text::shown(&name),
        crate::text::shown(&tenant.name),
        LINK_TTL.whole_minutes()
    );
    asked.step("compose the message");
    // Unknown address: no recipient, and the secret goes out of scope here unsent.
    mailer.hand_off(
        user.map(|u| u.email),
        "Your elevate sign-in link",
        body,
        now,
    );
    asked.step("hand the message to the background mailer");
    Ok(asked)
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
    let tenant = tx.get_tenant().await?;
    let details = json!({ "method": "email_link", "link_id": link.id });
    super::session::finish_sign_in(tx, tenant, user, session_absolute, origin, now, details).await
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
