//! Whether each tenant's audit log verifies, as this replica keeps track of it for `/audit`
//! (issue 16). A view checks only what was appended since this replica last verified the log.
//! The whole log is hashed again from its first event at most [`AUDIT_FULL_EVERY`] apart (an
//! edit behind the resumed point keeps the stored hash there, so only a whole pass finds it).
//! Up to `audit.verify_inline_events` events that whole pass (or the catch-up with what was
//! appended) runs while the page answers; more (a million events take seconds) is verified by a
//! background task instead, at start, hourly and whenever a view finds the log unknown, due or
//! far behind, and the page says that the verification is running until it is done.
//!
//! A break found by a whole pass is never overwritten by a later view's resumed check (which
//! cannot see it): a view records its result only while the entry it resumed from is current.

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use super::AppState;
use crate::audit::verify::{Pin, Progress, Summary};
use crate::error::AppResult;

/// How often the whole log is verified again instead of going on from where it was.
pub const AUDIT_FULL_EVERY: time::Duration = time::Duration::HOUR;

/// How soon a log found broken by a background pass is verified again.
const BROKEN_RECHECK: time::Duration = time::Duration::MINUTE;

/// What this replica knows of one tenant's log.
#[derive(Clone)]
pub enum Known {
    /// Verified up to `progress`; the whole log last hashed at `full_at`.
    Verified {
        progress: Progress,
        full_at: OffsetDateTime,
    },
    /// Broken, as found at `at`.
    Broken { message: String, at: OffsetDateTime },
}

/// Per tenant: what is known, and since when a background pass has been running.
#[derive(Default)]
pub struct Checks {
    known: HashMap<Uuid, Known>,
    running: HashMap<Uuid, OffsetDateTime>,
}

/// What the page shows.
pub enum Shown {
    Verified(Summary),
    Broken(String),
    /// A background pass over `events` events (the whole log, or what is new) began at `since`.
    Running {
        events: i64,
        since: OffsetDateTime,
    },
}

/// The tenant's log as `/audit` shows it now.
pub async fn for_page(state: &AppState, tenant_id: Uuid) -> AppResult<Shown> {
    let now = state.clock.now();
    let inline = state.config.audit.verify_inline_events;
    let known = state
        .audit_checks
        .lock()
        .ok()
        .and_then(|c| c.known.get(&tenant_id).cloned());
    let events = head(state, tenant_id).await?;
    match known {
        Some(Known::Verified { progress, full_at }) => {
            let due = now - full_at >= AUDIT_FULL_EVERY;
            if due && events <= inline {
                return full(state, tenant_id).await;
            }
            if due {
                // In the background; meanwhile views go on from where they were.
                start(state, tenant_id, Pass::Whole);
            }
            let new = events - progress.seq();
            if new <= inline {
                return resumed(state, tenant_id, progress, full_at).await;
            }
            let since = start(state, tenant_id, Pass::CatchUp);
            Ok(Shown::Running { events: new, since })
        }
        _ if events <= inline => full(state, tenant_id).await,
        Some(Known::Broken { message, at }) => {
            if now - at >= BROKEN_RECHECK {
                start(state, tenant_id, Pass::Whole);
            }
            Ok(Shown::Broken(message))
        }
        None => {
            let since = start(state, tenant_id, Pass::Whole);
            Ok(Shown::Running { events, since })
        }
    }
}

/// What a background pass verifies.
#[derive(Clone, Copy)]
enum Pass {
    /// The whole log from its first event.
    Whole,
    /// What was appended since the last verified point (the whole log if there is none).
    CatchUp,
}

async fn head(state: &AppState, tenant_id: Uuid) -> AppResult<i64> {
    let mut tx = state.store.read(tenant_id).await?;
    let head = tx.audit_head().await?.map_or(0, |h| h.0);
    tx.commit().await?;
    Ok(head)
}

