//! Pages people decide on (issue 18): the approvals inbox and the request page say what is
//! asked, for how long or how much more, from when, why, by whom, who approved with what comment,
//! and how long it has waited; what the viewer already approved has no Approve button.

use elevate::clock::Clock;
use elevate::model::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, TestDb, acme, assert_contains, seed_user};

async fn page(browser: &reqwest::Client, app: &TestApp, path: &str) -> String {
    let res = browser.get(app.url(path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    res.text().await.unwrap()
}

/// Another person of acme.
async fn person(
    app: &TestApp,
    acme: &crate::helpers::Acme,
    email: &str,
    roles: &[Role],
    groups: &[&str],
) -> elevate::model::User {
    seed_user(
        app.store(),
        app.clock.as_ref(),
        &acme.tenant,
        email,
        roles,
        groups,
    )
    .await
}

/// The inbox card of request `id` (its `<section>`).
fn card<'a>(inbox: &'a str, id: &str) -> &'a str {
    let start = inbox
        .find(&format!(r#"id="r-{id}""#))
        .unwrap_or_else(|| panic!("no card for {id} in:\n{inbox}"));
    let end = inbox[start..].find("</section>").unwrap() + start;
    &inbox[start..end]
}

#[tokio::test]
async fn approvers_see_what_they_approve_in_the_inbox_and_on_the_request() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let acme = acme(&app).await;
    let dave = person(
        &app,
        &acme,
        "dave@acme.example",
        &[Role::Approver],
        &["sre"],
    )
    .await;
    let dave_api = app.as_user(&dave).await;
    let alice = &acme.alice_api;

    // Two approvals needed; a justification over two lines.
    let (s, r) = alice
        .post(
            "/api/v1/requests",
            json!({"profile": "prod-db-admin", "duration": "30m",
                   "justification": "line one\nline two"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let two = r["id"].as_str().unwrap().to_owned();
    let (s, r) = acme
        .bob_api
        .post(
            &format!("/api/v1/requests/{two}/approve"),
            json!({"comment": "schema looks fine"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");

    // A scheduled start, with a ticket.
    let starts = app.clock.now() + time::Duration::hours(3);
    let (s, r) = alice
        .post(
            "/api/v1/requests",
            json!({"profile": "prod-shell", "duration": "1h", "justification": "night deploy",
                   "ticket": "CHG-42",
                   "starts_at": starts.format(&time::format_description::well_known::Rfc3339).unwrap()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let scheduled = r["id"].as_str().unwrap().to_owned();

    // An extension of an active grant.
    let active = alice.request("prod-shell", "1h").await;
    let (s, r) = dave_api.approve(&active).await;
    assert_eq!(r["state"], "active", "{r}");
    assert_eq!(s, StatusCode::OK);
    let (s, r) = alice
        .post(
            &format!("/api/v1/requests/{active}/extend"),
            json!({"duration": "2h"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    app.clock.advance(time::Duration::minutes(12));

    let dave_browser = app.signed_in(&dave).await;
    let inbox = page(&dave_browser, &app, "/approvals").await;
    let c = card(&inbox, &two);
    assert_contains(
        c,
        "alice@acme.example <span class=\"muted\">(engineering)</span>",
    );
    assert_contains(c, "12 min ago");
    assert_contains(c, "database orders (orders_admin)");
    assert_contains(c, "<dd class=\"text\">line one\nline two</dd>");
    assert_contains(
        c,
        "1/2<br>bob@acme.example: \u{201c}schema looks fine\u{201d}",
    );
    assert_contains(c, ">Approve</button>");
    let c = card(&inbox, &scheduled);
    assert_contains(
        c,
        &format!("<dt>From</dt><dd>{}</dd>", elevate::text::when(starts)),
    );
    assert_contains(c, "<dt>Ticket</dt><dd>CHG-42</dd>");
    let c = card(&inbox, &active);
    assert_contains(c, "<dt>For</dt><dd>+2h on a grant that ends ");
    assert_contains(c, ">Approve</button>");

    // Bob approved the first already: marked, and no Approve button for him.
    let bob_browser = app.signed_in(&acme.bob).await;
    let inbox = page(&bob_browser, &app, "/approvals").await;
    let c = card(&inbox, &two);
    assert_contains(c, "You approved this; it waits for 1 more.");
    assert!(!c.contains(">Approve</button>"), "{c}");
    let detail = page(&bob_browser, &app, &format!("/requests/{two}")).await;
    assert_contains(&detail, "You approved this; it waits for 1 more.");
    assert!(!detail.contains(">Approve</button>"), "{detail}");
    assert_contains(
        &detail,
        "bob@acme.example: \u{201c}schema looks fine\u{201d}",
    );
}

/// `/requests` is the history: filtered by state, profile, requester and time, newest first,
/// with the filing time relative (exact on hover) and the justification; the API filters alike.
#[tokio::test]
async fn the_history_lists_what_the_viewer_may_see_filtered() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let acme = acme(&app).await;
    let alice = &acme.alice_api;
    let denied = alice.request("prod-shell", "1h").await;
    let (s, r) = acme.bob_api.deny(&denied, "not during the freeze").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    app.clock.advance(time::Duration::minutes(90));
    let (s, r) = alice
        .post(
            "/api/v1/requests",
            json!({"profile": "prod-db-admin", "duration": "30m", "justification": "vacuum"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let pending = r["id"].as_str().unwrap().to_owned();

    let bob = app.signed_in(&acme.bob).await;
    let all = page(&bob, &app, "/requests").await;
    assert_contains(&all, &format!("/requests/{denied}"));
    assert_contains(&all, &format!("/requests/{pending}"));
    assert_contains(&all, "1 h 30 min ago</time>");
    assert_contains(&all, "<td class=\"text\">vacuum</td>");
    let only_denied = page(&bob, &app, "/requests?state=denied").await;
    assert_contains(&only_denied, &format!("/requests/{denied}"));
    assert!(!only_denied.contains(&format!("/requests/{pending}")));
    assert_contains(&only_denied, r#"<option value="denied" selected>"#);
    let by_profile = page(
        &bob,
        &app,
        "/requests?profile=prod-db-admin&requester=ALICE@acme.example",
    )
    .await;
    assert_contains(&by_profile, &format!("/requests/{pending}"));
    assert!(!by_profile.contains(&format!("/requests/{denied}")));
    let nobody = page(&bob, &app, "/requests?requester=carol@acme.example").await;
    assert_contains(&nobody, "No request matches.");
    let res = bob
        .get(app.url("/requests?state=nonsense"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The same filters over the API; a time range in UTC.
    let (s, r) = acme
        .bob_api
        .get("/api/v1/requests?profile=prod-shell&requester=alice@acme.example")
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let ids: Vec<&str> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [denied.as_str()]);
    let since = (app.clock.now() - time::Duration::minutes(5))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (_, r) = acme
        .bob_api
        .get(&format!(
            "/api/v1/requests?from={}",
            since.replace('+', "%2B")
        ))
        .await;
    let ids: Vec<&str> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [pending.as_str()]);
    let (s, r) = acme.bob_api.get("/api/v1/requests?from=yesterday").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
}

/// `/access`: active and scheduled grants with what they issued; Revoke only for who may (an
/// approver of the profile, an admin; not an auditor), and back to the list after revoking.
#[tokio::test]
async fn active_access_lists_grants_and_revokes_them() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let acme = acme(&app).await;
    let audrey = person(&app, &acme, "audrey@acme.example", &[Role::Auditor], &[]).await;
    let active = acme.alice_api.request("prod-shell", "1h").await;
    let (_, r) = acme.bob_api.approve(&active).await;
    assert_eq!(r["state"], "active", "{r}");
    let pending = acme.alice_api.request("prod-shell", "1h").await;

    let auditor = page(&app.signed_in(&audrey).await, &app, "/access").await;
    assert_contains(&auditor, &format!(r#"id="g-{active}""#));
    assert!(
        !auditor.contains(&format!(r#"id="g-{pending}""#)),
        "pending is not access"
    );
    assert_contains(&auditor, "<dt>Issued</dt><dd>none yet</dd>");
    assert!(!auditor.contains("Revoke now"), "auditors do not revoke");

    let res = app
        .signed_in(&acme.alice)
        .await
        .get(app.url("/access"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let bob = app.signed_in(&acme.bob).await;
    let listed = page(&bob, &app, "/access").await;
    assert_contains(&listed, "alice@acme.example");
    assert_contains(&listed, "Revoke now");
    let csrf = crate::helpers::csrf_in(&listed);
    let res = bob
        .post(app.url(&format!("/requests/{active}/revoke")))
        .form(&[
            ("csrf", csrf.as_str()),
            ("back", "access"),
            ("comment", "done early"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/access");
    let (_, r) = acme.bob_api.show(&active).await;
    assert_eq!(r["state"], "revoked", "{r}");
    assert_contains(
        &page(&bob, &app, "/access").await,
        "Nobody holds access you can see",
    );
}

/// Every page, as each kind of person, at 1280 and 390 px in headless Chromium: no sideways
/// scroll, no CSP violation, no console error, no serious or critical axe-core violation.
/// Screenshots land in `target/screenshots/` (not committed) for people to look at.
#[tokio::test]
async fn every_page_fits_phones_and_passes_axe() {
    // A small search window, so that the actor-filtered audit page shows which events it
    // searched and links below them.
    let app = TestApp::spawn_with(TestDb::sqlite().await, |c| c.audit.page_search_events = 5).await;
    let acme = acme(&app).await;
    let carol = person(&app, &acme, "carol@acme.example", &[Role::Admin], &[]).await;
    let audrey = person(&app, &acme, "audrey@acme.example", &[Role::Auditor], &[]).await;
    let active = acme.alice_api.request("prod-shell", "1h").await;
    acme.bob_api.approve(&active).await;
    let pending = acme.alice_api.request("prod-shell", "2h").await;
    let denied = acme.alice_api.request("prod-shell", "30m").await;
    acme.bob_api.deny(&denied, "not during the freeze").await;
    let session = recorded_session(&app, &acme, &active).await;
    let visits = json!([
        {"who": "anonymous", "session": "", "paths": ["/", "/login"]},
        {"who": "alice", "session": app.session_for(&acme.alice).await, "paths": [
            "/dashboard", "/requests/new", "/requests", format!("/requests/{active}"),
            "/profile", "/tokens", "/passkeys", "/device", format!("/sessions/{session}")]},
        {"who": "bob", "session": app.session_for(&acme.bob).await, "paths": [
            "/approvals", "/access", format!("/requests/{pending}"), format!("/requests/{denied}")]},
        {"who": "carol", "session": app.session_for(&carol).await, "paths": [
            "/admin/users", format!("/admin/users/{}", acme.alice.id), "/admin/policy",
            "/admin/targets", "/admin/status", "/admin/ca", "/admin/tokens",
            "/admin/integrations", "/admin/hosts", "/admin/policy/1", "/step-up", "/audit", "/access",
            "/requests/00000000-0000-0000-0000-000000000000"]},
        {"who": "audrey", "session": app.session_for(&audrey).await, "paths": [
            "/audit", "/audit?actor=nobody", "/access"]},
    ]);
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots");
    let report = crate::browser::run_script(
        "sweep.mjs",
        vec![app.base.clone(), shots.into(), visits.to_string()],
    )
    .await;
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
    assert_eq!(
        report["menuByKeyboard"], true,
        "the phone menu opens from the keyboard"
    );
    let pages = report["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 2 * 32, "{report}");
    let bad: Vec<String> = pages
        .iter()
        .filter(|p| {
            // The one error page of the sweep answers 404 (and must pass the same checks).
            p["status"]
                != if p["path"].as_str().unwrap().contains("00000000") {
                    404
                } else {
                    200
                }
                || p["overflow"].as_i64().unwrap() > 0
                || !p["csp"].as_array().unwrap().is_empty()
                || !p["errors"].as_array().unwrap().is_empty()
                || !p["axe"].as_array().unwrap().is_empty()
        })
        .map(|p| p.to_string())
        .collect();
    assert!(
        bad.is_empty(),
        "{} pages fail:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// A session on host web-1 for `request`, recorded and ended through the host protocol: its id.
async fn recorded_session(app: &TestApp, acme: &crate::helpers::Acme, request: &str) -> String {
    let session =
        crate::fixtures::HostSession::open(app, &acme.tenant, "web-1", &acme.alice_api, request)
            .await;
    let cast = concat!(
        r#"{"version":2,"width":80,"height":24,"timestamp":1,"title":"deploy"}"#,
        "\n",
        r#"[0.1,"o","\u001b[1;32mdeploy@web-1\u001b[0m:~$ "]"#,
        "\n",
        r#"[0.9,"o","uptime\r\n 10:00:00 up 3 days\r\n"]"#,
        "\n",
        r#"[1.5,"o","deploy@web-1:~$ exit\r\n"]"#,
        "\n",
    );
    assert_eq!(session.record(0, cast).await, StatusCode::NO_CONTENT);
    assert_eq!(session.close("exit").await, StatusCode::NO_CONTENT);
    session.id
}

/// The admin pages that were missing: the SSH CA keys with rotation behind a confirmation, every
/// API token of the organisation with its owner and last use (revocable), and the webhooks and
/// audit sinks with their last delivery (add, remove); each change audited.
#[tokio::test]
async fn admins_see_ca_keys_all_tokens_and_integrations() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let acme = acme(&app).await;
    let carol = person(&app, &acme, "carol@acme.example", &[Role::Admin], &[]).await;
    let admin = app.signed_in(&carol).await;
    let post = async |path: &str, form: &[(&str, &str)]| {
        let csrf = crate::helpers::csrf_in(&page(&admin, &app, "/admin/status").await);
        let mut fields = vec![("csrf", csrf.as_str())];
        fields.extend_from_slice(form);
        let res = admin
            .post(app.url(path))
            .form(&fields)
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap_or_default())
    };

    // The CA: one signing key; rotating needs the box ticked; then two keys.
    let ca = page(&admin, &app, "/admin/ca").await;
    assert_contains(&ca, "SHA256:");
    assert_contains(&ca, "signs new certificates");
    assert_contains(&ca, &format!("/t/{}/ssh/user-ca.pub", acme.tenant.slug));
    let (s, body) = post("/admin/ca/rotate", &[]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, _) = post("/admin/ca/rotate", &[("confirm", "rotate")]).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let ca = page(&admin, &app, "/admin/ca").await;
    assert_eq!(ca.matches("SHA256:").count(), 2, "{ca}");
    assert_eq!(ca.matches("signs new certificates").count(), 1, "{ca}");

    // Every token, with its owner and last use; revoking one ends it.
    let (s, _) = acme.alice_api.get("/api/v1/me").await;
    assert_eq!(s, StatusCode::OK);
    let tokens = page(&admin, &app, "/admin/tokens").await;
    assert_contains(&tokens, "<td>alice@acme.example</td><td>test</td>");
    // The last cell before the state: last used, just now.
    assert_contains(
        &tokens,
        &format!(
            "UTC</td><td>{}</td>\n",
            elevate::text::when(app.clock.now())
        ),
    );
    let mut tx = app.store().tenant(acme.tenant.tenant_id).await.unwrap();
    let alices = tx.api_tokens_of(acme.alice.id).await.unwrap();
    tx.commit().await.unwrap();
    let (s, _) = post(&format!("/admin/tokens/{}/revoke", alices[0].id), &[]).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, _) = acme.alice_api.get("/api/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a revoked token is refused");

    // Webhooks and audit sinks: add, list, remove.
    let (s, body) = post(
        "/admin/integrations/webhooks",
        &[
            ("url", "https://hooks.example.com/elevate"),
            ("secret", "a-webhook-secret-16+"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let (s, body) = post(
        "/admin/integrations/sinks",
        &[("kind", "syslog"), ("target", "tcp://127.0.0.1:6514")],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let listed = page(&admin, &app, "/admin/integrations").await;
    assert_contains(&listed, "<code>https://hooks.example.com/elevate</code>");
    assert_contains(&listed, "<code>tcp://127.0.0.1:6514</code>");
    let mut tx = app.store().tenant(acme.tenant.tenant_id).await.unwrap();
    let hook = tx.webhooks().await.unwrap()[0].id;
    let sink = tx.audit_sinks().await.unwrap()[0].id;
    tx.commit().await.unwrap();
    let (s, _) = post(&format!("/admin/integrations/webhooks/{hook}/remove"), &[]).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, _) = post(&format!("/admin/integrations/sinks/{sink}/remove"), &[]).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let listed = page(&admin, &app, "/admin/integrations").await;
    assert!(
        !listed.contains("<code>https://hooks.example.com/elevate</code>"),
        "{listed}"
    );
    assert!(
        !listed.contains("<code>tcp://127.0.0.1:6514</code>"),
        "{listed}"
    );
    // A refused invitation keeps what was typed.
    let (s, body) = post(
        "/admin/users",
        &[
            ("email", "alice@acme.example"),
            ("name", "Alice Again"),
            ("role", "approver"),
            ("groups", "sre"),
        ],
    )
    .await;
    assert!(s.is_client_error(), "{s}: {body}");
    assert_contains(&body, "role=\"alert\" id=\"invite-error\">");
    assert_contains(
        &body,
        "value=\"alice@acme.example\" aria-describedby=\"invite-error\"",
    );
    assert_contains(&body, "value=\"Alice Again\"");
    assert_contains(&body, "value=\"approver\" checked");

    let actions: Vec<String> = app
        .actions(&acme.tenant)
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for a in [
        "ssh.ca_rotated",
        "token.revoked",
        "webhook.added",
        "webhook.removed",
        "audit.sink_added",
        "audit.sink_removed",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
}

/// A refused action on the request page brings the page back with the reason beside the form
/// and what was typed still in it, signed in, with the refusal's status.
#[tokio::test]
async fn a_refused_action_keeps_its_input() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let acme = acme(&app).await;
    let id = acme.alice_api.request("prod-shell", "1h").await;
    acme.bob_api.approve(&id).await;
    let alice = app.signed_in(&acme.alice).await;
    let html = page(&alice, &app, &format!("/requests/{id}")).await;
    let csrf = crate::helpers::csrf_in(&html);
    let res = alice
        .post(app.url(&format!("/requests/{id}/extend")))
        .form(&[("csrf", csrf.as_str()), ("duration", "99999d")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert_contains(
        &body,
        "role=\"alert\" id=\"refusal\">Could not extend: invalid duration",
    );
    assert_contains(&body, "value=\"99999d\" aria-invalid=\"true\"");
    assert_contains(&body, "alice@acme.example <span class=\"tag\">acme</span>");

    // The token form too.
    let res = alice
        .post(app.url("/tokens"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "laptop"),
            ("scope", "read"),
            ("ttl", "forever"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert_contains(&body, "role=\"alert\" id=\"token-error\">invalid duration");
    assert_contains(&body, "value=\"laptop\"");
    assert_contains(&body, "value=\"read\" checked");
    assert_contains(&body, "value=\"forever\"");
}
