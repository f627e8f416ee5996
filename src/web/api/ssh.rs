//! `POST /api/v1/requests/{id}/ssh-certificate`: a certificate for the caller's active grant.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::RequestScope;
use crate::broker::ssh::Issued;
use crate::error::AppResult;
use crate::web::AppState;
use crate::web::api::openapi::{BadBody, IllegalNow, NoSuchRequest, Refused};
use crate::web::caller::{ApiCaller, RequestId};
use crate::web::extract::ApiJson;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Body {
    /// The OpenSSH public key to certify (`ssh-ed25519 AAAA...`); never a private key.
    public_key: String,
}

/// A signed OpenSSH user certificate.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    /// The certificate in OpenSSH's one-line form (`...-cert-v01@openssh.com AAAA...`).
    certificate: String,
    serial: u64,
    /// The key id the certificate carries (the request, the person, the serial).
    key_id: String,
    principals: Vec<String>,
    /// SHA-256 fingerprint of the certified key.
    fingerprint: String,
    #[schema(format = DateTime)]
    valid_after: String,
    #[schema(format = DateTime)]
    valid_before: String,
    /// Where `elevate ssh-cert` writes it (`KEY-cert.pub`).
    file_name: &'static str,
}

impl CertificateView {
    fn of(i: &Issued) -> Self {
        let rfc = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        Self {
            certificate: i.certificate.clone(),
            serial: i.serial,
            key_id: i.key_id.clone(),
            principals: i.principals.clone(),
            fingerprint: i.fingerprint.clone(),
            valid_after: rfc(i.valid_after),
            valid_before: rfc(i.valid_before),
            file_name: i.file_name,
        }
    }
}

/// A certificate for the caller's active grant, valid until the grant ends (or the profile's
/// `cert_ttl`, whichever is first).
#[utoipa::path(
    post, path = "/requests/{id}/ssh-certificate", operation_id = "issue_ssh_certificate", tag = "credentials",
    params(("id" = uuid::Uuid, Path, description = "the request")),
    request_body = Body,
    responses(
        (status = 201, body = CertificateView),
        Refused, NoSuchRequest, IllegalNow, BadBody,
    )
)]
async fn create(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<RequestScope>,
    RequestId(id): RequestId,
    ApiJson(body): ApiJson<Body>,
) -> AppResult<(StatusCode, Json<CertificateView>)> {
    let issued = state
        .broker
        .issue_ssh_certificate(&c, id, &body.public_key)
        .await?;
    Ok((StatusCode::CREATED, Json(CertificateView::of(&issued))))
}
