//! Sign-in by email link and sign-out.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::Nav;
use crate::auth::magic_link::{self, LINK_TTL};
use crate::auth::session::{
    SESSION_COOKIE, SIGNIN_COOKIE, SessionUser, clear_cookie, cookie_header, cookie_value,
};
use crate::crypto::TokenHash;
use crate::crypto::token::TokenKind;
use crate::error::{AppError, AppResult};
use crate::web::csrf::{CsrfForm, PlainForm};
use crate::web::{AppState, ClientOrigin};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_form).post(ask_for_link))
        .route("/login/verify", get(confirm_link).post(redeem_link))
        .route("/logout", post(logout))
        .route("/login/passkey", post(passkey_sign_in))
        .route("/login/passkey/challenge", post(passkey_challenge))
        .route("/login/oidc", get(oidc_begin))
        .route("/login/oidc/callback", get(oidc_callback))
}

#[derive(Template, WebTemplate)]
#[template(path = "login/form.html")]
struct LoginPage {
    nav: Nav,
    /// (tenant slug, button label) of the single sign-on providers on offer.
    sso: Vec<(String, String)>,
    tenant: String,
    email: String,
    mail_available: bool,
    demo_outbox: bool,
    passkeys: bool,
}

#[derive(Deserialize, Default)]
struct LoginQuery {
    #[serde(default)]
    tenant: String,
}

async fn login_form(
    State(state): State<AppState>,
    who: Option<SessionUser>,
    Query(q): Query<LoginQuery>,
) -> AppResult<LoginPage> {
    // With a single organisation there is nothing to choose.
    let tenant = if q.tenant.is_empty() {
        let tenants = state.store.tenants().await?;
        if tenants.len() == 1 {
            tenants[0].slug.clone()
        } else {
            String::new()
        }
    } else {
        q.tenant
    };
    let sso = state
        .config
        .oidc
        .iter()
        .filter(|(slug, _)| tenant.is_empty() || **slug == tenant)
        .map(|(slug, p)| (slug.clone(), p.label.clone()))
        .collect();
    Ok(LoginPage {
        nav: who.as_ref().map_or_else(Nav::anonymous, Nav::of),
        sso,
        tenant,
        email: String::new(),
        mail_available: state.mailer.is_available(),
        demo_outbox: state.mailer.demo_outbox().is_some(),
        passkeys: state.broker.passkeys.is_available(),
    })
}

#[derive(Deserialize)]
struct AskForLink {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    email: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "login/sent.html")]
struct SentPage {
    nav: Nav,
    minutes: i64,
    demo_outbox: bool,
}

/// Always the same page, status and cookie, whether or not the address belongs to someone.
async fn ask_for_link(
    State(state): State<AppState>,
    origin: ClientOrigin,
    form: PlainForm<AskForLink>,
) -> AppResult<Response> {
    let result = ask_for_link_counted(&state, origin, form).await;
    state
        .telemetry
        .sign_in(crate::telemetry::SignInMethod::EmailLinkAsk, &result);
    result
}

async fn ask_for_link_counted(
    state: &AppState,
    ClientOrigin(origin): ClientOrigin,
    PlainForm(form): PlainForm<AskForLink>,
) -> AppResult<Response> {
    if form.email.trim().is_empty() || form.tenant.trim().is_empty() {
        return Err(AppError::Unprocessable(
            "enter your organisation and email address".into(),
        ));
    }
    state
        .signin_limits
        .check(&form.email, origin.ip.as_deref())?;
    let now = state.clock.now();
    let nonce = crate::crypto::random_bytes::<32>()
        .map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
    let nonce = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, nonce);
    let browser_nonce = TokenHash::of(&nonce);
    magic_link::request_link(
        &state.store,
        &state.mailer,
        &state.config.public_url,
        &form.tenant,
        &form.email,
        &browser_nonce,
        &origin,
        now,
    )
    .await?;
    let page = SentPage {
        nav: Nav::anonymous(),
        minutes: LINK_TTL.whole_minutes(),
        demo_outbox: state.mailer.demo_outbox().is_some(),
    };
    let mut res = page.into_response();
    res.headers_mut()
        .append(SET_COOKIE, cookie_header(SIGNIN_COOKIE, &nonce, LINK_TTL));
    Ok(res)
}

