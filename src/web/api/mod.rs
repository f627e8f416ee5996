//! The JSON API under `/api/v1` (DESIGN §8). The bearer token fixes the tenant.

pub mod audit;
mod db;
mod device;
mod me;
pub mod openapi;
mod policy;
mod requests;
pub mod sessions;
mod ssh;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::AppState;

/// The routes and, built from the same registrations, their OpenAPI document.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(audit::router())
        .merge(me::router())
        .merge(tokens::router())
        .merge(policy::router())
        .merge(requests::router())
        .merge(ssh::router())
        .merge(sessions::router())
        .merge(db::router())
        .merge(device::router())
        .split_for_parts()
}

pub fn router() -> Router<AppState> {
    let (router, doc) = routes();
    let json: Arc<str> = doc.to_pretty_json().unwrap_or_default().into();
    router.route(
        "/openapi.json",
        get(move || {
            let json = json.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    json.to_string(),
                )
            }
        }),
    )
}
