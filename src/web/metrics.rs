//! `GET /metrics`: Prometheus text exposition, computed at scrape time from the store and the
//! reaper's status (so every replica reports the shared truth, and nothing is kept in memory).
//!
//! Anonymous scrapes get process series and one unlabelled sample per tenant family (summed, or
//! the largest, over every tenant); a bearer token with the `metrics` scope gets the same
//! families labelled with its own tenant (and sink) only. Per-tenant families go through
//! [`Exposition::tenant_samples`], which applies that rule.

use std::fmt::Write;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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
                    // Not `sum()`: an empty f64 sum is -0, which reads as "-0" in the text.
                    Combine::Sum => values.fold(0.0, |a, b| a + b),
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
    let (chains_broken, refusals) = super::health::audit_gauges(&state);
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
    tenant_state(&mut m, &viewer, &state, now).await?;
    process_counters(&mut m, &state.telemetry.snapshot());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.finish(),
    ))
}

/// The route template a request matched, filled in by [`note_route`] for [`count_request`].
#[derive(Clone, Default)]
struct RouteSlot(Arc<OnceLock<String>>);

/// Route layer: tells [`count_request`] which route template matched (never the raw path).
pub async fn note_route(req: Request, next: Next) -> Response {
    if let (Some(slot), Some(path)) = (
        req.extensions().get::<RouteSlot>(),
        req.extensions().get::<MatchedPath>(),
    ) {
        let _ = slot.0.set(path.as_str().to_owned());
    }
    next.run(req).await
}

