//! `elevate bench ssh`: how fast certificates are made, in one run — raw Ed25519 signing, the
//! HTTP issuance endpoint with its audit record at 1/8/64 concurrent clients (a real server on
//! loopback over a fresh SQLite store), and `ssh-keygen -s` started once per certificate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::admin;
use crate::audit::Ctx;
use crate::audit::{Actor, Origin};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::model::{KeyPurpose, Role};
use crate::policy::SshGrant;
use crate::ssh::cert::{self, CertSpec};
use crate::store::Store;
use crate::web::{self, AppState};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Certificate issuance: raw signing vs. the HTTP endpoint vs. ssh-keygen.
    Ssh(SshBench),
    /// Offline audit verification: writes a signed export of N events, then verifies it.
    Audit(super::audit_bench::AuditBench),
    /// Database logins: raw CREATE/DROP ROLE vs. elevate's issue + cleanup on one Postgres.
    Db(super::bench_db::DbBench),
    /// The whole flow (request, approve, certificate) at 1/16/64 clients vs. the empty handler.
    Workflow(super::bench_workflow::WorkflowBench),
    /// Many grants ending together: how late each moves to `expired`, with the real reaper.
    Expiry(super::bench_expiry::ExpiryBench),
    /// Pages and probes at 100 vs. 100,000 requests (1,000,000 audit events), and cold start.
    Scale(super::bench_scale::ScaleBench),
}

#[derive(Debug, Args)]
pub struct SshBench {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// How many certificates `ssh-keygen -s` signs.
    #[arg(long, default_value_t = 100)]
    keygen_runs: u32,
}

const POLICY: &str = r#"
[[profile]]
name = "bench-shell"
max_duration = "24h"
default_duration = "24h"
requesters = ["engineering"]
approvers = ["sre"]
require_justification = false
auto_approve_groups = ["engineering"]
[profile.ssh]
principals = ["deploy"]
"#;

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    let args = match command {
        BenchCommand::Ssh(args) => args,
        BenchCommand::Audit(args) => return super::audit_bench::run(args),
        BenchCommand::Db(args) => return super::bench_db::run(args).await,
        BenchCommand::Workflow(args) => return super::bench_workflow::run(args).await,
        BenchCommand::Expiry(args) => return super::bench_expiry::run(args).await,
        BenchCommand::Scale(args) => return super::bench_scale::run(args).await,
    };
    let window = Duration::from_secs(args.seconds.max(1));
    let raw = raw_signing(window)?;
    println!("raw Ed25519 certificate signing:  {raw:>9.0} certificates/s");
    let http = http_issuance(window).await?;
    let keygen = ssh_keygen(args.keygen_runs)?;
    println!("ssh-keygen -s, one process each:  {keygen:>9.0} certificates/s");
    println!();
    println!("ratios:");
    if let Some(one) = http.first() {
        println!(
            "  raw signing / HTTP (1 client)       {:>7.1}x",
            raw / one.rate
        );
    }
    if let Some(best) = http.iter().map(|r| r.rate).reduce(f64::max) {
        println!(
            "  HTTP (best) / ssh-keygen            {:>7.1}x",
            best / keygen
        );
    }
    println!(
        "  raw signing / ssh-keygen            {:>7.1}x",
        raw / keygen
    );
    Ok(())
}

