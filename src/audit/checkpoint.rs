//! Signed checkpoints: every N events or M seconds elevate signs the head of a tenant's chain
//! `(tenant, seq, hash, time, key)` with the tenant's Ed25519 audit key. A copy of a checkpoint
//! kept anywhere else (webhook receivers, an auditor's notes) pins everything before it: rewriting
//! history then needs the private key, which never leaves elevate sealed.
//!
//! Signatures are OpenSSH `SSHSIG` (namespace [`NAMESPACE`]) over [`Checkpoint::message`], so a
//! checkpoint can also be checked with stock `ssh-keygen -Y check-novalidate`.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::crypto::MasterKey;
use crate::error::{AppError, AppResult};
use crate::model::KeyPurpose;
use crate::store::{Store, TenantTx};

use super::anchor::Anchor;
pub use crate::model::audit::Checkpoint;

/// The SSHSIG namespace: a signature made for anything else never verifies as a checkpoint.
pub const NAMESPACE: &str = "elevate-audit@elevate";

/// What a signature vouches for. `Checkpoint` rows are stored; a `Head` is signed when an export
/// is made and ends it, so an export cut short is told apart from one that is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Checkpoint,
    Head,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is malformed")]
    Malformed,
    #[error("signed by a key that is not the tenant's audit key")]
    UnknownKey,
    #[error("the signature does not match the checkpoint")]
    Invalid,
}

impl Checkpoint {
    /// A statement about a chain head, to be signed with [`Checkpoint::sign`].
    pub fn unsigned(
        tenant_id: Uuid,
        seq: i64,
        head_hash: &[u8],
        at: OffsetDateTime,
        signing_key_id: Uuid,
    ) -> Self {
        Checkpoint {
            tenant_id,
            seq,
            head_hash: head_hash.to_vec(),
            at: crate::clock::truncate(at),
            signing_key_id,
            checkpoints: None,
            signature: String::new(),
        }
    }

    /// The bytes signed. Every field is in it (the key id too), so no byte of a checkpoint can
    /// change without breaking its signature.
    pub fn message(&self, kind: Kind) -> Vec<u8> {
        let kind = match kind {
            Kind::Checkpoint => "checkpoint",
            Kind::Head => "head",
        };
        let at = self.at.format(&Rfc3339).unwrap_or_default();
        let mut m = format!(
            "elevate audit {kind} v1\ntenant {}\nseq {}\nhash {}\nat {at}\nkey {}\n",
            self.tenant_id,
            self.seq,
            hex::encode(&self.head_hash),
            self.signing_key_id,
        );
        if let Some(n) = self.checkpoints {
            m.push_str(&format!("checkpoints {n}\n"));
        }
        m.into_bytes()
    }

    pub fn sign(mut self, kind: Kind, key: &PrivateKey) -> AppResult<Self> {
        let sig = key
            .sign(NAMESPACE, HashAlg::Sha512, &self.message(kind))
            .map_err(AppError::internal)?;
        self.signature = sig.to_pem(LineEnding::LF).map_err(AppError::internal)?;
        Ok(self)
    }

    /// Checks the signature against the trusted keys (one of them must have made it).
    pub fn verify(&self, kind: Kind, trusted: &[PublicKey]) -> Result<(), SignatureError> {
        let sig = SshSig::from_pem(&self.signature).map_err(|_| SignatureError::Malformed)?;
        // Only the canonical armour counts: base64 has spare bits, and a byte changed there
        // would otherwise decode to the same signature.
        if sig.to_pem(LineEnding::LF).ok().as_deref() != Some(self.signature.as_str()) {
            return Err(SignatureError::Malformed);
        }
        let key = trusted
            .iter()
            .find(|k| k.key_data() == sig.public_key())
            .ok_or(SignatureError::UnknownKey)?;
        key.verify(NAMESPACE, &self.message(kind), &sig)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Parses public keys in OpenSSH format, one per line (`#` comments and blank lines skipped).
pub fn parse_public_keys(text: &str) -> Result<Vec<PublicKey>, String> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(
            PublicKey::from_openssh(line)
                .map_err(|e| format!("line {}: not an OpenSSH public key: {e}", i + 1))?,
        );
    }
    if keys.is_empty() {
        return Err("no public key found".into());
    }
    Ok(keys)
}

/// When to sign.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Sign every event whose seq is a multiple of this.
    pub every_events: i64,
    /// ... and the head once its oldest unsigned event is this old.
    pub every: time::Duration,
}

