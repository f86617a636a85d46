//! `GET /`: the web dashboard. A single self-contained HTML page (no external assets) whose
//! script polls `/v1/status` on every member and shows roles, terms, indexes and lag. A spec's
//! `wwwroot` may replace it with its own `index.html`.

use hyper::Response;
use hyper::header::{self, HeaderValue};

use super::ApiContext;
use super::error::{Body, full};

/// The built-in page, compiled into the binary.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");
/// Largest `wwwroot/index.html` served; a bigger file falls back to the built-in page.
const WWWROOT_INDEX_BYTES_MAX: u64 = 4 * 1024 * 1024;

pub async fn page(ctx: &ApiContext) -> Response<Body> {
    let html = match &ctx.wwwroot {
        Some(dir) => read_override(&dir.join("index.html"))
            .await
            .unwrap_or_else(|| DASHBOARD_HTML.as_bytes().to_vec()),
        None => DASHBOARD_HTML.as_bytes().to_vec(),
    };
    let mut resp = Response::new(full(html));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

async fn read_override(path: &std::path::Path) -> Option<Vec<u8>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let meta = std::fs::metadata(&path).ok()?;
        if meta.len() > WWWROOT_INDEX_BYTES_MAX {
            return None;
        }
        std::fs::read(&path).ok()
    })
    .await
    .ok()
    .flatten()
}
