//! The change feed: instances sharing a PostgreSQL database apply each
//! other's changes within a second (DESIGN §6, issue 14).
//!
//! Triggers write a `change_feed` row in the same transaction as every
//! change another instance must apply (providers and their keys, redirects,
//! prices, tokens including deletions, users, admin keys, revoked admin
//! sessions; `migrations/postgres/2026-12-04-000100_change_feed`), and each
//! row sends a NOTIFY on [`CHANNEL`] when it commits. Each instance holds one
//! connection of its own that LISTENs; a notification wakes the reader,
//! which reads the rows it has not seen and applies them:
//!
//! - `provider`: the stored provider is put in line in the router, as a
//!   settings reload does ([`crate::reload::route_stored_provider`]): an
//!   unchanged provider keeps its actor and surviving keys keep their health.
//!   A key disabled after a 401/403 is stored by the instance that saw it
//!   (`gateway::failover`), so it reaches the others as a provider change.
//! - `key_rest`: a key the upstream put to rest with a 429 and `Retry-After`
//!   rests here too until the same moment (measured on the database's
//!   clock), without counting a failure. Latency figures stay local.
//! - `redirect`, `price`: the tables are read again.
//! - `token`: its cached view is read again at its next use (a deleted token
//!   is refused then; during an outage it is served as last read,
//!   `crate::tokens`), and the cached misses are dropped (a new token works
//!   at once).
//! - `user`: the user's cached tokens are read again (they embed the
//!   owner's status).
//! - `admin_key`, `admin_session`: the session cache forgets them.
//!
//! Applying a change twice is harmless, so the reader errs on the side of
//! reading again: a poll every `database.sync_interval` covers a lost
//! notification, and a reconnected listener reads everything since the
//! last successful read. Row ids are allocated before commit, so the reader
//! goes by time, not by id: each read looks back [`LOOK_BACK_MS`] before
//! the previous read and skips the rows it has seen. An instance cut off for
//! longer than the feed keeps rows ([`RETENTION_MS`]) reloads everything.
//! Rows this instance wrote (their `origin` is [`Db::instance`], set on each
//! of its connections) are skipped: it applied those changes as it made
//! them, and applying them again would race with what it is doing (a
//! settings reload would report a provider it starts as `updated`).
//!
//! SQLite has no NOTIFY and is one instance's database: nothing is written
//! or read there, and `crate::sync`'s polling stays (on both backends) as the
//! fallback for tokens, users and prices.

use crate::auth::session::{ForgetKeySessions, ForgetSession, SessionActor};
use crate::config::Backend;
use crate::crypto::SecretCipher;
use crate::db::Db;
use crate::db::changes::Change;
use crate::metering::PriceTable;
use crate::tokens::TokenCache;
use actix::Addr;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use slog::{Logger, debug, info, warn};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use switchyard_actors::{Router, SetRedirects};
use tokio::sync::Notify;

/// The NOTIFY channel the feed's trigger signals (payload: the row id).
pub const CHANNEL: &str = "switchyard_changes";

/// How far each read looks back before the previous one: a transaction that
/// wrote its row earlier but committed after that read is still seen.
pub const LOOK_BACK_MS: i64 = 10_000;

/// How long rows are kept; older ones are deleted by every instance.
pub const RETENTION_MS: i64 = 3_600_000;

const PRUNE_EVERY: Duration = Duration::from_secs(60);
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// What the reader applies changes to.
pub struct ChangeFeed {
    pub db: Db,
    /// `database.url`, for the listening connection (never logged).
    pub database_url: String,
    pub tokens: TokenCache,
    pub prices: PriceTable,
    pub router: Router,
    pub cipher: Arc<SecretCipher>,
    pub sessions: Addr<SessionActor>,
    pub log: Logger,
}

/// Starts the listener and the reader on the current arbiter (PostgreSQL
/// only). `poll` is the fallback read interval; zero: notifications only.
pub fn start(feed: ChangeFeed, poll: Duration) {
    if feed.db.backend() != Backend::Postgres {
        return;
    }
    let wake = Arc::new(Notify::new());
    spawn_listener(feed.database_url.clone(), wake.clone(), feed.log.clone());
    actix_rt::spawn(async move { feed.run(wake, poll).await });
}

/// LISTENs on a connection of its own, waking the reader at each
/// notification and after each (re)connection; reconnects after a second
/// when the connection fails.
fn spawn_listener(url: String, wake: Arc<Notify>, log: Logger) {
    actix_rt::spawn(async move {
        let mut listening = false;
        loop {
            match listen(&url, &wake, &log, &mut listening).await {
                Ok(()) => warn!(log, "change_feed.listen_closed"),
                Err(error) => warn!(log, "change_feed.listen_failed"; "error" => %error),
            }
            listening = false;
            actix_rt::time::sleep(RECONNECT_DELAY).await;
        }
    });
}

