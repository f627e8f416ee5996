//! `elevate serve`: configuration, store, master key, TLS, then the HTTP server until SIGINT or
//! SIGTERM. Each start-up failure ends with one message and a non-zero exit.

use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;

use super::master_key;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, LogFormat, Overrides};
use crate::store::{Backend, Store};
use crate::web::{self, AppState};

pub async fn run(overrides: &Overrides, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    let config = Config::load(overrides, log_format)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let database = config.database_url.expose();

    let store = match (
        Store::connect(database).await?,
        &config.migrate_database_url,
    ) {
        (store, Some(owner_url)) if store.backend() == Backend::Postgres => {
            let owner = Store::connect(owner_url.expose()).await?;
            owner
                .migrate()
                .await
                .context("applying migrations with the owner role")?;
            owner.close().await;
            store.check_migrations().await?;
            store
        }
        (store, _) => super::prepared(store).await?,
    };
    store.check_role_safety().await?;

    let data_dir = config.data_dir();
    let mut master = master_key(config.master_key_file.as_deref(), &data_dir, &store).await?;
    if let Some(dir) = &config.audit.anchor_dir {
        master = master.with_anchor_dir(dir.clone());
    }
    let checked = crate::signing_keys::verify_master_key(&store, &master).await?;
    tracing::info!(master_key_id = %master.active_key_id(), sealed_keys_checked = checked, "master key loaded");
    if config
        .smtp_url
        .as_ref()
        .is_some_and(|s| s.expose_secret().is_empty())
    {
        anyhow::bail!("ELEVATE_SMTP_URL is set but empty");
    }

    let tls = if config.insecure_http {
        tracing::warn!(
            "serving plain HTTP (ELEVATE_INSECURE_HTTP): only behind a TLS-terminating proxy"
        );
        if config.trusted_proxies.is_empty() {
            tracing::warn!(
                "no ELEVATE_TRUSTED_PROXIES: behind a proxy, sign-in rate limits and audit records see the proxy's address, not the client's"
            );
        }
        None
    } else {
        let (cert, key) = match (&config.tls_cert, &config.tls_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => {
                let (c, k, generated) = web::tls::ensure_dev_certificate(&data_dir, clock.now())?;
                if generated {
                    tracing::warn!(cert = %c.display(), "generated a development TLS certificate for localhost; production should set ELEVATE_TLS_CERT and ELEVATE_TLS_KEY");
                }
                (c, k)
            }
        };
        let server_config = web::tls::server_config(&cert, &key)?;
        tracing::info!(cert = %cert.display(), sha256 = %web::tls::fingerprint(&cert)?, "TLS 1.3");
        Some(axum_server::tls_rustls::RustlsConfig::from_config(
            server_config,
        ))
    };

    let seeded = if config.demo {
        Some(
            crate::demo::seed(&store, &master, clock.as_ref())
                .await
                .map_err(|e| anyhow::anyhow!("seeding the demo tenant: {e:#}"))?,
        )
    } else {
        None
    };

    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = config.public_url.trim_end_matches('/').to_owned();
    let state_clock = clock.clone();
    let state = AppState::new(store.clone(), clock, Arc::new(master), config)?;
    if !state.mailer.is_available() {
        tracing::warn!(
            "no ELEVATE_SMTP_URL: sign-in by email link is unavailable (API tokens still work)"
        );
    }
    let mailer = state.mailer.clone();
    let reaper_status = state.reaper.clone();
    let reaper_telemetry = state.telemetry.clone();
    let reaper_key = state.master_key.clone();
    let audit_tasks = spawn_audit_tasks(&state);
    let audit_status = state.audit.clone();
    let audit_schedule = crate::audit::checkpoint::Schedule::of(&state.config.audit);
    let audit_key = state.master_key.clone();
    let audit_clock = state.clock.clone();
    let reaper_wake = state.reaper_wake.clone();
    let postman_wake = state.broker.postman_wake.clone();
    let app = web::router(state);
    let shutdown = shutdown_signal();

    println!("elevate listening on {scheme}://{bound} (public URL {public_url})");
    tracing::info!(address = %bound, %scheme, %public_url, "listening");
    if let Some(seeded) = seeded {
        print_demo(&seeded, &public_url);
    }

    let reaper_stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reaper_wake_at_stop = reaper_wake.clone();
    let mut reaper = crate::reaper::spawn(crate::reaper::Reaper {
        store: store.clone(),
        telemetry: reaper_telemetry,
        clock: state_clock,
        mailer,
        master: reaper_key,
        status: reaper_status,
        wake: reaper_wake,
        post: postman_wake,
        links: public_url.clone(),
        every: crate::reaper::EVERY,
        stopping: reaper_stopping.clone(),
    });
    web::serve(listener, app, tls, shutdown)
        .await
        .context("HTTP server")?;
    // In-flight requests are done; the reaper ends its pass and gives back what it claimed (a
    // stuck target or mail server does not keep the process: 10 s, then it is cut off).
    reaper_stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    reaper_wake_at_stop.notify_one();
    if tokio::time::timeout(std::time::Duration::from_secs(10), &mut reaper)
        .await
        .is_err()
    {
        tracing::warn!("reaper still busy at shutdown; stopped");
        reaper.abort();
    }
    for task in audit_tasks {
        task.abort();
    }
    // Sign every head before leaving, so the unsigned window stays short (bounded: a store that
    // does not answer does not keep the process alive).
    match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        crate::audit::checkpoint::sign_heads(
            &store,
            &audit_key,
            audit_schedule,
            audit_clock.now(),
            &audit_status,
        ),
    )
    .await
    {
        Ok(Ok(n)) => tracing::info!(checkpoints = n, "audit heads signed at shutdown"),
        Ok(Err(e)) => tracing::error!(error = %e, "audit heads not signed at shutdown"),
        Err(_) => tracing::error!("audit heads not signed at shutdown: timed out"),
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn print_demo(seeded: &crate::demo::Seeded, public_url: &str) {
    println!();
    println!(
        "Demo tenant \"{}\" is ready. API tokens (new at every start; the previous ones are revoked):",
        seeded.tenant.slug
    );
    for (user, issued) in &seeded.users {
        let roles: Vec<&str> = user.roles.0.iter().map(|r| r.as_str()).collect();
        println!(
            "  {:<20} {:<18} {}",
            user.email,
            roles.join(","),
            issued.secret.expose()
        );
    }
    if let Some((alice, token)) = seeded.users.first() {
        println!();
        println!("Try it:");
        println!(
            "  curl -k -H 'Authorization: Bearer {}' {public_url}/api/v1/me",
            token.secret.expose()
        );
        println!("  sign in: open {public_url}/login (development certificate: accept it once),");
        println!(
            "           ask for a link for {} and follow it from {public_url}/dev/outbox",
            alice.email
        );
    }
    println!();
}

/// Registers the shutdown signals now (before "listening" is printed, so a supervisor's SIGTERM
/// right after start-up is a graceful stop, not the default kill) and resolves on the first.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
        tracing::info!("shutting down: draining open connections");
    }
}

/// Starts the checkpointer and the sink delivery, each in its own task (neither can hold up the
/// broker or the other).
fn spawn_audit_tasks(state: &web::AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let host = state
        .config
        .public_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or("-")
        .to_owned();
    vec![
        crate::audit::checkpoint::spawn(
            state.store.clone(),
            state.clock.clone(),
            state.master_key.clone(),
            crate::audit::checkpoint::Schedule::of(&state.config.audit),
            state.audit.clone(),
        ),
        crate::audit::sinks::spawn(
            state.store.clone(),
            state.clock.clone(),
            state.master_key.clone(),
            host,
        ),
        web::audit_check::spawn_sweeper(state.clone()),
    ]
}
