//! The HTTP side of authentication: axum extractors that read the bearer token or the session
//! cookie and hand them to `auth`, whose rules are plain functions of the store and the clock.
//! A handler's signature says who may call it: `Scoped<ApproveScope>`, `SessionUser`,
//! `AdminUser`.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{AppState, ClientOrigin};
use crate::auth::session::{
    self, AdminUser, SESSION_COOKIE, SessionRejection, SessionUser, SignInFirst, cookie_value,
};
use crate::auth::{ApiPrincipal, ScopeMarker, Scoped};
use crate::error::AppError;
use crate::model::Role;

/// The secret of `Authorization: Bearer <secret>`, for API tokens and host tokens alike.
pub(super) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

impl FromRequestParts<AppState> for ApiPrincipal {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented =
            bearer(parts).ok_or_else(|| AppError::Unauthorized("missing bearer token".into()))?;
        crate::auth::api_principal(&state.store, state.clock.now(), presented).await
    }
}

impl<S: ScopeMarker> FromRequestParts<AppState> for Scoped<S> {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = ApiPrincipal::from_request_parts(parts, state).await?;
        principal.require(S::SCOPE)?;
        Ok(Scoped(principal, PhantomData))
    }
}

impl FromRequestParts<AppState> for SessionUser {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // A page asked for while signed out is where sign-in returns to.
        let next = (parts.method == axum::http::Method::GET)
            .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()))
            .flatten();
        let Some(secret) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(SessionRejection::SignIn(SignInFirst { clear: false, next }));
        };
        let ClientOrigin(origin) = ClientOrigin::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|e| match e {});
        match session::load(
            &state.store,
            state.clock.now(),
            state.config.session_idle(),
            &secret,
            &origin,
        )
        .await
        {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(SessionRejection::SignIn(SignInFirst { clear: true, next })),
            Err(e) => Err(SessionRejection::Error(e)),
        }
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = SessionUser::from_request_parts(parts, state).await?;
        if !user.user.has_role(Role::Admin) {
            return Err(SessionRejection::Error(AppError::Forbidden(
                "this page is for administrators".into(),
            )));
        }
        Ok(AdminUser(user))
    }
}

/// Refuses an admin change from `who`'s session without a recent passkey step-up where one is
/// needed (`passkeys::admin_change_refusal`).
pub async fn may_change_admin(state: &AppState, who: &SessionUser) -> Result<(), AppError> {
    let refusal = crate::passkeys::admin_change_refusal(
        &state.store,
        &state.config.public_url,
        &who.tenant,
        &who.user,
        who.session.id,
        state.clock.now(),
        crate::passkeys::PasskeyNeeded::AsTheTenantSays,
    )
    .await?;
    refusal.map_or(Ok(()), Err)
}

/// An admin's session that may make an admin change now: with a passkey (or when the tenant
/// requires one), only within five minutes of confirming with it (`passkeys::admin_change_refusal`).
pub struct SteppedUpAdmin(pub SessionUser);

impl FromRequestParts<AppState> for SteppedUpAdmin {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AdminUser(who) = AdminUser::from_request_parts(parts, state).await?;
        may_change_admin(state, &who)
            .await
            .map_err(SessionRejection::Error)?;
        Ok(SteppedUpAdmin(who))
    }
}

/// A session if there is a live one (the home and sign-in pages show who is signed in).
impl axum::extract::OptionalFromRequestParts<AppState> for SessionUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <SessionUser as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}
