//! `elevate bench workflow`: the whole flow people use (file a request, an approver approves it,
//! the requester gets an SSH certificate: three audited calls) at 1/16/64 concurrent clients,
//! against a real server on loopback over the store `--database` names (a fresh SQLite file by
//! default). Beside it, in the same run, the empty handler (`GET /healthz`) at the same
//! concurrency: the ceiling HTTP alone leaves, which the ratio is quoted against; and an
//! authenticated read (`GET /api/v1/me` with a token) against the same ceiling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use serde_json::{Value, json};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, PrivateKey};

use super::bench::BenchServer;
use crate::model::Role;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct WorkflowBench {
    /// The store to run on (`sqlite:FILE` or `postgres://...`); a fresh SQLite file when left
    /// out. A Postgres database gets a new tenant of its own for the run.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Concurrent clients to measure at (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// More people in the tenant (requesters, every tenth an approver of another group), to
    /// see what a filing costs when the tenant is large.
    #[arg(long, default_value_t = 0)]
    users: usize,
}

const POLICY: &str = r#"
[[profile]]
name = "bench-approved"
max_duration = "24h"
default_duration = "1h"
requesters = ["engineering"]
approvers = ["sre"]
require_justification = false
[profile.ssh]
principals = ["deploy"]
"#;

/// `n` more people, written straight to the store in transactions of 1,000.
async fn add_people(server: &BenchServer, n: usize) -> anyhow::Result<()> {
    let now = server.ctx.now;
    for first in (0..n).step_by(1000) {
        let mut tx = server.store.tenant(server.tenant.tenant_id).await?;
        for i in first..n.min(first + 1000) {
            let (role, group) = if i % 10 == 0 {
                (Role::Approver, "dba")
            } else {
                (Role::Requester, "engineering")
            };
            tx.insert_user(
                &crate::store::NewUser {
                    email: format!("person{i}@bench.example"),
                    display_name: format!("Person {i}"),
                    roles: vec![role],
                    groups: vec![group.to_owned()],
                },
                now,
            )
            .await?;
        }
        tx.append_audit(
            &server
                .ctx
                .event("bench.people_added", server.tenant.slug.clone()),
            now,
        )
        .await?;
        tx.commit().await?;
    }
    if n > 0 {
        println!("{n} more people in the tenant");
    }
    Ok(())
}

/// What one measurement gives: rate, and p50/p99 of one unit (a flow, or a request).
pub(super) struct Measured {
    pub(super) rate: f64,
    p50: Duration,
    p99: Duration,
    done: usize,
    /// Seconds the measurement took.
    elapsed: f64,
}

pub async fn run(args: WorkflowBench) -> anyhow::Result<()> {
    let store = super::bench::BenchStore::new(args.database.as_deref())?;
    run_on(&store.url, &args).await
}

async fn run_on(url: &str, args: &WorkflowBench) -> anyhow::Result<()> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    let slug = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let server = BenchServer::start(store, &slug, POLICY).await?;
    let alice = server
        .person("alice@bench.example", Role::Requester, "engineering")
        .await?;
    let bob = server
        .person("bob@bench.example", Role::Approver, "sre")
        .await?;
    add_people(&server, args.users).await?;
    let base = server.base.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let public = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?
        .public_key()
        .to_openssh()?;
    let flow = Arc::new(Flow {
        http: http.clone(),
        base: base.clone(),
        alice,
        bob,
        public_key: public,
    });
    flow.once().await?;
    // What one flow costs the store, counted on an untimed pass (background work of the same
    // moments included): on SQLite each statement is two switches to its connection's thread and
    // back, on Postgres a round trip (a transaction's pinning `BEGIN` counts as one).
    let per_flow = super::statement_count::per_call(COUNTED_FLOWS, || flow.once()).await?;

    let window = Duration::from_secs(args.seconds.max(1));
    let store_kind = if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "workflow over loopback ({store_kind} store; request, approve, certificate; {}s each):",
        window.as_secs()
    );
    for &clients in &args.clients {
        let clients = clients.max(1);
        let f = flow.clone();
        let writes_before = server.store.write_transactions_begun();
        let open_before = server.store.write_transactions_open();
        let locked_before = server.store.append_locks_held();
        let flows = measure(clients, window, move || {
            let f = f.clone();
            async move { f.once().await }
        })
        .await?;
        let writes = (server.store.write_transactions_begun() - writes_before) as f64;
        let open = (server.store.write_transactions_open() - open_before).as_secs_f64();
        let locked = (server.store.append_locks_held() - locked_before).as_secs_f64();
        let empty = measure_get(&http, clients, window, format!("{base}/healthz"), None).await?;
        let read = measure_get(
            &http,
            clients,
            window,
            format!("{base}/api/v1/me"),
            Some(flow.alice.clone()),
        )
        .await?;
        let commits = raw(&server.store, clients, window, Raw::Commit).await?;
        let raw_read = raw(&server.store, clients, window, Raw::Read).await?;
        // An authenticated read is an empty request plus one read of the store: on two shared
        // cores their costs add, so this is the most it could reach if elevate added nothing.
        let bound = 1.0 / (1.0 / empty.rate.max(1.0) + 1.0 / raw_read.rate.max(1.0));
        println!(
            "  {clients:>2} client(s): {:>7.1} flows/s (p50 {:>7.2} ms, p99 {:>7.2} ms, {} flows) \
             | empty handler {:>8.0}/s | calls / empty {:>5.1}% \
             | authenticated read {:>7.0}/s (p99 {:>6.2} ms) = {:>5.1}% of empty",
            flows.rate,
            ms(flows.p50),
            ms(flows.p99),
            flows.done,
            empty.rate,
            100.0 * 3.0 * flows.rate / empty.rate.max(1.0),
            read.rate,
            ms(read.p99),
            100.0 * read.rate / empty.rate.max(1.0)
        );
        println!(
            "     the store's write transactions {:>7.0}/s ({:.1} per flow) | raw commits {:>7.0}/s \
             (p99 {:>6.2} ms) | write transactions / raw {:>5.1}%",
            writes / flows.elapsed,
            writes / flows.done.max(1) as f64,
            commits.rate,
            ms(commits.p99),
            100.0 * writes / flows.elapsed / commits.rate.max(1.0)
        );
        // On SQLite one connection writes: the share of the window a write transaction held it
        // is how close the flows came to that serial limit (on Postgres they overlap).
        println!(
            "     write transactions open {:>5.1}% of the window, {:>6.3} ms each on average \
             | the tenant's audit append lock held {:>5.1}% of it (Postgres), {:>6.3} ms each",
            100.0 * open / flows.elapsed,
            1000.0 * open / writes.max(1.0),
            100.0 * locked / flows.elapsed,
            1000.0 * locked / writes.max(1.0)
        );
        println!(
            "     raw reads {:>7.0}/s (p99 {:>6.2} ms) | empty + raw read {:>7.0}/s \
             = {:>5.1}% of empty | authenticated read / (empty + raw read) {:>5.1}%",
            raw_read.rate,
            ms(raw_read.p99),
            bound,
            100.0 * bound / empty.rate.max(1.0),
            100.0 * read.rate / bound.max(1.0)
        );
        println!(
            "     statements {per_flow:.1} per flow: {:>7.0}/s = {:>5.1}% of raw reads \
             | flows if statements were all they cost {:>6.0}/s",
            per_flow * flows.rate,
            100.0 * per_flow * flows.rate / raw_read.rate.max(1.0),
            raw_read.rate / per_flow.max(1.0)
        );
    }
    server.stop().await;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Flow {
    http: reqwest::Client,
    base: String,
    alice: String,
    bob: String,
    public_key: String,
}

