//! The route table: every route the server serves, declared once.
//!
//! The same declaration registers the routes with actix ([`register`]),
//! feeds the OpenAPI document (`GET /openapi.json`, built by
//! [`super::openapi`] from [`ROUTES`]; that module does not know this one)
//! and drives the tests that walk every route (the admin authorisation test
//! tries each admin route without, or with the wrong, credential). A route cannot be served without being documented,
//! nor documented without being served.

use super::{health, openapi, prometheus};
use crate::admin::{
    admin_keys, billing, login, logs, metrics, models as admin_models, oplog, prices,
    provider_edit, providers, sessions, tokens, users,
};
use crate::gateway::doors::{chat, completions, models, proxy, self_service};
use crate::ui;
use actix_web::{HttpResponse, web};
use std::sync::OnceLock;

pub use super::openapi::{Access, RouteDoc};

macro_rules! route_table {
    ($( $method:ident $path:literal => $handler:path, $access:ident, $summary:literal; )*) => {
        /// Every route, in registration order.
        pub const ROUTES: &[RouteDoc] = &[
            $( RouteDoc {
                method: route_table!(@name $method),
                path: $path,
                access: Access::$access,
                summary: $summary,
            }, )*
        ];

        /// Registers every route of [`ROUTES`].
        pub fn register(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, route_table!(@method $method).to($handler)); )*
        }
    };
    (@method get) => { web::get() };
    (@method head) => { web::head() };
    (@method post) => { web::post() };
    (@method put) => { web::put() };
    (@method patch) => { web::patch() };
    (@method delete) => { web::delete() };
    (@method any) => { web::route() };
    (@name get) => { "GET" };
    (@name head) => { "HEAD" };
    (@name post) => { "POST" };
    (@name put) => { "PUT" };
    (@name patch) => { "PATCH" };
    (@name delete) => { "DELETE" };
    (@name any) => { "ANY" };
}

