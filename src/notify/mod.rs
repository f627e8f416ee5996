//! Getting word to people: email now; webhooks and the outbox with retries join with the workflow.

pub mod mail;
pub mod outbox;

pub use mail::{Mailer, OutboxEntry};
