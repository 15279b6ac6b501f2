//! The console's stylesheet and script, inside the binary. Each is served with a long cache
//! life under a URL that names a hash of its content, so a new release is fetched at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::Failure;

/// Name, media type, content.
const ASSETS: [(&str, &str, &str); 2] = [
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    ),
];

static VERSIONS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|(_, _, body)| hex::encode(&Sha256::digest(body.as_bytes())[..6]))
        .collect()
});

/// The URL of an asset, with its content's hash.
pub fn href(name: &str) -> String {
    let version = ASSETS
        .iter()
        .position(|(n, _, _)| *n == name)
        .map(|i| VERSIONS[i].as_str())
        .unwrap_or("0");
    format!("/console/assets/{name}?v={version}")
}

pub async fn serve(Path(name): Path<String>) -> Result<Response, Failure> {
    let (_, media, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or(Failure::NotFound)?;
    let mut response = (*body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}
