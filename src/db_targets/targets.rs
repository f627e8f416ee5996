//! Registering targets and checking that elevate can reach them.

use serde_json::json;

use super::{TargetCheck, TargetError, TargetSpec, parse_url};
use crate::audit::Ctx;
use crate::crypto::MasterKey;
use crate::error::{AppError, AppResult};
use crate::model::{Target, TargetKind, Tenant};
use crate::store::Store;

/// A target as an admin describes it.
pub struct NewTarget<'a> {
    pub name: &'a str,
    pub kind: TargetKind,
    pub url: &'a str,
    /// The admin login's password (sealed; never logged).
    pub password: &'a str,
}

/// Creates or replaces a target; the admin password is sealed, bound to the target's row.
pub async fn set_target(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    tenant: &Tenant,
    new: NewTarget<'_>,
) -> AppResult<Target> {
    let NewTarget {
        name,
        kind,
        url,
        password,
    } = new;
    if !crate::policy::name_ok(name, 64) {
        return Err(AppError::Unprocessable(format!(
            "invalid target name {name:?} (letters, digits, '-', '_', '.'; at most 64)"
        )));
    }
    let url = parse_url(kind, url).map_err(AppError::Unprocessable)?;
    if password.is_empty() {
        return Err(AppError::Unprocessable(
            "the admin password (on stdin) is empty".into(),
        ));
    }
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let existed = tx.target_by_name(name).await?.is_some();
    let target = tx
        .upsert_target(
            name,
            kind,
            url.as_str(),
            |id| {
                master.seal(
                    &Target::seal_context(tenant.tenant_id, id),
                    password.as_bytes(),
                )
            },
            ctx.now,
        )
        .await??;
    tx.append_audit(
        &ctx.event("target.set", name).details(json!({
            "kind": kind.as_str(),
            "url": url.as_str(),
            "replaced": existed,
        })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(target)
}

/// Connects with the admin login and reports the server version and whether it may create
/// roles.
pub async fn check(target: &Target, master: &MasterKey) -> Result<TargetCheck, TargetError> {
    let spec = TargetSpec::open(target, master).map_err(|e| TargetError(format!("{e:#}")))?;
    check_spec(&spec).await
}

async fn check_spec(spec: &TargetSpec) -> Result<TargetCheck, TargetError> {
    let mut conn = spec.connect().await?;
    let checked = conn.check().await;
    conn.close().await;
    checked
}

/// Every target of every tenant that cannot be reached (tenant slug, target name, error).
pub async fn unreachable(
    store: &Store,
    master: &MasterKey,
) -> AppResult<Vec<(String, String, String)>> {
    // All at once: one slow target must not make the probe wait for the others in turn.
    let mut checks = tokio::task::JoinSet::new();
    for tenant in store.tenants().await? {
        let mut tx = store.tenant(tenant.tenant_id).await?;
        let targets = tx.targets().await?;
        tx.commit().await?;
        for t in targets {
            let slug = tenant.slug.clone();
            match TargetSpec::open(&t, master) {
                Ok(spec) => {
                    checks.spawn(async move {
                        check_spec(&spec)
                            .await
                            .err()
                            .map(|e| (slug, spec.name, e.0))
                    });
                }
                Err(e) => {
                    checks.spawn(async move { Some((slug, t.name, format!("{e:#}"))) });
                }
            }
        }
    }
    let mut out: Vec<(String, String, String)> =
        checks.join_all().await.into_iter().flatten().collect();
    out.sort();
    Ok(out)
}
