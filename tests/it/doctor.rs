//! `elevate doctor` through the real binary: a deliberately bad deployment gets each finding with
//! the right severity and exit 1; good ones (a demo-like SQLite set-up, Postgres with the
//! non-owner app role) get no error and exit 0.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use elevate::clock::{Clock, ManualClock};
use elevate::config::OidcConfig;
use elevate::crypto::MasterKey;
use elevate::db_targets::targets::{NewTarget, set_target};
use elevate::model::{Role, TargetKind, Tenant};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::db_fixtures::{MyTarget, PgTarget};
use crate::fixtures::SmtpSink;
use crate::fixtures::elevate;
use crate::helpers::{TestApp, TestDb, ctx, metrics_token, pg_url, seed_tenant, temp_dir};

/// A certificate for `host` valid from `not_before` to `not_after` (self-signed, rcgen), written
/// with its key (0600) into `dir`.
pub(crate) fn write_certificate(
    dir: &Path,
    host: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    (c, k)
}

/// A port nothing listens on.
pub(crate) fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn doctor(dir: &Path, args: &[&str]) -> (Output, Value) {
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = elevate(dir)
        .arg("doctor")
        .args(&json_args)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, report)
}

/// The severity of the first finding with `id`, if any.
fn severity<'a>(report: &'a Value, id: &str) -> Option<&'a str> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .and_then(|f| f["severity"].as_str())
}

fn errors(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| format!("{}: {}", f["id"], f["found"]))
        .collect()
}

fn passed(report: &Value, id: &str) -> bool {
    report["passed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == id)
}

/// Where a target goes: store, master key, clock, tenant.
type Place<'a> = (
    &'a elevate::store::Store,
    &'a MasterKey,
    &'a dyn Clock,
    &'a Tenant,
);

async fn add_target(
    (store, master, clock, tenant): Place<'_>,
    name: &str,
    kind: TargetKind,
    url: &str,
    password: &str,
) {
    set_target(
        store,
        master,
        &ctx(clock),
        tenant,
        NewTarget {
            name,
            kind,
            url,
            password,
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn doctor_reports_each_problem_of_a_bad_deployment_with_its_severity() {
    let db = TestDb::postgres().await;
    let clock = ManualClock::starting_now();
    let keys = temp_dir("doctor-bad");
    let key_path = keys.join("master.key");
    let master = MasterKey::generate_file(&key_path).unwrap();
    // Readable by everyone, in a directory anyone may write.
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o777)).unwrap();
    let tenant = seed_tenant(&db.store, &master, &clock, "acme").await;
    // A target administered by a superuser, and one that does not answer.
    add_target(
        (&db.store, &master, &clock, &tenant),
        "everything",
        TargetKind::Postgres,
        &pg_url("postgres", Some("postgres")),
        "unused",
    )
    .await;
    add_target(
        (&db.store, &master, &clock, &tenant),
        "gone",
        TargetKind::Postgres,
        &format!("postgres://admin@127.0.0.1:{}/gone", closed_port()),
        "pw",
    )
    .await;
    // The schema loosened by hand: a table no longer forced, a definer function without a
    // pinned search_path, autovacuum off for a table, and one table's deleted rows left behind.
    db.owner_exec(
        "ALTER TABLE webhooks NO FORCE ROW LEVEL SECURITY;
         CREATE FUNCTION leaky() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;
         ALTER TABLE requests SET (autovacuum_enabled = false);
         ALTER TABLE request_state_deltas SET (autovacuum_enabled = false);
         INSERT INTO request_state_deltas (tenant_id, state, n)
             SELECT gen_random_uuid(), 'pending', 1 FROM generate_series(1, 2000);
         DELETE FROM request_state_deltas;",
    )
    .await;
    let now = clock.now();
    let (cert, key) = write_certificate(
        &keys,
        "elevate.example",
        now - time::Duration::days(400),
        now - time::Duration::days(1),
    );
    let smtp = format!("smtp://127.0.0.1:{}?tls=required", closed_port());
    let args = [
        // The superuser: the service would ignore row-level security.
        "--database",
        &db.owner_url,
        "--master-key-file",
        key_path.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--public-url",
        "https://elevate.example",
        "--smtp-url",
        &smtp,
    ];
    let (out, report) = doctor(&keys, &args);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    for (id, expected) in [
        ("store.role.superuser", "error"),
        ("store.role.owner", "error"),
        ("master_key.mode", "error"),
        ("master_key.directory", "error"),
        ("tls.expiry", "error"),
        ("mail.smtp", "error"),
        ("targets.reachable", "error"),
        ("targets.superuser", "warning"),
        ("store.rls", "error"),
        ("store.security_definer", "error"),
        ("store.autovacuum", "warning"),
        ("store.vacuum", "warning"),
        ("tls.self_signed", "warning"),
    ] {
        assert_eq!(severity(&report, id), Some(expected), "{id}: {report:#}");
    }
    // What stayed right is said too.
    for id in [
        "store.migrations",
        "secrets.sealed",
        "audit.chain",
        "tls.host",
    ] {
        assert!(passed(&report, id), "{id} passes: {report:#}");
    }
    // Each names what it found.
    let found = report.to_string();
    for what in [
        "webhooks (RLS not forced)",
        "public.leaky",
        "autovacuum is disabled on request_state_deltas, requests",
        "request_state_deltas (2000 dead rows, 0 live)",
    ] {
        assert!(found.contains(what), "{what}: {report:#}");
    }
    // Every finding says how to fix it.
    for f in report["findings"].as_array().unwrap() {
        assert!(!f["fix"].as_str().unwrap().is_empty(), "{f}");
    }

    // The same for people: each finding with its severity and fix, exit 1.
    let out = elevate(&keys).arg("doctor").args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("error   store.role.superuser"), "{text}");
    assert!(text.contains("error   master_key.mode"), "{text}");
    assert!(text.contains("fix: chmod 600"), "{text}");
    assert!(text.contains("expired on"), "{text}");
}

