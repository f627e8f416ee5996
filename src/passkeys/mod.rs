//! Passkeys (WebAuthn, by webauthn-rs): registering one, removing one, and the step-up
//! assertion that approving a `step_up` profile needs (signing in with one is in
//! `auth::passkey`). User verification is always required and
//! attestation is not asked for. A ceremony's state stays server-side (`webauthn_ceremonies`)
//! for five minutes and is taken out of the store before it is checked, so it is used at most
//! once whatever the outcome.

use std::sync::Arc;

use base64::Engine;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Webauthn,
    WebauthnBuilder,
};

use webauthn_rs_proto::ResidentKeyRequirement;

use crate::audit::Ctx;
use crate::error::{AppError, AppResult};
use crate::model::{CeremonyPurpose, PasskeyRecord, StoredCeremony, Tenant, User};
use crate::store::{Store, TenantTx};

/// How long a ceremony (a registration, a sign-in, a step-up) may take.
pub const CEREMONY_TTL: Duration = Duration::minutes(5);

/// Longest passkey name accepted.
pub const MAX_NAME_CHARS: usize = 60;

/// The relying party: elevate at its public URL. WebAuthn needs a domain name there (browsers
/// refuse an IP address), so with an IP address passkeys are off and the pages say why.
#[derive(Clone)]
pub struct RelyingParty {
    webauthn: Option<Arc<Webauthn>>,
    why_off: Arc<str>,
}

impl RelyingParty {
    pub fn for_public_url(public_url: &str) -> Self {
        match build(public_url) {
            Ok(w) => Self {
                webauthn: Some(Arc::new(w)),
                why_off: "".into(),
            },
            Err(why) => Self {
                webauthn: None,
                why_off: why.into(),
            },
        }
    }

    pub fn is_available(&self) -> bool {
        self.webauthn.is_some()
    }

    pub(crate) fn webauthn(&self) -> AppResult<&Webauthn> {
        self.webauthn.as_deref().ok_or_else(|| {
            AppError::Unprocessable(format!("passkeys are not available here: {}", self.why_off))
        })
    }
}

fn build(public_url: &str) -> Result<Webauthn, String> {
    let url = Url::parse(public_url).map_err(|e| format!("public_url {public_url:?}: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("public_url {public_url} has no host"))?
        .to_owned();
    if host
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .is_ok()
    {
        return Err(format!(
            "public_url {public_url} names an IP address; WebAuthn needs a domain name \
             (use https://localhost:PORT on one machine)"
        ));
    }
    WebauthnBuilder::new(&host, &url)
        .and_then(|b| b.rp_name("elevate").build())
        .map_err(|e| format!("public_url {public_url}: {e}"))
}

/// The base64url form of a credential id, as browsers and the store name it.
pub fn credential_id(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::internal(anyhow::anyhow!("{e}"))
}

pub(crate) fn parse_passkey(record: &PasskeyRecord) -> AppResult<Passkey> {
    serde_json::from_str(&record.passkey).map_err(internal)
}

/// Takes the ceremony `id` out of the store in a transaction of its own, so it is spent even
/// when what follows is refused.
pub(crate) async fn take(
    store: &Store,
    tenant: &Tenant,
    id: Uuid,
) -> AppResult<Option<StoredCeremony>> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let taken = tx.take_ceremony(id).await?;
    tx.commit().await?;
    Ok(taken)
}

/// The taken ceremony when it may be used for `purpose` by `user` now; otherwise why not.
pub(crate) fn usable(
    ceremony: Option<&StoredCeremony>,
    purpose: CeremonyPurpose,
    user: Option<Uuid>,
    now: OffsetDateTime,
) -> Result<&StoredCeremony, &'static str> {
    match ceremony {
        None => Err("unknown or already used challenge"),
        Some(c) if c.purpose != purpose.as_str() => Err("challenge issued for something else"),
        Some(c) if user.is_some() && c.user_id != user => Err("challenge issued to someone else"),
        Some(c) if now >= c.expires_at => Err("challenge expired"),
        Some(c) => Ok(c),
    }
}

// ---------------------------------------------------------------------------------------------
// Registration.

