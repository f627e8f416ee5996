//! SSH sessions through `elevate host session` as a real sshd's `ForceCommand`, logged in with
//! the real `ssh` client: recorded, cut when the grant is revoked or ends, commands and scp
//! unchanged, refused when elevate cannot be reached, and a killed helper still leaves its
//! recording and an audit event.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fixtures::{Shop, elevate, shop_with};
use crate::helpers::{TestApp, TestDb, assert_contains};
use crate::sshd::{BIN, Sshd};

/// prod-shell with a terminal, recording what is typed too.
const POLICY: &str = r#"
[[profile]]
name = "prod-shell"
max_duration = "4h"
requesters = ["engineering"]
approvers = ["sre"]
[profile.ssh]
principals = ["deploy"]
extensions = ["permit-pty"]
record_input = true

[[profile]]
name = "short-cert"
max_duration = "4h"
requesters = ["engineering"]
approvers = ["sre"]
[profile.ssh]
principals = ["deploy"]
extensions = ["permit-pty"]
cert_ttl = "1m"
"#;

/// An operator command (`elevate admin ...`, `elevate audit ...`) on the test store.
fn operator(shop: &Shop, command: &str) -> std::process::Output {
    elevate(&shop.dir)
        .args(command.split(' '))
        .arg("--database")
        .arg(&shop.app.db.url)
        .output()
        .unwrap()
}

/// `elevate admin host add` against the test store: the host token, in a file the helper reads.
fn add_host(shop: &Shop, name: &str) -> PathBuf {
    let out = operator(
        shop,
        &format!("admin host add --tenant {} {name}", shop.tenant.slug),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("elh_") && stdout.lines().count() == 1,
        "{stdout:?}"
    );
    let file = shop.dir.join(format!("{name}.token"));
    std::fs::write(&file, stdout).unwrap();
    file
}

/// sshd running every login through the helper, which talks to `server`.
fn sshd_with_helper(shop: &Shop, token: &Path, server: &str) -> Sshd {
    let ca = shop.app.db.dir.join(elevate::web::tls::DEV_CERT_FILE);
    let force = format!(
        "ExposeAuthInfo yes\n\
         Subsystem sftp /usr/lib/openssh/sftp-server\n\
         ForceCommand {BIN} host session --server {server} --tenant {} --token-file {} --ca-cert {} --check-every 1",
        shop.tenant.slug,
        token.display(),
        ca.display()
    );
    Sshd::start_with(&shop.app, &shop.tenant.slug, &["deploy"], &force)
}

fn ssh_args(sshd: &Sshd, key: &Path, cert: &Path) -> Vec<String> {
    let mut args = sshd.client_options();
    args.extend(
        [
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-i",
            &key.display().to_string(),
            "-o",
            &format!("CertificateFile={}", cert.display()),
        ]
        .map(str::to_owned),
    );
    args
}

/// An `ssh -tt` session whose output is collected as it comes.
struct Interactive {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Interactive {
    fn start(sshd: &Sshd, key: &Path, cert: &Path) -> Self {
        let mut child = Command::new("ssh")
            .arg("-tt")
            .args(ssh_args(sshd, key, cert))
            .arg(format!("{}@127.0.0.1", sshd.user))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        for mut stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        Self { child, stdin, out }
    }

    fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits up to `within` for `needle` in the output.
    async fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Waits up to `within` for ssh to exit; how long it took.
    async fn wait_exit(&mut self, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.child.try_wait().unwrap().is_some() {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sessions(shop: &Shop, token: &str, id: &str) -> Vec<Value> {
    let (s, body) = shop
        .app
        .api(token)
        .get(&format!("/api/v1/requests/{id}/sessions"))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["sessions"].as_array().unwrap().clone()
}

async fn recording(shop: &Shop, token: &str, session: &str) -> (StatusCode, String) {
    let res = shop
        .app
        .browser()
        .get(
            shop.app
                .url(&format!("/api/v1/sessions/{session}/recording")),
        )
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

/// The recording's events of `code` ("o", "i"), joined.
fn events(cast: &str, code: &str) -> String {
    cast.lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e[1] == code)
        .map(|e| e[2].as_str().unwrap().to_owned())
        .collect()
}

async fn session_shop(db: TestDb) -> Shop {
    shop_with(TestApp::spawn(db).await, "acme", POLICY).await
}

/// A shop with host `host` behind an sshd that runs the helper, and an active prod-shell grant
/// with a certificate for a fresh key.
struct Staged {
    shop: Shop,
    sshd: Sshd,
    id: String,
    key: PathBuf,
    cert: PathBuf,
}

async fn staged(db: TestDb, host: &str) -> Staged {
    let shop = session_shop(db).await;
    let token = add_host(&shop, host);
    let sshd = sshd_with_helper(&shop, &token, &shop.app.base);
    let id = shop.granted("prod-shell").await;
    let (key, cert, _) = shop.certified(&id).await;
    Staged {
        shop,
        sshd,
        id,
        key,
        cert,
    }
}

impl Staged {
    /// An `ssh -tt` session that ran `line` and printed `marker`.
    async fn shell(&self, line: &str, marker: &str) -> Interactive {
        let mut ssh = Interactive::start(&self.sshd, &self.key, &self.cert);
        ssh.send(line);
        assert!(
            ssh.wait_for(marker, Duration::from_secs(20)).await,
            "no {marker}: {} | {}",
            ssh.output(),
            self.sshd.log_tail()
        );
        ssh
    }
}

async fn an_interactive_session_is_recorded_and_cut_when_its_grant_is_revoked(db: TestDb) {
    let st = staged(db, "web-1").await;
    let mut ssh = st.shell("echo MARK-$((40+2))\n", "MARK-42").await;
    let (shop, id) = (&st.shop, &st.id);
    let listed = sessions(shop, &shop.alice, id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["host"], "web-1");
    assert_eq!(listed[0]["pty"], true);
    assert!(listed[0]["ended_at"].is_null());

    shop.revoke(id).await;
    let took = ssh
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("the session outlived its revoked grant: {}", ssh.output()));
    eprintln!("revocation ended the session in {took:?}");
    assert!(
        ssh.output().contains("was revoked"),
        "the user is told why: {}",
        ssh.output()
    );

    let listed = sessions(shop, &shop.bob, id).await;
    assert_eq!(listed[0]["end_reason"], "revoked", "{listed:?}");
    let session = listed[0]["id"].as_str().unwrap();
    let (s, cast) = recording(shop, &shop.bob, session).await;
    assert_eq!(s, StatusCode::OK, "{cast}");
    let header: Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(events(&cast, "o").contains("MARK-42"), "{cast}");
    assert!(events(&cast, "i").contains("echo MARK-$((40+2))"), "{cast}");
    assert!(events(&cast, "o").contains("was revoked"), "{cast}");
    // The end event carries the recording's hash.
    let actions = shop.actions().await;
    let ended = actions
        .iter()
        .find(|(a, _)| a == "session.ended")
        .map(|(_, d)| d.clone())
        .unwrap();
    use sha2::Digest;
    assert_eq!(
        ended["recording_sha256"],
        hex::encode(sha2::Sha256::digest(cast.as_bytes()))
    );
    assert!(actions.iter().any(|(a, _)| a == "session.started"));
    assert!(actions.iter().any(|(a, _)| a == "session.recording_viewed"));
}

async fn commands_keep_their_output_and_exit_status_and_scp_works(db: TestDb) {
    let st = staged(db, "web-2").await;
    let (shop, sshd, id, key, cert) = (&st.shop, &st.sshd, &st.id, &st.key, &st.cert);

    let out = sshd.login(
        key,
        cert,
        &sshd.user,
        "echo out-$((1+1)); echo err >&2; exit 3",
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out-2\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // Output larger than a request body goes up in several chunks, all of it.
    let out = sshd.login(
        key,
        cert,
        &sshd.user,
        "head -c 600000 /dev/zero | tr '\\0' a",
    );
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 600_000);

    // Input reaches the command and its end closes the command's stdin.
    let mut cat = Command::new("ssh")
        .args(ssh_args(sshd, key, cert))
        .arg(format!("{}@127.0.0.1", sshd.user))
        .arg("wc -c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    cat.stdin
        .take()
        .unwrap()
        .write_all(&[b'x'; 100_000])
        .unwrap();
    let counted = cat.wait_with_output().unwrap();
    assert!(counted.status.success());
    assert_eq!(String::from_utf8_lossy(&counted.stdout).trim(), "100000");

    let src = shop.dir.join("payload.bin");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &payload).unwrap();
    let dest = shop.dir.join("copied.bin");
    let mut scp = sshd.client_options();
    // scp takes -P for the port.
    if let Some(i) = scp.iter().position(|a| a == "-p") {
        scp[i] = "-P".into();
    }
    let out = Command::new("scp")
        .args(&scp)
        .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-i"])
        .arg(key)
        .arg("-o")
        .arg(format!("CertificateFile={}", cert.display()))
        .arg(&src)
        .arg(format!("{}@127.0.0.1:{}", sshd.user, dest.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scp: {} | {}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log_tail()
    );
    assert_eq!(std::fs::read(&dest).unwrap(), payload);

    let listed = sessions(shop, &shop.alice, id).await;
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(listed[1]["bytes"].as_i64().unwrap() > 600_000, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|s| s["end_reason"] == "exit" && s["pty"] == false),
        "{listed:?}"
    );
    let first = listed[0]["id"].as_str().unwrap();
    let (_, cast) = recording(shop, &shop.alice, first).await;
    assert!(events(&cast, "o").contains("out-2"), "{cast}");
    let transfer = listed[3]["id"].as_str().unwrap();
    let (_, cast) = recording(shop, &shop.alice, transfer).await;
    assert!(events(&cast, "o").contains("not recorded"), "{cast}");
    assert!(
        cast.len() < 2_000,
        "a transfer's data is not recorded: {} bytes",
        cast.len()
    );
}

async fn a_short_grant_ends_its_session_at_its_end(db: TestDb) {
    let shop = session_shop(db).await;
    let token = add_host(&shop, "web-3");
    let sshd = sshd_with_helper(&shop, &token, &shop.app.base);
    let (s, r) = shop
        .post(
            &shop.alice,
            "/api/v1/requests",
            json!({"profile": "prod-shell", "duration": "1m", "justification": "quick look"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    let (s, r) = shop.approve(&id).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let not_after = time::OffsetDateTime::parse(
        r["grant"]["not_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let (key, cert, issued) = shop.certified(&id).await;
    assert_eq!(issued["valid_before"], r["grant"]["not_after"]);

    let mut ssh = Interactive::start(&sshd, &key, &cert);
    ssh.send("echo UP-$((1+1))\n");
    assert!(
        ssh.wait_for("UP-2", Duration::from_secs(20)).await,
        "{}",
        ssh.output()
    );
    ssh.wait_exit(Duration::from_secs(90))
        .await
        .unwrap_or_else(|| panic!("the session outlived its grant: {}", ssh.output()));
    let ended_at = elevate::clock::Clock::now(&elevate::clock::SystemClock);
    let late = (ended_at - not_after).as_seconds_f64();
    eprintln!("the session ended {late:.1}s after the grant's end");
    assert!(
        (-1.0..10.0).contains(&late),
        "ended {late}s after the grant's end"
    );
    assert!(ssh.output().contains("the grant ended"), "{}", ssh.output());
    let listed = sessions(&shop, &shop.alice, &id).await;
    assert_eq!(listed[0]["end_reason"], "expired", "{listed:?}");
}

async fn without_elevate_or_with_a_revoked_grant_there_is_no_session(db: TestDb) {
    let shop = session_shop(db).await;
    let token = add_host(&shop, "web-4");
    let down = sshd_with_helper(&shop, &token, "https://127.0.0.1:1");
    let id = shop.granted("prod-shell").await;
    let (key, cert, _) = shop.certified(&id).await;
    let out = down.login(&key, &cert, &down.user, "echo should-not-run");
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("should-not-run"));
    assert_contains(&out.stderr, "cannot reach elevate");

    // The KRL on the host is still the old one, so sshd lets the login in: the helper refuses.
    let up = sshd_with_helper(&shop, &token, &shop.app.base);
    shop.revoke(&id).await;
    let out = up.login(&key, &cert, &up.user, "echo should-not-run");
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("should-not-run"));
    assert_contains(&out.stderr, "was revoked");
    let actions = shop.actions().await;
    let refused: Vec<_> = actions
        .iter()
        .filter(|(a, _)| a == "session.refused")
        .collect();
    assert_eq!(refused.len(), 1, "{actions:?}");
    assert!(refused[0].1["reason"].as_str().unwrap().contains("revoked"));
}

async fn a_killed_helper_leaves_its_recording_and_an_audit_event(db: TestDb) {
    let st = staged(db, "web-5").await;
    let (shop, id) = (&st.shop, &st.id);
    // The shell's parent is the helper.
    let mut ssh = st
        .shell("echo HELPER=$PPID; echo SAVED-$((6*7))\n", "SAVED-42")
        .await;
    let helper: i32 = ssh
        .output()
        .split("HELPER=")
        .skip(1)
        .find_map(|s| {
            let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no helper pid in {}", ssh.output()));
    // Wait until the marker has been uploaded, then kill the helper outright.
    let session = sessions(shop, &shop.alice, id).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !recording(shop, &shop.alice, &session)
        .await
        .1
        .contains("SAVED-42")
    {
        assert!(
            Instant::now() < deadline,
            "the recording never got the marker"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        Command::new("kill")
            .args(["-9", &helper.to_string()])
            .status()
            .unwrap()
            .success()
    );
    ssh.wait_exit(Duration::from_secs(10))
        .await
        .expect("ssh ends with its helper");

    // elevate notices the silence and ends the session with what it has.
    shop.app.clock.advance(time::Duration::seconds(60));
    elevate::reaper::run_once(
        shop.app.store(),
        &(shop.app.clock.clone() as _),
        "https://x",
    )
    .await
    .unwrap();
    let listed = sessions(shop, &shop.alice, id).await;
    assert_eq!(listed[0]["end_reason"], "helper_lost", "{listed:?}");
    let (_, cast) = recording(shop, &shop.alice, &session).await;
    assert!(events(&cast, "o").contains("SAVED-42"), "{cast}");
    let actions = shop.actions().await;
    let ended = actions.iter().find(|(a, _)| a == "session.ended").unwrap();
    assert_eq!(ended.1["reason"], "helper_lost");

    // `audit verify` checks the kept recording against its end event, and notices a change.
    let verify = || operator(shop, "audit verify --tenant acme");
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains(&out.stdout, "1 session recording(s) match");
    shop.app
        .db
        .owner_exec("UPDATE session_chunks SET data = data || data")
        .await;
    let out = verify();
    assert_eq!(out.status.code(), Some(1));
    assert_contains(
        &out.stderr,
        &format!("differ from the hash in their session.ended event: {session}"),
    );
}

async fn a_host_token_is_for_host_calls_only(db: TestDb) {
    let shop = session_shop(db).await;
    let token_file = add_host(&shop, "web-6");
    let host = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    let id = shop.granted("prod-shell").await;
    let api = shop.app.api(&host);
    for path in [
        "/api/v1/me",
        &format!("/api/v1/requests/{id}"),
        &format!("/api/v1/requests/{id}/sessions"),
    ] {
        let (s, body) = api.get(path).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
    let (s, _) = api
        .post(
            &format!("/api/v1/requests/{id}/ssh-certificate"),
            json!({"public_key": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // A person's token opens no host call; a host token works only for its own tenant.
    let opening = json!({"certificate": "x", "principal": "root", "pty": false});
    let (s, _) = shop
        .app
        .api(&shop.alice)
        .post("/api/host/v1/acme/sessions", opening.clone())
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = api
        .post("/api/host/v1/other/sessions", opening.clone())
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The right token with a certificate that is not one: refused, and audited.
    let (s, body) = api
        .post("/api/host/v1/acme/sessions", opening.clone())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    // A session of this host needs the session's key too.
    let (s, _) = api
        .get(&format!(
            "/api/host/v1/acme/sessions/{}",
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Removed, the host is refused.
    let out = operator(&shop, "admin host remove --tenant acme web-6");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _) = api.post("/api/host/v1/acme/sessions", opening).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let list = operator(&shop, "admin host list --tenant acme");
    assert_contains(&list.stdout, "no hosts");
}

crate::on_both_backends_threaded!(
    an_interactive_session_is_recorded_and_cut_when_its_grant_is_revoked,
    commands_keep_their_output_and_exit_status_and_scp_works,
    a_short_grant_ends_its_session_at_its_end,
    without_elevate_or_with_a_revoked_grant_there_is_no_session,
    a_killed_helper_leaves_its_recording_and_an_audit_event,
    a_host_token_is_for_host_calls_only,
    elevate_ssh_through_the_helper_is_recorded,
    lockdown_ends_sessions_and_recordings_are_private_and_expire,
);

/// Alice's `elevate ssh` (as in the demo) runs through the helper: the command's output comes
/// back and the session is recorded on her request.
async fn elevate_ssh_through_the_helper_is_recorded(db: TestDb) {
    let shop = session_shop(db).await;
    let token = add_host(&shop, "web-7");
    let sshd = sshd_with_helper(&shop, &token, &shop.app.base);
    let id = shop.granted("prod-shell").await;
    let home = crate::helpers::temp_dir("ssh-cli-home");
    let cli =
        crate::fixtures::Engineer::logged_in(&shop, &home, &[("TMPDIR", home.as_os_str())]).await;
    let destination = format!("{}@127.0.0.1", sshd.user);
    let mut args = vec!["ssh", destination.as_str(), "--profile", "prod-shell", "--"];
    let options = sshd.client_options();
    args.extend(options.iter().map(String::as_str));
    args.push("echo via-helper-$((2+3))");
    let out = cli.command(&args).output().await.unwrap();
    assert!(
        out.status.success(),
        "{} | {}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log_tail()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "via-helper-5");
    let listed = sessions(&shop, &shop.alice, &id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let (_, cast) = recording(&shop, &shop.bob, listed[0]["id"].as_str().unwrap()).await;
    assert!(events(&cast, "o").contains("via-helper-5"), "{cast}");
}

/// Without an sshd, through the host protocol: a lockdown ends an open session, only people who
/// may see the request read its sessions, and recordings go after the tenant's retention
/// (audited; `audit verify` counts them as deleted, not altered).
async fn lockdown_ends_sessions_and_recordings_are_private_and_expire(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let acme = crate::helpers::acme(&app).await;
    let id = acme.alice_api.request("prod-shell", "1h").await;
    acme.bob_api.approve(&id).await;
    let session =
        crate::fixtures::HostSession::open(&app, &acme.tenant, "web-8", &acme.alice_api, &id).await;
    assert_eq!(
        session.record(0, "{\"version\":2}\n").await,
        StatusCode::NO_CONTENT
    );
    // A retried chunk is harmless; a gap is refused.
    assert_eq!(
        session.record(0, "{\"version\":2}\n").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        session.record(5, "[1,\"o\",\"x\"]\n").await,
        StatusCode::CONFLICT
    );
    assert_eq!(session.check().await["active"], true);

    // Another requester sees neither the sessions nor the recording.
    let (store, clock) = (app.store(), app.clock.as_ref());
    let carol = crate::helpers::seed_user(
        store,
        clock,
        &acme.tenant,
        "carol@acme.example",
        &[elevate::model::Role::Requester],
        &["engineering"],
    )
    .await;
    let carol = app.as_user(&carol).await;
    let (s, _) = carol.get(&format!("/api/v1/requests/{id}/sessions")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = carol
        .get(&format!("/api/v1/sessions/{}/recording", session.id))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let ctx = crate::helpers::ctx(clock);
    elevate::admin::lockdown(store, &ctx, None, &acme.tenant, None, "incident 7")
        .await
        .unwrap();
    let verdict = session.check().await;
    assert_eq!(verdict["active"], false, "{verdict}");
    assert_eq!(verdict["end_reason"], "lockdown");
    assert!(
        verdict["message"].as_str().unwrap().contains("incident 7"),
        "{verdict}"
    );
    assert_eq!(session.close("lockdown").await, StatusCode::NO_CONTENT);
    assert_eq!(session.record(1, "late\n").await, StatusCode::CONFLICT);

    elevate::admin::hosts::set_recording_retention(store, &ctx, &acme.tenant, 1)
        .await
        .unwrap();
    app.clock.advance(time::Duration::days(2));
    elevate::reaper::run_once(store, &(app.clock.clone() as _), "https://x")
        .await
        .unwrap();
    let (s, body) = acme
        .bob_api
        .get(&format!("/api/v1/requests/{id}/sessions"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["sessions"][0]["recording_kept"], false, "{body}");
    assert_eq!(body["sessions"][0]["end_reason"], "lockdown", "{body}");
    let (s, body) = acme
        .bob_api
        .get(&format!("/api/v1/sessions/{}/recording", session.id))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retention"),
        "{body}"
    );
    let actions = app.actions(&acme.tenant).await;
    assert!(
        actions
            .iter()
            .any(|(a, d)| a == "session.recording_deleted" && d["retention_days"] == 1),
        "{actions:?}"
    );
    let check = elevate::broker::sessions::verify_recordings(store, &acme.tenant)
        .await
        .unwrap();
    assert_eq!(
        (check.checked, check.deleted, check.altered.len()),
        (0, 1, 0)
    );
}

/// A TCP relay to the test server that can be cut, for "elevate becomes unreachable".
struct Relay {
    port: u16,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn to(app: &TestApp) -> Relay {
        let target = app.base.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let held = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                held.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Relay { port, tasks }
    }

    /// Stops listening and drops every relayed connection.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// While elevate answers, a session outlives its certificate (it ends with the grant); once
/// elevate cannot be reached, it ends at the certificate's end, and the user is told why.
async fn unreachable_elevate_ends_a_session_at_its_certificates_end(db: TestDb) {
    let shop = session_shop(db).await;
    let token = add_host(&shop, "web-9");
    let relay = Relay::to(&shop.app).await;
    let sshd = sshd_with_helper(&shop, &token, &format!("https://localhost:{}", relay.port));
    let id = shop.granted("short-cert").await;
    let (key, cert, issued) = shop.certified(&id).await;
    let valid_before = time::OffsetDateTime::parse(
        issued["valid_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let mut ssh = Interactive::start(&sshd, &key, &cert);
    ssh.send("echo IN-$((1+1))\n");
    assert!(
        ssh.wait_for("IN-2", Duration::from_secs(20)).await,
        "{}",
        ssh.output()
    );
    // Past the certificate's end, the session goes on: the grant has an hour left.
    let now = || elevate::clock::Clock::now(&elevate::clock::SystemClock);
    let past = (valid_before - now()).as_seconds_f64() + 3.0;
    tokio::time::sleep(Duration::from_secs_f64(past.max(0.0))).await;
    ssh.send("echo STILL-$((2+2))\n");
    assert!(
        ssh.wait_for("STILL-4", Duration::from_secs(10)).await,
        "{}",
        ssh.output()
    );
    relay.cut();
    let took = ssh
        .wait_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| {
            panic!(
                "the session outlived its certificate with elevate unreachable: {}",
                ssh.output()
            )
        });
    eprintln!("unreachable: the session ended {took:?} after the cut");
    assert!(
        ssh.output().contains("cannot be reached"),
        "{}",
        ssh.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_elevate_ends_a_session_at_its_certificates_end_sqlite() {
    unreachable_elevate_ends_a_session_at_its_certificates_end(TestDb::sqlite().await).await
}