/// Outermost layer: counts every request and its latency by method, route template and status.
/// Requests that matched no route (404s, refusals before routing) count as route `unmatched`.
pub async fn count_request(
    State(telemetry): State<Arc<crate::telemetry::Telemetry>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let slot = RouteSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    let route = slot.0.get().map_or("unmatched", String::as_str);
    telemetry.http_request(
        &method,
        route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}

/// Renders a histogram family's samples (`_bucket` per bound, `_sum`, `_count`).
fn histogram(
    m: &mut Exposition,
    name: &str,
    labels: &[(&str, &str)],
    h: &crate::telemetry::Histogram,
) {
    for (le, count) in h.buckets() {
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        m.sample(&format!("{name}_bucket"), &with_le, count as f64);
    }
    m.sample(&format!("{name}_sum"), labels, h.sum);
    m.sample(&format!("{name}_count"), labels, h.count as f64);
}

/// This process's counters: no tenant in them, so anonymous scrapes see them whole.
fn process_counters(m: &mut Exposition, s: &crate::telemetry::Snapshot) {
    m.family(
        "elevate_http_requests_total",
        "counter",
        "HTTP requests answered by this process, by method, route template and status.",
    );
    for ((method, route, status), h) in &s.http {
        let status = status.to_string();
        m.sample(
            "elevate_http_requests_total",
            &[("method", method), ("route", route), ("status", &status)],
            h.count as f64,
        );
    }
    m.family(
        "elevate_http_request_duration_seconds",
        "histogram",
        "Time to answer an HTTP request, by method, route template and status.",
    );
    for ((method, route, status), h) in &s.http {
        let status = status.to_string();
        histogram(
            m,
            "elevate_http_request_duration_seconds",
            &[("method", method), ("route", route), ("status", &status)],
            h,
        );
    }
    m.family(
        "elevate_credentials_issued_total",
        "counter",
        "SSH certificates and database logins issued, by kind.",
    );
    for kind in [
        crate::telemetry::Credential::SshCertificate,
        crate::telemetry::Credential::DbLogin,
    ] {
        let n = s.issued.iter().find(|(k, _)| *k == kind).map_or(0, |x| x.1);
        m.sample(
            "elevate_credentials_issued_total",
            &[("kind", kind.as_str())],
            n as f64,
        );
    }
    m.family(
        "elevate_credential_refusals_total",
        "counter",
        "Credential requests turned down, by kind and reason (not_allowed_now: no active grant for it; forbidden: not the requester; invalid: bad key or input; unavailable: the target failed).",
    );
    for ((kind, reason), n) in &s.refused {
        m.sample(
            "elevate_credential_refusals_total",
            &[("kind", kind.as_str()), ("reason", reason)],
            *n as f64,
        );
    }
    m.family(
        "elevate_signin_attempts_total",
        "counter",
        "Sign-in attempts by method (email_link_ask, email_link, oidc) and outcome (link_sent, success, or the class of failure).",
    );
    for ((method, outcome), n) in &s.sign_ins {
        m.sample(
            "elevate_signin_attempts_total",
            &[("method", method.as_str()), ("outcome", outcome)],
            *n as f64,
        );
    }
    m.family(
        "elevate_grant_expiry_lateness_seconds",
        "histogram",
        "Seconds from a grant's end (not_after) to the reaper expiring it, on this process.",
    );
    histogram(
        m,
        "elevate_grant_expiry_lateness_seconds",
        &[],
        &s.expiry_lateness,
    );
    m.family(
        "elevate_reaper_pass_duration_seconds",
        "histogram",
        "Time one reaper pass (transitions and database login cleanups over every tenant) took.",
    );
    histogram(
        m,
        "elevate_reaper_pass_duration_seconds",
        &[],
        &s.reaper_pass,
    );
}

/// Requests by state and the audit log's progress, per tenant from the store (the shared truth
/// of every replica).
async fn tenant_state(
    m: &mut Exposition,
    viewer: &Viewer,
    state: &AppState,
    now: time::OffsetDateTime,
) -> AppResult<()> {
    struct Tenant {
        slug: String,
        states: Vec<(String, i64)>,
        events: i64,
        checkpoint_age: f64,
        unsigned_age: f64,
    }
    let mut tenants = Vec::new();
    for tenant in state.store.tenants().await? {
        if viewer.tenant().is_some_and(|t| t != tenant.slug) {
            continue;
        }
        let mut tx = state.store.read(tenant.tenant_id).await?;
        let states = tx.request_state_counts().await?;
        let events = tx.audit_head().await?.map_or(0, |h| h.0);
        let checkpoint = tx.latest_checkpoint().await?;
        let signed = checkpoint.as_ref().map_or(0, |c| c.seq);
        let oldest_unsigned = tx.audit_events(signed, 1).await?;
        tx.commit().await?;
        tenants.push(Tenant {
            slug: tenant.slug,
            states,
            events,
            // No checkpoint yet: as old as the oldest event waiting for one.
            checkpoint_age: checkpoint
                .map(|c| c.at)
                .or(oldest_unsigned.first().map(|e| e.at))
                .map_or(0.0, |at| (now - at).as_seconds_f64().max(0.0)),
            unsigned_age: oldest_unsigned
                .first()
                .map_or(0.0, |e| (now - e.at).as_seconds_f64().max(0.0)),
        });
    }
    m.family(
        "elevate_requests",
        "gauge",
        "Access requests by state: active ones are the grants in force; expired and revoked ones ended.",
    );
    for s in crate::workflow::State::ALL {
        let samples: Vec<TenantSample> = tenants
            .iter()
            .map(|t| {
                let n = t
                    .states
                    .iter()
                    .find(|(state, _)| state == s.as_str())
                    .map_or(0, |x| x.1);
                TenantSample {
                    tenant: &t.slug,
                    labels: vec![("state", s.as_str())],
                    value: n as f64,
                }
            })
            .collect();
        match viewer.tenant() {
            // Anonymous: one sample per state, summed over tenants (state is not a tenant label).
            None => m.sample(
                "elevate_requests",
                &[("state", s.as_str())],
                samples.iter().fold(0.0, |a, x| a + x.value),
            ),
            Some(_) => m.tenant_samples(viewer, "elevate_requests", &samples, Combine::Sum),
        }
    }
    type Value = fn(&Tenant) -> f64;
    let families: [(&str, &str, &str, Value, Combine); 3] = [
        (
            "elevate_audit_events_total",
            "counter",
            "Audit events written (the length of the tenant's hash chain).",
            |t| t.events as f64,
            Combine::Sum,
        ),
        (
            "elevate_audit_checkpoint_age_seconds",
            "gauge",
            "Seconds since the newest signed audit checkpoint (0: no event yet). Grows while nothing happens; see elevate_audit_unsigned_age_seconds.",
            |t| t.checkpoint_age,
            Combine::Max,
        ),
        (
            "elevate_audit_unsigned_age_seconds",
            "gauge",
            "Seconds the oldest audit event not covered by a signed checkpoint has waited (0: the head is signed; alert when it stays high).",
            |t| t.unsigned_age,
            Combine::Max,
        ),
    ];
    for (name, kind, help, value, combine) in families {
        m.family(name, kind, help);
        let samples: Vec<TenantSample> = tenants
            .iter()
            .map(|t| TenantSample::of(&t.slug, value(t)))
            .collect();
        m.tenant_samples(viewer, name, &samples, combine);
    }
    Ok(())
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
        m.tenant_samples(&Viewer::Anonymous, "x", &[], Combine::Sum);
        assert_eq!(m.finish(), "x 0\nx 0\n");
    }
}