route_table! {
    // Operations.
    get "/" => health::root, Public, "What answers here (Claude Code probes it with HEAD)";
    head "/" => health::root, Public, "What answers here, headers only";
    get "/healthz" => health::healthz, Public, "Liveness";
    head "/healthz" => health::healthz, Public, "Liveness, headers only (load balancers probe with HEAD)";
    get "/readyz" => health::readyz, Public, "Readiness: database reachable and a usable key; what is not ready, explained";
    head "/readyz" => health::readyz, Public, "Readiness, headers only";
    get "/openapi.json" => openapi_document, Public, "This OpenAPI document";
    get "/metrics" => prometheus::metrics, Admin, "Prometheus metrics: requests per provider and status, key health";

    // Client API.
    post "/v1/chat/completions" => chat::chat_completions, Gateway, "OpenAI chat completion, streamed or not, served by any provider kind";
    post "/v1/completions" => completions::completions, Gateway, "Legacy text completion (OpenAI-wire providers)";
    post "/v1/embeddings" => completions::embeddings, Gateway, "Embeddings, float or base64 (OpenAI-wire providers)";
    post "/v1/messages" => chat::messages, Gateway, "Anthropic Messages, streamed or not, served by any provider kind";
    post "/v1/messages/count_tokens" => chat::count_tokens, Gateway, "Anthropic token count (exact upstream, else estimated)";
    get "/v1/models" => models::list_models, Gateway, "Models the token may use";
    get "/v1/token/balance" => self_service::balance, Gateway, "The caller's token: limits, spend, what is left, quotas";
    get "/v1/token/usage" => self_service::usage, Gateway, "The caller's usage by day and by model";
    any "/proxy/{provider}/{tail:.*}" => proxy::proxy, Gateway, "Any other provider endpoint, relayed byte for byte with a pool key";

    // Admin login.
    post "/auth/challenge" => login::challenge, Public, "Ed25519 login, step 1: a single-use nonce and the message to sign";
    post "/auth/verify" => login::verify, Public, "Ed25519 login, step 2: the signature for a session token";

    // Dashboard.
    get "/ui" => ui::index, Public, "The web dashboard (files embedded in the binary; it uses only this API)";
    get "/ui/{path:.*}" => ui::asset, Public, "A file of the web dashboard";
    post "/auth/master" => login::master, Public, "Dashboard login with the master key (where enabled): a session cookie and CSRF token";
    get "/auth/session" => login::session, Admin, "Who is logged in; the dashboard's CSRF token for its session cookie";
    post "/auth/logout" => login::logout, Admin, "Revoke the caller's session and clear the dashboard's cookie";
    get "/admin/request-logs/{id}" => logs::show, Admin, "One request's log row (by id or request id)";

    // Admin API.
    post "/admin/tokens" => tokens::create, Admin, "Create a gateway token (shown once) with its limits";
    get "/admin/tokens" => tokens::list, Admin, "List gateway tokens";
    get "/admin/tokens/{id}" => tokens::get, Admin, "Show a gateway token";
    patch "/admin/tokens/{id}" => tokens::update, Admin, "Change a token's limits (null lifts one)";
    delete "/admin/tokens/{id}" => tokens::delete, Admin, "Delete a gateway token";
    post "/admin/tokens/{id}/disable" => tokens::disable, Admin, "Disable a gateway token";
    post "/admin/tokens/{id}/enable" => tokens::enable, Admin, "Enable a gateway token";
    post "/admin/tokens/{id}/rotate" => tokens::rotate, Admin, "Rotate a token's secret; the old one works for a grace period";
    post "/admin/users" => users::create, Admin, "Create a user";
    get "/admin/users" => users::list, Admin, "List users";
    get "/admin/users/{id}" => users::get, Admin, "Show a user";
    patch "/admin/users/{id}" => users::update, Admin, "Change a user (status, prepaid, multiplier, name)";
    delete "/admin/users/{id}" => users::delete, Admin, "Delete a user without tokens";
    post "/admin/users/{id}/topup" => users::topup, Admin, "Add to a user's balance";
    get "/admin/billing" => billing::list, Admin, "Billing records: charges and top-ups";
    get "/admin/model-prices" => prices::list, Admin, "List model prices";
    put "/admin/model-prices/{model:.*}" => prices::put, Admin, "Set a model's price";
    delete "/admin/model-prices/{model:.*}" => prices::delete, Admin, "Delete a model's price";
    get "/admin/unpriced-models" => prices::unpriced, Admin, "Models served without a price";
    get "/admin/request-logs" => logs::list, Admin, "Request logs, filtered and paged";
    get "/admin/operation-logs" => oplog::list, Admin, "Operation log: who changed what";
    get "/admin/admin-keys" => admin_keys::list, Admin, "List admin keys (fingerprints)";
    post "/admin/admin-keys" => admin_keys::create, Admin, "Register an admin public key";
    delete "/admin/admin-keys/{id}" => admin_keys::delete, Admin, "Remove an admin key and its sessions";
    post "/admin/admin-keys/{id}/disable" => admin_keys::disable, Admin, "Disable an admin key";
    post "/admin/admin-keys/{id}/enable" => admin_keys::enable, Admin, "Enable an admin key";
    get "/admin/sessions" => sessions::list, Admin, "List admin sessions";
    delete "/admin/sessions/{id}" => sessions::revoke, Admin, "Revoke an admin session";
    get "/admin/metrics/summary" => metrics::summary, Admin, "Requests, success rate, tokens, cost and latency percentiles for a time range";
    get "/admin/metrics/models-distribution" => metrics::models_distribution, Admin, "Per-model share of requests, tokens and cost";
    get "/admin/metrics/timeseries" => metrics::timeseries, Admin, "Requests, errors, tokens, cost and p50 latency by hour or day";
    get "/admin/models" => admin_models::list, Admin, "Routable models and each provider's cached model list";
    post "/admin/models/{provider}/refresh" => admin_models::refresh, Admin, "Fetch a provider's model list now";
    get "/admin/redirects" => admin_models::list_redirects, Admin, "List redirect rules";
    put "/admin/redirects/{from:.*}" => admin_models::put_redirect, Admin, "Set a redirect rule";
    delete "/admin/redirects/{from:.*}" => admin_models::delete_redirect, Admin, "Delete a redirect rule";
    get "/admin/providers" => providers::list, Admin, "List providers";
    post "/admin/providers" => provider_edit::create, Admin, "Add a provider (live)";
    get "/admin/providers/{name}" => provider_edit::show, Admin, "Show a provider, keys masked";
    patch "/admin/providers/{name}" => provider_edit::update, Admin, "Change a provider (live)";
    delete "/admin/providers/{name}" => provider_edit::delete, Admin, "Remove a provider and its keys (live)";
    get "/admin/providers/{name}/health" => providers::health, Admin, "Each key's health";
    post "/admin/providers/{name}/keys" => providers::add_key, Admin, "Add a provider key (encrypted at rest)";
    post "/admin/providers/{name}/keys/{id}/enable" => providers::enable_key, Admin, "Enable a provider key";
    post "/admin/providers/{name}/keys/{id}/disable" => providers::disable_key, Admin, "Disable a provider key";
    delete "/admin/providers/{name}/keys/{id}" => providers::delete_key, Admin, "Remove a provider key";
}

/// `GET /openapi.json`: the document of [`ROUTES`], built once.
async fn openapi_document() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.get_or_init(|| openapi::build(ROUTES)).clone())
}
