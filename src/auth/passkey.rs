//! Signing in with a passkey: a discoverable credential names the person; the sign-in is a full
//! one (a new session), audited like an email link or single sign-on.

use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, PublicKeyCredential, RequestChallengeResponse,
    Webauthn,
};

use super::magic_link::SignedIn;
use crate::audit::{Actor, NewEvent, Origin};
use crate::error::{AppError, AppResult};
use crate::model::{CeremonyPurpose, StoredCeremony, User};
use crate::passkeys::{
    Answer, CEREMONY_TTL, RelyingParty, credential_id, internal, parse_passkey, take, usable,
};
use crate::store::{Store, TenantTx};

/// Starts a passkey sign-in to `tenant_slug`: the browser offers the person's discoverable
/// passkeys for this site.
pub async fn begin_sign_in(
    store: &Store,
    rp: &RelyingParty,
    tenant_slug: &str,
    now: OffsetDateTime,
) -> AppResult<(Uuid, RequestChallengeResponse)> {
    let webauthn = rp.webauthn()?;
    let tenant = store
        .tenant_by_slug(tenant_slug.trim())
        .await?
        .ok_or_else(|| AppError::Unprocessable("enter your organisation".into()))?;
    let (options, state): (RequestChallengeResponse, DiscoverableAuthentication) = webauthn
        .start_discoverable_authentication()
        .map_err(internal)?;
    let state = serde_json::to_string(&state).map_err(internal)?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let id = tx
        .insert_ceremony(
            None,
            CeremonyPurpose::SignIn,
            "",
            &state,
            now,
            now + CEREMONY_TTL,
        )
        .await?;
    tx.commit().await?;
    Ok((id, options))
}

/// What any refused passkey sign-in is told.
pub const SIGN_IN_REFUSED: &str =
    "That passkey did not sign you in. Try again, or use an email link.";

/// Finishes a passkey sign-in: a full sign-in, with a new session, audited like the others.
pub async fn finish_sign_in(
    store: &Store,
    rp: &RelyingParty,
    tenant_slug: &str,
    Answer {
        ceremony,
        credential,
    }: Answer<'_>,
    session_absolute: Duration,
    (origin, now): (&Origin, OffsetDateTime),
) -> AppResult<SignedIn> {
    let webauthn = rp.webauthn()?;
    let refused = || AppError::BadRequest(SIGN_IN_REFUSED.into());
    let tenant = store
        .tenant_by_slug(tenant_slug.trim())
        .await?
        .ok_or_else(refused)?;
    let taken = take(store, &tenant, ceremony).await?;
    let answer: Option<PublicKeyCredential> = serde_json::from_str(credential).ok();
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let outcome = match (
        usable(taken.as_ref(), CeremonyPurpose::SignIn, None, now),
        &answer,
    ) {
        (Err(why), _) => Err((why.to_owned(), None)),
        (Ok(_), None) => Err(("not a WebAuthn assertion".to_owned(), None)),
        (Ok(ceremony), Some(answer)) => {
            check_sign_in(&mut tx, webauthn, ceremony, answer, now).await?
        }
    };
    let user = match outcome {
        Ok(user) => user,
        Err((why, user)) => {
            tx.rollback().await?;
            let mut tx = store.tenant(tenant.tenant_id).await?;
            let target = user
                .as_ref()
                .map(|u: &User| u.email.clone())
                .unwrap_or_default();
            tx.append_audit(
                &NewEvent::new(Actor::System, "signin.failed", target)
                    .origin(origin.clone())
                    .details(json!({ "method": "passkey", "reason": why })),
                now,
            )
            .await?;
            tx.commit().await?;
            return Err(refused());
        }
    };
    let details = json!({ "method": "passkey" });
    super::session::finish_sign_in(tx, tenant, user, session_absolute, origin, now, details).await
}

/// The person a sign-in assertion names, when it verifies; otherwise why not (and whom it named).
async fn check_sign_in(
    tx: &mut TenantTx,
    webauthn: &Webauthn,
    ceremony: &StoredCeremony,
    answer: &PublicKeyCredential,
    now: OffsetDateTime,
) -> AppResult<Result<User, (String, Option<User>)>> {
    let Ok((user_id, _)) = webauthn.identify_discoverable_authentication(answer) else {
        return Ok(Err(("the passkey named no person".into(), None)));
    };
    let Some(user) = tx.user_by_id(user_id).await? else {
        return Ok(Err((
            "the passkey names no person of this organisation".into(),
            None,
        )));
    };
    if user.disabled {
        return Ok(Err(("user disabled".into(), Some(user))));
    }
    let state: DiscoverableAuthentication =
        serde_json::from_str(&ceremony.state).map_err(internal)?;
    let presented = credential_id(answer.get_credential_id());
    let records = tx.passkeys_of(user.id).await?;
    let Some(record) = records.iter().find(|r| r.credential_id == presented) else {
        return Ok(Err(("the passkey is not registered".into(), Some(user))));
    };
    let mut passkey = parse_passkey(record)?;
    let key = DiscoverableKey::from(&passkey);
    let result = match webauthn.finish_discoverable_authentication_v2(answer, state, &key) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Err((
                format!("the assertion was not accepted ({e})"),
                Some(user),
            )));
        }
    };
    if !result.user_verified() {
        return Ok(Err((
            "the passkey did not verify the user".into(),
            Some(user),
        )));
    }
    passkey.update_credential(&result);
    let stored = serde_json::to_string(&passkey).map_err(internal)?;
    tx.record_passkey_use(record.id, &stored, now).await?;
    Ok(Ok(user))
}
