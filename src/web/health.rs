//! `/healthz` says the process is alive; `/readyz` says it can serve: store reachable, master key
//! loaded. Load balancers and `elevate host sync` rely on these.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Router, response::IntoResponse};
use serde_json::json;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = match state.store.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store unreachable");
            "unreachable".to_owned()
        }
    };
    let master_key = if state.master_key.active_key_id().is_empty() {
        "missing"
    } else {
        "ok"
    };
    let ready = store == "ok" && master_key == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": { "store": store, "master_key": master_key },
    });
    // 503 here is a report, not an error: the shared error rendering leaves it as it is.
    let mut res = (status, Json(body)).into_response();
    res.extensions_mut().insert(super::error::KeepBody);
    res
}