#[derive(Deserialize)]
struct LinkQuery {
    #[serde(default)]
    token: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "login/confirm.html")]
struct ConfirmPage {
    nav: Nav,
    token: String,
}

/// Opening the link only shows a button: mail scanners that fetch links do not use them up.
async fn confirm_link(Query(q): Query<LinkQuery>) -> ConfirmPage {
    ConfirmPage {
        nav: Nav::anonymous(),
        token: q.token,
    }
}

async fn redeem_link(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    headers: axum::http::HeaderMap,
    PlainForm(form): PlainForm<LinkQuery>,
) -> AppResult<Response> {
    let nonce = cookie_value(&headers, SIGNIN_COOKIE);
    let now = state.clock.now();
    let signed_in = magic_link::redeem(
        &state.store,
        &form.token,
        nonce.as_deref(),
        state.config.session_absolute(),
        &origin,
        now,
    )
    .await;
    state
        .telemetry
        .sign_in(crate::telemetry::SignInMethod::EmailLink, &signed_in);
    let signed_in = signed_in?;
    Ok(signed_in_response(&state, &headers, &origin, &signed_in, SIGNIN_COOKIE, now).await)
}

/// After any sign-in: end the session the browser held before (the new one has a new id), set
/// the session cookie, clear the flow cookie, and go to the page asked for while signed out (a
/// path of this site only), else the dashboard.
async fn signed_in_response(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    origin: &crate::audit::Origin,
    signed_in: &magic_link::SignedIn,
    flow_cookie: &str,
    now: time::OffsetDateTime,
) -> Response {
    if let Some(previous) = cookie_value(headers, SESSION_COOKIE) {
        end_previous_session(state, &previous, origin, now).await;
    }
    let next = crate::auth::session::next_page(headers).unwrap_or_else(|| "/dashboard".into());
    let mut res = Redirect::to(&next).into_response();
    let cookies = res.headers_mut();
    cookies.append(SET_COOKIE, clear_cookie(crate::auth::session::NEXT_COOKIE));
    cookies.append(
        SET_COOKIE,
        cookie_header(
            SESSION_COOKIE,
            signed_in.session_secret.expose(),
            state.config.session_absolute(),
        ),
    );
    cookies.append(SET_COOKIE, clear_cookie(flow_cookie));
    res
}

