//! Static assets are compiled into the binary: no CDN, nothing to deploy beside it.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

const CSS: &str = include_str!("../../static/elevate.css");
const JS: &str = include_str!("../../static/elevate.js");
const PASSKEYS_JS: &str = include_str!("../../static/passkeys.js");
const PLAYER_JS: &str = include_str!("../../static/player.js");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/elevate.css", get(css))
        .route("/static/elevate.js", get(js))
        .route("/static/passkeys.js", get(passkeys_js))
        .route("/static/player.js", get(player_js))
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        JS,
    )
}

async fn passkeys_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        PASSKEYS_JS,
    )
}

async fn player_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        PLAYER_JS,
    )
}
