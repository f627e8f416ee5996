//! Notifications: queued with the event, delivered by the outbox worker to a real SMTP server,
//! retried with backoff while the server is down, and shown on the request page.

use elevate::clock::Clock;
use elevate::model::Role;
use elevate::store::UserChange;
use serde_json::json;

use crate::helpers::{TestApp, TestDb, ctx, seed_tenant, seed_token, seed_user};
use crate::signin::SmtpSink;

#[tokio::test]
async fn approvers_are_mailed_and_failed_deliveries_are_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn_with(TestDb::sqlite().await, |c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into())
    })
    .await;
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let tenant = seed_tenant(&store, &app.master, clock.as_ref(), "acme").await;
    elevate::policy::apply(
        &store,
        &ctx(clock.as_ref()),
        &tenant,
        crate::workflow::POLICY,
    )
    .await
    .unwrap();
    let alice = seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        "alice@acme.example",
        &[Role::Requester],
        &["engineering"],
    )
    .await;
    let bob = seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        "bob@acme.example",
        &[Role::Approver],
        &["sre"],
    )
    .await;
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
    let change = UserChange {
        disabled: Some(true),
        ..Default::default()
    };
    elevate::admin::update_user(&store, &ctx(clock.as_ref()), &tenant, zed.id, &change)
        .await
        .unwrap();
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
        elevate::notify::outbox::deliver_due(&store, &mailer, clock.now())
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
        !page.contains("zed@acme.example") && !page.contains("sam@acme.example"),
        "disabled or non-approver notified"
    );

    // Back up: nothing goes out before the backoff has passed, then everything does.
    let smtp = SmtpSink::start_on(port);
    assert_eq!(
        elevate::notify::outbox::deliver_due(&store, &mailer, clock.now())
            .await
            .unwrap(),
        0
    );
    clock.advance(time::Duration::seconds(10));
    assert_eq!(
        elevate::notify::outbox::deliver_due(&store, &mailer, clock.now())
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
        elevate::notify::outbox::deliver_due(&store, &mailer, clock.now())
            .await
            .unwrap(),
        1
    );
    let back = smtp.nth(3).await;
    assert_eq!(back["to"][0], "alice@acme.example");
    assert_eq!(back["subject"], "elevate: prod-shell is active");
    assert_eq!(
        elevate::notify::outbox::deliver_due(&store, &mailer, clock.now())
            .await
            .unwrap(),
        0,
        "nothing is sent twice"
    );
}
