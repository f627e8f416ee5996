//! `/healthz` says the process is alive; `/readyz` says whether it can serve (DESIGN §8): it is
//! unready (503) only when the store or the tenants' signing keys fail — nothing could be
//! certified or recorded. Everything else it checks degrades (200, `"status": "degraded"` and the
//! names of what degrades): the reaper, mail and OpenID providers (probed, see `probes`),
//! database targets elevate cannot reach, login cleanups that keep failing, a broken audit chain.
//! Another replica could not do better, and taking every replica out of rotation would stop
//! revocations too; these page through `/metrics` and the logs.
//!
//! Both are public, so an anonymous answer carries aggregate status only: no tenant slug, target
//! name or error text. A bearer token with the `metrics` scope ([`Viewer`]) sees its own
//! tenant's details and series, never another tenant's (DESIGN §8).

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Router, response::IntoResponse};
use serde_json::{Value, json};

use super::AppState;
use crate::auth::ApiPrincipal;
use crate::error::AppError;
use crate::model::Scope;

/// Who reads `/readyz` or `/metrics`: anyone (aggregates only), or a token with the `metrics`
/// scope, which sees its tenant's details. A presented token that is invalid or lacks the scope
/// is refused (401/403) rather than answered anonymously, so a misconfigured scraper notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    Anonymous,
    Tenant(String),
}

impl Viewer {
    /// The tenant whose details this viewer may see.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Viewer::Anonymous => None,
            Viewer::Tenant(slug) => Some(slug),
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if !parts.headers.contains_key(AUTHORIZATION) {
            return Ok(Viewer::Anonymous);
        }
        let principal = ApiPrincipal::from_request_parts(parts, state).await?;
        principal.require(Scope::Metrics)?;
        Ok(Viewer::Tenant(principal.tenant.slug))
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>, viewer: Viewer) -> impl IntoResponse {
    let now = state.clock.now();
    let store = match state.store.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store unreachable");
            "unreachable".to_owned()
        }
    };
    let master_key = if state.master_key.active_key_id().is_empty() {
        "missing"
    } else {
        "ok"
    };
    let reaper = state.reaper.lock().map(|s| s.clone()).unwrap_or_default();
    let reaper_state = match (&reaper.last_pass, &reaper.last_error) {
        (_, Some(_)) => "failing",
        (Some(at), None) if now - *at <= crate::reaper::STALE_AFTER => "ok",
        (Some(_), None) => "stale",
        (None, None) => "starting",
    };
    // Anonymous: summed over every tenant; with a token: the token's tenant only.
    let backlogs = backlogs(&state).await.ok().map(|all| {
        all.into_iter()
            .filter(|t| viewer.tenant().is_none_or(|v| v == t.slug))
            .collect::<Vec<_>>()
    });
    let failing = backlogs
        .as_ref()
        .map(|b| b.iter().map(|t| t.failing_notifications).sum::<usize>());
    let cleanups = backlogs.as_ref().map(|b| {
        let sum = |f: fn(&crate::store::CleanupCounts) -> i64| {
            b.iter().map(|t| f(&t.cleanups)).sum::<i64>()
        };
        json!({ "open": sum(|c| c.open), "due": sum(|c| c.due), "stuck": sum(|c| c.stuck) })
    });
    let targets = unreachable_targets(&state)
        .await
        .map(|all| match viewer.tenant() {
            None => json!(all.len()),
            Some(slug) => Value::Array(
                all.into_iter()
                    .filter(|t| t["tenant"] == slug)
                    .map(|t| json!({ "target": t["target"], "error": t["error"] }))
                    .collect(),
            ),
        });
    let probed = super::probes::probes(&state).await;
    let audit = audit_view(audit_readiness(&state).await, &viewer);
    // DESIGN §8: unready only when the store or the signing keys fail. Everything else degrades:
    // pulling every replica out of rotation would also stop revocations.
    let ready = store == "ok" && master_key == "ok" && probed.keys_ok();
    let mut degraded = probed.degraded();
    if reaper_state == "failing" || reaper_state == "stale" {
        degraded.push("reaper");
    }
    if audit["state"] == "degraded" {
        degraded.push("audit");
    }
    if cleanups
        .as_ref()
        .is_some_and(|c| c["stuck"].as_i64() > Some(0))
    {
        degraded.push("db_cleanups");
    }
    if targets.as_ref().is_some_and(|t| match t {
        Value::Array(a) => !a.is_empty(),
        n => n.as_u64() > Some(0),
    }) {
        degraded.push("targets");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let (signing_keys, mail, oidc) = probed.view(&viewer);
    let mut body = json!({
        "status": if !ready { "not ready" } else if degraded.is_empty() { "ready" } else { "degraded" },
        "degraded": degraded,
        "checks": {
            "store": store,
            "master_key": master_key,
            "signing_keys": signing_keys,
            "mail": mail,
            "oidc": oidc,
            "reaper": {
                "state": reaper_state,
                "last_pass": reaper.last_pass.map(|t| t.unix_timestamp()),
                "lag_secs": reaper.last_pass.map(|t| (now - t).whole_seconds()),
                // The error text may name any tenant: it is in the server log.
            },
            "notifications_failing": failing,
            "audit": audit,
            "db_cleanups": cleanups,
            "targets_unreachable": targets,
        },
    });
    if let (Some(slug), Some(body)) = (viewer.tenant(), body.as_object_mut()) {
        body.insert("tenant".into(), json!(slug));
    }
    // 503 here is a report, not an error: the shared error rendering leaves it as it is.
    let mut res = (status, Json(body)).into_response();
    res.extensions_mut().insert(super::error::KeepBody);
    res
}

