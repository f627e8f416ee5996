//! The reaper's half of database logins: drop every login whose grant ended, retrying failed
//! cleanups with backoff forever, and at start-up drop roles with this tenant's prefix that no
//! record accounts for.

use std::collections::{BTreeMap, HashSet};

use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::{TargetSpec, names};
use crate::audit::{Actor, NewEvent};
use crate::crypto::MasterKey;
use crate::error::AppResult;
use crate::model::{Target, Tenant};
use crate::store::{DbLoginRecord, Store};

/// Cleanups handled per tenant per pass; the rest wait for the next pass.
const BATCH: i64 = 200;
/// The longest wait between two attempts at a failing cleanup.
pub const MAX_BACKOFF: Duration = Duration::seconds(60);

/// The wait after `attempts` failures: 1 s, 2 s, 4 s, ... up to [`MAX_BACKOFF`].
pub fn backoff(attempts: i64) -> Duration {
    let exp = attempts.clamp(0, 6) as u32;
    Duration::seconds(1i64 << exp).min(MAX_BACKOFF)
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub cleaned: usize,
    pub failed: usize,
}

fn spec_for(target: Option<&Target>, master: &MasterKey, name: &str) -> Result<TargetSpec, String> {
    let target = target.ok_or_else(|| {
        format!("target {name} is no longer configured (set it again to finish the cleanup)")
    })?;
    TargetSpec::open(target, master).map_err(|e| format!("{e:#}"))
}

/// Ends every login of `tenant` that is due at `now`.
pub async fn run_due(
    store: &Store,
    master: &MasterKey,
    tenant: &Tenant,
    now: OffsetDateTime,
) -> AppResult<Pass> {
    let (due, targets) = {
        let mut tx = store.tenant(tenant.tenant_id).await?;
        let due = tx.due_db_cleanups(now, BATCH).await?;
        let targets = if due.is_empty() {
            vec![]
        } else {
            tx.targets().await?
        };
        tx.commit().await?;
        (due, targets)
    };
    let mut by_target: BTreeMap<String, Vec<DbLoginRecord>> = BTreeMap::new();
    for login in due {
        by_target
            .entry(login.target_name.clone())
            .or_default()
            .push(login);
    }
    let mut pass = Pass::default();
    for (name, logins) in by_target {
        let spec = spec_for(targets.iter().find(|t| t.name == name), master, &name);
        // Once the target cannot be reached, the rest of its batch waits for the next attempt
        // instead of each waiting out its own connection timeout.
        let mut unreachable = spec.as_ref().err().cloned();
        for login in &logins {
            let result = match (&spec, &unreachable) {
                (Ok(spec), None) => end_one(spec, store, tenant, login, now).await,
                (_, Some(error)) | (Err(error), None) => Err(Failure::Unreachable(error.clone())),
            };
            match result {
                Ok(true) => pass.cleaned += 1,
                Ok(false) => {}
                Err(failure) => {
                    let error = match failure {
                        Failure::Unreachable(e) => {
                            unreachable = Some(e.clone());
                            e
                        }
                        Failure::Failed(e) => e,
                    };
                    failed(store, tenant, login, &error, now).await?;
                    pass.failed += 1;
                }
            }
        }
    }
    Ok(pass)
}

/// Why one login was not ended.
enum Failure {
    /// No admin connection holding its role lock: the target is down, full or busy.
    Unreachable(String),
    /// Anything after that.
    Failed(String),
}

/// Ends one login under the target's lock for it and records that, still under the lock.
/// False when another replica finished it first. It takes a kept admin connection when there
/// is one, as issuing does: a target whose connection slots are all taken (by the sessions of
/// the very logins that are due) can still be cleaned up through one, and a connection goes back
/// only after everything on it succeeded and its lock is released.
async fn end_one(
    spec: &TargetSpec,
    store: &Store,
    tenant: &Tenant,
    login: &DbLoginRecord,
    now: OffsetDateTime,
) -> Result<bool, Failure> {
    let mut conn = spec
        .locked_for(tenant.tenant_id, &login.role_name)
        .await
        .map_err(|e| Failure::Unreachable(e.0))?;
    let result = async {
        let open = {
            let mut tx = store
                .tenant(tenant.tenant_id)
                .await
                .map_err(|e| e.to_string())?;
            let current = tx.db_login(login.id).await.map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            current.is_some_and(|c| c.cleaned_up_at.is_none())
        };
        if !open {
            return Ok(false);
        }
        let ended = conn
            .end_login(&login.role_name, login.owner_role.as_deref())
            .await
            .map_err(|e| e.0)?;
        record_cleaned(store, tenant, login, ended, now)
            .await
            .map_err(|e| format!("recording the cleanup: {e}"))
    }
    .await;
    spec.give_back(tenant.tenant_id, conn, &login.role_name, result.is_ok())
        .await;
    result.map_err(Failure::Failed)
}

