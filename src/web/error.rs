//! How errors look on the wire. `AppError` becomes a status plus an [`ErrorInfo`]; one
//! middleware then renders every error response — ours and axum's own (405, 413, ...) — as JSON
//! `{"error": {"code", "message"}}` under `/api` and as an HTML page elsewhere.

use super::api::openapi::{ErrorBody, ErrorDetail};
use askama::Template;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;

#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ErrorInfo {
    fn from_status(status: StatusCode) -> Self {
        let code = match status.as_u16() {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            408 => "timeout",
            409 => "conflict",
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            422 => "unprocessable",
            429 => "rate_limited",
            503 => "unavailable",
            s if s >= 500 => "internal",
            _ => "error",
        };
        let message = match status.as_u16() {
            413 => "request body too large".to_owned(),
            s if s >= 500 && s != 503 => "internal error".to_owned(),
            _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
        };
        Self {
            status,
            code,
            message,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::StepUpRequired(_) => (StatusCode::FORBIDDEN, "step_up_required"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AppError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AppError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            AppError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::Internal(cause) => {
                // The cause goes to the log (inside the request's span, with its id), never out.
                tracing::error!(error = format!("{cause:#}"), "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let message = self.to_string();
        let mut res = status.into_response();
        if let AppError::TooManyRequests { retry_after_secs } = self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"elevate\""),
            );
        }
        res.extensions_mut().insert(ErrorInfo {
            status,
            code,
            message,
        });
        res
    }
}

/// Marks a non-2xx response whose body is already the answer (`/readyz`'s report).
#[derive(Debug, Clone, Copy)]
pub struct KeepBody;

#[derive(Template)]
#[template(path = "errors/error.html")]
struct ErrorPage<'a> {
    nav: super::pages::Nav,
    status: u16,
    reason: &'a str,
    message: &'a str,
    request_id: &'a str,
}

pub async fn render_errors(
    axum::extract::State(state): axum::extract::State<super::AppState>,
    req: Request,
    next: Next,
) -> Response {
    // An error page keeps the nav of whoever is signed in (read only when an error is shown).
    let session =
        crate::auth::session::cookie_value(req.headers(), crate::auth::session::SESSION_COOKIE);
    // The pages' own scripts (passkey challenges) ask for JSON and get errors as JSON too.
    let is_api = req.uri().path().starts_with("/api/")
        || req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || res.extensions().get::<KeepBody>().is_some()
    {
        return res;
    }
    let info = res
        .extensions()
        .get::<ErrorInfo>()
        .cloned()
        .unwrap_or_else(|| ErrorInfo::from_status(status));
    let (mut parts, _) = res.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = if is_api {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let body = ErrorBody {
            error: ErrorDetail {
                code: info.code.to_owned(),
                message: info.message.clone(),
                request_id: status.is_server_error().then(|| request_id.clone()),
            },
        };
        Body::from(serde_json::to_string(&body).unwrap_or_default())
    } else {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        let who = match session {
            Some(secret) => crate::auth::session::load(
                &state.store,
                state.clock.now(),
                state.config.session_idle(),
                &secret,
                &crate::audit::Origin::default(),
            )
            .await
            .ok()
            .flatten(),
            None => None,
        };
        let page = ErrorPage {
            nav: who
                .as_ref()
                .map_or_else(super::pages::Nav::anonymous, super::pages::Nav::of),
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            message: &info.message,
            request_id: &request_id,
        };
        Body::from(page.render().unwrap_or_else(|_| info.message.clone()))
    };
    Response::from_parts(parts, body)
}
