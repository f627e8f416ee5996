//! The reaper: time-driven transitions (lapse stale requests, activate scheduled grants, expire
//! active ones) for every tenant, every few seconds. Idempotent; catches up after a restart
//! because it works from stored deadlines; several replicas can run it at once (row locks with
//! SKIP LOCKED on Postgres). Failures are logged and retried on the next pass.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use crate::clock::SharedClock;
use crate::error::AppResult;
use crate::notify::Mailer;
use crate::notify::outbox::deliver_due;
use crate::store::Store;
use crate::workflow::service::tick_tenant;

/// What `/readyz` reports about the reaper.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub last_pass: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
}

pub type SharedStatus = Arc<Mutex<Status>>;

/// Passes older than this make the reaper "stale" on `/readyz`.
pub const STALE_AFTER: time::Duration = time::Duration::seconds(60);

fn record(status: &SharedStatus, now: OffsetDateTime, error: Option<String>) {
    if let Ok(mut s) = status.lock() {
        match error {
            None => {
                s.last_pass = Some(now);
                s.last_error = None;
                s.consecutive_failures = 0;
            }
            Some(e) => {
                s.last_error = Some(e);
                s.consecutive_failures += 1;
            }
        }
    }
}

/// One pass over every tenant; returns how many requests moved.
pub async fn run_once(store: &Store, clock: &SharedClock, links: &str) -> AppResult<usize> {
    let mut moved = 0;
    for tenant in store.tenants().await? {
        match tick_tenant(store, links, &tenant, clock.now()).await {
            Ok(n) => moved += n,
            Err(e) => {
                tracing::warn!(tenant = %tenant.slug, error = %e, "reaper pass failed; retrying on the next pass")
            }
        }
    }
    Ok(moved)
}

/// Runs passes forever (transitions, then due notifications), backing off (up to a minute)
/// while the store fails.
pub fn spawn(
    store: Store,
    clock: SharedClock,
    mailer: Mailer,
    master: Arc<crate::crypto::MasterKey>,
    status: SharedStatus,
    links: String,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = every;
        loop {
            tokio::time::sleep(delay).await;
            if let Err(e) = deliver_due(&store, &mailer, &master, clock.now()).await {
                tracing::warn!(error = %e, "notification delivery pass failed");
            }
            delay = match run_once(&store, &clock, &links).await {
                Ok(moved) => {
                    if moved > 0 {
                        tracing::info!(moved, "reaper moved requests");
                    }
                    record(&status, clock.now(), None);
                    every
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reaper cannot reach the store");
                    record(&status, clock.now(), Some(e.to_string()));
                    (delay * 2).min(Duration::from_secs(60))
                }
            };
        }
    })
}
