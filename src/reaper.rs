//! The reaper: time-driven transitions (lapse stale requests, activate scheduled grants, expire
//! active ones) and the cleanup of database logins whose grant ended, for every tenant, every few
//! seconds and at once when woken (a revocation); due notifications go out from a task of its
//! own. Idempotent; catches up after a restart because it works from stored deadlines (its first
//! pass runs at start, after a sweep for roles no record accounts for); several replicas can run
//! it at once (row locks with SKIP LOCKED on Postgres, per-role locks on the targets). Failures
//! are logged and retried.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use tokio::sync::Notify;

use crate::broker::service::tick_tenant;
use crate::clock::SharedClock;
use crate::crypto::MasterKey;
use crate::db_targets::cleanup;
use crate::error::AppResult;
use crate::notify::Mailer;
use crate::notify::outbox::deliver_due_until;
use crate::store::Store;
use crate::telemetry::Telemetry;

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
    run_once_observed(store, clock, links, &Telemetry::default()).await
}

/// [`run_once`], recording how late each expiry came in `telemetry` (`/metrics`).
pub async fn run_once_observed(
    store: &Store,
    clock: &SharedClock,
    links: &str,
    telemetry: &Telemetry,
) -> AppResult<usize> {
    let mut moved = 0;
    for tenant in store.tenants().await? {
        match tick_tenant(store, links, &tenant, clock.now()).await {
            Ok(t) => {
                moved += t.moved;
                for late in t.expired_late_by {
                    telemetry.expiry_lateness(late.as_seconds_f64());
                }
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant.slug, error = %e, "reaper pass failed; retrying on the next pass")
            }
        }
        // SSH sessions whose helper went silent end here; old recordings are deleted.
        let ctx = crate::audit::Ctx {
            actor: crate::audit::Actor::System,
            origin: Default::default(),
            now: clock.now(),
        };
        if let Err(e) = crate::broker::sessions::sweep(store, &ctx, &tenant).await {
            tracing::warn!(tenant = %tenant.slug, error = %e, "session sweep failed; retrying on the next pass")
        }
    }
    Ok(moved)
}

/// How often the reaper folds request-state deltas into the totals `/metrics` reads.
const FOLD_EVERY: Duration = Duration::from_secs(30);

/// Folds every tenant's request-state deltas into its totals (migration 0018), so `/metrics`
/// adds a few rows instead of counting every request. The reaper runs it every [`FOLD_EVERY`].
pub async fn fold_request_counts(store: &Store) -> AppResult<()> {
    for tenant in store.tenants().await? {
        let mut tx = store.tenant(tenant.tenant_id).await?;
        tx.fold_request_state_deltas().await?;
        tx.commit().await?;
    }
    Ok(())
}