async fn record_cleaned(
    store: &Store,
    tenant: &Tenant,
    login: &DbLoginRecord,
    ended: super::Ended,
    now: OffsetDateTime,
) -> AppResult<bool> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let marked = tx.mark_db_login_cleaned(login.id, now).await?;
    if marked {
        tx.append_audit(
            &NewEvent::new(Actor::System, "db.login_dropped", login.target_name.clone())
                .request(login.request_id)
                .details(json!({
                    "target": login.target_name,
                    "role": login.role_name,
                    "existed": ended.existed,
                    "sessions_terminated": ended.sessions_terminated,
                    "owner": login.owner_role,
                    "attempts": login.cleanup_attempts + 1,
                })),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(marked)
}

/// Records a failed attempt, audited like every change (at most one event per login per
/// [`MAX_BACKOFF`] during an outage); failing cleanups also show on `/readyz`, `/metrics` and the
/// admin status page.
async fn failed(
    store: &Store,
    tenant: &Tenant,
    login: &DbLoginRecord,
    error: &str,
    now: OffsetDateTime,
) -> AppResult<()> {
    tracing::warn!(tenant = %tenant.slug, target = %login.target_name, role = %login.role_name,
        attempts = login.cleanup_attempts + 1, %error, "database login cleanup failed; will retry");
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let retry_at = now + backoff(login.cleanup_attempts + 1);
    tx.mark_db_cleanup_failed(login.id, error, retry_at).await?;
    tx.append_audit(
        &NewEvent::new(
            Actor::System,
            "db.cleanup_failed",
            login.target_name.clone(),
        )
        .request(login.request_id)
        .details(json!({
            "target": login.target_name,
            "role": login.role_name,
            "error": error,
            "attempt": login.cleanup_attempts + 1,
            "retry_at": retry_at.unix_timestamp(),
        })),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Drops roles carrying this tenant's prefix that no open record accounts for, on every target.
/// Returns how many were dropped, and the targets that could not be swept (name, error).
pub async fn sweep(
    store: &Store,
    master: &MasterKey,
    tenant: &Tenant,
    now: OffsetDateTime,
) -> AppResult<(usize, Vec<(String, String)>)> {
    let targets = {
        let mut tx = store.tenant(tenant.tenant_id).await?;
        let t = tx.targets().await?;
        tx.commit().await?;
        t
    };
    let prefix = names::tenant_prefix(tenant.tenant_id);
    let mut dropped = 0;
    let mut failures = Vec::new();
    for target in &targets {
        match sweep_target(store, master, tenant, target, &prefix, now).await {
            Ok(n) => dropped += n,
            Err(e) => {
                tracing::warn!(tenant = %tenant.slug, target = %target.name, error = %e, "sweep failed");
                failures.push((target.name.clone(), e));
            }
        }
    }
    Ok((dropped, failures))
}

async fn sweep_target(
    store: &Store,
    master: &MasterKey,
    tenant: &Tenant,
    target: &Target,
    prefix: &str,
    now: OffsetDateTime,
) -> Result<usize, String> {
    let spec = spec_for(Some(target), master, &target.name)?;
    let mut conn = spec.connect().await.map_err(|e| e.0)?;
    let result = async {
        // Listed before the records are read: a role is created only after its record is
        // committed, so any role seen here that has a record is found in the read below.
        let present = conn.logins_with_prefix(prefix).await.map_err(|e| e.0)?;
        if present.is_empty() {
            return Ok(0);
        }
        let known: HashSet<String> = {
            let mut tx = store
                .tenant(tenant.tenant_id)
                .await
                .map_err(|e| e.to_string())?;
            let names = tx
                .open_db_role_names(&target.name)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            names.into_iter().collect()
        };
        let mut dropped = 0;
        for role in present.iter().filter(|r| !known.contains(*r)) {
            conn.lock(role).await.map_err(|e| e.0)?;
            let ended = conn.end_login(role, None).await.map_err(|e| e.0);
            let _ = conn.release(role).await;
            let ended = ended?;
            let mut tx = store
                .tenant(tenant.tenant_id)
                .await
                .map_err(|e| e.to_string())?;
            tx.append_audit(
                &NewEvent::new(Actor::System, "db.orphan_dropped", target.name.clone()).details(
                    json!({
                        "target": target.name,
                        "role": role,
                        "sessions_terminated": ended.sessions_terminated,
                    }),
                ),
                now,
            )
            .await
            .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            dropped += 1;
        }
        Ok(dropped)
    }
    .await;
    conn.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(0), Duration::seconds(1));
        assert_eq!(backoff(1), Duration::seconds(2));
        assert_eq!(backoff(3), Duration::seconds(8));
        assert_eq!(backoff(6), Duration::seconds(60));
        assert_eq!(backoff(1000), MAX_BACKOFF);
    }
}
