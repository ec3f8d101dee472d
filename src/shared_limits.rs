//! Rate limits, parallelism and quotas held across instances (issue 14):
//! this instance's shares of each token's limits, leased from the database
//! (`crate::db::limit_shares`) and admitted from in memory.
//!
//! Each limit is a capacity that an admitted request occupies for a while:
//! an RPM unit for the 60 s after its admission, TPM tokens likewise, a
//! parallel slot until the request ends, a quota unit until the period
//! ends. An instance holds a share of that capacity and admits a request
//! only if its own occupied units plus the request fit in its share
//! ([`switchyard_actors::TokenLimits::admit_shared`]); the database grants
//! shares only while all live shares together stay within the limit. So at
//! every moment the instances' occupied units add up to at most the limit:
//! the limits hold exactly across instances (estimates against actual
//! tokens aside, as on one instance).
//!
//! The price of exactness is that an instance can refuse while another
//! holds unused share. Leases take a fraction of what no instance holds
//! (`limits.shared_slice_fraction`, at least what the request needs), and
//! an instance gives back the part of a share nothing occupies once the
//! token has been idle there for `limits.budget_slice_idle`, and at
//! shutdown; a crashed instance's shares stop counting after
//! `limits.reservation_ttl` (live instances renew theirs).
//!
//! Only what is freed is given back, never units still occupied: a share
//! shrinks to what its requests use, so an instance's occupied units never
//! exceed its share. A request costs no database round trip while its
//! instance's share covers it; a lease is one transaction.

use crate::db::limit_shares::{ShareLease, ShareRow};
use crate::db::{Db, DbError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use switchyard_actors::limits::WINDOW_MS;
use switchyard_actors::{Limits, Period, QuotaKind, SharedLimit, Shares, TokenUsage};

/// One shared limit of a token (its row's `limit_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShareKey {
    Rpm,
    Tpm,
    Parallel,
    Quota(Period, QuotaKind),
}

impl ShareKey {
    /// The key and the configured limit of `limit` in `limits`.
    pub fn of(limit: SharedLimit, limits: &Limits) -> Option<(ShareKey, u64)> {
        match limit {
            SharedLimit::Rpm => limits.rpm.map(|rpm| (ShareKey::Rpm, u64::from(rpm))),
            SharedLimit::Tpm => limits.tpm.map(|tpm| (ShareKey::Tpm, tpm)),
            SharedLimit::Parallel => limits
                .max_parallel
                .map(|max| (ShareKey::Parallel, u64::from(max))),
            SharedLimit::Quota(index) => {
                let quota = limits.quotas.get(index)?;
                let key = ShareKey::Quota(quota.period, quota.kind);
                // Two quotas of the same period and kind share one row:
                // leased under the smaller limit, so both hold.
                let limit = limits
                    .quotas
                    .iter()
                    .filter(|other| other.period == quota.period && other.kind == quota.kind)
                    .map(|other| other.limit)
                    .min()
                    .unwrap_or(quota.limit);
                Some((key, limit))
            }
        }
    }

    pub fn name(self) -> String {
        match self {
            ShareKey::Rpm => "rpm".to_owned(),
            ShareKey::Tpm => "tpm".to_owned(),
            ShareKey::Parallel => "parallel".to_owned(),
            ShareKey::Quota(period, kind) => {
                let period = match period {
                    Period::Minute => "minute",
                    Period::Hour => "hour",
                    Period::Day => "day",
                    Period::Month => "month",
                };
                let kind = match kind {
                    QuotaKind::Requests => "requests",
                    QuotaKind::Tokens => "tokens",
                    QuotaKind::Cost => "cost",
                };
                format!("quota:{period}:{kind}")
            }
        }
    }

    /// The quota period's start at `now_ms`; 0 for the other limits.
    pub fn period_start(self, now_ms: u64) -> u64 {
        match self {
            ShareKey::Quota(period, _) => period.start_ms(now_ms),
            _ => 0,
        }
    }

