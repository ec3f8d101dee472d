//! `POST /admin/reload`: re-reads the settings files and applies what can
//! change live (`crate::reload`), like SIGHUP, and answers what it did.
//! A file that does not load or validate changes nothing: 400 with the
//! reason. Recorded in the operation log as `settings.reload`.

use super::oplog::record;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::error::ApiError;
use crate::reload::{ReloadError, Reloader, log_report};
use actix_web::HttpResponse;
use actix_web::web::Data;
use serde_json::json;

/// `POST /admin/reload`
pub async fn reload(
    admin: AdminAuth,
    state: Data<AdminState>,
    reloader: Data<Reloader>,
) -> Result<HttpResponse, ApiError> {
    match reloader.reload().await {
        Ok(report) => {
            log_report(&state.log, "admin", &report);
            let answer = json!({
                "reloaded": true,
                "providers": report.providers,
                "models": report.models,
                "redirects": report.redirects,
                "prices": report.prices,
                "restart_needed": report.restart_needed,
            });
            record(
                &state,
                &admin,
                "settings.reload",
                "settings",
                None,
                Some(answer.clone()),
            )
            .await;
            Ok(HttpResponse::Ok().json(answer))
        }
        Err(ReloadError::Invalid(reason)) => {
            slog::warn!(state.log, "settings.reload_refused"; "trigger" => "admin",
                "reason" => &reason);
            Err(ApiError::bad_request(format!(
                "The settings were not reloaded (nothing changed): {reason}"
            )))
        }
        Err(ReloadError::Failed(reason)) => {
            slog::error!(state.log, "settings.reload_failed"; "trigger" => "admin",
                "reason" => reason);
            Err(ApiError::Internal)
        }
    }
}
