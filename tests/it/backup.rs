//! Backup, restore and the restore drill through the real binary, on both stores; a backup taken
//! while requests are being filed; and with a real sshd, a certificate revoked after the backup
//! stays refused after the restore because the restore rotated the CA.

use std::path::Path;
use std::process::Output;

use elevate::audit::checkpoint::{Schedule, SharedStatus, run_once};
use elevate::clock::Clock;
use elevate::ops::backup::{Manifest, manifest_path};
use elevate::store::{Backend, Store};
use serde_json::{Value, json};

use crate::fixtures::elevate;
use crate::fixtures::{Shop, shop};
use crate::helpers::{TestApp, TestDb, ctx, pg_admin_url, pg_url, temp_dir};
use crate::sshd::{Sshd, host_sync};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The URL the operator commands use: the file for SQLite, the superuser for Postgres (pg_dump
/// must read every tenant's rows; pg_restore must set owners).
fn operator_url(db: &TestDb) -> String {
    db.owner_url.clone()
}

/// An empty store to restore into: a new SQLite path, or a new empty Postgres database (URL of
/// the superuser).
async fn empty_target(backend: Backend, dir: &Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite:{}", dir.join("restored.db").display()),
        Backend::Postgres => {
            let name = format!("elevate_r_{}", uuid::Uuid::new_v4().simple());
            elevate::store::backup::create_database(&pg_admin_url(), &name)
                .await
                .unwrap();
            pg_url(&name, None)
        }
    }
}

async fn checkpoint_all(app: &TestApp) {
    run_once(
        app.store(),
        &app.master,
        Schedule {
            every_events: 1_000_000,
            every: time::Duration::ZERO,
        },
        app.clock.now(),
        &SharedStatus::default(),
    )
    .await
    .unwrap();
}

