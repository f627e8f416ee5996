//! Process-wide counters and histograms that `/metrics` exposes beside what it reads from the
//! store: HTTP requests by route template and status, credentials issued and refused, sign-in
//! attempts, expiry lateness and reaper pass time. Kept in memory per process (each replica
//! reports its own; Prometheus sums them), never labelled by tenant, so they are aggregates an
//! anonymous scrape may read. Written by hand, like the exposition: a few maps behind mutexes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::AppError;

/// Upper bounds (seconds) of the HTTP latency buckets.
pub const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds (seconds) of the expiry lateness buckets: the reaper runs every 5 s.
pub const LATENESS_BUCKETS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Upper bounds (seconds) of the reaper pass duration buckets.
pub const PASS_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A cumulative histogram with fixed bucket bounds (`+Inf` implied).
#[derive(Debug, Clone)]
pub struct Histogram {
    pub bounds: &'static [f64],
    /// Observations `<= bounds[i]`, not yet cumulative; the last slot is `+Inf`.
    counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let value = if value.is_finite() { value } else { 0.0 };
        let slot = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get_mut(slot) {
            *c += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// `(le, cumulative count)` per bucket, `+Inf` last.
    pub fn buckets(&self) -> Vec<(String, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            total += c;
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            out.push((le, total));
        }
        out
    }
}

/// What kind of credential an issuance was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Credential {
    SshCertificate,
    DbLogin,
}

impl Credential {
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::SshCertificate => "ssh_certificate",
            Credential::DbLogin => "db_login",
        }
    }
}

/// How someone signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SignInMethod {
    /// Asking for an email link (outcome `link_sent` when accepted: the same for any address).
    EmailLinkAsk,
    /// Redeeming an email link.
    EmailLink,
    Oidc,
    Passkey,
}

impl SignInMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInMethod::EmailLinkAsk => "email_link_ask",
            SignInMethod::EmailLink => "email_link",
            SignInMethod::Oidc => "oidc",
            SignInMethod::Passkey => "passkey",
        }
    }
}

/// A bounded label for why something was refused: the class of the error, never its text.
pub fn reason(e: &AppError) -> &'static str {
    match e {
        AppError::BadRequest(_) | AppError::Unprocessable(_) | AppError::TooLarge(_) => "invalid",
        AppError::Unauthorized(_) => "unauthorized",
        AppError::Forbidden(_) => "forbidden",
        AppError::StepUpRequired(_) => "step_up_required",
        AppError::NotFound(_) => "not_found",
        AppError::Conflict(_) => "not_allowed_now",
        AppError::TooManyRequests { .. } => "rate_limited",
        AppError::Unavailable(_) => "unavailable",
        AppError::Internal(_) => "internal",
    }
}

/// The method as a label: the standard ones, anything else `other` (clients choose the method,
/// and a label they choose would let them add series without bound).
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

