//! Self-service for a token's holder: `GET /v1/token/balance` (limits,
//! spend, what is left and when quotas reset) and `GET /v1/token/usage`
//! (by day and by model). Only ever the caller's own token.

use crate::error::ApiError;
use crate::gateway::AppState;
use crate::gateway::auth::GatewayAuth;
use actix_web::HttpResponse;
use actix_web::web::{Data, Query};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use switchyard_actors::{Period, QuotaKind};

fn usd(nanos: i64) -> f64 {
    nanos as f64 / 1e9
}

fn period_name(period: Period) -> &'static str {
    match period {
        Period::Minute => "minute",
        Period::Hour => "hour",
        Period::Day => "day",
        Period::Month => "month",
    }
}

/// `GET /v1/token/balance`.
pub async fn balance(state: Data<AppState>, auth: GatewayAuth) -> Result<HttpResponse, ApiError> {
    let token = auth.0;
    let row =
        state.db.get_token(token.id).await?.ok_or_else(|| {
            ApiError::Unauthorized("This gateway token no longer exists".to_owned())
        })?;
    let user = match row.user_id {
        Some(id) => state.db.get_user(id).await?,
        None => None,
    };
    let now = u64::try_from(state.clock.now_ms()).unwrap_or(0);
    let live = state.enforcer.usage(token.id);
    let remaining = |budget: Option<i64>, spent: i64, reserved: i64| {
        budget.map(|budget| (budget - spent - reserved).max(0))
    };
    let quotas: Vec<Value> = token
        .limits
        .quotas
        .iter()
        .map(|quota| {
            let used = live
                .as_ref()
                .map(|usage| usage.period(quota.period))
                .unwrap_or_default();
            let (kind, used) = match quota.kind {
                QuotaKind::Requests => ("requests", used.requests),
                QuotaKind::Tokens => ("tokens", used.tokens),
                QuotaKind::Cost => ("cost", used.cost_nanos),
            };
            json!({
                "period": period_name(quota.period),
                "kind": kind,
                "limit": quota.limit,
                "used": used,
                "remaining": quota.limit.saturating_sub(used),
                "resets_at": quota.period.end_ms(now) / 1000,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "token": {
            "id": row.id,
            "name": row.name,
            "expires_at": row.expires_at.map(|ms| ms / 1000),
            "budget_usd": row.budget_nanos.map(usd),
            "budget_nanos": row.budget_nanos,
            "spent_usd": usd(row.spent_nanos),
            "spent_nanos": row.spent_nanos,
            "reserved_nanos": row.reserved_nanos,
            "remaining_usd": remaining(row.budget_nanos, row.spent_nanos, row.reserved_nanos).map(usd),
            "remaining_nanos": remaining(row.budget_nanos, row.spent_nanos, row.reserved_nanos),
            "budget_tokens": row.budget_tokens,
            "spent_tokens": row.spent_tokens,
            "reserved_tokens": row.reserved_tokens,
            "remaining_tokens": remaining(row.budget_tokens, row.spent_tokens, row.reserved_tokens),
            "request_count": row.request_count,
            "rpm": row.rpm,
            "tpm": row.tpm,
            "max_parallel": row.max_parallel,
        },
        "user": user.map(|user| json!({
            "id": user.id,
            "name": user.name,
            "status": user.status,
            "prepaid": user.prepaid,
            "balance_usd": usd(user.balance_nanos),
            "balance_nanos": user.balance_nanos,
            "reserved_nanos": user.reserved_nanos,
        })),
        "quotas": quotas,
        "rate": live.map(|usage| json!({
            "requests_last_minute": usage.window_requests,
            "tokens_last_minute": usage.window_tokens,
            "in_flight": usage.in_flight,
        })),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Days back from today (UTC), today included; default 30, at most 366.
    #[serde(default)]
    pub days: Option<u32>,
}

#[derive(Default)]
struct Totals {
    requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_nanos: i64,
}

impl Totals {
    fn json(&self) -> Value {
        json!({
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": usd(self.cost_nanos),
            "cost_nanos": self.cost_nanos,
        })
    }
}

/// `GET /v1/token/usage?days=N`.
pub async fn usage(
    state: Data<AppState>,
    auth: GatewayAuth,
    query: Result<Query<UsageQuery>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let query = query.map_err(|error| ApiError::bad_request(format!("Invalid query: {error}")))?;
    let days = query.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::bad_param("days", "`days` must be 1 to 366"));
    }
    let now = state.clock.now_ms();
    let first_day = crate::db::usage::utc_day(now - i64::from(days - 1) * 86_400_000);
    let rows = state.db.token_usage_daily(auth.0.id).await?;
    let mut by_day: BTreeMap<String, Totals> = BTreeMap::new();
    let mut by_model: BTreeMap<String, Totals> = BTreeMap::new();
    let mut total = Totals::default();
    for row in rows.iter().filter(|row| row.day >= first_day) {
        for totals in [
            by_day.entry(row.day.clone()).or_default(),
            by_model.entry(row.model.clone()).or_default(),
            &mut total,
        ] {
            totals.requests += row.requests;
            totals.prompt_tokens += row.prompt_tokens;
            totals.completion_tokens += row.completion_tokens;
            totals.cost_nanos += row.cost_nanos;
        }
    }
    let with_key = |key: &str, name: &str, totals: &Totals| {
        let mut value = totals.json();
        if let Some(object) = value.as_object_mut() {
            object.insert(key.to_owned(), json!(name));
        }
        value
    };
    Ok(HttpResponse::Ok().json(json!({
        "from": first_day,
        "total": total.json(),
        "by_day": by_day.iter().map(|(day, t)| with_key("day", day, t)).collect::<Vec<_>>(),
        "by_model": by_model.iter().map(|(model, t)| with_key("model", model, t)).collect::<Vec<_>>(),
    })))
}
