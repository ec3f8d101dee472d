//! The one place that turns a lease into an upstream request and says what
//! became of it.
//!
//! Four callers talk to providers: the failover loop
//! (`crate::gateway::failover`), the proxy (`crate::gateway::doors::proxy`),
//! background probes (`crate::probe`) and the model cache
//! (`crate::model_cache`). Each once built its own request from the lease
//! (URL, the provider kind's credentials, the provider's configured headers)
//! and read the outcome its own way; they now share this module, so a new
//! provider kind or header rule is written once.
//!
//! Credentials and the provider's headers are applied last, after whatever
//! the caller adds (a client's relayed headers, `anthropic-beta`): a client
//! can never replace the key the gateway chose, and a provider's configured
//! header always wins.

use crate::providers;
use actix_web::http::Method;
use awc::error::{ConnectError, SendRequestError};
use awc::{ClientRequest, ClientResponse};
use std::time::Duration;
use switchyard_actors::{Failure, Lease};

/// Builds requests on one worker's (or background task's) HTTP client.
#[derive(Clone, Copy)]
pub struct UpstreamClient<'a> {
    client: &'a awc::Client,
}

impl<'a> UpstreamClient<'a> {
    pub fn new(client: &'a awc::Client) -> Self {
        Self { client }
    }

    /// `method` to `path` below the lease's provider base URL, with `query`
    /// appended when not empty, bounded by `timeout` (`None`: the client's
    /// own). `prepare` adds the caller's headers before the credentials.
    pub fn request(
        &self,
        method: Method,
        lease: &Lease,
        path: &str,
        query: &str,
        timeout: Option<Duration>,
        prepare: impl FnOnce(ClientRequest) -> ClientRequest,
    ) -> ClientRequest {
        let spec = &lease.provider;
        let mut url = providers::endpoint_url(spec, path);
        if !query.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(query);
        }
        let mut request = self.client.request(method, url);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let mut request = prepare(request);
        for header in providers::adapter_of(spec).auth_headers(spec, &lease.secret) {
            request = request.insert_header(header);
        }
        for (name, value) in &spec.headers {
            request = request.insert_header((name.as_str(), value.as_str()));
        }
        request
    }
}

/// What a send error says about the key: a timeout, or a connection that
/// failed. (Errors the client's own request caused are the caller's to sort
/// out first: the proxy gives those back without judging the key.)
pub fn send_failure(error: &SendRequestError) -> Failure {
    match error {
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
            Failure::Timeout
        }
        _ => Failure::Connection,
    }
}

/// A short cause for logs and messages, without URLs that could carry secrets.
pub fn send_error_summary(error: &SendRequestError) -> &'static str {
    match error {
        SendRequestError::Connect(_) => "connection failed",
        SendRequestError::Send(_) | SendRequestError::Response(_) => {
            "connection reset or broken answer"
        }
        SendRequestError::Http(_) | SendRequestError::Url(_) => "invalid upstream request",
        SendRequestError::H2(_) => "HTTP/2 error",
        SendRequestError::TunnelNotSupported => "tunnel not supported",
        SendRequestError::Body(_) => "request body error",
        SendRequestError::Custom(..) => "client error",
        _ => "client error",
    }
}

/// The failure an answer's status (and `Retry-After`-style headers) means
/// for the key; `None` for a success (see `providers::classify_status`).
pub fn status_failure<S>(response: &ClientResponse<S>) -> Option<Failure> {
    providers::classify_status(response.status().as_u16(), |name| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    })
}