type HttpKey = (&'static str, String, u16);

/// Everything this process counts. One per `AppState`, shared with the reaper.
#[derive(Debug)]
pub struct Telemetry {
    http: Mutex<BTreeMap<HttpKey, Histogram>>,
    issued: Mutex<BTreeMap<Credential, u64>>,
    refused: Mutex<BTreeMap<(Credential, &'static str), u64>>,
    sign_ins: Mutex<BTreeMap<(SignInMethod, &'static str), u64>>,
    expiry_lateness: Mutex<Histogram>,
    reaper_pass: Mutex<Histogram>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            http: Mutex::default(),
            issued: Mutex::default(),
            refused: Mutex::default(),
            sign_ins: Mutex::default(),
            expiry_lateness: Mutex::new(Histogram::new(LATENESS_BUCKETS)),
            reaper_pass: Mutex::new(Histogram::new(PASS_BUCKETS)),
        }
    }
}

/// A consistent copy of the counters, for rendering.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// (method, route template, status) → latency histogram.
    pub http: Vec<(HttpKey, Histogram)>,
    pub issued: Vec<(Credential, u64)>,
    pub refused: Vec<((Credential, &'static str), u64)>,
    pub sign_ins: Vec<((SignInMethod, &'static str), u64)>,
    pub expiry_lateness: Histogram,
    pub reaper_pass: Histogram,
}

fn copy<K: Clone, V: Clone>(m: &Mutex<BTreeMap<K, V>>) -> Vec<(K, V)> {
    m.lock()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

impl Telemetry {
    /// One HTTP request: `route` is the matched route template (`/api/v1/requests/{id}`), never
    /// the raw path, so the series stay few and hold no identifiers.
    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.http.lock() {
            m.entry((method_label(method), route.to_owned(), status))
                .or_insert_with(|| Histogram::new(HTTP_BUCKETS))
                .observe(seconds);
        }
    }

    /// The outcome of an attempt to issue a credential.
    pub fn credential<T>(&self, kind: Credential, result: &Result<T, AppError>) {
        match result {
            Ok(_) => {
                if let Ok(mut m) = self.issued.lock() {
                    *m.entry(kind).or_default() += 1;
                }
            }
            Err(e) => {
                if let Ok(mut m) = self.refused.lock() {
                    *m.entry((kind, reason(e))).or_default() += 1;
                }
            }
        }
    }

    /// The outcome of a sign-in attempt (`success`, or the refusal's [`reason`]).
    pub fn sign_in<T>(&self, method: SignInMethod, result: &Result<T, AppError>) {
        let outcome = match (method, result) {
            (SignInMethod::EmailLinkAsk, Ok(_)) => "link_sent",
            (_, Ok(_)) => "success",
            (_, Err(e)) => reason(e),
        };
        if let Ok(mut m) = self.sign_ins.lock() {
            *m.entry((method, outcome)).or_default() += 1;
        }
    }

    /// A grant expired `seconds` after its end.
    pub fn expiry_lateness(&self, seconds: f64) {
        if let Ok(mut h) = self.expiry_lateness.lock() {
            h.observe(seconds.max(0.0));
        }
    }

    /// A reaper pass took `seconds`.
    pub fn reaper_pass(&self, seconds: f64) {
        if let Ok(mut h) = self.reaper_pass.lock() {
            h.observe(seconds);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let histogram = |m: &Mutex<Histogram>, bounds| {
            m.lock()
                .map(|h| h.clone())
                .unwrap_or_else(|_| Histogram::new(bounds))
        };
        Snapshot {
            http: copy(&self.http),
            issued: copy(&self.issued),
            refused: copy(&self.refused),
            sign_ins: copy(&self.sign_ins),
            expiry_lateness: histogram(&self.expiry_lateness, LATENESS_BUCKETS),
            reaper_pass: histogram(&self.reaper_pass, PASS_BUCKETS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_with_inf_last() {
        let mut h = Histogram::new(&[1.0, 5.0]);
        for v in [0.5, 1.0, 3.0, 7.0, f64::NAN] {
            h.observe(v);
        }
        assert_eq!(
            h.buckets(),
            vec![("1".into(), 3), ("5".into(), 4), ("+Inf".into(), 5)]
        );
        assert_eq!(h.count, 5);
        assert!((h.sum - 11.5).abs() < 1e-9);
    }

    #[test]
    fn methods_clients_make_up_are_one_label() {
        let t = Telemetry::default();
        for m in ["GET", "BREW", "PROPFIND", "get"] {
            t.http_request(m, "unmatched", 405, 0.001);
        }
        let methods: Vec<&str> = t.snapshot().http.iter().map(|(k, _)| k.0).collect();
        assert_eq!(methods, vec!["GET", "other"]);
    }

    #[test]
    fn refusals_and_sign_ins_are_labelled_by_class_not_text() {
        let t = Telemetry::default();
        t.credential::<()>(Credential::DbLogin, &Ok(()));
        t.credential::<()>(
            Credential::DbLogin,
            &Err(AppError::Conflict(
                "the grant is not active (secret detail)".into(),
            )),
        );
        t.sign_in::<()>(SignInMethod::EmailLinkAsk, &Ok(()));
        t.sign_in::<()>(
            SignInMethod::EmailLink,
            &Err(AppError::Unauthorized("x".into())),
        );
        let s = t.snapshot();
        assert_eq!(s.issued, vec![(Credential::DbLogin, 1)]);
        assert_eq!(
            s.refused,
            vec![((Credential::DbLogin, "not_allowed_now"), 1)]
        );
        assert_eq!(
            s.sign_ins,
            vec![
                ((SignInMethod::EmailLinkAsk, "link_sent"), 1),
                ((SignInMethod::EmailLink, "unauthorized"), 1)
            ]
        );
    }
}
