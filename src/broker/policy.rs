//! Storing policy: each apply that changes something becomes a new, kept version, audited with
//! its diff in the same transaction.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::Actor;
use crate::audit::Ctx;
use crate::error::{AppError, AppResult};
use crate::model::{PolicyVersion, Role, Tenant, User};
use crate::policy::{PolicyDiff, Profile, diff, parse, widening};
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
    /// With `policy_two_person`, a change that widens access is not applied but proposed: it
    /// waits for a second admin at `/admin/policy/proposals/{id}`.
    pub proposed: Option<Uuid>,
    /// The changes that widen access (why it was proposed rather than applied).
    pub widening: Vec<String>,
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
                .filter(|u| with_passkey.contains(&u.id))
                .filter(|u| crate::workflow::approver_of(&crate::workflow::Person::of(u), p))
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
    let mut tx = store.read(tenant.tenant_id).await?;
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
    let mut tx = store.read(tenant.tenant_id).await?;
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
    // A lost body (an empty upload, a redirect that dropped it) must not read as "no profiles".
    if source.trim().is_empty() {
        return Err(AppError::Unprocessable(
            "the policy file is empty, which would remove every profile; to mean that, send a \
             file with only a comment (`# no profiles`)"
                .into(),
        ));
    }
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
            proposed: None,
            widening: Vec::new(),
        });
    }
    let base = latest.as_ref().map_or(0, |v| v.version);
    let widening = widening(&before, &profiles);
    // The first policy has nothing to widen from; afterwards, two people when asked for.
    if base > 0
        && !widening.is_empty()
        && tx
            .tenant_flag(crate::store::TenantFlag::PolicyTwoPerson)
            .await?
    {
        let proposer = match &ctx.actor {
            Actor::User { email, .. } | Actor::Token { email, .. } => {
                tx.user_by_email(email).await?.map(|u| u.id)
            }
            _ => None,
        };
        let id = tx
            .insert_policy_proposal(
                base,
                source,
                &digest,
                &serde_json::to_string(&widening).map_err(AppError::internal)?,
                &ctx.actor.render(),
                proposer,
                ctx.now,
            )
            .await?;
        tx.append_audit(
            &ctx.event("policy.proposed", format!("on version {base}"))
                .details(json!({
                    "proposal": id, "base_version": base, "digest": hex::encode(&digest),
                    "diff": changes, "widening": widening,
                })),
            ctx.now,
        )
        .await?;
        let warnings = warnings_now(&mut tx, &profiles).await?;
        tx.commit().await?;
        return Ok(Applied {
            version: base,
            created: false,
            diff: changes,
            warnings,
            proposed: Some(id),
            widening,
        });
    }
    let version = base + 1;
    store_version(
        &mut tx, ctx, version, source, &digest, &profiles, &changes, None,
    )
    .await?;
    let warnings = warnings_now(&mut tx, &profiles).await?;
    tx.commit().await?;
    Ok(Applied {
        version,
        created: true,
        diff: changes,
        warnings,
        proposed: None,
        widening,
    })
}

/// Stores `profiles` as `version` with its audit record (`policy.applied`, naming the second
/// admin when a proposal was approved).
#[allow(clippy::too_many_arguments)]
async fn store_version(
    tx: &mut TenantTx,
    ctx: &Ctx,
    version: i64,
    source: &str,
    digest: &[u8],
    profiles: &[Profile],
    changes: &PolicyDiff,
    proposal: Option<Uuid>,
) -> AppResult<()> {
    tx.insert_policy_version(version, source, digest, &ctx.actor.render(), ctx.now)
        .await?;
    for p in profiles {
        tx.insert_profile(version, p).await?;
    }
    tx.append_audit(
        &ctx.event("policy.applied", format!("version {version}"))
            .details(json!({
                "version": version, "digest": hex::encode(digest), "diff": changes,
                "proposal": proposal,
            })),
        ctx.now,
    )
    .await?;
    Ok(())
}

/// What a step-up for approving proposal `id` is bound to: the proposal and its content.
pub fn proposal_binding(id: Uuid, digest: &[u8]) -> String {
    format!("policy proposal {id} {}", hex::encode(digest))
}

/// A second admin approves a proposed policy with a passkey step-up (`taken`, spent already):
/// not the proposer, only on top of the version it was proposed on. It becomes the next version.
pub async fn approve_proposal(
    store: &Store,
    caller: &super::Caller,
    id: Uuid,
    taken: &crate::passkeys::TakenStepUp,
) -> AppResult<Applied> {
    let (ctx, tenant, user) = (&caller.ctx, &caller.tenant, &caller.user);
    if !user.has_role(Role::Admin) {
        return Err(AppError::Forbidden(
            "only admins decide policy proposals".into(),
        ));
    }
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let proposal = tx
        .policy_proposal(id)
        .await?
        .filter(|p| p.state == "proposed")
        .ok_or_else(|| AppError::NotFound(format!("no open policy proposal {id}")))?;
    if proposal.proposer_id == Some(user.id) {
        return Err(AppError::Forbidden(
            "a second admin must approve this: you proposed it".into(),
        ));
    }
    let binding = proposal_binding(id, &proposal.digest);
    if let Err(why) = taken.verify(&mut tx, user, &binding, ctx.now).await? {
        tx.rollback().await?;
        let mut tx = store.tenant(tenant.tenant_id).await?;
        tx.append_audit(
            &ctx.event("passkey.step_up_refused", format!("proposal {id}"))
                .details(json!({ "for": "policy_proposal", "reason": why })),
            ctx.now,
        )
        .await?;
        tx.commit().await?;
        return Err(AppError::Forbidden(crate::passkeys::not_accepted(&why)));
    }
    let latest = tx.latest_policy_version().await?;
    let base = latest.as_ref().map_or(0, |v| v.version);
    if base != proposal.base_version {
        return Err(AppError::Conflict(format!(
            "the policy changed since this was proposed (version {} then, {base} now): propose it again",
            proposal.base_version
        )));
    }
    let before = tx.profiles_at(base).await?;
    let profiles = parse(&proposal.source).map_err(|e| AppError::Unprocessable(e.to_string()))?;
    let changes = diff(&before, &profiles);
    let version = base + 1;
    tx.decide_policy_proposal(id, "applied", &ctx.actor.render(), ctx.now)
        .await?;
    store_version(
        &mut tx,
        ctx,
        version,
        &proposal.source,
        &proposal.digest,
        &profiles,
        &changes,
        Some(id),
    )
    .await?;
    let warnings = warnings_now(&mut tx, &profiles).await?;
    tx.commit().await?;
    Ok(Applied {
        version,
        created: true,
        diff: changes,
        warnings,
        proposed: None,
        widening: serde_json::from_str(&proposal.widening).unwrap_or_default(),
    })
}
