//! The prologue every action handler shared (authenticate, build the audit context, parse the
//! request id) as two extractors: `ApiCaller<S>` for a token with scope `S`, `RequestId` for
//! the `{id}` of the path. A handler's signature then says who may call it and on what.

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use uuid::Uuid;

use super::{AppState, ClientOrigin};
use crate::auth::session::SessionUser;
use crate::auth::{ApiPrincipal, ScopeMarker, Scoped};
use crate::broker::Caller;
use crate::error::AppError;
use crate::model::Scope;

/// An API caller holding scope `S`, as the broker sees it, and the token it came with.
pub struct ApiCaller<S: ScopeMarker>(pub Caller, pub ApiPrincipal, pub PhantomData<S>);

/// The person a token acts as: its user, with the approver and admin roles only when the token
/// also carries the matching scope (a `request` token of an approver decides nothing).
fn narrowed(p: &ApiPrincipal, caller: &mut Caller) {
    caller.person.is_approver &= p.require(Scope::Approve).is_ok();
    caller.person.is_admin &= p.require(Scope::Admin).is_ok();
}

impl<S: ScopeMarker> FromRequestParts<AppState> for ApiCaller<S> {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Scoped(p, ..) = Scoped::<S>::from_request_parts(parts, state).await?;
        let ClientOrigin(origin) = ClientOrigin::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|e| match e {});
        let ctx = p.ctx(origin, state.clock.now());
        let mut caller = Caller::new(ctx, p.tenant.clone(), p.user.clone());
        narrowed(&p, &mut caller);
        Ok(ApiCaller(caller, p, PhantomData))
    }
}

/// The signed-in person of a page, as the broker sees them.
pub fn page_caller(state: &AppState, who: &SessionUser) -> Caller {
    Caller::new(
        who.ctx(state.clock.now()),
        who.tenant.clone(),
        who.user.clone(),
    )
}

/// The request id of the path; anything that is not an id is a request that does not exist.
pub struct RequestId(pub Uuid);

impl FromRequestParts<AppState> for RequestId {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::NotFound(e.body_text()))?;
        id.parse()
            .map(RequestId)
            .map_err(|_| AppError::NotFound(format!("no request {id}")))
    }
}
