//! Enforcement before the call, settlement after.
//!
//! A request is admitted only if every limit of its token can take its
//! estimate on top of what is spent and what requests in flight hold:
//!
//! - rate limits (RPM, TPM), parallelism and periodic quotas are checked in
//!   memory by [`switchyard_actors::TokenLimits`]: exact on one instance,
//!   and on PostgreSQL (`limits.shared`) exact across instances, each
//!   admitting within the shares of each limit it leased from the database
//!   ([`crate::shared_limits`]; `docs/limits.md`);
//! - lifetime budgets (money, tokens) and the owner's prepaid balance are
//!   held in the database ([`crate::db::reservations`]), so instances
//!   sharing it cannot overspend together. Not per request: each instance
//!   leases a **slice** of a token's budget (one database transaction) and
//!   draws requests' estimates from it in memory ([`SliceBook`]); a request
//!   the slice covers costs no database write. Leases of one token are
//!   single-flight (one in flight per token and instance, the others wait
//!   for it), run as a task of their own so a cancelled request never loses
//!   a lease the database granted, and give back the slice's unused part in
//!   the same transaction, so a refusal strands nothing. The unused part of a
//!   slice goes back when its token is idle (`limits.budget_slice_idle`), when
//!   an admin changes the token, and at shutdown; a crashed instance's slices
//!   come back after `limits.reservation_ttl` (live ones are renewed).
//!
//! The estimate is the prompt (about four characters per token) plus the
//! request's `max_tokens`, or `limits.default_completion_tokens`, priced at
//! the model's price and the token's multipliers. Settlement replaces it with
//! the real usage: in memory when the request ends ([`Enforcer::settle`]),
//! in the database when its usage record is written.

use crate::clock::Clock;
use crate::config::LimitsSettings;
use crate::db::Db;
use crate::db::DbError;
use crate::db::reservations::{Amounts, HoldRefused, LeaseNeed, Limited, SliceOutcome, SliceSwap};
use crate::error::ApiError;
use crate::metering::PriceTable;
use crate::providers::openai::Usage;
use crate::shared_limits::SharedLimits;
use crate::tokens::{PPM, TokenInfo};
use slog::Logger;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use switchyard_actors::{
    Actual, BudgetFigures, Committed, Estimate, Limit, Period, PeriodSpend, Refusal, Reservation,
    SharedLimit, Shares, Shortfall, TokenLimits, TokenUsage, budget_message,
};

/// Shared by every worker. The engine sits behind a plain mutex: each call
/// is a few microseconds of arithmetic, cheaper than an actor round trip.
pub struct Enforcer {
    engine: Mutex<TokenLimits>,
    /// This instance's budget slices, shared with the lease tasks.
    slices: Arc<Mutex<SliceBook>>,
    /// Lease transactions started (`switchyard_budget_leases_total`).
    leases: Arc<AtomicU64>,
    /// When the slices' rows were last renewed, and expired rows swept.
    last_renewal_ms: AtomicI64,
    last_expiry_ms: AtomicI64,
    /// Tokens whose committed period spend was loaded from the database.
    loaded: Mutex<HashSet<i64>>,
    /// This instance's shares of limits held across instances: on
    /// PostgreSQL with `limits.shared`; `None` counts this instance alone.
    shared: Option<SharedLimits>,
    clock: Arc<dyn Clock>,
    db: Db,
    prices: PriceTable,
    /// `[limits]` as last loaded: a settings reload (`src/reload.rs`)
    /// swaps it. Read once per admitted request (an uncontended read lock
    /// and a reference count).
    settings: RwLock<Arc<LimitsSettings>>,
    /// Fixed at start (the counters' engine and the expiry timer use it).
    reservation_ttl: Duration,
    log: Logger,
}

