//! Carrying out transitions: load the request, its requester and the profile of the policy
//! version it was decided under, call the pure state machine, then store the result and one
//! audit event per effect in a single transaction. Refusals are audited too (in their own
//! transaction) before the caller sees the error.

use std::collections::HashMap;

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Ctx;
use crate::audit::{Actor, NewEvent, Origin};
use crate::error::{AppError, AppResult};
use crate::model::{Role, Tenant, User};
use crate::passkeys::TakenStepUp;
use crate::policy::Profile;
use crate::store::{Cursor, RequestFilter, Store, StoredRequest, TenantTx};
use crate::text::shown;
use crate::workflow::{
    Effect, Event, NewRequest, Person, Refusal, Request, State, refuse_in_lockdown, step, submit,
};

pub fn person(u: &User) -> Person {
    Person::of(u)
}

/// The audit action name of an effect (also the webhook event name).
fn effect_name(effect: &Effect) -> Option<&'static str> {
    Some(match effect {
        Effect::Approved { .. } => "request.approved",
        Effect::Activated { .. } => "grant.activated",
        Effect::Scheduled { .. } => "request.scheduled",
        Effect::Extended { .. } => "grant.extended",
        Effect::ExtensionRequested { .. } => "grant.extension_requested",
        Effect::ExtensionDenied => "grant.extension_denied",
        Effect::Denied => "request.denied",
        Effect::Cancelled => "request.cancelled",
        Effect::Lapsed => "request.lapsed",
        Effect::Expired => "grant.expired",
        Effect::Revoked { .. } => "grant.revoked",
        Effect::Reviewed { .. } => "breakglass.reviewed",
        Effect::EndCredentials => return None,
    })
}

fn effect_event(
    ctx_actor: &Actor,
    origin: &Origin,
    req: &Request,
    effect: &Effect,
) -> Option<NewEvent> {
    let (action, details): (&'static str, Value) = match effect {
        Effect::Approved {
            by,
            round,
            remaining,
        } => (
            "request.approved",
            json!({ "approver": by, "round": round, "remaining": remaining }),
        ),
        Effect::Activated {
            not_after,
            shortcut,
        } => (
            "grant.activated",
            json!({ "not_after": not_after.unix_timestamp(), "shortcut": shortcut }),
        ),
        Effect::Scheduled { starts_at } => (
            "request.scheduled",
            json!({ "starts_at": starts_at.unix_timestamp() }),
        ),
        Effect::Extended { not_after } => (
            "grant.extended",
            json!({ "not_after": not_after.unix_timestamp() }),
        ),
        Effect::ExtensionRequested { added } => (
            "grant.extension_requested",
            json!({ "added_secs": added.whole_seconds() }),
        ),
        Effect::ExtensionDenied => ("grant.extension_denied", json!({})),
        Effect::Denied => ("request.denied", json!({})),
        Effect::Cancelled => ("request.cancelled", json!({})),
        Effect::Lapsed => ("request.lapsed", json!({})),
        Effect::Expired => ("grant.expired", json!({})),
        Effect::Revoked { reason } => ("grant.revoked", json!({ "reason": reason })),
        Effect::Reviewed { by } => ("breakglass.reviewed", json!({ "reviewer": by })),
        Effect::EndCredentials => return None,
    };
    Some(
        NewEvent::new(ctx_actor.clone(), action, req.profile.clone())
            .request(req.id)
            .origin(origin.clone())
            .details(details),
    )
}

/// Ends what a grant issued, in the transition's transaction: its SSH certificates that are
/// still valid go on the tenant's KRL, and its database logins become due for the reaper, which
/// drops them (the caller wakes it).
async fn end_credentials(
    tx: &mut TenantTx,
    actor: &Actor,
    origin: &Origin,
    req: &Request,
    effects: &[Effect],
    now: OffsetDateTime,
) -> AppResult<()> {
    if !effects.iter().any(|e| matches!(e, Effect::EndCredentials)) {
        return Ok(());
    }
    let serials = tx.revoke_ssh_certs(req.id, now).await?;
    if !serials.is_empty() {
        let serials: Vec<String> = serials.iter().map(ToString::to_string).collect();
        tx.append_audit(
            &NewEvent::new(
                actor.clone(),
                "ssh.certificates_revoked",
                req.profile.clone(),
            )
            .request(req.id)
            .origin(origin.clone())
            .details(json!({ "serials": serials, "state": req.state.as_str() })),
            now,
        )
        .await?;
    }
    let roles = tx
        .end_db_logins(req.id, req.state == crate::workflow::State::Revoked, now)
        .await?;
    if !roles.is_empty() {
        tx.append_audit(
            &NewEvent::new(actor.clone(), "db.logins_ended", req.profile.clone())
                .request(req.id)
                .origin(origin.clone())
                .details(json!({ "roles": roles, "state": req.state.as_str() })),
            now,
        )
        .await?;
    }
    Ok(())
}

