//! `GET /api/v1/openapi.json` checked by a real third-party client: schemathesis (PyPI; installed
//! by scripts/test.sh) runs against the live server with a token holding every scope, through
//! its example, coverage, fuzzing and stateful phases, and must find nothing: no server error, no
//! answer outside the documented statuses, content types or schemas, no schema-violating input
//! accepted, no operation that ignores its authentication.

use elevate::model::{Role, Scope};
use serde_json::Value;

use crate::helpers::{TestApp, TestDb, acme, seed_token, seed_user};

/// Every operation of the router is in the document with a unique id, and every authenticated
/// one answers 401 without a token (the document's security is what the server does).
#[tokio::test]
async fn the_document_names_every_operation_once_with_its_security() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let (status, text) = app.get_text("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut ids = std::collections::BTreeSet::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let id = op["operationId"].as_str().unwrap().to_owned();
            assert!(ids.insert(id.clone()), "operationId {id} twice");
            assert!(
                op["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|s| s.starts_with('2')),
                "{method} {path} documents no success"
            );
            let open = op["security"] == serde_json::json!([{}]);
            assert_eq!(
                open,
                path.starts_with("/device/"),
                "{method} {path}: security"
            );
            if open {
                continue;
            }
            let url = app.url(&format!(
                "/api/v1{}",
                path.replace("{id}", &uuid::Uuid::nil().to_string())
            ));
            let res = app
                .client
                .request(method.to_uppercase().parse().unwrap(), &url)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 401, "{method} {path} without a token");
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path}: 401 undocumented"
            );
        }
    }
    assert_eq!(operations, 23, "{ids:?}");
}

#[tokio::test]
async fn schemathesis_finds_nothing() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let acme = acme(&app).await;
    let (store, clock) = (app.store(), app.clock.as_ref());
    // Every role, and in `oncall`: the example request (prod-shell, INC-7) is approved at once,
    // so the stateful phase reaches certificates, extensions and revocation of a live grant.
    let fuzz = seed_user(
        store,
        clock,
        &acme.tenant,
        "fuzz@acme.example",
        &Role::ALL,
        &["engineering", "sre", "oncall"],
    )
    .await;
    let token = seed_token(store, clock, &fuzz, &Scope::ALL).await;
    let cert = app.db.dir.join(elevate::web::tls::DEV_CERT_FILE);
    let out = tokio::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(app.url("/api/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .arg("--tls-verify")
        .arg(&cert)
        .args(["--checks", "all"])
        // 422 answers refusals that JSON Schema cannot express (a duration over the profile's
        // maximum, a public key that does not parse, a profile that needs a ticket): schema-valid
        // input rejected is the design, not a fault. Everything else is checked.
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", "15", "--seed", "1"])
        .args(["--workers", "2", "--request-timeout", "10"])
        // One retry on a network-level failure only: under the parallel suite a kept-alive TLS
        // connection the server has just closed can meet the next request (seen once as "EOF
        // in violation of protocol"); an answer that is wrong is never retried.
        .args(["--request-retries", "1"])
        .env("NO_COLOR", "1")
        // Its cache of crashes goes to a scratch directory, not the checkout.
        .current_dir(crate::helpers::temp_dir("schemathesis"))
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named schemathesis"),
        "schemathesis is missing: python3 -m pip install schemathesis (scripts/test.sh does)"
    );
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}"
    );
    // It reached the server's logic, not only its refusals: requests were filed and decided.
    let (_, listed) = app.api(&token).get("/api/v1/requests?limit=500").await;
    assert!(
        listed["requests"].as_array().is_some_and(|r| !r.is_empty()),
        "schemathesis filed no request:\n{stdout}"
    );
}