/// The audit part of `/readyz` as `viewer` may see it. [`audit_readiness`] reports for
/// every tenant; here each list is cut to the viewer's tenant (entries that are its slug, or
/// objects whose `tenant` is its slug, kept whole) or, anonymously, to its length; text under a
/// key naming an error outside such an entry is left out (it may name any tenant); objects are
/// treated the same way, field by field. So a new field that names tenants is covered as long as
/// tenants appear in lists, never as keys.
fn audit_view(full: Value, viewer: &Viewer) -> Value {
    let mine = |v: &Value, slug: &str| match v {
        Value::String(s) => s == slug,
        Value::Object(o) => o.get("tenant").is_some_and(|t| t == slug),
        _ => false,
    };
    match full {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .filter(|(key, _)| !key.contains("error"))
                .map(|(key, value)| (key, audit_view(value, viewer)))
                .collect(),
        ),
        Value::Array(items) => match viewer.tenant() {
            None => json!(items.len()),
            Some(slug) => Value::Array(items.into_iter().filter(|v| mine(v, slug)).collect()),
        },
        other => other,
    }
}

/// What keeps failing in one tenant: read by `/readyz` (summed) and `/metrics` (per tenant).
pub struct TenantBacklog {
    pub slug: String,
    pub cleanups: crate::store::CleanupCounts,
    /// Notifications that failed at least once and are still undelivered.
    pub failing_notifications: usize,
}

pub async fn backlogs(state: &AppState) -> crate::error::AppResult<Vec<TenantBacklog>> {
    let now = state.clock.now();
    let mut out = Vec::new();
    for tenant in state.store.tenants().await? {
        let mut tx = state.store.read(tenant.tenant_id).await?;
        let cleanups = tx.db_cleanup_counts(now).await?;
        let failing_notifications = tx.failing_notifications().await?;
        tx.commit().await?;
        out.push(TenantBacklog {
            slug: tenant.slug,
            cleanups,
            failing_notifications,
        });
    }
    Ok(out)
}

/// The result of checking every target, and when it was taken.
pub struct TargetHealth {
    at: std::time::Instant,
    unreachable: Vec<serde_json::Value>,
}