/// Starts registering a passkey for `user`: the options for `navigator.credentials.create` and
/// the ceremony id to finish with. Discoverable credentials are preferred, so the passkey can
/// sign in without an email address.
pub async fn begin_registration(
    store: &Store,
    rp: &RelyingParty,
    tenant: &Tenant,
    user: &User,
    now: OffsetDateTime,
) -> AppResult<(Uuid, CreationChallengeResponse)> {
    let webauthn = rp.webauthn()?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let mut existing = Vec::new();
    for record in tx.passkeys_of(user.id).await? {
        existing.push(parse_passkey(&record)?.cred_id().clone());
    }
    let display = if user.display_name.is_empty() {
        user.email.clone()
    } else {
        user.display_name.clone()
    };
    let (mut options, state): (CreationChallengeResponse, PasskeyRegistration) = webauthn
        .start_passkey_registration(user.id, &user.email, &display, Some(existing))
        .map_err(internal)?;
    if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
        selection.resident_key = Some(ResidentKeyRequirement::Preferred);
    }
    let state = serde_json::to_string(&state).map_err(internal)?;
    let id = tx
        .insert_ceremony(
            Some(user.id),
            CeremonyPurpose::Register,
            "",
            &state,
            now,
            now + CEREMONY_TTL,
        )
        .await?;
    tx.commit().await?;
    Ok((id, options))
}

/// Checks a passkey's name: what the passkeys page shows and the audit log records.
pub fn check_name(name: &str) -> AppResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::Unprocessable("give the passkey a name".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(AppError::Unprocessable(format!(
            "a passkey's name is at most {MAX_NAME_CHARS} characters, with no control characters"
        )));
    }
    Ok(name.to_owned())
}

/// The browser's answer to a ceremony: which one, and its `PublicKeyCredential` (JSON).
#[derive(Debug, Clone)]
pub struct Answer<'a> {
    pub ceremony: Uuid,
    pub credential: &'a str,
}