async fn audit_refusal(
    store: &Store,
    tenant: &Tenant,
    ctx: &Ctx,
    request_id: Option<Uuid>,
    what: &str,
    refusal: &Refusal,
) -> AppResult<()> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let mut event = ctx
        .event("request.refused", what)
        .details(json!({ "reason": refusal.to_string() }));
    if let Some(id) = request_id {
        event = event.request(id);
    }
    tx.append_audit(&event, ctx.now).await?;
    tx.commit().await?;
    Ok(())
}

/// The reason of the tenant's emergency lockdown, when one is in force. Read before locking any
/// request (see `TenantTx::lockdown`).
pub(crate) async fn lockdown_reason(tx: &mut TenantTx) -> AppResult<Option<String>> {
    Ok(tx.lockdown().await?.map(|l| l.reason))
}

/// For credential issuers: a 409 while the tenant is in lockdown. Read before locking the request.
pub(crate) async fn lockdown_refusal(tx: &mut TenantTx) -> AppResult<Option<AppError>> {
    Ok(lockdown_reason(tx).await?.map(|reason| {
        AppError::Conflict(format!(
            "the organisation is in emergency lockdown ({reason}): no credentials are issued until an admin lifts it"
        ))
    }))
}

/// A requester whose account is gone: not eligible for anything.
fn gone(id: Uuid) -> Person {
    Person {
        id,
        email: String::new(),
        groups: vec![],
        is_approver: false,
        is_admin: false,
        disabled: true,
        stepped_up: false,
    }
}

/// The profile as decided, with who may request it taken from the policy in force, for the
/// eligibility check when the last approval decides a grant (as a scheduled activation does): a
/// profile removed since leaves nobody eligible. `decided_at` is the policy version `decided`
/// comes from: while it is still the one in force, `decided` is already current.
async fn with_current_requesters(
    tx: &mut TenantTx,
    mut decided: Profile,
    decided_at: i64,
) -> AppResult<Profile> {
    let current = match tx.latest_policy_version().await? {
        Some(v) if v.version == decided_at => return Ok(decided),
        Some(v) => tx
            .profiles_at(v.version)
            .await?
            .into_iter()
            .find(|p| p.name == decided.name),
        None => None,
    };
    decided.requesters = current.map(|p| p.requesters).unwrap_or_default();
    Ok(decided)
}

/// Ends the open requests of `requester` (or of the whole tenant) whose state is in `states`, in
/// the caller's transaction: each goes through the state machine ([`Event::Withdraw`]: pending
/// ones are cancelled, scheduled and active grants revoked), with its audit events, and its
/// credentials end as on any revocation (certificates onto the KRL, database logins due for the
/// reaper, which the caller wakes). `links` (the public URL) also tells webhooks; the operator's
/// CLI has none. Returns the requests moved.
pub(crate) async fn withdraw_open(
    tx: &mut TenantTx,
    ctx: &Ctx,
    links: Option<&str>,
    requester: Option<Uuid>,
    states: &[State],
    reason: &str,
) -> AppResult<Vec<Uuid>> {
    let mut moved = Vec::new();
    let hooks = tx.webhooks().await?;
    for (id, state) in tx.open_request_ids(requester).await? {
        if !states.contains(&state) {
            continue;
        }
        let (stored, profile) = lock_with_profile(tx, id).await?;
        if !states.contains(&stored.request.state) {
            continue;
        }
        let owner = tx.user_by_id(stored.request.requester).await?;
        let who = owner
            .as_ref()
            .map(person)
            .unwrap_or_else(|| gone(stored.request.requester));
        let event = Event::Withdraw {
            reason: reason.to_owned(),
        };
        let (next, effects) = step(&stored.request, &who, &event, &profile, ctx.now)?;
        tx.save_request(&stored.request, &next, ctx.now).await?;
        for effect in &effects {
            if let Some(event) = effect_event(&ctx.actor, &ctx.origin, &next, effect) {
                tx.append_audit(&event, ctx.now).await?;
            }
        }
        end_credentials(tx, &ctx.actor, &ctx.origin, &next, &effects, ctx.now).await?;
        if let (Some(links), Some(owner)) = (links, &owner) {
            notify(
                tx,
                Tell {
                    links,
                    hooks: &hooks,
                },
                &profile,
                owner,
                &next,
                &effects,
                ctx.now,
            )
            .await?;
        }
        moved.push(id);
    }
    Ok(moved)
}

