//! The policy history for admins: every version, its source, and what it changed.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;

use super::{Nav, when};
use crate::auth::session::AdminUser;
use crate::error::{AppError, AppResult};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/policy", get(history))
        .route("/admin/policy/{version}", get(version))
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
    /// Profiles of the version in force that cannot work as things stand (see `policy apply`).
    warnings: Vec<String>,
}

async fn history(
    State(state): State<AppState>,
    AdminUser(who): AdminUser,
) -> AppResult<HistoryPage> {
    let mut tx = state.store.tenant(who.tenant.tenant_id).await?;
    let versions = tx.policy_versions().await?;
    tx.commit().await?;
    let warnings = crate::broker::policy::current_warnings(&state.store, &who.tenant).await?;
    Ok(HistoryPage {
        warnings,
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
}

async fn version(
    State(state): State<AppState>,
    AdminUser(who): AdminUser,
    Path(version): Path<String>,
) -> AppResult<VersionPage> {
    let not_found = || AppError::NotFound("no such policy version".into());
    let version: i64 = version.parse().map_err(|_| not_found())?;
    let mut tx = state.store.tenant(who.tenant.tenant_id).await?;
    let v = tx.policy_version(version).await?.ok_or_else(not_found)?;
    let after = tx.profiles_at(version).await?;
    let before = tx.profiles_at(version - 1).await?;
    tx.commit().await?;
    let d = crate::policy::diff(&before, &after);
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
        added: d.added,
        removed: d.removed,
        changes,
    })
}