async fn end_previous_session(
    state: &AppState,
    secret: &str,
    origin: &crate::audit::Origin,
    now: time::OffsetDateTime,
) {
    let Some(hash) = TokenHash::of_presented(TokenKind::Session, secret) else {
        return;
    };
    let result: AppResult<()> = async {
        let Some(tenant_id) = state
            .store
            .secret_tenant(crate::store::SecretKind::Session, hash.as_bytes())
            .await?
        else {
            return Ok(());
        };
        let mut tx = state.store.tenant(tenant_id).await?;
        if let Some(session) = tx.session_by_hash(&hash).await? {
            tx.delete_session(session.id).await?;
            tx.append_audit(
                &crate::audit::NewEvent::new(
                    crate::audit::Actor::System,
                    "session.replaced",
                    session.user_id.to_string(),
                )
                .origin(origin.clone())
                .details(serde_json::json!({ "session_id": session.id })),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not end the previous session at sign-in");
    }
}

#[derive(Deserialize)]
struct PasskeyChallengeForm {
    #[serde(default)]
    tenant: String,
}

/// A sign-in challenge for the organisation on the form (for `passkeys.js`).
async fn passkey_challenge(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    PlainForm(form): PlainForm<PasskeyChallengeForm>,
) -> AppResult<axum::Json<serde_json::Value>> {
    if form.tenant.trim().is_empty() {
        return Err(AppError::Unprocessable("enter your organisation".into()));
    }
    // Challenges cost a row each: limited like email links, per client address.
    state.signin_limits.check_ceremony(origin.ip.as_deref())?;
    let (ceremony, options) = crate::auth::passkey::begin_sign_in(
        &state.store,
        &state.broker.passkeys,
        &form.tenant,
        state.clock.now(),
    )
    .await?;
    Ok(super::challenge_json(ceremony, options))
}

#[derive(Deserialize)]
struct PasskeySignInForm {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential: String,
}

async fn passkey_sign_in(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    headers: axum::http::HeaderMap,
    PlainForm(form): PlainForm<PasskeySignInForm>,
) -> AppResult<Response> {
    let now = state.clock.now();
    let signed_in = match form.ceremony.parse() {
        Ok(ceremony) => {
            crate::auth::passkey::finish_sign_in(
                &state.store,
                &state.broker.passkeys,
                &form.tenant,
                crate::passkeys::Answer {
                    ceremony,
                    credential: &form.credential,
                },
                state.config.session_absolute(),
                (&origin, now),
            )
            .await
        }
        Err(_) => Err(AppError::BadRequest(
            crate::auth::passkey::SIGN_IN_REFUSED.into(),
        )),
    };
    state
        .telemetry
        .sign_in(crate::telemetry::SignInMethod::Passkey, &signed_in);
    let signed_in = signed_in?;
    Ok(signed_in_response(&state, &headers, &origin, &signed_in, SIGNIN_COOKIE, now).await)
}

async fn oidc_begin(
    State(state): State<AppState>,
    Query(q): Query<LoginQuery>,
) -> AppResult<Response> {
    let (url, flow) = crate::auth::oidc::begin(
        &state.config,
        &state.master_key,
        &q.tenant,
        state.clock.now(),
    )
    .await?;
    let mut res = Redirect::to(&url).into_response();
    res.headers_mut().append(
        SET_COOKIE,
        cookie_header(
            crate::auth::oidc::FLOW_COOKIE,
            &flow,
            crate::auth::oidc::FLOW_TTL,
        ),
    );
    Ok(res)
}

#[derive(Deserialize)]
struct Callback {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: String,
}

async fn oidc_callback(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    headers: axum::http::HeaderMap,
    Query(cb): Query<Callback>,
) -> AppResult<Response> {
    if !cb.error.is_empty() || cb.code.is_empty() {
        let refused = Err(AppError::BadRequest(
            "single sign-on was cancelled or refused by the provider".into(),
        ));
        state
            .telemetry
            .sign_in(crate::telemetry::SignInMethod::Oidc, &refused);
        return refused;
    }
    let flow = cookie_value(&headers, crate::auth::oidc::FLOW_COOKIE);
    let now = state.clock.now();
    let signed_in = crate::auth::oidc::finish(
        &state.store,
        &state.config,
        &state.master_key,
        flow.as_deref(),
        &cb.code,
        &cb.state,
        &origin,
        now,
    )
    .await;
    state
        .telemetry
        .sign_in(crate::telemetry::SignInMethod::Oidc, &signed_in);
    let signed_in = signed_in?;
    Ok(signed_in_response(
        &state,
        &headers,
        &origin,
        &signed_in,
        crate::auth::oidc::FLOW_COOKIE,
        now,
    )
    .await)
}

#[derive(Deserialize)]
struct LogoutForm {}

async fn logout(
    State(state): State<AppState>,
    who: SessionUser,
    CsrfForm(LogoutForm {}): CsrfForm<LogoutForm>,
) -> AppResult<Response> {
    magic_link::sign_out(&state.store, &who, state.clock.now()).await?;
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut()
        .append(SET_COOKIE, clear_cookie(SESSION_COOKIE));
    Ok(res)
}
