//! Counting the store's SQL statements for `elevate bench`. sqlx reports every statement it runs
//! as a `tracing` event of target `sqlx::query`; [`layer`] counts those events, and only while a
//! benchmark counts ([`per_call`]), so a timed run pays nothing for it (the filter is asked per
//! event and answers from one atomic).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::Subscriber;
use tracing::subscriber::Interest;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{DynFilterFn, LevelFilter};
use tracing_subscriber::layer::Context;

static ON: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicU64 = AtomicU64::new(0);

struct Counter;

impl<S: Subscriber> Layer<S> for Counter {
    fn on_event(&self, _event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        COUNT.fetch_add(1, Ordering::Relaxed);
    }
}

/// The layer `init_tracing` adds beside the log's own.
pub(super) fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // Every other callsite is never wanted, once and for all, so the log's own filter alone
    // decides for them as before.
    let wanted = DynFilterFn::new(|_meta, _ctx| ON.load(Ordering::Relaxed))
        .with_callsite_filter(|meta| {
            if meta.target() == "sqlx::query" {
                Interest::sometimes()
            } else {
                Interest::never()
            }
        })
        .with_max_level_hint(LevelFilter::DEBUG);
    Counter.with_filter(wanted)
}

/// Statements per call of `one`, counted over `calls` calls made one after another (with the
/// background work of the same moments). A benchmark counts on a short untimed pass, because
/// sqlx formats each statement it reports while counting is on.
pub(super) async fn per_call<F, Fut>(calls: u32, mut one: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let counting = Counting::start();
    for _ in 0..calls {
        one().await?;
    }
    Ok(counting.so_far() as f64 / f64::from(calls.max(1)))
}

/// Counting is on from [`Counting::start`] until this is dropped (an error included).
struct Counting {
    from: u64,
}

impl Counting {
    fn start() -> Self {
        ON.store(true, Ordering::SeqCst);
        Counting {
            from: COUNT.load(Ordering::SeqCst),
        }
    }

    fn so_far(&self) -> u64 {
        COUNT.load(Ordering::SeqCst) - self.from
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        ON.store(false, Ordering::SeqCst);
    }
}
