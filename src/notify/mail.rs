//! Email over SMTP (lettre, `ELEVATE_SMTP_URL`: `smtps://` for TLS, `smtp://...?tls=required` for
//! STARTTLS). In `--demo` without SMTP, messages go to an in-memory outbox shown at `/dev/outbox`
//! and to the log, so the demo works on a laptop with no mail server.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use time::OffsetDateTime;

use crate::config::Config;

const DEMO_OUTBOX_SIZE: usize = 50;

#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub to: String,
    pub subject: String,
    pub body: String,
    pub at: OffsetDateTime,
}

#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    DemoOutbox(Arc<Mutex<VecDeque<OutboxEntry>>>),
    /// No SMTP configured outside the demo: sign-in by email is unavailable (said at start).
    Disabled,
}

impl Mailer {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        match &config.smtp_url {
            Some(url) if !url.expose_secret().is_empty() => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| anyhow::anyhow!("ELEVATE_SMTP_URL is not a valid SMTP URL: {e}"))?
                    .build();
                let from = config
                    .mail_from
                    .parse()
                    .map_err(|e| anyhow::anyhow!("mail_from: {e}"))?;
                Ok(Mailer::Smtp { transport, from })
            }
            _ if config.demo => Ok(Mailer::DemoOutbox(Arc::default())),
            _ => Ok(Mailer::Disabled),
        }
    }

    pub fn is_available(&self) -> bool {
        !matches!(self, Mailer::Disabled)
    }

    /// The demo outbox, newest first (only in demo mode without SMTP).
    pub fn demo_outbox(&self) -> Option<Vec<OutboxEntry>> {
        match self {
            Mailer::DemoOutbox(q) => Some(
                q.lock()
                    .map(|q| q.iter().rev().cloned().collect())
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    }

    /// Sends now and reports the outcome (the outbox worker retries failures).
    pub async fn send_now(
        &self,
        to: &str,
        subject: &str,
        body: String,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        match self {
            Mailer::Smtp { transport, from } => {
                let to_box = to.parse::<Mailbox>().map_err(|e| e.to_string())?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to_box)
                    .subject(subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(body)
                    .map_err(|e| e.to_string())?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Mailer::DemoOutbox(queue) => {
                // Demo only: the message is kept for `/dev/outbox` so the demo works without a
                // mail server. Its body is not logged: it may hold a sign-in link, a bearer
                // secret, and logs travel further than the outbox page.
                tracing::info!(%to, %subject, "demo outbox (no SMTP configured): see /dev/outbox");
                if let Ok(mut q) = queue.lock() {
                    if q.len() == DEMO_OUTBOX_SIZE {
                        q.pop_front();
                    }
                    q.push_back(OutboxEntry {
                        to: to.to_owned(),
                        subject: subject.to_owned(),
                        body,
                        at: now,
                    });
                }
                Ok(())
            }
            Mailer::Disabled => Err("no ELEVATE_SMTP_URL configured".into()),
        }
    }

    /// Sends in the background: the caller answers at once, so whether a message was sent (for
    /// instance to a known address) cannot be read from its response time.
    pub fn send_later(&self, to: &str, subject: &str, body: String, now: OffsetDateTime) {
        self.hand_off(Some(to.to_owned()), subject, body, now);
    }

    /// [`send_later`](Self::send_later) for a message that may have no recipient: it is handed to
    /// the background task either way, which drops it there when `to` is None. Callers that must
    /// not reveal whether an address is known (sign-in links) do the same work on both paths.
    pub fn hand_off(&self, to: Option<String>, subject: &str, body: String, now: OffsetDateTime) {
        let (mailer, subject) = (self.clone(), subject.to_owned());
        tokio::spawn(async move {
            let Some(to) = to else {
                drop(body);
                return;
            };
            match mailer.send_now(&to, &subject, body, now).await {
                Ok(()) => tracing::info!(%to, "mail sent"),
                Err(e) => tracing::warn!(%to, error = %e, "mail not sent"),
            }
        });
    }
}

/// Asks an SMTP server whether it speaks: connects, EHLO, STARTTLS or TLS as the URL says,
/// authenticates when it carries credentials, NOOP. Bounded by `limit`. Shared by `/readyz` and
/// `elevate doctor`; the error never carries the URL (it may hold a password).
pub async fn probe_smtp(url: &str, limit: std::time::Duration) -> Result<(), String> {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|e| format!("not a valid SMTP URL: {e}"))?
        .timeout(Some(limit))
        .build();
    probe_transport(&transport, limit).await
}

async fn probe_transport(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    limit: std::time::Duration,
) -> Result<(), String> {
    match tokio::time::timeout(limit, transport.test_connection()).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err("the server did not answer NOOP".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", limit.as_secs())),
    }
}

impl Mailer {
    /// Probes the configured SMTP server; `None` when mail does not go over SMTP.
    pub async fn probe(&self, limit: std::time::Duration) -> Option<Result<(), String>> {
        match self {
            Mailer::Smtp { transport, .. } => Some(probe_transport(transport, limit).await),
            _ => None,
        }
    }
}