/// How long one check of the targets answers `/readyz` (probes come every few seconds).
const TARGET_CHECK_TTL: std::time::Duration = std::time::Duration::from_secs(30);

async fn unreachable_targets(state: &AppState) -> Option<Vec<serde_json::Value>> {
    let mut cached = state.target_health.lock().await;
    if let Some(h) = cached
        .as_ref()
        .filter(|h| h.at.elapsed() < TARGET_CHECK_TTL)
    {
        return Some(h.unreachable.clone());
    }
    let found = crate::db_targets::targets::unreachable(&state.store, &state.master_key)
        .await
        .ok()?;
    let unreachable: Vec<serde_json::Value> = found
        .into_iter()
        .map(
            |(tenant, target, error)| json!({ "tenant": tenant, "target": target, "error": error }),
        )
        .collect();
    *cached = Some(TargetHealth {
        at: std::time::Instant::now(),
        unreachable: unreachable.clone(),
    });
    Some(unreachable)
}

/// What `/readyz` says about the audit log: whether the chains extend what this replica knew and
/// checkpoints are being signed (a broken chain stops signing) and how far each sink is behind.
/// A broken chain is reported as degraded (and alerts through `/metrics`), never a reason to stop
/// serving: refusing every request would not un-break the log (DESIGN §8 keeps "unready" for the
/// store and the signing keys).
pub async fn audit_readiness(state: &AppState) -> serde_json::Value {
    let status = state.audit.lock().map(|s| s.clone()).unwrap_or_default();
    let sinks = match crate::audit::sinks::lags(&state.store, state.clock.now()).await {
        Ok(lags) => serde_json::Value::Array(
            lags.into_iter()
                .map(|l| {
                    serde_json::json!({
                        "tenant": l.tenant, "sink": l.sink_id, "kind": l.kind,
                        "lag_events": l.events, "lag_secs": l.seconds,
                        "attempts": l.attempts, "last_error": l.last_error,
                    })
                })
                .collect(),
        ),
        Err(_) => serde_json::Value::Null,
    };
    let broken = !status.broken.is_empty();
    serde_json::json!({
        "state": if broken { "degraded" } else { "ok" },
        "chain": if broken { "broken" } else if status.last_pass.is_some() { "ok" } else { "starting" },
        "checkpoints": if broken { "broken chain: not signing" }
            else if status.last_error.is_some() { "failing" }
            else if status.last_pass.is_some() { "ok" } else { "starting" },
        "broken_tenants": status.broken.keys().collect::<Vec<_>>(),
        "sinks": sinks,
    })
}

/// The aggregate audit gauges for `/metrics` (no tenant names): tenants whose chain the signer
/// refuses, and refused passes since start.
pub fn audit_gauges(state: &AppState) -> (usize, u64) {
    state
        .audit
        .lock()
        .map(|s| (s.broken.len(), s.refusals))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_check_names_tenants_only_to_their_own_token() {
        let full = json!({
            "checkpoints": "broken chain: not signing",
            "broken_tenants": ["acme", "globex"],
            "sinks": [
                { "tenant": "acme", "kind": "webhook", "last_error": "refused by hooks.acme" },
                { "tenant": "globex", "kind": "syslog", "last_error": null },
            ],
            "last_error": "globex: seq 7 does not match",
        });
        assert_eq!(
            audit_view(full.clone(), &Viewer::Anonymous),
            json!({ "checkpoints": "broken chain: not signing", "broken_tenants": 2, "sinks": 2 })
        );
        assert_eq!(
            audit_view(full, &Viewer::Tenant("acme".into())),
            json!({
                "checkpoints": "broken chain: not signing",
                "broken_tenants": ["acme"],
                "sinks": [{ "tenant": "acme", "kind": "webhook", "last_error": "refused by hooks.acme" }],
            })
        );
    }
}