fn raw_signing(window: Duration) -> anyhow::Result<f64> {
    let ca = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    let user = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    let grant = SshGrant {
        principals: vec!["deploy".into()],
        extensions: vec!["permit-pty".into()],
        force_command: None,
        source_address: vec![],
        cert_ttl_secs: 3600,
        record_input: false,
    };
    let now = SystemClock.now();
    let request = uuid::Uuid::now_v7();
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < window {
        let spec = CertSpec {
            serial: n + 1,
            key_id: cert::key_id("bench", "bench@example.com", request),
            request,
            ticket: None,
            grant: &grant,
            valid_after: now,
            valid_before: now + time::Duration::hours(1),
        };
        cert::sign(&ca, user.public_key(), &spec)?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

struct Level {
    rate: f64,
}

pub(super) fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn http_issuance(window: Duration) -> anyhow::Result<Vec<Level>> {
    let dir = std::env::temp_dir().join(format!("elevate-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let result = http_issuance_in(&dir, window).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Where a benchmark runs: the store `--database` names, or a fresh SQLite file in a scratch
/// directory that is removed when this is dropped.
pub(super) struct BenchStore {
    pub url: String,
    pub scratch: std::path::PathBuf,
}

impl BenchStore {
    pub fn new(database: Option<&str>) -> anyhow::Result<Self> {
        let scratch =
            std::env::temp_dir().join(format!("elevate-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&scratch)?;
        let url = database.map_or_else(
            || format!("sqlite:{}", scratch.join("bench.db").display()),
            str::to_owned,
        );
        Ok(Self { url, scratch })
    }
}

impl Drop for BenchStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// A fresh tenant under `policy` and an elevate server for it on loopback (plain HTTP): what
/// the HTTP benchmarks run against.
pub(super) struct BenchServer {
    pub store: Store,
    pub tenant: crate::model::Tenant,
    pub base: String,
    pub ctx: Ctx,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl BenchServer {
    pub async fn start(store: Store, slug: &str, policy: &str) -> anyhow::Result<Self> {
        Self::start_with(store, slug, policy, Arc::new(MasterKey::generate()?)).await
    }

    /// [`Self::start`] with the master key given (one kept in a file, for a later `serve`).
    pub async fn start_with(
        store: Store,
        slug: &str,
        policy: &str,
        master: Arc<MasterKey>,
    ) -> anyhow::Result<Self> {
        let clock: SharedClock = Arc::new(SystemClock);
        let ctx = Ctx {
            actor: Actor::System,
            origin: Origin::default(),
            now: clock.now(),
        };
        let tenant = admin::create_tenant(&store, &master, &ctx, slug, "bench").await?;
        crate::broker::policy::apply(&store, &ctx, &tenant, policy).await?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let config = Config {
            public_url: base.clone(),
            insecure_http: true,
            ..Config::default()
        };
        let state = AppState::new(store.clone(), clock, master, config)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(web::serve(listener, web::router(state), None, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            store,
            tenant,
            base,
            ctx,
            stop,
        })
    }

    /// A person of the tenant in `group`, and a token with every scope `role` allows.
    pub async fn person(&self, email: &str, role: Role, group: &str) -> anyhow::Result<String> {
        Ok(self.member(email, role, group).await?.1)
    }

    /// [`Self::person`], with the person too.
    pub async fn member(
        &self,
        email: &str,
        role: Role,
        group: &str,
    ) -> anyhow::Result<(crate::model::User, String)> {
        let user = admin::create_user(
            &self.store,
            &self.ctx,
            &self.tenant,
            email,
            None,
            &[role],
            &[group.to_owned()],
        )
        .await?;
        let token = admin::create_token(
            &self.store,
            &self.ctx,
            &user,
            "bench",
            &[],
            admin::DEFAULT_TOKEN_TTL,
        )
        .await?;
        Ok((user, token.secret.expose().to_owned()))
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.store.close().await;
    }
}

async fn http_issuance_in(dir: &std::path::Path, window: Duration) -> anyhow::Result<Vec<Level>> {
    let store = Store::connect(&format!("sqlite:{}", dir.join("bench.db").display())).await?;
    store.migrate().await?;
    let server = BenchServer::start(store, "bench", POLICY).await?;
    let token = server
        .person("bench@example.com", Role::Requester, "engineering")
        .await?;
    {
        let mut tx = server.store.tenant(server.tenant.tenant_id).await?;
        tx.active_ca_key(KeyPurpose::SshUserCa)
            .await?
            .context("no CA")?;
        tx.commit().await?;
    }
    let base = server.base.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()?;
    let created: serde_json::Value = http
        .post(format!("{base}/api/v1/requests"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"profile": "bench-shell", "duration": "24h"}))
        .send()
        .await?
        .json()
        .await?;
    if created["state"] != "active" {
        bail!("the benchmark grant did not activate: {created}");
    }
    let url = format!(
        "{base}/api/v1/requests/{}/ssh-certificate",
        created["id"].as_str().unwrap_or_default()
    );
    let public = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?
        .public_key()
        .to_openssh()?;
    let body = Arc::new(serde_json::json!({ "public_key": public }));

    // Counted on an untimed pass, as `bench workflow` counts a flow's.
    let per_issue =
        super::statement_count::per_call(COUNTED, || issue(&http, &url, &token, &body)).await?;

    println!(
        "HTTP issuance over loopback (SQLite store, audited; {}s each; {per_issue:.1} statements each):",
        window.as_secs()
    );
    let mut levels = Vec::new();
    for clients in [1usize, 8, 64] {
        let deadline = Instant::now() + window;
        let start = Instant::now();
        let open_before = server.store.write_transactions_open();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (http, url, token, body) = (http.clone(), url.clone(), token.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    issue(&http, &url, &token, &body).await?;
                    latencies.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        let elapsed = start.elapsed().as_secs_f64();
        all.sort_unstable();
        let rate = all.len() as f64 / elapsed;
        let open = (server.store.write_transactions_open() - open_before).as_secs_f64();
        println!(
            "  {clients:>2} client(s): {rate:>8.0} certificates/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} issued)",
            percentile(&all, 0.50).as_secs_f64() * 1000.0,
            percentile(&all, 0.99).as_secs_f64() * 1000.0,
            all.len()
        );
        // The store's one writer (SQLite): the share of the window a write transaction held it.
        println!(
            "             write transactions held the writer {:>5.1}% of the window, {:>6.3} ms each",
            100.0 * open / elapsed,
            1000.0 * open / all.len().max(1) as f64
        );
        let raw_reads = super::bench_workflow::raw(
            &server.store,
            clients,
            window,
            super::bench_workflow::Raw::Read,
        )
        .await?;
        println!(
            "             raw reads of the store {:>8.0}/s: issuance if its statements were all \
             it cost {:>7.0}/s; its statements are {:>5.1}% of raw reads",
            raw_reads.rate,
            raw_reads.rate / per_issue.max(1.0),
            100.0 * rate * per_issue / raw_reads.rate.max(1.0)
        );
        levels.push(Level { rate });
    }
    server.stop().await;
    Ok(levels)
}

/// One certificate over HTTP.
async fn issue(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let res = http.post(url).bearer_auth(token).json(body).send().await?;
    let status = res.status();
    res.bytes().await?;
    if status != reqwest::StatusCode::CREATED {
        anyhow::bail!("issuance answered HTTP {status}");
    }
    Ok(())
}

/// Issuances counted for their statements before the timed runs.
const COUNTED: u32 = 20;

fn ssh_keygen(runs: u32) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir().join(format!(
        "elevate-bench-keygen-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    let ca = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    let ca_path = dir.join("ca");
    crate::files::write_private(&ca_path, ca.to_openssh(LineEnding::LF)?.as_bytes())?;
    let user = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    let user_path = dir.join("user.pub");
    std::fs::write(&user_path, user.public_key().to_openssh()?)?;
    let start = Instant::now();
    for serial in 1..=runs.max(1) {
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(&ca_path)
            .args([
                "-I",
                "bench",
                "-n",
                "deploy",
                "-V",
                "-1m:+1h",
                "-z",
                &serial.to_string(),
            ])
            .arg(&user_path)
            .status()
            .context("running ssh-keygen (is OpenSSH installed?)")?;
        if !status.success() {
            bail!("ssh-keygen -s failed");
        }
    }
    let rate = f64::from(runs.max(1)) / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rate)
}