/// What an admitted request holds; settled exactly once.
#[derive(Debug, Default)]
pub struct Admission {
    local: Option<Reservation>,
    /// What the request drew from its token's budget slice.
    slice: Option<Draw>,
    /// The slice's database reservation: the usage record names it, and the
    /// usage batch moves the request's spend out of it.
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
        let shared = (settings.shared && db.backend() == crate::config::Backend::Postgres)
            .then(SharedLimits::new);
        Self {
            shared,
            engine: Mutex::new(TokenLimits::new(ttl_ms)),
            slices: Arc::new(Mutex::new(SliceBook::default())),
            leases: Arc::new(AtomicU64::new(0)),
            last_renewal_ms: AtomicI64::new(i64::MIN),
            last_expiry_ms: AtomicI64::new(i64::MIN),
            loaded: Mutex::new(HashSet::new()),
            clock,
            db,
            prices,
            reservation_ttl: settings.reservation_ttl,
            settings: RwLock::new(Arc::new(settings)),
            log,
        }
    }

    /// The `[limits]` settings in force.
    pub fn limits(&self) -> Arc<LimitsSettings> {
        self.settings.read().map_or_else(
            |poisoned| poisoned.into_inner().clone(),
            |limits| limits.clone(),
        )
    }

    /// Puts reloaded `[limits]` in force for the next requests
    /// (`reservation_ttl` keeps its start value).
    pub fn set_limits(&self, limits: LimitsSettings) {
        let limits = Arc::new(limits);
        match self.settings.write() {
            Ok(mut current) => *current = limits,
            Err(poisoned) => *poisoned.into_inner() = limits,
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
        self.admit_with_media(token, model, prompt_chars, max_tokens, &Usage::default())
            .await
    }

    /// [`Self::admit`] for a media call, whose estimate also holds the most
    /// `media` units (images, characters, search units) the request can be
    /// billed at the model's rates: a call whose units alone exceed what is
    /// left of a money budget is refused before the upstream, and calls in
    /// flight cannot spend past it before their usage is written (their
    /// token estimate alone is about zero). The token parts of `media` are
    /// ignored.
    pub async fn admit_with_media(
        &self,
        token: &TokenInfo,
        model: &str,
        prompt_chars: usize,
        max_tokens: Option<i64>,
        media: &Usage,
    ) -> Result<Admission, ApiError> {
        let money_limited = token.budget_nanos.is_some() || token.user_prepaid;
        if !token.has_local_limits() && !token.needs_reservation() {
            return Ok(Admission::default());
        }
        let limits = self.limits();
        let completion = max_tokens
            .and_then(|max| u64::try_from(max).ok())
            .unwrap_or(limits.default_completion_tokens);
        let prompt =
            u64::try_from(crate::providers::estimate::tokens_for_chars(prompt_chars)).unwrap_or(0);
        let price = self.prices.lookup(&[model]);
        if price.is_none() && money_limited && !limits.allow_unpriced {
            return Err(ApiError::PaymentRequired {
                message: format!(
                    "The model `{model}` has no price, so this token's money budget (or its owner's balance) cannot be enforced; an admin must set a price (`/admin/model-prices`) or allow unpriced models (`limits.allow_unpriced`)"
                ),
                code: "model_unpriced",
            });
        }
        let base_nanos = price.map_or(0, |price| {
            price
                .usage_cost_nanos(&Usage {
                    images: media.images,
                    characters: media.characters,
                    audio_ms: media.audio_ms,
                    search_units: media.search_units,
                    ..Usage::tokens(
                        i64::try_from(prompt).unwrap_or(i64::MAX),
                        i64::try_from(completion).unwrap_or(i64::MAX),
                    )
                })
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
            admission.local = Some(self.admit_local(token, estimate).await?);
        }
        if token.needs_reservation() {
            let need = Amounts {
                nanos: cost_nanos,
                tokens: i64::try_from(estimate.tokens).unwrap_or(i64::MAX),
                user_nanos: if token.user_prepaid { cost_nanos } else { 0 },
            };
            match self.hold_budget(token, need).await {
                Ok((draw, reservation_id)) => {
                    admission.reservation_id = reservation_id;
                    admission.slice = Some(draw);
                }
                Err(BudgetRefusal::Unavailable(error)) => {
                    // Budgets fail closed: no database, no new slice, no
                    // request (503 with Retry-After; docs/limits.md).
                    self.release(admission);
                    return Err(ApiError::database_unavailable(&error));
                }
                Err(BudgetRefusal::Refused(refused)) => {
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
    pub async fn admit_call(&self, token: &TokenInfo) -> Result<Admission, ApiError> {
        if !token.has_local_limits() {
            return Ok(Admission::default());
        }
        Ok(Admission {
            local: Some(self.admit_local(token, Estimate::default()).await?),
            ..Admission::default()
        })
    }

    /// The rate limits, parallelism and quotas: in memory, within this
    /// instance's shares when limits are held across instances (leasing
    /// more when a share falls short; no database round trip otherwise).
    async fn admit_local(
        &self,
        token: &TokenInfo,
        estimate: Estimate,
    ) -> Result<Reservation, ApiError> {
        let Some(shared) = &self.shared else {
            self.ensure_loaded(token).await?;
            let now = self.now_u64();
            let admitted = self.engine.lock().map_err(|_| ApiError::Internal)?.admit(
                token.id,
                &token.limits,
                estimate,
                now,
            );
            return admitted.map_err(refusal_error);
        };
        // Limits of which nothing more could be leased; and a bound on the
        // leases of one request, as other requests may take what each
        // lease brings before this one gets to it.
        let mut exhausted: Vec<SharedLimit> = Vec::new();
        let mut leases = 0;
        loop {
            let now = self.now_u64();
            let mut shares = shared.shares(token.id, &token.limits, now);
            let admitted = self
                .engine
                .lock()
                .map_err(|_| ApiError::Internal)?
                .admit_shared(token.id, &token.limits, &shares, estimate, now);
            let (limit, need) = match admitted {
                Ok(reservation) => {
                    shared.touch(token.id, now);
                    return Ok(reservation);
                }
                Err(Shortfall::Refused(refusal)) => return Err(refusal_error(refusal)),
                Err(Shortfall::Share { limit, need }) => (limit, need),
            };
            if exhausted.contains(&limit) || leases >= MAX_SHARE_LEASES_PER_REQUEST {
                // Nothing more is free: the share's refusal is the limit's.
                shares.last_word = true;
                let admitted = self
                    .engine
                    .lock()
                    .map_err(|_| ApiError::Internal)?
                    .admit_shared(token.id, &token.limits, &shares, estimate, now);
                if admitted.is_ok() {
                    shared.touch(token.id, now);
                }
                return admitted.map_err(|short| refusal_error(short.into_refusal()));
            }
            leases += 1;
            let seen = share_of(&shares, limit);
            let settings = self.limits();
            let lease = shared
                .lease(
                    &self.db,
                    token.id,
                    &token.limits,
                    limit,
                    seen,
                    need,
                    settings.shared_slice_fraction,
                    now,
                    u64::try_from(self.ttl_ms()).unwrap_or(u64::MAX),
                )
                .await;
            if let Ok(false) = lease {
                exhausted.push(limit);
            }
            if let Err(error) = lease {
                // Without the database no share can be leased: this
                // instance counts alone until it is back (docs/limits.md).
                slog::warn!(self.log, "limits.share_lease_failed"; "token_id" => token.id, "error" => %error);
                let admitted = self.engine.lock().map_err(|_| ApiError::Internal)?.admit(
                    token.id,
                    &token.limits,
                    estimate,
                    self.now_u64(),
                );
                return admitted.map_err(refusal_error);
            }
        }
    }

    /// Replaces the in-memory hold by the real spend (the database hold is
    /// settled with the usage record).
    pub fn settle(&self, admission: &mut Admission, tokens: i64, cost_nanos: i64) {
        if let Some(draw) = admission.slice.take() {
            let spent = Amounts {
                nanos: cost_nanos.max(0),
                tokens: tokens.max(0),
                user_nanos: cost_nanos.max(0),
            };
            draw.finish(Some(spent), self.now_ms());
        }
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
        if let Some(draw) = admission.slice.take() {
            draw.finish(None, self.now_ms());
        }
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
    /// the next request reloads its spend, and retires its budget slice:
    /// the next request leases under the new limits, and the slice's unused
    /// part goes back to the database now (best effort; else when its
    /// requests have ended, or after `limits.reservation_ttl`).
    pub fn forget(&self, token_id: i64) {
        // With shared limits the engine keeps the token's windows: they are
        // what occupies this instance's shares (the limits themselves come
        // with every request, and no spend is seeded to reload).
        if self.shared.is_none()
            && let Ok(mut engine) = self.engine.lock()
        {
            engine.forget(token_id);
        }
        let give_back = self
            .slices
            .lock()
            .ok()
            .and_then(|mut book| book.retire(token_id));
        if let Some(give_back) = give_back
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let swap = self.give_back_swap(give_back);
            let db = self.db.clone();
            let log = self.log.clone();
            runtime.spawn(async move {
                if let Err(error) = db.swap_slice(swap).await {
                    slog::warn!(log, "limits.slice_give_back_failed"; "token_id" => token_id, "error" => %error);
                }
            });
        }
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.remove(&token_id);
        }
    }

    /// Lease transactions this instance started (each covers many requests).
    pub fn budget_leases_total(&self) -> u64 {
        self.leases.load(Ordering::Relaxed)
    }

    /// Share lease transactions of limits held across instances (0 when
    /// this instance counts alone).
    pub fn share_leases_total(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |shared| shared.leases_total())
    }

    /// Whether RPM, TPM, parallelism and quotas are held across instances.
    pub fn limits_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Gives back what nothing occupies of the limit shares of tokens idle
    /// for `idle_ms` (every token at shutdown).
    async fn give_back_shares(&self, idle_ms: u64, shutting_down: bool) {
        let Some(shared) = &self.shared else {
            return;
        };
        let now = self.now_u64();
        let usage = |token_id: i64| {
            self.engine
                .lock()
                .map(|engine| engine.usage(token_id, now))
                .unwrap_or_default()
        };
        shared
            .give_back_idle(&self.db, &usage, now, idle_ms, shutting_down, &self.log)
            .await;
    }

    /// Holds `need` from the token's slice, leasing a new slice when it
    /// cannot cover it. Returns the draw and the slice's reservation id.
    async fn hold_budget(
        &self,
        token: &TokenInfo,
        need: Amounts,
    ) -> Result<(Draw, Option<i64>), BudgetRefusal> {
        let limited = Limited {
            nanos: token.budget_nanos.is_some(),
            tokens: token.budget_tokens.is_some(),
            user_nanos: token.user_prepaid && token.user_id.is_some(),
        };
        let margin = self.ttl_ms() / 4;
        loop {
            let drawn = self.lock_slices()?.try_draw(
                token.id,
                token.user_id,
                limited,
                need,
                self.now_ms(),
                margin,
            );
            let gate = match drawn {
                Ok((ticket, id)) => return Ok((self.draw(ticket), id)),
                Err(gate) => gate,
            };
            // One lease per token at a time: the others wait here, then
            // draw from what it brought.
            let turn = gate.lock_owned().await;
            let now = self.now_ms();
            let generation = {
                let mut book = self.lock_slices()?;
                match book.try_draw(token.id, token.user_id, limited, need, now, margin) {
                    Ok(drawn) => Err(drawn),
                    Err(_) => Ok(book.begin_lease(token.id)),
                }
            };
            let generation = match generation {
                Ok(generation) => generation,
                Err((ticket, id)) => return Ok((self.draw(ticket), id)),
            };
            let Some((generation, reservation_id, give_back)) = generation else {
                continue;
            };
            let swap = SliceSwap {
                token_id: token.id,
                user_id: token.user_id,
                reservation_id,
                give_back,
                lease: Some(LeaseNeed {
                    need,
                    limited,
                    fraction: self.limits().budget_slice_fraction,
                }),
                now_ms: now,
                expires_at_ms: now.saturating_add(self.ttl_ms()),
            };
            self.leases.fetch_add(1, Ordering::Relaxed);
            // The lease runs as a task of its own and lands in the book
            // even if this request is cancelled meanwhile: the database
            // never holds a slice this instance does not know of.
            // The request's own draw is made there too, and given back by
            // `Draw`'s `Drop` if nobody is left to take it.
            let db = self.db.clone();
            let slices = self.slices.clone();
            let token_id = token.id;
            let task = tokio::spawn(async move {
                let outcome = db.swap_slice(swap).await;
                let drawn = slices.lock().ok().and_then(|mut book| {
                    book.finish_lease(
                        token_id,
                        generation,
                        give_back,
                        &outcome,
                        swap.expires_at_ms,
                    );
                    match outcome {
                        Ok(SliceOutcome::Leased { .. }) => book
                            .try_draw(token_id, swap.user_id, limited, need, swap.now_ms, 0)
                            .ok(),
                        _ => None,
                    }
                });
                drop(turn);
                let drawn = drawn.map(|(ticket, id)| {
                    (
                        Draw {
                            book: slices.clone(),
                            ticket,
                            settled: false,
                        },
                        id,
                    )
                });
                (outcome, drawn)
            });
            match task.await {
                Ok((Ok(SliceOutcome::Leased { .. }), Some(drawn))) => return Ok(drawn),
                // Retired meanwhile (an admin change): lease again.
                Ok((Ok(SliceOutcome::Leased { .. } | SliceOutcome::Returned), None)) => continue,
                Ok((Ok(SliceOutcome::Refused(why)), _)) => return Err(BudgetRefusal::Refused(why)),
                Ok((Err(error), _)) => return Err(BudgetRefusal::Unavailable(error)),
                Ok((Ok(SliceOutcome::Returned), Some(_))) => continue,
                Err(error) => {
                    return Err(BudgetRefusal::Unavailable(DbError::Runtime(format!(
                        "budget lease task failed: {error}"
                    ))));
                }
            }
        }
    }

    fn draw(&self, ticket: Ticket) -> Draw {
        Draw {
            book: self.slices.clone(),
            ticket,
            settled: false,
        }
    }

    fn lock_slices(&self) -> Result<std::sync::MutexGuard<'_, SliceBook>, BudgetRefusal> {
        self.slices.lock().map_err(|_| {
            BudgetRefusal::Unavailable(DbError::Runtime("budget slices poisoned".to_owned()))
        })
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.reservation_ttl.as_millis()).unwrap_or(i64::MAX)
    }

    fn give_back_swap(&self, give_back: GiveBack) -> SliceSwap {
        let now = self.now_ms();
        SliceSwap {
            token_id: give_back.token_id,
            user_id: give_back.user_id,
            reservation_id: Some(give_back.reservation_id),
            give_back: give_back.amounts,
            lease: None,
            now_ms: now,
            expires_at_ms: now.saturating_add(self.ttl_ms()),
        }
    }

    async fn give_back(&self, items: Vec<GiveBack>) {
        for item in items {
            let token_id = item.token_id;
            if let Err(error) = self.db.swap_slice(self.give_back_swap(item)).await {
                // Its row is no longer renewed: it comes back after the TTL.
                slog::warn!(self.log, "limits.slice_give_back_failed"; "token_id" => token_id, "error" => %error);
            }
        }
    }

    /// Gives back every slice's unused part (shutdown; tests). Requests
    /// still in flight keep what they drew; it goes back with their usage.
    pub async fn give_back_slices(&self) {
        let items = self
            .slices
            .lock()
            .map(|mut book| book.drain())
            .unwrap_or_default();
        self.give_back(items).await;
        self.give_back_shares(0, true).await;
    }

    /// Periodic upkeep: gives back idle and retired slices, renews the rows
    /// of live ones every quarter of the TTL, and sweeps expired holds.
    pub async fn maintain(&self) {
        let now = self.now_ms();
        let idle_ms =
            i64::try_from(self.limits().budget_slice_idle.as_millis()).unwrap_or(i64::MAX);
        let items = self
            .slices
            .lock()
            .map(|mut book| book.sweep(now, idle_ms))
            .unwrap_or_default();
        self.give_back(items).await;
        self.give_back_shares(u64::try_from(idle_ms).unwrap_or(u64::MAX), false)
            .await;
        let quarter = (self.ttl_ms() / 4).max(1);
        if now.saturating_sub(self.last_renewal_ms.load(Ordering::Relaxed)) >= quarter {
            if let Some(shared) = &self.shared
                && let Err(error) = shared
                    .renew(
                        &self.db,
                        self.now_u64(),
                        u64::try_from(self.ttl_ms()).unwrap_or(u64::MAX),
                    )
                    .await
            {
                slog::warn!(self.log, "limits.share_renewal_failed"; "error" => %error);
            }
            let ids = self
                .slices
                .lock()
                .map(|book| book.row_ids())
                .unwrap_or_default();
            let expires_at = now.saturating_add(self.ttl_ms());
            match self.db.renew_slices(ids.clone(), expires_at).await {
                Ok(alive) => {
                    self.last_renewal_ms.store(now, Ordering::Relaxed);
                    if let Ok(mut book) = self.slices.lock() {
                        book.renewed(&ids, &alive, expires_at);
                    }
                }
                Err(error) => {
                    slog::warn!(self.log, "limits.slice_renewal_failed"; "error" => %error)
                }
            }
        }
        if now.saturating_sub(self.last_expiry_ms.load(Ordering::Relaxed)) >= quarter {
            self.last_expiry_ms.store(now, Ordering::Relaxed);
            self.expire().await;
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
        if self.shared.is_some()
            && let Err(error) = self.db.sweep_shares(self.now_ms()).await
        {
            slog::warn!(self.log, "limits.share_sweep_failed"; "error" => %error);
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
                        let budget = row.budget_tokens.unwrap_or(0);
                        let used = row.spent_tokens + row.reserved_tokens;
                        budget_message(BudgetFigures {
                            used: used >= budget,
                            spent: format!("{} tokens", row.spent_tokens),
                            budget: format!("{budget} tokens"),
                            left: format!("{} tokens", (budget - used).max(0)),
                            reserved: format!("{} tokens", row.reserved_tokens),
                            wanted: format!("{} tokens", estimate.tokens),
                        })
                    }
                    Some(row) => {
                        let budget = row.budget_nanos.unwrap_or(0);
                        let used = row.spent_nanos + row.reserved_nanos;
                        budget_message(BudgetFigures {
                            used: used >= budget,
                            spent: usd(row.spent_nanos),
                            budget: usd(budget),
                            left: usd((budget - used).max(0)),
                            reserved: usd(row.reserved_nanos),
                            wanted: usd(cost_nanos),
                        })
                    }
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

/// Share leases one request may make before it is refused (each lease
/// grants at least what the request needs, but concurrent requests of the
/// token on this instance may draw it first).
const MAX_SHARE_LEASES_PER_REQUEST: u32 = 64;

/// This instance's share of `limit` as [`Shares`] gave it.
fn share_of(shares: &Shares, limit: SharedLimit) -> u64 {
    let share = match limit {
        SharedLimit::Rpm => shares.rpm,
        SharedLimit::Tpm => shares.tpm,
        SharedLimit::Parallel => shares.parallel,
        SharedLimit::Quota(index) => shares.quotas.get(index).copied().flatten(),
    };
    share.unwrap_or(0)
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
/// takes requests, so nothing races with it), then keeps the budget slices
/// in order ([`Enforcer::maintain`]) in the background: at least every
/// `every` (a quarter of the reservation TTL), and every half of
/// `limits.budget_slice_idle` so idle slices go back in time.
pub async fn start_expiry(enforcer: Arc<Enforcer>, every: Duration) {
    enforcer
        .last_expiry_ms
        .store(enforcer.now_ms(), Ordering::Relaxed);
    enforcer.expire().await;
    let every = every
        .min(enforcer.limits().budget_slice_idle / 2)
        .max(Duration::from_millis(100));
    actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval_at(actix_rt::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            enforcer.maintain().await;
        }
    });
}

/// Why a budget could not be held.
enum BudgetRefusal {
    Refused(HoldRefused),
    Unavailable(DbError),
}

/// What a request drew from a slice (plain data; see [`Draw`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticket {
    token_id: i64,
    generation: u64,
    held: Amounts,
}

/// What a request drew from a slice; given back (less what it spent) when
/// it settles. Only the slice it was drawn from takes it back: a slice that
/// was replaced (its row vanished) does not. Dropped unsettled (a request
/// cancelled while its lease was in flight), it gives its draw back whole,
/// so a slice never stays held by a request that no longer exists.
#[derive(Debug)]
struct Draw {
    book: Arc<Mutex<SliceBook>>,
    ticket: Ticket,
    settled: bool,
}

impl Draw {
    /// Never called with the book locked (`Drop` locks it).
    fn finish(mut self, spent: Option<Amounts>, now: i64) {
        self.settled = true;
        if let Ok(mut book) = self.book.lock() {
            book.settle(&self.ticket, spent, Some(now));
        }
    }
}

impl Drop for Draw {
    fn drop(&mut self) {
        if !self.settled
            && let Ok(mut book) = self.book.lock()
        {
            book.settle(&self.ticket, None, None);
        }
    }
}

/// A slice's unused part to give back to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GiveBack {
    token_id: i64,
    user_id: Option<i64>,
    reservation_id: i64,
    amounts: Amounts,
}

/// One instance's slice of one token's budget (and its owner's balance).
#[derive(Debug)]
struct Slice {
    generation: u64,
    user_id: Option<i64>,
    /// The reservation row holding the slice in the database.
    reservation_id: Option<i64>,
    /// What the row holds for this instance, less the real spend of the
    /// requests that settled (the usage batch takes that from the row).
    granted: Amounts,
    /// Estimates drawn by requests in flight.
    outstanding: Amounts,
    in_flight: u32,
    /// The row's expiry as last set by this instance.
    expires_at_ms: i64,
    last_used_ms: i64,
    /// Held while a lease of this token is in flight.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// A lease is in flight: not idle, whatever the clock says.
    leasing: bool,
}

impl Slice {
    fn available(&self) -> Amounts {
        Amounts {
            nanos: (self.granted.nanos - self.outstanding.nanos).max(0),
            tokens: (self.granted.tokens - self.outstanding.tokens).max(0),
            user_nanos: (self.granted.user_nanos - self.outstanding.user_nanos).max(0),
        }
    }

    fn give_back(&mut self, token_id: i64) -> Option<GiveBack> {
        let amounts = self.available();
        self.granted = sub(self.granted, amounts);
        Some(GiveBack {
            token_id,
            user_id: self.user_id,
            reservation_id: self.reservation_id?,
            amounts,
        })
    }
}

fn sub(a: Amounts, b: Amounts) -> Amounts {
    Amounts {
        nanos: a.nanos.saturating_sub(b.nanos).max(0),
        tokens: a.tokens.saturating_sub(b.tokens).max(0),
        user_nanos: a.user_nanos.saturating_sub(b.user_nanos).max(0),
    }
}

fn add(a: Amounts, b: Amounts) -> Amounts {
    Amounts {
        nanos: a.nanos.saturating_add(b.nanos),
        tokens: a.tokens.saturating_add(b.tokens),
        user_nanos: a.user_nanos.saturating_add(b.user_nanos),
    }
}

/// The budget slices of one instance: plain bookkeeping, no I/O, so that
/// it is tested without a database. Every method is a few map operations
/// under the enforcer's mutex, never held across an await.
#[derive(Debug, Default)]
struct SliceBook {
    slices: HashMap<i64, Slice>,
    /// Slices of tokens whose limits changed, kept until their requests end.
    retired: Vec<(i64, Slice)>,
    next_generation: u64,
}

impl SliceBook {
    fn new_slice(&mut self, user_id: Option<i64>, now: i64) -> Slice {
        self.next_generation += 1;
        Slice {
            generation: self.next_generation,
            user_id,
            reservation_id: None,
            granted: Amounts::default(),
            outstanding: Amounts::default(),
            in_flight: 0,
            expires_at_ms: 0,
            last_used_ms: now,
            gate: Arc::new(tokio::sync::Mutex::new(())),
            leasing: false,
        }
    }

    /// Draws `need` from the token's slice if it covers every limited
    /// amount (a limit reached refuses even a zero estimate, as in the
    /// database) and its row is not about to expire; else returns the gate
    /// to lease behind.
    fn try_draw(
        &mut self,
        token_id: i64,
        user_id: Option<i64>,
        limited: Limited,
        need: Amounts,
        now: i64,
        margin_ms: i64,
    ) -> Result<(Ticket, Option<i64>), Arc<tokio::sync::Mutex<()>>> {
        if !self.slices.contains_key(&token_id) {
            let slice = self.new_slice(user_id, now);
            self.slices.insert(token_id, slice);
        }
        let Some(slice) = self.slices.get_mut(&token_id) else {
            return Err(Arc::new(tokio::sync::Mutex::new(())));
        };
        let available = slice.available();
        let covers =
            |limited: bool, available: i64, need: i64| !limited || available >= need.max(1);
        let fresh =
            slice.reservation_id.is_some() && slice.expires_at_ms.saturating_sub(now) >= margin_ms;
        if fresh
            && covers(limited.nanos, available.nanos, need.nanos)
            && covers(limited.tokens, available.tokens, need.tokens)
            && covers(limited.user_nanos, available.user_nanos, need.user_nanos)
        {
            // Only what the slice holds is drawn: an amount leased as 0
            // (not limited) stays 0.
            let held = Amounts {
                nanos: if limited.nanos { need.nanos.max(0) } else { 0 },
                tokens: if limited.tokens {
                    need.tokens.max(0)
                } else {
                    0
                },
                user_nanos: if limited.user_nanos {
                    need.user_nanos.max(0)
                } else {
                    0
                },
            };
            slice.outstanding = add(slice.outstanding, held);
            slice.in_flight += 1;
            slice.last_used_ms = now;
            return Ok((
                Ticket {
                    token_id,
                    generation: slice.generation,
                    held,
                },
                slice.reservation_id,
            ));
        }
        Err(slice.gate.clone())
    }

    /// Starts a lease: takes the slice's unused part out (the lease gives it
    /// back to the database in its transaction) and returns the slice's
    /// generation, row and that part.
    fn begin_lease(&mut self, token_id: i64) -> Option<(u64, Option<i64>, Amounts)> {
        let slice = self.slices.get_mut(&token_id)?;
        let give_back = if slice.reservation_id.is_some() {
            let available = slice.available();
            slice.granted = sub(slice.granted, available);
            available
        } else {
            Amounts::default()
        };
        slice.leasing = true;
        Some((slice.generation, slice.reservation_id, give_back))
    }

    /// Applies a lease's outcome to the slice it was for (wherever it is
    /// now: an admin change may have retired it meanwhile).
    fn finish_lease(
        &mut self,
        token_id: i64,
        generation: u64,
        give_back: Amounts,
        outcome: &Result<SliceOutcome, DbError>,
        expires_at_ms: i64,
    ) {
        let next = self.next_generation + 1;
        let Some(slice) = self.find(token_id, generation) else {
            return;
        };
        slice.leasing = false;
        match outcome {
            Ok(SliceOutcome::Leased {
                reservation_id,
                amounts,
                new_row,
            }) => {
                if *new_row {
                    // A new row: the old one (if any) is gone, and with it
                    // whatever this instance thought it held. Requests
                    // drawn from it settle against nothing.
                    slice.generation = next;
                    slice.granted = *amounts;
                    slice.outstanding = Amounts::default();
                    slice.in_flight = 0;
                } else {
                    slice.granted = add(slice.granted, *amounts);
                }
                slice.reservation_id = Some(*reservation_id);
                slice.expires_at_ms = expires_at_ms;
            }
            Ok(SliceOutcome::Refused(_) | SliceOutcome::Returned) => {
                // What was given back is gone from the row too.
                slice.expires_at_ms = expires_at_ms;
            }
            // Nothing happened in the database: the unused part is still ours.
            Err(_) => slice.granted = add(slice.granted, give_back),
        }
        if matches!(outcome, Ok(SliceOutcome::Leased { new_row: true, .. })) {
            self.next_generation = next;
        }
    }

    fn find(&mut self, token_id: i64, generation: u64) -> Option<&mut Slice> {
        match self.slices.get_mut(&token_id) {
            Some(slice) if slice.generation == generation => Some(slice),
            _ => self
                .retired
                .iter_mut()
                .find(|(id, slice)| *id == token_id && slice.generation == generation)
                .map(|(_, slice)| slice),
        }
    }

    /// A request ended: its estimate leaves the slice, and what it really
    /// spent (`None`: nothing, it never reached an upstream) is no longer
    /// the slice's. So the slice gets back `estimate - spent`.
    fn settle(&mut self, ticket: &Ticket, spent: Option<Amounts>, now: Option<i64>) {
        let Some(slice) = self.find(ticket.token_id, ticket.generation) else {
            return;
        };
        slice.outstanding = sub(slice.outstanding, ticket.held);
        slice.in_flight = slice.in_flight.saturating_sub(1);
        if let Some(now) = now {
            slice.last_used_ms = slice.last_used_ms.max(now);
        }
        if let Some(spent) = spent {
            // Never below zero: an amount the slice does not hold (not
            // limited) stays 0, as the usage batch's take does.
            slice.granted = sub(slice.granted, spent);
        }
    }

    /// Retires a token's slice (its limits changed); returns its unused part.
    fn retire(&mut self, token_id: i64) -> Option<GiveBack> {
        let mut slice = self.slices.remove(&token_id)?;
        let give_back = slice.give_back(token_id);
        if slice.in_flight > 0 || slice.leasing {
            self.retired.push((token_id, slice));
        }
        give_back.filter(|item| !item.amounts.is_zero())
    }

    /// Slices idle for `idle_ms` and retired ones whose requests ended:
    /// removed, with their unused part to give back.
    fn sweep(&mut self, now: i64, idle_ms: i64) -> Vec<GiveBack> {
        let mut items = Vec::new();
        let idle: Vec<i64> = self
            .slices
            .iter()
            .filter(|(_, slice)| {
                slice.in_flight == 0
                    && !slice.leasing
                    && now.saturating_sub(slice.last_used_ms) >= idle_ms
            })
            .map(|(id, _)| *id)
            .collect();
        for token_id in idle {
            if let Some(mut slice) = self.slices.remove(&token_id) {
                items.extend(slice.give_back(token_id));
            }
        }
        let mut kept = Vec::new();
        for (token_id, mut slice) in std::mem::take(&mut self.retired) {
            if slice.in_flight == 0 && !slice.leasing {
                items.extend(slice.give_back(token_id));
            } else {
                kept.push((token_id, slice));
            }
        }
        self.retired = kept;
        items.retain(|item| !item.amounts.is_zero());
        items
    }

    /// Every slice, for shutdown: what each holds unused.
    fn drain(&mut self) -> Vec<GiveBack> {
        let mut items: Vec<GiveBack> = Vec::new();
        for (token_id, mut slice) in self.slices.drain() {
            items.extend(slice.give_back(token_id));
        }
        for (token_id, mut slice) in std::mem::take(&mut self.retired) {
            items.extend(slice.give_back(token_id));
        }
        items.retain(|item| !item.amounts.is_zero());
        items
    }

    /// The rows to renew.
    fn row_ids(&self) -> Vec<i64> {
        self.slices
            .values()
            .chain(self.retired.iter().map(|(_, slice)| slice))
            .filter_map(|slice| slice.reservation_id)
            .collect()
    }

    /// Rows renewed until `expires_at_ms`; those of `asked` not `alive` are
    /// gone (emptied by the usage batch, or expired): their slices hold
    /// nothing any more and lease a new row next time.
    fn renewed(&mut self, asked: &[i64], alive: &[i64], expires_at_ms: i64) {
        let alive: HashSet<i64> = alive.iter().copied().collect();
        let asked: HashSet<i64> = asked.iter().copied().collect();
        let slices = self
            .slices
            .values_mut()
            .chain(self.retired.iter_mut().map(|(_, slice)| slice));
        for slice in slices {
            let Some(id) = slice.reservation_id else {
                continue;
            };
            if alive.contains(&id) {
                slice.expires_at_ms = slice.expires_at_ms.max(expires_at_ms);
            } else if asked.contains(&id) && !slice.leasing {
                slice.reservation_id = None;
                slice.granted = Amounts::default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONEY: Limited = Limited {
        nanos: true,
        tokens: false,
        user_nanos: false,
    };

    fn money(nanos: i64) -> Amounts {
        Amounts {
            nanos,
            tokens: 1,
            user_nanos: 0,
        }
    }

    fn leased(book: &mut SliceBook, token: i64, id: i64, nanos: i64, new_row: bool) {
        let (generation, _, give_back) = book.begin_lease(token).unwrap_or_default();
        book.finish_lease(
            token,
            generation,
            give_back,
            &Ok(SliceOutcome::Leased {
                reservation_id: id,
                amounts: money(nanos),
                new_row,
            }),
            1_000,
        );
    }

    #[test]
    fn a_slice_covers_requests_until_it_runs_short_then_asks_for_a_lease() {
        let mut book = SliceBook::default();
        assert!(book.try_draw(1, None, MONEY, money(6), 0, 10).is_err());
        leased(&mut book, 1, 7, 20, true);
        let (first, id) = book
            .try_draw(1, None, MONEY, money(6), 0, 10)
            .map_err(|_| "first")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id, Some(7));
        assert_eq!(
            first.held,
            Amounts {
                nanos: 6,
                tokens: 0,
                user_nanos: 0
            }
        );
        let (second, _) = book
            .try_draw(1, None, MONEY, money(6), 0, 10)
            .map_err(|_| "second")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(book.try_draw(1, None, MONEY, money(6), 0, 10).is_ok());
        // 18 of 20 drawn: the fourth must lease.
        assert!(book.try_draw(1, None, MONEY, money(6), 0, 10).is_err());
        // Spent 4 of its 6: 2 come back to the slice; spent 7 of 6: the
        // slice loses 7 (what the usage batch takes from the row).
        book.settle(&first, Some(money(4)), Some(1));
        book.settle(&second, Some(money(7)), Some(1));
        let slice = book
            .slices
            .get(&1)
            .map(|s| (s.granted.nanos, s.outstanding.nanos));
        assert_eq!(slice, Some((20 - 4 - 7, 6)));
        // A lease gives back the unused part first: 9 - 6 = 3.
        assert_eq!(book.begin_lease(1).map(|(_, _, back)| back.nanos), Some(3));
    }

    #[test]
    fn a_stale_slice_is_not_drawn_from() {
        let mut book = SliceBook::default();
        let _ = book.try_draw(1, None, MONEY, money(1), 0, 10);
        leased(&mut book, 1, 7, 100, true);
        // Leased until 1,000; with a margin of 250 it serves until 750.
        assert!(book.try_draw(1, None, MONEY, money(1), 750, 250).is_ok());
        assert!(book.try_draw(1, None, MONEY, money(1), 751, 250).is_err());
    }

    #[test]
    fn a_replaced_row_orphans_the_draws_of_the_old_one() {
        let mut book = SliceBook::default();
        let _ = book.try_draw(1, None, MONEY, money(1), 0, 0);
        leased(&mut book, 1, 7, 10, true);
        let (old, _) = book
            .try_draw(1, None, MONEY, money(10), 0, 0)
            .map_err(|_| "draw")
            .unwrap_or_else(|e| panic!("{e}"));
        leased(&mut book, 1, 8, 5, true);
        book.settle(&old, Some(money(10)), Some(1));
        let slice = book
            .slices
            .get(&1)
            .map(|s| (s.reservation_id, s.granted.nanos, s.in_flight));
        assert_eq!(slice, Some((Some(8), 5, 0)));
    }

    #[test]
    fn retired_and_idle_slices_are_given_back_once_their_requests_end() {
        let mut book = SliceBook::default();
        let _ = book.try_draw(1, None, MONEY, money(1), 0, 0);
        leased(&mut book, 1, 7, 10, true);
        let (running, _) = book
            .try_draw(1, None, MONEY, money(4), 0, 0)
            .map_err(|_| "draw")
            .unwrap_or_else(|e| panic!("{e}"));
        let now_unused = book.retire(1).map(|item| item.amounts.nanos);
        assert_eq!(now_unused, Some(6));
        assert!(book.sweep(100, 10).is_empty(), "a request still runs");
        book.settle(&running, Some(money(1)), Some(5));
        let items = book.sweep(100, 10);
        assert_eq!(
            items.iter().map(|i| i.amounts.nanos).collect::<Vec<_>>(),
            [3]
        );
        assert!(book.retired.is_empty());

        let _ = book.try_draw(2, None, MONEY, money(1), 0, 0);
        leased(&mut book, 2, 9, 10, true);
        assert!(book.sweep(5, 10).is_empty(), "not idle yet");
        assert_eq!(book.sweep(10, 10).len(), 1);
        assert!(book.slices.is_empty());
    }
}
