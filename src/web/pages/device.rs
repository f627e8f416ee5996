//! `/device`: a signed-in person confirms the code `elevate login` shows, sees which client asks
//! (what it calls itself, its address, when), and approves or denies it.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;

use super::{Nav, when};
use crate::auth::device;
use crate::auth::session::SessionUser;
use crate::error::AppResult;
use crate::web::AppState;
use crate::web::csrf::CsrfForm;

pub fn router() -> Router<AppState> {
    Router::new().route("/device", get(show).post(decide))
}

#[derive(Template, WebTemplate)]
#[template(path = "device/device.html")]
struct DevicePage {
    nav: Nav,
    code: String,
    /// The waiting login, when the code names one.
    waiting: Option<Waiting>,
    /// What was just decided ("approved", "denied"), or why the code does not work.
    outcome: String,
}

struct Waiting {
    client: String,
    ip: String,
    at: String,
    /// Asks for admin rights: approving needs a passkey confirmation first.
    admin: bool,
    /// Where to confirm, coming back here.
    step_up: String,
}

#[derive(Deserialize, Default)]
struct CodeQuery {
    #[serde(default)]
    code: String,
}

async fn show(
    State(state): State<AppState>,
    who: SessionUser,
    Query(q): Query<CodeQuery>,
) -> DevicePage {
    let code = device::normalize_user_code(&q.code);
    let (waiting, outcome) = if code.is_empty() {
        (None, String::new())
    } else {
        match device::pending(&state.store, &who.tenant, &code, state.clock.now()).await {
            Ok(g) => (
                Some(Waiting {
                    client: g.client,
                    ip: g.ip.unwrap_or_else(|| "unknown".into()),
                    at: when(g.created_at),
                    admin: g.admin,
                    // The code is letters and a dash: nothing to escape but the path's own.
                    step_up: format!("/step-up?next=%2Fdevice%3Fcode%3D{}", g.user_code),
                }),
                String::new(),
            ),
            Err(e) => (None, e.to_string()),
        }
    };
    DevicePage {
        nav: Nav::of(&who),
        code,
        waiting,
        outcome,
    }
}

#[derive(Deserialize)]
struct DecideForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    decision: String,
}

async fn decide(
    State(state): State<AppState>,
    who: SessionUser,
    CsrfForm(form): CsrfForm<DecideForm>,
) -> AppResult<DevicePage> {
    let approve = form.decision == "approve";
    device::decide(
        &state.store,
        (&who.ctx(state.clock.now()), &state.config.public_url),
        (&who.tenant, &who.user, who.session.id),
        &form.code,
        approve,
    )
    .await?;
    Ok(DevicePage {
        nav: Nav::of(&who),
        code: device::normalize_user_code(&form.code),
        waiting: None,
        outcome: if approve {
            "approved: the command line is logged in as you; you can close this page".into()
        } else {
            "denied: that command line gets no access".into()
        },
    })
}
