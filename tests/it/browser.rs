//! The sign-in pages in a real headless Chromium (playwright-core driving the system's Chromium):
//! forms, redirects, `__Host-` cookies, the same-origin checks with a browser's own headers, and
//! the strict CSP (no violations).

use std::process::Command;

use elevate::clock::Clock;
use elevate::model::Role;
use serde_json::Value;

use crate::helpers::{TestApp, TestDb, seed_tenant, seed_user};

/// Runs `tests/support/browser/<script>` in node (playwright-core driving the system Chromium)
/// and returns the one JSON line it reports.
pub async fn run_script(script: &str, args: Vec<String>) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/browser");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/playwright-core")
            .exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "browser tests need Chromium and playwright-core: apt-get install -y chromium; (cd tests/support/browser && npm ci) — scripts/test.sh does both"
    );
    let script = format!("{dir}/{script}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no report from the browser ({e}): {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test]
async fn a_person_signs_in_through_the_demo_outbox_in_chromium() {
    let app = TestApp::spawn_with(TestDb::sqlite().await, |c| c.demo = true).await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "demo").await;
    seed_user(
        app.store(),
        app.clock.as_ref(),
        &tenant,
        "alice@example.com",
        &[Role::Requester],
        &["engineering"],
    )
    .await;
    let ctx = crate::helpers::ctx(app.clock.as_ref());
    elevate::broker::policy::apply(app.store(), &ctx, &tenant, elevate::demo::POLICY)
        .await
        .unwrap();

    let report = run_script(
        "signin.mjs",
        vec![app.base.clone(), "demo".into(), "alice@example.com".into()],
    )
    .await;
    assert_eq!(report["error"], Value::Null, "{report}");
    assert_eq!(report["loginTitle"], "Sign in · elevate");
    assert_eq!(
        report["stylesheetApplied"], true,
        "the stylesheet did not apply: {report}"
    );
    assert_eq!(report["sentHeading"], "Check your email");
    assert_eq!(report["dashboardHeading"], "Welcome, alice");
    assert_eq!(
        report["sessionCookie"],
        serde_json::json!({"secure": true, "httpOnly": true, "sameSite": "Lax", "path": "/"})
    );
    let profile = report["profileText"].as_str().unwrap();
    assert!(
        profile.contains("requester") && profile.contains("engineering"),
        "{profile}"
    );
    assert_eq!(report["requestState"], "pending", "{report}");
    assert!(
        report["afterSignOutUrl"]
            .as_str()
            .unwrap()
            .ends_with("/login"),
        "{report}"
    );
    assert_eq!(report["cspViolations"], serde_json::json!([]), "{report}");
    assert_eq!(report["consoleErrors"], serde_json::json!([]), "{report}");
}

/// The auditor's page in Chromium: filter form, the filtered download, a row's request link, and
/// no CSP violation.
#[tokio::test]
async fn an_auditor_filters_downloads_and_follows_a_request_in_chromium() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/browser");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/playwright-core")
            .exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "browser tests need Chromium and playwright-core: apt-get install -y chromium; (cd tests/support/browser && npm ci) — scripts/test.sh does both"
    );
    let shop = crate::fixtures::shop(TestDb::sqlite().await).await;
    shop.granted("prod-shell").await;
    let audrey = seed_user(
        shop.app.store(),
        shop.app.clock.as_ref(),
        &shop.tenant,
        "audrey@acme.example",
        &[Role::Auditor],
        &[],
    )
    .await;
    let mut tx = shop
        .app
        .store()
        .tenant(shop.tenant.tenant_id)
        .await
        .unwrap();
    let (secret, _) = elevate::auth::session::start_session(
        &mut tx,
        &audrey,
        time::Duration::hours(1),
        &elevate::audit::Origin::default(),
        shop.app.clock.now(),
    )
    .await
    .unwrap();
    tx.append_audit(
        &crate::helpers::ctx(shop.app.clock.as_ref()).event("signin.succeeded", &audrey.email),
        shop.app.clock.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let base = shop.app.base.clone();
    let session = secret.expose().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(format!("{dir}/audit.mjs"))
            .args([base.as_str(), session.as_str(), "request.approved"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no report from the browser ({e}): {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["error"], Value::Null, "{report}");
    assert_eq!(report["title"], "Audit log · elevate");
    assert_eq!(report["verified"], "verified", "{report}");
    assert!(report["rowsBefore"].as_u64().unwrap() > 3, "{report}");
    assert_eq!(
        report["actions"],
        serde_json::json!(["request.approved"]),
        "{report}"
    );
    assert_eq!(
        report["downloadName"], "audit-acme-filtered.jsonl",
        "{report}"
    );
    assert_eq!(
        report["downloadLines"],
        serde_json::json!(["request.approved"]),
        "{report}"
    );
    assert!(
        report["requestPage"]
            .as_str()
            .unwrap()
            .contains("prod-shell"),
        "{report}"
    );
    assert_eq!(report["cspViolations"], serde_json::json!([]), "{report}");
    assert_eq!(report["consoleErrors"], serde_json::json!([]), "{report}");
}
