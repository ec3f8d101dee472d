//! Reload without restart: SIGHUP, or `POST /admin/reload`
//! (`switchyard admin reload`), re-reads the settings layers the process
//! started with (`Settings::load` with the same `--config`) and applies what
//! can change live, the way the admin API applies its own changes:
//!
//! - `[[providers]]` and their keys are stored (`config_store::apply_settings`,
//!   as at start), then each declared provider is put in line in the router
//!   (`UpsertProvider`, or `RemoveProvider` when disabled). A provider whose
//!   connection settings are unchanged keeps its actor, and keys that stay
//!   keep their health (cooldowns, open circuits, disabled-by-401).
//!   A provider or key deleted from the file is not deleted from the
//!   database (as at a restart): remove it with the admin API.
//! - `[models]` routes, `[redirects]`, `[[prices]]` and `[limits]` (except
//!   `reservation_ttl` and `[limits.auth]`) are replaced.
//!
//! Anything else that changed (listen address, workers, database, logging,
//! ...) needs a restart: those keys are named in one warning line (and in
//! the route's answer), compared with the settings the process started
//! with. A file that does not load or validate changes nothing; the reason
//! is logged in one line (SIGHUP) or answered as a 400 (the route).
//!
//! The SIGHUP listener is [`spawn_sighup_listener`]: whatever else should
//! follow SIGHUP (certificates, for one) is called from the same closure.

use crate::config::Settings;
use crate::config_store;
use crate::crypto::SecretCipher;
use crate::db::Db;
use crate::enforce::Enforcer;
use crate::metering::PriceTable;
use anyhow::Context as _;
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use slog::{Logger, error, info, warn};
use std::path::PathBuf;
use std::sync::Arc;
use switchyard_actors::{
    RemoveProvider, Router, SetModelRoutes, SetRedirects, UpsertProvider, Upserted,
};

/// Settings keys applied live; every other changed key needs a restart.
/// A prefix covers the keys under it.
const LIVE: &[&str] = &[
    "providers",
    "models",
    "redirects",
    "prices",
    "usage.seed_list_prices",
    "limits.default_completion_tokens",
    "limits.allow_unpriced",
    "limits.budget_slice_fraction",
    "limits.budget_slice_idle",
    "limits.shared_slice_fraction",
];