impl Schedule {
    /// Validated in `Config::load`, so the fallback never applies in practice.
    pub fn of(config: &crate::config::AuditConfig) -> Schedule {
        Schedule {
            every_events: config.checkpoint_every_events.max(1),
            every: crate::duration::parse(&config.checkpoint_every)
                .unwrap_or(time::Duration::seconds(60)),
        }
    }
}

/// The last outcome per tenant, for the auditor's page, `/readyz` and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub last_pass: Option<OffsetDateTime>,
    /// Tenant slug → why signing stopped (a broken chain is never signed over).
    pub broken: std::collections::BTreeMap<String, String>,
    /// The last failure that was not a refusal (the store was unreachable, ...).
    pub last_error: Option<String>,
    /// Passes that refused to sign a tenant's head, since start.
    pub refusals: u64,
}

pub type SharedStatus = Arc<Mutex<Status>>;

/// Events checked and signed over in one pass, at most.
const MAX_EVENTS_PER_PASS: i64 = 50_000;

/// Why the signer will not sign: the chain does not pass through a point it knows of, or does
/// not link. Carried inside [`AppError::Internal`]; see [`refusal_of`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not signing a broken chain: seq {seq}: {why}")]
pub struct Refusal {
    pub seq: i64,
    pub why: String,
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> Self {
        AppError::internal(r)
    }
}

/// The refusal inside an error, if it is one.
pub fn refusal_of(e: &AppError) -> Option<&Refusal> {
    match e {
        AppError::Internal(cause) => cause.downcast_ref::<Refusal>(),
        _ => None,
    }
}

/// A point the chain is known to pass through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub seq: i64,
    pub hash: Vec<u8>,
    /// What vouches for it ("the signed checkpoint", "this replica's anchor").
    pub what: &'static str,
}

/// What the signer knows of a tenant's chain: the newest stored checkpoint (its signature must
/// verify: a row slipped into the table is not built upon) and this replica's anchor.
pub async fn known_points(
    tx: &mut TenantTx,
    master: &MasterKey,
    tenant_id: Uuid,
) -> AppResult<(Option<Checkpoint>, Option<Anchor>, Vec<Known>)> {
    let mut known = Vec::new();
    let last = tx.latest_checkpoint().await?;
    if let Some(c) = &last {
        // Only keys whose private half the master key unseals: a public key written into the
        // table (or swapped) by someone who can write the database vouches for nothing here.
        let trusted: Vec<PublicKey> = tx
            .ca_keys(KeyPurpose::AuditSigning)
            .await?
            .iter()
            .filter_map(|k| crate::signing_keys::open_signing_key(master, k).ok())
            .map(|k| k.public_key().clone())
            .collect();
        c.verify(Kind::Checkpoint, &trusted).map_err(|e| Refusal {
            seq: c.seq,
            why: format!("the newest stored checkpoint is refused: {e}"),
        })?;
        known.push(Known {
            seq: c.seq,
            hash: c.head_hash.clone(),
            what: "the newest signed checkpoint",
        });
    }
    let anchor = match master.anchor_dir() {
        Some(dir) => super::anchor::load(dir, tenant_id).map_err(|e| Refusal {
            seq: 0,
            why: e.to_string(),
        })?,
        None => None,
    };
    if let Some(a) = &anchor {
        known.push(Known {
            seq: a.seq,
            hash: a.hash.clone(),
            what: "this replica's anchor",
        });
    }
    Ok((last, anchor, known))
}

/// Refuses unless the chain, whose head is at `head_seq`, passes through every known point.
pub async fn check_known(tx: &mut TenantTx, known: &[Known], head_seq: i64) -> AppResult<()> {
    for k in known {
        if k.seq > head_seq {
            return Err(Refusal {
                seq: k.seq,
                why: format!(
                    "{} is at seq {} but the log ends at seq {head_seq}: events {}..={} were removed",
                    k.what,
                    k.seq,
                    head_seq + 1,
                    k.seq
                ),
            }
            .into());
        }
        if k.seq == 0 {
            continue;
        }
        let event = tx.audit_events(k.seq - 1, 1).await?;
        if !event
            .first()
            .is_some_and(|e| e.seq == k.seq && e.hash == k.hash)
        {
            return Err(Refusal {
                seq: k.seq,
                why: format!(
                    "{} at seq {} disagrees with the chain: events up to seq {} were rewritten",
                    k.what, k.seq, k.seq
                ),
            }
            .into());
        }
    }
    Ok(())
}