/// The earliest deadline of any tenant (see `TenantTx::next_deadline`).
pub async fn next_deadline(store: &Store) -> AppResult<Option<OffsetDateTime>> {
    let mut next: Option<OffsetDateTime> = None;
    for tenant in store.tenants().await? {
        let mut tx = store.read(tenant.tenant_id).await?;
        let d = tx.next_deadline().await?;
        tx.commit().await?;
        next = match (next, d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

/// How long to sleep after a pass: until the next deadline (a little after, since stored times
/// are whole seconds), at least [`MIN_SLEEP`] so a stream of deadlines cannot spin the loop, at
/// most `every` (database cleanups and notifications have their own retry times).
pub fn sleep_until(next: Option<OffsetDateTime>, now: OffsetDateTime, every: Duration) -> Duration {
    let Some(next) = next else { return every };
    let wait = (next - now + time::Duration::milliseconds(50)).max(time::Duration::ZERO);
    Duration::try_from(wait)
        .unwrap_or(Duration::ZERO)
        .clamp(MIN_SLEEP, every)
}

/// The shortest sleep between two passes.
pub const MIN_SLEEP: Duration = Duration::from_millis(200);

/// The longest sleep between two passes of the server's reaper (see `broker::wake`).
pub use crate::broker::wake::EVERY;

/// Drops the database logins that are due, over every tenant.
pub async fn clean_db_logins(
    store: &Store,
    master: &MasterKey,
    now: OffsetDateTime,
) -> AppResult<cleanup::Pass> {
    let mut total = cleanup::Pass::default();
    for tenant in store.tenants().await? {
        match cleanup::run_due(store, master, &tenant, now).await {
            Ok(p) => {
                total.cleaned += p.cleaned;
                total.failed += p.failed;
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant.slug, error = %e, "database login cleanup pass failed; retrying on the next pass")
            }
        }
    }
    Ok(total)
}

/// Drops roles with elevate's prefix that no record accounts for, on every tenant's targets.
/// True when every target was swept.
pub async fn sweep_db_roles(
    store: &Store,
    master: &MasterKey,
    now: OffsetDateTime,
) -> AppResult<bool> {
    let mut complete = true;
    for tenant in store.tenants().await? {
        let (dropped, failures) = cleanup::sweep(store, master, &tenant, now).await?;
        if dropped > 0 {
            tracing::warn!(tenant = %tenant.slug, dropped, "dropped database roles no record accounts for");
        }
        complete &= failures.is_empty();
    }
    Ok(complete)
}

/// Everything the reaper task needs.
pub struct Reaper {
    pub store: Store,
    pub clock: SharedClock,
    pub mailer: Mailer,
    pub master: Arc<MasterKey>,
    pub status: SharedStatus,
    pub wake: Arc<Notify>,
    /// Wakes the notification postman alone (a transition that needs no pass still notifies).
    pub post: Arc<Notify>,
    pub links: String,
    pub every: Duration,
    /// Expiry lateness and pass durations, for `/metrics`.
    pub telemetry: Arc<Telemetry>,
    /// Set (and `wake` notified) at shutdown: the reaper finishes what it is doing, gives back the
    /// notifications it claimed and did not send, and ends.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// Delivers due notifications until stopped: after every reaper pass (transitions write them)
/// and every `every` for retries. A task of its own, so that slow or failing delivery (a mail
/// server that does not answer) never delays an expiry.
fn spawn_postman(r: &Reaper) -> tokio::task::JoinHandle<()> {
    let post = r.post.clone();
    let (store, mailer, master, clock) = (
        r.store.clone(),
        r.mailer.clone(),
        r.master.clone(),
        r.clock.clone(),
    );
    let (stopping, every) = (r.stopping.clone(), r.every);
    tokio::spawn(async move {
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
            match deliver_due_until(&store, &mailer, &master, clock.now(), &stopping).await {
                // A pass stops at its limit per tenant: while passes send, go on at once, so
                // delivery keeps up with a burst instead of waiting `every` between passes.
                Ok(sent) if sent > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "notification delivery pass failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {},
                () = post.notified() => {},
            }
        }
    })
}

/// Runs passes forever (sweep until it has covered every target, transitions, database login
/// cleanups), the first at once, then each at the next deadline (at most `every` apart),
/// backing off (up to a minute) while the store fails. Due notifications are delivered by a
/// task of its own, which the returned handle also waits for at shutdown.
pub fn spawn(r: Reaper) -> tokio::task::JoinHandle<()> {
    let post = r.post.clone();
    let postman = spawn_postman(&r);
    tokio::spawn(async move {
        let mut delay = Duration::ZERO;
        let mut swept = false;
        let mut folded: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {},
                () = r.wake.notified() => {},
            }
            if r.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            if !swept {
                swept = match sweep_db_roles(&r.store, &r.master, r.clock.now()).await {
                    Ok(done) => done,
                    Err(e) => {
                        tracing::warn!(error = %e, "start-up sweep of database roles failed; retrying");
                        false
                    }
                };
            }
            let started = std::time::Instant::now();
            let pass = async {
                let moved = run_once_observed(&r.store, &r.clock, &r.links, &r.telemetry).await?;
                let cleaned = clean_db_logins(&r.store, &r.master, r.clock.now()).await?;
                AppResult::Ok((moved, cleaned))
            };
            let outcome = pass.await;
            if folded.is_none_or(|at| at.elapsed() >= FOLD_EVERY) {
                match fold_request_counts(&r.store).await {
                    Ok(()) => folded = Some(std::time::Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "folding request counts failed; retrying"),
                }
            }
            let outcome_moved = outcome.as_ref().ok().map(|(moved, _)| *moved);
            r.telemetry.reaper_pass(started.elapsed().as_secs_f64());
            delay = match outcome {
                Ok((moved, cleaned)) => {
                    if moved > 0 {
                        tracing::info!(moved, "reaper moved requests");
                    }
                    if cleaned.cleaned > 0 || cleaned.failed > 0 {
                        tracing::info!(
                            dropped = cleaned.cleaned,
                            failed = cleaned.failed,
                            "database logins cleaned up"
                        );
                    }
                    record(&r.status, r.clock.now(), None);
                    match next_deadline(&r.store).await {
                        Ok(next) => sleep_until(next, r.clock.now(), r.every),
                        Err(_) => r.every,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reaper cannot reach the store");
                    record(&r.status, r.clock.now(), Some(e.to_string()));
                    (delay * 2).clamp(r.every, Duration::from_secs(60))
                }
            };
            post.notify_one();
            // More was due than one pass takes (500 per tenant): go on at once.
            if matches!(&outcome_moved, Some(n) if *n >= 500) {
                delay = Duration::ZERO;
            }
        }
        post.notify_one();
        if let Err(e) = postman.await {
            tracing::warn!(error = %e, "notification delivery task failed");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reaper_sleeps_until_the_next_deadline_within_bounds() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let every = Duration::from_secs(5);
        assert_eq!(sleep_until(None, now, every), every);
        assert_eq!(
            sleep_until(Some(now + time::Duration::seconds(1)), now, every),
            Duration::from_millis(1_050)
        );
        assert_eq!(
            sleep_until(Some(now - time::Duration::hours(1)), now, every),
            MIN_SLEEP
        );
        assert_eq!(
            sleep_until(Some(now + time::Duration::hours(1)), now, every),
            every
        );
    }
}
