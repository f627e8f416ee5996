//! Several replicas on one PostgreSQL: background work that two of them run at once does each
//! piece once.

use std::collections::HashMap;

use elevate::clock::Clock;
use elevate::model::Role;
use elevate::store::Store;
use serde_json::json;

use crate::helpers::{TestApp, TestDb, ctx, seed_tenant, seed_token, seed_user};
use crate::notify::receiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_webhook_once_with_a_delivery_id() {
    let app = TestApp::spawn(TestDb::postgres().await).await;
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
    let token = seed_token(&store, clock.as_ref(), &alice, &[]).await;
    let (rx, url) = receiver().await;
    rx.delay_ms.store(15, std::sync::atomic::Ordering::SeqCst);
    elevate::admin::add_webhook(
        &store,
        &app.master,
        &ctx(clock.as_ref()),
        &tenant,
        &url,
        "a-webhook-secret-of-enough-length",
    )
    .await
    .unwrap();
    for n in 0..24 {
        let res = app
            .client
            .post(app.url("/api/v1/requests"))
            .bearer_auth(&token)
            .json(&json!({"profile": "prod-shell", "duration": "1h", "justification": format!("deploy {n}"), "ticket": format!("INC-{n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    let mut tx = store.tenant(tenant.tenant_id).await.unwrap();
    let queued: Vec<_> = tx
        .due_notifications(clock.now(), 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.channel == "webhook")
        .map(|i| i.id.to_string())
        .collect();
    tx.commit().await.unwrap();
    assert!(queued.len() >= 24, "{} webhook notifications", queued.len());

    // A second replica: its own pool on the same database.
    let other = Store::connect(&app.db.url).await.unwrap();
    let mailer = elevate::notify::Mailer::Disabled;
    let now = clock.now();
    let (a, b) = tokio::join!(
        elevate::notify::outbox::deliver_due(&store, &mailer, &app.master, now),
        elevate::notify::outbox::deliver_due(&other, &mailer, &app.master, now),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a > 0 && b > 0, "both replicas delivered ({a} and {b})");

    let got = rx.got.lock().unwrap().clone();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (headers, _) in &got {
        let id = headers["x-elevate-delivery"].to_str().unwrap().to_owned();
        *seen.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let mut delivered: Vec<_> = seen.into_keys().collect();
    delivered.sort();
    let mut expected = queued.clone();
    expected.sort();
    assert_eq!(
        delivered, expected,
        "every queued webhook went out, named by its outbox id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_stream_an_audit_sink_once() {
    let app = TestApp::spawn(TestDb::postgres().await).await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    let (rx, url) = receiver().await;
    rx.delay_ms.store(30, std::sync::atomic::Ordering::SeqCst);
    elevate::audit::sinks::add_sink(
        app.store(),
        &app.master,
        &ctx(app.clock.as_ref()),
        &tenant,
        "webhook",
        &url,
        Some("an-audit-webhook-secret"),
    )
    .await
    .unwrap();
    // Three replicas, each with its own pool, start every round together after new events.
    let mut replicas = vec![app.store().clone()];
    for _ in 0..2 {
        replicas.push(Store::connect(&app.db.url).await.unwrap());
    }
    for _round in 0..6 {
        crate::audit::append_events(&app, &tenant, 250).await;
        let now = app.clock.now();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(replicas.len()));
        let mut runs = tokio::task::JoinSet::new();
        for (n, store) in replicas.iter().enumerate() {
            let (store, master, barrier) = (store.clone(), app.master.clone(), barrier.clone());
            runs.spawn(async move {
                barrier.wait().await;
                elevate::audit::sinks::deliver_due(&store, &master, &format!("r{n}.test"), now)
                    .await
            });
        }
        while let Some(r) = runs.join_next().await {
            r.unwrap().unwrap();
        }
        app.clock.advance(time::Duration::seconds(1));
    }
    let head = {
        let mut tx = app.store().tenant(tenant.tenant_id).await.unwrap();
        let h = tx.audit_head().await.unwrap().unwrap().0;
        tx.commit().await.unwrap();
        h
    };

    let got = rx.got.lock().unwrap().clone();
    let mut seqs = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (headers, body) in &got {
        assert!(
            ids.insert(headers["x-elevate-delivery"].to_str().unwrap().to_owned()),
            "a batch was sent twice"
        );
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        seqs.extend(
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_i64().unwrap()),
        );
    }
    let expected: Vec<i64> = (1..=head).collect();
    assert_eq!(seqs, expected, "every event once, in order");
}