/// Audits a refused credential (`action`, with the reason) in its own transaction, then fails
/// with `err`.
pub(crate) async fn refuse_credential<T>(
    store: &Store,
    tenant: &Tenant,
    ctx: &Ctx,
    request: Uuid,
    action: &'static str,
    err: AppError,
) -> AppResult<T> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    tx.append_audit(
        &ctx.event(action, request.to_string())
            .request(request)
            .details(json!({ "reason": err.to_string() })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Err(err)
}

/// Queues an email to every person who may decide on requests of `profile` (never the requester,
/// never a disabled account), in the caller's transaction.
async fn notify_approvers(
    tx: &mut TenantTx,
    profile: &Profile,
    requester: &User,
    subject: &str,
    body: &str,
    request: Uuid,
    now: OffsetDateTime,
) -> AppResult<()> {
    let me = person(requester);
    for u in tx.approvers_in(&profile.approvers).await? {
        let p = person(&u);
        // Chosen in SQL; checked again here, as the rule it is.
        let approver = u.has_role(Role::Approver)
            && !p.disabled
            && p.groups.iter().any(|g| profile.approvers.contains(g));
        if approver && p.id != me.id && !p.email.eq_ignore_ascii_case(&me.email) {
            tx.enqueue(
                "email",
                &u.email,
                &json!({ "subject": subject, "body": body }),
                Some(request),
                now,
            )
            .await?;
        }
    }
    Ok(())
}

/// The emails a transition sends: approvers when a decision or review is needed, the requester
/// when theirs is made.
/// Where a transition is told: the public URL (for links) and the tenant's webhooks, read by
/// the caller once per transaction.
#[derive(Clone, Copy)]
struct Tell<'a> {
    links: &'a str,
    hooks: &'a [crate::store::Webhook],
}

