//! Several replicas on one PostgreSQL: background work that two of them run at once does each
//! piece once.

use std::collections::HashMap;

use elevate::clock::Clock;
use elevate::model::Role;
use elevate::store::Store;
use serde_json::json;

use crate::fixtures::receiver;
use crate::helpers::{TestApp, TestDb, ctx, seed_tenant, seed_token, seed_user};

/// Tenant acme (the workflow tests' policy) with alice and her token, and a webhook receiver that
/// answers after `delay_ms`.
async fn acme_with_webhook(
    app: &TestApp,
    delay_ms: u64,
) -> (elevate::model::Tenant, String, crate::fixtures::Receiver) {
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let crate::helpers::Acme {
        tenant, alice_api, ..
    } = crate::helpers::acme(app).await;
    let token = alice_api.token;
    let (rx, url) = receiver().await;
    rx.delay_ms
        .store(delay_ms, std::sync::atomic::Ordering::SeqCst);
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
    (tenant, token, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_webhook_once_with_a_delivery_id() {
    let app = TestApp::spawn(TestDb::postgres().await).await;
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let (tenant, token, rx) = acme_with_webhook(&app, 15).await;
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
        crate::fixtures::append_events(&app, &tenant, 250).await;
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

/// A second server on `app`'s store (its own pool) with the same master key and certificate:
/// returns its base URL; it runs until `stop` is dropped.
async fn second_replica(app: &TestApp) -> (String, tokio::sync::oneshot::Sender<()>) {
    let store = Store::connect(&app.db.url).await.unwrap();
    let (cert, key, _) =
        elevate::web::tls::ensure_dev_certificate(&app.db.dir, app.clock.now()).unwrap();
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(
        elevate::web::tls::server_config(&cert, &key).unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let config = elevate::config::Config {
        public_url: base.clone(),
        ..Default::default()
    };
    let state =
        elevate::web::AppState::new(store, app.clock.clone(), app.master.clone(), config).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(elevate::web::serve(
        listener,
        elevate::web::router(state),
        Some(tls),
        async {
            let _ = stopped.await;
        },
    ));
    (base, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_and_disabling_hold_on_every_replica_at_once() {
    let app = TestApp::spawn(TestDb::postgres().await).await;
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let tenant = seed_tenant(&store, &app.master, clock.as_ref(), "acme").await;
    let alice = seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        "alice@acme.example",
        &[Role::Requester],
        &["engineering"],
    )
    .await;
    let carol = seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        "carol@acme.example",
        &[Role::Admin],
        &[],
    )
    .await;
    let token = seed_token(&store, clock.as_ref(), &alice, &[]).await;
    let spare = seed_token(&store, clock.as_ref(), &alice, &[]).await;
    let (other, _stop) = second_replica(&app).await;
    let me = async |base: &str, token: &str| {
        app.client
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(me(&other, &spare).await, 200);

    // A token revoked through one replica is refused by the other on the very next call.
    let listed: serde_json::Value = app
        .client
        .get(app.url("/api/v1/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let spare_id = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{spare_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let revoked = std::time::Instant::now();
    assert_eq!(
        me(&other, &spare).await,
        401,
        "the other replica still took it"
    );
    assert!(revoked.elapsed() < std::time::Duration::from_secs(1));

    // Disabling through one replica's admin page ends her token and session on the other.
    let session = app.session_for(&alice).await;
    let browser = app.browser();
    let page = async |base: &str| {
        browser
            .get(format!("{base}/requests/new"))
            .header("cookie", format!("__Host-elevate={session}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(page(&other).await, 200);
    assert_eq!(me(&other, &token).await, 200);
    let admin = app.signed_in(&carol).await;
    let form = admin
        .get(app.url(&format!("/admin/users/{}", alice.id)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::helpers::csrf_in(&form);
    let res = admin
        .post(app.url(&format!("/admin/users/{}/disable", alice.id)))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let disabled = std::time::Instant::now();
    assert_eq!(me(&other, &token).await, 401, "a disabled person's token");
    assert_eq!(
        page(&other).await,
        303,
        "a disabled person's session (to /login)"
    );
    assert!(disabled.elapsed() < std::time::Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopping_gives_back_what_it_claimed() {
    let app = TestApp::spawn(TestDb::postgres().await).await;
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let (_, token, rx) = acme_with_webhook(&app, 0).await;
    let res = app
        .client
        .post(app.url("/api/v1/requests"))
        .bearer_auth(&token)
        .json(&json!({"profile": "prod-shell", "duration": "1h", "justification": "deploy", "ticket": "INC-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // A replica told to stop claims a batch, sends nothing and gives the claims back ...
    let mailer = elevate::notify::Mailer::Disabled;
    let now = clock.now();
    let stopping = std::sync::atomic::AtomicBool::new(true);
    let sent =
        elevate::notify::outbox::deliver_due_until(&store, &mailer, &app.master, now, &stopping)
            .await
            .unwrap();
    assert_eq!(sent, 0);
    assert!(rx.got.lock().unwrap().is_empty());
    // ... so another replica delivers them at once, not a lease later.
    let other = Store::connect(&app.db.url).await.unwrap();
    elevate::notify::outbox::deliver_due(&other, &mailer, &app.master, now)
        .await
        .unwrap();
    assert!(!rx.got.lock().unwrap().is_empty(), "the claims were kept");
}