/// What one signing pass found and stored, for the anchor that follows the commit.
struct Pass {
    stored: usize,
    seen_seq: i64,
    seen_hash: Vec<u8>,
    signed_seq: i64,
    anchor: Option<Anchor>,
    /// When this signer is needed again if the head does not move (None: at once).
    idle: Option<Idle>,
}

/// What a head that does not move needs from the signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// Nothing: every event is signed or covered by a stored checkpoint.
    Signed,
    /// A signature at this time, when its oldest unsigned event falls due.
    DueAt(OffsetDateTime),
}

async fn sign_due(
    tx: &mut TenantTx,
    master: &MasterKey,
    tenant_id: Uuid,
    schedule: Schedule,
    now: OffsetDateTime,
) -> AppResult<Pass> {
    // What is known first, then the head: a checkpoint another replica signs in between is then
    // never beyond the head read here.
    let (last, anchor, known) = known_points(tx, master, tenant_id).await?;
    let head_seq = tx.audit_head().await?.map_or(0, |h| h.0);
    check_known(tx, &known, head_seq).await?;
    let (base_seq, base_hash) = known
        .iter()
        .max_by_key(|k| k.seq)
        .map_or((0, crate::audit::GENESIS_HASH.to_vec()), |k| {
            (k.seq, k.hash.clone())
        });
    // Events new to this replica: they must link to what it knew.
    let fresh_to = head_seq.min(base_seq.saturating_add(MAX_EVENTS_PER_PASS));
    let (seen_seq, seen_hash) = if fresh_to > base_seq {
        let fresh = tx.audit_events(base_seq, fresh_to - base_seq).await?;
        crate::audit::verify::verify_segment(base_seq, &base_hash, &fresh).map_err(|b| {
            Refusal {
                seq: b.seq,
                why: b.what.clone(),
            }
        })?;
        fresh
            .last()
            .map_or((base_seq, base_hash.clone()), |e| (e.seq, e.hash.clone()))
    } else {
        (base_seq, base_hash.clone())
    };
    let (from_seq, from_hash) = match &last {
        Some(c) => (c.seq, c.head_hash.clone()),
        None => (0, crate::audit::GENESIS_HASH.to_vec()),
    };
    let every = schedule.every_events.max(1);
    // A long backlog (the signer was down) is worked off over several passes, so one pass never
    // holds more than this many events in memory; nothing beyond what was verified is signed.
    let reach = seen_seq.min(from_seq.saturating_add(MAX_EVENTS_PER_PASS.max(every)));
    let mut targets: Vec<i64> = ((from_seq / every + 1).saturating_mul(every)..=reach)
        .step_by(usize::try_from(every).unwrap_or(usize::MAX))
        .collect();
    let covered = targets.last().copied().unwrap_or(from_seq);
    let mut due_at = None;
    if covered < reach {
        let oldest_unsigned = tx.audit_events(covered, 1).await?;
        match oldest_unsigned.first() {
            Some(e) if now - e.at >= schedule.every => targets.push(reach),
            Some(e) => due_at = Some(e.at + schedule.every),
            None => {}
        }
    }
    let mut stored = 0;
    let mut signed_seq = anchor.as_ref().map_or(0, |a| a.signed_seq);
    if let Some(&upto) = targets.last() {
        let events = tx.audit_events(from_seq, upto - from_seq).await?;
        crate::audit::verify::verify_segment(from_seq, &from_hash, &events).map_err(|b| {
            Refusal {
                seq: b.seq,
                why: b.what.clone(),
            }
        })?;
        let (key_id, key) =
            crate::signing_keys::active_signing_key(tx, master, KeyPurpose::AuditSigning).await?;
        for seq in targets {
            let Some(event) = events.iter().find(|e| e.seq == seq) else {
                continue;
            };
            let cp = Checkpoint::unsigned(tenant_id, seq, &event.hash, now, key_id)
                .sign(Kind::Checkpoint, &key)?;
            if tx.insert_checkpoint(&cp).await? {
                stored += 1;
            }
            signed_seq = signed_seq.max(seq);
        }
    }
    let checkpointed = from_seq.max(signed_seq);
    Ok(Pass {
        stored,
        idle: if seen_seq != head_seq || reach != seen_seq {
            None
        } else if checkpointed >= seen_seq {
            Some(Idle::Signed)
        } else {
            due_at.map(Idle::DueAt)
        },
        seen_seq,
        seen_hash,
        signed_seq,
        anchor,
    })
}

