//! The HTTP shell: one router merging each feature's `router()`, the security headers every
//! response carries, request ids, tracing, limits, and serving over TLS 1.3 (or plain HTTP behind a
//! TLS-terminating proxy).

pub mod api;
pub mod audit_check;
pub mod audit_query;
mod auth;
pub(crate) mod caller;
pub mod csrf;
pub mod error;
mod extract;
mod health;
pub mod history_query;
pub mod host;
pub mod limits;
pub mod metrics;
mod pages;
mod plain_hint;
mod probes;
mod public;
mod static_files;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::middleware;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::notify::Mailer;
use crate::store::Store;
use limits::SigninLimits;

pub use extract::ClientOrigin;

/// Shared by every handler: one allocation behind an `Arc`, so that the clone every extractor
/// takes is one reference count, not one per field (cloning the fields was 4% of the CPU of an
/// authenticated read, issue 16).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub store: Store,
    pub clock: SharedClock,
    pub master_key: Arc<MasterKey>,
    pub config: Arc<Config>,
    pub mailer: Mailer,
    pub signin_limits: Arc<SigninLimits>,
    /// Written by the reaper task, read by `/readyz`.
    pub reaper: crate::reaper::SharedStatus,
    /// Written by the audit checkpointer, read by `/readyz` and the audit page.
    pub audit: crate::audit::checkpoint::SharedStatus,
    /// Wakes the reaper for work that should not wait for its next pass (a revocation).
    pub reaper_wake: Arc<tokio::sync::Notify>,
    /// The last check of every database target, reused by `/readyz` for a while.
    pub target_health: Arc<tokio::sync::Mutex<Option<health::TargetHealth>>>,
    /// The last round of readiness probes (signing keys, SMTP, OpenID), reused for a while.
    pub probes: probes::SharedProbes,
    /// Process-wide counters for `/metrics` (HTTP, credentials, sign-ins, reaper).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// What handlers ask of elevate: every request and credential action goes through it.
    pub broker: crate::broker::Broker,
    /// How far this replica has verified each tenant's log, so the audit page checks only what
    /// was appended since (see [`audit_check`]).
    pub audit_checks: std::sync::Mutex<audit_check::Checks>,
}

impl AppState {
    pub fn new(
        store: Store,
        clock: SharedClock,
        master_key: Arc<MasterKey>,
        config: Config,
    ) -> anyhow::Result<Self> {
        let mailer = Mailer::from_config(&config)?;
        let reaper_wake: Arc<tokio::sync::Notify> = Default::default();
        let telemetry: Arc<crate::telemetry::Telemetry> = Default::default();
        let broker = crate::broker::Broker {
            store: store.clone(),
            master: master_key.clone(),
            links: config.public_url.as_str().into(),
            reaper_wake: reaper_wake.clone(),
            postman_wake: Default::default(),
            telemetry: telemetry.clone(),
            passkeys: crate::passkeys::RelyingParty::for_public_url(&config.public_url),
        };
        Ok(Self(Arc::new(Shared {
            store,
            clock,
            master_key,
            config: Arc::new(config),
            mailer,
            signin_limits: Arc::new(SigninLimits::default()),
            reaper: Default::default(),
            audit: Default::default(),
            reaper_wake,
            target_health: Default::default(),
            probes: Default::default(),
            telemetry,
            broker,
            audit_checks: Default::default(),
        })))
    }
}

/// No script or style from anywhere but our own `/static`, no framing, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: AppState) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    let body_limit = state.config.max_body_bytes;
    let telemetry = state.telemetry.clone();
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    let headers = [
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        // Not `no-referrer`: with it, browsers send `Origin: null` on form posts, which the
        // same-origin check must refuse. `same-origin` still keeps URLs (sign-in links) from
        // leaking to other sites.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=()",
        ),
    ];
    let errors_state = state.clone();
    let mut app = Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(public::router())
        .merge(host::router())
        .merge(pages::router())
        .merge(static_files::router())
        .route(
            "/favicon.ico",
            axum::routing::get(|| async { StatusCode::NO_CONTENT }),
        )
        .nest("/api/v1", api::router())
        .route_layer(middleware::from_fn(metrics::note_route))
        .fallback(|| async { crate::error::AppError::NotFound("no such page".into()) })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            csrf::same_origin_guard,
        ))
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn_with_state(
            errors_state,
            error::render_errors,
        ));
    // Responses default to no-store: pages and API answers carry tokens and personal data.
    app = app.layer(SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ));
    for (name, value) in headers {
        app = app.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    // Outside every other layer, so the time and status are what the client got.
    app = app.layer(middleware::from_fn_with_state(
        telemetry,
        metrics::count_request,
    ));
    app.layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            // The path only: query strings may carry one-time links.
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id)
        }))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
}

/// Serves until `shutdown` resolves, then drains open connections for up to 10 seconds.
pub async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let drain = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        drain.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(tls) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
                .acceptor(plain_hint::PlainHttpHint);
            axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .handle(handle)
                .serve(service)
                .await
        }
        None => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(service)
                .await
        }
    }
}
