//! Streaming the log off the box: per-tenant sinks, each a webhook (a JSON batch signed with
//! HMAC-SHA256 exactly like notification webhooks) or syslog (RFC 5424 over TCP with octet
//! counting, RFC 6587, or over UDP). Checkpoints travel with the events, so a copy of every
//! signature lives outside elevate's database.
//!
//! The audit table is the outbox: every event is stored in the transaction of its change, and
//! delivery reads from a per-sink cursor (`delivered_seq`) in its own task. A sink that is down
//! only falls behind — retried with backoff (10 s doubling, at most an hour) — and its lag is on
//! `/readyz`, `/metrics` and `/audit`; the broker never waits for it.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use secrecy::ExposeSecret;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::Record;
use super::checkpoint::Checkpoint;
use crate::audit::Ctx;
use crate::clock::SharedClock;
use crate::crypto::MasterKey;
use crate::error::{AppError, AppResult};
use crate::model::Tenant;
use crate::store::{AuditSink, Store};

/// Events per delivery.
const BATCH: i64 = 200;
/// Largest syslog datagram sent over UDP.
const UDP_MAX: usize = 8192;
/// A sink gets this long per delivery attempt.
const TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// How long a replica's claim on a sink keeps others away: a batch's send is bounded by
/// [`TIMEOUT`], so a live claimer is done long before; a dead one's sink waits this long.
const CLAIM: time::Duration = time::Duration::minutes(2);

/// Where to send: parsed from the stored target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Webhook(String),
    SyslogTcp(String),
    SyslogUdp(String),
}

impl Target {
    pub fn parse(kind: &str, target: &str) -> Result<Self, String> {
        let target = target.trim();
        match kind {
            "webhook"
                if (target.starts_with("https://") || target.starts_with("http://"))
                    && target.len() >= 12 =>
            {
                Ok(Target::Webhook(target.to_owned()))
            }
            "webhook" => Err(format!("webhook URL {target:?} must be an http(s) URL")),
            "syslog" => {
                let (proto, addr) = target.split_once("://").ok_or_else(|| {
                    format!("syslog target {target:?} must be tcp://HOST:PORT or udp://HOST:PORT")
                })?;
                let ok_addr = addr
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
                match (proto, ok_addr) {
                    ("tcp", true) => Ok(Target::SyslogTcp(addr.to_owned())),
                    ("udp", true) => Ok(Target::SyslogUdp(addr.to_owned())),
                    _ => Err(format!(
                        "syslog target {target:?} must be tcp://HOST:PORT or udp://HOST:PORT"
                    )),
                }
            }
            other => Err(format!("unknown sink kind {other:?} (webhook or syslog)")),
        }
    }
}

