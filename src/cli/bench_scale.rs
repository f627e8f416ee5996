//! `elevate bench scale`: whether the pages people and monitors load every day stay as fast when
//! a tenant's history grows (issue 16: "with 100,000 requests and 1,000,000 audit events, the
//! list, inbox, dashboard, `/audit`, `/metrics` and `/readyz` answer as fast as with 100").
//!
//! One tenant holds the same open work throughout (requests waiting for approval, active
//! grants), so every page shows the same rows; only the history behind them grows. Each page is
//! timed with that tenant at `--small` requests, then again after its history is filled to
//! `--requests` requests and `--events` audit events, in the same run. The history is written
//! straight to the store in large transactions (ended requests with their approvals, grants and
//! a chained, verifiable audit record), not through HTTP: the point is the size, and filing
//! 100,000 requests one by one would take minutes. Last, `elevate serve` is started on the full
//! store to time the cold start to `/readyz` 200.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use time::OffsetDateTime;
use uuid::Uuid;

use super::bench::{BenchServer, percentile};
use crate::audit::{Actor, NewEvent};
use crate::model::{Role, User};
use crate::store::Store;
use crate::workflow::{Approval, Grant, Request, State};

#[derive(Debug, Args)]
pub struct ScaleBench {
    /// The store to run on (`sqlite:FILE` or `postgres://...`); a fresh SQLite file when left
    /// out. A Postgres database gets a new tenant of its own for the run.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Requests in the tenant at the large size.
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Audit events in the tenant at the large size.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Requests at the small size (with ten audit events each), the size compared against.
    #[arg(long, default_value_t = 100)]
    small: usize,
    /// Seconds each page is loaded for, one load after another.
    #[arg(long, default_value_t = 2)]
    seconds: u64,
    /// The store URL `elevate serve` is started with for the cold start [default: --database].
    /// On Postgres `serve` refuses a superuser: give a login role that is only a member of
    /// `elevate_app`, on a database that holds no other run's tenants (their keys are sealed
    /// with other master keys).
    #[arg(long, value_name = "URL")]
    serve_database: Option<String>,
}

const POLICY: &str = r#"
[[profile]]
name = "bench-scale"
max_duration = "24h"
default_duration = "8h"
requesters = ["engineering"]
approvers = ["sre"]
require_justification = false
[profile.ssh]
principals = ["deploy"]
"#;

/// Requests waiting for bob and grants active for alice: the same at both sizes.
const WAITING: usize = 20;
const ACTIVE: usize = 10;
/// Ended requests and audit events written per transaction while filling.
const BATCH: usize = 1_000;

/// Who loads the pages: alice (requester), bob (approver), carol (admin: audit, metrics).
struct People {
    alice: User,
    bob: User,
    alice_token: String,
    carol_token: String,
    alice_cookie: String,
    bob_cookie: String,
    carol_cookie: String,
}

pub async fn run(args: ScaleBench) -> anyhow::Result<()> {
    let store = super::bench::BenchStore::new(args.database.as_deref())?;
    run_on(&store.url, &store.scratch, &args).await
}