/// Signs what is due for one tenant; returns how many checkpoints were stored. Before signing,
/// the chain must pass through every point this replica knows of (the newest stored checkpoint
/// and its anchor) and the events after them must link: elevate never vouches for a chain that
/// is cut short, rewritten or broken. Each pass also moves the anchor to the verified head, so a
/// rewrite of events this replica has already seen is refused even before they are signed.
pub async fn checkpoint_tenant(
    store: &Store,
    master: &MasterKey,
    tenant_id: Uuid,
    schedule: Schedule,
    now: OffsetDateTime,
) -> AppResult<usize> {
    Ok(
        checkpoint_tenant_settling(store, master, tenant_id, schedule, now)
            .await?
            .0,
    )
}

/// [`checkpoint_tenant`], and the head (seq, hash) with what it needs next if it does not move.
async fn checkpoint_tenant_settling(
    store: &Store,
    master: &MasterKey,
    tenant_id: Uuid,
    schedule: Schedule,
    now: OffsetDateTime,
) -> AppResult<(usize, Option<(i64, Vec<u8>, Idle)>)> {
    let mut tx = store.tenant(tenant_id).await?;
    // One signer per tenant across replicas: another replica signing this tenant now does the
    // same work, so this one skips the tenant until its next pass.
    if !tx.try_singleton("checkpointer").await? {
        tx.rollback().await?;
        return Ok((0, None));
    }
    // A refusal rolls back here, not when the pooled connection is next used: until then the
    // signer's lock would stay held and the next pass would skip the tenant.
    let Pass {
        stored,
        seen_seq,
        seen_hash,
        signed_seq,
        anchor,
        idle,
    } = match sign_due(&mut tx, master, tenant_id, schedule, now).await {
        Ok(pass) => pass,
        Err(e) => {
            tx.rollback().await.ok();
            return Err(e);
        }
    };
    tx.commit().await?;
    let head = idle.map(|idle| (seen_seq, seen_hash.clone(), idle));
    if let Some(dir) = master.anchor_dir() {
        let next = Anchor {
            tenant_id,
            seq: seen_seq,
            hash: seen_hash,
            signed_seq,
            at: now,
        };
        let moved = anchor
            .as_ref()
            .is_none_or(|a| a.seq != next.seq || a.signed_seq != next.signed_seq);
        if moved {
            super::anchor::advance(dir, &next).map_err(AppError::internal)?;
        }
    }
    Ok((stored, head))
}

/// One pass over every tenant. A refusal is loud: an error in the log, the tenant in
/// [`Status::broken`] (readiness degraded, the audit page), and [`Status::refusals`] counted
/// (`/metrics`).
pub async fn run_once(
    store: &Store,
    master: &MasterKey,
    schedule: Schedule,
    now: OffsetDateTime,
    status: &SharedStatus,
) -> AppResult<usize> {
    run_once_settled(
        store,
        master,
        schedule,
        now,
        status,
        &mut Settled::default(),
    )
    .await
}

/// Each tenant's head as the running signer last left it, with what it needs next if it does
/// not move: nothing (all signed) or a signature when its oldest unsigned event falls due. A
/// tenant whose head is still that one, and not due, is skipped with one read (no write
/// transaction, no lock): an idle tenant cost a write transaction and about seven statements
/// every second. Events appended since (the head moved) always get the full pass.
#[derive(Debug, Default)]
pub struct Settled(std::collections::HashMap<Uuid, (i64, Vec<u8>, Idle)>);

impl Settled {
    async fn quiet(&self, store: &Store, tenant_id: Uuid, now: OffsetDateTime) -> AppResult<bool> {
        let Some((seq, hash, idle)) = self.0.get(&tenant_id) else {
            return Ok(false);
        };
        if let Idle::DueAt(due) = idle
            && now >= *due
        {
            return Ok(false);
        }
        let mut tx = store.read(tenant_id).await?;
        let head = tx.audit_head().await?;
        tx.commit().await?;
        Ok(head.is_some_and(|(s, h)| s == *seq && h == *hash))
    }
}