async fn notify(
    tx: &mut TenantTx,
    tell: Tell<'_>,
    profile: &Profile,
    requester: &User,
    req: &Request,
    effects: &[Effect],
    now: OffsetDateTime,
) -> AppResult<()> {
    let Tell { links, hooks } = tell;
    let link = format!("{}/requests/{}", links.trim_end_matches('/'), req.id);
    // What people read (mail, webhook text) shows typed text through `text::shown`, so a
    // bidirectional override or an invisible character cannot change how it reads.
    let who = shown(&requester.email);
    let what = format!(
        "{} for {}",
        shown(&req.profile),
        crate::duration::format(req.duration)
    );
    let ask = format!(
        "{who} asks for {what}.\n\nJustification: {}\nTicket: {}\n\nDecide at {link}\n",
        shown(&req.justification),
        shown(req.ticket.as_deref().unwrap_or("-"))
    );
    // Every webhook of the tenant (`hooks`, read by the caller once per transaction) hears
    // every transition, with a Slack-compatible `text`.
    if !hooks.is_empty() {
        let mut events: Vec<String> = effects
            .iter()
            .filter_map(effect_name)
            .map(str::to_owned)
            .collect();
        if effects.is_empty()
            || matches!(effects.first(), Some(Effect::Activated { .. })) && req.approvals.is_empty()
        {
            events.insert(0, "request.submitted".into());
        }
        for event in events {
            let text = format!(
                "[elevate] {event}: {who} {what} ({}) {link}",
                req.state.as_str()
            );
            let payload = json!({
                "text": text,
                "event": event,
                "request": { "id": req.id, "profile": req.profile, "state": req.state.as_str(), "requester": requester.email, "url": link },
            });
            for hook in hooks {
                tx.enqueue("webhook", &hook.id.to_string(), &payload, Some(req.id), now)
                    .await?;
            }
        }
    }
    let submitted = effects.is_empty() && req.state == crate::workflow::State::Pending;
    if submitted {
        notify_approvers(
            tx,
            profile,
            requester,
            &format!("elevate: {who} requests {what}"),
            &ask,
            req.id,
            now,
        )
        .await?;
    }
    for effect in effects {
        let to_requester =
            |subject: String, body: String| json!({ "subject": subject, "body": body });
        match effect {
            Effect::Activated {
                shortcut: Some(crate::workflow::Shortcut::BreakGlass),
                ..
            } => {
                let subject = format!("elevate: BREAK-GLASS {who} activated {what}");
                notify_approvers(
                    tx,
                    profile,
                    requester,
                    &subject,
                    &format!("{ask}\nThis break-glass activation needs a review by an approver.\n"),
                    req.id,
                    now,
                )
                .await?;
            }
            Effect::Activated { not_after, .. } => {
                let body = format!(
                    "Your request for {what} is active until {}.\n\n{link}\n",
                    crate::text::when(*not_after)
                );
                tx.enqueue(
                    "email",
                    &requester.email,
                    &to_requester(format!("elevate: {} is active", shown(&req.profile)), body),
                    Some(req.id),
                    now,
                )
                .await?;
            }
            Effect::Denied => {
                let body = format!("Your request for {what} was denied.\n\n{link}\n");
                tx.enqueue(
                    "email",
                    &requester.email,
                    &to_requester(format!("elevate: {} was denied", shown(&req.profile)), body),
                    Some(req.id),
                    now,
                )
                .await?;
            }
            Effect::ExtensionRequested { added } => {
                let subject = format!(
                    "elevate: {who} asks to extend {} by {}",
                    shown(&req.profile),
                    crate::duration::format(*added)
                );
                notify_approvers(tx, profile, requester, &subject, &ask, req.id, now).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Files a request for `profile_name` under the policy in force.
pub async fn file(
    store: &Store,
    links: &str,
    caller: &super::Caller,
    profile_name: &str,
    new: NewRequest,
    step_up: Option<&TakenStepUp>,
) -> AppResult<(StoredRequest, Profile)> {
    let (ctx, tenant, requester) = (&caller.ctx, &caller.tenant, &caller.user);
    let (version, profiles) = crate::broker::policy::current(store, tenant)
        .await?
        .ok_or_else(|| AppError::NotFound("this organisation has no access profiles yet".into()))?;
    let Some(profile) = profiles.iter().find(|p| p.name == profile_name).cloned() else {
        // Name what the requester may ask for instead, so a typo is one step from the fix.
        let mine: Vec<&str> = profiles
            .iter()
            .filter(|p| p.may_request(&requester.group_names.0))
            .map(|p| p.name.as_str())
            .collect();
        return Err(AppError::NotFound(if mine.is_empty() {
            format!("no profile {profile_name}; you may request no profile")
        } else {
            format!(
                "no profile {profile_name}; you may request: {}",
                mine.join(", ")
            )
        }));
    };
    let (request, effects) =
        match submit(Uuid::now_v7(), &person(requester), &profile, new, ctx.now) {
            Ok(ok) => ok,
            Err(refusal) => {
                audit_refusal(store, tenant, ctx, None, profile_name, &refusal).await?;
                return Err(refusal.into());
            }
        };
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let locked = lockdown_reason(&mut tx).await?;
    let mut passkey_used = None;
    let checked = match refuse_in_lockdown(&effects, locked.as_deref()) {
        Err(refusal) => Err(refusal),
        Ok(()) if request.shortcut == Some(crate::workflow::Shortcut::BreakGlass) => {
            match break_glass_step_up(&mut tx, links, requester, &profile, step_up, ctx.now).await?
            {
                Ok(used) => {
                    passkey_used = used;
                    Ok(())
                }
                Err(refusal) => Err(refusal),
            }
        }
        Ok(()) => Ok(()),
    };
    if let Err(refusal) = checked {
        tx.rollback().await?;
        audit_refusal(store, tenant, ctx, None, profile_name, &refusal).await?;
        return Err(refusal.into());
    }
    tx.insert_request(&request, version.version, ctx.now)
        .await?;
    if let Some(passkey) = passkey_used {
        tx.append_audit(
            &ctx.event("passkey.stepped_up", &profile.name)
                .request(request.id)
                .details(json!({ "passkey_id": passkey, "for": "break_glass" })),
            ctx.now,
        )
        .await?;
    }
    tx.append_audit(
        &ctx.event("request.submitted", &profile.name)
            .request(request.id)
            .details(json!({
                "duration_secs": request.duration.whole_seconds(),
                "justification": request.justification,
                "ticket": request.ticket,
                "starts_at": request.starts_at.map(|t| t.unix_timestamp()),
                "policy_version": version.version,
                "break_glass": request.shortcut == Some(crate::workflow::Shortcut::BreakGlass),
            })),
        ctx.now,
    )
    .await?;
    for effect in &effects {
        if let Some(event) = effect_event(&ctx.actor, &ctx.origin, &request, effect) {
            tx.append_audit(&event, ctx.now).await?;
        }
    }
    let hooks = tx.webhooks().await?;
    notify(
        &mut tx,
        Tell {
            links,
            hooks: &hooks,
        },
        &profile,
        requester,
        &request,
        &effects,
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok((
        StoredRequest {
            request,
            policy_version: version.version,
        },
        profile,
    ))
}

/// What a break-glass step-up is bound to: the requester's break-glass on this profile.
pub fn break_glass_binding(requester: &User, profile: &str) -> String {
    format!("break-glass {} {profile}", requester.id)
}

/// Break-glass activates at once, so it always needs the requester's passkey when they have
/// one, and when the tenant requires it, also when they have none. The passkey used, or why not.
async fn break_glass_step_up(
    tx: &mut TenantTx,
    links: &str,
    requester: &User,
    profile: &Profile,
    step_up: Option<&TakenStepUp>,
    now: time::OffsetDateTime,
) -> AppResult<Result<Option<Uuid>, Refusal>> {
    let has_passkey = !tx.passkeys_of(requester.id).await?.is_empty();
    let required = has_passkey
        || tx
            .tenant_flag(crate::store::TenantFlag::RequirePasskeyForBreakGlass)
            .await?;
    Ok(match (required, step_up) {
        (false, None) => Ok(None),
        (_, Some(taken)) => {
            let binding = break_glass_binding(requester, &profile.name);
            match taken.verify(tx, requester, &binding, now).await? {
                Ok(used) => Ok(Some(used)),
                Err(why) => Err(Refusal::NotAllowed(crate::passkeys::not_accepted(&why))),
            }
        }
        (true, None) if has_passkey => Err(Refusal::StepUpRequired(format!(
            "break-glass needs a passkey step-up: use the new request page at {links}/requests/new"
        ))),
        (true, None) => Err(Refusal::NotAllowed(format!(
            "this organisation requires a passkey for break-glass: register one at {links}/passkeys"
        ))),
    })
}

/// Locks request `id` in `tx` (waiting for another holder) and loads it with the profile it was
/// decided under: what every action on one request starts with.
pub(crate) async fn lock_with_profile(
    tx: &mut TenantTx,
    id: Uuid,
) -> AppResult<(StoredRequest, Profile)> {
    tx.lock_request_wait(id).await?;
    let stored = tx
        .request(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no request {id}")))?;
    let profile = profile_of(tx, &stored).await?;
    Ok((stored, profile))
}

/// [`lock_with_profile`] for a person acting on the request: one they may not see is a 404 (the
/// transaction is rolled back), so ids do not reveal that a request exists.
pub(crate) async fn lock_visible(
    tx: &mut TenantTx,
    user: &User,
    id: Uuid,
) -> AppResult<Option<(StoredRequest, Profile)>> {
    let (stored, profile) = lock_with_profile(tx, id).await?;
    Ok(may_see(user, stored.request.requester, &profile).then_some((stored, profile)))
}

/// The profile a stored request was decided under.
pub(crate) async fn profile_of(tx: &mut TenantTx, stored: &StoredRequest) -> AppResult<Profile> {
    Policies::default().decided(tx, stored).await
}

/// Whether `user` may see a request: its requester, an approver of its profile, an admin or an
/// auditor. Others get 404, so ids do not reveal that a request exists.
pub fn may_see(user: &User, requester: Uuid, profile: &Profile) -> bool {
    user.id == requester
        || user.has_role(Role::Admin)
        || user.has_role(Role::Auditor)
        || (user.has_role(Role::Approver)
            && user
                .group_names
                .0
                .iter()
                .any(|g| profile.approvers.contains(g)))
}

/// What a list of requests asks for (API `GET /requests`, the inbox, the dashboard).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only the viewer's own requests.
    pub mine: bool,
    /// One profile, one requester, a time range (the history page and the API).
    pub history: crate::store::HistoryFilter,
    /// Only these states (all when empty).
    pub states: Vec<crate::workflow::State>,
    /// Only what waits for the viewer's decision as an approver: pending requests and extensions
    /// of others, and break-glass activations awaiting review.
    pub reviewable: bool,
    /// Continue after this request (the `next` of the previous page).
    pub after: Option<Cursor>,
    /// Page size, at most [`MAX_PAGE`].
    pub limit: Option<i64>,
}

/// Page size when none is asked for (the API returned up to 200 requests before it paged).
pub const DEFAULT_PAGE: i64 = 200;
/// Largest page.
pub const MAX_PAGE: i64 = 500;

/// One listed request with the profile it was decided under and its requester's address.
#[derive(Debug, Clone)]
pub struct Listed {
    pub stored: StoredRequest,
    pub profile: Profile,
    pub requester_email: String,
}

/// A page of requests, newest first; `next` continues it (None on the last page).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Listed>,
    pub next: Option<Cursor>,
}

/// The store filter for what `user` may see (as [`may_see`] decides for one request), narrowed
/// by `q`. Visibility, states, ownership and reviewability are all decided in SQL, so nothing a
/// requester files can push a request out of an approver's list.
pub fn filter_for(user: &User, q: &ListQuery) -> AppResult<RequestFilter> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::Unprocessable(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok(RequestFilter {
        viewer: user.id,
        sees_all: user.has_role(Role::Admin) || user.has_role(Role::Auditor),
        approver_groups: if user.has_role(Role::Approver) {
            user.group_names.0.clone()
        } else {
            Vec::new()
        },
        mine: q.mine,
        states: q.states.clone(),
        reviewable: q.reviewable,
        history: q.history.clone(),
        after: q.after,
        limit,
    })
}

/// Requests `user` may see, newest first, one page at a time (see [`ListQuery`]).
pub async fn visible(
    store: &Store,
    tenant: &Tenant,
    user: &User,
    q: &ListQuery,
) -> AppResult<Page> {
    let filter = filter_for(user, q)?;
    let mut tx = store.read(tenant.tenant_id).await?;
    let (rows, next) = tx.list_requests(&filter).await?;
    let mut policies = Policies::default();
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let version = row.stored.policy_version;
        let Some(profile) = policies
            .profile(&mut tx, version, &row.stored.request.profile)
            .await?
        else {
            continue;
        };
        // The SQL filter decides; this only keeps a disagreement from ever showing more.
        if !may_see(user, row.stored.request.requester, &profile) {
            continue;
        }
        items.push(Listed {
            profile,
            stored: row.stored,
            requester_email: row.requester_email,
        });
    }
    tx.commit().await?;
    Ok(Page { items, next })
}

/// How many requests [`visible`] would list for `q` over all its pages.
pub async fn count_visible(
    store: &Store,
    tenant: &Tenant,
    user: &User,
    q: &ListQuery,
) -> AppResult<i64> {
    let filter = filter_for(user, q)?;
    let mut tx = store.read(tenant.tenant_id).await?;
    let n = tx.count_requests(&filter).await?;
    tx.commit().await?;
    Ok(n)
}

/// Loads a request `user` may see, with its profile.
pub async fn load(
    store: &Store,
    tenant: &Tenant,
    user: &User,
    id: Uuid,
) -> AppResult<(StoredRequest, Profile)> {
    let mut tx = store.read(tenant.tenant_id).await?;
    let found = load_in(&mut tx, user, id).await?;
    tx.commit().await?;
    Ok(found)
}

/// [`load`] inside a transaction the caller goes on using.
pub async fn load_in(
    tx: &mut TenantTx,
    user: &User,
    id: Uuid,
) -> AppResult<(StoredRequest, Profile)> {
    let not_found = || AppError::NotFound(format!("no request {id}"));
    let stored = tx.request(id).await?.ok_or_else(not_found)?;
    let profile = profile_of(tx, &stored).await?;
    if !may_see(user, stored.request.requester, &profile) {
        return Err(not_found());
    }
    Ok((stored, profile))
}

/// Applies a person's action (approve, deny, cancel, revoke, extend, review) to a request.
pub async fn act(
    store: &Store,
    links: &str,
    caller: &super::Caller,
    id: Uuid,
    event: Event,
    step_up: Option<&TakenStepUp>,
) -> AppResult<(StoredRequest, Profile)> {
    let (ctx, tenant, actor) = (&caller.ctx, &caller.tenant, &caller.user);
    let mut event = event;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let locked = lockdown_reason(&mut tx).await?;
    let (stored, profile) = lock_with_profile(&mut tx, id).await?;
    // Visibility first: acting on a request you cannot see is a 404, not a 403.
    if !may_see(actor, stored.request.requester, &profile) {
        tx.rollback().await?;
        return Err(AppError::NotFound(format!("no request {id}")));
    }
    let requester = tx
        .user_by_id(stored.request.requester)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("requester of {id} missing")))?;
    let deciding = match &event {
        Event::Approve { .. } => {
            with_current_requesters(&mut tx, profile.clone(), stored.policy_version).await?
        }
        _ => profile.clone(),
    };
    // A passkey step-up counts only for the decision it was issued for: this request as it is
    // now (an assertion for another request, or for this one before an extension, does not).
    let mut passkey_used = None;
    let proven = match (step_up, &mut event) {
        (Some(taken), Event::Approve { by, .. }) => {
            let binding = crate::workflow::approval_binding(&stored.request);
            match taken.verify(&mut tx, actor, &binding, ctx.now).await? {
                Ok(passkey) => {
                    by.stepped_up = true;
                    passkey_used = Some(passkey);
                    Ok(())
                }
                Err(why) => Err(Refusal::NotAllowed(crate::passkeys::not_accepted(&why))),
            }
        }
        (Some(_), _) => Err(Refusal::Invalid(
            "a passkey step-up is only taken with an approval".into(),
        )),
        (None, _) => Ok(()),
    };
    // Every refusal (the step-up, typed text, the state machine, lockdown) takes the one path
    // below.
    let result = proven
        .and_then(|()| crate::workflow::check_event_text(&event))
        .and_then(|()| {
            step(
                &stored.request,
                &person(&requester),
                &event,
                &deciding,
                ctx.now,
            )
        })
        .and_then(|(next, effects)| {
            refuse_in_lockdown(&effects, locked.as_deref())?;
            Ok((next, effects))
        });
    let (next, effects) = match result {
        Ok(ok) => ok,
        Err(refusal) => {
            // Where a step-up would happen: the request's page, where the approver sees what
            // they approve.
            let refusal = match refusal {
                Refusal::StepUpRequired(why) => Refusal::StepUpRequired(format!(
                    "{why}: approve with a passkey at {links}/requests/{id}"
                )),
                other => other,
            };
            tx.rollback().await?;
            audit_refusal(
                store,
                tenant,
                ctx,
                Some(id),
                &stored.request.profile,
                &refusal,
            )
            .await?;
            return Err(refusal.into());
        }
    };
    tx.save_request(&stored.request, &next, ctx.now).await?;
    if let Some(passkey) = passkey_used {
        tx.append_audit(
            &ctx.event("passkey.stepped_up", &next.profile)
                .request(id)
                .details(json!({ "passkey_id": passkey, "for": "approve" })),
            ctx.now,
        )
        .await?;
    }
    for effect in &effects {
        if let Some(event) = effect_event(&ctx.actor, &ctx.origin, &next, effect) {
            tx.append_audit(&event, ctx.now).await?;
        }
    }
    end_credentials(&mut tx, &ctx.actor, &ctx.origin, &next, &effects, ctx.now).await?;
    let hooks = tx.webhooks().await?;
    notify(
        &mut tx,
        Tell {
            links,
            hooks: &hooks,
        },
        &profile,
        &requester,
        &next,
        &effects,
        ctx.now,
    )
    .await?;
    if let Event::Deny { comment, .. }
    | Event::Approve {
        comment: Some(comment),
        ..
    } = &event
        && !comment.is_empty()
    {
        tx.append_audit(
            &ctx.event("request.commented", &next.profile)
                .request(id)
                .details(json!({ "comment": comment })),
            ctx.now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok((
        StoredRequest {
            request: next,
            policy_version: stored.policy_version,
        },
        profile,
    ))
}

/// After a restore from a backup (`ops::backup`): revokes every active and scheduled grant of
/// the tenant, as `ctx.actor` with the rights of an admin. The restored store cannot know which of
/// them were revoked after the backup was taken, so none is trusted; their holders ask again.
/// Returns the ids revoked.
pub async fn revoke_open_after_restore(
    store: &Store,
    ctx: &Ctx,
    tenant: &Tenant,
    reason: &str,
) -> AppResult<Vec<Uuid>> {
    let ids = {
        let mut tx = store.tenant(tenant.tenant_id).await?;
        let ids: Vec<Uuid> = tx
            .open_request_ids(None)
            .await?
            .into_iter()
            .filter(|(_, state)| {
                matches!(
                    state,
                    crate::workflow::State::Active | crate::workflow::State::Scheduled
                )
            })
            .map(|(id, _)| id)
            .collect();
        tx.commit().await?;
        ids
    };
    let restore = Person {
        id: Uuid::nil(),
        email: String::new(),
        groups: vec![],
        is_admin: true,
        is_approver: false,
        disabled: false,
        stepped_up: false,
    };
    let mut revoked = Vec::new();
    for id in ids {
        let mut tx = store.tenant(tenant.tenant_id).await?;
        let (stored, profile) = lock_with_profile(&mut tx, id).await?;
        let requester = tx
            .user_by_id(stored.request.requester)
            .await?
            .map(|u| person(&u))
            .unwrap_or_else(|| Person {
                id: stored.request.requester,
                email: String::new(),
                groups: vec![],
                is_admin: false,
                is_approver: false,
                disabled: true,
                stepped_up: false,
            });
        let Ok((next, effects)) = step(
            &stored.request,
            &requester,
            &Event::Revoke {
                by: restore.clone(),
                reason: reason.to_owned(),
            },
            &profile,
            ctx.now,
        ) else {
            // Ended meanwhile: nothing to revoke.
            tx.rollback().await?;
            continue;
        };
        tx.save_request(&stored.request, &next, ctx.now).await?;
        for effect in &effects {
            if let Some(event) = effect_event(&ctx.actor, &ctx.origin, &next, effect) {
                tx.append_audit(&event, ctx.now).await?;
            }
        }
        end_credentials(&mut tx, &ctx.actor, &ctx.origin, &next, &effects, ctx.now).await?;
        tx.commit().await?;
        revoked.push(id);
    }
    Ok(revoked)
}

/// Due requests moved per transaction by the reaper.
const TICK_BATCH: usize = 50;

/// One pass of time-driven transitions over a tenant: lapse, activate, expire. Idempotent; a
/// request another replica holds is skipped and picked up on the next pass.
pub async fn tick_tenant(
    store: &Store,
    links: &str,
    tenant: &Tenant,
    now: OffsetDateTime,
) -> AppResult<Ticked> {
    let mut late = Vec::new();
    let due = {
        let mut tx = store.read(tenant.tenant_id).await?;
        let ids = tx.due_request_ids(now).await?;
        tx.commit().await?;
        ids
    };
    let mut moved = 0;
    // Several requests per transaction: one commit (and on Postgres one fsync) per batch is
    // what lets a burst of ends keep up (issue 16: 10,000 grants ending within a minute).
    for batch in due.chunks(TICK_BATCH) {
        let mut tx = store.tenant(tenant.tenant_id).await?;
        let locked = lockdown_reason(&mut tx).await?;
        // Read once per batch, not once per request: the policy in force, each policy
        // version's profiles and each requester (a batch's requests share most of them).
        let in_force = tx.latest_policy_version().await?.map(|v| v.version);
        let hooks = tx.webhooks().await?;
        let mut policies = Policies::default();
        let mut people: HashMap<Uuid, Option<User>> = HashMap::new();
        let mut batch_late = Vec::new();
        let mut batch_moved = 0;
        for &id in batch {
            // Skipped when another replica holds it (it moves it) or it is gone.
            let Some(stored) = tx.request_unless_locked(id).await? else {
                continue;
            };
            let requester = match people.get(&stored.request.requester) {
                Some(known) => known.clone(),
                None => {
                    let u = tx.user_by_id(stored.request.requester).await?;
                    people.insert(stored.request.requester, u.clone());
                    u
                }
            };
            // Activation re-checks the profile against the policy in force: removed means not eligible.
            let current = match in_force {
                Some(v) => {
                    policies
                        .profile(&mut tx, v, &stored.request.profile)
                        .await?
                }
                None => None,
            };
            let decided = policies.decided(&mut tx, &stored).await?;
            let requester_now = if current.is_some() {
                requester.as_ref().map(person)
            } else {
                None
            };
            let profile = current.unwrap_or(decided);
            let requester_then = requester
                .as_ref()
                .map(person)
                .unwrap_or_else(|| gone(stored.request.requester));
            // In a lockdown a scheduled grant whose time has come is not activated: it is revoked.
            let event = match (&locked, stored.request.state) {
                (Some(reason), State::Scheduled) => Event::Withdraw {
                    reason: format!("not activated: emergency lockdown ({reason})"),
                },
                _ => Event::Tick {
                    requester: requester_now,
                },
            };
            let (next, effects) = step(&stored.request, &requester_then, &event, &profile, now)?;
            if next == stored.request {
                continue;
            }
            tx.save_request(&stored.request, &next, now).await?;
            for effect in &effects {
                if let Some(event) = effect_event(&Actor::System, &Origin::default(), &next, effect)
                {
                    tx.append_audit(&event, now).await?;
                }
            }
            end_credentials(
                &mut tx,
                &Actor::System,
                &Origin::default(),
                &next,
                &effects,
                now,
            )
            .await?;
            if let Some(requester) = &requester {
                notify(
                    &mut tx,
                    Tell {
                        links,
                        hooks: &hooks,
                    },
                    &profile,
                    requester,
                    &next,
                    &effects,
                    now,
                )
                .await?;
            }
            batch_moved += 1;
            if let (crate::workflow::State::Active, crate::workflow::State::Expired, Some(grant)) =
                (stored.request.state, next.state, &stored.request.grant)
            {
                batch_late.push(now - grant.not_after);
            }
        }
        tx.commit().await?;
        moved += batch_moved;
        late.extend(batch_late);
    }
    Ok(Ticked {
        moved,
        expired_late_by: late,
    })
}

/// Policy versions' profiles, each version read once.
#[derive(Default)]
struct Policies(HashMap<i64, Vec<Profile>>);

impl Policies {
    async fn profile(
        &mut self,
        tx: &mut TenantTx,
        version: i64,
        name: &str,
    ) -> AppResult<Option<Profile>> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.0.entry(version) {
            e.insert(tx.profiles_at(version).await?);
        }
        Ok(self.0[&version].iter().find(|p| p.name == name).cloned())
    }

    /// The profile `stored` was decided under; its absence is corrupt data.
    async fn decided(&mut self, tx: &mut TenantTx, stored: &StoredRequest) -> AppResult<Profile> {
        self.profile(tx, stored.policy_version, &stored.request.profile)
            .await?
            .ok_or_else(|| {
                AppError::internal(anyhow::anyhow!(
                    "profile {} missing from policy version {}",
                    stored.request.profile,
                    stored.policy_version
                ))
            })
    }
}

/// What one pass over a tenant did.
#[derive(Debug, Default)]
pub struct Ticked {
    pub moved: usize,
    /// For each grant it expired: how long after its end (`now - not_after`).
    pub expired_late_by: Vec<time::Duration>,
}
