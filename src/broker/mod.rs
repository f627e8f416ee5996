//! The broker: what the front ends (the API, the pages, the CLI) ask of elevate. Each action
//! loads and locks what it needs once, calls the pure core (`workflow`, `policy`, `ssh::cert`)
//! and writes the outcome with its audit record in one store transaction.

pub mod db;
pub mod detail;
pub mod policy;
pub mod service;
pub mod sessions;
pub mod ssh;
pub mod wake;

use std::sync::Arc;

use time::Duration;
use uuid::Uuid;

use crate::audit::Ctx;
use crate::crypto::MasterKey;
use crate::error::AppResult;
use crate::model::{Tenant, User};
use crate::passkeys::{self as passkey, RelyingParty, StepUpProof, TakenStepUp};
use crate::policy::Profile;
use crate::store::{Store, StoredRequest};
use crate::telemetry::{Credential, Telemetry};
use crate::workflow::{Event, NewRequest, Person};

/// Who asks, as every action needs it: the audit context, the tenant, the account, and the
/// person the workflow sees (narrowed to what the credential allows: an API token without the
/// `approve` scope decides nothing, whatever its user's roles).
#[derive(Debug, Clone)]
pub struct Caller {
    pub ctx: Ctx,
    pub tenant: Tenant,
    pub user: User,
    pub person: Person,
}

impl Caller {
    /// A caller with the full standing roles of `user` (a signed-in person, the operator's CLI).
    pub fn new(ctx: Ctx, tenant: Tenant, user: User) -> Self {
        let person = service::person(&user);
        Self {
            ctx,
            tenant,
            user,
            person,
        }
    }
}

/// A request as the front ends show it, with the profile it was decided under.
#[derive(Debug, Clone)]
pub struct Shown {
    pub stored: StoredRequest,
    pub profile: Profile,
}

impl From<(StoredRequest, Profile)> for Shown {
    fn from((stored, profile): (StoredRequest, Profile)) -> Self {
        Self { stored, profile }
    }
}

/// The broker's dependencies, cloned cheaply into every handler.
#[derive(Clone)]
pub struct Broker {
    pub store: Store,
    pub master: Arc<MasterKey>,
    /// The public URL, for links in notifications.
    pub links: Arc<str>,
    /// Wakes the reaper for work that should not wait for its next pass (ended logins).
    pub reaper_wake: Arc<tokio::sync::Notify>,
    /// Wakes the reaper's postman alone, to send what a transition queued.
    pub postman_wake: Arc<tokio::sync::Notify>,
    pub telemetry: Arc<Telemetry>,
    /// The WebAuthn relying party (elevate at its public URL) for step-ups.
    pub passkeys: RelyingParty,
}

impl Broker {
    pub async fn file(&self, c: &Caller, profile: &str, new: NewRequest) -> AppResult<Shown> {
        service::file(&self.store, &self.links, c, profile, new, None)
            .await
            .map(Shown::from)
    }

    /// Files a request with a passkey step-up (break-glass): the ceremony is spent first.
    pub async fn file_with_step_up(
        &self,
        c: &Caller,
        profile: &str,
        new: NewRequest,
        proof: &StepUpProof,
    ) -> AppResult<Shown> {
        let taken = passkey::take_step_up(&self.store, &self.passkeys, &c.tenant, proof).await?;
        service::file(&self.store, &self.links, c, profile, new, Some(&taken))
            .await
            .map(Shown::from)
    }

    /// Starts a step-up of the caller bound to `binding` (what the assertion will be for).
    pub async fn begin_step_up(
        &self,
        c: &Caller,
        binding: &str,
    ) -> AppResult<(Uuid, webauthn_rs::prelude::RequestChallengeResponse)> {
        passkey::begin_step_up(
            &self.store,
            &self.passkeys,
            &c.tenant,
            &c.user,
            binding,
            c.ctx.now,
        )
        .await
    }

    /// Starts a step-up for break-glass on `profile`.
    pub async fn begin_break_glass_step_up(
        &self,
        c: &Caller,
        profile: &str,
    ) -> AppResult<(Uuid, webauthn_rs::prelude::RequestChallengeResponse)> {
        let binding = service::break_glass_binding(&c.user, profile);
        self.begin_step_up(c, &binding).await
    }

    pub async fn show(&self, c: &Caller, id: Uuid) -> AppResult<Shown> {
        service::load(&self.store, &c.tenant, &c.user, id)
            .await
            .map(Shown::from)
    }

    /// The SSH sessions hosts reported for a request `c` may see.
    pub async fn sessions_of(
        &self,
        c: &Caller,
        id: Uuid,
    ) -> AppResult<Vec<crate::store::SshSession>> {
        sessions::of_request(&self.store, c, id).await
    }

    /// A session of a request `c` may see (without its recording).
    pub async fn session(&self, c: &Caller, id: Uuid) -> AppResult<crate::store::SshSession> {
        sessions::one(&self.store, c, id).await
    }

    /// A session's recording, for someone who may see its request (audited).
    pub async fn recording(
        &self,
        c: &Caller,
        id: Uuid,
    ) -> AppResult<(crate::store::SshSession, Vec<u8>)> {
        sessions::recording(&self.store, c, id).await
    }

    /// [`Self::show`] with the people's addresses and the decisions with their comments.
    pub async fn detail(&self, c: &Caller, id: Uuid) -> AppResult<detail::Detail> {
        detail::load(&self.store, &c.tenant, &c.user, id).await
    }

