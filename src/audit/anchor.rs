//! Each replica's own record of how far it has seen a tenant's audit chain, kept in a small file
//! per tenant outside the database (beside the master key unless `[audit] anchor_dir` says
//! otherwise): the newest head it verified and the newest seq it signed. Someone who can write
//! the database but not this directory can delete events or checkpoint rows, but cannot make the
//! signer forget what it saw: it refuses to sign a chain that does not pass through its anchor
//! (see [`super::checkpoint::checkpoint_tenant`]). Only [`restored`] moves an anchor back, and it
//! records the range that was lost as an `audit.restored` event.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Ctx;
use crate::crypto::MasterKey;
use crate::error::{AppError, AppResult};
use crate::model::Tenant;
use crate::store::Store;

/// The sub-directory of the anchor directory that holds one `<tenant id>.json` per tenant.
pub const DIR: &str = "audit-anchors";

/// What one replica knows of one tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    pub tenant_id: Uuid,
    /// The newest head this replica verified to extend everything it knew before.
    pub seq: i64,
    #[serde(with = "hex::serde")]
    pub hash: Vec<u8>,
    /// The newest seq this replica signed a checkpoint for.
    pub signed_seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
#[error("audit anchor {path}: {reason}")]
pub struct AnchorError {
    pub path: String,
    pub reason: String,
}

/// Writers in this process take turns, so an older anchor never overwrites a newer one.
static WRITE: Mutex<()> = Mutex::new(());

pub fn file(dir: &Path, tenant_id: Uuid) -> PathBuf {
    dir.join(DIR).join(format!("{tenant_id}.json"))
}

fn error(path: &Path, reason: impl ToString) -> AnchorError {
    AnchorError {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The anchor of a tenant; `None` when this replica has none yet. A file that cannot be read or
/// parsed is an error (the signer then refuses: fail closed).
pub fn load(dir: &Path, tenant_id: Uuid) -> Result<Option<Anchor>, AnchorError> {
    let path = file(dir, tenant_id);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(&path, e)),
    };
    let anchor: Anchor = serde_json::from_str(&text).map_err(|e| error(&path, e))?;
    if anchor.tenant_id != tenant_id {
        return Err(error(&path, "belongs to another tenant"));
    }
    Ok(Some(anchor))
}

