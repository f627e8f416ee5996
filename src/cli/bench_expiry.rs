//! `elevate bench expiry`: N grants whose ends fall within one window, ended by the real reaper
//! task (as `serve` runs it) on the store `--database` names. Reports how late each grant moved
//! to `expired` after its `not_after`: from the store (whole seconds, as it keeps time) and from
//! the reaper's own lateness histogram (sub-second buckets, as `/metrics` shows it). Beside it,
//! in the same run, the store's raw commit rate: the physical limit the filing phase runs into.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::bench::BenchServer;
use crate::broker::Caller;
use crate::clock::{Clock, SystemClock};
use crate::model::Role;
use crate::store::Store;
use crate::workflow::NewRequest;

#[derive(Debug, Args)]
pub struct ExpiryBench {
    /// The store to run on (`sqlite:FILE` or `postgres://...`); a fresh SQLite file when left
    /// out. A Postgres database gets a new tenant of its own for the run.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// How many grants.
    #[arg(long, default_value_t = 2000)]
    grants: usize,
    /// Seconds over which their ends are spread (after the last one is filed).
    #[arg(long, default_value_t = 60)]
    within: u64,
    /// Seconds from the start to the first end (default: 30 s plus 1 s per 100 grants, enough
    /// to file them all first).
    #[arg(long, hide = true)]
    lead: Option<u64>,
}

const POLICY: &str = r#"
[[profile]]
name = "bench-expiry"
max_duration = "24h"
requesters = ["engineering"]
approvers = ["sre"]
auto_approve_groups = ["engineering"]
require_justification = false
[profile.ssh]
principals = ["deploy"]
"#;

pub async fn run(args: ExpiryBench) -> anyhow::Result<()> {
    let store = super::bench::BenchStore::new(args.database.as_deref())?;
    run_on(&store.url, &args).await
}

async fn run_on(url: &str, args: &ExpiryBench) -> anyhow::Result<()> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    let slug = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let server = BenchServer::start(store.clone(), &slug, POLICY).await?;
    let user = crate::admin::create_user(
        &store,
        &server.ctx,
        &server.tenant,
        "alice@bench.example",
        None,
        &[Role::Requester],
        &["engineering".to_owned()],
    )
    .await?;
    let n = args.grants.max(1);
    // Filing takes a while; every grant is given enough time to end after the last is filed.
    let lead = Duration::from_secs(args.lead.unwrap_or(30 + (n as u64) / 100));
    let start = Instant::now();
    let writes_before = store.write_transactions_begun();
    let first_end = SystemClock.now() + lead;
    for i in 0..n {
        let now = SystemClock.now();
        let end = first_end
            + time::Duration::milliseconds((args.within * 1000 * i as u64 / n as u64) as i64);
        let secs = (end - now).whole_seconds().max(1);
        let ctx = crate::audit::Ctx {
            now,
            ..server.ctx.clone()
        };
        let caller = Caller::new(ctx, server.tenant.clone(), user.clone());
        let new = NewRequest {
            duration: Some(time::Duration::seconds(secs)),
            justification: "bench".into(),
            ..NewRequest::default()
        };
        crate::broker::service::file(&store, "http://bench", &caller, "bench-expiry", new, None)
            .await?;
    }
    let filing = start.elapsed();
    let writes = store.write_transactions_begun() - writes_before;
    // As autovacuum would after such a fill; without it Postgres plans for empty tables (see
    // `elevate doctor`).
    if let Err(e) = store.analyze().await {
        println!("could not ANALYZE the store ({e}); expiry may be slow on stale statistics");
    }
    println!(
        "filed and auto-approved {n} grants in {:.1} s ({:.0}/s); their ends fall within {} s",
        filing.as_secs_f64(),
        n as f64 / filing.as_secs_f64(),
        args.within
    );
    let raw = super::bench_workflow::raw(
        &store,
        1,
        Duration::from_secs(2),
        super::bench_workflow::Raw::Commit,
    )
    .await?
    .rate;
    println!(
        "the store's raw commit rate (one writer, same pool): {raw:.0}/s; filing's write \
         transactions ({:.1} per grant) used {:.1}% of it",
        writes as f64 / n as f64,
        100.0 * writes as f64 / filing.as_secs_f64() / raw.max(1.0)
    );
    if let Some((rss, peak)) = resident_mb() {
        println!(
            "resident memory with {n} active grants: {rss:.1} MB (peak {peak:.1} MB; this process \
             also runs the benchmark's HTTP client); target (issue 16): at most 60 MB"
        );
    }
    let telemetry = Arc::new(crate::telemetry::Telemetry::default());
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    let reaper = crate::reaper::spawn(crate::reaper::Reaper {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        mailer: crate::notify::Mailer::Disabled,
        master: Arc::new(crate::crypto::MasterKey::generate()?),
        status: Default::default(),
        wake: wake.clone(),
        post: Default::default(),
        links: "http://bench".into(),
        every: crate::reaper::EVERY,
        telemetry: telemetry.clone(),
        stopping: stopping.clone(),
    });
    let deadline = Instant::now() + lead + Duration::from_secs(args.within + 120);
    let lateness = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut tx = store.tenant(server.tenant.tenant_id).await?;
        let ended = tx.grant_lateness().await?;
        tx.commit().await?;
        if ended.len() >= n || Instant::now() > deadline {
            break ended;
        }
    };
    stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    wake.notify_one();
    let _ = reaper.await;
    let mut late: Vec<i64> = lateness;
    late.sort_unstable();
    println!(
        "{} of {n} grants expired; lateness from the store (whole seconds): p50 {} s, p99 {} s, max {} s",
        late.len(),
        super::bench::percentile(&late, 0.5),
        super::bench::percentile(&late, 0.99),
        late.last().copied().unwrap_or(0)
    );
    let h = telemetry.snapshot().expiry_lateness;
    let buckets = h.buckets();
    let share = |le: &str| {
        buckets
            .iter()
            .find(|(b, _)| b == le)
            .map_or(0.0, |(_, c)| 100.0 * *c as f64 / h.count.max(1) as f64)
    };
    println!(
        "reaper's lateness histogram: {} observed, mean {:.2} s; <= 0.5 s {:.1}%, <= 1 s {:.1}%, <= 2 s {:.1}%, <= 5 s {:.1}%",
        h.count,
        h.sum / h.count.max(1) as f64,
        share("0.5"),
        share("1"),
        share("2"),
        share("5")
    );
    println!(
        "target (issue 16): p99 <= 2 s with 10,000 grants ending within one minute; rerun with --grants 10000 --within 60"
    );
    server.stop().await;
    Ok(())
}

/// This process's resident set and its peak, in MB (Linux `/proc/self/status`).
fn resident_mb() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    Some((kb("VmRSS:")? / 1024.0, kb("VmHWM:")? / 1024.0))
}
