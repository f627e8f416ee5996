//! Exports as JSON lines: every event in seq order, each checkpoint right after the event it
//! signs, and a last line with the head signed at export time (so a file cut short is detected).
//! Produced in batches into a channel, so neither the server nor the CLI holds a whole log.
//!
//! A filtered export (the auditor's page) holds only the matching events and no signatures: it
//! is for reading, and `elevate audit verify` needs the full export.

use axum::body::Bytes;
use time::OffsetDateTime;
use tokio::sync::mpsc::Sender;
use uuid::Uuid;

use super::checkpoint::{Checkpoint, Kind};
use super::verify::{LineRef, to_line};
use crate::crypto::MasterKey;
use crate::error::{AppError, AppResult};
pub use crate::model::audit::Filter;
use crate::store::Store;

/// Rows read per transaction.
const PAGE: i64 = 2000;

/// Lines of the export of `tenant_id` into `out`. Stops quietly when the receiver goes away (the
/// client hung up). The head is fixed when the export starts; later events wait for the next one.
pub async fn produce(
    store: &Store,
    master: &MasterKey,
    tenant_id: Uuid,
    filter: &Filter,
    now: OffsetDateTime,
    out: Sender<AppResult<Bytes>>,
) -> AppResult<()> {
    let head = {
        let mut tx = store.read(tenant_id).await?;
        let head = tx.audit_head().await?;
        tx.commit().await?;
        head
    };
    let (head_seq, head_hash) = head.unwrap_or((0, super::GENESIS_HASH.to_vec()));
    let signed = filter.is_empty();
    let mut after = 0;
    let mut emitted: u64 = 0;
    while after < head_seq {
        let (events, checkpoints, upto) = {
            let mut tx = store.tenant(tenant_id).await?;
            let events = tx
                .audit_events_matching(filter, after, head_seq, PAGE)
                .await?;
            let upto = if (events.len() as i64) < PAGE {
                head_seq
            } else {
                events.last().map_or(head_seq, |e| e.seq)
            };
            let checkpoints = if signed {
                tx.checkpoints_between(after, upto).await?
            } else {
                Vec::new()
            };
            tx.commit().await?;
            (events, checkpoints, upto)
        };
        let mut buf = String::with_capacity(events.len() * 400);
        emitted += checkpoints.len() as u64;
        let mut cps = checkpoints.iter().peekable();
        for e in &events {
            push(&mut buf, LineRef::Event(e))?;
            while let Some(c) = cps.next_if(|c| c.seq <= e.seq) {
                push(&mut buf, LineRef::Checkpoint(c))?;
            }
        }
        for c in cps {
            push(&mut buf, LineRef::Checkpoint(c))?;
        }
        if out.send(Ok(Bytes::from(buf))).await.is_err() {
            return Ok(());
        }
        after = upto;
    }
    if signed {
        let mut tx = store.tenant(tenant_id).await?;
        // Checkpoints beyond the head go into the export too (the verifier then names them):
        // read before the current head, so one signed for a later event is not taken for one.
        let beyond = tx.checkpoints_between(head_seq, i64::MAX).await?;
        let known = super::checkpoint::known_points(&mut tx, master, tenant_id)
            .await
            .map(|(_, _, known)| known);
        let now_head = tx.audit_head().await?.map_or(0, |h| h.0);
        let mut buf = String::new();
        for c in beyond.iter().filter(|c| c.seq > now_head) {
            push(&mut buf, LineRef::Checkpoint(c))?;
        }
        if !buf.is_empty() && out.send(Ok(Bytes::from(buf))).await.is_err() {
            return Ok(());
        }
        // The head is signed only if the chain still passes through every point this replica
        // knows of, the exported head included: elevate never vouches for a cut or rewritten log.
        // A refused export ends without its signed head (the verifier names the first problem:
        // a checkpoint beyond the head, or the missing head); the body is not aborted, so the
        // lines before it reach the auditor.
        let head_known = super::checkpoint::Known {
            seq: head_seq,
            hash: head_hash.clone(),
            what: "the exported head",
        };
        let mut checked = match &known {
            Ok(known) => super::checkpoint::check_known(&mut tx, known, now_head).await,
            Err(_) => known.map(|_| ()),
        };
        if checked.is_ok() {
            checked = super::checkpoint::check_known(&mut tx, &[head_known], now_head).await;
        }
        if let Err(e) = checked {
            let Some(r) = super::checkpoint::refusal_of(&e) else {
                return Err(e);
            };
            tracing::error!(tenant = %tenant_id, seq = r.seq, reason = %r.why,
                "audit export left unsigned: the chain does not extend what this replica knew");
            tx.commit().await?;
            return Ok(());
        }
        let (key_id, key) = crate::signing_keys::active_signing_key(
            &mut tx,
            master,
            crate::model::KeyPurpose::AuditSigning,
        )
        .await?;
        tx.commit().await?;
        let mut h = Checkpoint::unsigned(tenant_id, head_seq, &head_hash, now, key_id);
        h.checkpoints = Some(emitted);
        let h = h.sign(Kind::Head, &key)?;
        let mut buf = String::new();
        push(&mut buf, LineRef::Head(&h))?;
        let _ = out.send(Ok(Bytes::from(buf))).await;
    }
    Ok(())
}

fn push(buf: &mut String, line: LineRef<'_>) -> AppResult<()> {
    buf.push_str(&to_line(line).map_err(AppError::internal)?);
    buf.push('\n');
    Ok(())
}

/// Runs [`produce`] in a task and returns the receiving end; a failure mid-way is sent as the
/// last item, so the reader sees an error rather than a silently short log.
pub fn spawn(
    store: Store,
    master: std::sync::Arc<MasterKey>,
    tenant_id: Uuid,
    filter: Filter,
    now: OffsetDateTime,
) -> tokio::sync::mpsc::Receiver<AppResult<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        if let Err(e) = produce(&store, &master, tenant_id, &filter, now, tx.clone()).await {
            tracing::error!(error = %e, "audit export failed part-way");
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}