async fn listen(
    url: &str,
    wake: &Notify,
    log: &Logger,
    listening: &mut bool,
) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .await?;
    *listening = true;
    debug!(log, "change_feed.listening");
    // What changed while nothing listened is read now.
    wake.notify_one();
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    while let Some(notification) = notifications.next().await {
        notification?;
        wake.notify_one();
    }
    Ok(())
}

/// The reader's memory: the database time of the last successful read and
/// the rows seen within the look-back window.
struct Position {
    read_at: i64,
    seen: HashMap<i64, i64>,
}

impl ChangeFeed {
    async fn run(self, wake: Arc<Notify>, poll: Duration) {
        // Everything committed before now is in what this instance loaded
        // at start; the look-back re-applies the last few seconds, harmlessly.
        let read_at = loop {
            match self.db.feed_now_ms().await {
                Ok(now) => break now,
                Err(error) => {
                    warn!(self.log, "change_feed.read_failed"; "error" => %error);
                    actix_rt::time::sleep(RECONNECT_DELAY).await;
                }
            }
        };
        let mut position = Position {
            read_at,
            seen: HashMap::new(),
        };
        let mut poll = (!poll.is_zero()).then(|| actix_rt::time::interval(poll));
        let mut prune = actix_rt::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                () = wake.notified() => {}
                _ = async {
                    match poll.as_mut() {
                        Some(poll) => poll.tick().await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = prune.tick() => {
                    self.prune(position.read_at).await;
                    continue;
                }
            }
            if let Err(error) = self.read(&mut position).await {
                warn!(self.log, "change_feed.read_failed"; "error" => format!("{error:#}"));
            }
        }
    }

    async fn prune(&self, now: i64) {
        match self.db.prune_changes(now - RETENTION_MS).await {
            Ok(0) => {}
            Ok(deleted) => debug!(self.log, "change_feed.pruned"; "rows" => deleted),
            Err(error) => warn!(self.log, "change_feed.prune_failed"; "error" => %error),
        }
    }

    /// Reads the rows not seen yet and applies them.
    async fn read(&self, position: &mut Position) -> anyhow::Result<()> {
        let now = self.db.feed_now_ms().await?;
        if now - position.read_at > RETENTION_MS - LOOK_BACK_MS {
            // Rows this instance never read may be pruned already.
            warn!(self.log, "change_feed.resync"; "reason" => "no read for longer than the feed keeps rows");
            self.apply(&Batch::everything()).await?;
            position.read_at = now;
            position.seen.clear();
            return Ok(());
        }
        let rows = self
            .db
            .changes_since(position.read_at - LOOK_BACK_MS)
            .await?;
        let own = self.db.instance();
        let fresh: Vec<Change> = rows
            .into_iter()
            .filter(|row| position.seen.insert(row.id, row.at).is_none())
            .filter(|row| row.origin.as_deref() != Some(own))
            .collect();
        let batch = Batch::of(&fresh, now);
        self.apply(&batch).await?;
        // Only once applied: a failed batch is read again.
        position.read_at = now;
        let horizon = now - LOOK_BACK_MS;
        position.seen.retain(|_, at| *at > horizon);
        Ok(())
    }

    async fn apply(&self, batch: &Batch) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut providers = batch.providers.clone();
        if batch.all_providers {
            providers.extend(self.db.list_providers().await?.into_iter().map(|p| p.name));
            providers.extend(self.router.provider_names());
        }
        for name in &providers {
            let outcome = crate::reload::route_stored_provider(
                &self.db,
                &self.cipher,
                &self.router,
                &self.log,
                name,
            )
            .await?;
            info!(self.log, "change_feed.provider_applied"; "provider" => name, "outcome" => outcome);
        }
        // After the providers: a rest may name a key that just arrived.
        for rest in &batch.rests {
            self.router
                .rest_key(&rest.provider, &rest.key_id, rest.remaining);
            info!(self.log, "change_feed.key_rest_applied"; "provider" => &rest.provider,
                "key_id" => &rest.key_id, "rest_ms" => rest.remaining.as_millis() as u64);
        }
        if batch.redirects {
            let redirects = crate::config_store::load_redirects(&self.db).await?;
            self.router
                .actor()
                .send(SetRedirects(redirects))
                .await
                .map_err(|_| anyhow::anyhow!("the router is not running"))?;
        }
        if batch.prices {
            self.prices
                .replace(crate::config_store::load_prices(&self.db).await?);
        }
        if batch.all_tokens {
            self.tokens.mark_all_changed();
        } else {
            for id in &batch.users {
                self.tokens.mark_user_changed(*id);
            }
            for id in &batch.tokens {
                self.tokens.mark_changed(*id);
            }
            if !batch.tokens.is_empty() {
                self.tokens.forget_misses();
            }
        }
        for id in &batch.admin_keys {
            self.sessions
                .do_send(ForgetKeySessions { admin_key_id: *id });
        }
        for id in &batch.sessions {
            self.sessions.do_send(ForgetSession { session_id: *id });
        }
        debug!(self.log, "change_feed.applied"; "providers" => providers.len(),
            "rests" => batch.rests.len(), "tokens" => batch.tokens.len(),
            "users" => batch.users.len(), "all_tokens" => batch.all_tokens);
        Ok(())
    }
}

