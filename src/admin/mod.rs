//! Administration core: tenants (with their signing keys), users and API tokens. The CLI, the
//! demo seeder and the admin pages all call these; every change is audited in its transaction.

pub mod hosts;

use serde_json::json;
use time::Duration;
use uuid::Uuid;

use crate::audit::Ctx;
use crate::broker::service::withdraw_open;
use crate::crypto::token::TokenKind;
use crate::crypto::{MasterKey, SecretToken};
use crate::error::{AppError, AppResult};
use crate::model::{ApiToken, Role, Scope, Tenant, User, normalize_email, validate_slug};
use crate::store::{Lockdown, NewUser, Store, UserChange};
use crate::workflow::State;

/// Creates a tenant with its SSH user CA and audit signing key, sealed under the master key.
pub async fn create_tenant(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    slug: &str,
    name: &str,
) -> AppResult<Tenant> {
    validate_slug(slug).map_err(AppError::Unprocessable)?;
    crate::text::check("tenant name", name.trim(), crate::text::Lines::One)
        .map_err(AppError::Unprocessable)?;
    let name = if name.trim().is_empty() {
        slug
    } else {
        name.trim()
    };
    let mut tx = store.tenant(Uuid::now_v7()).await?;
    let tenant =
        tx.insert_tenant(slug, name, ctx.now)
            .await
            .map_err(|e| match AppError::from(e) {
                AppError::Conflict(_) => {
                    AppError::Conflict(format!("tenant {slug} already exists"))
                }
                other => other,
            })?;
    let ssh_ca = crate::signing_keys::add_signing_key(
        &mut tx,
        master,
        crate::model::KeyPurpose::SshUserCa,
        slug,
        ctx.now,
    )
    .await?;
    let audit_key = crate::signing_keys::add_signing_key(
        &mut tx,
        master,
        crate::model::KeyPurpose::AuditSigning,
        slug,
        ctx.now,
    )
    .await?;
    tx.append_audit(
        &ctx.event("tenant.created", slug).details(json!({
            "name": name,
            "ssh_user_ca": ssh_ca,
            "audit_signing_key": audit_key,
        })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(tenant)
}

pub async fn tenant_by_slug(store: &Store, slug: &str) -> AppResult<Tenant> {
    store
        .tenant_by_slug(slug)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no tenant {slug}")))
}

fn clean_groups(groups: &[String]) -> AppResult<Vec<String>> {
    let mut out = Vec::new();
    for g in groups {
        let g = g.trim();
        if g.is_empty()
            || g.len() > 64
            || g.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        {
            return Err(AppError::Unprocessable(format!("invalid group name {g:?}")));
        }
        if !out.iter().any(|x: &String| x == g) {
            out.push(g.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

pub async fn create_user(
    store: &Store,
    ctx: &Ctx,
    tenant: &Tenant,
    email: &str,
    display_name: Option<&str>,
    roles: &[Role],
    groups: &[String],
) -> AppResult<User> {
    let email = normalize_email(email).map_err(AppError::Unprocessable)?;
    let display_name = display_name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| email.split('@').next().unwrap_or(&email).to_owned());
    crate::text::check("display name", &display_name, crate::text::Lines::One)
        .map_err(AppError::Unprocessable)?;
    let new = NewUser {
        email: email.clone(),
        display_name,
        roles: roles.to_vec(),
        groups: clean_groups(groups)?,
    };
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let user = tx
        .insert_user(&new, ctx.now)
        .await
        .map_err(|e| match AppError::from(e) {
            AppError::Conflict(_) => AppError::Conflict(format!(
                "user {email} already exists in tenant {}",
                tenant.slug
            )),
            other => other,
        })?;
    tx.append_audit(
        &ctx.event("user.created", &email).details(json!({
            "user_id": user.id,
            "roles": user.roles.0,
            "groups": user.group_names.0,
        })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

pub async fn user_by_email(store: &Store, tenant: &Tenant, email: &str) -> AppResult<User> {
    let email = normalize_email(email).map_err(AppError::Unprocessable)?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let user = tx.user_by_email(&email).await?;
    tx.commit().await?;
    user.ok_or_else(|| AppError::NotFound(format!("no user {email} in tenant {}", tenant.slug)))
}

/// Longest an API token may live.
pub const MAX_TOKEN_TTL: Duration = Duration::days(365);
pub const DEFAULT_TOKEN_TTL: Duration = Duration::days(30);

/// A new token and its one-time plaintext.
pub struct IssuedToken {
    pub token: ApiToken,
    pub secret: SecretToken,
}

/// Creates an API token for `user`. Scopes default to everything the user's roles allow; asking
/// for a scope the roles do not allow is refused rather than silently narrowed.
pub async fn create_token(
    store: &Store,
    ctx: &Ctx,
    user: &User,
    name: &str,
    scopes: &[Scope],
    ttl: Duration,
) -> AppResult<IssuedToken> {
    mint_token(store, ctx, user, name, scopes, ttl, None).await
}

/// Creates a token with the token `parent` (the API's `POST /tokens`): recorded as its child, so
/// revoking `parent` revokes it too.
pub async fn create_token_from(
    store: &Store,
    ctx: &Ctx,
    parent: &ApiToken,
    user: &User,
    name: &str,
    scopes: &[Scope],
    ttl: Duration,
) -> AppResult<IssuedToken> {
    mint_token(store, ctx, user, name, scopes, ttl, Some(parent.id)).await
}

async fn mint_token(
    store: &Store,
    ctx: &Ctx,
    user: &User,
    name: &str,
    scopes: &[Scope],
    ttl: Duration,
    parent: Option<Uuid>,
) -> AppResult<IssuedToken> {
    if user.disabled {
        return Err(AppError::Forbidden(format!(
            "user {} is disabled",
            user.email
        )));
    }
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(AppError::Unprocessable(
            "token name must be 1-100 characters".into(),
        ));
    }
    crate::text::check("token name", name, crate::text::Lines::One)
        .map_err(AppError::Unprocessable)?;
    if ttl <= Duration::ZERO || ttl > MAX_TOKEN_TTL {
        return Err(AppError::Unprocessable(
            "token lifetime must be between 1s and 365d".into(),
        ));
    }
    let allowed = Scope::allowed_for(&user.roles.0);
    let mut scopes = if scopes.is_empty() {
        allowed.clone()
    } else {
        scopes.to_vec()
    };
    scopes.sort();
    scopes.dedup();
    if let Some(s) = scopes.iter().find(|s| !allowed.contains(s)) {
        return Err(AppError::Forbidden(format!(
            "scope {s} needs role {} which {} does not have",
            s.required_role().map(Role::as_str).unwrap_or("?"),
            user.email
        )));
    }
    let (secret, hash) = SecretToken::generate(TokenKind::Api)
        .map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
    let expires_at = ctx.now + ttl;
    let mut tx = store.tenant(user.tenant_id).await?;
    let token = tx
        .insert_api_token(
            user.id,
            name,
            &hash,
            &scopes,
            Some(expires_at),
            parent,
            ctx.now,
        )
        .await?;
    tx.append_audit(
        &ctx.event("token.created", &user.email).details(json!({
            "token_id": token.id,
            "name": name,
            "scopes": scopes,
            "expires_at": expires_at.unix_timestamp(),
            "parent_token_id": parent,
        })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(IssuedToken { token, secret })
}

/// Revokes tokens of `owner` (all or nothing); returns how many were still active.
pub async fn revoke_tokens(
    store: &Store,
    ctx: &Ctx,
    owner: &User,
    ids: &[Uuid],
) -> AppResult<usize> {
    let mut tx = store.tenant(owner.tenant_id).await?;
    let mut revoked = 0;
    for id in ids {
        let owned = tx
            .api_tokens_of(owner.id)
            .await?
            .into_iter()
            .any(|t| t.id == *id);
        if !owned {
            return Err(AppError::NotFound(format!("no token {id}")));
        }
        if tx.revoke_api_token(*id, ctx.now).await? {
            tx.append_audit(
                &ctx.event("token.revoked", &owner.email)
                    .details(json!({ "token_id": id })),
                ctx.now,
            )
            .await?;
            revoked += 1;
        }
        // What the token minted, and what those minted, goes with it (even when the token
        // itself was revoked before: nothing it minted outlives it).
        for child in tx.api_token_descendants(*id).await? {
            if tx.revoke_api_token(child, ctx.now).await? {
                tx.append_audit(
                    &ctx.event("token.revoked", &owner.email)
                        .details(json!({ "token_id": child, "with_parent": id })),
                    ctx.now,
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(revoked)
}

/// Removes a notification webhook (audited); its undelivered notifications are dropped.
pub async fn remove_webhook(store: &Store, ctx: &Ctx, tenant: &Tenant, id: Uuid) -> AppResult<()> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let url = tx
        .webhooks()
        .await?
        .into_iter()
        .find(|h| h.id == id)
        .map(|h| h.url)
        .ok_or_else(|| AppError::NotFound(format!("no webhook {id}")))?;
    tx.delete_webhook(id).await?;
    tx.append_audit(
        &ctx.event("webhook.removed", &url)
            .details(json!({ "webhook_id": id })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// An admin revokes any token of the tenant (and what it minted), as [`revoke_tokens`] does for
/// its owner. Audited with the admin as the actor.
pub async fn revoke_tenant_token(
    store: &Store,
    ctx: &Ctx,
    tenant: &Tenant,
    id: Uuid,
) -> AppResult<usize> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let owner_id = tx
        .api_tokens_all()
        .await?
        .into_iter()
        .find(|(t, _)| t.id == id)
        .map(|(t, _)| t.user_id);
    let owner = match owner_id {
        Some(u) => tx.user_by_id(u).await?,
        None => None,
    };
    tx.commit().await?;
    let owner = owner.ok_or_else(|| AppError::NotFound(format!("no token {id}")))?;
    revoke_tokens(store, ctx, &owner, &[id]).await
}

/// Changes a user's name, standing roles, groups or disabled flag. Disabling ends every session of
/// the user and all their access in the same transaction (see [`set_user_disabled`]). Audited as
/// `user.changed` (with before/after) and `user.disabled` / `user.enabled`.
pub async fn update_user(
    store: &Store,
    ctx: &Ctx,
    tenant: &Tenant,
    user_id: Uuid,
    change: &UserChange,
) -> AppResult<User> {
    change_user(store, ctx, None, tenant, user_id, change).await
}

/// Disables (offboards) or enables a person. Disabling, in one transaction: ends their sessions,
/// cancels their pending requests and revokes every scheduled and active grant of theirs through
/// the state machine, so their certificates go onto the KRL and their database logins become due
/// for the reaper (the caller wakes it) — DESIGN §5. `links` (the public URL) also tells
/// webhooks. Returns the user and the requests that were ended.
pub async fn set_user_disabled(
    store: &Store,
    ctx: &Ctx,
    links: Option<&str>,
    tenant: &Tenant,
    user_id: Uuid,
    disabled: bool,
) -> AppResult<(User, Vec<Uuid>)> {
    let change = UserChange {
        disabled: Some(disabled),
        ..Default::default()
    };
    let mut ended = Vec::new();
    let user = change_user_in(store, ctx, links, tenant, user_id, &change, &mut ended).await?;
    Ok((user, ended))
}

async fn change_user(
    store: &Store,
    ctx: &Ctx,
    links: Option<&str>,
    tenant: &Tenant,
    user_id: Uuid,
    change: &UserChange,
) -> AppResult<User> {
    change_user_in(store, ctx, links, tenant, user_id, change, &mut Vec::new()).await
}

async fn change_user_in(
    store: &Store,
    ctx: &Ctx,
    links: Option<&str>,
    tenant: &Tenant,
    user_id: Uuid,
    change: &UserChange,
    ended: &mut Vec<Uuid>,
) -> AppResult<User> {
    let groups = change.groups.as_deref().map(clean_groups).transpose()?;
    let change = UserChange {
        groups,
        ..change.clone()
    };
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let before = tx
        .user_by_id(user_id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user".into()))?;
    let after = tx.update_user(user_id, &change, ctx.now).await?;
    let mut diff = serde_json::Map::new();
    if before.roles != after.roles {
        diff.insert(
            "roles".into(),
            json!({ "from": before.roles.0, "to": after.roles.0 }),
        );
    }
    if before.group_names != after.group_names {
        diff.insert(
            "groups".into(),
            json!({ "from": before.group_names.0, "to": after.group_names.0 }),
        );
    }
    if before.display_name != after.display_name {
        diff.insert(
            "display_name".into(),
            json!({ "from": before.display_name, "to": after.display_name }),
        );
    }
    if !diff.is_empty() {
        tx.append_audit(
            &ctx.event("user.changed", &after.email)
                .details(serde_json::Value::Object(diff)),
            ctx.now,
        )
        .await?;
    }
    if before.disabled != after.disabled {
        let (action, sessions) = if after.disabled {
            ("user.disabled", tx.delete_sessions_of(user_id).await?)
        } else {
            ("user.enabled", 0)
        };
        tx.append_audit(
            &ctx.event(action, &after.email)
                .details(json!({ "sessions_ended": sessions })),
            ctx.now,
        )
        .await?;
    }
    if after.disabled {
        // Also when already disabled: whatever is still open (a grant left by an older version)
        // ends now.
        *ended = withdraw_open(
            &mut tx,
            ctx,
            links,
            Some(user_id),
            &[State::Pending, State::Scheduled, State::Active],
            &format!("{} was disabled", after.email),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(after)
}

/// Registers a webhook that hears every request transition; its signing secret is sealed.
pub async fn add_webhook(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    tenant: &Tenant,
    url: &str,
    secret: &str,
) -> AppResult<Uuid> {
    let url = url.trim();
    crate::text::check("webhook URL", url, crate::text::Lines::One)
        .map_err(AppError::Unprocessable)?;
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 12 {
        return Err(AppError::Unprocessable(format!(
            "webhook URL {url:?} must be an http(s) URL"
        )));
    }
    if secret.trim().len() < 16 {
        return Err(AppError::Unprocessable(
            "the webhook secret must be at least 16 characters".into(),
        ));
    }
    let id = Uuid::now_v7();
    let sealed = master.seal(
        &crate::store::Webhook::seal_context(tenant.tenant_id, id),
        secret.trim().as_bytes(),
    )?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    tx.insert_webhook(id, url, &sealed, ctx.now).await?;
    tx.append_audit(
        &ctx.event("webhook.added", url)
            .details(json!({ "webhook_id": id })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The longest reason a lockdown keeps.
const MAX_REASON: usize = 500;

fn lockdown_reason(reason: &str) -> AppResult<String> {
    let reason = reason.trim();
    if reason.chars().count() > MAX_REASON {
        return Err(AppError::Unprocessable(format!(
            "the reason is longer than {MAX_REASON} characters"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(AppError::Unprocessable(
            "the reason must be one line of text".into(),
        ));
    }
    Ok(if reason.is_empty() {
        "emergency lockdown".to_owned()
    } else {
        reason.to_owned()
    })
}

/// Emergency lockdown. With `person`: revokes every scheduled and active grant of that person at
/// once (their account stays usable; disable it to end that too). Without: revokes every
/// scheduled and active grant of the tenant and puts it in lockdown, which refuses new issuance
/// (certificates, database logins, activations — scheduled, auto-approved and break-glass ones
/// included) until [`lift_lockdown`]. One transaction, audited as `lockdown.person` /
/// `lockdown.started` with the reason, then one `grant.revoked` per grant. Returns the requests
/// revoked; the caller wakes the reaper.
pub async fn lockdown(
    store: &Store,
    ctx: &Ctx,
    links: Option<&str>,
    tenant: &Tenant,
    person: Option<&User>,
    reason: &str,
) -> AppResult<Vec<Uuid>> {
    let reason = lockdown_reason(reason)?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let why = match person {
        Some(user) => {
            tx.append_audit(
                &ctx.event("lockdown.person", &user.email)
                    .details(json!({ "user_id": user.id, "reason": reason })),
                ctx.now,
            )
            .await?;
            format!("emergency lockdown of {}: {reason}", user.email)
        }
        None => {
            // The tenant row first (then requests), as every reader of the lockdown does.
            let set = tx
                .set_lockdown(Some(&Lockdown {
                    since: ctx.now,
                    reason: reason.clone(),
                    set_by: ctx.actor.render(),
                }))
                .await?;
            tx.append_audit(
                &ctx.event("lockdown.started", &tenant.slug)
                    .details(json!({ "reason": reason, "already_locked": !set })),
                ctx.now,
            )
            .await?;
            format!("emergency lockdown: {reason}")
        }
    };
    let revoked = withdraw_open(
        &mut tx,
        ctx,
        links,
        person.map(|u| u.id),
        &[State::Scheduled, State::Active],
        &why,
    )
    .await?;
    tx.commit().await?;
    Ok(revoked)
}

/// Lifts the tenant's lockdown; false when there was none. Audited as `lockdown.lifted`.
pub async fn lift_lockdown(store: &Store, ctx: &Ctx, tenant: &Tenant) -> AppResult<bool> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let before = tx.lockdown().await?;
    let lifted = tx.set_lockdown(None).await?;
    if lifted {
        tx.append_audit(
            &ctx.event("lockdown.lifted", &tenant.slug).details(json!({
                "since": before.as_ref().map(|l| l.since.unix_timestamp()),
                "reason": before.map(|l| l.reason),
            })),
            ctx.now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(lifted)
}

/// The tenant's lockdown, if one is in force (for status pages and the CLI).
pub async fn lockdown_state(store: &Store, tenant: &Tenant) -> AppResult<Option<Lockdown>> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let l = tx.lockdown().await?;
    tx.commit().await?;
    Ok(l)
}

/// Turns a tenant's passkey setting on or off (`require_passkey_for_break_glass`: break-glass
/// needs a step-up even from people without a passkey; `require_passkey_for_admin`: admin
/// changes from a browser need a recent step-up from every admin; `policy_two_person`: policy
/// changes that widen access wait for a second admin). Audited; false when it was
/// already so.
pub async fn set_tenant_setting(
    store: &Store,
    ctx: &Ctx,
    tenant: &Tenant,
    name: &str,
    on: bool,
) -> AppResult<bool> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let Some(flag) = crate::store::TenantFlag::ALL
        .into_iter()
        .find(|f| f.name() == name)
    else {
        return Err(AppError::Unprocessable(format!("no tenant setting {name}")));
    };
    let changed = tx.set_tenant_flag(flag, on).await?;
    if changed {
        tx.append_audit(
            &ctx.event("tenant.settings_changed", &tenant.slug)
                .details(serde_json::json!({ name: on })),
            ctx.now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(changed)
}
