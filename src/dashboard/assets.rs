//! The web UI's files (`ui/dist`, built by Vite), embedded in the binary so that a release is
//! one file. Paths that are not files get `index.html`, so the UI's own routes (`/requests`)
//! survive a reload. A build without `ui/dist` serves a page that says how to build it.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// Headers every UI response carries: a strict CSP (no inline script or style, no framing),
/// no sniffing, no referrer.
pub fn harden(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(not(ui_missing))]
mod files {
    #[derive(rust_embed::RustEmbed)]
    #[folder = "ui/dist"]
    pub struct Ui;
}

/// Serves a UI file, or `index.html` for the UI's routes.
#[cfg(not(ui_missing))]
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let (file, name) = match <files::Ui as rust_embed::RustEmbed>::get(path) {
        Some(file) if !path.is_empty() => (file, path),
        _ if path.starts_with("assets/") => return StatusCode::NOT_FOUND.into_response(),
        _ => match <files::Ui as rust_embed::RustEmbed>::get("index.html") {
            Some(file) => (file, "index.html"),
            None => return StatusCode::NOT_FOUND.into_response(),
        },
    };
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    // Vite puts a content hash in every name under assets/: those never change.
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, mime.as_ref().to_string()),
            (header::CACHE_CONTROL, cache.to_string()),
        ],
        file.data.into_owned(),
    )
        .into_response();
    harden(&mut response);
    response
}

#[cfg(ui_missing)]
pub async fn serve(_uri: Uri) -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::response::Html(
            "<!doctype html><title>Claude Nexus</title><h1>The dashboard UI was not built</h1>\
             <p>This binary was built without <code>ui/dist</code>. Build the UI, then the binary:</p>\
             <pre>(cd ui &amp;&amp; npm ci &amp;&amp; npm run build)\ncargo build --release</pre>\
             <p><code>scripts/run.sh</code> does both.</p>",
        ),
    )
        .into_response();
    harden(&mut response);
    response
}
