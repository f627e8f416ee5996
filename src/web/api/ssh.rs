//! `POST /api/v1/requests/{id}/ssh-certificate`: a certificate for the caller's active grant.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::auth::RequestScope;
use crate::broker::ssh::Issued;
use crate::error::AppResult;
use crate::web::AppState;
use crate::web::caller::{ApiCaller, RequestId};
use crate::web::extract::ApiJson;

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
    ApiCaller(c, ..): ApiCaller<RequestScope>,
    RequestId(id): RequestId,
    ApiJson(body): ApiJson<Body>,
) -> AppResult<(StatusCode, Json<Value>)> {
    let issued = state
        .broker
        .issue_ssh_certificate(&c, id, &body.public_key)
        .await?;
    Ok((StatusCode::CREATED, Json(issued_json(&issued))))
}
