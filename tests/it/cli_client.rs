//! The engineer's CLI against a running server: login, request (with --wait), status, approve.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use elevate::model::Role;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    TestApp, TestDb, assert_contains, ctx, seed_tenant, seed_token, seed_user, temp_dir,
};

const BIN: &str = env!("CARGO_BIN_EXE_elevate");

/// The CLI as one person: its own config directory.
struct Person {
    home: PathBuf,
}

impl Person {
    fn new() -> Self {
        Person {
            home: temp_dir("cli-home"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("XDG_CONFIG_HOME", &self.home)
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// Multi-threaded: the blocking CLI runs on this thread while the in-process server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engineer_requests_and_an_approver_approves_from_the_terminal() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let tenant = seed_tenant(&store, &app.master, clock.as_ref(), "demo").await;
    elevate::broker::policy::apply(&store, &ctx(clock.as_ref()), &tenant, elevate::demo::POLICY)
        .await
        .unwrap();
    let alice = seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        "alice@example.com",
        &[Role::Requester],
        &["engineering"],
    )
    .await;
    let bob = seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        "bob@example.com",
        &[Role::Approver],
        &["sre"],
    )
    .await;
    let alice_token = seed_token(&store, clock.as_ref(), &alice, &[]).await;
    let bob_token = seed_token(&store, clock.as_ref(), &bob, &[]).await;
    let cert = app.db.dir.join(elevate::web::tls::DEV_CERT_FILE);

    let (a, b) = (Person::new(), Person::new());
    let login = |p: &Person, token: &str, cert: &Path| {
        p.run(&[
            "login",
            "--server",
            &app.base,
            "--token",
            token,
            "--ca-cert",
            cert.to_str().unwrap(),
        ])
    };
    let out = login(&a, &alice_token, &cert);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("logged in to")
            && String::from_utf8_lossy(&out.stdout).contains("alice@example.com")
    );
    let saved = a.home.join("elevate/cli.toml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(login(&b, &bob_token, &cert).status.success());
    let bad = b.run(&[
        "login",
        "--server",
        &app.base,
        "--token",
        "elv_nope",
        "--ca-cert",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("HTTP 401"), "{}", stderr(&bad));

    // Without --ca-cert, the development certificate is not trusted: login shows its
    // fingerprint and, with --pin, trusts exactly that certificate from then on.
    let fp = elevate::web::tls::fingerprint(&cert).unwrap();
    let c = Person::new();
    let out = c.run(&["login", "--server", &app.base, "--token", &alice_token]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&fp) && stderr(&out).contains("--pin"),
        "{}",
        stderr(&out)
    );
    assert!(!c.home.join("elevate/cli.toml").exists());
    let wrong = fp.replace(&fp[..2], if &fp[..2] == "00" { "11" } else { "00" });
    let out = c.run(&[
        "login",
        "--server",
        &app.base,
        "--token",
        &alice_token,
        "--pin",
        &wrong,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("refusing"), "{}", stderr(&out));
    let typed = fp.replace(':', "").to_lowercase();
    let out = c.run(&[
        "login",
        "--server",
        &app.base,
        "--token",
        &alice_token,
        "--pin",
        &typed,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("pinned the certificate of {}: {fp}", app.base))
    );
    assert_eq!(c.json(&["status", "--json"])["mine"], serde_json::json!([]));
    // Another server at that address (another certificate): refused.
    let other = TestApp::spawn(TestDb::sqlite().await).await;
    let saved = std::fs::read_to_string(c.home.join("elevate/cli.toml")).unwrap();
    std::fs::write(
        c.home.join("elevate/cli.toml"),
        saved.replace(&app.base, &other.base),
    )
    .unwrap();
    let out = c.run(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not the pinned one"),
        "{}",
        stderr(&out)
    );

    // Bad input is refused with the server's message.
    let out = a.run(&[
        "request",
        "prod-shell",
        "--for",
        "9h",
        "--reason",
        "x",
        "--ticket",
        "INC-1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("max_duration") && stderr(&out).contains("HTTP 422"),
        "{}",
        stderr(&out)
    );

    let r = a.json(&[
        "request",
        "prod-shell",
        "--for",
        "30m",
        "--reason",
        "deploy hotfix",
        "--ticket",
        "INC-7",
        "--json",
    ]);
    assert_eq!(r["state"], "pending");
    let id = r["id"].as_str().unwrap().to_owned();

    // Alice cannot approve (no approver role); Bob sees it waiting and approves.
    let out = a.run(&["approve", &id]);
    assert_eq!(out.status.code(), Some(1));
    let status = b.json(&["status", "--json"]);
    assert_eq!(status["reviewable"][0]["id"], id.as_str());
    let out = b.run(&["approve", &id, "--comment", "go"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{id} prod-shell active for 30m until"))
    );
    let shown = a.json(&["status", &id, "--json"]);
    assert_eq!(shown["state"], "active");
    assert_eq!(shown["requester_email"], "alice@example.com");
    assert_eq!(shown["approvals"][0]["approver_email"], "bob@example.com");
    assert_eq!(shown["decisions"][0]["comment"], "go");
    // The one-request view says who asked, why, who approved and what they said, and time left.
    let out = a.run(&["status", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "by alice@example.com until ",
        "  asked by   alice@example.com",
        "  approvals  1/1: bob@example.com",
        "  decision   bob@example.com approved: go",
        " left)",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }

    // A profile approved only with a passkey: the CLI says where, and opens the page.
    let r = a.json(&[
        "request",
        "prod-db-admin",
        "--for",
        "30m",
        "--reason",
        "migration",
        "--json",
    ]);
    let admin_id = r["id"].as_str().unwrap().to_owned();
    let opened = b.home.join("opened");
    let browser = b.home.join("browser.sh");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\necho \"$1\" > {}\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    let page = format!("{}/requests/{admin_id}", app.base);
    let out = b
        .command(&["approve", &admin_id])
        .env("BROWSER", &browser)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("approve it at {page}")),
        "{}",
        stderr(&out)
    );
    for _ in 0..50 {
        if opened.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(&opened).unwrap().trim(), page);
    std::fs::remove_file(&opened).unwrap();
    let out = b
        .command(&["approve", &admin_id, "--no-browser"])
        .env("BROWSER", &browser)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&page), "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!opened.exists(), "--no-browser opened a browser");
    assert_eq!(a.json(&["status", &admin_id, "--json"])["state"], "pending");
    let out = a.run(&["cancel", &admin_id]);
    assert!(out.status.success(), "{}", stderr(&out));

    // --wait blocks until the decision.
    let waiting = a
        .command(&[
            "request",
            "prod-shell",
            "--for",
            "1h",
            "--reason",
            "again",
            "--ticket",
            "CHG-1",
            "--wait",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pending = loop {
        let mine = a.json(&["status", "--json"]);
        if let Some(p) = mine["mine"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["state"] == "pending")
        {
            break p["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let out = b.run(&["deny", &pending, "--comment", "not now"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let done = tokio::task::spawn_blocking(move || waiting.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        done.status.code(),
        Some(1),
        "a denied --wait exits non-zero"
    );
    assert_contains(&done.stdout, &format!("{pending} prod-shell denied for 1h"));
    assert_contains(&done.stderr, "denied by bob@example.com: not now");

    let out = Person::new().run(&["status"]);
    assert!(stderr(&out).contains("not logged in"), "{}", stderr(&out));

    // What can I request? Only what alice's groups allow, unless --all.
    let out = a.run(&["profiles"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains("prod-shell") && listed.contains("approval(s) from"),
        "{listed}"
    );
    let mine = a.json(&["profiles", "--json"]);
    let all = a.json(&["profiles", "--all", "--json"]);
    let count = |v: &Value| v["profiles"].as_array().unwrap().len();
    assert!(
        count(&mine) >= 1 && count(&mine) <= count(&all),
        "{mine} {all}"
    );
    assert!(
        mine["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["can_request"] == true)
    );

    // A typo names what alice may request instead.
    let out = a.run(&["request", "prod-shel", "--for", "30m", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no profile prod-shel; you may request: ")
            && stderr(&out).contains("prod-shell"),
        "{}",
        stderr(&out)
    );

    // --json makes errors JSON too, with the same exit code.
    let out = b.run(&["approve", "0190c0de-0000-7000-8000-000000000000", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "not_found", "{err}");
    crate::helpers::assert_error_says(&err, "no request");

    // A private key given as --key is refused before anything is sent (the server here does
    // not even exist).
    let keys = temp_dir("cli-keys");
    let private = keys.join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&private)
        .output()
        .unwrap();
    assert!(made.status.success());
    for (file, says) in [
        (private.clone(), "is a private key"),
        (keys.join("nothing.pub"), "reading"),
    ] {
        let out = a
            .command(&[
                "ssh-cert",
                &pending,
                "--key",
                file.to_str().unwrap(),
                "--json",
            ])
            .env("ELEVATE_SERVER", "https://127.0.0.1:1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err: Value = serde_json::from_slice(&out.stdout).unwrap();
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(!message.contains("cannot reach"), "{message}");
    }

    // A token that stopped working says what to do.
    let out = a
        .command(&["status"])
        .env("ELEVATE_TOKEN", "elv_revoked_or_expired")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("run `elevate login` again"),
        "{}",
        stderr(&out)
    );
}

/// `elevate login` without a token (RFC 8628): the CLI shows a code, the person approves it on
/// `/device` in their signed-in browser, and the CLI gets a token of its own with their
/// non-admin scopes. The token endpoint answers as the RFC says at every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_logs_in_by_a_code_approved_in_the_browser() {
    use std::io::BufRead;
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let tenant = seed_tenant(&store, &app.master, clock.as_ref(), "demo").await;
    let carol = seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        "carol@example.com",
        &[Role::Requester, Role::Admin],
        &["engineering"],
    )
    .await;
    let browser = app.signed_in(&carol).await;
    let cert = app.db.dir.join(elevate::web::tls::DEV_CERT_FILE);
    let approve = async |code: &str, decision: &str| {
        let page = browser
            .get(app.url(&format!("/device?code={}", code.to_lowercase())))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // The person sees which client asks before deciding.
        assert!(
            decision == "none" || (page.contains("<dt>Client</dt>") && page.contains(code)),
            "{page}"
        );
        let form = [
            ("csrf", crate::helpers::csrf_in(&page)),
            ("code", code.to_owned()),
            ("decision", decision.to_owned()),
        ];
        let res = browser
            .post(app.url("/device"))
            .form(&form)
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    };

    // The CLI: it prints the code, a person approves it, the CLI logs in.
    let p = Person::new();
    let mut cli = p
        .command(&[
            "login",
            "--server",
            &app.base,
            "--ca-cert",
            cert.to_str().unwrap(),
            "--no-browser",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(cli.stdout.take().unwrap());
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        (line, out)
    })
    .await
    .unwrap();
    let (line, mut out) = first;
    assert!(line.contains(&format!("{}/device", app.base)), "{line}");
    let waiting = browser
        .get(app.url("/device"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        waiting.contains("name=\"code\""),
        "a form to type the code: {waiting}"
    );
    let code = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert_eq!(code.len(), 9, "{line}");
    let (s, body) = approve(&code, "approve").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.contains("approved"), "{body}");
    let done = tokio::task::spawn_blocking(move || {
        let status = cli.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        (status, rest)
    })
    .await
    .unwrap();
    assert!(done.0.success(), "{}", done.1);
    assert!(done.1.contains("as carol@example.com"), "{}", done.1);
    let me = p.json(&["status", "--json"]);
    assert_eq!(me["mine"], serde_json::json!([]));
    let saved = std::fs::read_to_string(p.home.join("elevate/cli.toml")).unwrap();
    let token = saved
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    let (_, me) = app.api(&token).get("/api/v1/me").await;
    let scopes = me["token"]["scopes"].to_string();
    assert!(
        scopes.contains("request") && !scopes.contains("admin"),
        "{me}"
    );
    assert!(
        me["token"]["name"].as_str().unwrap().starts_with("CLI on "),
        "{me}"
    );

    // The token endpoint, step by step (the server's clock is the test's).
    let anonymous = app.api("");
    let (s, r) = anonymous
        .post(
            "/api/v1/device/code",
            serde_json::json!({"client": "script on ci"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let poll = serde_json::json!({"tenant": r["tenant"], "device_code": r["device_code"]});
    let code = r["user_code"].as_str().unwrap().to_owned();
    let error = async |body: &serde_json::Value| {
        let (s, r) = anonymous.post("/api/v1/device/token", body.clone()).await;
        (s, r["error"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        error(&poll).await,
        (StatusCode::BAD_REQUEST, "authorization_pending".into())
    );
    assert_eq!(
        error(&poll).await,
        (StatusCode::BAD_REQUEST, "slow_down".into())
    );
    app.clock.advance(time::Duration::seconds(6));
    let bogus = serde_json::json!({"tenant": "demo", "device_code": "eld_nothing"});
    assert_eq!(
        error(&bogus).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    let (s, body) = approve(&code, "deny").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        error(&poll).await,
        (StatusCode::BAD_REQUEST, "access_denied".into())
    );
    // A decided code cannot be decided again; an old one expires.
    let (s, _) = approve(&code, "none").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, r) = anonymous
        .post("/api/v1/device/code", serde_json::json!({}))
        .await;
    let late = serde_json::json!({"tenant": r["tenant"], "device_code": r["device_code"]});
    app.clock.advance(time::Duration::minutes(11));
    assert_eq!(
        error(&late).await,
        (StatusCode::BAD_REQUEST, "expired_token".into())
    );
    let actions: Vec<String> = {
        let mut tx = store.tenant(tenant.tenant_id).await.unwrap();
        let events = tx.audit_events(0, 1000).await.unwrap();
        tx.commit().await.unwrap();
        events.into_iter().map(|e| e.action).collect()
    };
    for action in [
        "device.code_issued",
        "device.approved",
        "device.exchanged",
        "device.denied",
        "token.created",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
}