/// Adds a sink (audited). Webhooks need a secret of at least 16 characters; it is sealed.
pub async fn add_sink(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    tenant: &Tenant,
    kind: &str,
    target: &str,
    secret: Option<&str>,
) -> AppResult<Uuid> {
    let parsed = Target::parse(kind, target).map_err(AppError::Unprocessable)?;
    let id = Uuid::now_v7();
    let sealed = match (&parsed, secret.map(str::trim)) {
        (Target::Webhook(_), Some(s)) if s.len() >= 16 => {
            Some(master.seal(&AuditSink::seal_context(tenant.tenant_id, id), s.as_bytes())?)
        }
        (Target::Webhook(_), _) => {
            return Err(AppError::Unprocessable(
                "the webhook secret must be at least 16 characters".into(),
            ));
        }
        _ => None,
    };
    let mut tx = store.tenant(tenant.tenant_id).await?;
    tx.insert_audit_sink(id, kind, target.trim(), sealed.as_deref(), ctx.now)
        .await?;
    tx.append_audit(
        &ctx.event("audit.sink_added", target.trim())
            .details(json!({ "sink_id": id, "kind": kind })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Removes a sink (audited): the log is no longer streamed there.
pub async fn remove_sink(store: &Store, ctx: &Ctx, tenant: &Tenant, id: Uuid) -> AppResult<()> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let target = tx
        .audit_sinks()
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .map(|s| s.target)
        .ok_or_else(|| AppError::NotFound(format!("no audit sink {id}")))?;
    tx.delete_audit_sink(id).await?;
    tx.append_audit(
        &ctx.event("audit.sink_removed", &target)
            .details(json!({ "sink_id": id })),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// How far a sink is behind.
#[derive(Debug, Clone)]
pub struct Lag {
    pub tenant: String,
    pub sink_id: Uuid,
    pub kind: String,
    pub target: String,
    /// Events written but not yet delivered.
    pub events: i64,
    /// Age of the oldest undelivered event (0 when caught up).
    pub seconds: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// The lag of every sink of every tenant, computed from the store at call time.
pub async fn lags(store: &Store, now: OffsetDateTime) -> AppResult<Vec<Lag>> {
    let mut out = Vec::new();
    for tenant in store.tenants().await? {
        let mut tx = store.read(tenant.tenant_id).await?;
        let sinks = tx.audit_sinks().await?;
        if sinks.is_empty() {
            tx.commit().await?;
            continue;
        }
        let head = tx.audit_head().await?.map_or(0, |h| h.0);
        for s in sinks {
            let oldest = tx.audit_events(s.delivered_seq, 1).await?;
            out.push(Lag {
                tenant: tenant.slug.clone(),
                sink_id: s.id,
                kind: s.kind,
                target: s.target,
                events: (head - s.delivered_seq).max(0),
                seconds: oldest
                    .first()
                    .map_or(0, |e| (now - e.at).whole_seconds().max(0)),
                attempts: s.attempts,
                last_error: s.last_error,
            });
        }
        tx.commit().await?;
    }
    Ok(out)
}

/// One sink's next batch: events after its cursor and the checkpoints they complete.
struct Batch {
    events: Vec<Record>,
    checkpoints: Vec<Checkpoint>,
    upto_seq: i64,
    upto_checkpoint: i64,
}

async fn next_batch(store: &Store, sink: &AuditSink) -> AppResult<Batch> {
    let mut tx = store.read(sink.tenant_id).await?;
    let events = tx.audit_events(sink.delivered_seq, BATCH).await?;
    let upto_seq = events.last().map_or(sink.delivered_seq, |e| e.seq);
    let checkpoints = tx
        .checkpoints_between(sink.delivered_checkpoint_seq, upto_seq)
        .await?;
    tx.commit().await?;
    let upto_checkpoint = checkpoints
        .last()
        .map_or(sink.delivered_checkpoint_seq, |c| c.seq);
    Ok(Batch {
        events,
        checkpoints,
        upto_seq,
        upto_checkpoint,
    })
}

/// `PRI VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG` with facility 13 (log
/// audit), severity 6 (informational); the JSON of the event or checkpoint is the message.
pub fn syslog_message(
    host: &str,
    tenant: &str,
    kind: &str,
    seq: i64,
    at: OffsetDateTime,
    body: &str,
) -> String {
    let at = at.format(&Rfc3339).unwrap_or_else(|_| "-".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let host = if host.is_empty() { "-".into() } else { host };
    format!(
        "<110>1 {at} {host} elevate - {kind} [elevate@32473 tenant=\"{}\" seq=\"{seq}\"] \u{feff}{body}",
        sd_escape(tenant)
    )
}

/// RFC 5424 §6.3.3: `"`, `\` and `]` are escaped in parameter values.
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn messages(host: &str, tenant: &str, b: &Batch) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(b.events.len() + b.checkpoints.len());
    let mut cps = b.checkpoints.iter().peekable();
    let line = |kind: &str, seq, at, v: String| syslog_message(host, tenant, kind, seq, at, &v);
    for e in &b.events {
        let body = serde_json::to_string(e).map_err(|e| e.to_string())?;
        out.push(line("event", e.seq, e.at, body));
        while let Some(c) = cps.next_if(|c| c.seq <= e.seq) {
            let body = serde_json::to_string(c).map_err(|e| e.to_string())?;
            out.push(line("checkpoint", c.seq, c.at, body));
        }
    }
    for c in cps {
        let body = serde_json::to_string(c).map_err(|e| e.to_string())?;
        out.push(line("checkpoint", c.seq, c.at, body));
    }
    Ok(out)
}

async fn send_syslog_tcp(addr: &str, msgs: &[String]) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot reach syslog at {addr}: {e}"))?;
    let mut buf = Vec::new();
    for m in msgs {
        buf.extend_from_slice(format!("{} ", m.len()).as_bytes());
        buf.extend_from_slice(m.as_bytes());
    }
    stream
        .write_all(&buf)
        .await
        .map_err(|e| format!("syslog write failed: {e}"))?;
    stream
        .shutdown()
        .await
        .map_err(|e| format!("syslog close failed: {e}"))
}

async fn send_syslog_udp(addr: &str, msgs: &[String]) -> Result<(), String> {
    let peer = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {addr}"))?;
    let local: std::net::SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| e.to_string())?;
    for m in msgs {
        // RFC 5426 lets receivers truncate; cut here (at a character boundary) rather than have
        // one oversized event fail the sink forever.
        let mut end = m.len().min(UDP_MAX);
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        sock.send_to(&m.as_bytes()[..end], peer)
            .await
            .map_err(|e| format!("syslog send to {addr} failed: {e}"))?;
    }
    Ok(())
}

async fn send_webhook(
    sink: &AuditSink,
    url: &str,
    master: &MasterKey,
    tenant: &str,
    b: &Batch,
    now: OffsetDateTime,
) -> Result<(), String> {
    let sealed = sink
        .secret_sealed
        .as_deref()
        .ok_or("the webhook has no secret")?;
    let secret = master
        .open(&AuditSink::seal_context(sink.tenant_id, sink.id), sealed)
        .map_err(|e| format!("cannot unseal the webhook secret: {e}"))?;
    let body = serde_json::to_vec(&json!({
        "type": "audit",
        "tenant": tenant,
        "events": b.events,
        "checkpoints": b.checkpoints,
    }))
    .map_err(|e| e.to_string())?;
    // The batch's end names it: a retry of the same batch carries the same delivery id.
    let delivery = format!("{}:{}:{}", sink.id, b.upto_seq, b.upto_checkpoint);
    crate::notify::outbox::post_signed(url, secret.expose_secret(), body, &delivery, now).await
}

/// Delivers one batch to one sink; `Ok(true)` when it was full (more is waiting).
async fn deliver_sink(
    store: &Store,
    master: &MasterKey,
    tenant: &str,
    host: &str,
    sink: &AuditSink,
    now: OffsetDateTime,
) -> AppResult<bool> {
    let b = next_batch(store, sink).await?;
    if b.events.is_empty() && b.checkpoints.is_empty() {
        let mut tx = store.tenant(sink.tenant_id).await?;
        tx.release_audit_sink(sink.id, now).await?;
        tx.commit().await?;
        return Ok(false);
    }
    let outcome = match Target::parse(&sink.kind, &sink.target) {
        Err(e) => Err(e),
        Ok(target) => {
            let send = async {
                match &target {
                    Target::Webhook(url) => send_webhook(sink, url, master, tenant, &b, now).await,
                    Target::SyslogTcp(addr) => {
                        send_syslog_tcp(addr, &messages(host, tenant, &b)?).await
                    }
                    Target::SyslogUdp(addr) => {
                        send_syslog_udp(addr, &messages(host, tenant, &b)?).await
                    }
                }
            };
            tokio::time::timeout(TIMEOUT, send)
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
        }
    };
    let mut tx = store.tenant(sink.tenant_id).await?;
    let full = match outcome {
        Ok(()) => {
            tx.audit_sink_delivered(sink.id, b.upto_seq, b.upto_checkpoint, now)
                .await?;
            b.events.len() as i64 == BATCH
        }
        Err(e) => {
            tracing::warn!(%tenant, sink = %sink.id, target = %sink.target, error = %e, attempts = sink.attempts + 1, "audit sink not delivered; will retry");
            tx.audit_sink_failed(
                sink.id,
                &e,
                now + crate::notify::outbox::backoff(sink.attempts),
            )
            .await?;
            false
        }
    };
    tx.commit().await?;
    Ok(full)
}

/// One pass: every due sink of every tenant, concurrently, each until caught up (or failing).
pub async fn deliver_due(
    store: &Store,
    master: &Arc<MasterKey>,
    host: &str,
    now: OffsetDateTime,
) -> AppResult<usize> {
    let mut tasks = tokio::task::JoinSet::new();
    for tenant in store.tenants().await? {
        let mut tx = store.read(tenant.tenant_id).await?;
        let sinks = tx.audit_sinks().await?;
        tx.commit().await?;
        for sink in sinks.into_iter().filter(|s| s.next_attempt_at <= now) {
            let (store, master, host, slug) = (
                store.clone(),
                master.clone(),
                host.to_owned(),
                tenant.slug.clone(),
            );
            tasks.spawn(async move {
                let (tenant_id, sink_id) = (sink.tenant_id, sink.id);
                // Catch up in batches while batches come back full, for at most half a minute
                // per pass so one slow sink does not hold up the others' next pass for long.
                let started = std::time::Instant::now();
                while started.elapsed() < StdDuration::from_secs(30) {
                    // One sender per sink across replicas: the claim is taken anew for every
                    // batch and hands back the cursor the previous sender committed.
                    let mut tx = store.tenant(tenant_id).await?;
                    let claimed = tx.claim_audit_sink(sink_id, now, now + CLAIM).await?;
                    tx.commit().await?;
                    let Some(sink) = claimed else { break };
                    if !deliver_sink(&store, &master, &slug, &host, &sink, now).await? {
                        break;
                    }
                }
                Ok::<(), AppError>(())
            });
        }
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => done += 1,
            Ok(Err(e)) => tracing::warn!(error = %e, "audit sink pass failed"),
            Err(e) => tracing::warn!(error = %e, "audit sink task failed"),
        }
    }
    Ok(done)
}

/// Delivers every couple of seconds, forever, in its own task.
pub fn spawn(
    store: Store,
    clock: SharedClock,
    master: Arc<MasterKey>,
    host: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(StdDuration::from_secs(2)).await;
            if let Err(e) = deliver_due(&store, &master, &host, clock.now()).await {
                tracing::warn!(error = %e, "audit sink pass failed; retrying");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_or_say_what_is_expected() {
        assert_eq!(
            Target::parse("syslog", "tcp://siem.example:6514"),
            Ok(Target::SyslogTcp("siem.example:6514".into()))
        );
        assert_eq!(
            Target::parse("syslog", "udp://[::1]:514"),
            Ok(Target::SyslogUdp("[::1]:514".into()))
        );
        assert!(Target::parse("syslog", "siem:514").is_err());
        assert!(Target::parse("syslog", "tcp://siem:0").is_err());
        assert!(Target::parse("webhook", "ftp://x.example/").is_err());
        assert!(Target::parse("smoke", "x").is_err());
    }

    #[test]
    fn syslog_lines_follow_rfc5424() {
        let at = time::macros::datetime!(2030-01-02 03:04:05 UTC);
        let m = syslog_message("elevate.example", "de\"mo]", "event", 7, at, "{}");
        assert_eq!(
            m,
            "<110>1 2030-01-02T03:04:05Z elevate.example elevate - event [elevate@32473 tenant=\"de\\\"mo\\]\" seq=\"7\"] \u{feff}{}"
        );
    }
}
