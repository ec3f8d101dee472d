//! The route table: every route the server serves, declared once.
//!
//! The same declaration registers the routes with actix ([`register`]),
//! feeds the OpenAPI document (`GET /openapi.json`, built by
//! [`super::openapi`] from [`ROUTES`]; that module does not know this one)
//! and drives the tests that walk every route (the admin authorisation test
//! tries each admin route without, or with the wrong, credential, and with
//! each role). An admin route states the least role it needs
//! (`Admin(Viewer)`, `Admin(Operator)`, `Admin(Admin)`; a bare `Admin` does
//! not compile), which [`least_role`] gives `AdminAuth` to enforce. A route cannot be served without being documented,
//! nor documented without being served.

use super::{health, openapi, prometheus};
use crate::admin::{
    admin_keys, billing, export, login, logs, metrics, models as admin_models, oplog, prices,
    provider_edit, providers, reload, sessions, tokens, users,
};
use crate::gateway::doors::{
    chat, completions, gemini, media, media_upload, models, proxy, responses, self_service,
};
use crate::ui;
use actix_web::{HttpResponse, web};
use std::collections::HashMap;
use std::sync::OnceLock;

pub use super::openapi::{Access, RouteDoc};
use crate::auth::Role;

macro_rules! route_table {
    ($( $method:ident $path:literal => $handler:path, $access:ident $(($role:ident))?, $summary:literal; )*) => {
        /// Every route, in registration order.
        pub const ROUTES: &[RouteDoc] = &[
            $( RouteDoc {
                method: route_table!(@name $method),
                path: $path,
                access: Access::$access,
                role: route_table!(@role $access $($role)?),
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
    // An admin route states the least role it needs: `Admin(Viewer)`.
    (@role Admin) => { compile_error!("an Admin route states its least role: Admin(Viewer), Admin(Operator) or Admin(Admin)") };
    (@role Admin $role:ident) => { Some(Role::$role) };
    (@role $access:ident) => { None };
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
    get "/metrics" => prometheus::metrics, Admin(Viewer), "Prometheus metrics: latency, tokens, cost, attempts, key states, usage queue, database pool (also readable with metrics.token)";

    // Client API.
    post "/v1/chat/completions" => chat::chat_completions, Gateway, "OpenAI chat completion, streamed or not, served by any provider kind";
    post "/v1/completions" => completions::completions, Gateway, "Legacy text completion (OpenAI-wire providers)";
    post "/v1/embeddings" => completions::embeddings, Gateway, "Embeddings, float or base64 (OpenAI-wire providers)";
    post "/v1/images/generations" => media::image_generations, Gateway, "Image generation, billed per image (and gpt-image tokens); providers with the endpoint";
    post "/v1/audio/speech" => media::speech_generation, Gateway, "Text to speech: audio bytes, billed per input character; providers with the endpoint";
    post "/v1/rerank" => media::rerank_documents, Gateway, "Rerank documents (Cohere/Jina shape), billed per search unit and token; providers with the endpoint";
    post "/v1/images/edits" => media_upload::image_edits, Gateway, "Edit images (multipart upload), billed per image and token";
    post "/v1/audio/transcriptions" => media_upload::transcriptions, Gateway, "Transcribe audio (multipart upload), billed per second of audio or per token";
    post "/v1/audio/translations" => media_upload::translations, Gateway, "Translate audio into English (multipart upload), billed per second of audio";
    post "/v1/messages" => chat::messages, Gateway, "Anthropic Messages, streamed or not, served by any provider kind";
    post "/v1/messages/count_tokens" => chat::count_tokens, Gateway, "Anthropic token count (exact upstream, else estimated)";
    get "/v1/responses/{id}" => responses::retrieve, Gateway, "A stored response, from the OpenAI provider that made it (404 for ids the gateway did not see made)";
    delete "/v1/responses/{id}" => responses::delete, Gateway, "Delete a stored response at the OpenAI provider that made it";
    post "/v1/responses" => responses::create, Gateway, "OpenAI Responses API, streamed or not: passed through to OpenAI providers, translated to chat for the others";
    get "/v1/models" => models::list_models, Gateway, "Models the token may use";
    get "/v1beta/models" => gemini::list_models, Gateway, "Gemini: the models the token may use, in Google's shape";
    get "/v1beta/models/{target:.+}" => gemini::get_model, Gateway, "Gemini: one model the token may use";
    post "/v1beta/models/{target:.+}" => gemini::model_call, Gateway, "Gemini {model}:generateContent, :streamGenerateContent (SSE) and :countTokens, served by any provider kind";
    post "/v1/models/{target:.+}" => gemini::model_call, Gateway, "The same Gemini calls under Google's v1 (the google-genai SDKs' default version)";
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
    get "/auth/session" => login::session, Admin(Viewer), "Who is logged in; the dashboard's CSRF token for its session cookie";
    post "/auth/logout" => login::logout, Admin(Viewer), "Revoke the caller's session and clear the dashboard's cookie";
    get "/admin/request-logs/export" => export::export, Admin(Viewer), "Request logs of a time range as JSON lines or CSV, streamed (export before retention deletes them)";
    get "/admin/request-logs/{id}" => logs::show, Admin(Viewer), "One request's log row (by id or request id)";

    // Admin API.
    post "/admin/tokens" => tokens::create, Admin(Operator), "Create a gateway token (shown once) with its limits";
    get "/admin/tokens" => tokens::list, Admin(Viewer), "List gateway tokens";
    get "/admin/tokens/{id}" => tokens::get, Admin(Viewer), "Show a gateway token";
    patch "/admin/tokens/{id}" => tokens::update, Admin(Operator), "Change a token's limits (null lifts one)";
    delete "/admin/tokens/{id}" => tokens::delete, Admin(Operator), "Delete a gateway token";
    post "/admin/tokens/{id}/disable" => tokens::disable, Admin(Operator), "Disable a gateway token";
    post "/admin/tokens/{id}/enable" => tokens::enable, Admin(Operator), "Enable a gateway token";
    post "/admin/tokens/{id}/rotate" => tokens::rotate, Admin(Operator), "Rotate a token's secret; the old one works for a grace period";
    post "/admin/users" => users::create, Admin(Operator), "Create a user";
    get "/admin/users" => users::list, Admin(Viewer), "List users";
    get "/admin/users/{id}" => users::get, Admin(Viewer), "Show a user";
    patch "/admin/users/{id}" => users::update, Admin(Operator), "Change a user (status, prepaid, multiplier, name)";
    delete "/admin/users/{id}" => users::delete, Admin(Operator), "Delete a user without tokens";
    post "/admin/users/{id}/topup" => users::topup, Admin(Operator), "Add to a user's balance";
    get "/admin/billing" => billing::list, Admin(Viewer), "Billing records: charges and top-ups";
    get "/admin/model-prices" => prices::list, Admin(Viewer), "List model prices";
    put "/admin/model-prices/{model:.*}" => prices::put, Admin(Operator), "Set a model's price";
    delete "/admin/model-prices/{model:.*}" => prices::delete, Admin(Operator), "Delete a model's price";
    get "/admin/unpriced-models" => prices::unpriced, Admin(Viewer), "Models served without a price";
    get "/admin/request-logs" => logs::list, Admin(Viewer), "Request logs, filtered and paged";
    get "/admin/operation-logs" => oplog::list, Admin(Viewer), "Operation log: who changed what";
    get "/admin/admin-keys" => admin_keys::list, Admin(Viewer), "List admin keys (fingerprints)";
    post "/admin/admin-keys" => admin_keys::create, Admin(Admin), "Register an admin public key";
    delete "/admin/admin-keys/{id}" => admin_keys::delete, Admin(Admin), "Remove an admin key and its sessions";
    patch "/admin/admin-keys/{id}" => admin_keys::update, Admin(Admin), "Change an admin key's role (its sessions follow at once)";
    post "/admin/admin-keys/{id}/disable" => admin_keys::disable, Admin(Admin), "Disable an admin key";
    post "/admin/admin-keys/{id}/enable" => admin_keys::enable, Admin(Admin), "Enable an admin key";
    get "/admin/sessions" => sessions::list, Admin(Viewer), "List admin sessions";
    delete "/admin/sessions/{id}" => sessions::revoke, Admin(Viewer), "Revoke an admin session";
    get "/admin/metrics/summary" => metrics::summary, Admin(Viewer), "Requests, success rate, tokens, cost and latency percentiles for a time range";
    get "/admin/metrics/top" => metrics::top, Admin(Viewer), "Top models, tokens or providers by cost over the last hour, day or week";
    get "/admin/metrics/models-distribution" => metrics::models_distribution, Admin(Viewer), "Per-model share of requests, tokens and cost";
    get "/admin/metrics/timeseries" => metrics::timeseries, Admin(Viewer), "Requests, errors, tokens, cost and p50 latency by hour or day";
    get "/admin/models" => admin_models::list, Admin(Viewer), "Routable models and each provider's cached model list";
    post "/admin/models/{provider}/refresh" => admin_models::refresh, Admin(Operator), "Fetch a provider's model list now";
    get "/admin/redirects" => admin_models::list_redirects, Admin(Viewer), "List redirect rules";
    put "/admin/redirects/{from:.*}" => admin_models::put_redirect, Admin(Operator), "Set a redirect rule";
    delete "/admin/redirects/{from:.*}" => admin_models::delete_redirect, Admin(Operator), "Delete a redirect rule";
    get "/admin/providers" => providers::list, Admin(Viewer), "List providers";
    post "/admin/providers" => provider_edit::create, Admin(Operator), "Add a provider (live)";
    get "/admin/providers/{name}" => provider_edit::show, Admin(Viewer), "Show a provider, keys masked";
    patch "/admin/providers/{name}" => provider_edit::update, Admin(Operator), "Change a provider (live)";
    delete "/admin/providers/{name}" => provider_edit::delete, Admin(Operator), "Remove a provider and its keys (live)";
    get "/admin/providers/{name}/health" => providers::health, Admin(Viewer), "Each key's health";
    post "/admin/providers/{name}/keys" => providers::add_key, Admin(Operator), "Add a provider key (encrypted at rest)";
    post "/admin/providers/{name}/keys/{id}/enable" => providers::enable_key, Admin(Operator), "Enable a provider key";
    post "/admin/providers/{name}/keys/{id}/disable" => providers::disable_key, Admin(Operator), "Disable a provider key";
    delete "/admin/providers/{name}/keys/{id}" => providers::delete_key, Admin(Operator), "Remove a provider key";
    post "/admin/reload" => reload::reload, Admin(Admin), "Re-read the settings files and apply providers, keys, models, redirects, prices and limits (like SIGHUP)";
}

/// The least role the admin route `method` + `pattern` (as actix matched it,
/// `HttpRequest::match_pattern`) needs; `None` for a route that is not an
/// admin route of [`ROUTES`]. Built once from the table, so the policy is
/// stated only there.
pub fn least_role(method: &str, pattern: &str) -> Option<Role> {
    static TABLE: OnceLock<HashMap<(&'static str, &'static str), Role>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            ROUTES
                .iter()
                .filter_map(|route| Some(((route.method, route.path), route.role?)))
                .collect()
        })
        .get(&(method, pattern))
        .copied()
}

/// `GET /openapi.json`: the document of [`ROUTES`], built once.
async fn openapi_document() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.get_or_init(|| openapi::build(ROUTES)).clone())
}
