//! The HTTP shell over real TLS: security headers, errors, health, and bearer-token auth.

use elevate::admin;
use elevate::clock::Clock;
use elevate::model::Role;
use elevate::store::UserChange;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, ctx, seed_tenant, seed_token, seed_user};

async fn app_with_alice(db: TestDb) -> (TestApp, String, elevate::model::User) {
    let app = TestApp::spawn(db).await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "web").await;
    let alice = seed_user(
        app.store(),
        app.clock.as_ref(),
        &tenant,
        "alice@web.example",
        &[Role::Requester],
        &["engineering"],
    )
    .await;
    let token = seed_token(app.store(), app.clock.as_ref(), &alice, &[]).await;
    (app, token, alice)
}

async fn error_of(res: reqwest::Response) -> (StatusCode, String, String) {
    let status = res.status();
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = res.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap().into(),
        body["error"]["message"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (
            body["checks"]["store"].as_str(),
            body["checks"]["master_key"].as_str()
        ),
        (Some("ok"), Some("ok"))
    );
    assert_eq!(body["checks"]["reaper"]["state"], "starting");
    assert_eq!(body["checks"]["notifications_failing"], 0);

    // A reaper that has not passed for a while, or is failing, degrades the replica; it stays in
    // rotation (DESIGN §8: unready only when the store or the signing keys fail).
    let now = app.clock.now();
    app.reaper.lock().unwrap().last_pass = Some(now - time::Duration::seconds(5));
    let body: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            body["checks"]["reaper"]["state"].as_str(),
            body["checks"]["reaper"]["lag_secs"].as_i64()
        ),
        (Some("ok"), Some(5))
    );
    app.reaper.lock().unwrap().last_pass = Some(now - time::Duration::seconds(120));
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["status"].as_str(), body["degraded"].clone()),
        (Some("degraded"), serde_json::json!(["reaper"])),
        "{body}"
    );
    app.reaper.lock().unwrap().last_error = Some("store unreachable".into());
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (
            body["status"].as_str(),
            body["checks"]["reaper"]["state"].as_str()
        ),
        (Some("degraded"), Some("failing"))
    );
    *app.reaper.lock().unwrap() = Default::default();

    // With the store gone, readiness says so (503) while liveness still answers.
    app.store().close().await;
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.json::<Value>().await.unwrap()["checks"]["store"],
        "unreachable"
    );
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let (app, token, _) = app_with_alice(TestDb::sqlite().await).await;
    let responses = [
        app.client.get(app.url("/")).send().await.unwrap(),
        app.client
            .get(app.url("/no/such/page"))
            .send()
            .await
            .unwrap(),
        app.get_as(&token, "/api/v1/me").await,
        app.client.get(app.url("/api/v1/me")).send().await.unwrap(),
        app.client
            .get(app.url("/static/elevate.css"))
            .send()
            .await
            .unwrap(),
    ];
    for res in responses {
        let h = res.headers();
        let url = res.url().path().to_owned();
        assert_eq!(
            h["strict-transport-security"], "max-age=31536000; includeSubDomains",
            "{url}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{url}: {csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{url}: {csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{url}");
        assert_eq!(h["referrer-policy"], "same-origin", "{url}");
        assert_eq!(h["x-frame-options"], "DENY", "{url}");
        assert_eq!(h["x-request-id"].len(), 36, "{url}");
    }
}

