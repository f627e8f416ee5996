//! `PUT /api/v1/policy` (TOML body, admin scope) and `GET /api/v1/profiles`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{AdminScope, ReadScope, Scoped};
use crate::broker;
use crate::error::AppResult;
use crate::policy::{PolicyDiff, Profile};
use crate::web::api::openapi::{BadBody, Refused};
use crate::web::{AppState, ClientOrigin};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(apply))
        .routes(routes!(profiles))
}

/// What applying a policy did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Applied {
    /// The version in force after this call.
    version: i64,
    /// A new version was made (false: the same policy again).
    created: bool,
    /// What changed from the version in force before.
    diff: PolicyDiff,
    /// Settings that are allowed but probably not meant.
    warnings: Vec<String>,
    /// With two-person policy changes on: the proposal waiting for a second admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    proposed: Option<Proposed>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Proposed {
    id: Uuid,
    /// Why it needs a second admin.
    widening: Vec<String>,
    /// The page where a second admin approves it.
    approve_at: String,
}

/// Replace the policy (the TOML of DESIGN §8). A change that widens access waits for a second
/// admin when the organisation requires two people (202).
#[utoipa::path(
    put, path = "/policy", operation_id = "apply_policy", tag = "policy",
    request_body(content((String = "text/plain"), (String = "application/toml")), description = "the policy file (TOML)"),
    responses(
        (status = 200, description = "the same policy as in force", body = Applied),
        (status = 201, description = "a new version is in force", body = Applied),
        (status = 202, description = "proposed: waits for a second admin", body = Applied),
        Refused, BadBody,
    )
)]
async fn apply(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<AdminScope>,
    body: String,
) -> AppResult<(StatusCode, Json<Applied>)> {
    let ctx = p.ctx(origin, state.clock.now());
    let applied = broker::policy::apply(&state.store, &ctx, &p.tenant, &body).await?;
    let status = if applied.proposed.is_some() {
        StatusCode::ACCEPTED
    } else if applied.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let base = state.config.public_url.trim_end_matches('/');
    let proposed = applied.proposed.map(|id| Proposed {
        id,
        widening: applied.widening.clone(),
        approve_at: format!("{base}/admin/policy/proposals/{id}"),
    });
    Ok((
        status,
        Json(Applied {
            version: applied.version,
            created: applied.created,
            diff: applied.diff,
            warnings: applied.warnings,
            proposed,
        }),
    ))
}

/// A profile in force, as the caller sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileView {
    #[serde(flatten)]
    profile: Profile,
    /// Like `1h`.
    default_duration: String,
    max_duration: String,
    /// Whether the caller is in one of the profile's `requesters` groups.
    can_request: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileList {
    /// The policy version in force; null before any policy.
    version: Option<i64>,
    profiles: Vec<ProfileView>,
}

/// The profiles in force, each saying whether the caller may request it.
#[utoipa::path(
    get, path = "/profiles", operation_id = "list_profiles", tag = "policy",
    responses((status = 200, body = ProfileList), Refused)
)]
async fn profiles(
    State(state): State<AppState>,
    Scoped(p, ..): Scoped<ReadScope>,
) -> AppResult<Json<ProfileList>> {
    let current = broker::policy::current(&state.store, &p.tenant).await?;
    let (version, profiles) = match &current {
        Some((v, profiles)) => (Some(v.version), profiles.as_slice()),
        None => (None, &[][..]),
    };
    let groups = &p.user.group_names.0;
    let list = ProfileList {
        version,
        profiles: profiles
            .iter()
            .map(|x| ProfileView {
                profile: x.clone(),
                default_duration: crate::duration::format(time::Duration::seconds(
                    x.default_duration_secs,
                )),
                max_duration: crate::duration::format(x.max_duration()),
                can_request: x.may_request(groups),
            })
            .collect(),
    };
    Ok(Json(list))
}
