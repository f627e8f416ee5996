//! Cross-site request forgery defences for the pages: every state-changing request must come from
//! our own origin (`Sec-Fetch-Site`/`Origin`), and every form of a signed-in user carries a token
//! bound to the session ([`CsrfForm`]). The API is exempt: it authenticates with bearer tokens,
//! which a browser never attaches on its own.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::auth::session::{SESSION_COOKIE, cookie_value, csrf_matches};
use crate::error::AppError;

fn same_origin(headers: &HeaderMap, state: &AppState) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return false;
    }
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if origin == state.config.public_origin() {
        return true;
    }
    // The browser names the page's origin; the Host header names us as it reached us.
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    !host.is_empty()
        && (origin == format!("https://{host}")
            || (state.config.insecure_http && origin == format!("http://{host}")))
}

pub async fn same_origin_guard(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || req.uri().path().starts_with("/api/") || same_origin(req.headers(), &state) {
        return next.run(req).await;
    }
    AppError::Forbidden("cross-site request refused".into()).into_response()
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A form posted by a signed-in user, accepted only with the session's CSRF token.
pub struct CsrfForm<T>(pub T);

/// The body of a form that carries nothing but its CSRF token (a button).
#[derive(Debug, serde::Deserialize)]
pub struct NoFields {}

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let secret = cookie_value(req.headers(), SESSION_COOKIE);
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| AppError::TooLarge("form too large".into()))?;
        let field: CsrfField =
            serde_html_form::from_bytes(&body).map_err(|e| AppError::BadRequest(e.to_string()))?;
        if !secret.is_some_and(|s| csrf_matches(&s, &field.csrf)) {
            return Err(AppError::Forbidden(
                "the form's security token is missing or stale: reload the page and try again"
                    .into(),
            ));
        }
        serde_html_form::from_bytes(&body)
            .map(CsrfForm)
            .map_err(|e| AppError::Unprocessable(e.to_string()))
    }
}

/// A form that needs no session (sign-in), parsed with repeated keys allowed.
pub struct PlainForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for PlainForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| AppError::TooLarge("form too large".into()))?;
        serde_html_form::from_bytes(&body)
            .map(PlainForm)
            .map_err(|e| AppError::Unprocessable(e.to_string()))
    }
}