/// The chain must also pass through what this replica saw (its anchor): a log cut short or
/// rewritten behind the signer's back shows as broken.
fn pins(state: &AppState, tenant_id: Uuid) -> Vec<Pin> {
    let anchor = state
        .master_key
        .anchor_dir()
        .map(|d| crate::audit::anchor::load(d, tenant_id));
    match anchor {
        Some(Ok(Some(a))) => vec![Pin {
            seq: a.seq,
            hash: a.hash,
            what: "this replica's anchor".into(),
        }],
        Some(Err(e)) => {
            tracing::error!(error = %e, "audit anchor unreadable");
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// Goes on from `progress`; records the result only if no whole pass has replaced the entry
/// meanwhile.
async fn resumed(
    state: &AppState,
    tenant_id: Uuid,
    progress: Progress,
    full_at: OffsetDateTime,
) -> AppResult<Shown> {
    let (result, next) = crate::audit::verify::verify_store_from(
        &state.store,
        tenant_id,
        None,
        pins(state, tenant_id),
        Some(progress),
    )
    .await?;
    let now = state.clock.now();
    if let Ok(mut c) = state.audit_checks.lock() {
        let current = matches!(
            c.known.get(&tenant_id),
            Some(Known::Verified { full_at: f, .. }) if *f == full_at
        );
        if current {
            c.known
                .insert(tenant_id, known_of(&result, next, full_at, now));
        }
    }
    Ok(shown(result))
}

/// Hashes the whole log from its first event and records the result.
async fn full(state: &AppState, tenant_id: Uuid) -> AppResult<Shown> {
    let full_at = state.clock.now();
    let (result, next) = crate::audit::verify::verify_store_from(
        &state.store,
        tenant_id,
        None,
        pins(state, tenant_id),
        None,
    )
    .await?;
    if let Ok(mut c) = state.audit_checks.lock() {
        c.known.insert(
            tenant_id,
            known_of(&result, next, full_at, state.clock.now()),
        );
    }
    Ok(shown(result))
}

fn known_of(
    result: &Result<Summary, crate::audit::verify::Broken>,
    next: Option<Progress>,
    full_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Known {
    match (result, next) {
        (Ok(_), Some(progress)) => Known::Verified { progress, full_at },
        (Err(b), _) => Known::Broken {
            message: b.to_string(),
            at: now,
        },
        (Ok(_), None) => Known::Broken {
            message: "verification returned no progress".into(),
            at: now,
        },
    }
}

fn shown(result: Result<Summary, crate::audit::verify::Broken>) -> Shown {
    match result {
        Ok(s) => Shown::Verified(s),
        Err(b) => Shown::Broken(b.to_string()),
    }
}

/// Marks a whole pass over the tenant's log as running; when the one already running began.
fn claim(state: &AppState, tenant_id: Uuid) -> Result<(), OffsetDateTime> {
    let now = state.clock.now();
    let Ok(mut c) = state.audit_checks.lock() else {
        return Err(now);
    };
    if let Some(since) = c.running.get(&tenant_id) {
        return Err(*since);
    }
    c.running.insert(tenant_id, now);
    Ok(())
}

/// A claimed pass, released when done whatever its outcome.
async fn claimed(state: &AppState, tenant_id: Uuid, pass: Pass) {
    let known = state
        .audit_checks
        .lock()
        .ok()
        .and_then(|c| c.known.get(&tenant_id).cloned());
    let done = match (pass, known) {
        (Pass::CatchUp, Some(Known::Verified { progress, full_at })) => {
            resumed(state, tenant_id, progress, full_at).await
        }
        _ => full(state, tenant_id).await,
    };
    if let Err(e) = done {
        tracing::warn!(tenant_id = %tenant_id, error = %e, "audit verification failed to run");
    }
    if let Ok(mut c) = state.audit_checks.lock() {
        c.running.remove(&tenant_id);
    }
}

/// Starts a background pass over the tenant's log unless one is running; when the running one
/// began.
fn start(state: &AppState, tenant_id: Uuid, pass: Pass) -> OffsetDateTime {
    if let Err(since) = claim(state, tenant_id) {
        return since;
    }
    let state = state.clone();
    let since = state.clock.now();
    tokio::spawn(async move { claimed(&state, tenant_id, pass).await });
    since
}

/// `serve`'s task: verifies every tenant's whole log shortly after start, then each one again once its
/// last whole pass is [`AUDIT_FULL_EVERY`] old (and a broken one every minute), one tenant at
/// a time, so the first auditor after a restart does not wait for it.
pub fn spawn_sweeper(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Not during start-up: hashing a long log would compete with it for the cores.
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        loop {
            if let Err(e) = sweep(&state).await {
                tracing::warn!(error = %e, "audit verification sweep failed");
            }
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        }
    })
}

async fn sweep(state: &AppState) -> AppResult<()> {
    for tenant in state.store.tenants().await? {
        let now = state.clock.now();
        let due = match state
            .audit_checks
            .lock()
            .ok()
            .and_then(|c| c.known.get(&tenant.tenant_id).cloned())
        {
            None => true,
            Some(Known::Verified { full_at, .. }) => now - full_at >= AUDIT_FULL_EVERY,
            Some(Known::Broken { at, .. }) => now - at >= BROKEN_RECHECK,
        };
        if due && claim(state, tenant.tenant_id).is_ok() {
            claimed(state, tenant.tenant_id, Pass::Whole).await;
        }
    }
    Ok(())
}