fn backup_cmd(dir: &Path, url: &str, out: &Path) -> Output {
    elevate(dir)
        .args(["backup", "--database", url, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

fn restore_cmd(dir: &Path, from: &Path, url: &str, key: &Path, anchors: &Path) -> Output {
    elevate(dir)
        .args(["restore", "--from"])
        .arg(from)
        .args(["--database", url, "--master-key-file"])
        .arg(key)
        .arg("--anchor-dir")
        .arg(anchors)
        .output()
        .unwrap()
}

fn drill_cmd(dir: &Path, from: &Path, key: &Path, report: &Path) -> Output {
    elevate(dir)
        .args(["drill", "--from"])
        .arg(from)
        .arg("--master-key-file")
        .arg(key)
        .arg("--report")
        .arg(report)
        .args(["--scratch", &pg_admin_url()])
        .output()
        .unwrap()
}

async fn actions(store: &Store, tenant: uuid::Uuid) -> Vec<(String, Value)> {
    let mut tx = store.tenant(tenant).await.unwrap();
    let events = tx.audit_events(0, 100_000).await.unwrap();
    tx.commit().await.unwrap();
    events
        .into_iter()
        .map(|e| (e.action, e.details.0))
        .collect()
}

async fn published(store: &Store, shop: &Shop) -> String {
    elevate::ssh::ca::trusted_keys(store, &shop.tenant, shop.app.clock.now())
        .await
        .unwrap()
}

async fn round_trip(db: TestDb) {
    let backend = db.backend;
    let shop = shop(db).await;
    let app = &shop.app;
    let id = shop.granted("prod-shell").await;
    shop.certified(&id).await;
    elevate::admin::add_webhook(
        app.store(),
        &app.master,
        &ctx(app.clock.as_ref()),
        &shop.tenant,
        "https://hooks.example/elevate",
        "a webhook secret of some length",
    )
    .await
    .unwrap();
    checkpoint_all(app).await;
    let old_ca = published(app.store(), &shop).await;

    let work = temp_dir("backup");
    let file = work.join("elevate.backup");
    let out = ok(&backup_cmd(&work, &operator_url(&app.db), &file));
    assert!(out.contains("acme: audit head seq"), "{out}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "a backup is readable by its owner only"
        );
        let names: Vec<String> = std::fs::read_dir(&work)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names.len(),
            2,
            "the backup and its manifest, nothing left over: {names:?}"
        );
    }
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(manifest_path(&file)).unwrap()).unwrap();
    let mut tx = app.store().tenant(shop.tenant.tenant_id).await.unwrap();
    let (head, _) = tx.audit_head().await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert_eq!(manifest.tenants.len(), 1);
    assert_eq!(manifest.tenants[0].head_seq, head);
    assert!(manifest.tenants[0].checkpoint_seq > 0);
    let again = backup_cmd(&work, &operator_url(&app.db), &file);
    assert!(!again.status.success(), "a backup never overwrites");

    // The drill restores into scratch and checks everything.
    let report = work.join("drill.txt");
    let key = app.db.dir.join("elevate.key");
    let out = ok(&drill_cmd(&work, &work, &key, &report));
    let written = std::fs::read_to_string(&report).unwrap();
    assert_eq!(out, written);
    for want in [
        "PASS  manifest and checksum",
        "PASS  restore into the scratch store",
        "PASS  audit chain and checkpoints of acme",
        "PASS  sealed secrets of acme",
        "PASS  CA rotation after restore for acme",
        "result: PASS (0 of",
    ] {
        assert!(written.contains(want), "{want} in\n{written}");
    }

    // `--database`: back up the live store now and drill that.
    let out = ok(&elevate(&work)
        .args([
            "drill",
            "--database",
            &operator_url(&app.db),
            "--master-key-file",
        ])
        .arg(&key)
        .output()
        .unwrap());
    assert!(out.contains("taken for this drill"), "{out}");
    assert!(out.contains("result: PASS"), "{out}");

    // A real restore into an empty store.
    let target = empty_target(backend, &work).await;
    let anchors = temp_dir("anchors");
    let out = ok(&restore_cmd(&work, &file, &target, &key, &anchors));
    assert!(out.contains("new SSH user CA"), "{out}");
    let restored = Store::connect(&target).await.unwrap();
    let tenant = restored.tenant_by_slug("acme").await.unwrap().unwrap();
    let verified = elevate::audit::verify::verify_store(&restored, tenant.tenant_id, None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        verified.head_seq > head,
        "the restore is recorded after the backup's head"
    );
    let acts = actions(&restored, tenant.tenant_id).await;
    let names: Vec<&str> = acts.iter().map(|(a, _)| a.as_str()).collect();
    assert!(names.contains(&"ssh.ca_rotated"), "{names:?}");
    let (_, rec) = acts.iter().find(|(a, _)| a == "backup.restored").unwrap();
    assert_eq!(rec["backup_head_seq"], json!(head));
    assert_eq!(rec["lost"]["from"], json!(head + 1));
    assert_eq!(rec["grants_revoked"], json!(1), "{rec}");
    assert!(names.contains(&"grant.revoked"), "{names:?}");
    let new_ca = elevate::ssh::ca::trusted_keys(&restored, &tenant, app.clock.now())
        .await
        .unwrap();
    assert_eq!(new_ca.lines().count(), 1, "{new_ca}");
    assert!(
        !old_ca.lines().any(|l| new_ca.contains(l)),
        "the backup's CA is no longer published"
    );
    restored.close().await;
    if backend == Backend::Postgres {
        // The service can run on it as before: the app role, row-level security forced on every
        // tenant table, owners kept.
        let name = target.rsplit('/').next().unwrap();
        let app_store = Store::connect(&pg_url(name, Some(crate::helpers::APP_LOGIN_ROLE)))
            .await
            .unwrap();
        app_store.check_role_safety().await.unwrap();
        app_store.check_migrations().await.unwrap();
        assert!(app_store.tenant_by_slug("acme").await.unwrap().is_some());
        app_store.close().await;
        let mut su = <sqlx::PgConnection as sqlx::Connection>::connect(&target)
            .await
            .unwrap();
        let weak: Vec<String> = sqlx::query_scalar(
            "SELECT relname::text FROM pg_class WHERE relname = ANY($1) AND relkind = 'r'
               AND NOT (relrowsecurity AND relforcerowsecurity
                        AND pg_get_userbyid(relowner) = 'elevate_owner')",
        )
        .bind(elevate::store::TENANT_TABLES.as_slice())
        .fetch_all(&mut su)
        .await
        .unwrap();
        assert!(
            weak.is_empty(),
            "tables without forced RLS or the owner: {weak:?}"
        );
    }

    // A store with tenants is refused unless --force.
    let refused = restore_cmd(&work, &file, &target, &key, &anchors);
    assert!(!refused.status.success());
    crate::helpers::assert_contains(&refused.stderr, "--force");

    // A damaged backup fails the drill (exit 1) and says why.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let failed = drill_cmd(&work, &file, &key, &report);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    let written = std::fs::read_to_string(&report).unwrap();
    assert!(written.contains("FAIL  manifest and checksum"), "{written}");
    assert!(written.contains("does not match its manifest"), "{written}");
    assert!(written.contains("result: FAIL"), "{written}");
}