async fn run_on(url: &str, scratch: &std::path::Path, args: &ScaleBench) -> anyhow::Result<()> {
    if args.requests <= args.small || args.small < WAITING + ACTIVE {
        bail!(
            "--requests ({}) must exceed --small ({}), which must be at least {}",
            args.requests,
            args.small,
            WAITING + ACTIVE
        );
    }
    let store = Store::connect(url).await?;
    store.migrate().await?;
    let key_file = scratch.join("master.key");
    let master = Arc::new(crate::crypto::MasterKey::generate_file(&key_file)?);
    let slug = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let server = BenchServer::start_with(store.clone(), &slug, POLICY, master).await?;
    let people = people(&server).await?;
    let fill = Fill {
        server: &server,
        people: &people,
    };
    fill.open_work().await?;
    let mut at = Filled {
        requests: WAITING + ACTIVE,
        // One event per open request (people, tokens and the policy add a few more).
        events: WAITING + ACTIVE,
    };
    at = fill.history(at, args.small, args.small * 10).await?;
    crate::reaper::fold_request_counts(&store).await?;
    let http = reqwest::Client::new();
    let pages = pages(&server.base, &people);
    let window = Duration::from_secs(args.seconds.max(1));
    let store_kind = if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "page loads at two sizes of one tenant ({store_kind} store; one client, {}s per page):",
        window.as_secs()
    );
    // The first `/audit` view verifies the chain so far; later views verify only what is new.
    let first = time_once(&http, &pages[4]).await?;
    println!(
        "  small: {} requests, {} audit events; first /audit view {:.1} ms",
        at.requests,
        at.events,
        ms(first)
    );
    let mut small = Vec::new();
    for page in &pages {
        small.push(measure(&http, page, window).await?);
    }

    let start = Instant::now();
    at = fill.history(at, args.requests, args.events).await?;
    let filled = start.elapsed();
    println!(
        "  filled to {} requests, {} audit events in {:.1} s",
        at.requests,
        at.events,
        filled.as_secs_f64()
    );
    // What `serve`'s reaper does every 30 s, and autovacuum on Postgres.
    crate::reaper::fold_request_counts(&store).await?;
    if let Err(e) = store.analyze().await {
        println!("  could not ANALYZE the store ({e}); Postgres plans may be off");
    }
    // The audit page verifies what the fill appended in the background; wait for that first.
    let start = Instant::now();
    while load(&http, &pages[4]).await?.contains(">verifying<") {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  large: /audit verified the {} new events in the background in {:.1} s",
        at.events - args.small * 10,
        start.elapsed().as_secs_f64()
    );
    println!(
        "  {:<34} {:>22} {:>22} {:>10}",
        "page", "small p50 / p99 ms", "large p50 / p99 ms", "large/small"
    );
    for (page, before) in pages.iter().zip(&small) {
        let after = measure(&http, page, window).await?;
        println!(
            "  {:<34} {:>10.2} / {:>9.2} {:>10.2} / {:>9.2} {:>9.2}x",
            page.name,
            ms(before.p50),
            ms(before.p99),
            ms(after.p50),
            ms(after.p99),
            after.p50.as_secs_f64() / before.p50.as_secs_f64().max(1e-9)
        );
    }
    server.stop().await;
    match cold_start(args.serve_database.as_deref().unwrap_or(url), &key_file).await {
        Ok(times) => println!(
            "  cold start of `elevate serve` on the large store to /readyz 200: median {:.1} ms \
             (min {:.1}, max {:.1}; {} starts, process spawn included)",
            ms(percentile(&times, 0.5)),
            ms(times[0]),
            ms(times[times.len() - 1]),
            times.len()
        ),
        Err(e) => println!("  cold start not measured: {e:#}"),
    }
    Ok(())
}

