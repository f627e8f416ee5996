//! `POST /api/v1/requests/{id}/db-credentials`: a short-lived database login for the caller's
//! active grant. The password is in this response only; elevate keeps no copy.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::auth::{RequestScope, Scoped};
use crate::broker::db::{self, IssuedLogin};
use crate::error::{AppError, AppResult};
use crate::web::{AppState, ClientOrigin};

pub fn router() -> Router<AppState> {
    Router::new().route("/requests/{id}/db-credentials", post(create))
}

pub fn login_json(l: &IssuedLogin) -> Value {
    json!({
        "target": l.target,
        "kind": l.kind.as_str(),
        "host": l.host,
        "port": l.port,
        "database": l.database,
        "username": l.username,
        "password": l.password.as_str(),
        "expires_at": l.expires_at.format(&Rfc3339).unwrap_or_default(),
        "roles": l.roles,
    })
}

async fn create(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<RequestScope>,
    Path(id): Path<String>,
) -> AppResult<(StatusCode, Json<Value>)> {
    let id = id
        .parse()
        .map_err(|_| AppError::NotFound(format!("no request {id}")))?;
    let ctx = p.ctx(origin, state.clock.now());
    let login = db::issue(
        &state.store,
        &state.master_key,
        &ctx,
        &p.tenant,
        &p.user,
        id,
    )
    .await;
    state
        .telemetry
        .credential(crate::telemetry::Credential::DbLogin, &login);
    let login = login?;
    Ok((StatusCode::CREATED, Json(login_json(&login))))
}