/// Requests are filed in a loop against the running server while the backup runs: the backup is
/// one consistent point of the chain, restores and verifies.
async fn backup_under_write_load(db: TestDb) {
    let shop = std::sync::Arc::new(shop(db).await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..3 {
        let (shop, stop) = (shop.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut filed = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (s, r) = shop
                    .post(
                        &shop.alice,
                        "/api/v1/requests",
                        json!({"profile": "prod-shell", "duration": "1h", "justification": "load", "ticket": "INC-1"}),
                    )
                    .await;
                assert_eq!(s, reqwest::StatusCode::CREATED, "{r}");
                filed += 1;
            }
            filed
        }));
    }
    // Let the load get going, then back up in the middle of it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let work = temp_dir("backup-load");
    let file = work.join("busy.backup");
    let url = operator_url(&shop.app.db);
    let out = {
        let (work, file) = (work.clone(), file.clone());
        tokio::task::spawn_blocking(move || backup_cmd(&work, &url, &file))
            .await
            .unwrap()
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut filed = 0;
    for w in writers {
        filed += w.await.unwrap();
    }
    ok(&out);
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(manifest_path(&file)).unwrap()).unwrap();
    let mut tx = shop
        .app
        .store()
        .tenant(shop.tenant.tenant_id)
        .await
        .unwrap();
    let (head, _) = tx.audit_head().await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert!(filed > 5, "the load filed {filed} requests");
    assert!(
        manifest.tenants[0].head_seq < head,
        "writes went on after the backup's point ({} < {head})",
        manifest.tenants[0].head_seq
    );
    let report = work.join("drill.txt");
    let key = shop.app.db.dir.join("elevate.key");
    let out = drill_cmd(&work, &file, &key, &report);
    let written = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(out.status.success(), "{written}\n{}", text(&out.stderr));
    assert!(
        written.contains("PASS  audit chain and checkpoints of acme"),
        "{written}"
    );
}

crate::on_both_backends!(round_trip, backup_under_write_load);

