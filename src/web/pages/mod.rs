//! Server-rendered pages (askama). Each page has its view struct beside its handler and its
//! template under `templates/` at the same path.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index))
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/index.html")]
struct IndexPage {
    public_url: String,
    version: &'static str,
}

async fn index(State(state): State<AppState>) -> IndexPage {
    IndexPage {
        public_url: state.config.public_url.trim_end_matches('/').to_owned(),
        version: env!("CARGO_PKG_VERSION"),
    }
}