impl Flow {
    async fn call(&self, token: &str, path: &str, body: Value, want: u16) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        let status = res.status().as_u16();
        let answer: Value = res.json().await.unwrap_or(Value::Null);
        if status != want {
            bail!("POST {path} answered {status}: {answer}");
        }
        Ok(answer)
    }

    /// One request through to its certificate.
    async fn once(&self) -> anyhow::Result<()> {
        let filed = self
            .call(
                &self.alice,
                "/requests",
                json!({"profile": "bench-approved"}),
                201,
            )
            .await?;
        let id = filed["id"].as_str().unwrap_or_default().to_owned();
        let approved = self
            .call(
                &self.bob,
                &format!("/requests/{id}/approve"),
                json!({}),
                200,
            )
            .await?;
        if approved["state"] != "active" {
            bail!("the approval did not activate the grant: {approved}");
        }
        let body = json!({ "public_key": self.public_key });
        self.call(
            &self.alice,
            &format!("/requests/{id}/ssh-certificate"),
            body,
            201,
        )
        .await?;
        Ok(())
    }
}

/// `GET url` (with `token` as bearer, if any) from `clients` tasks for `window`: the empty
/// handler, or an authenticated read (`/api/v1/me`: authentication and one small answer).
async fn measure_get(
    http: &reqwest::Client,
    clients: usize,
    window: Duration,
    url: String,
    token: Option<String>,
) -> anyhow::Result<Measured> {
    let (h, url, token) = (http.clone(), Arc::new(url), Arc::new(token));
    measure(clients, window, move || {
        let (h, url, token) = (h.clone(), url.clone(), token.clone());
        async move {
            let mut req = h.get(url.as_str());
            if let Some(t) = token.as_deref() {
                req = req.bearer_auth(t);
            }
            let res = req.send().await?;
            if !res.status().is_success() {
                bail!("GET {url} answered {}", res.status());
            }
            res.bytes().await?;
            Ok(())
        }
    })
    .await
}

/// What [`raw`] measures, through the server's own pools on a scratch table.
#[derive(Clone, Copy)]
pub(super) enum Raw {
    /// One insert and the commit, through the pool the product writes through
    /// (`Store::raw_commit`).
    Commit,
    /// One statement reading one row, through the pool the product reads through
    /// (`Store::raw_read`).
    Read,
}

/// The store's raw rate of `what` at `clients` callers.
pub(super) async fn raw(
    store: &Store,
    clients: usize,
    window: Duration,
    what: Raw,
) -> anyhow::Result<Measured> {
    store.raw_commit_table(true).await?;
    if let Raw::Read = what {
        // The row a raw read finds.
        store.raw_commit().await?;
    }
    let s = store.clone();
    let measured = measure(clients, window, move || {
        let s = s.clone();
        async move {
            match what {
                Raw::Commit => s.raw_commit().await?,
                Raw::Read => s.raw_read().await?,
            }
            Ok(())
        }
    })
    .await;
    store.raw_commit_table(false).await?;
    measured
}

/// Flows counted for their statements before the timed runs.
const COUNTED_FLOWS: u32 = 20;

/// Runs `one` from `clients` tasks for `window`; the rate and latency of its completions.
async fn measure<F, Fut>(clients: usize, window: Duration, one: F) -> anyhow::Result<Measured>
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                one().await?;
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
    Ok(Measured {
        rate: all.len() as f64 / elapsed,
        p50: super::bench::percentile(&all, 0.50),
        p99: super::bench::percentile(&all, 0.99),
        done: all.len(),
        elapsed,
    })
}
