//! `POST /api/v1/requests/{id}/db-credentials`: a short-lived database login for the caller's
//! active grant. The password is in this response only; elevate keeps no copy.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::RequestScope;
use crate::broker::db::IssuedLogin;
use crate::error::AppResult;
use crate::web::AppState;
use crate::web::api::openapi::{IllegalNow, NoSuchRequest, Refused};
use crate::web::caller::{ApiCaller, RequestId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create))
}

/// A database login that the target itself ends at `expires_at`. Borrowed from the issued
/// login so the password is serialised once and not copied.
#[derive(Serialize, ToSchema)]
pub struct LoginView<'a> {
    /// The target's name in elevate.
    target: &'a str,
    /// `postgres` or `mariadb`.
    kind: &'static str,
    host: &'a str,
    port: u16,
    database: &'a str,
    username: &'a str,
    /// Shown here only; elevate keeps no copy.
    password: &'a str,
    #[schema(format = DateTime)]
    expires_at: String,
    /// The roles the login inherits (MariaDB: `SET ROLE` the first one).
    roles: &'a [String],
}

impl<'a> LoginView<'a> {
    fn of(l: &'a IssuedLogin) -> Self {
        Self {
            target: &l.target,
            kind: l.kind.as_str(),
            host: &l.host,
            port: l.port,
            database: &l.database,
            username: &l.username,
            password: l.password.as_str(),
            expires_at: l.expires_at.format(&Rfc3339).unwrap_or_default(),
            roles: &l.roles,
        }
    }
}

/// A login on the profile's database target for the caller's active grant.
#[utoipa::path(
    post, path = "/requests/{id}/db-credentials", operation_id = "issue_db_credentials", tag = "credentials",
    params(("id" = uuid::Uuid, Path, description = "the request")),
    responses(
        (status = 201, body = LoginView),
        Refused, NoSuchRequest, IllegalNow,
        (status = 503, description = "the database target did not answer", body = crate::web::api::openapi::ErrorBody),
    )
)]
async fn create(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<RequestScope>,
    RequestId(id): RequestId,
) -> AppResult<Response> {
    let login = state.broker.issue_db_login(&c, id).await?;
    Ok((StatusCode::CREATED, Json(LoginView::of(&login))).into_response())
}
