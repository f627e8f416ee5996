//! Device authorization for `elevate login` (RFC 8628): `POST /api/v1/device/code` and
//! `POST /api/v1/device/token`. Neither needs a token; both are rate-limited per client address.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::auth::device::{self, Poll};
use crate::error::AppResult;
use crate::web::error::KeepBody;
use crate::web::{AppState, ClientOrigin};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/device/code", post(code))
        .route("/device/token", post(token))
}

#[derive(Deserialize, Default)]
struct CodeBody {
    /// The organisation (optional when the server has one).
    #[serde(default)]
    tenant: Option<String>,
    /// What asks, shown to the person approving: like `elevate-cli 0.1 on laptop`.
    #[serde(default)]
    client: String,
}

async fn code(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Json(body): Json<CodeBody>,
) -> AppResult<Json<serde_json::Value>> {
    state.signin_limits.check_ip(origin.ip.as_deref())?;
    let client = if body.client.trim().is_empty() {
        origin
            .user_agent
            .clone()
            .unwrap_or_else(|| "a command-line client".into())
    } else {
        body.client
    };
    let now = state.clock.now();
    let begun = device::begin(&state.store, body.tenant.as_deref(), &client, &origin, now).await?;
    let base = state.config.public_url.trim_end_matches('/');
    Ok(Json(json!({
        "device_code": begun.device_code.expose(),
        "user_code": begun.user_code,
        "verification_uri": format!("{base}/device"),
        "verification_uri_complete": format!("{base}/device?code={}", begun.user_code),
        "expires_in": device::CODE_TTL.whole_seconds(),
        "interval": device::INTERVAL.whole_seconds(),
        "tenant": begun.tenant.slug,
    })))
}

#[derive(Deserialize)]
struct TokenBody {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    device_code: String,
}

async fn token(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Json(body): Json<TokenBody>,
) -> AppResult<Response> {
    // Not rate-limited per address: `slow_down` paces each code, and a device code cannot be
    // guessed (256 bits); a CLI polls for up to ten minutes.
    let now = state.clock.now();
    let found = device::poll(&state.store, &body.tenant, &body.device_code, &origin, now).await?;
    if let Poll::Token(issued) = found {
        return Ok(Json(json!({
            "access_token": issued.secret.expose(),
            "token_type": "Bearer",
            "expires_in": device::CLI_TOKEN_TTL.whole_seconds(),
            "name": issued.token.name,
        }))
        .into_response());
    }
    // RFC 8628 §3.5: the error as a plain code, kept as the answer.
    let code = found.error().unwrap_or("invalid_grant");
    let mut res = (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": code, "error_description": description(code) })),
    )
        .into_response();
    res.extensions_mut().insert(KeepBody);
    Ok(res)
}

fn description(code: &str) -> &'static str {
    match code {
        "authorization_pending" => "waiting for a person to approve the code",
        "slow_down" => "polled too often: wait longer between polls",
        "access_denied" => "the login was denied",
        "expired_token" => "the code expired: start again",
        _ => "not a device code of this organisation, or one already used",
    }
}