    /// A person's transition, in one transaction that locks the request; the reaper is woken
    /// when the transition needs a pass before its next one (see `wake::reaper_wanted_after`).
    async fn act(&self, c: &Caller, id: Uuid, event: Event) -> AppResult<Shown> {
        self.act_proven(c, id, event, None).await
    }

    async fn act_proven(
        &self,
        c: &Caller,
        id: Uuid,
        event: Event,
        step_up: Option<&TakenStepUp>,
    ) -> AppResult<Shown> {
        let shown = service::act(&self.store, &self.links, c, id, event, step_up).await?;
        if wake::reaper_wanted_after(&shown.0.request, c.ctx.now) {
            self.reaper_wake.notify_one();
        } else {
            self.postman_wake.notify_one();
        }
        Ok(shown.into())
    }

    pub async fn approve(&self, c: &Caller, id: Uuid, comment: Option<String>) -> AppResult<Shown> {
        let by = c.person.clone();
        self.act(c, id, Event::Approve { by, comment }).await
    }

    /// Approves with a passkey step-up: the proof's ceremony is spent first (whatever follows,
    /// it cannot be replayed), then checked against the request as it is under the lock.
    pub async fn approve_with_step_up(
        &self,
        c: &Caller,
        id: Uuid,
        comment: Option<String>,
        proof: &StepUpProof,
    ) -> AppResult<Shown> {
        let taken = passkey::take_step_up(&self.store, &self.passkeys, &c.tenant, proof).await?;
        let by = c.person.clone();
        self.act_proven(c, id, Event::Approve { by, comment }, Some(&taken))
            .await
    }

    /// Starts a step-up for approving request `id` as the caller sees it now.
    pub async fn begin_approval_step_up(
        &self,
        c: &Caller,
        id: Uuid,
    ) -> AppResult<(Uuid, webauthn_rs::prelude::RequestChallengeResponse)> {
        let shown = self.show(c, id).await?;
        let binding = crate::workflow::approval_binding(&shown.stored.request);
        self.begin_step_up(c, &binding).await
    }

    /// A second admin approves a proposed policy with a passkey step-up.
    pub async fn approve_policy_proposal(
        &self,
        c: &Caller,
        id: Uuid,
        proof: &StepUpProof,
    ) -> AppResult<policy::Applied> {
        let taken = passkey::take_step_up(&self.store, &self.passkeys, &c.tenant, proof).await?;
        policy::approve_proposal(&self.store, c, id, &taken).await
    }

    /// Starts a step-up for approving policy proposal `id` as it stands.
    pub async fn begin_proposal_step_up(
        &self,
        c: &Caller,
        id: Uuid,
    ) -> AppResult<(Uuid, webauthn_rs::prelude::RequestChallengeResponse)> {
        let mut tx = self.store.tenant(c.tenant.tenant_id).await?;
        let proposal = tx
            .policy_proposal(id)
            .await?
            .filter(|p| p.state == "proposed")
            .ok_or_else(|| {
                crate::error::AppError::NotFound(format!("no open policy proposal {id}"))
            })?;
        tx.commit().await?;
        let binding = policy::proposal_binding(id, &proposal.digest);
        self.begin_step_up(c, &binding).await
    }

    pub async fn deny(&self, c: &Caller, id: Uuid, comment: String) -> AppResult<Shown> {
        let by = c.person.clone();
        self.act(c, id, Event::Deny { by, comment }).await
    }

    pub async fn cancel(&self, c: &Caller, id: Uuid) -> AppResult<Shown> {
        let by = c.person.clone();
        self.act(c, id, Event::Cancel { by }).await
    }

    pub async fn revoke(&self, c: &Caller, id: Uuid, reason: String) -> AppResult<Shown> {
        let by = c.person.clone();
        self.act(c, id, Event::Revoke { by, reason }).await
    }

    pub async fn extend(&self, c: &Caller, id: Uuid, added: Duration) -> AppResult<Shown> {
        let by = c.person.clone();
        self.act(c, id, Event::Extend { by, added }).await
    }

    pub async fn review(&self, c: &Caller, id: Uuid) -> AppResult<Shown> {
        let by = c.person.clone();
        self.act(c, id, Event::Review { by }).await
    }

    pub async fn issue_ssh_certificate(
        &self,
        c: &Caller,
        id: Uuid,
        public_key: &str,
    ) -> AppResult<ssh::Issued> {
        let issued = ssh::issue(
            &self.store,
            &self.master,
            &c.ctx,
            &c.tenant,
            &c.user,
            id,
            public_key,
        )
        .await;
        self.telemetry
            .credential(Credential::SshCertificate, &issued);
        issued
    }

    pub async fn issue_db_login(&self, c: &Caller, id: Uuid) -> AppResult<db::IssuedLogin> {
        let login = db::issue(&self.store, &self.master, &c.ctx, &c.tenant, &c.user, id).await;
        self.telemetry.credential(Credential::DbLogin, &login);
        login
    }

    pub async fn list(&self, c: &Caller, q: &service::ListQuery) -> AppResult<service::Page> {
        service::visible(&self.store, &c.tenant, &c.user, q).await
    }

    /// [`Self::list`] with each request's people and decisions (the approvals inbox).
    pub async fn list_detailed(
        &self,
        c: &Caller,
        q: &service::ListQuery,
    ) -> AppResult<(Vec<detail::Detail>, Option<crate::store::Cursor>)> {
        let page = service::visible(&self.store, &c.tenant, &c.user, q).await?;
        let details = detail::of_listed(&self.store, &c.tenant, page.items).await?;
        Ok((details, page.next))
    }
}