    /// Units of the share that requests of this instance occupy now (the
    /// same figures the engine checks).
    fn used(self, usage: &TokenUsage) -> u64 {
        match self {
            ShareKey::Rpm => usage.window_requests,
            ShareKey::Tpm => usage.window_tokens,
            ShareKey::Parallel => usage.in_flight,
            ShareKey::Quota(period, QuotaKind::Requests) => usage
                .period(period)
                .requests
                .saturating_add(usage.in_flight),
            ShareKey::Quota(period, QuotaKind::Tokens) => usage
                .period(period)
                .tokens
                .saturating_add(usage.reserved_tokens),
            ShareKey::Quota(period, QuotaKind::Cost) => usage
                .period(period)
                .cost_nanos
                .saturating_add(usage.reserved_nanos),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Held {
    period_start: u64,
    amount: u64,
}

#[derive(Debug, Default)]
struct TokenShares {
    /// Held while one of the token's shares changes in the database, so
    /// leases and give-backs of one token never interleave.
    gate: Arc<tokio::sync::Mutex<()>>,
    last_used_ms: u64,
    held: HashMap<ShareKey, Held>,
    /// Until when a limit found nothing free is refused without asking
    /// the database again (see [`REFUSED_LEASE_MS`]).
    refused_until_ms: HashMap<ShareKey, u64>,
}

/// After a lease found nothing free, requests short of that share are
/// refused for this long without a lease: a client flooding a token whose
/// limit is reached would otherwise cost one transaction per refusal.
pub const REFUSED_LEASE_MS: u64 = 100;

/// This instance's shares; shared by every worker.
#[derive(Debug)]
pub struct SharedLimits {
    /// Names this process's rows; new at every start, so a restarted
    /// instance never takes over rows its previous run left.
    instance_id: String,
    book: Mutex<HashMap<i64, TokenShares>>,
    leases: AtomicU64,
}

impl Default for SharedLimits {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedLimits {
    pub fn new() -> Self {
        SharedLimits {
            instance_id: format!("sy-{}", hex::encode(rand::random::<[u8; 8]>())),
            book: Mutex::new(HashMap::new()),
            leases: AtomicU64::new(0),
        }
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Lease transactions started.
    pub fn leases_total(&self) -> u64 {
        self.leases.load(Ordering::Relaxed)
    }

    /// The token's shares at `now_ms` (a quota share of an earlier period
    /// is none).
    pub fn shares(&self, token_id: i64, limits: &Limits, now_ms: u64) -> Shares {
        let Ok(book) = self.book.lock() else {
            return Shares::default();
        };
        let token = book.get(&token_id);
        let held = |key: ShareKey| -> Option<u64> {
            Some(
                token
                    .and_then(|token| token.held.get(&key))
                    .filter(|held| held.period_start == key.period_start(now_ms))
                    .map_or(0, |held| held.amount),
            )
        };
        Shares {
            rpm: limits.rpm.and_then(|_| held(ShareKey::Rpm)),
            tpm: limits.tpm.and_then(|_| held(ShareKey::Tpm)),
            parallel: limits.max_parallel.and_then(|_| held(ShareKey::Parallel)),
            quotas: limits
                .quotas
                .iter()
                .map(|quota| held(ShareKey::Quota(quota.period, quota.kind)))
                .collect(),
            last_word: false,
        }
    }

    /// A request of the token was admitted: not idle.
    pub fn touch(&self, token_id: i64, now_ms: u64) {
        if let Ok(mut book) = self.book.lock() {
            let token = book.entry(token_id).or_default();
            token.last_used_ms = token.last_used_ms.max(now_ms);
        }
    }

    /// Leases at least `need` more of `limit` (whose share was `seen` when
    /// the request fell short). Returns whether the share grew: by this
    /// lease, or by another request's while this one waited its turn.
    #[expect(clippy::too_many_arguments, reason = "one lease's figures")]
    pub async fn lease(
        &self,
        db: &Db,
        token_id: i64,
        limits: &Limits,
        limit: SharedLimit,
        seen: u64,
        need: u64,
        fraction: f64,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, DbError> {
        let Some((key, value)) = ShareKey::of(limit, limits) else {
            return Ok(false);
        };
        let period_start = key.period_start(now_ms);
        let gate = match self.book.lock() {
            Ok(mut book) => book.entry(token_id).or_default().gate.clone(),
            Err(_) => return Err(DbError::Runtime("limit shares poisoned".to_owned())),
        };
        let _turn = gate.lock().await;
        if self.held(token_id, key, period_start) > seen {
            return Ok(true);
        }
        let refused_recently = self.book.lock().ok().is_some_and(|book| {
            book.get(&token_id)
                .and_then(|token| token.refused_until_ms.get(&key))
                .is_some_and(|until| now_ms < *until)
        });
        if refused_recently {
            return Ok(false);
        }
        self.leases.fetch_add(1, Ordering::Relaxed);
        let expires_at = match key {
            ShareKey::Quota(period, _) => period.end_ms(now_ms),
            _ => now_ms.saturating_add(ttl_ms),
        };
        let leased = db
            .lease_share(ShareLease {
                row: self.row(token_id, key, period_start),
                limit: i64::try_from(value).unwrap_or(i64::MAX),
                need: i64::try_from(need).unwrap_or(i64::MAX),
                fraction,
                now_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
                expires_at_ms: i64::try_from(expires_at).unwrap_or(i64::MAX),
            })
            .await?;
        if let Ok(mut book) = self.book.lock() {
            let token = book.entry(token_id).or_default();
            token.held.insert(
                key,
                Held {
                    period_start,
                    amount: u64::try_from(leased.amount).unwrap_or(0),
                },
            );
            if leased.granted {
                token.refused_until_ms.remove(&key);
            } else {
                token
                    .refused_until_ms
                    .insert(key, now_ms.saturating_add(REFUSED_LEASE_MS));
            }
        }
        Ok(leased.granted)
    }

    fn held(&self, token_id: i64, key: ShareKey, period_start: u64) -> u64 {
        self.book
            .lock()
            .ok()
            .and_then(|book| {
                book.get(&token_id)
                    .and_then(|token| token.held.get(&key))
                    .filter(|held| held.period_start == period_start)
                    .map(|held| held.amount)
            })
            .unwrap_or(0)
    }

    fn row(&self, token_id: i64, key: ShareKey, period_start: u64) -> ShareRow {
        ShareRow {
            token_id,
            limit_key: key.name(),
            period_start: i64::try_from(period_start).unwrap_or(i64::MAX),
            instance_id: self.instance_id.clone(),
        }
    }

    /// Gives back what nothing occupies of the shares of tokens idle for
    /// `idle_ms` (all tokens when `shutting_down`; then the sliding-window
    /// shares still occupied expire when their requests leave the window).
    /// `usage` reads the engine's figures of a token.
    pub async fn give_back_idle(
        &self,
        db: &Db,
        usage: &(dyn Fn(i64) -> TokenUsage + Sync),
        now_ms: u64,
        idle_ms: u64,
        shutting_down: bool,
        log: &slog::Logger,
    ) {
        let idle: Vec<(i64, Arc<tokio::sync::Mutex<()>>)> = match self.book.lock() {
            Ok(book) => book
                .iter()
                .filter(|(_, token)| {
                    shutting_down || now_ms.saturating_sub(token.last_used_ms) >= idle_ms
                })
                .map(|(id, token)| (*id, token.gate.clone()))
                .collect(),
            Err(_) => return,
        };
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        for (token_id, gate) in idle {
            let _turn = gate.lock().await;
            let figures = usage(token_id);
            let mut items = Vec::new();
            if let Ok(mut book) = self.book.lock()
                && let Some(token) = book.get_mut(&token_id)
            {
                token.held.retain(|key, held| {
                    if held.period_start != key.period_start(now_ms) {
                        // A past period's quota share: its row lasts until
                        // that period ended, and counts for nothing after.
                        return false;
                    }
                    let used = key.used(&figures);
                    let free = held.amount.saturating_sub(used);
                    let windowed = matches!(key, ShareKey::Rpm | ShareKey::Tpm);
                    if free > 0 || (shutting_down && windowed) {
                        held.amount -= free;
                        items.push((*key, held.period_start, free));
                    }
                    held.amount > 0
                });
            }
            for (key, period_start, free) in items {
                let expires_at = (shutting_down && matches!(key, ShareKey::Rpm | ShareKey::Tpm))
                    .then(|| now.saturating_add(i64::try_from(WINDOW_MS).unwrap_or(0)));
                let row = self.row(token_id, key, period_start);
                let amount = i64::try_from(free).unwrap_or(i64::MAX);
                if let Err(error) = db.give_back_share(row, amount, now, expires_at).await {
                    // The row keeps it until it expires (or its period ends).
                    slog::warn!(log, "limits.share_give_back_failed"; "token_id" => token_id, "error" => %error);
                }
            }
        }
        if let Ok(mut book) = self.book.lock() {
            book.retain(|_, token| !token.held.is_empty() || Arc::strong_count(&token.gate) > 1);
        }
    }

    /// Renews this instance's sliding-window and parallel shares.
    pub async fn renew(&self, db: &Db, now_ms: u64, ttl_ms: u64) -> Result<usize, DbError> {
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let until = i64::try_from(now_ms.saturating_add(ttl_ms)).unwrap_or(i64::MAX);
        db.renew_shares(&self.instance_id, now, until).await
    }
}
