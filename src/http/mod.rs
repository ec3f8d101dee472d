//! The HTTP layer: the request-context middleware, bounded body reading,
//! the authentication throttle, health and metrics endpoints, the graceful
//! stop's stream cutoff and the route table. The client call itself is
//! `crate::gateway`; the admin plane is `crate::admin`.

pub mod body;
pub mod browser;
pub mod context;
pub mod health;
pub mod openapi;
pub mod prometheus;
pub mod routes;
pub mod shutdown;
pub mod throttle;
pub mod tls;

use crate::error::ApiError;
use actix_web::dev::ResourceDef;
use actix_web::{HttpRequest, HttpResponse, web};
use std::sync::OnceLock;

/// The route table (declared in [`routes`], documented at `/openapi.json`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    routes::register(cfg);
}

/// What no route took: 405 with `Allow` when the path is served for other
/// methods, else 404; both in the API's error shape.
pub async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let allow = methods_serving(request.path());
    if allow.is_empty() {
        return Err(ApiError::NotFound(
            "Unknown route; see the README for the API".to_owned(),
        ));
    }
    Err(ApiError::MethodNotAllowed {
        method: request.method().to_string(),
        allow: allow.join(", "),
    })
}

/// The methods the route table serves `path` with, in table order.
fn methods_serving(path: &str) -> Vec<&'static str> {
    static PATTERNS: OnceLock<Vec<(ResourceDef, &'static str)>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        routes::ROUTES
            .iter()
            .map(|route| (ResourceDef::new(route.path), route.method))
            .collect()
    });
    let mut methods: Vec<&'static str> = Vec::new();
    for (pattern, method) in patterns {
        if pattern.is_match(path) && !methods.contains(method) {
            methods.push(method);
        }
    }
    methods
}
