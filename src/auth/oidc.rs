//! Single sign-on with OpenID Connect: authorization code flow with PKCE, state and nonce
//! (`openidconnect`). The flow's secrets travel in a cookie sealed under the master key, so any
//! replica can finish a flow another started. The email must be verified by the provider; the
//! groups claim (name configurable) replaces the user's groups at each sign-in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use super::magic_link::SignedIn;
use crate::admin;
use crate::audit::Ctx;
use crate::audit::{Actor, NewEvent, Origin};
use crate::config::{Config, OidcConfig};
use crate::crypto::MasterKey;
use crate::error::{AppError, AppResult};
use crate::model::Tenant;
use crate::store::{Store, UserChange};

pub const FLOW_COOKIE: &str = "__Host-elevate-oidc";
pub const FLOW_TTL: Duration = Duration::minutes(10);
const SEAL_CONTEXT: &str = "oidc-flow";

/// What the browser carries between the redirect to the provider and the callback.
#[derive(Serialize, Deserialize)]
struct Flow {
    tenant: String,
    state: String,
    nonce: String,
    pkce_verifier: String,
    expires: i64,
}

fn http_client() -> AppResult<openidconnect::reqwest::Client> {
    openidconnect::reqwest::ClientBuilder::new()
        // Following redirects would let a provider bounce token requests elsewhere.
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(AppError::internal)
}

/// Fetches and parses a provider's discovery document (`/.well-known/openid-configuration`),
/// bounded by `limit`. Shared by `/readyz` and `elevate doctor`.
pub async fn probe_discovery(issuer: &str, limit: std::time::Duration) -> Result<(), String> {
    let issuer = IssuerUrl::new(issuer.to_owned()).map_err(|e| format!("invalid issuer: {e}"))?;
    let http = openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(limit)
        .build()
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(limit, CoreProviderMetadata::discover_async(issuer, &http)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err(format!("no answer within {}s", limit.as_secs())),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn redirect_url(config: &Config) -> String {
    format!(
        "{}/login/oidc/callback",
        config.public_url.trim_end_matches('/')
    )
}

fn provider_of<'a>(config: &'a Config, tenant: &str) -> AppResult<&'a OidcConfig> {
    config
        .oidc
        .get(tenant)
        .ok_or_else(|| AppError::NotFound(format!("single sign-on is not configured for {tenant}")))
}

async fn client(
    config: &Config,
    oidc: &OidcConfig,
    http: &openidconnect::reqwest::Client,
) -> AppResult<CoreClientReady> {
    let issuer = IssuerUrl::new(oidc.issuer.clone()).map_err(AppError::internal)?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| {
            tracing::warn!(issuer = %oidc.issuer, error = %e, "OpenID discovery failed");
            AppError::BadRequest(
                "the single sign-on provider cannot be reached; try again later".into(),
            )
        })?;
    let redirect = RedirectUrl::new(redirect_url(config)).map_err(AppError::internal)?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(oidc.client_id.clone()),
        Some(ClientSecret::new(
            oidc.client_secret.expose_secret().to_owned(),
        )),
    )
    .set_redirect_uri(redirect))
}

type CoreClientReady = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// Starts a flow: returns the provider URL to send the browser to and the sealed flow cookie.
pub async fn begin(
    config: &Config,
    master: &MasterKey,
    tenant: &str,
    now: OffsetDateTime,
) -> AppResult<(String, String)> {
    let oidc = provider_of(config, tenant)?;
    let http = http_client()?;
    let client = client(config, oidc, &http).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new(oidc.groups_claim.clone()))
        .set_pkce_challenge(challenge)
        .url();
    let flow = Flow {
        tenant: tenant.to_owned(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        expires: (now + FLOW_TTL).unix_timestamp(),
    };
    let plain = serde_json::to_vec(&flow).map_err(AppError::internal)?;
    let sealed = master.seal(SEAL_CONTEXT, &plain)?;
    Ok((url.to_string(), B64URL.encode(sealed)))
}

/// Why a callback was refused (for the audit log; the visitor sees one message).
fn refusal(reason: &str) -> AppError {
    AppError::BadRequest(format!(
        "single sign-on failed: {reason}. Start again from the sign-in page."
    ))
}

/// Finishes a flow at the callback: checks state, exchanges the code with the PKCE verifier,
/// verifies the ID token (signature, audience, expiry, nonce), requires a verified email, maps
/// groups, and starts a session.
#[allow(clippy::too_many_arguments)]
pub async fn finish(
    store: &Store,
    config: &Config,
    master: &MasterKey,
    flow_cookie: Option<&str>,
    code: &str,
    state: &str,
    origin: &Origin,
    now: OffsetDateTime,
) -> AppResult<SignedIn> {
    let flow: Flow = flow_cookie
        .and_then(|c| B64URL.decode(c).ok())
        .and_then(|sealed| master.open(SEAL_CONTEXT, &sealed).ok())
        .and_then(|plain| serde_json::from_slice(plain.expose_secret()).ok())
        .ok_or_else(|| refusal("the sign-in started in another browser or has expired"))?;
    let tenant = admin::tenant_by_slug(store, &flow.tenant).await?;
    match verify(config, &flow, code, state, now).await {
        Ok(identity) => sign_in(store, config, &tenant, identity, origin, now).await,
        Err(reason) => {
            audit_failure(store, &tenant, "", reason, origin, now).await?;
            Err(refusal(reason))
        }
    }
}