/// With real sshd: a certificate issued before the backup and revoked after it. The live server
/// refuses it through the KRL; the restored store knows nothing of the revocation, so the restore
/// rotates the CA and sshd, synced from the restored server's public `user-ca.pub`, refuses it
/// because its CA is no longer trusted. The restore also names the audit range that was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_revoked_after_the_backup_stays_refused_after_the_restore() {
    let shop = shop(TestDb::sqlite().await).await;
    let sshd = Sshd::start(&shop.app, "acme", &["deploy"]);
    let id = shop.granted("prod-shell").await;
    let (key, cert, _) = shop.certified(&id).await;
    assert!(sshd.accepts(&key, &cert));

    let work = temp_dir("backup-sshd");
    let file = work.join("before-revoke.backup");
    ok(&backup_cmd(&work, &shop.app.db.url, &file));

    shop.revoke(&id).await;
    // The live signer sees (and anchors) the revocation.
    checkpoint_all(&shop.app).await;
    let out = host_sync(&shop.app, "acme", &sshd.etc);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!sshd.accepts(&key, &cert), "the live KRL refuses it");

    // Restore into a new store with the same master key (and its anchors).
    let restored_dir = temp_dir("restored");
    let url = format!("sqlite:{}", restored_dir.join("elevate.db").display());
    let master = shop.app.db.dir.join("elevate.key");
    let out = ok(&elevate(&work)
        .args(["restore", "--from"])
        .arg(&file)
        .args(["--database", &url, "--master-key-file"])
        .arg(&master)
        .output()
        .unwrap());
    assert!(
        out.contains("are lost; recorded as audit.restored"),
        "{out}"
    );

    let store = Store::connect(&url).await.unwrap();
    let tenant = store.tenant_by_slug("acme").await.unwrap().unwrap();
    let acts = actions(&store, tenant.tenant_id).await;
    let (_, lost) = acts.iter().find(|(a, _)| a == "audit.restored").unwrap();
    assert!(
        lost["lost_to"].as_i64().unwrap() >= lost["lost_from"].as_i64().unwrap(),
        "{lost}"
    );
    // The restored store cannot know the grant was revoked: the restore revokes it again.
    let mut tx = store.tenant(tenant.tenant_id).await.unwrap();
    let req = tx.request(id.parse().unwrap()).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert_eq!(req.request.state.as_str(), "revoked");
    let served = TestApp::spawn(TestDb {
        store,
        backend: Backend::Sqlite,
        owner_url: url.clone(),
        url,
        dir: temp_dir("restored-srv"),
    })
    .await;
    let (_, public) = crate::sshd::user_key(&shop.dir, "ed25519");
    let res = served
        .client
        .post(served.url(&format!("/api/v1/requests/{id}/ssh-certificate")))
        .bearer_auth(&shop.alice)
        .json(&json!({ "public_key": std::fs::read_to_string(public).unwrap() }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        reqwest::StatusCode::CONFLICT,
        "no new certificate for it"
    );
    let out = host_sync(&served, "acme", &sshd.etc);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !sshd.accepts(&key, &cert),
        "the certificate revoked after the backup must stay refused"
    );
    let trusted = std::fs::read_to_string(sshd.etc.join("user-ca.pub")).unwrap();
    assert_eq!(trusted.lines().count(), 1, "only the new CA: {trusted}");
}

/// A database login made after the backup is unknown to the restored store: the restore's sweep
/// drops it on the target. A login made before it belongs to a grant the restore revokes, so the
/// restored server's reaper drops it too.
#[tokio::test]
async fn a_restore_drops_database_logins_the_backup_does_not_account_for() {
    use crate::db_fixtures::PgTarget;
    let pg = PgTarget::new().await;
    let policy = crate::fixtures::orders_read_profile(&pg.read);
    let shop = crate::fixtures::shop_with(
        TestApp::spawn(TestDb::sqlite().await).await,
        "acme",
        &policy,
    )
    .await;
    shop.add_orders_target(&pg).await;
    let login = |id: String| {
        let shop = &shop;
        async move {
            let (s, l) = shop
                .post(
                    &shop.alice,
                    &format!("/api/v1/requests/{id}/db-credentials"),
                    json!({}),
                )
                .await;
            assert_eq!(s, reqwest::StatusCode::CREATED, "{l}");
            l["username"].as_str().unwrap().to_owned()
        }
    };
    let before = login(shop.granted("orders-read").await).await;
    let work = temp_dir("backup-db");
    let file = work.join("elevate.backup");
    ok(&backup_cmd(&work, &shop.app.db.url, &file));
    let after = login(shop.granted("orders-read").await).await;
    assert!(pg.role_exists(&before).await && pg.role_exists(&after).await);

    let url = format!(
        "sqlite:{}",
        temp_dir("restored-db").join("elevate.db").display()
    );
    let key = shop.app.db.dir.join("elevate.key");
    let out = ok(&restore_cmd(&work, &file, &url, &key, &temp_dir("anchors")));
    assert!(out.contains("dropped 1 database login(s)"), "{out}");
    assert!(
        !pg.role_exists(&after).await,
        "the login made after the backup is gone"
    );

    let restored = Store::connect(&url).await.unwrap();
    // The restore ran on the wall clock (the app's clock is a manual one).
    let now = elevate::clock::SystemClock.now() + time::Duration::seconds(1);
    elevate::reaper::clean_db_logins(&restored, &shop.app.master, now)
        .await
        .unwrap();
    assert!(
        !pg.role_exists(&before).await,
        "the restored grant was revoked, so its login is dropped"
    );
    let tenant = restored.tenant_by_slug("acme").await.unwrap().unwrap();
    let acts = actions(&restored, tenant.tenant_id).await;
    assert!(
        acts.iter()
            .any(|(a, d)| a == "db.orphan_dropped" && d["role"] == after.as_str()),
        "{acts:?}"
    );
}
