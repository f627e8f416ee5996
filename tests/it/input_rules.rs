//! What people type (issue 13 items 8, 9, 14, 15): control characters refused on both stores,
//! bidirectional overrides and invisible characters neutralised where approvers read, tickets
//! capped, one normal form for email addresses, and sign-in asks that do the same work for known
//! and unknown addresses.

use elevate::auth::magic_link;
use elevate::clock::Clock;
use elevate::crypto::TokenHash;
use elevate::error::AppError;
use elevate::model::Role;
use elevate::notify::Mailer;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Acme, TestApp, TestDb, acme, csrf_in, ctx, seed_user};

struct Org {
    app: TestApp,
    acme: Acme,
}

/// The acme fixture's tenant, people and API clients, as `o.alice`, `o.bob_api`, ...
impl std::ops::Deref for Org {
    type Target = Acme;
    fn deref(&self) -> &Acme {
        &self.acme
    }
}

async fn org(db: TestDb) -> Org {
    let app = TestApp::spawn(db).await;
    let acme = acme(&app).await;
    Org { app, acme }
}

impl Org {
    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.app.api(token).post(path, body).await
    }

    async fn ask(&self, justification: &str, ticket: &str) -> (StatusCode, Value) {
        self.post(
            &self.alice_api.token,
            "/api/v1/requests",
            json!({"profile": "prod-shell", "duration": "30m", "justification": justification, "ticket": ticket}),
        )
        .await
    }

    async fn count_requests(&self) -> usize {
        let res = self
            .app
            .get_as(&self.alice_api.token, "/api/v1/requests")
            .await;
        let body: Value = res.json().await.unwrap();
        body["requests"].as_array().unwrap().len()
    }
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// A NUL (Postgres refused it with a 500; SQLite stored it) or another control character in a
/// justification, ticket, comment, revocation reason or token name is a 422 on both stores,
/// through the API and the pages; line breaks and tabs stay allowed where text is multi-line.
async fn control_characters_are_refused_with_422(db: TestDb) {
    let o = org(db).await;
    for (justification, ticket) in [
        ("deploy\u{0}fix", "INC-1"),
        ("deploy", "INC-1\u{0}"),
        ("deploy", "INC-1\nINC-2"),
        ("clear \u{1b}[2J screen", "INC-1"),
        ("over\rwrite", "INC-1"),
    ] {
        let (status, body) = o.ask(justification, ticket).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(message(&body).contains("control character"), "{body}");
        assert!(!message(&body).contains('\u{0}'));
    }
    assert_eq!(o.count_requests().await, 0, "nothing stored");

    // Multi-line text keeps its line breaks (a browser sends CR LF) and tabs.
    let (status, r) = o.ask("line one\r\nline two\n\tindented", "INC-1").await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["justification"], "line one\r\nline two\n\tindented");
    let id = r["id"].as_str().unwrap().to_owned();

    for (action, body) in [
        ("approve", json!({"comment": "ok\u{0}"})),
        ("deny", json!({"comment": "no \u{1b}]8;;http://evil\u{7}"})),
    ] {
        let (status, r) = o
            .post(
                &o.bob_api.token,
                &format!("/api/v1/requests/{id}/{action}"),
                body,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{action}: {r}");
    }
    let (status, r) = o
        .post(
            &o.bob_api.token,
            &format!("/api/v1/requests/{id}/approve"),
            json!({"comment": "fine\nby me"}),
        )
        .await;
    assert_eq!(
        (status, r["state"].as_str()),
        (StatusCode::OK, Some("active"))
    );
    let (status, r) = o.app.api(&o.alice_api.token).revoke(&id, "done\u{0}").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");

    // The pages go through the same core.
    let alice = o.app.signed_in(&o.alice).await;
    let form = alice
        .get(o.app.url("/requests/new"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_in(&form);
    let res = alice
        .post(o.app.url("/requests"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("profile", "prod-shell"),
            ("duration", "30m"),
            ("justification", "deploy\u{0}"),
            ("ticket", "INC-3"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let tokens = alice
        .get(o.app.url("/tokens"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_in(&tokens);
    let res = alice
        .post(o.app.url("/tokens"))
        .form(&[("csrf", csrf.as_str()), ("name", "ci\u{0}bot")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = res.text().await.unwrap();
    assert!(text.contains("control character"), "{text}");
    assert_eq!(o.count_requests().await, 1);

    // Other free text that reaches the store: webhook URLs and tenant names.
    let c = ctx(o.app.clock.as_ref());
    let err = elevate::admin::add_webhook(
        o.app.store(),
        &o.app.master,
        &c,
        &o.tenant,
        "https://hooks.example/\u{0}x",
        "a-long-enough-webhook-secret",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AppError::Unprocessable(_)), "{err:?}");
    let err =
        elevate::admin::create_tenant(o.app.store(), &o.app.master, &c, "nul-org", "Nul\u{0} Org")
            .await
            .unwrap_err();
    assert!(matches!(err, AppError::Unprocessable(_)), "{err:?}");

    // Every refusal is audited, naming the code point, never the character itself.
    let mut tx = o.app.store().tenant(o.tenant.tenant_id).await.unwrap();
    let refused: Vec<String> = tx
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "request.refused")
        .map(|e| e.details.0["reason"].as_str().unwrap().to_owned())
        .collect();
    tx.commit().await.unwrap();
    assert_eq!(
        refused
            .iter()
            .filter(|r| r.contains("control character (U+"))
            .count(),
        9,
        "{refused:?}"
    );
}

/// A ticket longer than 128 characters is refused (a 250,000-character one made a certificate
/// sshd rejects); 128 is accepted.
async fn tickets_are_capped_at_128_characters(db: TestDb) {
    let o = org(db).await;
    let longest = format!("INC-{}", "7".repeat(124));
    assert_eq!(longest.chars().count(), 128);
    let (status, r) = o.ask("deploy", &longest).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["ticket"], longest.as_str());
    for ticket in [
        format!("INC-{}", "7".repeat(125)),
        format!("INC-{}", "7".repeat(250_000)),
    ] {
        let (status, body) = o.ask("deploy", &ticket).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            message(&body),
            "ticket is longer than 128 characters",
            "{status}"
        );
    }
    assert_eq!(o.count_requests().await, 1);
}

/// Bidirectional overrides and zero-width characters are stored as typed (the API returns them)
/// but shown as `[U+XXXX]` on the request page and in the approvers' mail.
async fn overrides_and_invisible_characters_are_shown_visibly(db: TestDb) {
    let o = org(db).await;
    let typed = "restart \u{202E}txt.exe\u{202C} service\u{200B} \u{2066}x\u{2069}";
    let (status, r) = o.ask(typed, "INC-8").await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["justification"], typed, "stored as typed");
    let id = r["id"].as_str().unwrap().to_owned();

    let bob = o.app.signed_in(&o.bob).await;
    let page = bob
        .get(o.app.url(&format!("/requests/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("restart [U+202E]txt.exe[U+202C] service[U+200B] [U+2066]x[U+2069]"),
        "{page}"
    );
    for c in ['\u{202E}', '\u{202C}', '\u{200B}', '\u{2066}', '\u{2069}'] {
        assert!(!page.contains(c), "raw {c:?} on the page");
    }

    // Line breaks as a browser sends them (CR LF) are line breaks, not markers.
    let (_, r) = o.ask("first line\r\nsecond line", "INC-9").await;
    let crlf = bob
        .get(
            o.app
                .url(&format!("/requests/{}", r["id"].as_str().unwrap())),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(crlf.contains("first line\r\nsecond line"), "{crlf}");
    assert!(!crlf.contains("[U+"), "{crlf}");

    let mut tx = o.app.store().tenant(o.tenant.tenant_id).await.unwrap();
    let mail = tx.notifications_for(id.parse().unwrap()).await.unwrap();
    tx.commit().await.unwrap();
    let to_bob = mail
        .iter()
        .find(|m| m.recipient == "bob@acme.example")
        .expect("bob is asked to decide");
    let body = to_bob.payload.0["body"].as_str().unwrap();
    assert!(body.contains("[U+202E]txt.exe"), "{body}");
    assert!(
        !body.contains('\u{202E}') && !body.contains('\u{200B}'),
        "{body}"
    );
}

/// `bob\u{200b}@example.com` is not a second bob: refused at every entry point (core, admin page,
/// CLI, sign-in), while `Bob@EXAMPLE.com ` is the same person as `bob@example.com`.
async fn emails_have_one_normal_form(db: TestDb) {
    let o = org(db).await;
    let (store, clock) = (o.app.store().clone(), o.app.clock.clone());
    let twin = "bob\u{200b}@acme.example";
    let err = elevate::admin::create_user(
        &store,
        &ctx(clock.as_ref()),
        &o.tenant,
        twin,
        None,
        &[Role::Approver],
        &["sre".into()],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AppError::Unprocessable(_)), "{err:?}");
    assert!(err.to_string().contains("[U+200B]"), "{err}");
    for spelling in ["Bob@ACME.example ", " bob@acme.EXAMPLE", "BOB@acme.example"] {
        let found = elevate::admin::user_by_email(&store, &o.tenant, spelling)
            .await
            .unwrap();
        assert_eq!(found.id, o.bob.id, "{spelling}");
    }
    let again = elevate::admin::create_user(
        &store,
        &ctx(clock.as_ref()),
        &o.tenant,
        "Bob@ACME.example ",
        None,
        &[],
        &[],
    )
    .await
    .unwrap_err();
    assert!(matches!(again, AppError::Conflict(_)), "{again:?}");

    // The admin page (invite).
    let carol = seed_user(
        &store,
        clock.as_ref(),
        &o.tenant,
        "carol@acme.example",
        &[Role::Admin],
        &[],
    )
    .await;
    let admin = o.app.signed_in(&carol).await;
    let page = admin
        .get(o.app.url("/admin/users"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_in(&page);
    let res = admin
        .post(o.app.url("/admin/users"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", twin),
            ("role", "approver"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The CLI, on the SQLite file (the master key lies beside it).
    if o.app.db.backend == elevate::store::Backend::Sqlite {
        let cli = |args: &[&str]| {
            crate::fixtures::elevate(&o.app.db.dir)
                .args(args)
                .args(["--database", &o.app.db.url])
                .output()
                .unwrap()
        };
        let out = cli(&[
            "admin", "user", "create", "--tenant", "acme", "--email", twin, "--role", "approver",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid email address"), "{err}");
        let out = cli(&[
            "admin",
            "token",
            "create",
            "--tenant",
            "acme",
            "--email",
            "Bob@ACME.example ",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Asking for a sign-in link for the twin sends nothing and stores nothing.
    let mailer = Mailer::DemoOutbox(Default::default());
    let asked = magic_link::request_link(
        &store,
        &mailer,
        &o.app.base,
        "acme",
        twin,
        &TokenHash::of("nonce"),
        &Default::default(),
        clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(asked.steps, ["refused: not an address"]);
}

/// Known, unknown and disabled addresses take the same steps when asking for a sign-in link
/// (issue 13 item 14: their answers differed by 0.3-0.5 ms): the same lookups, a link secret
/// generated, hashed and stored, the same audit record, a message composed and handed to the
/// background mailer. Only the known address's message has a recipient.
async fn signin_asks_do_the_same_work_for_known_and_unknown_addresses(db: TestDb) {
    let o = org(db).await;
    let (store, clock) = (o.app.store().clone(), o.app.clock.clone());
    let disabled = seed_user(
        &store,
        clock.as_ref(),
        &o.tenant,
        "dora@acme.example",
        &[Role::Requester],
        &[],
    )
    .await;
    elevate::admin::update_user(
        &store,
        &ctx(clock.as_ref()),
        &o.tenant,
        disabled.id,
        &elevate::store::UserChange {
            disabled: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mailer = Mailer::DemoOutbox(Default::default());
    let mut traces = Vec::new();
    for email in [
        "alice@acme.example",
        "nobody@acme.example",
        "dora@acme.example",
    ] {
        let asked = magic_link::request_link(
            &store,
            &mailer,
            &o.app.base,
            "acme",
            email,
            &TokenHash::of("nonce"),
            &Default::default(),
            clock.now(),
        )
        .await
        .unwrap();
        traces.push(asked.steps);
    }
    assert_eq!(traces[0], traces[1], "known and unknown differ");
    assert_eq!(traces[0], traces[2], "known and disabled differ");
    assert_eq!(
        traces[0],
        [
            "look up the person",
            "generate and hash a link secret",
            "store the link",
            "audit and commit",
            "compose the message",
            "hand the message to the background mailer",
        ]
    );
    // Each ask stored a link and wrote the same audit record; only alice gets mail.
    let mut tx = store.tenant(o.tenant.tenant_id).await.unwrap();
    let asks: Vec<Value> = tx
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "signin.requested")
        .map(|e| e.details.0)
        .collect();
    tx.commit().await.unwrap();
    assert_eq!(asks.len(), 3);
    for (ask, known) in asks.iter().zip([true, false, false]) {
        assert_eq!(ask["known"], known);
        assert!(ask["link_id"].is_string(), "{ask}");
    }
    for _ in 0..50 {
        if !mailer.demo_outbox().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let sent: Vec<String> = mailer
        .demo_outbox()
        .unwrap()
        .into_iter()
        .map(|m| m.to)
        .collect();
    assert_eq!(sent, ["alice@acme.example"]);
}

crate::on_both_backends!(
    control_characters_are_refused_with_422,
    tickets_are_capped_at_128_characters,
    overrides_and_invisible_characters_are_shown_visibly,
    emails_have_one_normal_form,
    signin_asks_do_the_same_work_for_known_and_unknown_addresses,
);
