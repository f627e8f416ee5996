//! `GET /api/v1/me`: who this token acts as.

use axum::Json;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{ApiPrincipal, ReadScope, Scoped};
use crate::model::{Role, Scope};
use crate::web::AppState;
use crate::web::api::openapi::Refused;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    user: UserView,
    tenant: TenantView,
    /// The user's standing roles (as in `user.roles`).
    roles: Vec<Role>,
    token: TokenView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    id: Uuid,
    email: String,
    display_name: String,
    roles: Vec<Role>,
    groups: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    id: Uuid,
    slug: String,
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    id: Uuid,
    name: String,
    scopes: Vec<Scope>,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

/// Who this token acts as: user, organisation, standing roles and the token's own scopes.
#[utoipa::path(
    get, path = "/me", operation_id = "get_me",
    responses((status = 200, body = MeView), Refused)
)]
async fn me(Scoped(p, ..): Scoped<ReadScope>) -> Json<MeView> {
    Json(MeView::of(&p))
}

impl MeView {
    fn of(p: &ApiPrincipal) -> Self {
        Self {
            user: UserView {
                id: p.user.id,
                email: p.user.email.clone(),
                display_name: p.user.display_name.clone(),
                roles: p.user.roles.0.clone(),
                groups: p.user.group_names.0.clone(),
            },
            tenant: TenantView {
                id: p.tenant.tenant_id,
                slug: p.tenant.slug.clone(),
                name: p.tenant.name.clone(),
            },
            roles: p.user.roles.0.clone(),
            token: TokenView {
                id: p.token.id,
                name: p.token.name.clone(),
                scopes: p.token.scopes.0.clone(),
                expires_at: p.token.expires_at.and_then(|t| t.format(&Rfc3339).ok()),
            },
        }
    }
}
