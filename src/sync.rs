//! Cache coherence between instances sharing a database (DESIGN §6).
//!
//! Every `database.sync_interval`, each instance asks the database what
//! changed since its last look: tokens (their cached view is read again at
//! its next use, `crate::tokens`; the in-memory limits read the new figures
//! from it then), users (their cached tokens are read again: they embed the
//! owner's status and multiplier) and prices (the price table is reloaded
//! when the count or the latest update time of prices moved). Changes made
//! through this instance are applied at once by the admin handlers; this
//! catches the others within the interval.
//!
//! On PostgreSQL the change feed (`crate::change_feed`, LISTEN/NOTIFY)
//! applies every change within milliseconds, token deletions and providers
//! included; this polling stays as its fallback and is SQLite's only way.
//! Deleted tokens are not seen here (their rows are gone): without the feed
//! another instance stops accepting one when its cache entry expires (30 s).
//! Disabling, the revocation path, is seen within the interval.

use crate::db::Db;
use crate::metering::PriceTable;
use crate::tokens::TokenCache;
use slog::{Logger, debug, warn};
use std::collections::HashMap;
use std::time::Duration;

pub struct Sync {
    pub db: Db,
    pub tokens: TokenCache,
    pub prices: PriceTable,
    pub log: Logger,
}

/// What the last polls saw, so a change is applied once, not once per poll
/// of the look-back window.
#[derive(Default)]
struct Seen {
    since: i64,
    prices: (i64, i64),
    tokens: HashMap<i64, i64>,
    users: HashMap<i64, i64>,
}

/// Starts polling on the current arbiter; "0s" turns it off.
pub fn start(sync: Sync, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    actix_rt::spawn(async move {
        // Changes older than the start are already in what this instance
        // loaded; the margin covers clocks of instances that differ a little.
        let mut seen = Seen {
            since: sync.db.now_ms() - 5_000,
            prices: sync.db.prices_fingerprint().await.unwrap_or_default(),
            ..Seen::default()
        };
        let mut tick = actix_rt::time::interval(interval);
        loop {
            tick.tick().await;
            if let Err(error) = poll(&sync, &mut seen).await {
                warn!(sync.log, "sync.poll_failed"; "error" => %error);
            }
        }
    });
}

/// How far each poll looks back before the watermark: a transaction that
/// committed late with an earlier `updated_at` is still seen.
const LOOK_BACK_MS: i64 = 2_000;

async fn poll(sync: &Sync, seen: &mut Seen) -> anyhow::Result<()> {
    let look_from = seen.since - LOOK_BACK_MS;
    let mut latest = seen.since;
    let mut invalidated = 0usize;
    for (id, updated_at) in sync.db.tokens_changed_since(look_from).await? {
        latest = latest.max(updated_at);
        if seen.tokens.insert(id, updated_at) != Some(updated_at) {
            sync.tokens.mark_changed(id);
            invalidated += 1;
        }
    }
    let mut users_changed = 0usize;
    for (id, updated_at) in sync.db.users_changed_since(look_from).await? {
        latest = latest.max(updated_at);
        if seen.users.insert(id, updated_at) != Some(updated_at) {
            sync.tokens.mark_user_changed(id);
            users_changed += 1;
        }
    }
    let prices = sync.db.prices_fingerprint().await?;
    if prices != seen.prices {
        sync.prices
            .replace(crate::config_store::load_prices(&sync.db).await?);
        seen.prices = prices;
    }
    if invalidated > 0 || users_changed > 0 {
        debug!(sync.log, "sync.invalidated"; "tokens" => invalidated, "users" => users_changed);
    }
    // Never past now: rows written later with a slightly older clock are
    // still caught by the look-back.
    seen.since = latest.min(sync.db.now_ms());
    let horizon = seen.since - LOOK_BACK_MS;
    seen.tokens.retain(|_, at| *at > horizon);
    seen.users.retain(|_, at| *at > horizon);
    Ok(())
}
