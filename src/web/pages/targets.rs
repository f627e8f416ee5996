//! Database targets for admins: what is registered, how many logins are open on each, a
//! "test connection" button, and the login cleanups that keep failing.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};

use super::{Nav, when};
use crate::auth::session::AdminUser;
use crate::db_targets::targets;
use crate::error::{AppError, AppResult};
use crate::web::AppState;
use crate::web::csrf::{CsrfForm, NoFields};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/targets", get(list))
        .route("/admin/targets/{name}/test", post(test))
}

struct TargetRow {
    name: String,
    kind: String,
    url: String,
    updated: String,
    open_logins: usize,
}

/// A cleanup that failed at least once and is being retried.
pub struct StuckRow {
    pub role: String,
    pub target: String,
    pub request: String,
    pub attempts: i64,
    pub error: String,
    pub next: String,
}

impl StuckRow {
    pub fn of(c: &crate::store::DbLoginRecord) -> Self {
        StuckRow {
            role: c.role_name.clone(),
            target: c.target_name.clone(),
            request: c.request_id.to_string(),
            attempts: c.cleanup_attempts,
            error: c.last_error.clone().unwrap_or_default(),
            next: c.next_attempt_at.map(when).unwrap_or_default(),
        }
    }
}

/// The outcome of the last "test connection", shown above the table.
struct Checked {
    target: String,
    ok: bool,
    message: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/targets.html")]
struct TargetsPage {
    nav: Nav,
    targets: Vec<TargetRow>,
    stuck: Vec<StuckRow>,
    checked: Option<Checked>,
}

async fn page(
    state: &AppState,
    who: &crate::auth::session::SessionUser,
    checked: Option<Checked>,
) -> AppResult<TargetsPage> {
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let mut rows = Vec::new();
    for t in tx.targets().await? {
        rows.push(TargetRow {
            open_logins: tx.open_db_role_names(&t.name).await?.len(),
            url: crate::db_targets::shown_url(&t.kind, &t.url),
            name: t.name,
            kind: t.kind,
            updated: when(t.updated_at),
        });
    }
    let stuck = tx
        .stuck_db_logins()
        .await?
        .iter()
        .map(StuckRow::of)
        .collect();
    tx.commit().await?;
    Ok(TargetsPage {
        nav: Nav::of(who),
        targets: rows,
        stuck,
        checked,
    })
}

async fn list(State(state): State<AppState>, AdminUser(who): AdminUser) -> AppResult<TargetsPage> {
    page(&state, &who, None).await
}

async fn test(
    State(state): State<AppState>,
    AdminUser(who): AdminUser,
    Path(name): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<TargetsPage> {
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let target = tx
        .target_by_name(&name)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no target {name}")))?;
    tx.commit().await?;
    let checked = match targets::check(&target, &state.master_key).await {
        Ok(c) if c.can_create_roles => Checked {
            target: name,
            ok: true,
            message: format!("connected: {}; the admin login may create roles", c.version),
        },
        Ok(c) => Checked {
            target: name,
            ok: false,
            message: format!(
                "connected ({}), but the admin login may not create roles",
                c.version
            ),
        },
        Err(e) => Checked {
            target: name,
            ok: false,
            message: format!("cannot connect: {e}"),
        },
    };
    page(&state, &who, Some(checked)).await
}
