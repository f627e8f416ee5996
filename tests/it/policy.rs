//! Policy as code through the store (both backends), the API, the CLI and the admin pages.

use std::process::Command;

use elevate::broker;
use elevate::model::{Role, Scope};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    TestApp, TestDb, assert_error_says, ctx, seed_tenant, seed_token, seed_user, temp_dir,
};

const V1: &str = r#"
[[profile]]
name = "prod-shell"
description = "Shell on production web hosts"
max_duration = "4h"
requesters = ["engineering"]
approvers = ["sre"]
ticket_pattern = "^(INC|CHG)-[0-9]+$"
[profile.ssh]
principals = ["deploy"]
"#;

fn v2() -> String {
    V1.replace("max_duration = \"4h\"", "max_duration = \"2h\"")
        + "\n[[profile]]\nname = \"db-read\"\nrequesters = [\"engineering\"]\napprovers = [\"dba\"]\n[profile.database]\ntarget = \"orders\"\nroles = [\"orders_readonly\"]\n"
}

async fn versions_are_kept_diffed_audited_and_invalid_files_change_nothing(db: TestDb) {
    let clock = elevate::clock::ManualClock::starting_now();
    let master = elevate::crypto::MasterKey::generate().unwrap();
    let tenant = seed_tenant(&db.store, &master, &clock, "acme").await;
    assert!(
        broker::policy::current(&db.store, &tenant)
            .await
            .unwrap()
            .is_none()
    );

    let first = broker::policy::apply(&db.store, &ctx(&clock), &tenant, V1)
        .await
        .unwrap();
    assert_eq!((first.version, first.created), (1, true));
    assert_eq!(first.diff.added, ["prod-shell"]);
    let same = broker::policy::apply(&db.store, &ctx(&clock), &tenant, V1)
        .await
        .unwrap();
    assert_eq!((same.version, same.created), (1, false));

    let second = broker::policy::apply(&db.store, &ctx(&clock), &tenant, &v2())
        .await
        .unwrap();
    assert_eq!((second.version, second.created), (2, true));
    assert_eq!(
        second.diff.summary(),
        "+db-read ~prod-shell(max_duration_secs)"
    );

    let bad = v2().replace("roles = [\"orders_readonly\"]", "roles = []");
    let err = broker::policy::apply(&db.store, &ctx(&clock), &tenant, &bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"profile "db-read": database.roles"#),
        "{err}"
    );

    let (current, profiles) = broker::policy::current(&db.store, &tenant)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.version, 2);
    assert_eq!(current.source, v2());
    assert_eq!(
        profiles.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["db-read", "prod-shell"]
    );
    let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
    assert_eq!(
        tx.profiles_at(1).await.unwrap()[0].max_duration_secs,
        4 * 3600,
        "old versions are kept"
    );
    let applied: Vec<Value> = tx
        .audit_events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "policy.applied")
        .map(|e| e.details.0)
        .collect();
    assert_eq!(applied.len(), 2);
    assert_eq!(
        applied[1]["diff"]["changed"]["prod-shell"]["max_duration_secs"],
        serde_json::json!({"from": 14400, "to": 7200})
    );
}

crate::on_both_backends!(versions_are_kept_diffed_audited_and_invalid_files_change_nothing);

#[tokio::test]
async fn admins_apply_policy_over_the_api_and_everyone_reads_profiles() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    let carol = seed_user(
        app.store(),
        app.clock.as_ref(),
        &tenant,
        "carol@acme.example",
        &[Role::Admin],
        &[],
    )
    .await;
    let alice = seed_user(
        app.store(),
        app.clock.as_ref(),
        &tenant,
        "alice@acme.example",
        &[Role::Requester],
        &["engineering"],
    )
    .await;
    let admin_token = seed_token(
        app.store(),
        app.clock.as_ref(),
        &carol,
        &[Scope::Read, Scope::Admin],
    )
    .await;
    let alice_token = seed_token(app.store(), app.clock.as_ref(), &alice, &[]).await;
    let put = |token: &str, body: String| {
        app.client
            .put(app.url("/api/v1/policy"))
            .bearer_auth(token)
            .body(body)
            .send()
    };

    assert_eq!(
        put(&alice_token, V1.into()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let res = put(&admin_token, V1.into()).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.json::<Value>().await.unwrap()["version"], 1);
    let res = put(&admin_token, V1.into()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = put(&admin_token, V1.replace("requesters", "requestors"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("requestors") && message.contains("line 6"),
        "{message}"
    );
    // A lost body is not "no profiles" (schemathesis found an empty PUT wiping the policy).
    for empty in ["", " \n"] {
        let res = put(&admin_token, empty.into()).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_error_says(&res.json().await.unwrap(), "policy file is empty");
    }

    let res = app.get_as(&alice_token, "/api/v1/profiles").await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["version"], 1);
    let shell = &body["profiles"][0];
    assert_eq!(shell["name"], "prod-shell");
    assert_eq!(shell["max_duration"], "4h");
    assert_eq!(shell["can_request"], true);
    assert_eq!(shell["ssh"]["principals"], serde_json::json!(["deploy"]));
    let carol_view: Value = app
        .get_as(&admin_token, "/api/v1/profiles")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(carol_view["profiles"][0]["can_request"], false);

    // The admin pages show the history and the diff of each version.
    put(&admin_token, v2()).await.unwrap();
    let browser = app.signed_in(&carol).await;
    let history = browser
        .get(app.url("/admin/policy"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(history.contains(r#"href="/admin/policy/2""#) && history.contains("in force"));
    let page = browser
        .get(app.url("/admin/policy/2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("db-read")
            && page.contains("max_duration_secs")
            && page.contains("14400")
            && page.contains("7200"),
        "{page}"
    );
    let alice_browser = app.signed_in(&alice).await;
    assert_eq!(
        alice_browser
            .get(app.url("/admin/policy"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
}

#[test]
fn the_cli_applies_and_shows_policy() {
    let dir = temp_dir("policy-cli");
    let bin = env!("CARGO_BIN_EXE_elevate");
    let run = |args: &[&str]| {
        Command::new(bin)
            .current_dir(&dir)
            .env_clear()
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["admin", "tenant", "create", "acme"]).status.success());
    std::fs::write(dir.join("policy.toml"), V1).unwrap();
    let out = run(&["policy", "apply", "--tenant", "acme", "policy.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "applied policy.toml as policy version 1: +prod-shell\n"
    );
    let out = run(&["policy", "show", "--tenant", "acme"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), V1);

    std::fs::write(dir.join("bad.toml"), V1.replace("\"4h\"", "\"forever\"")).unwrap();
    let out = run(&["policy", "apply", "--tenant", "acme", "bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains(r#"profile "prod-shell": max_duration"#),
        "{err}"
    );
    let out = run(&["policy", "show", "--tenant", "acme"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        V1,
        "an invalid file changed the policy"
    );
}
