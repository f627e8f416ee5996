use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::{ApiPrincipal, ReadScope, Scoped};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/me", get(me))
}

/// Who this token acts as: user, tenant, standing roles and the token's own scopes.
async fn me(Scoped(p, ..): Scoped<ReadScope>) -> Json<Value> {
    Json(principal_json(&p))
}

pub(super) fn principal_json(p: &ApiPrincipal) -> Value {
    json!({
        "user": {
            "id": p.user.id,
            "email": p.user.email,
            "display_name": p.user.display_name,
            "roles": p.user.roles.0,
            "groups": p.user.group_names.0,
        },
        "tenant": { "id": p.tenant.tenant_id, "slug": p.tenant.slug, "name": p.tenant.name },
        "roles": p.user.roles.0,
        "token": {
            "id": p.token.id,
            "name": p.token.name,
            "scopes": p.token.scopes.0,
            "expires_at": p.token.expires_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        },
    })
}
