//! The model cache: each provider's own model list (`GET {base}/models`,
//! Gemini's `models`, Anthropic's `/v1/models`), fetched at start, then every
//! `upstream.model_refresh_interval` ("0s": never on its own) and on
//! `POST /admin/models/{provider}/refresh`.
//!
//! Listed models become routable by bare name (after the providers that
//! declare them in settings) and appear in `/v1/models`. A failed fetch
//! keeps the previous list: a provider's flaky model endpoint must not make
//! its models vanish. The fetch uses a key from the pool like any request,
//! and its outcome feeds that key's health.

use crate::clock::Clock;
use crate::providers;
use crate::upstream::{UpstreamClient, send_failure, status_failure};
use actix::prelude::*;
use actix_web::http::Method;
use serde::Serialize;
use slog::{Logger, info, warn};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use switchyard_actors::{Failure, Outcome, RouteError, Router, SetDiscoveredModels, Tried};

/// What the cache holds for one provider.
#[derive(Debug, Clone, Serialize)]
pub struct CachedModels {
    pub models: Vec<String>,
    /// Unix milliseconds of the last successful fetch.
    pub fetched_at_ms: i64,
}

/// Shared by workers (admin reads) and the refresh task.
#[derive(Clone)]
pub struct ModelCache {
    lists: Arc<RwLock<BTreeMap<String, CachedModels>>>,
    /// Stamps `fetched_at_ms` (the gateway's one wall clock).
    clock: Arc<dyn Clock>,
}

impl ModelCache {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            lists: Arc::default(),
            clock,
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, CachedModels> {
        self.lists
            .read()
            .map(|lists| lists.clone())
            .unwrap_or_default()
    }

    /// Drops a provider's list (the provider was deleted, or now talks to
    /// another API).
    pub fn forget(&self, provider: &str) {
        if let Ok(mut lists) = self.lists.write() {
            lists.remove(provider);
        }
    }

    fn store(&self, provider: &str, models: Vec<String>) {
        if let Ok(mut lists) = self.lists.write() {
            lists.insert(
                provider.to_owned(),
                CachedModels {
                    models,
                    fetched_at_ms: self.clock.now_ms(),
                },
            );
        }
    }
}

/// Why a provider's list could not be refreshed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("no provider named `{0}`")]
    UnknownProvider(String),
    #[error("provider `{0}` cannot list its models; its `models` setting is the list")]
    NotListable(String),
    #[error("provider `{0}` has no usable key right now")]
    NoKey(String),
    #[error("provider `{provider}` answered its model list with {detail}")]
    Upstream { provider: String, detail: String },
}

/// Fetches one provider's model list, stores it in the cache and makes the
/// models routable. Returns the list.
pub async fn refresh(
    router: &Router,
    client: &awc::Client,
    cache: &ModelCache,
    provider: &str,
) -> Result<Vec<String>, RefreshError> {
    let unknown = || RefreshError::UnknownProvider(provider.to_owned());
    let lease = match router.route_pinned(provider, &Tried::default()) {
        Ok(lease) => lease,
        Err(RouteError::UnknownProvider(_) | RouteError::UnknownModel(_)) => {
            return Err(unknown());
        }
        Err(RouteError::NoUsableKey { .. }) => {
            return Err(RefreshError::NoKey(provider.to_owned()));
        }
    };
    let spec = lease.provider.clone();
    let adapter = providers::adapter_of(&spec);
    let Some(path) = adapter.models_path(&spec) else {
        // Not the key's doing: hand it back untouched.
        drop(lease);
        return Err(RefreshError::NotListable(provider.to_owned()));
    };
    let request =
        UpstreamClient::new(client)
            .request(Method::GET, &lease, &path, "", None, |request| request);
    let upstream_error = |detail: String| RefreshError::Upstream {
        provider: provider.to_owned(),
        detail,
    };
    let started = Instant::now();
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            let failure = send_failure(&error);
            lease.fail(failure);
            return Err(upstream_error(if failure == Failure::Timeout {
                "a timeout".to_owned()
            } else {
                "a connection failure".to_owned()
            }));
        }
    };
    if let Some(failure) = status_failure(&response) {
        lease.fail(failure);
        return Err(upstream_error(format!("status {}", response.status())));
    }
    let body = match response.body().limit(8 * 1024 * 1024).await {
        Ok(body) => body,
        Err(_) => {
            lease.fail(Failure::Connection);
            return Err(upstream_error("a broken body".to_owned()));
        }
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        lease.fail(Failure::ServerError);
        return Err(upstream_error("a body that is not JSON".to_owned()));
    };
    lease.finish(Outcome::Success {
        latency: started.elapsed(),
    });
    let mut models = adapter.parse_models(&value);
    models.sort();
    models.dedup();
    router
        .actor()
        .send(SetDiscoveredModels {
            provider: provider.to_owned(),
            models: models.clone(),
        })
        .await
        .map_err(|_| unknown())?;
    cache.store(provider, models.clone());
    Ok(models)
}

/// Refreshes every provider at start, then every `interval`, on an arbiter
/// of its own. "0s" turns automatic refreshes off (the admin route remains).
pub fn start(
    router: Router,
    cache: ModelCache,
    interval: Duration,
    timeout: Duration,
    log: Logger,
) {
    if interval.is_zero() {
        return;
    }
    let arbiter = Arbiter::new();
    // The HTTP client is not Send: build it on the arbiter's thread.
    arbiter.spawn_fn(move || {
        actix_rt::spawn(async move {
            let client = awc::Client::builder()
                .timeout(timeout)
                .disable_redirects()
                .finish();
            loop {
                refresh_all(&router, &client, &cache, &log).await;
                actix_rt::time::sleep(interval).await;
            }
        });
    });
}

async fn refresh_all(router: &Router, client: &awc::Client, cache: &ModelCache, log: &Logger) {
    for name in router.provider_names() {
        match refresh(router, client, cache, &name).await {
            Ok(models) => {
                info!(log, "models.refreshed"; "provider" => &name, "models" => models.len())
            }
            Err(RefreshError::NotListable(_)) => {}
            Err(error) => {
                warn!(log, "models.refresh_failed"; "provider" => &name, "error" => %error)
            }
        }
    }
}
