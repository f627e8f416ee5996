//! Administration of people: invite, standing roles and groups, disable.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Redirect;
use axum::routing::{get, post};
use serde::Deserialize;
use uuid::Uuid;

use super::Nav;
use crate::admin;
use crate::auth::session::AdminUser;
use crate::error::{AppError, AppResult};
use crate::model::{Role, User};
use crate::store::UserChange;
use crate::web::AppState;
use crate::web::auth::SteppedUpAdmin;
use crate::web::csrf::{CsrfForm, NoFields};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(list).post(invite))
        .route("/admin/users/{id}", get(show).post(change))
        .route("/admin/users/{id}/disable", post(disable))
        .route("/admin/users/{id}/enable", post(enable))
}

struct UserRow {
    id: String,
    email: String,
    name: String,
    roles: String,
    groups: String,
    disabled: bool,
}

impl From<&User> for UserRow {
    fn from(u: &User) -> Self {
        UserRow {
            id: u.id.to_string(),
            // Shown, so an account made before addresses were normalised cannot pass for another.
            email: crate::text::shown_owned(&u.email),
            name: crate::text::shown_owned(&u.display_name),
            roles: u
                .roles
                .0
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            groups: u.group_names.0.join(", "),
            disabled: u.disabled,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/users.html")]
struct UsersPage {
    nav: Nav,
    users: Vec<UserRow>,
    all_roles: Vec<&'static str>,
    notice: String,
    /// A refused invitation: why, and the form as it was filled in.
    error: String,
    kept: Invited,
}

/// The invitation form as it was filled in.
#[derive(Default)]
struct Invited {
    email: String,
    name: String,
    roles: Vec<String>,
    groups: String,
}

impl Invited {
    fn has(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

async fn list(State(state): State<AppState>, AdminUser(who): AdminUser) -> AppResult<UsersPage> {
    users_page(&state, &who, String::new()).await
}

async fn users_page(
    state: &AppState,
    who: &crate::auth::session::SessionUser,
    notice: String,
) -> AppResult<UsersPage> {
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let users = tx.list_users().await?;
    tx.commit().await?;
    Ok(UsersPage {
        nav: Nav::of(who),
        users: users.iter().map(UserRow::from).collect(),
        all_roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
        notice,
        error: String::new(),
        kept: Invited::default(),
    })
}

fn parse_roles(roles: &[String]) -> AppResult<Vec<Role>> {
    roles
        .iter()
        .map(|r| r.parse().map_err(AppError::Unprocessable))
        .collect()
}

fn parse_groups(groups: &str) -> Vec<String> {
    groups
        .split([',', ' '])
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Deserialize)]
struct InviteForm {
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "role")]
    roles: Vec<String>,
    #[serde(default)]
    groups: String,
}

/// Creates the user and mails them where to sign in; a refusal brings the form back filled in.
async fn invite(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    CsrfForm(form): CsrfForm<InviteForm>,
) -> AppResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let kept = Invited {
        email: form.email.clone(),
        name: form.name.clone(),
        roles: form.roles.clone(),
        groups: form.groups.clone(),
    };
    match invited(&state, &who, form).await {
        Ok(page) => Ok(page.into_response()),
        Err(e) if super::fixable(&e) => {
            let mut page = users_page(&state, &who, String::new()).await?;
            page.error = e.to_string();
            page.kept = kept;
            Ok(super::refused_with(e, page))
        }
        Err(e) => Err(e),
    }
}

async fn invited(
    state: &AppState,
    who: &crate::auth::session::SessionUser,
    form: InviteForm,
) -> AppResult<UsersPage> {
    let now = state.clock.now();
    let roles = parse_roles(&form.roles)?;
    let name = Some(form.name.as_str()).filter(|n| !n.trim().is_empty());
    let user = admin::create_user(
        &state.store,
        &who.ctx(now),
        &who.tenant,
        &form.email,
        name,
        &roles,
        &parse_groups(&form.groups),
    )
    .await?;
    let url = format!(
        "{}/login?tenant={}",
        state.config.public_url.trim_end_matches('/'),
        who.tenant.slug
    );
    let body = format!(
        "Hello {},\n\n{} added you to elevate ({}). Sign in with this address at:\n\n{url}\n",
        user.display_name, who.user.display_name, who.tenant.name
    );
    state
        .mailer
        .send_later(&user.email, "You have been added to elevate", body, now);
    users_page(state, who, format!("Invited {}.", user.email)).await
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/user.html")]
struct UserPage {
    nav: Nav,
    user: UserRow,
    roles: Vec<(&'static str, bool)>,
}

async fn load_user(
    state: &AppState,
    who: &crate::auth::session::SessionUser,
    id: &str,
) -> AppResult<User> {
    let id: Uuid = id
        .parse()
        .map_err(|_| AppError::NotFound("no such user".into()))?;
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let user = tx.user_by_id(id).await?;
    tx.commit().await?;
    user.ok_or_else(|| AppError::NotFound("no such user".into()))
}

fn user_page(who: &crate::auth::session::SessionUser, user: &User) -> UserPage {
    UserPage {
        nav: Nav::of(who),
        user: UserRow::from(user),
        roles: Role::ALL
            .iter()
            .map(|r| (r.as_str(), user.has_role(*r)))
            .collect(),
    }
}

async fn show(
    State(state): State<AppState>,
    AdminUser(who): AdminUser,
    Path(id): Path<String>,
) -> AppResult<UserPage> {
    let user = load_user(&state, &who, &id).await?;
    Ok(user_page(&who, &user))
}

#[derive(Deserialize)]
struct ChangeForm {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "role")]
    roles: Vec<String>,
    #[serde(default)]
    groups: String,
}

async fn change(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<ChangeForm>,
) -> AppResult<Redirect> {
    let user = load_user(&state, &who, &id).await?;
    let roles = parse_roles(&form.roles)?;
    if user.id == who.user.id && !roles.contains(&Role::Admin) {
        return Err(AppError::Conflict(
            "you cannot remove your own admin role".into(),
        ));
    }
    let change = UserChange {
        display_name: Some(form.name.trim().to_owned()).filter(|n| !n.is_empty()),
        roles: Some(roles),
        groups: Some(parse_groups(&form.groups)),
        disabled: None,
    };
    admin::update_user(
        &state.store,
        &who.ctx(state.clock.now()),
        &who.tenant,
        user.id,
        &change,
    )
    .await?;
    Ok(Redirect::to(&format!("/admin/users/{}", user.id)))
}

async fn set_disabled(
    state: &AppState,
    who: &crate::auth::session::SessionUser,
    id: &str,
    disabled: bool,
) -> AppResult<Redirect> {
    let user = load_user(state, who, id).await?;
    if user.id == who.user.id {
        return Err(AppError::Conflict("you cannot disable yourself".into()));
    }
    admin::set_user_disabled(
        &state.store,
        &who.ctx(state.clock.now()),
        Some(&state.config.public_url),
        &who.tenant,
        user.id,
        disabled,
    )
    .await?;
    // Their database logins are due now: drop them and end their sessions at once.
    state.reaper_wake.notify_one();
    Ok(Redirect::to(&format!("/admin/users/{}", user.id)))
}

async fn disable(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    Path(id): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<Redirect> {
    set_disabled(&state, &who, &id, true).await
}

async fn enable(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    Path(id): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<Redirect> {
    set_disabled(&state, &who, &id, false).await
}
