//! The JSON API under `/api/v1` (DESIGN §8). The bearer token fixes the tenant.

pub mod audit;
mod db;
mod device;
mod me;
mod policy;
mod requests;
mod ssh;
mod tokens;

use axum::Router;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(audit::router())
        .merge(me::router())
        .merge(tokens::router())
        .merge(policy::router())
        .merge(requests::router())
        .merge(ssh::router())
        .merge(db::router())
        .merge(device::router())
}
