//! The request lifecycle (DESIGN §3) as pure functions: (request, event, profile, now) → the new
//! request and the effects to carry out, or a refusal. Handlers, the CLI and the reaper never set
//! a state themselves; they call [`submit`] or [`step`] and store what comes back with its audit
//! records in one transaction.
//!
//! `approved` is a step, not a resting state: the last required approval activates the grant at
//! once (or schedules it when `starts_at` is in the future).

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::policy::Profile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Scheduled,
    Active,
    Denied,
    Cancelled,
    Lapsed,
    Expired,
    Revoked,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Pending,
        State::Scheduled,
        State::Active,
        State::Denied,
        State::Cancelled,
        State::Lapsed,
        State::Expired,
        State::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Scheduled => "scheduled",
            State::Active => "active",
            State::Denied => "denied",
            State::Cancelled => "cancelled",
            State::Lapsed => "lapsed",
            State::Expired => "expired",
            State::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Denied | State::Cancelled | State::Lapsed | State::Expired | State::Revoked
        )
    }
}

/// A person as the workflow sees them. The standing roles that matter to a decision travel with
/// them: `is_approver` (deciding and reviewing needs the `approver` role as well as membership of
/// the profile's approver groups) and `is_admin` (admins may revoke any grant). A front end that
/// acts for a narrower credential (an API token without the `approve` or `admin` scope) passes
/// the narrower person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: Uuid,
    pub email: String,
    pub groups: Vec<String>,
    pub is_approver: bool,
    pub is_admin: bool,
    pub disabled: bool,
    /// This action carries a WebAuthn assertion verified for it (a step-up). Profiles with
    /// `step_up = true` are approved only with one; only the broker sets it, after checking a
    /// profiles cannot be approved at all rather than approved without it.
    pub stepped_up: bool,
}

impl Person {
    /// A person as the workflow sees an account, with its standing roles.
    pub fn of(u: &crate::model::User) -> Self {
        use crate::model::Role;
        Person {
            id: u.id,
            email: u.email.clone(),
            groups: u.group_names.0.clone(),
            is_approver: u.has_role(Role::Approver),
            is_admin: u.has_role(Role::Admin),
            disabled: u.disabled,
            stepped_up: false,
        }
    }
    fn in_any(&self, groups: &[String]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }

    /// The same human: the same account, or another account with the same address.
    fn same_as(&self, other: &Person) -> bool {
        self.id == other.id || self.email.trim().eq_ignore_ascii_case(other.email.trim())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub approver: Uuid,
    pub round: u32,
    pub at: OffsetDateTime,
    /// Made with a passkey assertion bound to this decision.
    pub stepped_up: bool,
}

/// An extension waiting for its own approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub round: u32,
    pub added: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub activated_at: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// How a request became active without (all) its approvals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shortcut {
    AutoApproved,
    BreakGlass,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: Uuid,
    pub requester: Uuid,
    pub profile: String,
    pub duration: Duration,
    pub justification: String,
    pub ticket: Option<String>,
    pub starts_at: Option<OffsetDateTime>,
    pub state: State,
    pub created_at: OffsetDateTime,
    pub pending_until: OffsetDateTime,
    pub shortcut: Option<Shortcut>,
    pub approvals: Vec<Approval>,
    pub extension: Option<Extension>,
    pub grant: Option<Grant>,
    pub reviewed_by: Option<Uuid>,
}

/// What a caller asks for.
#[derive(Debug, Clone, Default)]
pub struct NewRequest {
    pub duration: Option<Duration>,
    pub justification: String,
    pub ticket: Option<String>,
    pub starts_at: Option<OffsetDateTime>,
    pub break_glass: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Approve {
        by: Person,
        comment: Option<String>,
    },
    Deny {
        by: Person,
        comment: String,
    },
    Cancel {
        by: Person,
    },
    Revoke {
        by: Person,
        reason: String,
    },
    Extend {
        by: Person,
        added: Duration,
    },
    /// A break-glass activation signed off by someone other than the requester.
    Review {
        by: Person,
    },
    /// Time passes: activate scheduled grants, expire active ones, lapse stale requests. The
    /// requester (as they are now) is needed to re-check eligibility at activation.
    Tick {
        requester: Option<Person>,
    },
    /// Access withdrawn by an administrative action (the requester was disabled, or a lockdown):
    /// a pending request is cancelled, a scheduled or active grant revoked and its credentials
    /// ended. Who may do this is the admin core's decision (admin pages, the operator's CLI).
    Withdraw {
        reason: String,
    },
}

