//! Browser sessions: a `__Host-elevate` cookie holding a 256-bit secret; the server keeps only its
//! hash. Idle and absolute timeouts come from the config; a disabled user's sessions are deleted.
//! Pages take [`SessionUser`] (or [`AdminUser`]) and unauthenticated visitors are sent to `/login`.

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use crate::audit::{Actor, NewEvent, Origin};
use crate::crypto::token::TokenKind;
use crate::crypto::{SecretToken, TokenHash};
use crate::error::{AppError, AppResult};
use crate::model::{Session, Tenant, User};
use crate::store::{Store, TenantTx};

pub const SESSION_COOKIE: &str = "__Host-elevate";
pub const SIGNIN_COOKIE: &str = "__Host-elevate-signin";
/// Where to go after signing in (a page asked for while signed out), base64url of the path.
pub const NEXT_COOKIE: &str = "__Host-elevate-next";

/// A path of this site (never another site: no scheme, no `//`, no backslash), or nothing.
pub fn same_site_path(path: &str) -> Option<&str> {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(char::is_control);
    ok.then_some(path)
}

/// The page to return to after sign-in, from the cookie `SignInFirst` set.
pub fn next_page(headers: &HeaderMap) -> Option<String> {
    let bytes = B64URL.decode(cookie_value(headers, NEXT_COOKIE)?).ok()?;
    let path = String::from_utf8(bytes).ok()?;
    same_site_path(&path).map(str::to_owned)
}

/// How often at most `last_seen_at` is written (it feeds the idle timeout).
const TOUCH_EVERY: Duration = Duration::seconds(60);

/// A cookie with every flag the design asks for. `__Host-` requires Secure, Path=/ and no Domain.
pub fn cookie_header(name: &str, value: &str, max_age: Duration) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        max_age.whole_seconds().max(0)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

pub fn clear_cookie(name: &str) -> HeaderValue {
    cookie_header(name, "", Duration::ZERO)
}

/// The value of a cookie in the request headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The CSRF token of a session: derived from its secret, so it needs no storage and dies with it.
pub fn csrf_token(session_secret: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"elevate csrf v1\0")
        .chain_update(session_secret)
        .finalize();
    B64URL.encode(digest)
}

pub fn csrf_matches(session_secret: &str, presented: &str) -> bool {
    bool::from(
        csrf_token(session_secret)
            .as_bytes()
            .ct_eq(presented.as_bytes()),
    )
}

/// A signed-in person on a page.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub tenant: Tenant,
    pub user: User,
    pub session: Session,
    pub csrf: String,
    pub origin: Origin,
}

impl SessionUser {
    pub fn actor(&self) -> Actor {
        Actor::User {
            id: self.user.id,
            email: self.user.email.clone(),
        }
    }

    pub fn ctx(&self, now: OffsetDateTime) -> crate::audit::Ctx {
        crate::audit::Ctx {
            actor: self.actor(),
            origin: self.origin.clone(),
            now,
        }
    }
}

/// Starts a session for `user` in `tx` (the caller audits and commits) and returns its secret.
pub async fn start_session(
    tx: &mut TenantTx,
    user: &User,
    absolute: Duration,
    origin: &Origin,
    now: OffsetDateTime,
) -> AppResult<(SecretToken, Session)> {
    let (secret, hash) = SecretToken::generate(TokenKind::Session)
        .map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
    let session = tx
        .insert_session(
            user.id,
            &hash,
            now + absolute,
            origin.ip.as_deref(),
            origin.user_agent.as_deref(),
            now,
        )
        .await?;
    Ok((secret, session))
}

/// The end of every sign-in method (email link, SSO, passkey): a new session for `user`, the
/// `signin.succeeded` record with the method's `details` and the session id, in `tx`, committed.
pub async fn finish_sign_in(
    mut tx: TenantTx,
    tenant: Tenant,
    user: User,
    absolute: Duration,
    origin: &Origin,
    now: OffsetDateTime,
    mut details: serde_json::Value,
) -> AppResult<super::magic_link::SignedIn> {
    let (session_secret, session) = start_session(&mut tx, &user, absolute, origin, now).await?;
    details["session_id"] = serde_json::json!(session.id);
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
        .details(details),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(super::magic_link::SignedIn {
        tenant,
        user,
        session,
        session_secret,
    })
}

