//! Switchyard's actors and the plain policy types they own.
//!
//! This crate knows nothing of HTTP or SQL. Storage reaches the actors through
//! small traits (`UsageSink`) that the `switchyard` crate implements; tests
//! implement them with in-memory fakes.
//!
//! - [`RouterActor`]: model name -> candidate providers -> a [`Lease`].
//! - [`ProviderActor`]: one per upstream; owns its [`KeyPool`] (health,
//!   strategy, retry policy).
//! - [`UsageActor`]: batches [`UsageRecord`]s into a [`UsageSink`].

use std::sync::Arc;

/// How actors report events without depending on a logging crate; the server
/// passes a closure over its slog logger.
pub type LogHook = Arc<dyn Fn(&str) + Send + Sync>;

/// How a secret (an upstream key, a header value) appears in `Debug`
/// output: its first and last four characters, `****` when it is too short
/// for that to hide most of it. Keys and specs are printed by `{:?}` in logs
/// and test failures, so a derived `Debug` must never see a secret.
pub fn redacted(secret: &str) -> String {
    let chars = secret.chars().count();
    if chars <= 12 {
        return "****".to_owned();
    }
    let head: String = secret.chars().take(4).collect();
    let tail: String = secret.chars().skip(chars - 4).collect();
    format!("{head}…{tail}")
}

pub mod journal;
pub mod key_pool;
pub mod limits;
pub mod provider;
pub mod retry;
pub mod router;
pub mod usage;
pub mod usage_record;

pub use journal::{Journal, SegmentId};
pub use key_pool::{Failure, KeyHealthView, KeyPool, KeySpec, NoUsableKey, Outcome};
pub use limits::{
    Actual, BudgetFigures, BudgetKind, Committed, Estimate, Limit, Limits, Period, PeriodSpend,
    Quota, QuotaKind, Refusal, Reservation, Settled, SharedLimit, Shares, Shortfall, TokenLimits,
    TokenUsage, budget_message,
};
#[cfg(feature = "fault-injection")]
pub use provider::InjectPanic;
pub use provider::{
    GetHealth, KeySource, Lease, ProviderActor, ProviderShared, ProviderSpec, ProviderStats,
    ReplaceKeys, SetKeyEnabled, TakeProbes, UsableKeys,
};
pub use retry::{KeyStrategy, RetryPolicy};
#[cfg(feature = "fault-injection")]
pub use router::InjectProviderPanic;
pub use router::{
    GetRestarts, ListModels, ModelEntry, ModelRoute, ProviderRoute, ProviderRunning,
    RemoveProvider, RouteError, RouteTable, Routed, Router, RouterActor, SetDiscoveredModels,
    SetModelRoutes, SetRedirects, Tried, UpsertProvider, Upserted,
};
#[cfg(feature = "fault-injection")]
pub use usage::InjectUsagePanic;
pub use usage::{
    FlushAll, FlushReport, Nudge, RecordOutcome, UsageActor, UsageConfig, UsageQueue, UsageSink,
    UsageStats, WriteReport,
};
pub use usage_record::{
    AttemptNote, MAX_RECORD_COST_NANOS, MAX_RECORD_TOKENS, UsageFlags, UsageRecord,
};