/// What the caller must carry out (and audit) after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Approved {
        by: Uuid,
        round: u32,
        remaining: u32,
    },
    Activated {
        not_after: OffsetDateTime,
        shortcut: Option<Shortcut>,
    },
    Scheduled {
        starts_at: OffsetDateTime,
    },
    Extended {
        not_after: OffsetDateTime,
    },
    ExtensionRequested {
        added: Duration,
    },
    ExtensionDenied,
    Denied,
    Cancelled,
    Lapsed,
    Expired,
    Revoked {
        reason: String,
    },
    Reviewed {
        by: Uuid,
    },
    /// Credentials of this grant must be revoked/dropped now.
    EndCredentials,
}

/// Why a submission or transition was refused. Each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 403: the actor may not do this.
    #[error("{0}")]
    NotAllowed(String),
    /// 409: not possible in the request's current state (or already done).
    #[error("{0}")]
    Conflict(String),
    /// 422: the input breaks the profile's rules.
    #[error("{0}")]
    Invalid(String),
    /// 403 `step_up_required`: the profile is approved only with a passkey step-up.
    #[error("{0}")]
    StepUpRequired(String),
}

impl From<Refusal> for crate::error::AppError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotAllowed(m) => crate::error::AppError::Forbidden(m),
            Refusal::Conflict(m) => crate::error::AppError::Conflict(m),
            Refusal::Invalid(m) => crate::error::AppError::Unprocessable(m),
            Refusal::StepUpRequired(m) => crate::error::AppError::StepUpRequired(m),
        }
    }
}

/// Longest ticket reference accepted (it is carried in every SSH certificate of the grant).
pub const MAX_TICKET_CHARS: usize = 128;

/// Refuses control characters in the free text of an event (comments, revocation reasons), as
/// [`submit`] does for justifications: checked before any transition, whatever the front end.
pub fn check_event_text(event: &Event) -> Result<(), Refusal> {
    let text = match event {
        Event::Approve {
            comment: Some(c), ..
        }
        | Event::Deny { comment: c, .. } => Some(("comment", c)),
        Event::Revoke { reason, .. } => Some(("reason", reason)),
        _ => None,
    };
    match text {
        Some((field, value)) => {
            if value.len() > 2000 {
                return Err(Refusal::Invalid(format!(
                    "{field} is longer than 2000 characters"
                )));
            }
            crate::text::check(field, value, crate::text::Lines::Many).map_err(Refusal::Invalid)
        }
        None => Ok(()),
    }
}

/// How far ahead a request may be scheduled.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::days(30);

fn eligible(requester: &Person, profile: &Profile) -> Result<(), Refusal> {
    if requester.disabled {
        return Err(Refusal::NotAllowed("your account is disabled".into()));
    }
    if !requester.in_any(&profile.requesters) {
        return Err(Refusal::NotAllowed(format!(
            "profile {} may be requested by members of {} only",
            profile.name,
            profile.requesters.join(", ")
        )));
    }
    Ok(())
}

