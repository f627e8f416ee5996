//! The policy history for admins: every version, its source, and what it changed.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Redirect;
use axum::routing::{get, post};

use super::{Nav, when};
use crate::auth::session::AdminUser;
use crate::error::{AppError, AppResult};
use crate::web::AppState;
use crate::web::caller::page_caller;
use crate::web::csrf::{CsrfForm, NoFields};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/policy", get(history))
        .route("/admin/policy/{version}", get(version))
        .route("/admin/policy/proposals/{id}", get(proposal))
        .route(
            "/admin/policy/proposals/{id}/step-up",
            post(proposal_step_up),
        )
        .route(
            "/admin/policy/proposals/{id}/approve",
            post(approve_proposal),
        )
}

struct VersionRow {
    version: i64,
    by: String,
    at: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/policy.html")]
struct HistoryPage {
    nav: Nav,
    versions: Vec<VersionRow>,
    /// Changes that widen access, waiting for a second admin: (id, proposed by, when).
    proposals: Vec<(String, String, String)>,
    /// Profiles of the version in force that cannot work as things stand (see `policy apply`).
    warnings: Vec<String>,
}

async fn history(
    State(state): State<AppState>,
    AdminUser(who): AdminUser,
) -> AppResult<HistoryPage> {
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let versions = tx.policy_versions().await?;
    let proposals = tx
        .open_policy_proposals()
        .await?
        .into_iter()
        .map(|p| (p.id.to_string(), p.proposed_by, when(p.created_at)))
        .collect();
    tx.commit().await?;
    let warnings = crate::broker::policy::current_warnings(&state.store, &who.tenant).await?;
    Ok(HistoryPage {
        warnings,
        proposals,
        nav: Nav::of(&who),
        versions: versions
            .into_iter()
            .map(|v| VersionRow {
                version: v.version,
                by: v.created_by,
                at: when(v.created_at),
            })
            .collect(),
    })
}

struct Change {
    profile: String,
    field: String,
    from: String,
    to: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/policy_version.html")]
struct VersionPage {
    nav: Nav,
    version: i64,
    by: String,
    at: String,
    source: String,
    added: Vec<String>,
    removed: Vec<String>,
    changes: Vec<Change>,
    /// The changes that widen access (what two admins agree to with `policy_two_person`).
    widening: Vec<String>,
}

async fn version(
    State(state): State<AppState>,
    AdminUser(who): AdminUser,
    Path(version): Path<String>,
) -> AppResult<VersionPage> {
    let not_found = || AppError::NotFound("no such policy version".into());
    let version: i64 = version.parse().map_err(|_| not_found())?;
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let v = tx.policy_version(version).await?.ok_or_else(not_found)?;
    let after = tx.profiles_at(version).await?;
    let before = tx.profiles_at(version - 1).await?;
    tx.commit().await?;
    let d = crate::policy::diff(&before, &after);
    let widening = if version > 1 {
        crate::policy::widening(&before, &after)
    } else {
        Vec::new()
    };
    let changes = d
        .changed
        .iter()
        .flat_map(|(profile, fields)| {
            fields.iter().map(move |(field, change)| Change {
                profile: profile.clone(),
                field: field.clone(),
                from: change["from"].to_string(),
                to: change["to"].to_string(),
            })
        })
        .collect();
    Ok(VersionPage {
        nav: Nav::of(&who),
        version,
        by: v.created_by,
        at: when(v.created_at),
        source: v.source,
        widening,
        added: d.added,
        removed: d.removed,
        changes,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/policy_proposal.html")]
struct ProposalPage {
    nav: Nav,
    id: String,
    by: String,
    at: String,
    state: String,
    base_version: i64,
    widening: Vec<String>,
    source: String,
    /// The viewer proposed it: someone else must approve.
    mine: bool,
}

fn proposal_id(id: &str) -> AppResult<uuid::Uuid> {
    id.parse()
        .map_err(|_| AppError::NotFound(format!("no policy proposal {id}")))
}

async fn proposal(
    State(state): State<AppState>,
    AdminUser(who): AdminUser,
    Path(id): Path<String>,
) -> AppResult<ProposalPage> {
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let p = tx
        .policy_proposal(proposal_id(&id)?)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no policy proposal {id}")))?;
    tx.commit().await?;
    Ok(ProposalPage {
        nav: Nav::of(&who),
        id: p.id.to_string(),
        by: p.proposed_by,
        at: when(p.created_at),
        state: p.state,
        base_version: p.base_version,
        widening: serde_json::from_str(&p.widening).unwrap_or_default(),
        source: p.source,
        mine: p.proposer_id == Some(who.user.id),
    })
}

async fn proposal_step_up(
    State(state): State<AppState>,
    AdminUser(who): AdminUser,
    Path(id): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<axum::Json<serde_json::Value>> {
    let (ceremony, options) = state
        .broker
        .begin_proposal_step_up(&page_caller(&state, &who), proposal_id(&id)?)
        .await?;
    Ok(super::challenge_json(ceremony, options))
}

#[derive(serde::Deserialize)]
struct ApproveForm {
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential: String,
}

async fn approve_proposal(
    State(state): State<AppState>,
    AdminUser(who): AdminUser,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<ApproveForm>,
) -> AppResult<Redirect> {
    let ceremony = form.ceremony.parse().map_err(|_| {
        AppError::StepUpRequired("approving a policy change needs a passkey step-up".into())
    })?;
    let proof = crate::passkeys::StepUpProof {
        ceremony,
        credential: form.credential,
    };
    let applied = state
        .broker
        .approve_policy_proposal(&page_caller(&state, &who), proposal_id(&id)?, &proof)
        .await?;
    Ok(Redirect::to(&format!("/admin/policy/{}", applied.version)))
}
