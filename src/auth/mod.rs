//! Who is calling. API requests carry `Authorization: Bearer <token>`; the token fixes the tenant
//! and limits what the call may do to the token's scopes *and* the user's standing roles.
//! Handlers declare what they need in their signature: `Scoped<ApproveScope>` and so on.
//! Browsers sign in by email link (`magic_link`) and hold a server-side session (`session`).

pub mod device;
pub mod host;
pub mod magic_link;
pub mod oidc;
pub mod passkey;
pub mod session;

use std::marker::PhantomData;

use time::OffsetDateTime;

use crate::audit::Ctx;
use crate::audit::{Actor, Origin};
use crate::crypto::TokenHash;
use crate::crypto::token::TokenKind;
use crate::error::{AppError, AppResult};
use crate::model::{ApiToken, Scope, Tenant, User};
use crate::store::Store;

/// An authenticated API caller.
#[derive(Debug, Clone)]
pub struct ApiPrincipal {
    pub tenant: Tenant,
    pub user: User,
    pub token: ApiToken,
}

impl ApiPrincipal {
    /// Allowed when the token carries the scope and the user holds the role it needs.
    pub fn require(&self, scope: Scope) -> AppResult<()> {
        if !self.token.scopes.0.contains(&scope) {
            return Err(AppError::Forbidden(format!(
                "this token lacks the {scope} scope"
            )));
        }
        if let Some(role) = scope.required_role()
            && !self.user.has_role(role)
        {
            return Err(AppError::Forbidden(format!("this needs the {role} role")));
        }
        Ok(())
    }

    pub fn actor(&self) -> Actor {
        Actor::Token {
            id: self.token.id,
            email: self.user.email.clone(),
        }
    }

    pub fn ctx(&self, origin: Origin, now: OffsetDateTime) -> Ctx {
        Ctx {
            actor: self.actor(),
            origin,
            now,
        }
    }
}

/// How often a token's `last_used_at` is written.
const LAST_USED_EVERY: time::Duration = time::Duration::HOUR;

/// The caller a presented API token stands for at `now`: refused (401) when the token is
/// unknown, revoked or expired or its user disabled.
pub async fn api_principal(
    store: &Store,
    now: OffsetDateTime,
    presented: &str,
) -> AppResult<ApiPrincipal> {
    let invalid = || AppError::Unauthorized("invalid token".into());
    let hash = TokenHash::of_presented(TokenKind::Api, presented).ok_or_else(invalid)?;
    let (token, user, tenant) = store.api_principal(&hash).await?.ok_or_else(invalid)?;
    let tenant_id = tenant.tenant_id;
    // "Last used" for the admins' token list, written at most once an hour per token so that
    // authentication stays a read.
    if token.revoked_at.is_none()
        && token
            .last_used_at
            .is_none_or(|at| now - at >= LAST_USED_EVERY)
    {
        let mut tx = store.tenant(tenant_id).await?;
        tx.touch_api_token(token.id, now).await?;
        tx.commit().await?;
    }
    if token.revoked_at.is_some() {
        return Err(AppError::Unauthorized("token revoked".into()));
    }
    if !token.is_usable(now) {
        return Err(AppError::Unauthorized("token expired".into()));
    }
    if user.disabled {
        return Err(AppError::Unauthorized("user disabled".into()));
    }
    Ok(ApiPrincipal {
        tenant,
        user,
        token,
    })
}

/// A scope named at the type level, so a handler's signature says what it needs.
pub trait ScopeMarker: Send + Sync + 'static {
    const SCOPE: Scope;
}

macro_rules! scope_markers {
    ($($name:ident => $scope:expr),* $(,)?) => {$(
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl ScopeMarker for $name {
            const SCOPE: Scope = $scope;
        }
    )*};
}

scope_markers! {
    ReadScope => Scope::Read,
    RequestScope => Scope::Request,
    ApproveScope => Scope::Approve,
    AdminScope => Scope::Admin,
    AuditScope => Scope::Audit,
}

/// An [`ApiPrincipal`] that passed `require(S::SCOPE)`.
#[derive(Debug, Clone)]
pub struct Scoped<S: ScopeMarker>(pub ApiPrincipal, pub PhantomData<S>);