/// Validates a new request against its profile and decides where it starts: pending, or at once
/// active/scheduled through auto-approval or break-glass.
pub fn submit(
    id: Uuid,
    requester: &Person,
    profile: &Profile,
    new: NewRequest,
    now: OffsetDateTime,
) -> Result<(Request, Vec<Effect>), Refusal> {
    eligible(requester, profile)?;
    let duration = new
        .duration
        .unwrap_or(Duration::seconds(profile.default_duration_secs));
    if duration <= Duration::ZERO {
        return Err(Refusal::Invalid("duration must be positive".into()));
    }
    if duration > profile.max_duration() {
        return Err(Refusal::Invalid(format!(
            "duration {} is longer than {}'s max_duration {}",
            crate::duration::format(duration),
            profile.name,
            crate::duration::format(profile.max_duration())
        )));
    }
    let justification = new.justification.trim().to_owned();
    if profile.require_justification && justification.is_empty() {
        return Err(Refusal::Invalid(format!(
            "profile {} requires a justification",
            profile.name
        )));
    }
    if justification.len() > 2000 {
        return Err(Refusal::Invalid(
            "justification is longer than 2000 characters".into(),
        ));
    }
    crate::text::check("justification", &justification, crate::text::Lines::Many)
        .map_err(Refusal::Invalid)?;
    let ticket = new
        .ticket
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    if let Some(t) = &ticket {
        // The ticket goes into the SSH certificate: a long one makes a certificate sshd refuses.
        if t.chars().count() > MAX_TICKET_CHARS {
            return Err(Refusal::Invalid(format!(
                "ticket is longer than {MAX_TICKET_CHARS} characters"
            )));
        }
        crate::text::check("ticket", t, crate::text::Lines::One).map_err(Refusal::Invalid)?;
    }
    if let Some(pattern) = &profile.ticket_pattern {
        let re = regex::Regex::new(pattern)
            .map_err(|_| Refusal::Invalid("the profile's ticket_pattern is invalid".into()))?;
        match &ticket {
            Some(t) if re.is_match(t) => {}
            Some(t) => {
                return Err(Refusal::Invalid(format!(
                    "ticket {t:?} does not match {pattern}"
                )));
            }
            None => {
                return Err(Refusal::Invalid(format!(
                    "profile {} requires a ticket matching {pattern}",
                    profile.name
                )));
            }
        }
    }
    let starts_at = new.starts_at.filter(|s| *s > now);
    if starts_at.is_some_and(|s| s > now + MAX_SCHEDULE_AHEAD) {
        return Err(Refusal::Invalid(
            "starts_at is more than 30 days ahead".into(),
        ));
    }
    let mut req = Request {
        id,
        requester: requester.id,
        profile: profile.name.clone(),
        duration,
        justification,
        ticket,
        starts_at,
        state: State::Pending,
        created_at: now,
        pending_until: now + Duration::seconds(profile.pending_timeout_secs),
        shortcut: None,
        approvals: Vec::new(),
        extension: None,
        grant: None,
        reviewed_by: None,
    };
    let shortcut = if new.break_glass {
        if !profile.break_glass {
            return Err(Refusal::NotAllowed(format!(
                "profile {} does not allow break-glass",
                profile.name
            )));
        }
        Some(Shortcut::BreakGlass)
    } else if requester.in_any(&profile.auto_approve_groups) {
        Some(Shortcut::AutoApproved)
    } else {
        None
    };
    let mut effects = Vec::new();
    if let Some(shortcut) = shortcut {
        req.shortcut = Some(shortcut);
        // Break-glass is for now: it ignores starts_at.
        match (shortcut, req.starts_at) {
            (Shortcut::AutoApproved, Some(at)) => {
                req.state = State::Scheduled;
                effects.push(Effect::Scheduled { starts_at: at });
            }
            _ => {
                req.starts_at = None;
                effects.push(activate(&mut req, now));
            }
        }
    }
    Ok((req, effects))
}

fn activate(req: &mut Request, now: OffsetDateTime) -> Effect {
    let not_after = now + req.duration;
    req.state = State::Active;
    req.grant = Some(Grant {
        activated_at: now,
        not_after,
    });
    Effect::Activated {
        not_after,
        shortcut: req.shortcut,
    }
}

/// Whether `by` acts as an approver of `profile`: the `approver` role, membership of one of its
/// approver groups, and an account that is not disabled. Group membership alone is not enough: an
/// auditor or admin who happens to be in an approver group decides nothing.
/// Whether `by` decides requests for `profile`: the approver role, enabled, in one of its
/// approver groups.
pub fn approver_of(by: &Person, profile: &Profile) -> bool {
    by.is_approver && !by.disabled && by.in_any(&profile.approvers)
}

/// Who may end a grant early: its requester, an approver of its profile, or an admin.
pub fn may_revoke(by: &Person, requester: Uuid, profile: &Profile) -> bool {
    by.id == requester || (by.is_admin && !by.disabled) || approver_of(by, profile)
}

fn require_approver(by: &Person, req_requester: &Person, profile: &Profile) -> Result<(), Refusal> {
    if by.same_as(req_requester) {
        return Err(Refusal::NotAllowed(
            "you cannot approve or deny your own request".into(),
        ));
    }
    if !by.is_approver {
        return Err(Refusal::NotAllowed(
            "deciding on requests needs the approver role".into(),
        ));
    }
    if !approver_of(by, profile) {
        return Err(Refusal::NotAllowed(format!(
            "only members of {} may decide on {} requests",
            profile.approvers.join(", "),
            profile.name
        )));
    }
    Ok(())
}

