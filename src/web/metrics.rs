//! `GET /metrics`: Prometheus text exposition, computed at scrape time from the store and the
//! reaper's status (so every replica reports the shared truth, and nothing is kept in memory).
//!
//! Anonymous scrapes get process series and one unlabelled sample per tenant family (summed, or
//! the largest, over every tenant); a bearer token with the `metrics` scope gets the same
//! families labelled with its own tenant (and sink) only. Per-tenant families go through
//! [`Exposition::tenant_samples`], which applies that rule.

use std::fmt::Write;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;
use super::health::Viewer;
use crate::error::AppResult;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Prometheus text format 0.0.4: one `# HELP`/`# TYPE` per family, then its samples.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        let _ = writeln!(self.out, "{name}{labels} {value}");
    }

    /// A tenant-labelled family as `viewer` may see it: the samples of its own tenant, with their
    /// labels (`tenant` first), or anonymously one unlabelled sample combining every tenant's.
    pub fn tenant_samples(
        &mut self,
        viewer: &Viewer,
        name: &str,
        samples: &[TenantSample<'_>],
        combine: Combine,
    ) {
        match viewer.tenant() {
            None => {
                let values = samples.iter().map(|s| s.value);
                let value = match combine {
                    Combine::Sum => values.sum(),
                    Combine::Max => values.fold(0.0, f64::max),
                };
                self.sample(name, &[], value);
            }
            Some(slug) => {
                for s in samples.iter().filter(|s| s.tenant == slug) {
                    let mut labels = vec![("tenant", s.tenant)];
                    labels.extend(s.labels.iter().copied());
                    self.sample(name, &labels, s.value);
                }
            }
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// One tenant's sample of a family, with any labels besides `tenant`.
pub struct TenantSample<'a> {
    pub tenant: &'a str,
    pub labels: Vec<(&'a str, &'a str)>,
    pub value: f64,
}

impl<'a> TenantSample<'a> {
    pub fn of(tenant: &'a str, value: f64) -> Self {
        TenantSample {
            tenant,
            labels: Vec::new(),
            value,
        }
    }
}

/// How an anonymous scrape sees a tenant family: the total, or the largest value.
#[derive(Debug, Clone, Copy)]
pub enum Combine {
    Sum,
    Max,
}

async fn metrics(State(state): State<AppState>, viewer: Viewer) -> AppResult<impl IntoResponse> {
    let now = state.clock.now();
    let mut m = Exposition::default();
    let reaper = state.reaper.lock().map(|s| s.clone()).unwrap_or_default();
    m.family(
        "elevate_reaper_last_pass_age_seconds",
        "gauge",
        "Seconds since the reaper's last successful pass (-1: none yet).",
    );
    let age = reaper
        .last_pass
        .map_or(-1.0, |t| (now - t).as_seconds_f64());
    m.sample("elevate_reaper_last_pass_age_seconds", &[], age);
    m.family(
        "elevate_reaper_consecutive_failures",
        "gauge",
        "Reaper passes that failed in a row.",
    );
    m.sample(
        "elevate_reaper_consecutive_failures",
        &[],
        f64::from(reaper.consecutive_failures),
    );

    let per_tenant = super::health::backlogs(&state).await?;
    type Count = fn(&crate::store::CleanupCounts) -> i64;
    let families: [(&str, &str, Count); 3] = [
        (
            "elevate_db_logins_open",
            "Database logins whose role may still exist (not cleaned up yet).",
            |c| c.open,
        ),
        (
            "elevate_db_cleanups_due",
            "Database logins whose grant ended and whose role is not dropped yet.",
            |c| c.due,
        ),
        (
            "elevate_db_cleanups_stuck",
            "Database login cleanups that failed at least once and are being retried.",
            |c| c.stuck,
        ),
    ];
    for (name, help, value) in families {
        m.family(name, "gauge", help);
        let samples: Vec<TenantSample> = per_tenant
            .iter()
            .map(|t| TenantSample::of(&t.slug, value(&t.cleanups) as f64))
            .collect();
        m.tenant_samples(&viewer, name, &samples, Combine::Sum);
    }
    m.family(
        "elevate_notifications_failing",
        "gauge",
        "Notifications that failed at least once and are still undelivered.",
    );
    let samples: Vec<TenantSample> = per_tenant
        .iter()
        .map(|t| TenantSample::of(&t.slug, t.failing_notifications as f64))
        .collect();
    m.tenant_samples(
        &viewer,
        "elevate_notifications_failing",
        &samples,
        Combine::Sum,
    );
    audit_sinks(
        &mut m,
        &viewer,
        &crate::audit::sinks::lags(&state.store, now).await?,
    );
    let (chains_broken, refusals) = crate::audit::metrics(&state);
    m.family(
        "elevate_audit_chain_broken",
        "gauge",
        "Tenants whose audit chain is cut short, rewritten or broken: the signer refuses it (alert on > 0).",
    );
    m.sample("elevate_audit_chain_broken", &[], chains_broken as f64);
    m.family(
        "elevate_audit_signing_refusals_total",
        "counter",
        "Checkpoint passes that declined to sign a tenant's head, since start.",
    );
    m.sample("elevate_audit_signing_refusals_total", &[], refusals as f64);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.finish(),
    ))
}