struct Identity {
    issuer: String,
    subject: String,
    email: String,
    groups: Vec<String>,
}

async fn verify(
    config: &Config,
    flow: &Flow,
    code: &str,
    state: &str,
    now: OffsetDateTime,
) -> Result<Identity, &'static str> {
    if now.unix_timestamp() > flow.expires {
        return Err("sign-in took too long");
    }
    if !bool::from(flow.state.as_bytes().ct_eq(state.as_bytes())) {
        return Err("state does not match");
    }
    let oidc = config
        .oidc
        .get(&flow.tenant)
        .ok_or("provider no longer configured")?;
    let http = http_client().map_err(|_| "internal error")?;
    let client = client(config, oidc, &http)
        .await
        .map_err(|_| "provider unreachable")?;
    let token = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|_| "provider has no token endpoint")?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "OpenID code exchange failed");
            "code exchange refused"
        })?;
    let id_token = token.id_token().ok_or("no ID token")?;
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &Nonce::new(flow.nonce.clone()))
        .map_err(|e| {
            tracing::warn!(error = %e, "ID token refused");
            match e {
                openidconnect::ClaimsVerificationError::InvalidNonce(_) => "nonce does not match",
                _ => "ID token invalid",
            }
        })?;
    if claims.email_verified() != Some(true) {
        return Err("email not verified by the provider");
    }
    let email = claims
        .email()
        .map(|e| e.as_str().to_owned())
        .ok_or("no email claim")?;
    // The same normal form as every other entry point: an address with an invisible character
    // would otherwise be a second person with the same visible address.
    let email = crate::model::normalize_email(&email)
        .map_err(|_| "the email claim is not a valid address")?;
    // The token's signature is verified above; read the configurable groups claim from it.
    let payload = id_token.to_string();
    let groups = payload
        .split('.')
        .nth(1)
        .and_then(|p| B64URL.decode(p).ok())
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
        .and_then(|v| v.get(&oidc.groups_claim).cloned())
        .and_then(|g| serde_json::from_value::<Vec<String>>(g).ok())
        .unwrap_or_default();
    Ok(Identity {
        issuer: oidc.issuer.clone(),
        subject: claims.subject().to_string(),
        email,
        groups,
    })
}

async fn audit_failure(
    store: &Store,
    tenant: &Tenant,
    email: &str,
    reason: &str,
    origin: &Origin,
    now: OffsetDateTime,
) -> AppResult<()> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    tx.append_audit(
        &NewEvent::new(Actor::System, "signin.failed", email)
            .origin(origin.clone())
            .details(json!({ "method": "oidc", "reason": reason })),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn sign_in(
    store: &Store,
    config: &Config,
    tenant: &Tenant,
    id: Identity,
    origin: &Origin,
    now: OffsetDateTime,
) -> AppResult<SignedIn> {
    let oidc = provider_of(config, &tenant.slug)?;
    let ctx = Ctx {
        actor: Actor::System,
        origin: origin.clone(),
        now,
    };
    let user = match admin::user_by_email(store, tenant, &id.email).await {
        Ok(user) => user,
        Err(AppError::NotFound(_)) if oidc.create_users => {
            admin::create_user(
                store,
                &ctx,
                tenant,
                &id.email,
                None,
                &oidc.default_roles,
                &id.groups,
            )
            .await?
        }
        Err(AppError::NotFound(_)) => {
            audit_failure(
                store,
                tenant,
                &id.email,
                "no such user and sign-up is off",
                origin,
                now,
            )
            .await?;
            return Err(refusal("there is no account for this email address"));
        }
        Err(e) => return Err(e),
    };
    if user.disabled {
        audit_failure(store, tenant, &user.email, "user disabled", origin, now).await?;
        return Err(refusal("this account is disabled"));
    }
    let mut groups = id.groups.clone();
    groups.sort();
    groups.dedup();
    let user = if groups != user.group_names.0 {
        let change = UserChange {
            groups: Some(groups),
            ..Default::default()
        };
        admin::update_user(store, &ctx, tenant, user.id, &change).await?
    } else {
        user
    };
    let tx = store.tenant(tenant.tenant_id).await?;
    let details = json!({ "method": "oidc", "issuer": id.issuer, "subject": id.subject });
    let absolute = config.session_absolute();
    super::session::finish_sign_in(tx, tenant.clone(), user, absolute, origin, now, details).await
}
