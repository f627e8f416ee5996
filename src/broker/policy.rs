//! Storing policy: each apply that changes something becomes a new, kept version, audited with
//! its diff in the same transaction.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::Ctx;
use crate::error::{AppError, AppResult};
use crate::model::{PolicyVersion, Role, Tenant, User};
use crate::policy::{PolicyDiff, Profile, diff, parse};
use crate::store::{Store, TenantTx};
use uuid::Uuid;

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

/// Step-up profiles whose approver groups hold fewer enabled approvers with a passkey than
/// the approvals they need: no request for them can be approved until more people register one.
pub fn warnings(profiles: &[Profile], people: &[User], with_passkey: &[Uuid]) -> Vec<String> {
    profiles
        .iter()
        .filter(|p| p.step_up)
        .filter_map(|p| {
            let able = people
                .iter()
                .filter(|u| !u.disabled && u.has_role(Role::Approver))
                .filter(|u| p.approvers.iter().any(|g| u.group_names.0.contains(g)))
                .filter(|u| with_passkey.contains(&u.id))
                .count();
            let needed = p.approvals_required as usize;
            (able < needed).then(|| {
                format!(
                    "profile {} has step_up = true: approvals need a passkey, and only {able} \
                     approver(s) of {} hold one ({needed} needed), so no request for it can be \
                     approved until more register a passkey",
                    p.name,
                    p.approvers.join(", ")
                )
            })
        })
        .collect()
}

/// The warnings for `profiles` as the tenant's people and passkeys stand, in `tx`.
async fn warnings_now(tx: &mut TenantTx, profiles: &[Profile]) -> AppResult<Vec<String>> {
    if !profiles.iter().any(|p| p.step_up) {
        return Ok(Vec::new());
    }
    let people = tx.list_users().await?;
    let with_passkey = tx.users_with_passkeys().await?;
    Ok(warnings(profiles, &people, &with_passkey))
}

/// The warnings about the policy in force (the admin policy page shows them).
pub async fn current_warnings(store: &Store, tenant: &Tenant) -> AppResult<Vec<String>> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let profiles = match tx.latest_policy_version().await? {
        Some(v) => tx.profiles_at(v.version).await?,
        None => Vec::new(),
    };
    let found = warnings_now(&mut tx, &profiles).await?;
    tx.commit().await?;
    Ok(found)
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
        let warnings = warnings_now(&mut tx, &profiles).await?;
        tx.commit().await?;
        return Ok(Applied {
            version: v.version,
            created: false,
            diff: changes,
            warnings,
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
    let warnings = warnings_now(&mut tx, &profiles).await?;
    tx.commit().await?;
    Ok(Applied {
        version,
        created: true,
        diff: changes,
        warnings,
    })
}