fn user_actor(user: &User) -> Actor {
    Actor::User {
        id: user.id,
        email: user.email.clone(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn people(server: &BenchServer) -> anyhow::Result<People> {
    let (alice, alice_token) = server
        .member("alice@bench.example", Role::Requester, "engineering")
        .await?;
    let (bob, _) = server
        .member("bob@bench.example", Role::Approver, "sre")
        .await?;
    let (carol, carol_token) = server
        .member("carol@bench.example", Role::Admin, "security")
        .await?;
    Ok(People {
        alice_cookie: session(server, &alice).await?,
        bob_cookie: session(server, &bob).await?,
        carol_cookie: session(server, &carol).await?,
        alice,
        bob,
        alice_token,
        carol_token,
    })
}

/// A signed-in session for `user`, as the `Cookie` header a browser would send.
async fn session(server: &BenchServer, user: &User) -> anyhow::Result<String> {
    let mut tx = server.store.tenant(server.tenant.tenant_id).await?;
    let (secret, _) = crate::auth::session::start_session(
        &mut tx,
        user,
        time::Duration::hours(12),
        &Default::default(),
        server.ctx.now,
    )
    .await?;
    let event = NewEvent::new(user_actor(user), "signin.succeeded", user.email.clone());
    tx.append_audit(&event, server.ctx.now).await?;
    tx.commit().await?;
    Ok(format!(
        "{}={}",
        crate::auth::session::SESSION_COOKIE,
        secret.expose()
    ))
}

/// One page and who loads it.
struct Page {
    name: &'static str,
    url: String,
    /// `Cookie` or `Authorization` header value.
    header: Option<(&'static str, String)>,
}

fn pages(base: &str, p: &People) -> Vec<Page> {
    let cookie = |c: &String| Some(("cookie", c.clone()));
    let bearer = |t: &String| Some(("authorization", format!("Bearer {t}")));
    vec![
        Page {
            name: "GET /api/v1/requests?limit=50 (alice)",
            url: format!("{base}/api/v1/requests?limit=50"),
            header: bearer(&p.alice_token),
        },
        Page {
            name: "GET /requests?limit=50 page (alice)",
            url: format!("{base}/requests?limit=50"),
            header: cookie(&p.alice_cookie),
        },
        Page {
            name: "GET /approvals inbox (bob)",
            url: format!("{base}/approvals"),
            header: cookie(&p.bob_cookie),
        },
        Page {
            name: "GET /dashboard (alice)",
            url: format!("{base}/dashboard"),
            header: cookie(&p.alice_cookie),
        },
        Page {
            name: "GET /audit (carol)",
            url: format!("{base}/audit"),
            header: cookie(&p.carol_cookie),
        },
        Page {
            name: "GET /audit?action=grant.revoked",
            url: format!("{base}/audit?action=grant.revoked"),
            header: cookie(&p.carol_cookie),
        },
        Page {
            name: "GET /audit?actor=nobody",
            url: format!("{base}/audit?actor=nobody"),
            header: cookie(&p.carol_cookie),
        },
        Page {
            name: "GET /metrics (metrics token)",
            url: format!("{base}/metrics"),
            header: bearer(&p.carol_token),
        },
        Page {
            name: "GET /readyz (anonymous)",
            url: format!("{base}/readyz"),
            header: None,
        },
    ]
}

async fn time_once(http: &reqwest::Client, page: &Page) -> anyhow::Result<Duration> {
    let start = Instant::now();
    load(http, page).await?;
    Ok(start.elapsed())
}

/// Loads `page`; its body.
async fn load(http: &reqwest::Client, page: &Page) -> anyhow::Result<String> {
    let mut req = http.get(&page.url);
    if let Some((name, value)) = &page.header {
        req = req.header(*name, value);
    }
    let res = req.send().await?;
    let status = res.status();
    let body = res.text().await?;
    if !status.is_success() {
        bail!("{} answered {status}: {}", page.name, body.trim());
    }
    Ok(body)
}

struct Measured {
    p50: Duration,
    p99: Duration,
}

async fn measure(
    http: &reqwest::Client,
    page: &Page,
    window: Duration,
) -> anyhow::Result<Measured> {
    let deadline = Instant::now() + window;
    let mut all = Vec::new();
    while Instant::now() < deadline || all.len() < 5 {
        all.push(time_once(http, page).await?);
    }
    all.sort_unstable();
    Ok(Measured {
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    })
}

/// How much of the tenant's history is written so far.
#[derive(Debug, Default, Clone, Copy)]
struct Filled {
    requests: usize,
    events: usize,
}

struct Fill<'a> {
    server: &'a BenchServer,
    people: &'a People,
}

impl Fill<'_> {
    fn request(&self, created: OffsetDateTime, state: State, hours: i64) -> Request {
        let duration = time::Duration::hours(hours);
        let approved = created + time::Duration::minutes(2);
        let decided = !matches!(state, State::Pending);
        Request {
            id: Uuid::now_v7(),
            requester: self.people.alice.id,
            profile: "bench-scale".into(),
            duration,
            justification: "bench".into(),
            ticket: None,
            starts_at: None,
            state,
            created_at: created,
            pending_until: created + time::Duration::hours(24),
            shortcut: None,
            approvals: if decided {
                vec![Approval {
                    approver: self.people.bob.id,
                    round: 1,
                    at: approved,
                    stepped_up: false,
                }]
            } else {
                Vec::new()
            },
            extension: None,
            grant: decided.then(|| Grant {
                activated_at: approved,
                not_after: approved + duration,
            }),
            reviewed_by: None,
        }
    }

    /// The open work both sizes share: requests waiting for bob, and alice's active grants.
    async fn open_work(&self) -> anyhow::Result<()> {
        let s = self.server;
        let now = s.ctx.now;
        let mut tx = s.store.tenant(s.tenant.tenant_id).await?;
        let version = tx
            .latest_policy_version()
            .await?
            .context("no policy")?
            .version;
        for i in 0..WAITING + ACTIVE {
            let created = now - time::Duration::minutes(i as i64 + 5);
            let (state, hours) = if i < WAITING {
                (State::Pending, 8)
            } else {
                (State::Active, 24)
            };
            let r = self.request(created, state, hours);
            tx.insert_request(&r, version, created).await?;
            let filed = NewEvent::new(user_actor(&self.people.alice), "request.created", "bench")
                .request(r.id);
            tx.append_audit(&filed, created).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Ended requests (with their approval, grant and audit trail) and then other events, until
    /// the tenant holds `requests` requests and `events` events. The history is older than the
    /// open work, so the first page of every list shows the same rows at any size.
    async fn history(
        &self,
        mut at: Filled,
        requests: usize,
        events: usize,
    ) -> anyhow::Result<Filled> {
        let s = self.server;
        let oldest_open = s.ctx.now - time::Duration::hours(1);
        let alice = user_actor(&self.people.alice);
        let bob = user_actor(&self.people.bob);
        // Spread the history over the past, a minute apart, newest first as it is added.
        let spaced = |n: usize| oldest_open - time::Duration::minutes(n as i64);
        let version = {
            let mut tx = s.store.read(s.tenant.tenant_id).await?;
            let v = tx
                .latest_policy_version()
                .await?
                .context("no policy")?
                .version;
            tx.commit().await?;
            v
        };
        let per_request = 4;
        let padding_from = events.saturating_sub((requests - at.requests) * per_request);
        while at.requests < requests || at.events < events {
            let mut tx = s.store.tenant(s.tenant.tenant_id).await?;
            let mut n = 0;
            while n < BATCH && at.requests < requests {
                let created = spaced(at.requests);
                let r = self.request(created, State::Expired, 1);
                let grant = r.grant.clone().context("an ended request has a grant")?;
                tx.insert_request(&r, version, grant.not_after).await?;
                let trail = [
                    (&alice, "request.created", created),
                    (&bob, "request.approved", grant.activated_at),
                    (&Actor::System, "grant.activated", grant.activated_at),
                    (&Actor::System, "grant.expired", grant.not_after),
                ];
                for (who, action, when) in trail {
                    let event = NewEvent::new((*who).clone(), action, "bench").request(r.id);
                    tx.append_audit(&event, when).await?;
                }
                at.requests += 1;
                at.events += per_request;
                n += per_request;
            }
            while n < BATCH && at.requests >= requests && at.events < events {
                let event = NewEvent::new(alice.clone(), "signin.succeeded", "bench");
                tx.append_audit(&event, spaced(at.events - padding_from))
                    .await?;
                at.events += 1;
                n += 1;
            }
            tx.commit().await?;
        }
        Ok(at)
    }
}

/// Starts this binary's `serve` on `url` five times and times each from spawn to `/readyz` 200.
async fn cold_start(url: &str, key_file: &std::path::Path) -> anyhow::Result<Vec<Duration>> {
    let binary = std::env::current_exe()?;
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let mut child = tokio::process::Command::new(&binary)
            .args(["serve", "--insecure-http", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--public-url", &base, "--database", url])
            .env("ELEVATE_MASTER_KEY_FILE", key_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting elevate serve")?;
        let ready = loop {
            if let Ok(res) = http.get(format!("{base}/readyz")).send().await
                && res.status().is_success()
            {
                break Some(start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(30) || child.try_wait()?.is_some() {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        child.start_kill()?;
        let out = child.wait_with_output().await?;
        match ready {
            Some(t) => times.push(t),
            None => bail!(
                "elevate serve was not ready within 30 s: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }
    times.sort_unstable();
    Ok(times)
}
