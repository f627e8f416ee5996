//! Storing policy: each apply that changes something becomes a new, kept version, audited with
//! its diff in the same transaction.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::Ctx;
use crate::error::{AppError, AppResult};
use crate::model::{PolicyVersion, Tenant};
use crate::policy::{PolicyDiff, Profile, diff, parse};
use crate::store::Store;

/// The outcome of an apply.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The version now in force (unchanged when the file matched it).
    pub version: i64,
    pub created: bool,
    pub diff: PolicyDiff,
    /// What the admin should know about the policy in force: profiles that cannot work as
    /// written. Shown by `policy apply` and returned by the API; nothing is refused for them.
    pub warnings: Vec<String>,
}

/// Profiles that need a passkey step-up to approve cannot be approved yet: elevate has no
/// passkeys (issue 14), and the core refuses every approval without one.
pub fn warnings(profiles: &[Profile]) -> Vec<String> {
    profiles
        .iter()
        .filter(|p| p.step_up)
        .map(|p| {
            format!(
                "profile {} has step_up = true: approvals need a passkey step-up, which this \
                 elevate does not offer yet, so no request for it can be approved",
                p.name
            )
        })
        .collect()
}

/// The version in force and its profiles (`None` before the first apply).
pub async fn current(
    store: &Store,
    tenant: &Tenant,
) -> AppResult<Option<(PolicyVersion, Vec<Profile>)>> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let Some(version) = tx.latest_policy_version().await? else {
        tx.commit().await?;
        return Ok(None);
    };
    let profiles = tx.profiles_at(version.version).await?;
    tx.commit().await?;
    Ok(Some((version, profiles)))
}

/// Validates `source` and, if it differs from the version in force, stores it as the next
/// version. An invalid file changes nothing.
pub async fn apply(store: &Store, ctx: &Ctx, tenant: &Tenant, source: &str) -> AppResult<Applied> {
    let profiles = parse(source).map_err(|e| AppError::Unprocessable(e.to_string()))?;
    let digest: Vec<u8> =
        Sha256::digest(serde_json::to_vec(&profiles).map_err(AppError::internal)?).to_vec();
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let latest = tx.latest_policy_version().await?;
    let before = match &latest {
        Some(v) => tx.profiles_at(v.version).await?,
        None => Vec::new(),
    };
    let changes = diff(&before, &profiles);
    if let Some(v) = &latest
        && v.digest == digest
    {
        tx.commit().await?;
        return Ok(Applied {
            version: v.version,
            created: false,
            diff: changes,
            warnings: warnings(&profiles),
        });
    }
    let version = latest.map_or(1, |v| v.version + 1);
    tx.insert_policy_version(version, source, &digest, &ctx.actor.render(), ctx.now)
        .await?;
    for p in &profiles {
        tx.insert_profile(version, p).await?;
    }
    tx.append_audit(
        &ctx.event("policy.applied", format!("version {version}"))
            .details(
                json!({ "version": version, "digest": hex::encode(&digest), "diff": changes }),
            ),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(Applied {
        version,
        created: true,
        diff: changes,
        warnings: warnings(&profiles),
    })
}
