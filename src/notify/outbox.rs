//! The notification outbox: written in the transaction of the event it reports, delivered here
//! with retries and exponential backoff (10 s doubling, at most an hour between attempts). A
//! failed delivery stays visible (attempts, last error) on the request page.

use std::sync::atomic::{AtomicBool, Ordering};

use time::{Duration, OffsetDateTime};

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use super::Mailer;
use crate::crypto::MasterKey;
use crate::error::AppResult;
use crate::store::{Store, Webhook};

/// `v1=` + hex HMAC-SHA256 over `"{timestamp}.{body}"` with the webhook's secret. Receivers
/// recompute it and refuse old timestamps, so a captured delivery cannot be replayed later.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_webhook(
    hook: &Webhook,
    master: &MasterKey,
    payload: &serde_json::Value,
    delivery: &str,
    now: OffsetDateTime,
) -> Result<(), String> {
    let secret = master
        .open(
            &Webhook::seal_context(hook.tenant_id, hook.id),
            &hook.secret_sealed,
        )
        .map_err(|e| format!("cannot unseal the webhook secret: {e}"))?;
    let body = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
    post_signed(&hook.url, secret.expose_secret(), body, delivery, now).await
}

/// POSTs a JSON body with `X-Elevate-Timestamp` and `X-Elevate-Signature` (see [`signature`]),
/// following no redirects, within 10 s. Notification webhooks and audit sinks both deliver so.
/// `X-Elevate-Delivery` is the same on every attempt of one delivery, so a receiver can drop the
/// rare second copy (a replica that died between sending and recording it).
pub(crate) async fn post_signed(
    url: &str,
    secret: &[u8],
    body: Vec<u8>,
    delivery: &str,
    now: OffsetDateTime,
) -> Result<(), String> {
    let timestamp = now.unix_timestamp();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-elevate-timestamp", timestamp.to_string())
        .header("x-elevate-signature", signature(secret, timestamp, &body))
        .header("x-elevate-delivery", delivery)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot reach the webhook: {e}"))?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!("webhook answered {}", res.status()))
    }
}

/// 10 s doubling per failed attempt, at most an hour.
pub(crate) fn backoff(attempts: i64) -> Duration {
    let secs = 10i64.saturating_mul(1i64 << attempts.clamp(0, 20));
    Duration::seconds(secs.min(3600))
}

/// How many notifications one claim takes, and how long it keeps them from other replicas: long
/// enough to send a whole batch at the 10 s timeout each.
const CLAIM_BATCH: i64 = 5;
const LEASE: Duration = Duration::minutes(1);
/// A pass ends after this many, so a flood cannot keep the reaper from its other work.
const PASS_LIMIT: usize = 1_000;

/// Delivers what is due for every tenant, in claimed batches until nothing is due; returns how
/// many were sent. Replicas running this at once never claim the same notification.
pub async fn deliver_due(
    store: &Store,
    mailer: &Mailer,
    master: &MasterKey,
    now: OffsetDateTime,
) -> AppResult<usize> {
    deliver_due_until(store, mailer, master, now, &AtomicBool::new(false)).await
}

/// [`deliver_due`], stopping between two notifications once `stop` is set (a graceful shutdown):
/// what it had claimed and not sent is given back at once, not left to its lease.
pub async fn deliver_due_until(
    store: &Store,
    mailer: &Mailer,
    master: &MasterKey,
    now: OffsetDateTime,
    stop: &AtomicBool,
) -> AppResult<usize> {
    let mut sent = 0;
    for tenant in store.tenants().await? {
        let mut handled = 0;
        while handled < PASS_LIMIT {
            let (due, hooks) = {
                let mut tx = store.tenant(tenant.tenant_id).await?;
                let due = tx
                    .claim_notifications(now, now + LEASE, CLAIM_BATCH)
                    .await?;
                let hooks = if due.iter().any(|i| i.channel == "webhook") {
                    tx.webhooks().await?
                } else {
                    Vec::new()
                };
                tx.commit().await?;
                (due, hooks)
            };
            if due.is_empty() {
                break;
            }
            handled += due.len();
            for (n, item) in due.iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    let mut tx = store.tenant(tenant.tenant_id).await?;
                    for unsent in &due[n..] {
                        tx.release_notification(unsent.id, now).await?;
                    }
                    tx.commit().await?;
                    return Ok(sent);
                }
                if deliver_one(store, mailer, master, &tenant, &hooks, item, now).await? {
                    sent += 1;
                }
            }
        }
    }
    Ok(sent)
}

/// Sends one claimed notification and records the outcome; true when it went out.
async fn deliver_one(
    store: &Store,
    mailer: &Mailer,
    master: &MasterKey,
    tenant: &crate::model::Tenant,
    hooks: &[Webhook],
    item: &crate::store::OutboxItem,
    now: OffsetDateTime,
) -> AppResult<bool> {
    let subject = item.payload.0["subject"]
        .as_str()
        .unwrap_or("elevate")
        .to_owned();
    let body = item.payload.0["body"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let outcome = match item.channel.as_str() {
        "email" => mailer.send_now(&item.recipient, &subject, body, now).await,
        "webhook" => match hooks.iter().find(|h| h.id.to_string() == item.recipient) {
            Some(hook) => {
                post_webhook(hook, master, &item.payload.0, &item.id.to_string(), now).await
            }
            None => Err("the webhook no longer exists".into()),
        },
        other => Err(format!("no delivery for channel {other}")),
    };
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let delivered = match outcome {
        Ok(()) => {
            tx.mark_sent(item.id, now).await?;
            true
        }
        Err(e) => {
            tracing::warn!(tenant = %tenant.slug, to = %item.recipient, error = %e, attempts = item.attempts + 1, "notification not delivered; will retry");
            tx.mark_failed(item.id, &e, now + backoff(item.attempts))
                .await?;
            false
        }
    };
    tx.commit().await?;
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps_at_an_hour() {
        assert_eq!(backoff(0), Duration::seconds(10));
        assert_eq!(backoff(3), Duration::seconds(80));
        assert_eq!(backoff(40), Duration::hours(1));
    }
}
