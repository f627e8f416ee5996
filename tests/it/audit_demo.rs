//! The demo tenant end to end with the real binary: an auditor downloads the log with the CLI and
//! verifies it with nothing but the public key (and a single edited byte is found and named);
//! and after a full demo flow (sign-in link, session, API tokens, SSH certificate, database login,
//! webhook secrets), no secret handed out appears in the database, the server log or the audit
//! export.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixtures::{Server, elevate};
use crate::helpers::{run_with_stdin, temp_dir};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `elevate serve --demo` signing a checkpoint every 5 events; its log collected as it runs.
fn demo_server(dir: &Path) -> (Server, Arc<Mutex<String>>) {
    std::fs::write(
        dir.join("elevate.toml"),
        "[audit]\ncheckpoint_every_events = 5\n",
    )
    .unwrap();
    let mut cmd = elevate(dir);
    cmd.env("ELEVATE_LOG", "debug").args(
        "--log-format json serve --demo --listen 127.0.0.1:0 --config elevate.toml".split(' '),
    );
    let server = Server::start(&mut cmd);
    let log = server.stderr.clone();
    (server, log)
}

/// Waits for the checkpointer to have signed something.
async fn first_checkpoint(base: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = client()
            .get(format!("{base}/t/demo/audit/checkpoint"))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            return res.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "no checkpoint was signed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_downloads_the_demo_log_and_verifies_it_with_only_the_public_key() {
    let dir = temp_dir("audit-demo");
    let (server, _log) = demo_server(&dir);
    first_checkpoint(&server.url).await;
    let carol = server.token_of("carol@example.com");

    // The auditor's machine: a CLI login, the export, the public key from the server.
    let home = temp_dir("auditor-home");
    // Arguments split on spaces (none of the values here has one).
    let auditor = |args: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_elevate"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("XDG_CONFIG_HOME", &home)
            .current_dir(&home)
            .args(args.split(' '));
        c.output().unwrap()
    };
    let cert = dir.join(elevate::web::tls::DEV_CERT_FILE);
    let server_url = server.url.replace("127.0.0.1", "localhost");
    let out = auditor(&format!(
        "login --server {server_url} --token {carol} --ca-cert {}",
        cert.display()
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = auditor("audit export --output demo.jsonl");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = client()
        .get(format!("{}/t/demo/audit/public-key", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    std::fs::write(home.join("audit.pub"), &key).unwrap();
    assert!(server.terminate().success());

    // Offline from here on: the server is gone.
    let out = auditor("audit verify --file demo.jsonl --public-key audit.pub");
    let summary = text(&out.stdout);
    assert!(out.status.success(), "{}{}", summary, text(&out.stderr));
    assert!(summary.starts_with("ok: "), "{summary}");
    assert!(
        summary.contains(" events, ") && summary.contains(" checkpoints, head seq "),
        "{summary}"
    );
    assert!(!summary.contains(" 0 checkpoints"), "{summary}");

    // One byte of one event changed: found, and its seq named.
    let export = std::fs::read_to_string(home.join("demo.jsonl")).unwrap();
    let target = export
        .lines()
        .find(|l| {
            l.contains(r#""action":"user.created""#) && l.contains(r#""subject":"bob@example.com""#)
        })
        .unwrap();
    let seq = serde_json::from_str::<Value>(target).unwrap()["seq"]
        .as_i64()
        .unwrap();
    let edited_line = target.replacen("bob@example.com", "bob@example.con", 1);
    assert_ne!(edited_line, target);
    std::fs::write(
        home.join("edited.jsonl"),
        export.replacen(target, &edited_line, 1),
    )
    .unwrap();
    let out = auditor("audit verify --file edited.jsonl --public-key audit.pub");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("first broken link at seq {seq} ")),
        "{err}"
    );
    assert!(err.contains("edited"), "{err}");

    // Cut short: truncated. Another tenant's key: refused.
    let cut: String = export.lines().take(10).map(|l| format!("{l}\n")).collect();
    std::fs::write(home.join("cut.jsonl"), cut).unwrap();
    let out = auditor("audit verify --file cut.jsonl --public-key audit.pub");
    assert_eq!(out.status.code(), Some(1));
    crate::helpers::assert_contains(&out.stderr, "truncated");
    let other =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap()
            .public_key()
            .to_openssh()
            .unwrap();
    std::fs::write(home.join("other.pub"), other).unwrap();
    let out = auditor("audit verify --file demo.jsonl --public-key other.pub");
    assert_eq!(out.status.code(), Some(1));
    crate::helpers::assert_contains(&out.stderr, "not the tenant's audit key");

    // Bad input: clear messages, no panic.
    std::fs::write(home.join("junk.pub"), "not a key\n").unwrap();
    let out = auditor("audit verify --file demo.jsonl --public-key junk.pub");
    assert_eq!(out.status.code(), Some(1));
    crate::helpers::assert_contains(&out.stderr, "not an OpenSSH public key");
    let out = auditor("audit verify --file missing.jsonl --public-key audit.pub");
    assert_eq!(out.status.code(), Some(1));
    crate::helpers::assert_contains(&out.stderr, "missing.jsonl");
    let out = auditor("audit verify --file demo.jsonl");
    assert_eq!(out.status.code(), Some(2), "--file needs --public-key");
    let out = auditor("audit verify --file demo.jsonl --public-key audit.pub --tenant demo");
    assert_eq!(out.status.code(), Some(2), "--tenant is for the live store");

    // On the server, the operator checks the live store.
    let db = format!("sqlite:{}", dir.join("elevate.db").display());
    let out = elevate(&dir)
        .args(["audit", "verify", "--database", &db])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    crate::helpers::assert_contains(&out.stdout, "tenant demo");
    // With the key pinned: the auditor's copy of the key, not the one beside the log.
    let pinned = home.join("audit.pub");
    let out = elevate(&dir)
        .args([
            "audit",
            "verify",
            "--database",
            &db,
            "--public-key",
            pinned.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let other = home.join("other.pub");
    let out = elevate(&dir)
        .args([
            "audit",
            "verify",
            "--database",
            &db,
            "--public-key",
            other.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    crate::helpers::assert_contains(&out.stderr, "not the tenant's audit key");
    let out = elevate(&dir)
        .args([
            "audit",
            "export",
            "--tenant",
            "demo",
            "--database",
            &db,
            "--output",
            "server.jsonl",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = auditor(&format!(
        "audit verify --file {} --public-key audit.pub",
        dir.join("server.jsonl").display()
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Every place a secret could leak to, as bytes.
fn haystacks(dir: &Path, log: &str, export: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("server log".to_owned(), log.as_bytes().to_vec()),
        ("audit export".to_owned(), export.as_bytes().to_vec()),
    ];
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("elevate.db") {
            out.push((name, std::fs::read(&p).unwrap()));
        }
    }
    assert!(out.len() >= 3, "the database file is missing");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_demo_flow_no_secret_is_in_the_database_the_log_or_the_export() {
    let dir = temp_dir("no-secrets");
    let (server, log) = demo_server(&dir);
    let base = server.url.clone();
    let mut secrets: Vec<(&'static str, String)> = Vec::new();
    for who in ["alice", "bob", "dave", "carol"] {
        if let Some(line) = server
            .stdout
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("{who}@")))
        {
            secrets.push((
                "demo API token",
                line.split_whitespace().last().unwrap().to_owned(),
            ));
        }
    }
    assert_eq!(secrets.len(), 4, "{:?}", server.stdout);
    let alice = server.token_of("alice@example.com");
    let bob = server.token_of("bob@example.com");
    let carol = server.token_of("carol@example.com");

    // A sign-in link by (demo) mail, redeemed for a session.
    let browser = client();
    let res = browser
        .post(format!("{base}/login"))
        .form(&[("tenant", "demo"), ("email", "alice@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The mail goes out from the outbox in the background: wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let link_token = loop {
        let outbox = browser
            .get(format!("{base}/dev/outbox"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if let Some(t) = outbox
            .split(['"', '<', '\n', '=', '&', ' '])
            .find(|w| w.starts_with("ell_"))
        {
            break t.to_owned();
        }
        assert!(Instant::now() < deadline, "no sign-in mail in the outbox");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    secrets.push(("sign-in link", link_token.clone()));
    let res = browser
        .post(format!("{base}/login/verify"))
        .form(&[("token", link_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let session = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-elevate="))
        .unwrap();
    let session = session["__Host-elevate=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(session.len() > 20);
    secrets.push(("session", session));
    let dash = browser
        .get(format!("{base}/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(dash.status(), 200);

    let api = client();
    let post = async |token: &str, path: &str, body: Value| -> Value {
        let res = api
            .post(format!("{base}/api/v1{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap()
    };
    // A new API token.
    let t = post(&alice, "/tokens", json!({"name": "laptop"})).await;
    secrets.push(("new API token", t["token"].as_str().unwrap().to_owned()));

    // A request approved and an SSH certificate issued for a key made here (the private key
    // never goes to the server; it must not turn up anywhere either).
    let r = post(&alice, "/requests", json!({"profile": "prod-shell", "duration": "1h", "justification": "deploy hotfix", "ticket": "INC-1"})).await;
    let id = r["id"].as_str().unwrap().to_owned();
    let r = post(
        &bob,
        &format!("/requests/{id}/approve"),
        json!({"comment": "ok"}),
    )
    .await;
    assert_eq!(r["state"], "active");
    let key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
    let private = key.to_openssh(ssh_key::LineEnding::LF).unwrap().to_string();
    let body: String = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    secrets.push(("SSH private key", body[..60].to_owned()));
    let cert = post(
        &alice,
        &format!("/requests/{id}/ssh-certificate"),
        json!({"public_key": key.public_key().to_openssh().unwrap()}),
    )
    .await;
    assert!(
        cert["certificate"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519-cert-v01@openssh.com ")
    );

    // A database login: a real Postgres target (its admin password on stdin), a profile for it,
    // and a login issued to alice.
    let db = format!("sqlite:{}", dir.join("elevate.db").display());
    let pg = crate::db_fixtures::PgTarget::new().await;
    let policy = format!(
        "{}\n[[profile]]\nname = \"scan-orders\"\nrequesters = [\"engineering\"]\napprovers = [\"sre\"]\n[profile.database]\ntarget = \"orders\"\nroles = [\"{}\"]\n",
        elevate::demo::POLICY,
        pg.read
    );
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
    let out = elevate(&dir)
        .args([
            "policy",
            "apply",
            "--tenant",
            "demo",
            "policy.toml",
            "--database",
            &db,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut cmd = elevate(&dir);
    cmd.args([
        "admin",
        "target",
        "set",
        "--tenant",
        "demo",
        "orders",
        "--kind",
        "postgres",
        "--url",
        &pg.admin_url(),
        "--database",
        &db,
    ]);
    let out = run_with_stdin(cmd, &format!("{}\n", pg.admin_password));
    assert!(out.status.success(), "{}", text(&out.stderr));
    secrets.push(("database target admin password", pg.admin_password.clone()));
    let r = post(
        &alice,
        "/requests",
        json!({"profile": "scan-orders", "duration": "30m", "justification": "check an order"}),
    )
    .await;
    let id = r["id"].as_str().unwrap().to_owned();
    let r = post(&bob, &format!("/requests/{id}/approve"), json!({})).await;
    assert_eq!(r["state"], "active");
    let login = post(&alice, &format!("/requests/{id}/db-credentials"), json!({})).await;
    let password = login["password"].as_str().unwrap().to_owned();
    assert!(
        pg.login(login["username"].as_str().unwrap(), &password)
            .await
            .is_ok(),
        "the login works"
    );
    secrets.push(("database login password", password));

    // Webhook secrets, given on stdin to the operator commands.
    let hook_secret = "whsec-notification-0123456789abcdef";
    let mut cmd = elevate(&dir);
    cmd.args([
        "admin",
        "webhook",
        "add",
        "--tenant",
        "demo",
        "--url",
        "http://127.0.0.1:9/hook",
        "--database",
        &db,
    ]);
    let out = run_with_stdin(cmd, &format!("{hook_secret}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    secrets.push(("webhook secret", hook_secret.into()));
    let sink_secret = "whsec-audit-sink-fedcba9876543210";
    let mut cmd = elevate(&dir);
    cmd.args([
        "audit",
        "sink",
        "add",
        "--tenant",
        "demo",
        "--webhook",
        "http://127.0.0.1:9/audit",
        "--database",
        &db,
    ]);
    let out = run_with_stdin(cmd, &format!("{sink_secret}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    secrets.push(("audit sink secret", sink_secret.into()));
    // Let the background tasks try (and fail) to deliver with those secrets, and sign.
    tokio::time::sleep(Duration::from_secs(3)).await;
    first_checkpoint(&base).await;

    let res = api
        .get(format!("{base}/api/v1/audit/export"))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let export = res.text().await.unwrap();
    assert!(
        export.contains("ssh.certificate") || export.contains("certificate"),
        "the flow is in the log"
    );
    assert!(server.terminate().success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = log.lock().unwrap().clone();
    assert!(log.contains("request"), "the server logged the flow");

    // The master key is a secret too: it lives in its own file, never in the database.
    let master = std::fs::read_to_string(dir.join("elevate.key")).unwrap();
    for line in master
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        secrets.push(("master key", line.trim().to_owned()));
    }

    let places = haystacks(&dir, &log, &export);
    let mut hits = Vec::new();
    for (what, secret) in &secrets {
        for (place, bytes) in &places {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                hits.push(format!("{what} found in {place}"));
            }
        }
    }
    println!(
        "scanned {} secrets in {} places ({} bytes): {} hits",
        secrets.len(),
        places.len(),
        places.iter().map(|p| p.1.len()).sum::<usize>(),
        hits.len()
    );
    assert!(hits.is_empty(), "{hits:#?}");
}
