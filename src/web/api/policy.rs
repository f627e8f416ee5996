//! `PUT /api/v1/policy` (TOML body, admin scope) and `GET /api/v1/profiles`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::{AdminScope, ReadScope, Scoped};
use crate::broker;
use crate::error::AppResult;
use crate::policy::Profile;
use crate::web::{AppState, ClientOrigin};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/policy", put(apply))
        .route("/profiles", get(profiles))
}

async fn apply(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<AdminScope>,
    body: String,
) -> AppResult<(StatusCode, Json<Value>)> {
    let ctx = p.ctx(origin, state.clock.now());
    let applied = broker::policy::apply(&state.store, &ctx, &p.tenant, &body).await?;
    let status = if applied.proposed.is_some() {
        StatusCode::ACCEPTED
    } else if applied.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut answer = json!({ "version": applied.version, "created": applied.created, "diff": applied.diff, "warnings": applied.warnings });
    if let Some(id) = applied.proposed {
        answer["proposed"] = json!({
            "id": id,
            "widening": applied.widening,
            "approve_at": format!("{}/admin/policy/proposals/{id}", state.config.public_url.trim_end_matches('/')),
        });
    }
    Ok((status, Json(answer)))
}

pub fn profile_json(p: &Profile, groups: &[String]) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or_default();
    v["default_duration"] = json!(crate::duration::format(time::Duration::seconds(
        p.default_duration_secs
    )));
    v["max_duration"] = json!(crate::duration::format(p.max_duration()));
    v["can_request"] = json!(p.may_request(groups));
    v
}

/// The profiles in force, each saying whether the caller may request it.
async fn profiles(
    State(state): State<AppState>,
    Scoped(p, ..): Scoped<ReadScope>,
) -> AppResult<Json<Value>> {
    let current = broker::policy::current(&state.store, &p.tenant).await?;
    let (version, profiles) = match &current {
        Some((v, profiles)) => (Some(v.version), profiles.as_slice()),
        None => (None, &[][..]),
    };
    let items: Vec<Value> = profiles
        .iter()
        .map(|x| profile_json(x, &p.user.group_names.0))
        .collect();
    Ok(Json(json!({ "version": version, "profiles": items })))
}
