//! The metrics operators graph and alert on (issue 20 item 6): HTTP requests by route template
//! and status, credentials issued and refused by reason, requests by state, the audit log's
//! progress, sign-in attempts, and how late the reaper expires grants.

use elevate::clock::{Clock, SharedClock};
use reqwest::StatusCode;
use serde_json::json;

use crate::fixtures::shop;
use crate::helpers::{TestApp, TestDb, metrics_token};

crate::on_both_backends!(
    metrics_count_routes_credentials_requests_and_the_audit_log,
    the_reaper_records_how_late_each_grant_expired,
    the_probe_queries_use_their_indexes,
);

/// Issue 16: what `/metrics` and `/readyz` ask the store for each tenant is served by indexes,
/// and requests by state come from the totals of migration 0018, not from counting the requests
/// table, so a scrape costs the same however long the tenant's history grows.
async fn the_probe_queries_use_their_indexes(db: TestDb) {
    let shop = shop(db).await;
    shop.granted("prod-shell").await;
    let mut tx = shop
        .app
        .store()
        .tenant(shop.tenant.tenant_id)
        .await
        .unwrap();
    let plans = tx.explain_probe_queries().await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(plans.len(), 4);
    for (what, plan) in plans {
        match shop.app.db.backend {
            elevate::store::Backend::Sqlite => {
                for line in plan.lines() {
                    let scan = line.starts_with("SCAN ") && !line.starts_with("SCAN c");
                    assert!(
                        !scan || line.contains("INDEX"),
                        "{what}: table scan\n{plan}"
                    );
                }
            }
            elevate::store::Backend::Postgres => {
                assert!(!plan.contains("Seq Scan"), "{what}: table scan\n{plan}");
            }
        }
        if what == "request state counts" {
            assert!(
                !plan.contains(" requests ") && !plan.ends_with(" requests"),
                "{what}: reads the requests table\n{plan}"
            );
        }
    }
}

async fn scrape(app: &TestApp, token: Option<&str>) -> String {
    let mut req = app.client.get(app.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap()
}

/// The value of the sample written exactly as `series` (name and labels).
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
        .parse()
        .unwrap()
}