/// [`run_once`] that skips the tenants `settled` says have nothing new, and keeps it up to date.
pub async fn run_once_settled(
    store: &Store,
    master: &MasterKey,
    schedule: Schedule,
    now: OffsetDateTime,
    status: &SharedStatus,
    settled: &mut Settled,
) -> AppResult<usize> {
    let mut stored = 0;
    let mut broken = std::collections::BTreeMap::new();
    let mut failed = None;
    for tenant in store.tenants().await? {
        if settled.quiet(store, tenant.tenant_id, now).await? {
            continue;
        }
        settled.0.remove(&tenant.tenant_id);
        let pass = checkpoint_tenant_settling(store, master, tenant.tenant_id, schedule, now).await;
        match pass {
            Ok((n, head)) => {
                stored += n;
                if let Some(head) = head {
                    settled.0.insert(tenant.tenant_id, head);
                }
            }
            Err(e) => match refusal_of(&e) {
                Some(r) => {
                    tracing::error!(tenant = %tenant.slug, seq = r.seq, reason = %r.why,
                        "audit chain does not extend what this replica knew: checkpoint refused");
                    broken.insert(tenant.slug.clone(), r.to_string());
                }
                None => {
                    let cause = match &e {
                        AppError::Internal(c) => format!("{c:#}"),
                        other => other.to_string(),
                    };
                    tracing::warn!(tenant = %tenant.slug, error = %cause, "audit checkpoint not signed; retrying");
                    failed.get_or_insert(format!("{}: {cause}", tenant.slug));
                }
            },
        }
    }
    if let Ok(mut s) = status.lock() {
        s.last_pass = Some(now);
        s.refusals += broken.len() as u64;
        s.broken = broken;
        s.last_error = failed;
    }
    Ok(stored)
}

/// Signs every tenant's head now, whatever the schedule (at shutdown, so the unsigned window
/// stays short).
pub async fn sign_heads(
    store: &Store,
    master: &MasterKey,
    schedule: Schedule,
    now: OffsetDateTime,
    status: &SharedStatus,
) -> AppResult<usize> {
    let now_due = Schedule {
        every: time::Duration::ZERO,
        ..schedule
    };
    run_once(store, master, now_due, now, status).await
}

/// Signs checkpoints every second, forever; store failures are logged and retried.
pub fn spawn(
    store: Store,
    clock: SharedClock,
    master: Arc<MasterKey>,
    schedule: Schedule,
    status: SharedStatus,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut settled = Settled::default();
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let pass = run_once_settled(
                &store,
                &master,
                schedule,
                clock.now(),
                &status,
                &mut settled,
            );
            if let Err(e) = pass.await {
                tracing::warn!(error = %e, "audit checkpoint pass failed; retrying");
                if let Ok(mut s) = status.lock() {
                    s.last_error = Some(e.to_string());
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_comes_from_the_audit_settings() {
        let d = Schedule::of(&crate::config::AuditConfig::default());
        assert_eq!(
            (d.every_events, d.every),
            (1000, time::Duration::seconds(60))
        );
        let c = crate::config::AuditConfig {
            checkpoint_every_events: 5,
            checkpoint_every: "2m".into(),
            ..Default::default()
        };
        let s = Schedule::of(&c);
        assert_eq!((s.every_events, s.every), (5, time::Duration::minutes(2)));
    }
    use ssh_key::rand_core::OsRng;

    fn key() -> PrivateKey {
        PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap()
    }

    #[test]
    fn signatures_cover_every_field_and_only_the_trusted_key() {
        let k = key();
        let t = Uuid::new_v4();
        let kid = Uuid::new_v4();
        let at = time::macros::datetime!(2030-01-01 00:00:00 UTC);
        let cp = Checkpoint::unsigned(t, 7, &[3; 32], at, kid)
            .sign(Kind::Checkpoint, &k)
            .unwrap();
        let trusted = [k.public_key().clone()];
        assert_eq!(cp.verify(Kind::Checkpoint, &trusted), Ok(()));
        assert_eq!(
            cp.verify(Kind::Head, &trusted),
            Err(SignatureError::Invalid)
        );
        for edit in [
            |c: &mut Checkpoint| c.seq += 1,
            |c: &mut Checkpoint| c.head_hash[0] ^= 1,
            |c: &mut Checkpoint| c.at += time::Duration::SECOND,
            |c: &mut Checkpoint| c.signing_key_id = Uuid::nil(),
            |c: &mut Checkpoint| c.tenant_id = Uuid::nil(),
            |c: &mut Checkpoint| c.checkpoints = Some(0),
        ] {
            let mut c = cp.clone();
            edit(&mut c);
            assert_eq!(
                c.verify(Kind::Checkpoint, &trusted),
                Err(SignatureError::Invalid)
            );
        }
        let other = [key().public_key().clone()];
        assert_eq!(
            cp.verify(Kind::Checkpoint, &other),
            Err(SignatureError::UnknownKey)
        );
    }
}
