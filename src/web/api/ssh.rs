//! `POST /api/v1/requests/{id}/ssh-certificate`: a certificate for the caller's active grant.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::auth::{RequestScope, Scoped};
use crate::broker::ssh::{self, Issued};
use crate::error::{AppError, AppResult};
use crate::web::extract::ApiJson;
use crate::web::{AppState, ClientOrigin};

pub fn router() -> Router<AppState> {
    Router::new().route("/requests/{id}/ssh-certificate", post(create))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    public_key: String,
}

pub fn issued_json(i: &Issued) -> Value {
    let rfc = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    json!({
        "certificate": i.certificate,
        "serial": i.serial,
        "key_id": i.key_id,
        "principals": i.principals,
        "fingerprint": i.fingerprint,
        "valid_after": rfc(i.valid_after),
        "valid_before": rfc(i.valid_before),
        "file_name": i.file_name,
    })
}

async fn create(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<RequestScope>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Body>,
) -> AppResult<(StatusCode, Json<Value>)> {
    let id = id
        .parse()
        .map_err(|_| AppError::NotFound(format!("no request {id}")))?;
    let ctx = p.ctx(origin, state.clock.now());
    let issued = ssh::issue(
        &state.store,
        &state.master_key,
        &ctx,
        &p.tenant,
        &p.user,
        id,
        &body.public_key,
    )
    .await;
    state
        .telemetry
        .credential(crate::telemetry::Credential::SshCertificate, &issued);
    let issued = issued?;
    Ok((StatusCode::CREATED, Json(issued_json(&issued))))
}
