//! The request history's filters as query parameters, shared by `GET /api/v1/requests` and the
//! history page (`GET /requests`): one profile, one requester, a time range.

use serde::Deserialize;

use super::audit_query::{non_empty, time_range};
use crate::error::AppResult;
use crate::store::HistoryFilter;

#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only requests of this profile.
    pub profile: Option<String>,
    /// Only requests of this person (their address, any case).
    pub requester: Option<String>,
    /// Filed at or after this time (RFC 3339, or `YYYY-MM-DD[THH:MM]` read as UTC).
    pub from: Option<String>,
    /// Filed before this time; a bare date includes that day.
    pub to: Option<String>,
}

impl HistoryQuery {
    pub fn filter(&self) -> AppResult<HistoryFilter> {
        let (from, to) = time_range(&self.from, &self.to)?;
        Ok(HistoryFilter {
            profile: non_empty(&self.profile).map(str::to_owned),
            requester_email: non_empty(&self.requester).map(str::to_owned),
            from,
            to,
        })
    }

    /// The filters back as query pairs (for links that keep them), empty ones left out.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("profile", &self.profile),
            ("requester", &self.requester),
            ("from", &self.from),
            ("to", &self.to),
        ]
        .into_iter()
        .filter_map(|(k, v)| non_empty(v).map(|v| (k, v)))
        .collect()
    }
}
