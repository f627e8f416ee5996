//! `step_up = true` in a profile is enforced in the core (issue 14, item 5): no approval without
//! a passkey assertion bound to it. Passkeys do not exist yet, so a bare token and a session both
//! get 403 `step_up_required`, the request stays pending, and the refusal is audited, from the
//! API and from the pages, on both stores.

use reqwest::StatusCode;

use crate::fixtures::shop_with;
use crate::helpers::{TestApp, TestDb, csrf_in};
use crate::on_both_backends;

const POLICY: &str = r#"
[[profile]]
name = "prod-db-admin"
requesters = ["engineering"]
approvers = ["sre"]
approvals_required = 1
step_up = true
[profile.ssh]
principals = ["dba"]

[[profile]]
name = "prod-shell"
requesters = ["engineering"]
approvers = ["sre"]
[profile.ssh]
principals = ["deploy"]
"#;

async fn a_step_up_profile_is_never_approved_without_a_passkey(db: TestDb) {
    let shop = shop_with(TestApp::spawn(db).await, "acme", POLICY).await;
    let app = &shop.app;
    let (alice, bob) = (app.api(&shop.alice), app.api(&shop.bob));
    let id = alice.request("prod-db-admin", "30m").await;

    // The API, with a token that holds every scope bob has.
    let (s, r) = bob.approve(&id).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(r["error"]["code"], "step_up_required", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{}/requests/{id}", app.base)),
        "{message}"
    );
    let (_, shown) = bob.show(&id).await;
    assert_eq!(shown["state"], "pending", "{shown}");
    assert_eq!(shown["approvals"].as_array().unwrap().len(), 0, "{shown}");

    // The page, with bob's session.
    let browser = app.signed_in(&shop.user("bob@acme.example").await).await;
    let html = browser
        .get(app.url(&format!("/requests/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = browser
        .post(app.url(&format!("/requests/{id}/approve")))
        .form(&[("csrf", csrf_in(&html).as_str()), ("comment", "ok")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let refused = res.text().await.unwrap();
    assert!(refused.contains("passkey"), "{refused}");
    // The error page keeps the nav of who is signed in.
    assert!(
        refused.contains("bob@acme.example") && !refused.contains(">Sign in<"),
        "{refused}"
    );
    let (_, shown) = bob.show(&id).await;
    assert_eq!(shown["state"], "pending", "{shown}");

    // Both refusals are audited with their reason.
    let refused: Vec<String> = shop
        .actions()
        .await
        .into_iter()
        .filter(|(a, _)| a == "request.refused")
        .map(|(_, d)| d["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused.iter().all(|r| r.contains("passkey step-up")),
        "{refused:?}"
    );

    // Applying the policy says so, naming only the step-up profile.
    let applied = elevate::broker::policy::apply(
        app.store(),
        &crate::helpers::ctx(app.clock.as_ref()),
        &shop.tenant,
        POLICY,
    )
    .await
    .unwrap();
    assert_eq!(applied.warnings.len(), 1, "{:?}", applied.warnings);
    assert!(
        applied.warnings[0].contains("prod-db-admin") && applied.warnings[0].contains("passkey"),
        "{:?}",
        applied.warnings
    );

    // A profile without step_up is approved as before.
    let plain = alice.request("prod-shell", "30m").await;
    let (s, r) = bob.approve(&plain).await;
    assert_eq!(
        (s, r["state"].as_str()),
        (StatusCode::OK, Some("active")),
        "{r}"
    );
}

on_both_backends!(a_step_up_profile_is_never_approved_without_a_passkey);