fn write(dir: &Path, anchor: &Anchor) -> Result<(), AnchorError> {
    let folder = dir.join(DIR);
    std::fs::create_dir_all(&folder).map_err(|e| error(&folder, e))?;
    let path = file(dir, anchor.tenant_id);
    let tmp = folder.join(format!(".{}.json.tmp", anchor.tenant_id));
    let text = serde_json::to_string_pretty(anchor).map_err(|e| error(&path, e))? + "\n";
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(|e| error(&tmp, e))?;
        f.write_all(text.as_bytes()).map_err(|e| error(&tmp, e))?;
        f.sync_all().map_err(|e| error(&tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| error(&path, e))?;
    if let Ok(d) = std::fs::File::open(&folder) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Moves the anchor forward: never to a lower seq than the one on disk.
pub fn advance(dir: &Path, anchor: &Anchor) -> Result<(), AnchorError> {
    let _turn = WRITE.lock().unwrap_or_else(|p| p.into_inner());
    let mut next = anchor.clone();
    if let Some(old) = load(dir, anchor.tenant_id)? {
        if old.seq > next.seq {
            return Ok(());
        }
        next.signed_seq = next.signed_seq.max(old.signed_seq);
        if old == next {
            return Ok(());
        }
    }
    write(dir, &next)
}

/// Replaces the anchor whatever it held (only [`restored`] does this).
fn reset(dir: &Path, anchor: &Anchor) -> Result<(), AnchorError> {
    let _turn = WRITE.lock().unwrap_or_else(|p| p.into_inner());
    write(dir, anchor)
}

/// What [`restored`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The anchor agrees with the chain: nothing was lost, nothing recorded.
    NothingLost { head_seq: i64 },
    /// Events `lost_from..=lost_to` as this replica knew them are not in the log; recorded at
    /// `event_seq` and signed.
    Reset {
        lost_from: i64,
        lost_to: i64,
        event_seq: i64,
    },
}

/// After a restore from a backup (Operations): the log is shorter than, or different from, what
/// this replica's anchor holds, so the signer refuses. This records an `audit.restored` event
/// naming the range that was lost, resets the anchor to the new head and signs it. The store must
/// be consistent on its own (every stored checkpoint on the chain): restore events and
/// checkpoints together from one backup. Run it on every replica that refuses.
pub async fn restored(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    tenant: &Tenant,
    reason: Option<&str>,
) -> AppResult<Restored> {
    let Some(dir) = master.anchor_dir() else {
        return Err(AppError::BadRequest(
            "this master key keeps no audit anchor (it is not read from a file)".into(),
        ));
    };
    // The store alone must verify: a checkpoint row beyond the head is not excused by this.
    match super::verify::verify_store(store, tenant.tenant_id, None).await? {
        Ok(_) => {}
        Err(b) => {
            return Err(AppError::Conflict(format!(
                "the stored log of {} does not verify on its own ({b}); restore events and \
                 checkpoints together from one backup first",
                tenant.slug
            )));
        }
    }
    let anchor = load(dir, tenant.tenant_id).map_err(AppError::internal)?;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let (head_seq, head_hash) = tx
        .audit_head()
        .await?
        .unwrap_or((0, super::GENESIS_HASH.to_vec()));
    let Some(anchor) = anchor else {
        tx.commit().await?;
        return Ok(Restored::NothingLost { head_seq });
    };
    let on_chain = anchor.seq <= head_seq
        && (anchor.seq == 0
            || tx
                .audit_events(anchor.seq - 1, 1)
                .await?
                .first()
                .is_some_and(|e| e.seq == anchor.seq && e.hash == anchor.hash));
    if on_chain {
        tx.commit().await?;
        return Ok(Restored::NothingLost { head_seq });
    }
    // The newest signed point both agree on: the newest stored checkpoint below the anchor.
    let agreed = tx
        .checkpoints_between(0, anchor.seq.saturating_sub(1).min(head_seq))
        .await?
        .last()
        .map_or(0, |c| c.seq);
    let lost_from = agreed + 1;
    let lost_to = anchor.seq;
    let event = ctx
        .event("audit.restored", tenant.slug.clone())
        .details(serde_json::json!({
            "lost_from": lost_from,
            "lost_to": lost_to,
            "anchor_seq": anchor.seq,
            "anchor_hash": hex::encode(&anchor.hash),
            "anchor_signed_seq": anchor.signed_seq,
            "head_seq": head_seq,
            "head_hash": hex::encode(&head_hash),
            "reason": reason,
        }));
    let record = tx.append_audit_now(&event, ctx.now).await?;
    tx.commit().await?;
    tracing::warn!(tenant = %tenant.slug, lost_from, lost_to, "audit anchor reset after a restore");
    reset(
        dir,
        &Anchor {
            tenant_id: tenant.tenant_id,
            seq: record.seq,
            hash: record.hash.clone(),
            signed_seq: 0,
            at: ctx.now,
        },
    )
    .map_err(AppError::internal)?;
    // Sign the restore right away, so the statement about the lost range is itself vouched for.
    super::checkpoint::checkpoint_tenant(
        store,
        master,
        tenant.tenant_id,
        super::checkpoint::Schedule {
            every_events: i64::MAX,
            every: time::Duration::ZERO,
        },
        ctx.now,
    )
    .await?;
    Ok(Restored::Reset {
        lost_from,
        lost_to,
        event_seq: record.seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(tenant_id: Uuid, seq: i64, signed_seq: i64) -> Anchor {
        Anchor {
            tenant_id,
            seq,
            hash: vec![seq as u8; 32],
            signed_seq,
            at: time::macros::datetime!(2030-01-01 00:00:00 UTC),
        }
    }

    #[test]
    fn anchors_only_move_forward_and_a_bad_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("elevate-anchor-{}", Uuid::new_v4().simple()));
        let t = Uuid::new_v4();
        assert_eq!(load(&dir, t).unwrap(), None);
        advance(&dir, &anchor(t, 10, 10)).unwrap();
        advance(&dir, &anchor(t, 5, 0)).unwrap();
        assert_eq!(load(&dir, t).unwrap(), Some(anchor(t, 10, 10)));
        advance(&dir, &anchor(t, 12, 0)).unwrap();
        assert_eq!(load(&dir, t).unwrap(), Some(anchor(t, 12, 10)));
        reset(&dir, &anchor(t, 3, 0)).unwrap();
        assert_eq!(load(&dir, t).unwrap(), Some(anchor(t, 3, 0)));
        std::fs::write(file(&dir, t), "{").unwrap();
        assert!(load(&dir, t).is_err());
        let other = Uuid::new_v4();
        std::fs::copy(file(&dir, t), file(&dir, other)).unwrap();
        reset(&dir, &anchor(t, 3, 0)).unwrap();
        std::fs::copy(file(&dir, t), file(&dir, other)).unwrap();
        assert!(load(&dir, other).is_err(), "another tenant's anchor");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
