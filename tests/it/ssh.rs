//! SSH certificates end to end with real OpenSSH: `sshd` trusting the tenant CA through
//! `elevate host sync`, the `ssh` client logging in with issued certificates, `ssh-keygen -L/-Q`
//! reading them and the KRL.

use std::path::Path;
use std::process::Command;

use elevate::clock::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::fixtures::{Engineer, krl_revokes, shop, shop_in, sync};
use crate::helpers::{TestApp, TestDb, temp_dir};
use crate::sshd::{BIN, Sshd, host_sync, unix_user, user_key};

/// `ssh-keygen -L` of a certificate file, in UTC.
fn describe_cert(cert: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .env("TZ", "UTC")
        .arg("-L")
        .arg("-f")
        .arg(cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rfc(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

fn keygen_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    t.format(&f).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_logs_in_until_the_grant_is_revoked_and_hosts_sync() {
    let shop = shop(TestDb::sqlite().await).await;
    let sshd = Sshd::start(&shop.app, "acme", &["deploy"]);
    let id = shop.granted("prod-shell").await;
    let now = shop.app.clock.now();
    let (key, cert, issued) = shop.certified(&id).await;

    // The fields DESIGN §4 names, as OpenSSH reads them.
    let serial = issued["serial"].as_u64().unwrap();
    assert!(serial > 0);
    assert_eq!(issued["principals"], json!(["deploy"]));
    assert_eq!(
        issued["key_id"],
        format!("elevate:acme:alice@acme.example:{id}")
    );
    assert_eq!(issued["file_name"], "id_ed25519-cert.pub");
    let (after, before) = (rfc(&issued["valid_after"]), rfc(&issued["valid_before"]));
    assert_eq!(after, now - time::Duration::seconds(60));
    assert_eq!(
        before,
        now + time::Duration::hours(1),
        "cert TTL 1h, grant 1h"
    );
    let text = describe_cert(&cert);
    assert!(
        text.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Key ID: \"elevate:acme:alice@acme.example:{id}\"")),
        "{text}"
    );
    assert!(text.contains(&format!("Serial: {serial}")), "{text}");
    assert!(
        text.contains(&format!(
            "Valid: from {} to {}",
            keygen_time(after),
            keygen_time(before)
        )),
        "{text}"
    );
    let principals = text
        .split("Principals:")
        .nth(1)
        .unwrap()
        .split("Critical Options:")
        .next()
        .unwrap();
    assert_eq!(
        principals.split_whitespace().collect::<Vec<_>>(),
        ["deploy"],
        "{text}"
    );
    assert!(text.contains("Critical Options: (none)"), "{text}");
    let extensions = text.split("Extensions:").nth(1).unwrap();
    let mut names: Vec<&str> = extensions
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["permit-port-forwarding", "permit-pty", "request-id@elevate"],
        "{text}"
    );
    assert!(text.contains("Signing CA: ED25519"), "{text}");

    // Audited with serial, fingerprint and validity.
    let issued_events: Vec<Value> = shop
        .actions()
        .await
        .into_iter()
        .filter(|(a, _)| a == "ssh.certificate_issued")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(issued_events.len(), 1);
    assert_eq!(issued_events[0]["serial"], serial.to_string());
    assert!(
        issued_events[0]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert_eq!(issued_events[0]["valid_before"], before.unix_timestamp());

    // A real login runs a command.
    assert!(sshd.accepts(&key, &cert), "the certificate should log in");

    shop.revoke(&id).await;
    let actions = shop.actions().await;
    let revoked = actions
        .iter()
        .find(|(a, _)| a == "ssh.certificates_revoked")
        .expect("revocation audited");
    assert_eq!(revoked.1["serials"], json!([serial.to_string()]));
    // The host still has the old KRL until it syncs; after `host sync` the next login is refused.
    sync(&shop, &sshd);
    assert!(krl_revokes(&sshd.etc.join("revoked.krl"), &cert));
    assert!(
        !sshd.accepts(&key, &cert),
        "a revoked certificate must not log in"
    );
    assert!(sshd.log().contains("revoked"), "{}", sshd.log_tail());

    // No new certificate for a revoked grant.
    let (s, body) = shop.issue_new_key(&id).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_force_command_and_source_address_come_from_the_profile() {
    let shop = shop(TestDb::sqlite().await).await;
    let deploy_only = Sshd::start(&shop.app, "acme", &["deploy"]);
    let web = Sshd::start(&shop.app, "acme", &["web"]);
    let id = shop.granted("web-shell").await;
    let now = shop.app.clock.now();
    let (key, cert, issued) = shop.certified(&id).await;
    assert_eq!(
        rfc(&issued["valid_before"]),
        now + time::Duration::minutes(10),
        "profile cert_ttl"
    );
    let text = describe_cert(&cert);
    assert!(text.contains("force-command /usr/bin/id -un"), "{text}");
    assert!(
        text.contains("source-address 127.0.0.1/32,::1/128"),
        "{text}"
    );
    let extensions = text.split("Extensions:").nth(1).unwrap();
    assert!(
        extensions.contains("permit-pty") && extensions.contains("request-id@elevate"),
        "{text}"
    );
    assert!(
        !extensions.contains("permit-agent-forwarding")
            && !extensions.contains("permit-X11-forwarding"),
        "{text}"
    );

    // A principal the host does not allow for the account is refused.
    assert!(!deploy_only.accepts(&key, &cert));
    assert!(
        deploy_only
            .log()
            .contains("not in the list of authorized principals")
            || deploy_only.log().contains("principal"),
        "{}",
        deploy_only.log_tail()
    );
    // Where it is allowed, the forced command runs instead of the one asked for.
    let out = web.login(&key, &cert, &web.user, "echo not-this");
    assert!(out.status.success(), "{}", web.log_tail());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), unix_user());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_and_an_ended_grant_gets_none() {
    let shop = shop(TestDb::sqlite().await).await;
    let sshd = Sshd::start(&shop.app, "acme", &["deploy"]);
    // Everything happens three hours ago: the certificate ended two hours ago in real time.
    shop.app
        .clock
        .set(shop.app.clock.now() - time::Duration::hours(3));
    let id = shop.granted("prod-shell").await;
    let (key, cert, issued) = shop.certified(&id).await;
    assert!(rfc(&issued["valid_before"]) < elevate::clock::SystemClock.now());
    assert!(
        !sshd.accepts(&key, &cert),
        "an expired certificate must not log in"
    );

    // The server's clock reaches the grant's end: no more certificates, even before the reaper runs.
    shop.app.clock.advance(time::Duration::hours(1));
    let (s, body) = shop.issue_new_key(&id).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_corrupt_krl_refuses_every_certificate_and_sync_keeps_good_files() {
    let shop = shop(TestDb::sqlite().await).await;
    let sshd = Sshd::start(&shop.app, "acme", &["deploy"]);
    let id = shop.granted("prod-shell").await;
    let (key, cert, _) = shop.certified(&id).await;
    assert!(sshd.accepts(&key, &cert));
    let krl = sshd.etc.join("revoked.krl");
    let good = std::fs::read(&krl).unwrap();

    // OpenSSH fails closed: no KRL file, or a KRL it cannot parse, refuses every key.
    std::fs::remove_file(&krl).unwrap();
    assert!(!sshd.accepts(&key, &cert), "missing KRL");
    let mut corrupt = good.clone();
    corrupt.extend_from_slice(&[1, 0, 0, 0, 99, 1, 2]);
    std::fs::write(&krl, &corrupt).unwrap();
    assert!(!sshd.accepts(&key, &cert), "corrupt KRL");

    // `host sync` restores it; a failed sync (server down, unknown tenant) keeps what is there.
    sync(&shop, &sshd);
    assert!(sshd.accepts(&key, &cert));
    let before = (
        std::fs::read(&krl).unwrap(),
        std::fs::read(sshd.etc.join("user-ca.pub")).unwrap(),
    );
    let down = Command::new(BIN)
        .args("host sync --server https://127.0.0.1:1 --tenant acme --dir".split(' '))
        .arg(&sshd.etc)
        .output()
        .unwrap();
    assert!(!down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("kept the files"),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let unknown = host_sync(&shop.app, "no-such-tenant", &sshd.etc);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("HTTP 404"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    let after = (
        std::fs::read(&krl).unwrap(),
        std::fs::read(sshd.etc.join("user-ca.pub")).unwrap(),
    );
    assert_eq!(before, after);
    assert!(sshd.accepts(&key, &cert));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_tenants_ca_is_refused() {
    let acme = shop(TestDb::sqlite().await).await;
    let sshd = Sshd::start(&acme.app, "acme", &["deploy"]);
    let other = shop_in(TestApp::spawn(TestDb::sqlite().await).await, "globex").await;
    let id = other.granted("prod-shell").await;
    let (key, cert, _) = other.certified(&id).await;
    assert!(!sshd.accepts(&key, &cert), "globex's CA is not acme's");
    let theirs = Sshd::start(&other.app, "globex", &["deploy"]);
    assert!(theirs.accepts(&key, &cert), "but globex's hosts accept it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_ca_rotation_old_certificates_work_until_they_expire_and_revocation_covers_both() {
    let shop = shop(TestDb::sqlite().await).await;
    let sshd = Sshd::start(&shop.app, "acme", &["deploy"]);
    let id = shop.granted("prod-shell").await;
    let (old_key, old_cert, old) = shop.certified(&id).await;

    let before = shop.app.get_text("/t/acme/ssh/user-ca.pub").await.1;
    assert_eq!(before.lines().count(), 1);
    let out = Command::new(BIN)
        .args([
            "admin",
            "ca",
            "rotate",
            "--tenant",
            "acme",
            "--database",
            &shop.app.db.url,
            "--master-key-file",
        ])
        .arg(shop.app.db.dir.join("elevate.key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("still published until"));
    let after = shop.app.get_text("/t/acme/ssh/user-ca.pub").await.1;
    assert_eq!(after.lines().count(), 2, "old key still published: {after}");
    assert!(after.contains(before.trim()));
    sync(&shop, &sshd);

    let (new_key, new_cert, new) = shop.certified(&id).await;
    assert_ne!(
        describe_cert(&old_cert)
            .lines()
            .find(|l| l.contains("Signing CA")),
        describe_cert(&new_cert)
            .lines()
            .find(|l| l.contains("Signing CA"))
    );
    assert!(
        sshd.accepts(&old_key, &old_cert),
        "a certificate of the retired CA still works"
    );
    assert!(sshd.accepts(&new_key, &new_cert));
    let audit = shop.actions().await;
    assert!(audit.iter().any(|(a, _)| a == "ssh.ca_rotated"));

    // Revocation lists both serials, each under its own CA.
    shop.revoke(&id).await;
    sync(&shop, &sshd);
    assert!(krl_revokes(&sshd.etc.join("revoked.krl"), &old_cert));
    assert!(krl_revokes(&sshd.etc.join("revoked.krl"), &new_cert));
    assert!(!sshd.accepts(&old_key, &old_cert));
    assert!(!sshd.accepts(&new_key, &new_cert));
    assert_ne!(old["serial"], new["serial"]);

    // Once the old CA's last certificate has expired, hosts stop trusting it.
    shop.app.clock.advance(time::Duration::hours(2));
    let later = shop.app.get_text("/t/acme/ssh/user-ca.pub").await.1;
    assert_eq!(later.lines().count(), 1);
    assert!(!later.contains(before.trim()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elevate_ssh_requests_waits_for_approval_and_logs_in_without_an_agent() {
    let shop = shop(TestDb::sqlite().await).await;
    let sshd = Sshd::start(&shop.app, "acme", &["deploy"]);
    let home = temp_dir("ssh-cli-home");
    let cli = Engineer::logged_in(&shop, &home, &[("TMPDIR", home.as_os_str())]).await;
    let cli = |args: &[&str]| cli.command(args);
    let destination = format!("{}@127.0.0.1", sshd.user);
    let mut args = vec![
        "ssh",
        destination.as_str(),
        "--profile",
        "prod-shell",
        "--for",
        "30m",
        "--reason",
        "fix it",
        "--ticket",
        "INC-9",
        "--",
    ];
    let options = sshd.client_options();
    args.extend(options.iter().map(String::as_str));
    args.push("echo via-elevate-ssh");
    let running = cli(&args).output();
    let approve = async {
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let list: Value = shop
                .app
                .get_as(&shop.bob, "/api/v1/requests?reviewable=true")
                .await
                .json()
                .await
                .unwrap();
            if let Some(r) = list["requests"].as_array().and_then(|l| l.first()) {
                let id = r["id"].as_str().unwrap().to_owned();
                let (s, _) = shop.approve(&id).await;
                assert_eq!(s, StatusCode::OK);
                return id;
            }
        }
        panic!("elevate ssh filed no request");
    };
    let (out, id) = tokio::join!(running, approve);
    let out = out.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr} | {}", sshd.log_tail());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "via-elevate-ssh"
    );
    assert!(stderr.contains("waiting for approval"), "{stderr}");
    assert!(stderr.contains(&id), "{stderr}");
    // The ephemeral key lived in a private temp dir that is gone now.
    let left: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("elevate-ssh-"))
        .collect();
    assert!(left.is_empty(), "temporary key left behind");

    // A remote command's exit status is elevate ssh's.
    let mut args = vec!["ssh", destination.as_str(), "--profile", "prod-shell", "--"];
    args.extend(options.iter().map(String::as_str));
    args.push("exit 7");
    let out = cli(&args).output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elevate_ssh_loads_the_certificate_into_the_running_agent() {
    let shop = shop(TestDb::sqlite().await).await;
    let sshd = Sshd::start(&shop.app, "acme", &["deploy"]);
    let id = shop.granted("prod-shell").await;
    let home = temp_dir("ssh-agent-home");
    let sock = home.join("agent.sock");
    let _agent = Agent(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let cli = Engineer::logged_in(&shop, &home, &[("SSH_AUTH_SOCK", sock.as_os_str())]).await;
    let cli = |args: &[&str]| cli.command(args);
    let destination = format!("{}@127.0.0.1", sshd.user);
    let mut args = vec!["ssh", destination.as_str()];
    let options = sshd.client_options();
    args.push("--");
    args.extend(options.iter().map(String::as_str));
    args.push("echo agent-login");
    let out = cli(&args).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr} | {}", sshd.log_tail());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "agent-login");
    assert!(
        stderr.contains(&format!("using {id}")),
        "the active grant is reused: {stderr}"
    );
    assert!(stderr.contains("added to ssh-agent"), "{stderr}");
    let listed = Command::new("ssh-add")
        .arg("-l")
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&format!("elevate prod-shell {id}")) && listed.contains("ED25519-CERT"),
        "{listed}"
    );
}

/// A test's own ssh-agent, stopped even when the test fails.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_request_page_issues_and_offers_a_certificate_in_chromium() {
    let shop = shop(TestDb::sqlite().await).await;
    let id = shop.granted("prod-shell").await;
    let session = shop
        .app
        .session_for(&shop.user("alice@acme.example").await)
        .await;
    let (_, public) = user_key(&shop.dir, "ecdsa:256");
    let report = crate::browser::run_script(
        "certificate.mjs",
        vec![
            shop.app.base.clone(),
            id.clone(),
            session,
            public.display().to_string(),
        ],
    )
    .await;
    assert_eq!(report["error"], Value::Null, "{report}");
    assert_eq!(report["filledFromFile"], true, "{report}");
    assert_eq!(report["cspViolations"], json!([]), "{report}");
    assert_eq!(report["downloadName"], "id_ecdsa-cert.pub", "{report}");
    let downloaded = report["downloaded"].as_str().unwrap();
    assert!(
        downloaded.starts_with("ecdsa-sha2-nistp256-cert-v01@openssh.com "),
        "{report}"
    );
    assert!(
        report["sshCommand"]
            .as_str()
            .unwrap()
            .contains("CertificateFile=~/.ssh/id_ecdsa-cert.pub deploy@HOST"),
        "{report}"
    );
    // What the browser got is a certificate for the uploaded key, recorded with the request.
    let cert = shop.dir.join("downloaded-cert.pub");
    std::fs::write(&cert, downloaded).unwrap();
    let text = describe_cert(&cert);
    let fp = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&public)
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&fp.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(text.contains(&fp), "{text} {fp}");
    assert!(text.contains(&id));
}

/// Who gets a certificate and which keys, on both stores; refusals are audited; revocation puts
/// every serial of the grant on the KRL and nothing else.
async fn issuing_is_only_for_the_requesters_active_ssh_grant(db: TestDb) {
    let shop = shop(db).await;
    let id = shop.granted("prod-shell").await;
    let ed = |kind: &str| std::fs::read_to_string(user_key(&shop.dir, kind).1).unwrap();
    let (s, body) = shop.issue(&shop.alice, &id, "ssh-ed25519 garbage").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, body) = shop.issue(&shop.alice, &id, &ed("rsa:2048")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    crate::helpers::assert_error_says(&body, "3072");
    let (s, _) = shop.issue(&shop.bob, &id, &ed("ed25519")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "an approver is not the requester");
    let (s, _) = shop
        .issue(
            &shop.alice,
            &uuid::Uuid::now_v7().to_string(),
            &ed("ed25519"),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let db_id = shop.granted("db-only").await;
    let (s, body) = shop.issue(&shop.alice, &db_id, &ed("ed25519")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    crate::helpers::assert_error_says(&body, "no SSH");
    let (s, pending) = shop
        .post(
            &shop.alice,
            "/api/v1/requests",
            json!({"profile": "prod-shell", "justification": "x", "ticket": "INC-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = shop
        .issue(&shop.alice, pending["id"].as_str().unwrap(), &ed("ed25519"))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "a pending request gets nothing");
    let refused = shop
        .actions()
        .await
        .into_iter()
        .filter(|(a, _)| a == "ssh.certificate_refused")
        .count();
    // Bob's token has no `request` scope: his 403 comes from the token check, before issuing.
    assert_eq!(refused, 2, "both 409s are audited");

    let mut certs = Vec::new();
    for kind in ["ed25519", "ecdsa:384", "rsa:3072", "ed25519"] {
        let (s, issued) = shop.issue(&shop.alice, &id, &ed(kind)).await;
        assert_eq!(s, StatusCode::CREATED, "{kind}: {issued}");
        let path = shop
            .dir
            .join(format!("{}-cert.pub", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, issued["certificate"].as_str().unwrap()).unwrap();
        certs.push((issued, path));
    }
    assert_eq!(certs[1].0["file_name"], "id_ecdsa-cert.pub");
    assert_eq!(certs[2].0["file_name"], "id_rsa-cert.pub");
    let mut serials: Vec<u64> = certs
        .iter()
        .map(|(c, _)| c["serial"].as_u64().unwrap())
        .collect();
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(serials.len(), 4, "unique serials");
    let other = shop.granted("prod-shell").await;
    let (_, _, kept) = shop.certified(&other).await;

    shop.revoke(&id).await;
    let krl = shop
        .app
        .client
        .get(shop.app.url("/t/acme/ssh/krl"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(elevate::ssh::krl::looks_valid(&krl));
    let krl_path = shop.dir.join("revoked.krl");
    std::fs::write(&krl_path, &krl).unwrap();
    for (_, path) in &certs {
        assert!(krl_revokes(&krl_path, path));
    }
    let kept_path = shop.dir.join("kept-cert.pub");
    std::fs::write(&kept_path, kept["certificate"].as_str().unwrap()).unwrap();
    assert!(
        !krl_revokes(&krl_path, &kept_path),
        "another grant's certificate stays valid"
    );
    let unknown = shop
        .app
        .client
        .get(shop.app.url("/t/nobody/ssh/user-ca.pub"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

crate::on_both_backends!(issuing_is_only_for_the_requesters_active_ssh_grant);
