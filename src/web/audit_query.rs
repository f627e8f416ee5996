//! The audit filter as a query string and the streamed export: shared by the audit API and the
//! auditor's page, so neither imports the other.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::export::Filter;
use crate::error::{AppError, AppResult};
use crate::web::AppState;

/// Filters of the audit log: times are RFC 3339, or `YYYY-MM-DD[THH:MM]` read as UTC; `from` is
/// inclusive, `to` exclusive, except that a bare date for `to` includes that day.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterQuery {
    /// Events by this actor (an address, or the stored actor like `token:ID:EMAIL`).
    pub actor: Option<String>,
    /// Events of this action, like `request.approved`.
    pub action: Option<String>,
    /// Events of this request (its id).
    pub request: Option<String>,
    /// From this time on.
    pub from: Option<String>,
    /// Before this time.
    pub to: Option<String>,
}

pub fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The times a filter may name: the years the store and the clock can hold (an end date of
/// 9999-12-31 "through that day" is past them).
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

pub fn parse_time(name: &str, s: &str) -> AppResult<OffsetDateTime> {
    let parsed = OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
        let minute = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
        let day = time::macros::format_description!("[year]-[month]-[day]");
        time::PrimitiveDateTime::parse(s, &minute)
            .map(|t| t.assume_utc())
            .or_else(|_| time::Date::parse(s, &day).map(|d| d.midnight().assume_utc()))
            .ok()
    });
    let Some(t) = parsed else {
        return Err(AppError::BadRequest(format!(
            "{name}: {s:?} is not a time (use RFC 3339 or YYYY-MM-DD)"
        )));
    };
    t.checked_to_offset(time::UtcOffset::UTC)
        .filter(|t| YEARS.contains(&t.year()))
        .ok_or_else(|| out_of_range(name, s))
}

fn out_of_range(name: &str, s: &str) -> AppError {
    AppError::BadRequest(format!(
        "{name}: {s:?} is out of range (years {} to {})",
        YEARS.start(),
        YEARS.end()
    ))
}

/// `from` (inclusive) and `to` (exclusive; a bare date means "through that day", what a date
/// picker means) as times.
pub fn time_range(
    from: &Option<String>,
    to: &Option<String>,
) -> AppResult<(Option<OffsetDateTime>, Option<OffsetDateTime>)> {
    let from = non_empty(from).map(|s| parse_time("from", s)).transpose()?;
    let to = non_empty(to)
        .map(|s| {
            let t = parse_time("to", s)?;
            if s.len() == 10 {
                t.checked_add(time::Duration::DAY)
                    .filter(|t| YEARS.contains(&t.year()))
                    .ok_or_else(|| out_of_range("to", s))
            } else {
                Ok(t)
            }
        })
        .transpose()?;
    Ok((from, to))
}

impl FilterQuery {
    pub fn filter(&self) -> AppResult<Filter> {
        let request_id = non_empty(&self.request)
            .map(|r| {
                uuid::Uuid::parse_str(r).map_err(|_| {
                    AppError::BadRequest(format!("request: {r:?} is not a request id"))
                })
            })
            .transpose()?;
        let (from, to) = time_range(&self.from, &self.to)?;
        Ok(Filter {
            actor: non_empty(&self.actor).map(str::to_owned),
            action: non_empty(&self.action).map(str::to_owned),
            request_id,
            from,
            to,
        })
    }

    /// The filter back as a query string (for links that keep it).
    pub fn to_query(&self) -> String {
        let pairs = [
            ("actor", &self.actor),
            ("action", &self.action),
            ("request", &self.request),
            ("from", &self.from),
            ("to", &self.to),
        ];
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            if let Some(v) = non_empty(v) {
                query.append_pair(k, v);
            }
        }
        query.finish()
    }
}

pub fn filter_details(f: &Filter) -> Value {
    json!({
        "actor": f.actor, "action": f.action, "request_id": f.request_id,
        "from": f.from.and_then(|t| t.format(&Rfc3339).ok()),
        "to": f.to.and_then(|t| t.format(&Rfc3339).ok()),
    })
}

/// The export receiver as a body stream.
struct Lines(tokio::sync::mpsc::Receiver<AppResult<Bytes>>);

impl futures_core::Stream for Lines {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map_err(|e| std::io::Error::other(e.to_string()))))
    }
}

/// Records the export and starts streaming it.
pub async fn start_export(
    state: &AppState,
    tenant: &crate::model::Tenant,
    ctx: crate::audit::Ctx,
    filter: Filter,
) -> AppResult<Response> {
    let mut tx = state.store.tenant(tenant.tenant_id).await?;
    tx.append_audit(
        &ctx.event("audit.exported", tenant.slug.clone())
            .details(filter_details(&filter)),
        ctx.now,
    )
    .await?;
    tx.commit().await?;
    let name = if filter.is_empty() {
        format!("audit-{}.jsonl", tenant.slug)
    } else {
        format!("audit-{}-filtered.jsonl", tenant.slug)
    };
    let rx = crate::audit::export::spawn(
        state.store.clone(),
        state.master_key.clone(),
        tenant.tenant_id,
        filter,
        ctx.now,
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(Lines(rx)),
    )
        .into_response())
}