/// A key another instance saw put to rest, and how long it has left.
#[derive(Debug, PartialEq)]
struct Rest {
    provider: String,
    key_id: String,
    remaining: Duration,
}

/// What a set of feed rows asks this instance to do, each thing once.
#[derive(Debug, Default, PartialEq)]
struct Batch {
    providers: BTreeSet<String>,
    all_providers: bool,
    rests: Vec<Rest>,
    redirects: bool,
    prices: bool,
    tokens: BTreeSet<i64>,
    /// Users whose tokens are read again.
    users: BTreeSet<i64>,
    /// Everything is reloaded: every cached token is read again.
    all_tokens: bool,
    admin_keys: BTreeSet<i64>,
    sessions: BTreeSet<i64>,
}

#[derive(serde::Deserialize)]
struct RestDetail {
    key_id: String,
    rest_ms: i64,
}

impl Batch {
    /// The work `rows` ask for, `now` being the database's clock (rests are
    /// measured on it). Rows of unknown kinds (a newer instance's) and
    /// unreadable ones are skipped.
    fn of(rows: &[Change], now: i64) -> Self {
        let mut batch = Batch::default();
        for row in rows {
            match row.kind.as_str() {
                "provider" => {
                    batch.providers.insert(row.subject.clone());
                }
                "key_rest" => {
                    let Some(detail) = row
                        .detail
                        .as_deref()
                        .and_then(|detail| serde_json::from_str::<RestDetail>(detail).ok())
                    else {
                        continue;
                    };
                    let left = row.at.saturating_add(detail.rest_ms) - now;
                    if left > 0 {
                        batch.rests.push(Rest {
                            provider: row.subject.clone(),
                            key_id: detail.key_id,
                            remaining: Duration::from_millis(left.unsigned_abs()),
                        });
                    }
                }
                "redirect" => batch.redirects = true,
                "price" => batch.prices = true,
                "token" => {
                    if let Ok(id) = row.subject.parse() {
                        batch.tokens.insert(id);
                    }
                }
                "user" => match row.subject.parse() {
                    Ok(id) => {
                        batch.users.insert(id);
                    }
                    // Not a user id (a newer writer's?): every token, to be safe.
                    Err(_) => batch.all_tokens = true,
                },
                "admin_key" => {
                    if let Ok(id) = row.subject.parse() {
                        batch.admin_keys.insert(id);
                    }
                }
                "admin_session" => {
                    if let Ok(id) = row.subject.parse() {
                        batch.sessions.insert(id);
                    }
                }
                _ => {}
            }
        }
        batch
    }

    /// Everything reloaded (after a gap longer than the feed's retention).
    /// Admin sessions are not: their cache trusts an entry for seconds only.
    fn everything() -> Self {
        Batch {
            all_providers: true,
            redirects: true,
            prices: true,
            all_tokens: true,
            ..Batch::default()
        }
    }

    fn is_empty(&self) -> bool {
        self == &Batch::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, kind: &str, subject: &str, detail: Option<&str>, at: i64) -> Change {
        Change {
            id,
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            detail: detail.map(str::to_owned),
            at,
            origin: None,
        }
    }

    #[test]
    fn rows_become_one_action_each() {
        let rows = [
            row(1, "provider", "openai", None, 1_000),
            row(2, "provider", "openai", None, 1_001),
            row(3, "token", "7", None, 1_002),
            row(4, "token", "not-a-number", None, 1_002),
            row(5, "price", "gpt-4o", None, 1_003),
            row(6, "admin_session", "9", None, 1_004),
            row(7, "something_newer", "x", None, 1_005),
            row(8, "user", "3", None, 1_006),
        ];
        let batch = Batch::of(&rows, 2_000);
        assert_eq!(batch.providers.len(), 1);
        assert_eq!(batch.tokens, BTreeSet::from([7]));
        assert_eq!(batch.users, BTreeSet::from([3]));
        assert!(batch.prices && !batch.redirects && !batch.all_tokens);
        assert_eq!(batch.sessions, BTreeSet::from([9]));
        assert!(Batch::of(&[], 0).is_empty());
    }

    #[test]
    fn a_rest_lasts_until_the_moment_the_writer_measured() {
        let detail = r#"{"key_id":"k1","rest_ms":600000}"#;
        let batch = Batch::of(&[row(1, "key_rest", "p", Some(detail), 10_000)], 12_000);
        assert_eq!(
            batch.rests,
            vec![Rest {
                provider: "p".to_owned(),
                key_id: "k1".to_owned(),
                remaining: Duration::from_millis(598_000),
            }]
        );
        // Over already, or unreadable: nothing to do.
        let over = Batch::of(&[row(1, "key_rest", "p", Some(detail), 10_000)], 700_000);
        assert!(over.is_empty());
        assert!(Batch::of(&[row(1, "key_rest", "p", Some("{"), 0)], 0).is_empty());
    }
}