/// The session a cookie names, or `None` when it names none (unknown, ended, or just expired:
/// an idle one after `idle`).
pub async fn load(
    store: &Store,
    now: OffsetDateTime,
    idle: Duration,
    secret: &str,
    origin: &Origin,
) -> AppResult<Option<SessionUser>> {
    let Some(hash) = TokenHash::of_presented(TokenKind::Session, secret) else {
        return Ok(None);
    };
    // Most page loads only read, in one statement; the write transaction is opened (and
    // everything read again under its lock) only when the session is to be ended or its
    // last-seen time is due.
    let Some((session, user, tenant)) = store.session_principal(&hash).await? else {
        return Ok(None);
    };
    let signed_in = |session, user, tenant| SessionUser {
        tenant,
        user,
        session,
        csrf: csrf_token(secret),
        origin: origin.clone(),
    };
    let ended = session_end(&session, user.as_ref(), now, idle);
    if let (None, Some(user)) = (ended, &user)
        && now - session.last_seen_at < TOUCH_EVERY
    {
        return Ok(Some(signed_in(session, user.clone(), tenant)));
    }
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let Some(session) = tx.session_by_hash(&hash).await? else {
        return Ok(None);
    };
    let user = tx.user_by_id(session.user_id).await?;
    if let Some(reason) = session_end(&session, user.as_ref(), now, idle) {
        return end_session(tx, &session, user.as_ref(), reason, origin, now).await;
    }
    if now - session.last_seen_at >= TOUCH_EVERY {
        tx.touch_session(session.id, now).await?;
    }
    let tenant = tx.get_tenant().await?;
    tx.commit().await?;
    let user = user.ok_or_else(|| AppError::internal(anyhow::anyhow!("session user vanished")))?;
    Ok(Some(signed_in(session, user, tenant)))
}

/// Why a session is over at `now`, if it is.
fn session_end(
    session: &Session,
    user: Option<&User>,
    now: OffsetDateTime,
    idle: Duration,
) -> Option<&'static str> {
    match user {
        None => Some("user gone"),
        Some(u) if u.disabled => Some("user disabled"),
        _ if now >= session.expires_at => Some("absolute timeout"),
        _ if now >= session.last_seen_at + idle => Some("idle timeout"),
        _ => None,
    }
}

/// Deletes a session that is over, with its `session.expired` record.
async fn end_session(
    mut tx: TenantTx,
    session: &Session,
    user: Option<&User>,
    reason: &str,
    origin: &Origin,
    now: OffsetDateTime,
) -> AppResult<Option<SessionUser>> {
    tx.delete_session(session.id).await?;
    let subject = user.map(|u| u.email.clone()).unwrap_or_default();
    tx.append_audit(
        &NewEvent::new(Actor::System, "session.expired", subject)
            .origin(origin.clone())
            .details(json!({ "session_id": session.id, "reason": reason })),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(None)
}

/// Sends the browser to sign in (clearing a dead cookie on the way).
pub struct SignInFirst {
    /// Also clear the session cookie (it named a session that is gone).
    pub clear: bool,
    /// The page asked for (a GET), to return to after signing in by any method.
    pub next: Option<String>,
}

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        let mut res = Redirect::to("/login").into_response();
        if self.clear {
            res.headers_mut()
                .append(SET_COOKIE, clear_cookie(SESSION_COOKIE));
        }
        if let Some(next) = self.next.as_deref().and_then(same_site_path) {
            let encoded = B64URL.encode(next);
            res.headers_mut().append(
                SET_COOKIE,
                cookie_header(NEXT_COOKIE, &encoded, Duration::minutes(30)),
            );
        }
        res
    }
}

pub enum SessionRejection {
    SignIn(SignInFirst),
    Error(AppError),
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match self {
            SessionRejection::SignIn(s) => s.into_response(),
            SessionRejection::Error(e) => e.into_response(),
        }
    }
}

/// A signed-in admin (the extractor checks the role).
#[derive(Debug, Clone)]
pub struct AdminUser(pub SessionUser);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_carry_every_flag_and_parse_back() {
        let c = cookie_header(SESSION_COOKIE, "els_x", Duration::hours(12));
        assert_eq!(
            c.to_str().unwrap(),
            "__Host-elevate=els_x; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=43200"
        );
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; __Host-elevate=els_y; __Host-elevate-signin=n"),
        );
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("els_y"));
        assert_eq!(cookie_value(&h, SIGNIN_COOKIE).as_deref(), Some("n"));
        assert_eq!(cookie_value(&h, "b"), None);
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let t = csrf_token("els_a");
        assert!(csrf_matches("els_a", &t));
        assert!(!csrf_matches("els_b", &t));
        assert!(!csrf_matches("els_a", ""));
    }
}