/// Finishes a registration with the browser's answer. Audited with the credential id, never key
/// material.
pub async fn finish_registration(
    store: &Store,
    rp: &RelyingParty,
    ctx: &Ctx,
    (tenant, user): (&Tenant, &User),
    name: &str,
    answer: Answer<'_>,
) -> AppResult<PasskeyRecord> {
    let webauthn = rp.webauthn()?;
    let name = check_name(name)?;
    let credential = answer.credential;
    let taken = take(store, tenant, answer.ceremony).await?;
    let taken = usable(
        taken.as_ref(),
        CeremonyPurpose::Register,
        Some(user.id),
        ctx.now,
    )
    .map_err(|why| {
        AppError::BadRequest(format!(
            "the passkey was not registered: {why}; start again"
        ))
    })?;
    let state: PasskeyRegistration = serde_json::from_str(&taken.state).map_err(internal)?;
    let answer: RegisterPublicKeyCredential = serde_json::from_str(credential)
        .map_err(|e| AppError::BadRequest(format!("not a WebAuthn registration: {e}")))?;
    let passkey = webauthn
        .finish_passkey_registration(&answer, &state)
        .map_err(|e| AppError::BadRequest(format!("the passkey was not registered: {e}")))?;
    let cred = credential_id(passkey.cred_id());
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let stored = serde_json::to_string(&passkey).map_err(internal)?;
    let record = tx
        .insert_passkey(user.id, &cred, &name, &stored, ctx.now)
        .await?;
    tx.append_audit(
        &ctx.event("passkey.registered", &user.email)
            .details(json!({ "passkey_id": record.id, "credential_id": cred, "name": name })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(record)
}

/// Renames one of `user`'s passkeys.
pub async fn rename(
    store: &Store,
    ctx: &Ctx,
    tenant: &Tenant,
    user: &User,
    id: Uuid,
    name: &str,
) -> AppResult<()> {
    let name = check_name(name)?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    if !tx.rename_passkey(user.id, id, &name).await? {
        return Err(AppError::NotFound(format!("no passkey {id}")));
    }
    tx.append_audit(
        &ctx.event("passkey.renamed", &user.email)
            .details(json!({ "passkey_id": id, "name": name })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes one of `user`'s passkeys. The last one is kept while the person approves a profile
/// that needs a step-up (they could approve nothing without it); with another one left, the
/// removal needs a step-up with one of the others (`proof`), so a stolen session cannot strip a
/// person of their passkeys.
pub async fn remove(
    store: &Store,
    rp: &RelyingParty,
    ctx: &Ctx,
    tenant: &Tenant,
    user: &User,
    id: Uuid,
    proof: Option<(Uuid, &str)>,
) -> AppResult<()> {
    let taken = match proof {
        Some((ceremony, credential)) => {
            let proof = StepUpProof {
                ceremony,
                credential: credential.to_owned(),
            };
            Some(take_step_up(store, rp, tenant, &proof).await?)
        }
        None => None,
    };
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let mine = tx.passkeys_of(user.id).await?;
    let Some(target) = mine.iter().find(|p| p.id == id) else {
        return Err(AppError::NotFound(format!("no passkey {id}")));
    };
    if mine.len() == 1 {
        let approves_step_up = tx.latest_policy_version().await?.map(|v| v.version);
        let needs = match approves_step_up {
            Some(v) => {
                let me = crate::workflow::Person::of(user);
                tx.profiles_at(v)
                    .await?
                    .iter()
                    .any(|p| p.step_up && crate::workflow::approver_of(&me, p))
            }
            None => false,
        };
        if needs {
            return Err(AppError::Conflict(
                "this is your last passkey and you approve profiles that need a passkey step-up: \
                 register another one before removing it"
                    .into(),
            ));
        }
    } else {
        let verified = match &taken {
            Some(t) => Some(
                t.verify(&mut tx, user, &removal_binding(id), ctx.now)
                    .await?
                    .map_err(|why| AppError::Forbidden(not_accepted(&why)))?,
            ),
            None => None,
        };
        match verified {
            Some(used) if used != id => {}
            Some(_) => {
                return Err(AppError::StepUpRequired(
                    "confirm with another of your passkeys, not the one being removed".into(),
                ));
            }
            None => {
                return Err(AppError::StepUpRequired(
                    "removing a passkey needs a step-up with another of your passkeys".into(),
                ));
            }
        }
    }
    tx.delete_passkey(user.id, id).await?;
    tx.append_audit(
        &ctx.event("passkey.removed", &user.email).details(
            json!({ "passkey_id": id, "credential_id": target.credential_id, "name": target.name }),
        ),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Step-up: an assertion bound to one decision.

/// Starts a step-up for `user`, bound to `binding` (see `workflow::approval_binding`): the
/// options for `navigator.credentials.get` and the ceremony id.
pub async fn begin_step_up(
    store: &Store,
    rp: &RelyingParty,
    tenant: &Tenant,
    user: &User,
    binding: &str,
    now: OffsetDateTime,
) -> AppResult<(Uuid, RequestChallengeResponse)> {
    let webauthn = rp.webauthn()?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let mut passkeys = Vec::new();
    for record in tx.passkeys_of(user.id).await? {
        passkeys.push(parse_passkey(&record)?);
    }
    if passkeys.is_empty() {
        return Err(AppError::Unprocessable(
            "you have no passkey yet: register one on the passkeys page first".into(),
        ));
    }
    let (options, state): (RequestChallengeResponse, PasskeyAuthentication) = webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(internal)?;
    let state = serde_json::to_string(&state).map_err(internal)?;
    let id = tx
        .insert_ceremony(
            Some(user.id),
            CeremonyPurpose::StepUp,
            binding,
            &state,
            now,
            now + CEREMONY_TTL,
        )
        .await?;
    tx.commit().await?;
    Ok((id, options))
}

/// What a refused step-up says, wherever it is refused.
pub fn not_accepted(why: &str) -> String {
    format!("the passkey step-up was not accepted: {why}")
}

/// A step-up assertion as a front end received it, for the broker to check.
#[derive(Debug, Clone)]
pub struct StepUpProof {
    pub ceremony: Uuid,
    /// The browser's `PublicKeyCredential`, JSON.
    pub credential: String,
}

/// A spent ceremony and the assertion to check against it inside the action's transaction.
pub struct TakenStepUp {
    ceremony: Option<StoredCeremony>,
    credential: String,
    rp: RelyingParty,
}

/// Spends the proof's ceremony (its own transaction), before the action locks anything.
pub async fn take_step_up(
    store: &Store,
    rp: &RelyingParty,
    tenant: &Tenant,
    proof: &StepUpProof,
) -> AppResult<TakenStepUp> {
    Ok(TakenStepUp {
        ceremony: take(store, tenant, proof.ceremony).await?,
        credential: proof.credential.clone(),
        rp: rp.clone(),
    })
}

impl TakenStepUp {
    /// Checks the assertion in the action's transaction: issued to `user`, for `binding`, not
    /// expired, made with one of their passkeys with user verification. Records the passkey's
    /// use. `Ok(Err(why))` is a refusal to audit; `Err` a failure of the store.
    pub async fn verify(
        &self,
        tx: &mut TenantTx,
        user: &User,
        binding: &str,
        now: OffsetDateTime,
    ) -> AppResult<Result<Uuid, String>> {
        let ceremony = match usable(
            self.ceremony.as_ref(),
            CeremonyPurpose::StepUp,
            Some(user.id),
            now,
        ) {
            Ok(c) => c,
            Err(why) => return Ok(Err(why.into())),
        };
        if ceremony.binding != binding {
            return Ok(Err(
                "the passkey confirmed something else (another request, or this one before it changed)"
                    .into(),
            ));
        }
        let webauthn = self.rp.webauthn()?;
        let state: PasskeyAuthentication =
            serde_json::from_str(&ceremony.state).map_err(internal)?;
        let Ok(answer) = serde_json::from_str::<PublicKeyCredential>(&self.credential) else {
            return Ok(Err("not a WebAuthn assertion".into()));
        };
        let result = match webauthn.finish_passkey_authentication(&answer, &state) {
            Ok(r) => r,
            Err(e) => return Ok(Err(format!("the assertion was not accepted ({e})"))),
        };
        if !result.user_verified() {
            return Ok(Err("the passkey did not verify the user".into()));
        }
        let used = credential_id(result.cred_id());
        for record in tx.passkeys_of(user.id).await? {
            if record.credential_id == used {
                let mut passkey = parse_passkey(&record)?;
                passkey.update_credential(&result);
                let stored = serde_json::to_string(&passkey).map_err(internal)?;
                tx.record_passkey_use(record.id, &stored, now).await?;
                return Ok(Ok(record.id));
            }
        }
        Ok(Err("the passkey is no longer registered".into()))
    }
}

/// What a step-up for removing passkey `id` is bound to.
pub fn removal_binding(id: Uuid) -> String {
    format!("remove passkey {id}")
}

// ---------------------------------------------------------------------------------------------
// Admin changes from a browser: a recent step-up of the session.

/// How long a session's passkey confirmation counts for admin changes.
pub const ADMIN_STEP_UP_TTL: Duration = Duration::minutes(5);

/// What a session's step-up is bound to: that session.
pub fn session_binding(session: Uuid) -> String {
    format!("session {session}")
}

/// Whether an admin change needs a passkey when the admin has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasskeyNeeded {
    /// Only when the organisation requires one (`require_passkey_for_admin`).
    AsTheTenantSays,
    /// Always (admin rights handed to another device).
    Always,
}

/// Why `user`'s session may not make an admin change now, if it may not: the admin has a
/// passkey (or the tenant requires one) and the session has not confirmed with it in the last
/// five minutes. Tokens are not sessions: the API and CLI keep working for operators' scripts.
pub async fn admin_change_refusal(
    store: &Store,
    links: &str,
    tenant: &Tenant,
    user: &User,
    session: Uuid,
    now: OffsetDateTime,
    needed: PasskeyNeeded,
) -> AppResult<Option<AppError>> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let has_passkey = !tx.passkeys_of(user.id).await?.is_empty();
    let required = has_passkey
        || needed == PasskeyNeeded::Always
        || tx
            .tenant_flag(crate::store::TenantFlag::RequirePasskeyForAdmin)
            .await?;
    let recent = tx
        .session_stepped_up_at(session)
        .await?
        .is_some_and(|at| now - at <= ADMIN_STEP_UP_TTL);
    tx.commit().await?;
    Ok(match (required, recent, has_passkey) {
        (false, _, _) | (true, true, _) => None,
        (true, false, true) => Some(AppError::StepUpRequired(format!(
            "admin changes need a passkey confirmation in the last {} minutes: confirm at \
             {links}/step-up, then try again",
            ADMIN_STEP_UP_TTL.whole_minutes()
        ))),
        (true, false, false) => Some(AppError::Forbidden(format!(
            "this organisation requires a passkey for admin changes: register one at \
             {links}/passkeys"
        ))),
    })
}

/// Confirms the session with a passkey (for admin changes in the next five minutes). Audited.
pub async fn step_up_session(
    store: &Store,
    rp: &RelyingParty,
    ctx: &Ctx,
    (tenant, user): (&Tenant, &User),
    session: Uuid,
    proof: &StepUpProof,
) -> AppResult<()> {
    let taken = take_step_up(store, rp, tenant, proof).await?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    match taken
        .verify(&mut tx, user, &session_binding(session), ctx.now)
        .await?
    {
        Ok(passkey) => {
            tx.set_session_stepped_up(session, ctx.now).await?;
            tx.append_audit(
                &ctx.event("passkey.stepped_up", &user.email).details(
                    json!({ "passkey_id": passkey, "for": "session", "session_id": session }),
                ),
                ctx.now,
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }
        Err(why) => {
            tx.rollback().await?;
            let mut tx = store.tenant(tenant.tenant_id).await?;
            tx.append_audit(
                &ctx.event("passkey.step_up_refused", &user.email)
                    .details(json!({ "for": "session", "session_id": session, "reason": why })),
                ctx.now,
            )
            .await?;
            tx.commit().await?;
            Err(AppError::Forbidden(not_accepted(&why)))
        }
    }
}
