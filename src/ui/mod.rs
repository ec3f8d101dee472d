//! The web dashboard, served at `/ui` from files compiled into the binary.
//!
//! Policy:
//! - Every file of `src/ui/assets/` the page loads is listed in [`ASSETS`]
//!   and embedded with `include_bytes!`, in debug and release builds alike:
//!   no separate server, no build step, nothing read from disk or fetched
//!   from the internet at run time. (A static table rather than
//!   `rust-embed`: a dozen files do not need a crate, a proc macro and a
//!   debug-mode disk reader whose behaviour differs from release.)
//! - The page is a small single-page app (plain ES modules, no bundler) that
//!   talks only to the admin API, with the session cookie
//!   (`crate::admin::session_cookie`).
//! - Every `/ui` answer, 404 included, carries a strict
//!   `Content-Security-Policy` (no inline script or style, nothing from
//!   another origin, no framing), `X-Content-Type-Options: nosniff` and
//!   `Referrer-Policy: no-referrer`.
//! - Files are answered with their type, an `ETag` (SHA-256 of the bytes,
//!   computed once) and `Cache-Control: no-cache`: names carry no hash, so
//!   the browser revalidates, and an unchanged file costs a 304.

use crate::error::ApiError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Path;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The policy of every `/ui` answer (the list, verbatim).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// One embedded file: its path under `/ui/`, its content type, its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($( $path:literal => $content_type:expr, )*) => {
        const ASSETS: &[Asset] = &[
            $( Asset {
                path: $path,
                content_type: $content_type,
                bytes: include_bytes!(concat!("assets/", $path)),
            }, )*
        ];
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

assets! {
    "index.html" => HTML,
    "app.css" => CSS,
    "icon.svg" => "image/svg+xml",
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "login.js" => JS,
    "chart.js" => JS,
    "pages/overview.js" => JS,
    "pages/providers.js" => JS,
    "pages/tokens.js" => JS,
    "pages/users.js" => JS,
    "pages/logs.js" => JS,
    "pages/prices.js" => JS,
    "pages/oplog.js" => JS,
    "vendor/uPlot.iife.min.js" => JS,
    "vendor/uPlot.min.css" => CSS,
}

/// Each asset's `ETag`, in [`ASSETS`] order, computed on first use.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let digest = Sha256::digest(asset.bytes);
                format!("\"{}\"", hex::encode(digest.get(..16).unwrap_or_default()))
            })
            .collect()
    })
}

/// Adds the headers every `/ui` answer carries.
fn secure(response: &mut HttpResponse) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn serve(request: &HttpRequest, path: &str) -> HttpResponse {
    let path = if path.is_empty() { "index.html" } else { path };
    let found = ASSETS
        .iter()
        .zip(etags())
        .find(|(asset, _)| asset.path == path);
    let mut response = match found {
        None => ApiError::NotFound(format!("No dashboard file `/ui/{path}`")).error_response(),
        Some((asset, etag)) => {
            let fresh = request
                .headers()
                .get(header::IF_NONE_MATCH)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
            let mut builder = if fresh {
                HttpResponseBuilder::new(StatusCode::NOT_MODIFIED)
            } else {
                HttpResponse::Ok()
            };
            builder
                .insert_header((header::ETAG, etag.as_str()))
                .insert_header((header::CACHE_CONTROL, "no-cache"));
            if fresh {
                builder.finish()
            } else {
                builder.content_type(asset.content_type).body(asset.bytes)
            }
        }
    };
    secure(&mut response);
    response
}

/// `GET /ui`: the page.
pub async fn index(request: HttpRequest) -> HttpResponse {
    serve(&request, "")
}

/// `GET /ui/{path}`: a file of the page (`/ui/` is the page too).
pub async fn asset(request: HttpRequest, path: Path<String>) -> HttpResponse {
    serve(&request, path.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_the_type_of_its_extension() {
        for asset in ASSETS {
            let expected = match asset.path.rsplit('.').next() {
                Some("html") => HTML,
                Some("js") => JS,
                Some("css") => CSS,
                Some("svg") => "image/svg+xml",
                other => panic!("no type for {other:?}"),
            };
            assert_eq!(asset.content_type, expected, "{}", asset.path);
        }
    }

    #[test]
    fn etags_differ_per_file() {
        let tags = etags();
        assert_eq!(tags.len(), ASSETS.len());
        let unique: std::collections::HashSet<_> = tags.iter().collect();
        assert_eq!(unique.len(), tags.len());
    }
}
