//! The reaper: time-driven transitions (lapse stale requests, activate scheduled grants, expire
//! active ones) for every tenant, every few seconds. Idempotent; catches up after a restart
//! because it works from stored deadlines; several replicas can run it at once (row locks with
//! SKIP LOCKED on Postgres). Failures are logged and retried on the next pass.

use std::time::Duration;

use crate::clock::SharedClock;
use crate::error::AppResult;
use crate::notify::Mailer;
use crate::notify::outbox::deliver_due;
use crate::store::Store;
use crate::workflow::service::tick_tenant;

/// One pass over every tenant; returns how many requests moved.
pub async fn run_once(store: &Store, clock: &SharedClock) -> AppResult<usize> {
    let mut moved = 0;
    for tenant in store.tenants().await? {
        match tick_tenant(store, &tenant, clock.now()).await {
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
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = every;
        loop {
            tokio::time::sleep(delay).await;
            if let Err(e) = deliver_due(&store, &mailer, clock.now()).await {
                tracing::warn!(error = %e, "notification delivery pass failed");
            }
            delay = match run_once(&store, &clock).await {
                Ok(moved) => {
                    if moved > 0 {
                        tracing::info!(moved, "reaper moved requests");
                    }
                    every
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reaper cannot reach the store");
                    (delay * 2).min(Duration::from_secs(60))
                }
            };
        }
    })
}
