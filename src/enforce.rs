//! Enforcement before the call, settlement after.
//!
//! A request is admitted only if every limit of its token can take its
//! estimate on top of what is spent and what requests in flight hold:
//!
//! - rate limits (RPM, TPM), parallelism and periodic quotas are checked in
//!   memory by [`switchyard_actors::TokenLimits`] (exact on one instance;
//!   each instance counts its own traffic, see `docs/limits.md`);
//! - lifetime budgets (money, tokens) and the owner's prepaid balance are
//!   held in the database ([`crate::db::reservations`]), so instances
//!   sharing it cannot overspend together.
//!
//! The estimate is the prompt (about four characters per token) plus the
//! request's `max_tokens`, or `limits.default_completion_tokens`, priced at
//! the model's price and the token's multipliers. Settlement replaces it with
//! the real usage: in memory when the request ends ([`Enforcer::settle`]),
//! in the database when its usage record is written.

use crate::clock::Clock;
use crate::config::LimitsSettings;
use crate::db::Db;
use crate::db::reservations::{Hold, HoldRefused};
use crate::error::ApiError;
use crate::metering::PriceTable;
use crate::tokens::{PPM, TokenInfo};
use slog::Logger;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_actors::{
    Actual, Committed, Estimate, Limit, Period, PeriodSpend, Refusal, Reservation, TokenLimits,
    TokenUsage,
};

/// Shared by every worker. The engine sits behind a plain mutex: each call
/// is a few microseconds of arithmetic, cheaper than an actor round trip.
pub struct Enforcer {
    engine: Mutex<TokenLimits>,
    /// Tokens whose committed period spend was loaded from the database.
    loaded: Mutex<HashSet<i64>>,
    clock: Arc<dyn Clock>,
    db: Db,
    prices: PriceTable,
    settings: LimitsSettings,
    log: Logger,
}

/// What an admitted request holds; settled exactly once.
#[derive(Debug, Default)]
pub struct Admission {
    local: Option<Reservation>,
    /// The database reservation, released when the usage record is written.
    pub reservation_id: Option<i64>,
    pub estimate: Estimate,
}

