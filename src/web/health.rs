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
    let now = state.clock.now();
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
    let reaper = state.reaper.lock().map(|s| s.clone()).unwrap_or_default();
    let reaper_state = match (&reaper.last_pass, &reaper.last_error) {
        (_, Some(_)) => "failing",
        (Some(at), None) if now - *at <= crate::reaper::STALE_AFTER => "ok",
        (Some(_), None) => "stale",
        (None, None) => "starting",
    };
    let failing = failing_notifications(&state).await;
    let ready =
        store == "ok" && master_key == "ok" && reaper_state != "failing" && reaper_state != "stale";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": {
            "store": store,
            "master_key": master_key,
            "mail": if state.mailer.is_available() { "configured" } else { "not configured" },
            "reaper": {
                "state": reaper_state,
                "last_pass": reaper.last_pass.map(|t| t.unix_timestamp()),
                "lag_secs": reaper.last_pass.map(|t| (now - t).whole_seconds()),
                "last_error": reaper.last_error,
            },
            "notifications_failing": failing,
            "audit": crate::audit::readiness(&state).await,
        },
    });
    // 503 here is a report, not an error: the shared error rendering leaves it as it is.
    let mut res = (status, Json(body)).into_response();
    res.extensions_mut().insert(super::error::KeepBody);
    res
}

/// Notifications that have failed at least once and are still undelivered, over all tenants.
async fn failing_notifications(state: &AppState) -> Option<usize> {
    let mut failing = 0;
    for tenant in state.store.tenants().await.ok()? {
        let mut tx = state.store.tenant(tenant.tenant_id).await.ok()?;
        failing += tx.failing_notifications().await.ok()?;
        tx.commit().await.ok()?;
    }
    Some(failing)
}
