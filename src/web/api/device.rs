//! Device authorization for `elevate login` (RFC 8628): `POST /api/v1/device/code` and
//! `POST /api/v1/device/token`. Neither needs a token; both are rate-limited per client address.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::device::{self, Poll};
use crate::error::AppResult;
use crate::web::api::openapi::{BadBody, ErrorBody};
use crate::web::error::KeepBody;
use crate::web::extract::ApiJson;
use crate::web::{AppState, ClientOrigin};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(code))
        .routes(routes!(token))
}

#[derive(Deserialize, Default, ToSchema)]
struct CodeBody {
    /// The organisation (optional when the server has one).
    #[serde(default)]
    tenant: Option<String>,
    /// What asks, shown to the person approving: like `elevate-cli 0.1 on laptop`.
    #[serde(default)]
    client: String,
    /// RFC 8628 §3.1: `admin` asks for the person's admin rights too (approved only with a
    /// passkey confirmation; the token lives one hour). Nothing else may be asked for.
    #[serde(default)]
    #[schema(pattern = r"^\s*(admin\s*)?$")]
    scope: Option<String>,
}

/// RFC 8628 §3.2.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceCode {
    /// The client's secret for polling `/device/token`.
    device_code: String,
    /// What the person confirms on `/device`, like `BCDF-GHJK`.
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    /// Seconds until the codes expire.
    expires_in: i64,
    /// Seconds to wait between polls.
    interval: i64,
    /// The organisation the login is for.
    tenant: String,
}

/// Start a device login: the person approves `user_code` at `verification_uri` while the client
/// polls `/device/token`. Rate-limited per client address.
#[utoipa::path(
    post, path = "/device/code", operation_id = "device_code", tag = "device", security(()),
    request_body = CodeBody,
    responses(
        (status = 200, body = DeviceCode),
        (status = 400, description = "a body that is not JSON", body = ErrorBody),
        (status = 404, description = "no such organisation, or none named when the server has several", body = ErrorBody),
        (status = 429, description = "too many codes from this address", body = ErrorBody),
        BadBody,
    )
)]
async fn code(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    ApiJson(body): ApiJson<CodeBody>,
) -> AppResult<Json<DeviceCode>> {
    state.signin_limits.check_ip(origin.ip.as_deref())?;
    let client = if body.client.trim().is_empty() {
        origin
            .user_agent
            .clone()
            .unwrap_or_else(|| "a command-line client".into())
    } else {
        body.client
    };
    let admin = match body.scope.as_deref().map(str::trim).unwrap_or_default() {
        "" => false,
        "admin" => true,
        other => {
            return Err(crate::error::AppError::Unprocessable(format!(
                "scope {other:?}: the only scope to ask for is admin"
            )));
        }
    };
    let now = state.clock.now();
    let tenant = body.tenant.as_deref();
    let begun = device::begin(&state.store, tenant, &client, admin, &origin, now).await?;
    let base = state.config.public_url.trim_end_matches('/');
    Ok(Json(DeviceCode {
        device_code: begun.device_code.expose().to_owned(),
        verification_uri: format!("{base}/device"),
        verification_uri_complete: format!("{base}/device?code={}", begun.user_code),
        user_code: begun.user_code,
        expires_in: device::CODE_TTL.whole_seconds(),
        interval: device::INTERVAL.whole_seconds(),
        tenant: begun.tenant.slug,
    }))
}

#[derive(Deserialize, ToSchema)]
struct TokenBody {
    /// The `tenant` of the code's answer.
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    device_code: String,
}

/// RFC 8628 §3.5 (RFC 6749 §5.1): a new API token for the client.
#[derive(Serialize, ToSchema)]
pub struct DeviceToken<'a> {
    access_token: &'a str,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: i64,
    /// The token's scopes, space-separated (RFC 6749 §5.1).
    scope: String,
    /// The token's name on the person's token list, like `CLI on laptop`.
    name: &'a str,
}

/// RFC 8628 §3.5 (RFC 6749 §5.2): why there is no token (yet).
#[derive(Serialize, ToSchema)]
pub struct DeviceError {
    /// `authorization_pending`, `slow_down`, `access_denied`, `expired_token`, `invalid_grant`
    /// or `invalid_request`.
    error: &'static str,
    error_description: &'static str,
}

/// Poll for the token of a device login, no more often than the code's `interval`.
#[utoipa::path(
    post, path = "/device/token", operation_id = "device_token", tag = "device", security(()),
    request_body = TokenBody,
    responses(
        (status = 200, body = DeviceToken),
        (status = 400, description = "no token (yet): the error says why", body = DeviceError),
        (status = 413, description = "the body is too large", body = ErrorBody),
    )
)]
async fn token(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    // Every refusal in the RFC's own form, a body that cannot be read included.
    let Ok(body) = serde_json::from_slice::<TokenBody>(&body) else {
        return Ok(refusal("invalid_request"));
    };
    // Not rate-limited per address: `slow_down` paces each code, and a device code cannot be
    // guessed (256 bits); a CLI polls for up to ten minutes.
    let now = state.clock.now();
    let found = device::poll(&state.store, &body.tenant, &body.device_code, &origin, now).await?;
    if let Poll::Token(issued) = found {
        let answer = DeviceToken {
            access_token: issued.secret.expose(),
            token_type: "Bearer",
            expires_in: issued
                .token
                .expires_at
                .map_or(0, |end| (end - now).whole_seconds()),
            scope: issued
                .token
                .scopes
                .0
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            name: &issued.token.name,
        };
        return Ok(Json(answer).into_response());
    }
    Ok(refusal(found.error().unwrap_or("invalid_grant")))
}

/// RFC 8628 §3.5: the error as a plain code, kept as the answer.
fn refusal(error: &'static str) -> Response {
    let body = DeviceError {
        error,
        error_description: description(error),
    };
    let mut res = (StatusCode::BAD_REQUEST, Json(body)).into_response();
    res.extensions_mut().insert(KeepBody);
    res
}

fn description(code: &str) -> &'static str {
    match code {
        "invalid_request" => "the body must be JSON with tenant and device_code",
        "authorization_pending" => "waiting for a person to approve the code",
        "slow_down" => "polled too often: wait longer between polls",
        "access_denied" => "the login was denied",
        "expired_token" => "the code expired: start again",
        _ => "not a device code of this organisation, or one already used",
    }
}
