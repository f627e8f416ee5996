//! Each tenant's audit chain verifies, its newest checkpoint is recent, and no database-login
//! cleanup is stuck.

use time::{Duration, OffsetDateTime};

use super::{Report, list};
use crate::config::Config;
use crate::store::Store;

/// Events left unsigned longer than this (or ten signing periods) mean the signer is not running
/// or refuses.
const UNSIGNED_TOO_LONG: Duration = Duration::minutes(10);

pub async fn check(report: &mut Report, store: &Store, config: &Config, now: OffsetDateTime) {
    let tenants = match store.tenants().await {
        Ok(t) => t,
        Err(e) => {
            report.error(
                "audit.chain",
                format!("cannot list tenants: {e}"),
                "check the database URL",
            );
            return;
        }
    };
    let limit =
        UNSIGNED_TOO_LONG.max(crate::audit::checkpoint::Schedule::of(&config.audit).every * 10);
    let (mut verified, mut events) = (0, 0);
    let mut stale = Vec::new();
    let mut stuck = Vec::new();
    for tenant in &tenants {
        let slug = &tenant.slug;
        match crate::audit::verify::verify_store(store, tenant.tenant_id, None).await {
            Ok(Ok(summary)) => {
                verified += 1;
                events += summary.events;
            }
            Ok(Err(broken)) => report.error(
                "audit.chain",
                format!("{slug}: the audit log does not verify: {broken}"),
                "find out who changed the database (the log says where it breaks); after a restore \
                 from backup run `elevate audit restored --tenant T`",
            ),
            Err(e) => report.error(
                "audit.chain",
                format!("{slug}: cannot read the audit log: {e}"),
                "check the database URL",
            ),
        }
        match unsigned_since(store, tenant.tenant_id).await {
            Ok(Some(since)) if now - since > limit => {
                stale.push(format!("{slug} (events since {} unsigned)", since.date()))
            }
            Ok(_) => {}
            Err(e) => stale.push(format!("{slug} (cannot read: {e})")),
        }
        match stuck_cleanups(store, tenant.tenant_id).await {
            Ok(s) => stuck.extend(s.into_iter().map(|s| format!("{slug}: {s}"))),
            Err(e) => stuck.push(format!("{slug}: cannot read: {e}")),
        }
    }
    if verified == tenants.len() {
        report.ok(
            "audit.chain",
            format!(
                "{verified} tenant audit log(s) verify ({events} events, checkpoints signed by the tenant's key)"
            ),
        );
    }
    if stale.is_empty() {
        report.ok(
            "audit.checkpoint",
            "every tenant's newest events are signed by a recent checkpoint",
        );
    } else {
        report.warn(
            "audit.checkpoint",
            format!(
                "no checkpoint signs events older than {} min: {}",
                limit.whole_minutes(),
                list(&stale)
            ),
            "check that `elevate serve` runs and its log has no \"not signing\" error \
             (`/readyz` checks.audit); a refusal means the chain no longer extends what was signed",
        );
    }
    if stuck.is_empty() {
        report.ok("db_cleanups.stuck", "no database-login cleanup is stuck");
    } else {
        report.error(
            "db_cleanups.stuck",
            format!(
                "database logins whose cleanup keeps failing (they may outlive their grant): {}",
                stuck.join("; ")
            ),
            "fix the target or its admin login (the error says which); elevate retries by itself \
             and the admin page Targets lists them",
        );
    }
}

/// When the oldest event no checkpoint covers was written (`None`: everything is signed).
async fn unsigned_since(
    store: &Store,
    tenant_id: uuid::Uuid,
) -> crate::error::AppResult<Option<OffsetDateTime>> {
    let mut tx = store.tenant(tenant_id).await?;
    let signed = tx.latest_checkpoint().await?.map_or(0, |c| c.seq);
    let first = tx.audit_events(signed, 1).await?;
    tx.commit().await?;
    Ok(first.first().map(|e| e.at))
}

async fn stuck_cleanups(
    store: &Store,
    tenant_id: uuid::Uuid,
) -> crate::error::AppResult<Vec<String>> {
    let mut tx = store.tenant(tenant_id).await?;
    let stuck = tx.stuck_db_logins().await?;
    tx.commit().await?;
    Ok(stuck
        .into_iter()
        .map(|l| {
            format!(
                "{} on {} ({} attempts: {})",
                l.role_name,
                l.target_name,
                l.cleanup_attempts,
                l.last_error.unwrap_or_default()
            )
        })
        .collect())
}
