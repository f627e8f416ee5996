//! Extractors shared by features: where a request came from, and JSON bodies whose rejections
//! become clear 400/413/422 errors instead of axum's plain-text ones.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;

use crate::audit::Origin;
use crate::config::TrustedProxies;
use crate::error::AppError;
use crate::web::AppState;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Client address and user agent, for audit records and per-address limits. The address is the
/// peer's, or — when the peer is one of the configured `trusted_proxies` — the one its
/// `X-Forwarded-For` names (see [`crate::config::TrustedProxies::client_ip`]). This is the one
/// place elevate reads a client address.
#[derive(Debug, Clone)]
pub struct ClientOrigin(pub Origin);

/// The client's address for a request, from the connection and the proxy settings.
pub fn client_ip(parts: &Parts, proxies: &TrustedProxies) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    if proxies.is_empty() {
        return Some(peer.to_canonical());
    }
    // Several header lines are one list, in order (RFC 9110 §5.3).
    let forwarded: Vec<&str> = parts
        .headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    Some(proxies.client_ip(peer, forwarded.into_iter()))
}

impl FromRequestParts<AppState> for ClientOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = client_ip(parts, &state.config.trusted_proxies).map(|ip| ip.to_string());
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        Ok(ClientOrigin(Origin { ip, user_agent }))
    }
}

/// `axum::Json` with elevate's error shape.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonDataError(e) => AppError::Unprocessable(e.body_text()),
                JsonRejection::JsonSyntaxError(e) => AppError::BadRequest(e.body_text()),
                JsonRejection::MissingJsonContentType(_) => AppError::BadRequest(
                    "expected a JSON body with Content-Type: application/json".into(),
                ),
                other if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                    AppError::TooLarge("request body too large".into())
                }
                other => AppError::BadRequest(other.body_text()),
            }),
        }
    }
}
