//! `POST /api/v1/requests/{id}/db-credentials`: a short-lived database login for the caller's
//! active grant. The password is in this response only; elevate keeps no copy.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::auth::RequestScope;
use crate::broker::db::IssuedLogin;
use crate::error::AppResult;
use crate::web::AppState;
use crate::web::caller::{ApiCaller, RequestId};

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
    ApiCaller(c, ..): ApiCaller<RequestScope>,
    RequestId(id): RequestId,
) -> AppResult<(StatusCode, Json<Value>)> {
    let login = state.broker.issue_db_login(&c, id).await?;
    Ok((StatusCode::CREATED, Json(login_json(&login))))
}