/// Applies one event. `requester` is the request's requester as they are now.
pub fn step(
    req: &Request,
    requester: &Person,
    event: &Event,
    profile: &Profile,
    now: OffsetDateTime,
) -> Result<(Request, Vec<Effect>), Refusal> {
    let mut next = req.clone();
    let mut effects = Vec::new();
    let state = req.state;
    let illegal = |what: &str| {
        Refusal::Conflict(format!(
            "cannot {what} a request that is {}",
            state.as_str()
        ))
    };
    match event {
        Event::Approve { by, .. } => {
            let round = match (state, &req.extension) {
                (State::Pending, _) => 0,
                (State::Active, Some(ext)) => ext.round,
                _ => return Err(illegal("approve")),
            };
            require_approver(by, requester, profile)?;
            if profile.step_up && !by.stepped_up {
                return Err(Refusal::StepUpRequired(format!(
                    "profile {} is approved only with a passkey step-up; a token or a password \
                     session cannot approve it",
                    profile.name
                )));
            }
            if req
                .approvals
                .iter()
                .any(|a| a.round == round && a.approver == by.id)
            {
                return Err(Refusal::Conflict("you have already approved this".into()));
            }
            next.approvals.push(Approval {
                approver: by.id,
                round,
                at: now,
                stepped_up: by.stepped_up,
            });
            let have = next.approvals.iter().filter(|a| a.round == round).count() as u32;
            let remaining = profile.approvals_required.saturating_sub(have);
            effects.push(Effect::Approved {
                by: by.id,
                round,
                remaining,
            });
            if remaining == 0 {
                if round == 0 {
                    // Eligibility is checked again when the grant is decided: a requester who
                    // was disabled or left the requester groups while waiting gets no grant.
                    if let Err(why) = eligible(requester, profile) {
                        next.state = State::Revoked;
                        effects.push(Effect::Revoked {
                            reason: format!("not eligible at activation: {why}"),
                        });
                        return Ok((next, effects));
                    }
                    match req.starts_at {
                        Some(at) if at > now => {
                            next.state = State::Scheduled;
                            effects.push(Effect::Scheduled { starts_at: at });
                        }
                        _ => effects.push(activate(&mut next, now)),
                    }
                } else if let (Some(ext), Some(grant)) = (&req.extension, &req.grant) {
                    let not_after = capped(grant, ext.added, profile);
                    next.grant = Some(Grant {
                        activated_at: grant.activated_at,
                        not_after,
                    });
                    next.duration = not_after - grant.activated_at;
                    next.extension = None;
                    effects.push(Effect::Extended { not_after });
                }
            }
        }
        Event::Deny { by, .. } => match (state, &req.extension) {
            (State::Pending, _) => {
                require_approver(by, requester, profile)?;
                next.state = State::Denied;
                effects.push(Effect::Denied);
            }
            (State::Active, Some(_)) => {
                require_approver(by, requester, profile)?;
                next.extension = None;
                effects.push(Effect::ExtensionDenied);
            }
            _ => return Err(illegal("deny")),
        },
        Event::Cancel { by } => {
            if by.id != req.requester {
                return Err(Refusal::NotAllowed(
                    "only the requester can cancel a request".into(),
                ));
            }
            if !matches!(state, State::Pending | State::Scheduled) {
                return Err(illegal("cancel"));
            }
            next.state = State::Cancelled;
            effects.push(Effect::Cancelled);
        }
        Event::Revoke { by, reason } => {
            if !may_revoke(by, req.requester, profile) {
                return Err(Refusal::NotAllowed(
                    "only the requester, an approver or an admin can revoke".into(),
                ));
            }
            if !matches!(state, State::Active | State::Scheduled) {
                return Err(illegal("revoke"));
            }
            next.state = State::Revoked;
            next.extension = None;
            if let Some(grant) = &mut next.grant {
                grant.not_after = grant.not_after.min(now);
            }
            effects.push(Effect::Revoked {
                reason: reason.clone(),
            });
            effects.push(Effect::EndCredentials);
        }
        Event::Extend { by, added } => {
            if by.id != req.requester {
                return Err(Refusal::NotAllowed(
                    "only the requester can extend a grant".into(),
                ));
            }
            let (State::Active, Some(grant)) = (state, &req.grant) else {
                return Err(illegal("extend"));
            };
            if req.extension.is_some() {
                return Err(Refusal::Conflict(
                    "an extension is already waiting for approval".into(),
                ));
            }
            if *added <= Duration::ZERO {
                return Err(Refusal::Invalid("an extension must add time".into()));
            }
            if grant.not_after + *added - grant.activated_at > profile.max_duration() {
                return Err(Refusal::Invalid(format!(
                    "the grant would last longer than {}'s max_duration {}",
                    profile.name,
                    crate::duration::format(profile.max_duration())
                )));
            }
            let round = req.approvals.iter().map(|a| a.round).max().unwrap_or(0) + 1;
            next.extension = Some(Extension {
                round,
                added: *added,
            });
            effects.push(Effect::ExtensionRequested { added: *added });
        }
        Event::Review { by } => {
            if req.shortcut != Some(Shortcut::BreakGlass) {
                return Err(Refusal::Conflict(
                    "only break-glass activations are reviewed".into(),
                ));
            }
            if req.reviewed_by.is_some() {
                return Err(Refusal::Conflict("already reviewed".into()));
            }
            if !by.is_approver {
                return Err(Refusal::NotAllowed(
                    "reviewing a break-glass activation needs the approver role".into(),
                ));
            }
            require_approver(by, requester, profile).map_err(|_| {
                Refusal::NotAllowed(
                    "a break-glass activation is reviewed by an approver other than the requester"
                        .into(),
                )
            })?;
            next.reviewed_by = Some(by.id);
            effects.push(Effect::Reviewed { by: by.id });
        }
        Event::Tick { requester: current } => match state {
            State::Pending if now >= req.pending_until => {
                next.state = State::Lapsed;
                effects.push(Effect::Lapsed);
            }
            State::Scheduled if req.starts_at.is_none_or(|at| now >= at) => {
                let still = current
                    .as_ref()
                    .ok_or_else(|| Refusal::NotAllowed("requester no longer exists".into()));
                match still.and_then(|p| eligible(p, profile)) {
                    Ok(()) => effects.push(activate(&mut next, now)),
                    Err(why) => {
                        next.state = State::Revoked;
                        effects.push(Effect::Revoked {
                            reason: format!("not eligible at activation: {why}"),
                        });
                    }
                }
            }
            State::Active if req.grant.as_ref().is_some_and(|g| now >= g.not_after) => {
                next.state = State::Expired;
                next.extension = None;
                effects.push(Effect::Expired);
                effects.push(Effect::EndCredentials);
            }
            _ => {}
        },
        Event::Withdraw { reason } => match state {
            State::Pending => {
                next.state = State::Cancelled;
                effects.push(Effect::Cancelled);
            }
            State::Scheduled | State::Active => {
                next.state = State::Revoked;
                next.extension = None;
                if let Some(grant) = &mut next.grant {
                    grant.not_after = grant.not_after.min(now);
                }
                effects.push(Effect::Revoked {
                    reason: reason.clone(),
                });
                effects.push(Effect::EndCredentials);
            }
            _ => return Err(illegal("withdraw")),
        },
    }
    Ok((next, effects))
}

