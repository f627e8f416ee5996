//! The host protocol: what `elevate host session` (the sshd `ForceCommand` helper) calls, with
//! the host token `elevate admin host add` printed. Under `/api/host/v1/{tenant}/`, apart from
//! the people's API: a host token opens nothing else, and no person's token opens these.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::extract::ApiJson;
use super::{AppState, ClientOrigin};
use crate::audit::Ctx;
use crate::auth::host::{HostPrincipal, host_principal};
use crate::broker::sessions::{self, EndReason, Opening, SessionRef, Verdict};
use crate::error::{AppError, AppResult};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/host/v1/{tenant}/sessions", post(open))
        .route("/api/host/v1/{tenant}/sessions/{id}", get(check))
        .route(
            "/api/host/v1/{tenant}/sessions/{id}/recording/{seq}",
            put(record),
        )
        .route("/api/host/v1/{tenant}/sessions/{id}/end", post(close))
}

/// A host with its audit context.
pub struct HostCaller(pub HostPrincipal, pub Ctx);

impl FromRequestParts<AppState> for HostCaller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::NotFound(e.body_text()))?;
        let slug = params.get("tenant").map(String::as_str).unwrap_or_default();
        let presented = super::auth::bearer(parts)
            .ok_or_else(|| AppError::Unauthorized("missing host token".into()))?;
        let now = state.clock.now();
        let host = host_principal(&state.store, now, slug, presented).await?;
        let ClientOrigin(origin) = ClientOrigin::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|e| match e {});
        let ctx = host.ctx(origin, now);
        Ok(HostCaller(host, ctx))
    }
}

/// The header carrying the session key `open` answered with.
pub const SESSION_KEY_HEADER: &str = "x-elevate-session-key";

/// The session a path names, with the key the helper presents; anything else is a session
/// that does not exist.
fn session_ref<'a>(
    params: &HashMap<String, String>,
    headers: &'a HeaderMap,
) -> AppResult<SessionRef<'a>> {
    let id = params.get("id").map(String::as_str).unwrap_or_default();
    let not_found = || AppError::NotFound(format!("no session {id}"));
    let id = id.parse().map_err(|_| not_found())?;
    let key = headers
        .get(SESSION_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(not_found)?;
    Ok(SessionRef { id, key })
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OpenedView {
    pub session_id: Uuid,
    /// Sent back in `x-elevate-session-key` on every later call about this session.
    pub session_key: String,
    pub request_id: Uuid,
    pub record_input: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_before: OffsetDateTime,
}

async fn open(
    State(state): State<AppState>,
    HostCaller(host, ctx): HostCaller,
    ApiJson(o): ApiJson<Opening>,
) -> AppResult<(StatusCode, Json<OpenedView>)> {
    let opened = sessions::open(&state.store, &ctx, &host.tenant, &host.host, &o).await?;
    Ok((
        StatusCode::CREATED,
        Json(OpenedView {
            session_id: opened.session.id,
            session_key: opened.key,
            request_id: opened.session.request_id,
            record_input: opened.session.record_input,
            not_after: opened.verdict.not_after,
            valid_before: opened.valid_before,
        }),
    ))
}

async fn check(
    State(state): State<AppState>,
    HostCaller(host, ctx): HostCaller,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> AppResult<Json<Verdict>> {
    let s = session_ref(&params, &headers)?;
    Ok(Json(
        sessions::check(&state.store, &ctx, &host.tenant, &host.host, s).await?,
    ))
}

async fn record(
    State(state): State<AppState>,
    HostCaller(host, ctx): HostCaller,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<StatusCode> {
    let s = session_ref(&params, &headers)?;
    let seq: i32 = params
        .get("seq")
        .and_then(|s| s.parse().ok())
        .filter(|s| *s >= 0)
        .ok_or_else(|| AppError::BadRequest("the chunk number must be 0 or more".into()))?;
    sessions::record(&state.store, &ctx, &host.tenant, &host.host, s, seq, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Closing {
    pub reason: EndReason,
    pub exit_status: Option<i32>,
}

async fn close(
    State(state): State<AppState>,
    HostCaller(host, ctx): HostCaller,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    ApiJson(c): ApiJson<Closing>,
) -> AppResult<StatusCode> {
    let s = session_ref(&params, &headers)?;
    sessions::close(
        &state.store,
        &ctx,
        &host.tenant,
        &host.host,
        s,
        c.reason,
        c.exit_status,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
