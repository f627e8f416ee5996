//! Notifications: queued with the event, delivered by the outbox worker to a real SMTP server,
//! retried with backoff while the server is down, and shown on the request page.

use elevate::clock::Clock;
use elevate::model::Role;
use elevate::store::UserChange;
use serde_json::{Value, json};

use crate::fixtures::SmtpSink;
use crate::fixtures::receiver;
use crate::helpers::{Acme, TestApp, TestDb, acme, ctx, seed_token, seed_user};

/// Only the enabled approvers of the profile's groups are told (chosen in SQL on each store).
async fn approvers_are_mailed_and_failed_deliveries_are_retried(db: TestDb) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn_with(db, |c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into())
    })
    .await;
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let Acme {
        tenant, alice, bob, ..
    } = acme(&app).await;
    seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        "dave@acme.example",
        &[Role::Approver],
        &["sre"],
    )
    .await;
    let zed = seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        "zed@acme.example",
        &[Role::Approver],
        &["sre"],
    )
    .await;
    seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        "sam@acme.example",
        &[Role::Requester],
        &["sre"],
    )
    .await;
    seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        "olga@acme.example",
        &[Role::Approver],
        &["dba"],
    )
    .await;
    let change = UserChange {
        disabled: Some(true),
        ..Default::default()
    };
    elevate::admin::update_user(&store, &ctx(clock.as_ref()), &tenant, zed.id, &change)
        .await
        .unwrap();
    // Found through the partial index of enabled approvers, not a scan of every user.
    let mut tx = store.tenant(tenant.tenant_id).await.unwrap();
    let plan = tx
        .explain_approvers_in(&["sre".to_owned()])
        .await
        .unwrap()
        .join("\n");
    tx.rollback().await.unwrap();
    assert!(plan.contains("users_approvers"), "{plan}");
    let alice_token = seed_token(&store, clock.as_ref(), &alice, &[]).await;
    let bob_token = seed_token(&store, clock.as_ref(), &bob, &[]).await;

    let body = json!({"profile": "prod-shell", "duration": "1h", "justification": "deploy hotfix", "ticket": "INC-5"});
    let r: serde_json::Value = app
        .client
        .post(app.url("/api/v1/requests"))
        .bearer_auth(&alice_token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap().to_owned();

    // The mail server is down: every delivery fails, is kept, and says so on the request page.
    let mailer = elevate::notify::Mailer::from_config(&elevate::config::Config {
        smtp_url: Some(format!("smtp://127.0.0.1:{port}").into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        elevate::notify::outbox::deliver_due(&store, &mailer, &app.master, clock.now())
            .await
            .unwrap(),
        0
    );
    let page = app
        .signed_in(&alice)
        .await
        .get(app.url(&format!("/requests/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("not delivered after 1 attempts"), "{page}");
    let recipients = ["bob@acme.example", "dave@acme.example"];
    for r in recipients {
        assert!(page.contains(r), "{r} is not notified");
    }
    assert!(
        !page.contains("zed@acme.example")
            && !page.contains("sam@acme.example")
            && !page.contains("olga@acme.example"),
        "disabled, non-approver or other group's approver notified"
    );

    let admin = seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        "carol@acme.example",
        &[Role::Admin],
        &[],
    )
    .await;
    let status = app
        .signed_in(&admin)
        .await
        .get(app.url("/admin/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        status.contains("bob@acme.example") && status.contains("Connection refused"),
        "{status}"
    );

    // Back up: nothing goes out before the backoff has passed, then everything does.
    let smtp = SmtpSink::start_on(port);
    assert_eq!(
        elevate::notify::outbox::deliver_due(&store, &mailer, &app.master, clock.now())
            .await
            .unwrap(),
        0
    );
    clock.advance(time::Duration::seconds(10));
    assert_eq!(
        elevate::notify::outbox::deliver_due(&store, &mailer, &app.master, clock.now())
            .await
            .unwrap(),
        2
    );
    let mail = smtp.nth(2).await;
    let mut to: Vec<String> = smtp
        .mails()
        .iter()
        .map(|m| m["to"][0].as_str().unwrap().to_owned())
        .collect();
    to.sort();
    assert_eq!(to, recipients);
    assert!(
        mail["subject"]
            .as_str()
            .unwrap()
            .contains("alice@acme.example requests prod-shell for 1h")
    );
    assert!(
        mail["body"]
            .as_str()
            .unwrap()
            .contains(&app.url(&format!("/requests/{id}")))
    );

    // The decision goes back to the requester.
    let res = app
        .client
        .post(app.url(&format!("/api/v1/requests/{id}/approve")))
        .bearer_auth(&bob_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        elevate::notify::outbox::deliver_due(&store, &mailer, &app.master, clock.now())
            .await
            .unwrap(),
        1
    );
    let back = smtp.nth(3).await;
    assert_eq!(back["to"][0], "alice@acme.example");
    assert_eq!(back["subject"], "elevate: prod-shell is active");
    assert_eq!(
        elevate::notify::outbox::deliver_due(&store, &mailer, &app.master, clock.now())
            .await
            .unwrap(),
        0,
        "nothing is sent twice"
    );
}

crate::on_both_backends!(approvers_are_mailed_and_failed_deliveries_are_retried);

#[tokio::test]
async fn webhooks_hear_transitions_signed_and_are_retried() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let Acme {
        tenant, alice_api, ..
    } = acme(&app).await;
    let alice_token = alice_api.token;
    let (rx, url) = receiver().await;
    let secret = "a-webhook-secret-of-enough-length";
    let bad = elevate::admin::add_webhook(
        &store,
        &app.master,
        &ctx(clock.as_ref()),
        &tenant,
        "ftp://x",
        secret,
    )
    .await;
    assert!(bad.is_err());
    elevate::admin::add_webhook(
        &store,
        &app.master,
        &ctx(clock.as_ref()),
        &tenant,
        &url,
        secret,
    )
    .await
    .unwrap();
    let mut tx = store.tenant(tenant.tenant_id).await.unwrap();
    let sealed = tx.webhooks().await.unwrap()[0].secret_sealed.clone();
    tx.commit().await.unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains(secret),
        "webhook secret stored in plaintext"
    );

    rx.status.store(500, std::sync::atomic::Ordering::SeqCst);
    let body = json!({"profile": "prod-shell", "duration": "1h", "justification": "deploy", "ticket": "INC-5", "break_glass": true});
    let res = app
        .client
        .post(app.url("/api/v1/requests"))
        .bearer_auth(&alice_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let mailer = elevate::notify::Mailer::Disabled;
    elevate::notify::outbox::deliver_due(&store, &mailer, &app.master, clock.now())
        .await
        .unwrap();
    let first_tries = rx.got.lock().unwrap().len();
    assert!(first_tries >= 2, "submitted and activated were posted");

    rx.status.store(204, std::sync::atomic::Ordering::SeqCst);
    clock.advance(time::Duration::seconds(10));
    elevate::notify::outbox::deliver_due(&store, &mailer, &app.master, clock.now())
        .await
        .unwrap();
    let got = rx.got.lock().unwrap().clone();
    let delivered = &got[first_tries..];
    let events: Vec<String> = delivered
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<Value>(b).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        events.contains(&"request.submitted".to_owned())
            && events.contains(&"grant.activated".to_owned()),
        "{events:?}"
    );
    for (headers, body) in delivered {
        let ts: i64 = headers["x-elevate-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(ts, clock.now().unix_timestamp());
        let expected = elevate::notify::outbox::signature(secret.as_bytes(), ts, body);
        assert_eq!(headers["x-elevate-signature"].to_str().unwrap(), expected);
        let v: Value = serde_json::from_slice(body).unwrap();
        assert!(
            v["text"].as_str().unwrap().starts_with("[elevate] "),
            "Slack-compatible text: {v}"
        );
    }
    // The reaper's transitions are heard too.
    clock.advance(time::Duration::hours(1));
    let shared: elevate::clock::SharedClock = clock.clone();
    assert_eq!(
        elevate::reaper::run_once(&store, &shared, &app.base)
            .await
            .unwrap(),
        1
    );
    elevate::notify::outbox::deliver_due(&store, &mailer, &app.master, clock.now())
        .await
        .unwrap();
    let last = rx.got.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&last.1).unwrap()["event"],
        "grant.expired"
    );
    assert!(
        elevate::notify::outbox::signature(b"another-secret-entirely", 1, b"x")
            != elevate::notify::outbox::signature(secret.as_bytes(), 1, b"x")
    );
}
