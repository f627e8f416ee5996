//! What `/readyz` asks beyond the process: do the tenants' signing keys (SSH user CA, audit)
//! open with the master key, does the SMTP server speak, does each OpenID provider answer
//! discovery. The probes run at once, each bounded by [`PROBE_TIMEOUT`], and one result answers
//! every readiness call for [`PROBE_TTL`] (load balancers ask every few seconds). The SMTP and
//! OpenID probes are the ones `elevate doctor` runs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::AppState;
use super::health::Viewer;

/// How long one round of probes answers `/readyz`.
pub const PROBE_TTL: Duration = Duration::from_secs(30);
/// How long any one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One round of probes.
#[derive(Debug, Clone, Default)]
pub struct Probed {
    /// Active signing keys that do not open: (tenant, purpose, why).
    pub keys_failing: Vec<(String, &'static str, String)>,
    /// The keys could not be checked at all (the store did not answer in time).
    pub keys_unchecked: Option<String>,
    /// `None`: mail does not go over SMTP (not configured, or the demo outbox).
    pub mail: Option<Result<(), String>>,
    pub mail_state: &'static str,
    /// Per tenant with single sign-on: its provider's discovery outcome.
    pub oidc: Vec<(String, Result<(), String>)>,
}

/// The last round and when it was taken.
pub struct ProbeCache {
    at: Instant,
    probed: Probed,
}

pub type SharedProbes = std::sync::Arc<tokio::sync::Mutex<Option<ProbeCache>>>;

impl Probed {
    /// No active signing key fails to open. Unready otherwise.
    pub fn keys_ok(&self) -> bool {
        self.keys_failing.is_empty()
    }

    /// Mail or a provider is down, or the keys could not be checked in time (the store is
    /// checked on its own): degraded, never unready.
    pub fn degraded(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.keys_unchecked.is_some() {
            out.push("signing_keys");
        }
        if matches!(self.mail, Some(Err(_))) {
            out.push("mail");
        }
        if self.oidc.iter().any(|(_, r)| r.is_err()) {
            out.push("oidc");
        }
        out
    }

    /// The `checks` entries as `viewer` may see them: states and counts anonymously; the
    /// viewer's own tenant's details with a metrics token.
    pub fn view(&self, viewer: &Viewer) -> (Value, Value, Value) {
        let mine = |t: &String| viewer.tenant() == Some(t.as_str());
        let keys_state = if self.keys_unchecked.is_some() {
            "unchecked"
        } else if self.keys_failing.is_empty() {
            "ok"
        } else {
            "failing"
        };
        let mut keys = json!({ "state": keys_state, "failing": self.keys_failing.len() });
        if viewer.tenant().is_some() {
            keys["failing"] = self
                .keys_failing
                .iter()
                .filter(|(t, _, _)| mine(t))
                .map(|(_, purpose, why)| json!({ "key": purpose, "error": why }))
                .collect();
        }
        let mut mail = json!({ "state": self.mail_state });
        if let (Some(Err(e)), Some(_)) = (&self.mail, viewer.tenant()) {
            mail["error"] = json!(e);
        }
        let unreachable = self.oidc.iter().filter(|(_, r)| r.is_err()).count();
        let oidc = match viewer.tenant() {
            None => json!({ "providers": self.oidc.len(), "unreachable": unreachable }),
            Some(_) => match self.oidc.iter().find(|(t, _)| mine(t)) {
                None => json!({ "state": "not configured" }),
                Some((_, Ok(()))) => json!({ "state": "ok" }),
                Some((_, Err(e))) => json!({ "state": "unreachable", "error": e }),
            },
        };
        (keys, mail, oidc)
    }
}

/// The latest probes, taken now if the cached ones are older than [`PROBE_TTL`]. Callers that
/// arrive meanwhile wait for the same round (at most [`PROBE_TIMEOUT`]).
pub async fn probes(state: &AppState) -> Probed {
    let mut cached = state.probes.lock().await;
    if let Some(c) = cached.as_ref().filter(|c| c.at.elapsed() < PROBE_TTL) {
        return c.probed.clone();
    }
    let probed = run(state).await;
    *cached = Some(ProbeCache {
        at: Instant::now(),
        probed: probed.clone(),
    });
    probed
}

async fn run(state: &AppState) -> Probed {
    let keys = tokio::time::timeout(
        PROBE_TIMEOUT,
        crate::signing_keys::unopenable_signing_keys(&state.store, &state.master_key),
    );
    let mail = state.mailer.probe(PROBE_TIMEOUT);
    let oidc = async {
        let mut set = tokio::task::JoinSet::new();
        for (tenant, provider) in &state.config.oidc {
            let (tenant, issuer) = (tenant.clone(), provider.issuer.clone());
            set.spawn(async move {
                let r = crate::auth::oidc::probe_discovery(&issuer, PROBE_TIMEOUT).await;
                if let Err(e) = &r {
                    tracing::warn!(%tenant, %issuer, error = %e, "readiness: OpenID provider unreachable");
                }
                (tenant, r)
            });
        }
        let mut all = set.join_all().await;
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    };
    let (keys, mail, oidc) = tokio::join!(keys, mail, oidc);
    let (keys_failing, keys_unchecked) = match keys {
        Ok(Ok(failing)) => {
            for (tenant, purpose, why) in &failing {
                tracing::error!(%tenant, key = purpose, error = %why, "readiness: a signing key does not open with the master key");
            }
            (failing, None)
        }
        Ok(Err(e)) => (Vec::new(), Some(e.to_string())),
        Err(_) => (Vec::new(), Some("timed out".into())),
    };
    if let Some(Err(e)) = &mail {
        tracing::warn!(error = %e, "readiness: the SMTP server does not answer");
    }
    let mail_state = match (&mail, state.mailer.is_available()) {
        (Some(Ok(())), _) => "ok",
        (Some(Err(_)), _) => "unreachable",
        (None, true) => "outbox",
        (None, false) => "not configured",
    };
    Probed {
        keys_failing,
        keys_unchecked,
        mail,
        mail_state,
        oidc,
    }
}
