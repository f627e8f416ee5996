//! The OpenAPI document of `/api/v1` (`GET /api/v1/openapi.json`, DESIGN §8). Routes are added
//! through `utoipa_axum`'s `OpenApiRouter`, which takes each handler's `#[utoipa::path]` into the
//! document as it adds the handler to the router: a route cannot exist undocumented, nor a
//! documented route be missing. Error answers are documented by the sets below, one type each,
//! so that the same status means the same thing on every route.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, response::Response};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "elevate",
        description = "Just-in-time privileged access: requests, approvals, SSH certificates and \
                       short-lived database logins. Every call needs `Authorization: Bearer <token>` \
                       except the device authorization endpoints; the token fixes the organisation.",
    ),
    servers((url = "/api/v1")),
    security(("bearer" = [])),
    components(schemas(ErrorBody)),
    modifiers(&BearerToken),
    tags(
        (name = "requests", description = "The request workflow"),
        (name = "credentials", description = "Credentials of an active grant"),
        (name = "sessions", description = "SSH sessions hosts reported, and their recordings"),
        (name = "policy", description = "Access profiles"),
        (name = "audit", description = "The audit log (scope `audit`)"),
        (name = "tokens", description = "The caller's own API tokens"),
        (name = "device", description = "Device authorization for `elevate login` (RFC 8628)"),
    ),
)]
pub struct ApiDoc;

/// The security scheme of every operation but the device authorization ones.
const BEARER: &str = "bearer";

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An API token (`elevate admin token create`, the /tokens page or `elevate login`)",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// Every error answer of the API: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable: `bad_request`, `unauthorized`, `forbidden`,
    /// `step_up_required`, `not_found`, `conflict`, `payload_too_large`, `unprocessable`,
    /// `rate_limited`, `unavailable`, `internal`, ...
    pub code: String,
    /// For a person.
    pub message: String,
    /// Quoted in the server's log; on server errors only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

fn error_responses(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|(status, description)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            let response = ResponseBuilder::new()
                .description(*description)
                .content("application/json", content)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

macro_rules! error_set {
    ($(#[$doc:meta])* $name:ident: $($status:literal => $description:literal),+ $(,)?) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                error_responses(&[$(($status, $description)),+])
            }
        }
    };
}

error_set!(
    /// What any authenticated call can be refused with.
    Refused:
    400 => "malformed parameters, or a body that is not JSON (`Content-Type: application/json`)",
    401 => "no token, or one that is unknown, expired or revoked",
    403 => "the token lacks the scope, or its person may not do this",
    429 => "too many calls: wait for `Retry-After` seconds",
);

error_set!(
    /// A call on a request named in the path.
    NoSuchRequest:
    404 => "no such request in this organisation, or not one the caller may see",
);

error_set!(
    /// A transition the request's state does not allow.
    IllegalNow:
    409 => "the request's state does not allow this now",
);

error_set!(
    /// A call with a body.
    BadBody:
    413 => "the body is too large",
    422 => "the body is JSON but not valid here; the message says why",
);

error_set!(
    /// The query names a filter or page that cannot be read.
    BadQuery:
    422 => "a filter or cursor that cannot be read; the message says why",
);