/// How far each audit sink is behind (the log is delivered from a cursor per sink).
/// Anonymously: all sinks' events summed, the oldest lag and the longest failure streak.
fn audit_sinks(m: &mut Exposition, viewer: &Viewer, lags: &[crate::audit::sinks::Lag]) {
    type Value = fn(&crate::audit::sinks::Lag) -> i64;
    let families: [(&str, &str, Value, Combine); 3] = [
        (
            "elevate_audit_sink_lag_events",
            "Audit events written but not yet delivered to the sink.",
            |l| l.events,
            Combine::Sum,
        ),
        (
            "elevate_audit_sink_lag_seconds",
            "Age in seconds of the oldest audit event not yet delivered to the sink (0: caught up).",
            |l| l.seconds,
            Combine::Max,
        ),
        (
            "elevate_audit_sink_failed_attempts",
            "Deliveries to the sink that failed in a row.",
            |l| l.attempts,
            Combine::Max,
        ),
    ];
    let sinks: Vec<String> = lags.iter().map(|l| l.sink_id.to_string()).collect();
    for (name, help, value, combine) in families {
        m.family(name, "gauge", help);
        let samples: Vec<TenantSample> = lags
            .iter()
            .zip(&sinks)
            .map(|(l, sink)| TenantSample {
                tenant: &l.tenant,
                labels: vec![("sink", sink), ("kind", &l.kind)],
                value: value(l) as f64,
            })
            .collect();
        m.tenant_samples(viewer, name, &samples, combine);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_escapes_label_values() {
        let mut m = Exposition::default();
        m.family("x_total", "counter", "An example.");
        m.sample("x_total", &[("tenant", "a\"b\\c\nd")], 2.0);
        m.sample("x_total", &[], 1.5);
        assert_eq!(
            m.finish(),
            "# HELP x_total An example.\n# TYPE x_total counter\nx_total{tenant=\"a\\\"b\\\\c\\nd\"} 2\nx_total 1.5\n"
        );
    }

    #[test]
    fn tenant_series_are_combined_anonymously_and_cut_to_the_viewers_tenant() {
        let samples = [
            TenantSample {
                tenant: "acme",
                labels: vec![("sink", "s1")],
                value: 2.0,
            },
            TenantSample::of("globex", 5.0),
        ];
        let render = |viewer: &Viewer, combine| {
            let mut m = Exposition::default();
            m.tenant_samples(viewer, "x", &samples, combine);
            m.finish()
        };
        assert_eq!(render(&Viewer::Anonymous, Combine::Sum), "x 7\n");
        assert_eq!(render(&Viewer::Anonymous, Combine::Max), "x 5\n");
        assert_eq!(
            render(&Viewer::Tenant("acme".into()), Combine::Sum),
            "x{tenant=\"acme\",sink=\"s1\"} 2\n"
        );
        let mut m = Exposition::default();
        m.tenant_samples(&Viewer::Anonymous, "x", &[], Combine::Max);
        assert_eq!(m.finish(), "x 0\n");
    }
}