#[tokio::test]
async fn doctor_passes_a_demo_like_sqlite_deployment_and_says_what_production_needs() {
    let db = TestDb::sqlite().await;
    let clock = ManualClock::starting_now();
    // What `elevate serve --demo` leaves beside the database: key, development certificate.
    let master = MasterKey::generate_file(&db.dir.join("elevate.key")).unwrap();
    elevate::web::tls::ensure_dev_certificate(&db.dir, clock.now()).unwrap();
    seed_tenant(&db.store, &master, &clock, "demo").await;

    let (out, report) = doctor(&db.dir, &["--database", &db.url]);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert!(errors(&report).is_empty(), "{:?}", errors(&report));
    // What would make it production-ready.
    for id in [
        "master_key.location",
        "tls.self_signed",
        "public_url.domain",
        "mail.smtp",
    ] {
        assert_eq!(severity(&report, id), Some("warning"), "{id}: {report:#}");
    }
    assert_eq!(severity(&report, "store.sqlite"), Some("info"));
    for id in [
        "master_key.mode",
        "secrets.sealed",
        "audit.chain",
        "tls.expiry",
        "tls.host",
        "store.migrations",
    ] {
        assert!(passed(&report, id), "{id} passes: {report:#}");
    }

    // The same from a configuration file, as `serve --config` reads it.
    let config = db.dir.join("elevate.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"{}\"\npublic_url = \"https://10.0.0.1\"\n",
            db.url
        ),
    )
    .unwrap();
    let (out, report) = doctor(&db.dir, &["--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    // An IP address: no passkeys; and the development certificate does not name it.
    assert_eq!(severity(&report, "public_url.domain"), Some("error"));
    assert_eq!(severity(&report, "tls.host"), Some("error"));
    assert!(passed(&report, "secrets.sealed"), "{report:#}");

    // Two admins and no second person for policy changes: recommended.
    assert!(passed(&report, "policy.two_person"), "{report:#}");
    let tenant = db.store.tenant_by_slug("demo").await.unwrap().unwrap();
    for email in ["a1@demo.example", "a2@demo.example"] {
        crate::helpers::seed_user(&db.store, &clock, &tenant, email, &[Role::Admin], &[]).await;
    }
    let (_, report) = doctor(&db.dir, &["--database", &db.url]);
    assert_eq!(
        severity(&report, "policy.two_person"),
        Some("warning"),
        "{report:#}"
    );

    // Doctor creates nothing: a database that is not there is an error, not a new file.
    let missing = db.dir.join("nothing-here.db");
    let (out, report) = doctor(
        &db.dir,
        &["--database", &format!("sqlite:{}", missing.display())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(severity(&report, "store.connect"), Some("error"));
    assert!(!missing.exists());
}

#[tokio::test]
async fn doctor_passes_postgres_with_the_non_owner_app_role() {
    let db = TestDb::postgres().await;
    let clock = ManualClock::starting_now();
    let keys = temp_dir("doctor-good");
    let key_path = keys.join("master.key");
    let master = MasterKey::generate_file(&key_path).unwrap();
    let tenant = seed_tenant(&db.store, &master, &clock, "acme").await;
    // A target whose admin login holds exactly the documented rights, used by a profile.
    let pg = PgTarget::new().await;
    let my = MyTarget::new().await;
    elevate::broker::policy::apply(
        &db.store,
        &ctx(&clock),
        &tenant,
        &format!(
            r#"
[[profile]]
name = "orders-write"
requesters = ["engineering"]
approvers = ["sre"]
[profile.database]
target = "orders"
roles = ["{write}"]
owner = "{owner}"

[[profile]]
name = "shop-read"
requesters = ["engineering"]
approvers = ["sre"]
[profile.database]
target = "shop"
roles = ["{read}"]
"#,
            write = pg.write,
            owner = pg.owner,
            read = my.read,
        ),
    )
    .await
    .unwrap();
    add_target(
        (&db.store, &master, &clock, &tenant),
        "orders",
        TargetKind::Postgres,
        &pg.admin_url(),
        &pg.admin_password,
    )
    .await;
    add_target(
        (&db.store, &master, &clock, &tenant),
        "shop",
        TargetKind::Mysql,
        &my.admin_url(),
        &my.admin_password,
    )
    .await;
    let now = clock.now();
    let (cert, key) = write_certificate(
        &keys,
        "elevate.example",
        now - time::Duration::days(1),
        now + time::Duration::days(90),
    );
    let smtp = SmtpSink::start();
    let smtp_url = smtp.url();
    let (out, report) = doctor(
        &keys,
        &[
            "--database",
            &db.url,
            "--master-key-file",
            key_path.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--public-url",
            "https://elevate.example",
            "--smtp-url",
            &smtp_url,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert!(errors(&report).is_empty(), "{:?}", errors(&report));
    for id in [
        "store.role",
        "store.rls",
        "store.security_definer",
        "store.migrations",
        "store.clock_skew",
        "master_key.mode",
        "master_key.owner",
        "secrets.sealed",
        "tls.expiry",
        "tls.host",
        "public_url.domain",
        "mail.smtp",
        "targets.rights",
        "audit.chain",
        "db_cleanups.stuck",
    ] {
        assert!(passed(&report, id), "{id} passes: {report:#}");
    }
    let targets: Vec<&str> = report["passed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"] == "targets.rights")
        .map(|p| p["what"].as_str().unwrap())
        .collect();
    assert_eq!(targets.len(), 2, "Postgres and MariaDB: {report:#}");
    // Plain SMTP without STARTTLS is worth a warning, not an error.
    assert_eq!(severity(&report, "mail.tls"), Some("warning"));

    // A profile role the admin login cannot hand out is an error.
    elevate::broker::policy::apply(
        &db.store,
        &ctx(&clock),
        &tenant,
        &format!(
            r#"
[[profile]]
name = "orders-read"
requesters = ["engineering"]
approvers = ["sre"]
[profile.database]
target = "orders"
roles = ["{owner}"]
"#,
            owner = pg.owner
        ),
    )
    .await
    .unwrap();
    let (out, report) = doctor(
        &keys,
        &[
            "--database",
            &db.url,
            "--master-key-file",
            key_path.to_str().unwrap(),
            "--insecure-http",
            "--public-url",
            "https://elevate.example",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(
        severity(&report, "targets.rights"),
        Some("error"),
        "{report:#}"
    );
    assert_eq!(severity(&report, "tls.proxy"), Some("info"));
}

// Readiness: the same SMTP and OpenID probes, plus the signing keys (DESIGN §8: unready only
// when the store or the signing keys fail; mail and OpenID outages degrade).

async fn readyz(app: &TestApp, token: Option<&str>) -> (u16, Value) {
    let mut req = app.client.get(app.url("/readyz"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn readiness_degrades_while_the_smtp_server_does_not_answer() {
    let closed = closed_port();
    let app = TestApp::spawn_with(TestDb::sqlite().await, |c| {
        c.smtp_url = Some(SecretString::from(format!("smtp://127.0.0.1:{closed}")));
    })
    .await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    let (status, body) = readyz(&app, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["degraded"], json!(["mail"]));
    assert_eq!(body["checks"]["mail"], json!({ "state": "unreachable" }));
    assert_eq!(body["checks"]["signing_keys"]["state"], "ok");
    // The reason is for the tenant's monitoring token, not for anyone.
    let token = metrics_token(app.store(), app.clock.as_ref(), &tenant).await;
    let (_, body) = readyz(&app, Some(&token)).await;
    assert!(
        !body["checks"]["mail"]["error"].as_str().unwrap().is_empty(),
        "{body}"
    );

    // A server that answers: ready, mail ok.
    let smtp = SmtpSink::start();
    let url = smtp.url();
    let app = TestApp::spawn_with(TestDb::sqlite().await, |c| {
        c.smtp_url = Some(SecretString::from(url));
    })
    .await;
    let (status, body) = readyz(&app, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    assert_eq!(body["checks"]["mail"]["state"], "ok");
}

#[tokio::test]
async fn readiness_degrades_while_an_openid_provider_is_down() {
    let closed = closed_port();
    let app = TestApp::spawn_with(TestDb::sqlite().await, |c| {
        c.oidc.insert(
            "acme".into(),
            OidcConfig {
                issuer: format!("http://127.0.0.1:{closed}"),
                client_id: "elevate".into(),
                client_secret: SecretString::from("secret"),
                groups_claim: "groups".into(),
                create_users: false,
                default_roles: Vec::new(),
                label: "SSO".into(),
            },
        );
    })
    .await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    let (status, body) = readyz(&app, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["degraded"], json!(["oidc"]));
    assert_eq!(
        body["checks"]["oidc"],
        json!({ "providers": 1, "unreachable": 1 })
    );
    assert!(!body.to_string().contains("acme"), "{body}");
    let token = metrics_token(app.store(), app.clock.as_ref(), &tenant).await;
    let (_, body) = readyz(&app, Some(&token)).await;
    assert_eq!(body["checks"]["oidc"]["state"], "unreachable", "{body}");
}

#[tokio::test]
async fn readiness_is_unready_when_a_signing_key_does_not_open() {
    // A tenant whose keys were sealed under another master key (the wrong key file): nothing
    // can be certified or signed for it.
    let db = TestDb::sqlite().await;
    let other = MasterKey::generate().unwrap();
    let clock = ManualClock::starting_now();
    let tenant = seed_tenant(&db.store, &other, &clock, "sealed-elsewhere").await;
    let app = TestApp::spawn(db).await;
    seed_tenant(app.store(), &app.master, app.clock.as_ref(), "good").await;
    let (status, body) = readyz(&app, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not ready");
    assert_eq!(
        body["checks"]["signing_keys"],
        json!({ "state": "failing", "failing": 2 })
    );
    assert!(!body.to_string().contains("sealed-elsewhere"), "{body}");
    let token = metrics_token(app.store(), app.clock.as_ref(), &tenant).await;
    let (_, body) = readyz(&app, Some(&token)).await;
    let failing = body["checks"]["signing_keys"]["failing"]
        .as_array()
        .unwrap();
    assert_eq!(failing.len(), 2, "{body}");
}