async fn metrics_count_routes_credentials_requests_and_the_audit_log(db: TestDb) {
    let shop = shop(db).await;
    let id = shop.granted("prod-shell").await;
    let db_id = shop.granted("db-only").await;
    let (s, _) = shop
        .post(
            &shop.alice,
            "/api/v1/requests",
            json!({"profile": "prod-shell", "justification": "x", "ticket": "INC-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, body) = shop.issue_new_key(&id).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, _) = shop.issue(&shop.alice, &id, "ssh-ed25519 garbage").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = shop.issue_new_key(&db_id).await;
    assert_eq!(s, StatusCode::CONFLICT, "db-only grants no SSH");
    let (s, _) = shop
        .post(
            &shop.alice,
            &format!("/api/v1/requests/{id}/db-credentials"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "prod-shell grants no database");
    let res = shop
        .app
        .client
        .get(shop.app.url(&format!("/api/v1/requests/{id}")))
        .bearer_auth(&shop.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = shop
        .app
        .client
        .get(shop.app.url("/no/such/page"))
        .send()
        .await;
    assert_eq!(res.unwrap().status(), StatusCode::NOT_FOUND);
    shop.app.clock.advance(time::Duration::seconds(30));

    let m = scrape(&shop.app, None).await;
    // Routes by template, never the raw path (no request id in any series).
    assert_eq!(
        value(
            &m,
            r#"elevate_http_requests_total{method="GET",route="/api/v1/requests/{id}",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"elevate_http_requests_total{method="POST",route="/api/v1/requests/{id}/ssh-certificate",status="409"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"elevate_http_request_duration_seconds_count{method="POST",route="/api/v1/requests/{id}/ssh-certificate",status="201"}"#
        ),
        1.0
    );
    assert!(
        m.contains(r#"elevate_http_request_duration_seconds_bucket{method="POST",route="/api/v1/requests/{id}/ssh-certificate",status="201",le="+Inf"} 1"#),
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            r#"elevate_http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        1.0
    );
    assert!(!m.contains(&id) && !m.contains("/no/such/page"), "{m}");
    // Credentials: issued, and refused by reason.
    assert_eq!(
        value(
            &m,
            r#"elevate_credentials_issued_total{kind="ssh_certificate"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&m, r#"elevate_credentials_issued_total{kind="db_login"}"#),
        0.0
    );
    assert_eq!(
        value(
            &m,
            r#"elevate_credential_refusals_total{kind="db_login",reason="not_allowed_now"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"elevate_credential_refusals_total{kind="ssh_certificate",reason="invalid"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"elevate_credential_refusals_total{kind="ssh_certificate",reason="not_allowed_now"}"#
        ),
        1.0
    );
    // Requests by state, summed over tenants without a tenant label.
    assert_eq!(value(&m, r#"elevate_requests{state="active"}"#), 2.0);
    assert_eq!(value(&m, r#"elevate_requests{state="pending"}"#), 1.0);
    assert_eq!(value(&m, r#"elevate_requests{state="revoked"}"#), 0.0);
    assert!(!m.contains("tenant="), "{m}");
    // The audit log: events written, and nothing signed yet, 30 s after the last write.
    let events = value(&m, "elevate_audit_events_total");
    assert!(events >= 8.0, "{m}");
    assert_eq!(value(&m, "elevate_audit_unsigned_age_seconds"), 30.0);
    assert_eq!(value(&m, "elevate_audit_checkpoint_age_seconds"), 30.0);

    // A metrics token sees its tenant's series, labelled.
    let token = metrics_token(shop.app.store(), shop.app.clock.as_ref(), &shop.tenant).await;
    let m = scrape(&shop.app, Some(&token)).await;
    assert_eq!(
        value(&m, r#"elevate_requests{tenant="acme",state="active"}"#),
        2.0
    );
    assert!(value(&m, r#"elevate_audit_events_total{tenant="acme"}"#) > events);

    // Signing the head brings the unsigned age back to 0.
    elevate::audit::checkpoint::run_once(
        shop.app.store(),
        &shop.app.master,
        elevate::audit::checkpoint::Schedule {
            every_events: 1000,
            every: time::Duration::seconds(10),
        },
        shop.app.clock.now(),
        &shop.app.audit,
    )
    .await
    .unwrap();
    let m = scrape(&shop.app, None).await;
    assert_eq!(value(&m, "elevate_audit_unsigned_age_seconds"), 0.0, "{m}");
    assert_eq!(
        value(&m, "elevate_audit_checkpoint_age_seconds"),
        0.0,
        "{m}"
    );
}

async fn the_reaper_records_how_late_each_grant_expired(db: TestDb) {
    let shop = shop(db).await;
    shop.granted("prod-shell").await;
    // The grant ends in 1 h; the reaper comes 8 s after that.
    shop.app
        .clock
        .advance(time::Duration::hours(1) + time::Duration::seconds(8));
    let clock: SharedClock = shop.app.clock.clone();
    let moved = elevate::reaper::run_once_observed(
        shop.app.store(),
        &clock,
        &shop.app.base,
        &shop.app.telemetry,
    )
    .await
    .unwrap();
    assert_eq!(moved, 1);
    let m = scrape(&shop.app, None).await;
    assert_eq!(
        value(
            &m,
            r#"elevate_grant_expiry_lateness_seconds_bucket{le="5"}"#
        ),
        0.0
    );
    assert_eq!(
        value(
            &m,
            r#"elevate_grant_expiry_lateness_seconds_bucket{le="10"}"#
        ),
        1.0
    );
    assert_eq!(value(&m, "elevate_grant_expiry_lateness_seconds_sum"), 8.0);
    assert_eq!(
        value(&m, "elevate_grant_expiry_lateness_seconds_count"),
        1.0
    );
    assert_eq!(value(&m, r#"elevate_requests{state="expired"}"#), 1.0);
    assert_eq!(value(&m, r#"elevate_requests{state="active"}"#), 0.0);

    // Folded into the totals (the reaper does it every 30 s), the counts stay the same, and
    // later changes add to them.
    elevate::reaper::fold_request_counts(shop.app.store())
        .await
        .unwrap();
    let m = scrape(&shop.app, None).await;
    assert_eq!(value(&m, r#"elevate_requests{state="expired"}"#), 1.0);
    assert_eq!(value(&m, r#"elevate_requests{state="active"}"#), 0.0);
    shop.granted("prod-shell").await;
    elevate::reaper::fold_request_counts(shop.app.store())
        .await
        .unwrap();
    shop.granted("prod-shell").await;
    let m = scrape(&shop.app, None).await;
    assert_eq!(value(&m, r#"elevate_requests{state="expired"}"#), 1.0);
    assert_eq!(value(&m, r#"elevate_requests{state="active"}"#), 2.0);
}

/// Sign-in attempts by method and outcome (the class of a refusal, never its text).
#[tokio::test]
async fn sign_in_attempts_are_counted_by_method_and_outcome() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let res = app
        .client
        .post(app.url("/login"))
        .form(&[("tenant", "acme"), ("email", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = app
        .client
        .post(app.url("/login/verify"))
        .form(&[("token", "ell_not-a-link")])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let res = app
        .client
        .get(app.url("/login/oidc/callback?error=access_denied"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let m = scrape(&app, None).await;
    assert_eq!(
        value(
            &m,
            r#"elevate_signin_attempts_total{method="email_link_ask",outcome="invalid"}"#
        ),
        1.0
    );
    assert!(
        m.lines().any(|l| l
            .starts_with(r#"elevate_signin_attempts_total{method="email_link",outcome=""#)
            && l.ends_with(" 1")),
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            r#"elevate_signin_attempts_total{method="oidc",outcome="invalid"}"#
        ),
        1.0
    );
    // The counted routes are templates too.
    assert_eq!(
        value(
            &m,
            r#"elevate_http_requests_total{method="GET",route="/login/oidc/callback",status="400"}"#
        ),
        1.0
    );
}