/// During a tenant lockdown nothing is granted: a transition that would activate a grant (the
/// last approval, auto-approval, break-glass) is refused (409) with the lockdown's reason.
pub fn refuse_in_lockdown(effects: &[Effect], lockdown: Option<&str>) -> Result<(), Refusal> {
    match lockdown {
        Some(reason)
            if effects
                .iter()
                .any(|e| matches!(e, Effect::Activated { .. })) =>
        {
            Err(Refusal::Conflict(format!(
                "the organisation is in emergency lockdown ({reason}): no access is granted until an admin lifts it"
            )))
        }
        _ => Ok(()),
    }
}

/// An extended end, never beyond `max_duration` from activation.
fn capped(grant: &Grant, added: Duration, profile: &Profile) -> OffsetDateTime {
    (grant.not_after + added).min(grant.activated_at + profile.max_duration())
}

/// Why `caller` gets no credentials for request `r` now (None: they do): only the requester, only
/// while the grant is active (by the clock, not just the stored state), only when the profile as
/// decided grants `what`.
pub fn credential_refusal(
    r: &Request,
    caller: Uuid,
    profile_grants: bool,
    what: &str,
    profile_name: &str,
    now: OffsetDateTime,
) -> Option<crate::error::AppError> {
    if r.requester != caller {
        return Some(crate::error::AppError::Forbidden(
            "only the requester gets credentials for a grant".into(),
        ));
    }
    if !profile_grants {
        return Some(crate::error::AppError::Conflict(format!(
            "profile {profile_name} grants no {what} access"
        )));
    }
    match (&r.grant, r.state) {
        (Some(g), State::Active) if g.not_after > now => None,
        _ => Some(crate::error::AppError::Conflict(format!(
            "the grant is not active (request is {})",
            r.state.as_str()
        ))),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_offboard;

/// What a step-up for approving `req` is bound to: a digest of the request as the approver sees
/// it (who asks, for which profile, how long or how much more, from when, why). An assertion
/// made for another request, or for this one before it changed (an extension asked since), does
/// not match.
pub fn approval_binding(req: &Request) -> String {
    use sha2::Digest;
    let what = serde_json::json!({
        "decision": "approve",
        "request": req.id,
        "requester": req.requester,
        "profile": req.profile,
        "duration_secs": req.duration.whole_seconds(),
        "extension": req.extension.as_ref().map(|e| (e.round, e.added.whole_seconds())),
        "starts_at": req.starts_at.map(|t| t.unix_timestamp()),
        "justification": req.justification,
        "ticket": req.ticket,
    });
    hex::encode(sha2::Sha256::digest(what.to_string().as_bytes()))
}
