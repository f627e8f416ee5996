//! The notification outbox: written in the transaction of the event it reports, delivered here
//! with retries and exponential backoff (10 s doubling, at most an hour between attempts). A
//! failed delivery stays visible (attempts, last error) on the request page.

use time::{Duration, OffsetDateTime};

use super::Mailer;
use crate::error::AppResult;
use crate::store::Store;

fn backoff(attempts: i64) -> Duration {
    let secs = 10i64.saturating_mul(1i64 << attempts.clamp(0, 20));
    Duration::seconds(secs.min(3600))
}

/// Delivers what is due for every tenant; returns how many were sent.
pub async fn deliver_due(store: &Store, mailer: &Mailer, now: OffsetDateTime) -> AppResult<usize> {
    let mut sent = 0;
    for tenant in store.tenants().await? {
        let due = {
            let mut tx = store.tenant(tenant.tenant_id).await?;
            let due = tx.due_notifications(now, 100).await?;
            tx.commit().await?;
            due
        };
        for item in due {
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
                other => Err(format!("no delivery for channel {other}")),
            };
            let mut tx = store.tenant(tenant.tenant_id).await?;
            match outcome {
                Ok(()) => {
                    tx.mark_sent(item.id, now).await?;
                    sent += 1;
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant.slug, to = %item.recipient, error = %e, attempts = item.attempts + 1, "notification not delivered; will retry");
                    tx.mark_failed(item.id, &e, now + backoff(item.attempts))
                        .await?;
                }
            }
            tx.commit().await?;
        }
    }
    Ok(sent)
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