#[tokio::test]
async fn pages_are_styled_from_static_css_without_inline_code() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let res = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"<link rel="stylesheet" href="/static/elevate.css">"#));
    assert!(
        !html.contains("<style") && !html.contains("style="),
        "inline style in page"
    );
    // Scripts only from our own /static, never inline.
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert!(!scripts.is_empty());
    for s in scripts {
        assert!(
            s.starts_with(r#" src="/static/elevate.js" defer></script>"#)
                || s.starts_with(r#" src="/static/passkeys.js" defer></script>"#),
            "inline script: {s}"
        );
    }
    let css = app
        .client
        .get(app.url("/static/elevate.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(css.text().await.unwrap().contains(".topbar"));

    let missing = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(
        missing.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(missing.text().await.unwrap().contains("Not Found"));
}

#[tokio::test]
async fn tls_is_1_3_only() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let old = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(
        old.get(app.url("/healthz")).send().await.is_err(),
        "TLS 1.2 handshake accepted"
    );
    let plain = reqwest::Client::new();
    let http_url = app.url("/healthz").replace("https://", "http://");
    let plain_ok = plain
        .get(http_url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    assert!(!plain_ok, "plain HTTP answered on the TLS port");
}

async fn me_answers_for_a_token_and_refuses_others(db: TestDb) {
    let (app, token, alice) = app_with_alice(db).await;
    let res = app.get_as(&token, "/api/v1/me").await;
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["user"]["email"], "alice@web.example");
    assert_eq!(me["user"]["groups"], json!(["engineering"]));
    assert_eq!(me["tenant"]["slug"], "web");
    assert_eq!(me["roles"], json!(["requester"]));
    assert_eq!(me["token"]["scopes"], json!(["read", "request"]));

    let missing = app.client.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"elevate\""
    );
    assert_eq!(
        error_of(missing).await,
        (
            StatusCode::UNAUTHORIZED,
            "unauthorized".into(),
            "missing bearer token".into()
        )
    );
    for wrong in [
        "elv_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "garbage",
        &token[..token.len() - 1],
    ] {
        let (status, code, _) = error_of(app.get_as(wrong, "/api/v1/me").await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{wrong}"
        );
    }

    // Expired: move the clock past the 30-day lifetime.
    app.clock
        .advance(admin::DEFAULT_TOKEN_TTL + time::Duration::seconds(1));
    let (status, _, message) = error_of(app.get_as(&token, "/api/v1/me").await).await;
    assert_eq!(
        (status, message.as_str()),
        (StatusCode::UNAUTHORIZED, "token expired")
    );

    // Disabled user: a fresh token stops working the moment the user is disabled.
    let fresh = seed_token(app.store(), app.clock.as_ref(), &alice, &[]).await;
    assert_eq!(app.get_as(&fresh, "/api/v1/me").await.status(), 200);
    let mut tx = app.store().tenant(alice.tenant_id).await.unwrap();
    tx.update_user(
        alice.id,
        &UserChange {
            disabled: Some(true),
            ..Default::default()
        },
        app.clock.now(),
    )
    .await
    .unwrap();
    tx.append_audit(
        &ctx(app.clock.as_ref()).event("user.disabled", &alice.email),
        app.clock.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (status, _, message) = error_of(app.get_as(&fresh, "/api/v1/me").await).await;
    assert_eq!(
        (status, message.as_str()),
        (StatusCode::UNAUTHORIZED, "user disabled")
    );
}

crate::on_both_backends!(me_answers_for_a_token_and_refuses_others);

#[tokio::test]
async fn tokens_are_shown_once_scoped_and_revocable() {
    let (app, token, alice) = app_with_alice(TestDb::sqlite().await).await;
    let create = |body: Value| {
        app.client
            .post(app.url("/api/v1/tokens"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    let res = create(json!({"name": "ci", "scopes": ["read"], "ttl": "1h"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let made: Value = res.json().await.unwrap();
    let ci = made["token"].as_str().unwrap().to_owned();
    assert!(ci.starts_with("elv_"));
    assert_eq!(made["scopes"], json!(["read"]));

    // The narrow token works, cannot widen itself, and its secret is never listed.
    assert_eq!(app.get_as(&ci, "/api/v1/me").await.status(), 200);
    let widen = app
        .client
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(&ci)
        .json(&json!({"name": "x", "scopes": ["request"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(widen).await.0, StatusCode::FORBIDDEN);
    let listed = app
        .get_as(&token, "/api/v1/tokens")
        .await
        .text()
        .await
        .unwrap();
    assert!(listed.contains("\"ci\"") && !listed.contains(&ci) && !listed.contains(&token));

    // A scope beyond the user's roles is refused.
    let res = create(json!({"name": "x", "scopes": ["admin"]}))
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, StatusCode::FORBIDDEN);

    let id = made["id"].as_str().unwrap();
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (status, _, message) = error_of(app.get_as(&ci, "/api/v1/me").await).await;
    assert_eq!(
        (status, message.as_str()),
        (StatusCode::UNAUTHORIZED, "token revoked")
    );
    let res = app
        .client
        .delete(app.url("/api/v1/tokens/not-a-uuid"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, StatusCode::NOT_FOUND);

    let mut tx = app.store().tenant(alice.tenant_id).await.unwrap();
    let events = tx.audit_events(0, 100).await.unwrap();
    let created = events
        .iter()
        .find(|e| e.action == "token.created" && e.details.0["name"] == "ci")
        .unwrap();
    assert!(created.actor.starts_with("token:") && created.ip.as_deref() == Some("127.0.0.1"));
    let all = serde_json::to_string(&events).unwrap();
    assert!(
        !all.contains(&ci) && !all.contains(&token),
        "a token leaked into the audit log"
    );
    assert!(events.iter().any(|e| e.action == "token.revoked"));
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_clear_errors() {
    let (app, token, _) = app_with_alice(TestDb::sqlite().await).await;
    let post = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/api/v1/tokens"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (status, code, message) =
        error_of(post("{not json", "application/json").await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    assert!(message.contains("line 1"), "{message}");
    let (status, _, message) =
        error_of(post(r#"{"name": 5}"#, "application/json").await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message.contains("name"), "{message}");
    let (status, _, message) = error_of(
        post(r#"{"name": "x", "admin": true}"#, "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message.contains("admin"), "{message}");
    let (status, _, _) = error_of(
        post(r#"{"name": "x", "ttl": "forever"}"#, "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, _) = error_of(post(r#"{"name": "x"}"#, "text/plain").await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(1024 * 1024));
    let res = app
        .client
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, StatusCode::PAYLOAD_TOO_LARGE);

    let res = app
        .client
        .get(app.url("/api/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, StatusCode::NOT_FOUND);
    let res = app
        .client
        .put(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.1, "method_not_allowed");
}

/// Plain HTTP to the TLS port is told to use https:// (one line, then closed); TLS clients on
/// the same port are served as before.
#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_hint() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let mut plain = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.read_to_string(&mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("use https://"), "{answer}");
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