fn is_live(key: &str) -> bool {
    LIVE.iter().any(|live| {
        key == *live
            || key
                .strip_prefix(live)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Why a reload changed nothing, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The settings do not load or validate: nothing was applied.
    #[error("{0}")]
    Invalid(String),
    /// Storing or routing failed part way (the database, the router).
    #[error("{0}")]
    Failed(String),
}

/// What a reload applied.
#[derive(Debug, Serialize)]
pub struct ReloadReport {
    /// Each declared provider and what routing did with it (`started`,
    /// `updated`: same actor, key health kept, `restarted`: new connection
    /// settings, `removed`: disabled).
    pub providers: Vec<ProviderOutcome>,
    pub models: usize,
    pub redirects: usize,
    pub prices: usize,
    /// Changed settings that take effect only after a restart.
    pub restart_needed: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ProviderOutcome {
    pub name: String,
    pub outcome: &'static str,
}

/// Re-reads and applies settings; one per process, shared by the SIGHUP
/// listener and the admin route. Reloads run one at a time.
pub struct Reloader {
    /// `--config` as the process was started with.
    pub config_file: Option<PathBuf>,
    /// The settings the process started with (the restart comparison).
    pub started: Arc<Settings>,
    pub db: Db,
    pub cipher: Arc<SecretCipher>,
    pub router: Router,
    pub prices: PriceTable,
    pub enforcer: Arc<Enforcer>,
    pub log: Logger,
    pub one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// Loads the settings layers again and applies them (module docs).
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _running = self.one_at_a_time.lock().await;
        if self.started.digest.is_empty() {
            // Started in-process from settings built in code (tests): the
            // files hold nothing of what it runs with.
            return Err(ReloadError::Invalid(
                "this gateway was not started from settings files".to_owned(),
            ));
        }
        let settings = Settings::load(self.config_file.as_deref())
            .map_err(|error| ReloadError::Invalid(error.to_string()))?;
        let restart_needed: Vec<String> = self
            .started
            .digest
            .changed(&settings.digest)
            .into_iter()
            .filter(|key| !is_live(key))
            .collect();
        let failed = |error: anyhow::Error| ReloadError::Failed(format!("{error:#}"));
        config_store::apply_settings(&self.db, &settings, &self.cipher, &self.log)
            .await
            .map_err(failed)?;
        let mut providers = Vec::new();
        for provider in &settings.providers {
            let outcome = self.route(&provider.name).await.map_err(failed)?;
            providers.push(ProviderOutcome {
                name: provider.name.clone(),
                outcome,
            });
        }
        let models = settings
            .models
            .iter()
            .map(|(model, route)| (model.clone(), route.route()))
            .collect::<std::collections::HashMap<_, _>>();
        let model_count = models.len();
        let router_gone = || failed(anyhow::anyhow!("the router is not running"));
        self.router
            .actor()
            .send(SetModelRoutes(models))
            .await
            .map_err(|_| router_gone())?;
        let redirects = config_store::load_redirects(&self.db)
            .await
            .map_err(failed)?;
        let redirect_count = redirects.len();
        self.router
            .actor()
            .send(SetRedirects(redirects))
            .await
            .map_err(|_| router_gone())?;
        let prices = config_store::load_prices(&self.db).await.map_err(failed)?;
        let price_count = prices.len();
        self.prices.replace(prices);
        self.enforcer.set_limits(settings.limits.clone());
        Ok(ReloadReport {
            providers,
            models: model_count,
            redirects: redirect_count,
            prices: price_count,
            restart_needed,
        })
    }

    /// Brings the router in line with the stored provider `name`.
    async fn route(&self, name: &str) -> anyhow::Result<&'static str> {
        route_stored_provider(&self.db, &self.cipher, &self.router, &self.log, name).await
    }

    /// A reload whose outcome is logged: one line for what was applied,
    /// one warning naming the settings that need a restart, or one error
    /// line saying why nothing changed (what SIGHUP does).
    pub async fn reload_and_log(&self, trigger: &'static str) {
        match self.reload().await {
            Ok(report) => log_report(&self.log, trigger, &report),
            Err(ReloadError::Invalid(reason)) => {
                error!(self.log, "settings.reload_refused"; "trigger" => trigger,
                    "reason" => format!("{reason}; nothing was changed"));
            }
            Err(ReloadError::Failed(reason)) => {
                error!(self.log, "settings.reload_failed"; "trigger" => trigger,
                    "reason" => reason);
            }
        }
    }
}

/// Brings the router in line with the stored provider `name`, as the admin
/// API's provider changes do: routed with its stored settings and keys when
/// it exists and is enabled (an unchanged provider keeps its actor, and keys
/// that stay keep their health), taken out of routing otherwise. Returns
/// what routing did (`started`, `restarted`, `updated`, `removed`). Settings
/// reloads and the change feed (`crate::change_feed`) both use it.
pub async fn route_stored_provider(
    db: &Db,
    cipher: &SecretCipher,
    router: &Router,
    log: &Logger,
    name: &str,
) -> anyhow::Result<&'static str> {
    let row = db.get_provider_by_name(name).await?;
    if row.is_some_and(|row| row.enabled) {
        let Some(loaded) = config_store::load_provider_by_name(db, name, cipher, log).await? else {
            // Deleted since: take it out like a disabled one.
            router
                .actor()
                .send(RemoveProvider(name.to_owned()))
                .await
                .context("the router is not running")?;
            return Ok("removed");
        };
        let outcome = router
            .actor()
            .send(UpsertProvider {
                spec: loaded.spec,
                keys: loaded.keys,
                models: loaded.models,
                weight: loaded.weight,
            })
            .await
            .context("the router is not running")?;
        Ok(match outcome {
            Upserted::Started => "started",
            Upserted::Restarted => "restarted",
            Upserted::Updated => "updated",
        })
    } else {
        router
            .actor()
            .send(RemoveProvider(name.to_owned()))
            .await
            .context("the router is not running")?;
        Ok("removed")
    }
}

/// Logs a finished reload.
pub fn log_report(log: &Logger, trigger: &'static str, report: &ReloadReport) {
    info!(log, "settings.reloaded"; "trigger" => trigger,
        "providers" => report.providers.len(), "models" => report.models,
        "redirects" => report.redirects, "prices" => report.prices);
    if !report.restart_needed.is_empty() {
        warn!(log, "settings.restart_needed";
            "keys" => report.restart_needed.join(", "),
            "message" => "these changed settings take effect only after a restart");
    }
}

/// Calls `on_hup` for every SIGHUP until the process ends (one at a time:
/// a SIGHUP that arrives during a reload is handled after it).
pub fn spawn_sighup_listener(
    log: Logger,
    on_hup: impl Fn() -> LocalBoxFuture<'static, ()> + 'static,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!(log, "signals.sighup_unavailable");
        return;
    };
    actix_rt::spawn(async move {
        while hup.recv().await.is_some() {
            info!(log, "settings.sighup");
            on_hup().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::is_live;

    #[test]
    fn live_keys_are_the_routing_sections_and_some_limits() {
        for key in [
            "providers",
            "models.gpt-4o.strategy",
            "redirects.a",
            "prices",
        ] {
            assert!(is_live(key), "{key}");
        }
        assert!(is_live("limits.allow_unpriced"));
        for key in [
            "server.listen",
            "database.url",
            "limits.auth.window",
            "limits.reservation_ttl",
            "providersx",
        ] {
            assert!(!is_live(key), "{key}");
        }
    }
}