impl Enforcer {
    pub fn new(
        db: Db,
        prices: PriceTable,
        clock: Arc<dyn Clock>,
        settings: LimitsSettings,
        log: Logger,
    ) -> Self {
        let ttl_ms = u64::try_from(settings.reservation_ttl.as_millis()).unwrap_or(u64::MAX);
        Self {
            engine: Mutex::new(TokenLimits::new(ttl_ms)),
            loaded: Mutex::new(HashSet::new()),
            clock,
            db,
            prices,
            settings,
            log,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn now_u64(&self) -> u64 {
        u64::try_from(self.now_ms()).unwrap_or(0)
    }

    /// Checks every limit for a request of `model` with `prompt_chars` of
    /// text asking for at most `max_tokens`; holds the estimate on success.
    pub async fn admit(
        &self,
        token: &TokenInfo,
        model: &str,
        prompt_chars: usize,
        max_tokens: Option<i64>,
    ) -> Result<Admission, ApiError> {
        let money_limited = token.budget_nanos.is_some() || token.user_prepaid;
        if !token.has_local_limits() && !token.needs_reservation() {
            return Ok(Admission::default());
        }
        let completion = max_tokens
            .and_then(|max| u64::try_from(max).ok())
            .unwrap_or(self.settings.default_completion_tokens);
        let prompt = u64::try_from(crate::estimate::tokens_for_chars(prompt_chars)).unwrap_or(0);
        let price = self.prices.lookup(&[model]);
        if price.is_none() && money_limited && !self.settings.allow_unpriced {
            return Err(ApiError::PaymentRequired {
                message: format!(
                    "The model `{model}` has no price, so this token's money budget (or its owner's balance) cannot be enforced; an admin must set a price (`/admin/model-prices`) or allow unpriced models (`limits.allow_unpriced`)"
                ),
                code: "model_unpriced",
            });
        }
        let base_nanos = price.map_or(0, |price| {
            price
                .cost_nanos(
                    i64::try_from(prompt).unwrap_or(i64::MAX),
                    i64::try_from(completion).unwrap_or(i64::MAX),
                )
                .saturating_add(price.per_call_nanos())
        });
        let cost_nanos = scale(base_nanos, token.price_multiplier_ppm);
        let estimate = Estimate {
            tokens: prompt + completion,
            cost_nanos: u64::try_from(cost_nanos).unwrap_or(0),
        };
        let mut admission = Admission {
            estimate,
            ..Admission::default()
        };
        if token.has_local_limits() {
            self.ensure_loaded(token).await?;
            let now = self.now_u64();
            let admitted = self.engine.lock().map_err(|_| ApiError::Internal)?.admit(
                token.id,
                &token.limits,
                estimate,
                now,
            );
            admission.local = Some(admitted.map_err(refusal_error)?);
        }
        if token.needs_reservation() {
            let now = self.now_ms();
            let ttl = i64::try_from(self.settings.reservation_ttl.as_millis()).unwrap_or(i64::MAX);
            let hold = Hold {
                token_id: token.id,
                user_id: token.user_id,
                nanos: cost_nanos,
                tokens: i64::try_from(estimate.tokens).unwrap_or(i64::MAX),
                user_nanos: if token.user_prepaid { cost_nanos } else { 0 },
            };
            let reserved = match self.db.reserve(hold, now, now.saturating_add(ttl)).await {
                Ok(reserved) => reserved,
                Err(error) => {
                    // Budgets fail closed: no database, no reservation, no
                    // request (503 with Retry-After; docs/limits.md).
                    self.release(admission);
                    return Err(ApiError::database_unavailable(&error));
                }
            };
            match reserved {
                Ok(id) => admission.reservation_id = Some(id),
                Err(refused) => {
                    self.release(admission);
                    return Err(self
                        .budget_error(token, refused, cost_nanos, estimate)
                        .await);
                }
            }
        }
        Ok(admission)
    }

    /// Admits a call that carries no tokens (the proxy) against the rate
    /// limits, parallelism and request quotas; budgets are not involved.
    pub fn admit_call(&self, token: &TokenInfo) -> Result<Admission, ApiError> {
        if !token.has_local_limits() {
            return Ok(Admission::default());
        }
        let now = self.now_u64();
        let admitted = self.engine.lock().map_err(|_| ApiError::Internal)?.admit(
            token.id,
            &token.limits,
            Estimate::default(),
            now,
        );
        Ok(Admission {
            local: Some(admitted.map_err(refusal_error)?),
            ..Admission::default()
        })
    }

    /// Replaces the in-memory hold by the real spend (the database hold is
    /// settled with the usage record).
    pub fn settle(&self, admission: &mut Admission, tokens: i64, cost_nanos: i64) {
        if let Some(reservation) = admission.local.take()
            && let Ok(mut engine) = self.engine.lock()
        {
            let actual = Actual {
                tokens: u64::try_from(tokens).unwrap_or(0),
                cost_nanos: u64::try_from(cost_nanos).unwrap_or(0),
            };
            engine.settle(reservation, actual, self.now_u64());
        }
    }

    /// Gives back the in-memory hold of a request that never reached an
    /// upstream (nothing was spent; its place in the rate window too).
    pub fn release(&self, mut admission: Admission) {
        if let Some(reservation) = admission.local.take()
            && let Ok(mut engine) = self.engine.lock()
        {
            engine.release(reservation, self.now_u64());
        }
    }

    /// In-memory figures for the self-service routes.
    pub fn usage(&self, token_id: i64) -> Option<TokenUsage> {
        let now = self.now_u64();
        self.engine
            .lock()
            .ok()
            .map(|engine| engine.usage(token_id, now))
    }

    /// Forgets what the engine knows of a token whose limits changed, so
    /// the next request reloads its spend.
    pub fn forget(&self, token_id: i64) {
        if let Ok(mut engine) = self.engine.lock() {
            engine.forget(token_id);
        }
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.remove(&token_id);
        }
    }

    /// Drops expired holds, in memory and in the database.
    pub async fn expire(&self) {
        let now = self.now_u64();
        if let Ok(mut engine) = self.engine.lock() {
            engine.expire(now);
        }
        match self.db.expire_reservations(self.now_ms()).await {
            Ok(0) => {}
            Ok(count) => slog::warn!(self.log, "limits.reservations_expired"; "count" => count),
            Err(error) => slog::warn!(self.log, "limits.expire_failed"; "error" => %error),
        }
    }

    /// Seeds the engine with the token's spend in its quota periods, once
    /// per token per process, so quotas survive restarts.
    async fn ensure_loaded(&self, token: &TokenInfo) -> Result<(), ApiError> {
        let known = self
            .loaded
            .lock()
            .map(|loaded| loaded.contains(&token.id))
            .unwrap_or(false);
        if known || token.limits.quotas.is_empty() {
            return Ok(());
        }
        let now = self.now_u64();
        let mut periods: Vec<Period> = token.limits.quotas.iter().map(|q| q.period).collect();
        periods.sort_by_key(|period| period.start_ms(now));
        periods.dedup();
        let mut committed = Committed::default();
        for period in periods {
            let since = i64::try_from(period.start_ms(now)).unwrap_or(0);
            let (requests, tokens, cost) = self
                .db
                .token_spend_since(token.id, since)
                .await
                .map_err(|error| ApiError::database_unavailable(&error))?;
            committed.periods.push((
                period,
                PeriodSpend {
                    requests: u64::try_from(requests).unwrap_or(0),
                    tokens: u64::try_from(tokens).unwrap_or(0),
                    cost_nanos: u64::try_from(cost).unwrap_or(0),
                },
            ));
        }
        if let (Ok(mut engine), Ok(mut loaded)) = (self.engine.lock(), self.loaded.lock())
            && loaded.insert(token.id)
        {
            engine.load_committed(token.id, &committed, now);
        }
        Ok(())
    }

    /// A 402 that says which limit and how much is left.
    async fn budget_error(
        &self,
        token: &TokenInfo,
        refused: HoldRefused,
        cost_nanos: i64,
        estimate: Estimate,
    ) -> ApiError {
        match refused {
            HoldRefused::Balance => ApiError::PaymentRequired {
                message: format!(
                    "The owner of this token has too little prepaid balance left for this request (estimated {}); top up to continue",
                    usd(cost_nanos)
                ),
                code: "insufficient_balance",
            },
            HoldRefused::TokenBudget => {
                let row = self.db.get_token(token.id).await.ok().flatten();
                let message = match row {
                    Some(row)
                        if row.budget_tokens.is_some_and(|budget| {
                            row.spent_tokens
                                + row.reserved_tokens
                                + i64::try_from(estimate.tokens.max(1)).unwrap_or(i64::MAX)
                                > budget
                        }) =>
                    {
                        format!(
                            "This token's budget of {} tokens is exhausted ({} spent, {} held by requests in flight, this request needs up to {}); it does not reset, an admin must raise it",
                            row.budget_tokens.unwrap_or(0),
                            row.spent_tokens,
                            row.reserved_tokens,
                            estimate.tokens
                        )
                    }
                    Some(row) => format!(
                        "This token's budget of {} is exhausted ({} spent, {} held by requests in flight, this request needs up to {}); it does not reset, an admin must raise it",
                        usd(row.budget_nanos.unwrap_or(0)),
                        usd(row.spent_nanos),
                        usd(row.reserved_nanos),
                        usd(cost_nanos)
                    ),
                    None => "This token's budget is exhausted".to_owned(),
                };
                ApiError::PaymentRequired {
                    message,
                    code: "budget_exhausted",
                }
            }
        }
    }
}

/// `nanos` x `ppm` / 1,000,000, without overflow.
pub fn scale(nanos: i64, ppm: i64) -> i64 {
    i64::try_from(i128::from(nanos) * i128::from(ppm) / i128::from(PPM)).unwrap_or(i64::MAX)
}

fn usd(nanos: i64) -> String {
    format!("${:.6}", nanos as f64 / 1e9)
}

/// The engine's refusal as the client sees it.
fn refusal_error(refusal: Refusal) -> ApiError {
    match refusal.limit {
        Limit::Budget { .. } => ApiError::PaymentRequired {
            message: refusal.message,
            code: "budget_exhausted",
        },
        Limit::Quota { .. } | Limit::Rpm | Limit::Tpm | Limit::Parallel => ApiError::RateLimited {
            message: refusal.message,
            retry_after: refusal.retry_after_ms.map(Duration::from_millis),
        },
    }
}

/// Gives back what crashed instances left held, once now (before the server
/// takes requests, so nothing races with it), then every `every` (a quarter
/// of the reservation TTL) in the background.
pub async fn start_expiry(enforcer: Arc<Enforcer>, every: Duration) {
    enforcer.expire().await;
    let every = every.max(Duration::from_millis(100));
    actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval_at(actix_rt::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            enforcer.expire().await;
        }
    });
}
