//! `/dev/outbox`: in `--demo` mode without SMTP, the mail elevate would have sent. It does not
//! exist in any other mode.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::{Nav, when};
use crate::error::{AppError, AppResult};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/dev/outbox", get(outbox))
}

struct Mail {
    to: String,
    subject: String,
    body: String,
    at: String,
    /// The first link in the body, offered as a button.
    link: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "dev/outbox.html")]
struct OutboxPage {
    nav: Nav,
    mails: Vec<Mail>,
}

async fn outbox(State(state): State<AppState>) -> AppResult<OutboxPage> {
    let entries = state
        .mailer
        .demo_outbox()
        .ok_or_else(|| AppError::NotFound("no such page".into()))?;
    Ok(OutboxPage {
        nav: Nav::anonymous(),
        mails: entries
            .into_iter()
            .map(|e| Mail {
                link: e
                    .body
                    .split_whitespace()
                    .find(|w| w.starts_with("https://") || w.starts_with("http://"))
                    .unwrap_or_default()
                    .to_owned(),
                to: e.to,
                subject: e.subject,
                body: e.body,
                at: when(e.at),
            })
            .collect(),
    })
}
