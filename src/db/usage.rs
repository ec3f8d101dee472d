//! Usage: request logs, token spend counters and daily rollups, written in
//! batches by the usage actor.

use super::rollups::Rollup;
use super::schema::{
    billing_records, gateway_tokens, request_logs, reservations, usage_daily, usage_dead_letters,
    users,
};
use super::{Db, DbError, SqliteConn, rollups};
use diesel::dsl::case_when;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use switchyard_actors::{RecordOutcome, UsageRecord, WriteReport};

/// Reservation rows per statement when a batch settles them: 500 bound ids
/// stay well under SQLite's bind limit (32,766) and PostgreSQL's (65,535).
/// (The INSERTs use fixed sizes: [`FIXED_INSERT_ROWS`], [`PG_FIXED_INSERT_ROWS`].)
const SETTLE_CHUNK_ROWS: usize = 500;

/// One logged client request (see [`UsageRecord`] for the fields).
#[derive(Queryable, Selectable, Debug, Clone, Serialize)]
#[diesel(table_name = request_logs)]
pub struct RequestLog {
    pub id: i64,
    pub created_at: i64,
    pub request_id: String,
    pub token_id: Option<i64>,
    pub user_id: Option<i64>,
    pub endpoint: String,
    pub provider: Option<String>,
    pub key_id: Option<String>,
    pub requested_model: Option<String>,
    pub upstream_model: Option<String>,
    pub status: i32,
    pub error_class: Option<String>,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_nanos: i64,
    pub priced: bool,
    pub tokens_estimated: bool,
    pub stream: bool,
    pub attempts: i32,
    /// Unique per request (the idempotency key of usage writes).
    pub record_id: String,
    /// What had to be fixed in the record, comma-separated (see
    /// [`switchyard_actors::UsageFlags`]); `None`: nothing.
    pub usage_flags: Option<String>,
    /// The attempts of a request that failed over, as stored (a JSON array
    /// of [`switchyard_actors::AttemptNote`]); read through
    /// [`RequestLog::attempts_detail`].
    #[serde(skip)]
    pub attempt_log: Option<String>,
    /// Of `prompt_tokens`: read from the provider's prompt cache.
    pub cache_read_tokens: i64,
    /// Of `prompt_tokens`: written to the prompt cache.
    pub cache_write_tokens: i64,
    /// Of `completion_tokens`: spent reasoning.
    pub reasoning_tokens: i64,
    /// Media units, on top of the tokens: images generated or edited.
    pub images: i64,
    /// Characters of text turned into speech (counted by the gateway).
    pub characters: i64,
    /// Milliseconds of audio transcribed or translated.
    pub audio_ms: i64,
    /// Rerank search units.
    pub search_units: i64,
}

impl RequestLog {
    /// Each upstream attempt in order: the stored log of a request that
    /// failed over, or the row's own single attempt (none when the request
    /// never reached an upstream). A stored log that does not parse (a
    /// hand-edited row) reads as the single attempt rather than failing.
    pub fn attempts_detail(&self) -> Vec<switchyard_actors::AttemptNote> {
        if let Some(log) = self.attempt_log.as_deref()
            && let Ok(notes) = serde_json::from_str::<Vec<switchyard_actors::AttemptNote>>(log)
            && !notes.is_empty()
        {
            return notes;
        }
        if self.attempts == 0 {
            return Vec::new();
        }
        vec![switchyard_actors::AttemptNote {
            provider: self.provider.clone().unwrap_or_default(),
            key_id: self.key_id.clone().unwrap_or_default(),
            upstream_model: self.upstream_model.clone().unwrap_or_default(),
            outcome: self.error_class.clone().unwrap_or_else(|| "ok".to_owned()),
            // Not recorded for a single attempt: it began right after
            // admission and lasted the request's latency, near enough.
            started_ms: 0,
            duration_ms: self.latency_ms,
        }]
    }
}

/// A usage record the database refused, set aside whole.
#[derive(Queryable, Selectable, Debug, Clone, Serialize)]
#[diesel(table_name = usage_dead_letters)]
pub struct DeadLetter {
    pub id: i64,
    pub created_at: i64,
    pub record_id: String,
    pub request_id: String,
    /// The database's refusal.
    pub error: String,
    /// The record as JSON.
    pub record: String,
}

/// One token's use of one model on one UTC day.
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Eq, Serialize)]
#[diesel(table_name = usage_daily)]
pub struct UsageDaily {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub token_id: i64,
    /// The requested model, `""` when the request named none.
    pub model: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_nanos: i64,
}

#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = request_logs, treat_none_as_default_value = false)]
struct NewRequestLog {
    created_at: i64,
    request_id: String,
    token_id: Option<i64>,
    user_id: Option<i64>,
    endpoint: String,
    provider: Option<String>,
    key_id: Option<String>,
    requested_model: Option<String>,
    upstream_model: Option<String>,
    status: i32,
    error_class: Option<String>,
    latency_ms: i64,
    ttft_ms: Option<i64>,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_nanos: i64,
    priced: bool,
    tokens_estimated: bool,
    stream: bool,
    attempts: i32,
    record_id: String,
    usage_flags: Option<String>,
    attempt_log: Option<String>,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    reasoning_tokens: i64,
    images: i64,
    characters: i64,
    audio_ms: i64,
    search_units: i64,
}

impl From<&UsageRecord> for NewRequestLog {
    fn from(r: &UsageRecord) -> Self {
        NewRequestLog {
            created_at: r.created_at_ms,
            request_id: r.request_id.clone(),
            token_id: r.token_id,
            user_id: r.user_id,
            endpoint: r.endpoint.clone(),
            provider: r.provider.clone(),
            key_id: r.key_id.clone(),
            requested_model: r.requested_model.clone(),
            upstream_model: r.upstream_model.clone(),
            status: i32::from(r.status),
            error_class: r.error_class.clone(),
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cost_nanos: r.cost_nanos,
            priced: r.priced,
            tokens_estimated: r.tokens_estimated,
            stream: r.stream,
            attempts: r.attempts,
            record_id: r.record_id.clone(),
            usage_flags: r.flags.names(),
            attempt_log: (!r.attempt_log.is_empty())
                .then(|| serde_json::to_string(&r.attempt_log).ok())
                .flatten(),
            cache_read_tokens: r.cache_read_tokens,
            cache_write_tokens: r.cache_write_tokens,
            reasoning_tokens: r.reasoning_tokens,
            images: r.images,
            characters: r.characters,
            audio_ms: r.audio_ms,
            search_units: r.search_units,
        }
    }
}

/// One charge: what a metered request cost its token's owner.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = billing_records, treat_none_as_default_value = false)]
struct NewCharge {
    created_at: i64,
    kind: &'static str,
    request_id: Option<String>,
    user_id: Option<i64>,
    token_id: Option<i64>,
    model: Option<String>,
    prompt_tokens: i64,
    completion_tokens: i64,
    base_cost_nanos: i64,
    multiplier_ppm: i64,
    amount_nanos: i64,
    priced: bool,
    note: Option<String>,
    images: i64,
    characters: i64,
    audio_ms: i64,
    search_units: i64,
}

impl NewCharge {
    /// A charge for every request that reached an upstream with a token.
    fn of(r: &UsageRecord) -> Option<Self> {
        if r.token_id.is_none() || r.attempts == 0 {
            return None;
        }
        Some(NewCharge {
            created_at: r.created_at_ms,
            kind: "request",
            request_id: Some(r.request_id.clone()),
            user_id: r.user_id,
            token_id: r.token_id,
            model: r
                .upstream_model
                .clone()
                .or_else(|| r.requested_model.clone()),
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            base_cost_nanos: r.base_cost_nanos,
            multiplier_ppm: r.multiplier_ppm,
            amount_nanos: r.cost_nanos,
            priced: r.priced,
            note: None,
            images: r.images,
            characters: r.characters,
            audio_ms: r.audio_ms,
            search_units: r.search_units,
        })
    }
}

/// What a batch adds to one token's counters.
#[derive(Debug, Default, Clone, Copy)]
struct TokenDelta {
    cost_nanos: i64,
    tokens: i64,
    requests: i64,
    last_used_at: i64,
}

/// What a batch adds to one `usage_daily` row.
#[derive(Debug, Default, Clone, Copy)]
struct DailyDelta {
    requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_nanos: i64,
}

const MS_PER_DAY: i64 = 86_400_000;

/// The UTC calendar day of a unix-milliseconds instant, as `YYYY-MM-DD`.
pub fn utc_day(ms: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    let days = ms.div_euclid(MS_PER_DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Rollup key: (UTC day, token id, requested model or `""`).
/// (UTC day as days since the epoch, token, requested model): keyed without
/// allocating; the day's text is made once per row written.
type DayKey<'a> = (i64, i64, &'a str);

type Aggregates<'a> = (
    BTreeMap<i64, TokenDelta>,
    BTreeMap<DayKey<'a>, DailyDelta>,
    BTreeMap<i64, i64>,
);

/// Per-token counters, per-day rollups and per-user charges of a batch.
/// Sums saturate: a record's figures are bounded (`make_storable`), but a
/// batch of bounded figures could still pass `i64::MAX`.
fn aggregate<'a>(records: &[&'a UsageRecord]) -> Aggregates<'a> {
    let mut per_token: BTreeMap<i64, TokenDelta> = BTreeMap::new();
    let mut per_day: BTreeMap<DayKey<'a>, DailyDelta> = BTreeMap::new();
    let mut per_user: BTreeMap<i64, i64> = BTreeMap::new();
    for r in records {
        let tokens = r.prompt_tokens.saturating_add(r.completion_tokens);
        if let Some(user_id) = r.user_id {
            let charged = per_user.entry(user_id).or_default();
            *charged = charged.saturating_add(r.cost_nanos);
        }
        let Some(token_id) = r.token_id else { continue };
        let t = per_token.entry(token_id).or_default();
        t.cost_nanos = t.cost_nanos.saturating_add(r.cost_nanos);
        t.tokens = t.tokens.saturating_add(tokens);
        t.requests = t.requests.saturating_add(1);
        t.last_used_at = t.last_used_at.max(r.created_at_ms);
        let model = r.requested_model.as_deref().unwrap_or_default();
        let d = per_day
            .entry((r.created_at_ms.div_euclid(MS_PER_DAY), token_id, model))
            .or_default();
        d.requests = d.requests.saturating_add(1);
        d.prompt_tokens = d.prompt_tokens.saturating_add(r.prompt_tokens);
        d.completion_tokens = d.completion_tokens.saturating_add(r.completion_tokens);
        d.cost_nanos = d.cost_nanos.saturating_add(r.cost_nanos);
    }
    (per_token, per_day, per_user)
}

/// `column + delta` that stops at `i64::MAX` instead of failing the batch
/// (PostgreSQL: "bigint out of range") or turning into a float (SQLite).
/// `delta` is never negative.
macro_rules! saturating_add {
    ($column:expr, $delta:expr) => {{
        let delta: i64 = $delta;
        case_when(
            $column.gt(i64::MAX - delta),
            i64::MAX.into_sql::<diesel::sql_types::BigInt>(),
        )
        .otherwise($column + delta)
    }};
}

/// `column - delta` that stops at `i64::MIN`; `delta` is never negative.
macro_rules! saturating_sub {
    ($column:expr, $delta:expr) => {{
        let delta: i64 = $delta;
        case_when(
            $column.lt(i64::MIN + delta),
            i64::MIN.into_sql::<diesel::sql_types::BigInt>(),
        )
        .otherwise($column - delta)
    }};
}

/// The row counts of SQLite's multi-row INSERTs, largest first. diesel
/// caches a prepared statement only when its text is fixed by its type, which
/// a `Vec` of rows is not (the text grows with the row count), so every batch
/// had SQLite parse and plan a 500-row INSERT again: a fifth of the usage
/// writer's CPU (bench/README.md). Cut into chunks of these sizes, each chunk is
/// a `&[row; N]`, whose statement is prepared once per connection and size.
/// No 128-row size: every pooled connection that ran one kept its prepared
/// statements (~4,000 parameters each for the request logs), ~2.8 MB of the
/// bench's peak RSS for ~1 us of CPU per request (bench/README.md).
const FIXED_INSERT_ROWS: [usize; 3] = [32, 8, 1];

/// `rows` cut into chunks whose lengths are all in [`FIXED_INSERT_ROWS`].
fn fixed_size_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    super::cached_sql::fixed_size_chunks(rows, &FIXED_INSERT_ROWS)
}

/// Calls `$insert::<N>($conn, $chunk)` with the `N` of the chunk's length:
/// one of the sizes listed, else 1 (the listed sizes are those of
/// [`FIXED_INSERT_ROWS`] or [`PG_FIXED_INSERT_ROWS`] but the last; a chunk
/// of another length is refused by [`as_array`]).
macro_rules! fixed_size {
    ($insert:ident, $conn:expr, $chunk:expr, [$($n:literal),*]) => {
        match $chunk.len() {
            $($n => $insert::<$n>($conn, $chunk),)*
            _ => $insert::<1>($conn, $chunk),
        }
    };
}

/// The chunk as an array reference, or an error if its length is not `N`
/// (never, for chunks of [`fixed_size_chunks`]).
fn as_array<T, const N: usize>(chunk: &[T]) -> QueryResult<&[T; N]> {
    chunk.try_into().map_err(|_| {
        diesel::result::Error::QueryBuilderError(
            format!("a chunk of {} rows is not one of {N}", chunk.len()).into(),
        )
    })
}

fn insert_logs_chunk<const N: usize>(
    conn: &mut SqliteConnection,
    chunk: &[NewRequestLog],
) -> QueryResult<Vec<String>> {
    diesel::RunQueryDsl::get_results(
        diesel::insert_into(request_logs::table)
            .values(as_array::<_, N>(chunk)?)
            .on_conflict(request_logs::record_id)
            .do_nothing()
            .returning(request_logs::record_id),
        conn,
    )
}

/// [`insert_logs_chunk`] without `RETURNING`: how many rows it stored.
///
/// `INSERT OR IGNORE` rather than `ON CONFLICT (record_id) DO NOTHING`:
/// diesel keys the prepared statement of an `ON CONFLICT` clause by its
/// text, which it therefore built anew for every chunk (~10 kB for 32 rows)
/// just to find the statement it had cached, while an `OR IGNORE` insert of
/// a fixed-size array is keyed by its type (bench/README.md). `OR IGNORE`
/// also skips a row that breaks another constraint; such a row leaves the
/// count short, and the caller then inserts again with
/// [`insert_logs_chunk`], whose `ON CONFLICT` raises that error.
fn insert_logs_chunk_counted<const N: usize>(
    conn: &mut SqliteConnection,
    chunk: &[NewRequestLog],
) -> QueryResult<usize> {
    diesel::RunQueryDsl::execute(
        diesel::insert_or_ignore_into(request_logs::table).values(as_array::<_, N>(chunk)?),
        conn,
    )
}

fn insert_charges_chunk<const N: usize>(
    conn: &mut SqliteConnection,
    chunk: &[NewCharge],
) -> QueryResult<usize> {
    diesel::RunQueryDsl::execute(
        diesel::insert_into(billing_records::table).values(as_array::<_, N>(chunk)?),
        conn,
    )
}

/// Multi-row INSERT into `request_logs`, in chunks of the cached
/// [`PG_FIXED_INSERT_ROWS`] (PostgreSQL) or [`FIXED_INSERT_ROWS`] (SQLite) sizes,
/// skipping rows whose `record_id` is already stored; returns the
/// `record_id`s it inserted.
///
/// The one dialect difference of this module: diesel builds SQLite's
/// multi-row INSERT only through its sync `Connection` API, which
/// `SyncConnectionWrapper`'s async query path does not reach, so the SQLite arm
/// runs it on the wrapped sync connection (same connection, same transaction).
trait InsertRequestLogs {
    fn insert_request_logs(
        &mut self,
        rows: Vec<NewRequestLog>,
    ) -> BoxFuture<'_, QueryResult<Vec<String>>>;

    fn insert_charges(&mut self, charges: Vec<NewCharge>) -> BoxFuture<'_, QueryResult<()>>;

    /// The batch's hourly and daily rollups: one multi-row upsert per chunk
    /// and table ([`rollups::upsert_statements`]).
    fn upsert_hourly(
        &mut self,
        rows: BTreeMap<rollups::HourKey, rollups::HourlyDelta>,
    ) -> BoxFuture<'_, QueryResult<()>>;
}

impl InsertRequestLogs for SqliteConn {
    fn upsert_hourly(
        &mut self,
        rows: BTreeMap<rollups::HourKey, rollups::HourlyDelta>,
    ) -> BoxFuture<'_, QueryResult<()>> {
        self.spawn_blocking(move |conn| {
            let daily = rollups::aggregate_daily(&rows);
            let statements = rollups::upsert_statements(&rows, Rollup::Hourly)
                .into_iter()
                .chain(rollups::upsert_statements(&daily, Rollup::Daily));
            for statement in statements {
                diesel::RunQueryDsl::execute(statement, conn)?;
            }
            Ok(())
        })
    }

    fn insert_request_logs(
        &mut self,
        rows: Vec<NewRequestLog>,
    ) -> BoxFuture<'_, QueryResult<Vec<String>>> {
        self.spawn_blocking(move |conn| {
            // Almost every batch holds no stored record (only a replay after
            // a crash does): insert without `RETURNING`, in a savepoint, and
            // if every row went in, they are the inserted ones. Otherwise
            // roll back to the savepoint and insert again, reading back
            // which rows went in. SQLite's `RETURNING` and reading its rows
            // cost more than the savepoint (bench/README.md).
            let all_new = conn.transaction(|conn| {
                let mut stored = 0;
                for chunk in fixed_size_chunks(&rows) {
                    stored += fixed_size!(insert_logs_chunk_counted, conn, chunk, [32, 8])?;
                }
                if stored == rows.len() {
                    Ok(())
                } else {
                    Err(diesel::result::Error::RollbackTransaction)
                }
            });
            match all_new {
                Ok(()) => return Ok(rows.into_iter().map(|row| row.record_id).collect()),
                Err(diesel::result::Error::RollbackTransaction) => {}
                Err(error) => return Err(error),
            }
            let mut inserted = Vec::with_capacity(rows.len());
            for chunk in fixed_size_chunks(&rows) {
                inserted.extend(fixed_size!(insert_logs_chunk, conn, chunk, [32, 8])?);
            }
            Ok(inserted)
        })
    }

    fn insert_charges(&mut self, charges: Vec<NewCharge>) -> BoxFuture<'_, QueryResult<()>> {
        self.spawn_blocking(move |conn| {
            for chunk in fixed_size_chunks(&charges) {
                fixed_size!(insert_charges_chunk, conn, chunk, [32, 8])?;
            }
            Ok(())
        })
    }
}

/// The row counts of PostgreSQL's multi-row INSERTs (request logs and
/// charges), largest first. A `Vec` of rows has no fixed text, so diesel
/// sent the INSERT of each chunk of up to 500 rows unnamed, and PostgreSQL
/// parsed and planned it again for every chunk: for the charges, ~9 us of
/// the server's CPU per request in the bench's JSON row, more than their
/// execution (bench/README.md). A chunk of one of these sizes is a
/// `&[row; N]`, whose statement each pooled connection prepares once (its
/// plan lives in the server, not in the gateway). Larger chunks than
/// SQLite's: each chunk is a round trip here.
const PG_FIXED_INSERT_ROWS: [usize; 4] = [128, 32, 8, 1];

// Boxed: each `N` makes a future of its own type, and [`fixed_size!`]'s
// arms must agree on one.
fn insert_logs_chunk_pg<'a, const N: usize>(
    conn: &'a mut AsyncPgConnection,
    chunk: &'a [NewRequestLog],
) -> BoxFuture<'a, QueryResult<Vec<String>>> {
    async move {
        diesel::insert_into(request_logs::table)
            .values(as_array::<_, N>(chunk)?)
            .on_conflict(request_logs::record_id)
            .do_nothing()
            .returning(request_logs::record_id)
            .get_results::<String>(conn)
            .await
    }
    .boxed()
}

fn insert_charges_chunk_pg<'a, const N: usize>(
    conn: &'a mut AsyncPgConnection,
    chunk: &'a [NewCharge],
) -> BoxFuture<'a, QueryResult<usize>> {
    async move {
        diesel::insert_into(billing_records::table)
            .values(as_array::<_, N>(chunk)?)
            .execute(conn)
            .await
    }
    .boxed()
}

impl InsertRequestLogs for AsyncPgConnection {
    fn upsert_hourly(
        &mut self,
        rows: BTreeMap<rollups::HourKey, rollups::HourlyDelta>,
    ) -> BoxFuture<'_, QueryResult<()>> {
        async move {
            let daily = rollups::aggregate_daily(&rows);
            let statements = rollups::upsert_statements(&rows, Rollup::Hourly)
                .into_iter()
                .chain(rollups::upsert_statements(&daily, Rollup::Daily));
            for statement in statements {
                statement.execute(self).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn insert_request_logs(
        &mut self,
        rows: Vec<NewRequestLog>,
    ) -> BoxFuture<'_, QueryResult<Vec<String>>> {
        async move {
            let mut inserted = Vec::with_capacity(rows.len());
            for chunk in super::cached_sql::fixed_size_chunks(&rows, &PG_FIXED_INSERT_ROWS) {
                inserted
                    .extend(fixed_size!(insert_logs_chunk_pg, self, chunk, [128, 32, 8]).await?);
            }
            Ok(inserted)
        }
        .boxed()
    }

    fn insert_charges(&mut self, charges: Vec<NewCharge>) -> BoxFuture<'_, QueryResult<()>> {
        async move {
            for chunk in super::cached_sql::fixed_size_chunks(&charges, &PG_FIXED_INSERT_ROWS) {
                fixed_size!(insert_charges_chunk_pg, self, chunk, [128, 32, 8]).await?;
            }
            Ok(())
        }
        .boxed()
    }
}

/// The dead-letter row of a refused record. Its text is made storable, so
/// the refusal that a NUL byte caused cannot refuse this row too.
#[derive(Insertable, Debug, Clone, Serialize)]
#[diesel(table_name = usage_dead_letters)]
struct NewDeadLetter {
    created_at: i64,
    record_id: String,
    request_id: String,
    error: String,
    record: String,
}

fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

impl Db {
    /// Stores a batch of usage: [`Db::write_usage_batch`], and when the
    /// database refuses it (a constraint, a value it cannot store; not an
    /// outage), splits it until every good record is stored and each
    /// refused record is alone, then sets those aside in
    /// `usage_dead_letters` (or, if even that is refused, in
    /// `dead_letter_file`). `Err` only when the database is unreachable:
    /// the caller retries the whole batch, and what was stored meanwhile
    /// comes back as duplicates.
    pub async fn store_usage(
        &self,
        records: &Arc<Vec<UsageRecord>>,
        dead_letter_file: &std::path::Path,
    ) -> Result<WriteReport, DbError> {
        let mut outcomes = vec![RecordOutcome::Stored; records.len()];
        // Ranges still to write, in order.
        let mut todo = Vec::with_capacity(8);
        todo.push(0..records.len());
        while let Some(range) = todo.pop() {
            let Some(part) = records.get(range.clone()) else {
                continue;
            };
            if part.is_empty() {
                continue;
            }
            match self.write_usage_part(records.clone(), range.clone()).await {
                // Every record went in (the common case: only a replay after
                // a crash meets stored ones), each id once: nothing to look
                // up (hashing each id cost ~0.3% of the gateway's CPU).
                Ok(inserted) if inserted.len() == part.len() => {}
                Ok(inserted) => {
                    // A set: a batch holds up to a thousand records, and a
                    // search of the list for each cost a thousand string
                    // comparisons per record (1% of the gateway's CPU).
                    let inserted: std::collections::HashSet<&str> =
                        inserted.iter().map(String::as_str).collect();
                    for (offset, record) in part.iter().enumerate() {
                        if !inserted.contains(record.record_id.as_str())
                            && let Some(outcome) = outcomes.get_mut(range.start + offset)
                        {
                            *outcome = RecordOutcome::Duplicate;
                        }
                    }
                }
                Err(error) if error.is_unavailable() => return Err(error),
                Err(error) if part.len() > 1 => {
                    let middle = range.start + part.len() / 2;
                    // Popped last first: the first half is written first.
                    todo.push(middle..range.end);
                    todo.push(range.start..middle);
                    let _ = error;
                }
                Err(error) => {
                    // One record, refused. Make sure it is the record and not
                    // the database before setting it aside.
                    self.ping().await?;
                    let Some(record) = part.first() else { continue };
                    self.dead_letter(record, &error.to_string(), dead_letter_file)
                        .await?;
                    if let Some(outcome) = outcomes.get_mut(range.start) {
                        *outcome = RecordOutcome::DeadLettered;
                    }
                }
            }
        }
        Ok(WriteReport { outcomes })
    }

    async fn dead_letter(
        &self,
        record: &UsageRecord,
        error: &str,
        file: &std::path::Path,
    ) -> Result<(), DbError> {
        let row = NewDeadLetter {
            created_at: record.created_at_ms,
            record_id: storable(&record.record_id),
            request_id: storable(&record.request_id),
            error: storable(error),
            // JSON escapes NUL as \u0000: storable as TEXT everywhere.
            record: serde_json::to_string(record).unwrap_or_default(),
        };
        let stored = row.clone();
        let result = run_query!(self, |conn| {
            diesel::insert_into(usage_dead_letters::table)
                .values(stored)
                .execute(conn)
                .await
        });
        match result {
            Ok(_) => Ok(()),
            Err(error) if error.is_unavailable() => Err(error),
            Err(refused) => {
                // Last resort: a local file, so the record is still not lost.
                use std::io::Write;
                let mut line = serde_json::to_vec(&row).unwrap_or_default();
                line.push(b'\n');
                let mut options = std::fs::OpenOptions::new();
                options.append(true).create(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                options
                    .open(file)
                    .and_then(|mut f| f.write_all(&line))
                    .map_err(|e| {
                        DbError::Runtime(format!(
                            "dead letter refused ({refused}) and {} unwritable: {e}",
                            file.display()
                        ))
                    })
            }
        }
    }

    /// The newest dead-lettered usage records.
    pub async fn list_dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>, DbError> {
        run_query!(self, |conn| {
            usage_dead_letters::table
                .order(usage_dead_letters::id.desc())
                .limit(limit)
                .select(DeadLetter::as_select())
                .load(conn)
                .await
        })
    }

    /// Writes a batch of usage in one transaction: the request logs (a
    /// multi-row INSERT that skips `record_id`s already stored), and for the
    /// records it inserted, the billing charges, one UPDATE of the spend
    /// counters per token and of the balance per user, one upsert per
    /// `(day, token, model)` rollup, one multi-row upsert of the hourly
    /// rollups (`usage_hourly`, [`rollups`]); plus moving each new record's spend out
    /// of the budget slice that held it. Records without a token are logged only.
    /// So request logs, token counters and billing records always agree,
    /// however often a record is written. Returns the inserted `record_id`s.
    ///
    /// Dropping the returned future after its first poll does not cancel the
    /// write (see the module docs of [`crate::db`]).
    pub async fn write_usage_batch(&self, records: &[UsageRecord]) -> Result<Vec<String>, DbError> {
        let range = 0..records.len();
        self.write_usage_part(Arc::new(records.to_vec()), range)
            .await
    }

    /// [`Db::write_usage_batch`] of `records[range]`, the batch shared with
    /// the caller (the usage writer's, split on refusals by
    /// [`Db::store_usage`]) instead of copied: a copy of each record cost
    /// about fifteen allocations on the usage writer (bench/README.md).
    async fn write_usage_part(
        &self,
        records: Arc<Vec<UsageRecord>>,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<String>, DbError> {
        let Some(part) = records.get(range.clone()) else {
            return Ok(Vec::new());
        };
        if part.is_empty() {
            return Ok(Vec::new());
        }
        // A record without an id (a caller outside the usage queue) gets a
        // unique one; a batch never holds one id twice. Each entry: the
        // record's index in `records`, and the id made for it, if any.
        let mut unique: Vec<(usize, Option<String>)> = Vec::with_capacity(part.len());
        {
            let mut seen = std::collections::HashSet::with_capacity(part.len());
            for (index, record) in part.iter().enumerate() {
                let index = range.start + index;
                if record.record_id.is_empty() {
                    unique.push((index, Some(format!("rec_{:032x}", rand::random::<u128>()))));
                } else if seen.insert(record.record_id.as_str()) {
                    unique.push((index, None));
                }
            }
        }
        // In the order the queue took the records: each worker journals
        // into a shard of its own, and a batch holds the shards one after
        // the other; row ids follow the order requests ended in.
        unique.sort_by_key(|(index, _)| records.get(*index).map_or(0, |r| r.queue_order));
        let rows: Vec<NewRequestLog> = unique
            .iter()
            .filter_map(|(index, made_id)| {
                let mut row = NewRequestLog::from(records.get(*index)?);
                if let Some(id) = made_id {
                    row.record_id.clone_from(id);
                }
                Some(row)
            })
            .collect();
        // No `sqlite_write_turn` here: a dropped caller must never keep the
        // batch from being written (module docs), and waiting for a turn
        // before the query is spawned would allow exactly that.
        run_query!(pools: self.inner.usage_pools.clone(), self, |conn| {
            conn.transaction(async |conn| {
                let inserted = conn.insert_request_logs(rows).await?;
                let new: Vec<&UsageRecord> = if inserted.len() == unique.len() {
                    // Every row went in (ids are unique in `unique`).
                    unique
                        .iter()
                        .filter_map(|(index, _)| records.get(*index))
                        .collect()
                } else {
                    let inserted_set: std::collections::HashSet<&str> =
                        inserted.iter().map(String::as_str).collect();
                    unique
                        .iter()
                        .filter_map(|(index, made_id)| {
                            let record = records.get(*index)?;
                            let id = made_id.as_deref().unwrap_or(&record.record_id);
                            inserted_set.contains(id).then_some(record)
                        })
                        .collect()
                };
                let charges: Vec<NewCharge> =
                    new.iter().copied().filter_map(NewCharge::of).collect();
                conn.insert_charges(charges).await?;
                let (per_token, per_day, per_user) = aggregate(&new);
                // Every stored request, with a token or not, in its hour's
                // rollup (src/db/rollups.rs): one upsert per chunk of keys.
                conn.upsert_hourly(rollups::aggregate_hourly(&new)).await?;
                // Settled requests move their spend out of the slice that
                // held it (docs/limits.md): per reservation, what its newly
                // stored records spent is taken from the row and from the
                // token's (and owner's) `reserved_*`, never more than the
                // row holds, so `reserved_*` stays the sum of the rows and
                // never goes below zero. A record written before (not in
                // `new`) takes nothing twice; a row that expired is not
                // found. A slice row left empty is deleted (its instance
                // makes a new one at its next lease).
                let mut spent_by_row: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
                for record in &new {
                    if let Some(id) = record.reservation_id {
                        let spent = spent_by_row.entry(id).or_default();
                        spent.0 = spent.0.saturating_add(record.cost_nanos.max(0));
                        spent.1 = spent.1.saturating_add(
                            record
                                .prompt_tokens
                                .saturating_add(record.completion_tokens)
                                .max(0),
                        );
                    }
                }
                let row_ids: Vec<i64> = spent_by_row.keys().copied().collect();
                let mut token_back: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
                let mut user_back: BTreeMap<i64, i64> = BTreeMap::new();
                for chunk in row_ids.chunks(SETTLE_CHUNK_ROWS) {
                    use reservations::dsl as r;
                    // A no-op UPDATE: takes the rows' locks (PostgreSQL)
                    // before their holds are read, so a concurrent lease
                    // on the same row cannot be lost.
                    let held: Vec<(i64, i64, Option<i64>, i64, i64, i64)> =
                        diesel::update(r::reservations.filter(r::id.eq_any(chunk.to_vec())))
                            .set(r::expires_at.eq(r::expires_at))
                            .returning((
                                r::id,
                                r::token_id,
                                r::user_id,
                                r::nanos,
                                r::tokens,
                                r::user_nanos,
                            ))
                            .get_results(conn)
                            .await?;
                    for (id, token_id, user_id, nanos, tokens, user_nanos) in held {
                        let (spent_nanos, spent_tokens) =
                            spent_by_row.get(&id).copied().unwrap_or_default();
                        let take_nanos = spent_nanos.clamp(0, nanos.max(0));
                        let take_tokens = spent_tokens.clamp(0, tokens.max(0));
                        let take_user = spent_nanos.clamp(0, user_nanos.max(0));
                        if take_nanos == 0 && take_tokens == 0 && take_user == 0 {
                            continue;
                        }
                        diesel::update(r::reservations.find(id))
                            .set((
                                r::nanos.eq(r::nanos - take_nanos),
                                r::tokens.eq(r::tokens - take_tokens),
                                r::user_nanos.eq(r::user_nanos - take_user),
                            ))
                            .execute(conn)
                            .await?;
                        let back = token_back.entry(token_id).or_default();
                        back.0 = back.0.saturating_add(take_nanos);
                        back.1 = back.1.saturating_add(take_tokens);
                        if let Some(user_id) = user_id {
                            let back = user_back.entry(user_id).or_default();
                            *back = back.saturating_add(take_user);
                        }
                    }
                    diesel::delete(
                        r::reservations.filter(
                            r::id
                                .eq_any(chunk.to_vec())
                                .and(r::nanos.le(0))
                                .and(r::tokens.le(0))
                                .and(r::user_nanos.le(0)),
                        ),
                    )
                    .execute(conn)
                    .await?;
                }
                let users_touched: std::collections::BTreeSet<i64> =
                    per_user.keys().chain(user_back.keys()).copied().collect();
                for user_id in users_touched {
                    let charged = per_user.get(&user_id).copied().unwrap_or(0);
                    let released = user_back.get(&user_id).copied().unwrap_or(0);
                    if charged != 0 || released != 0 {
                        use users::dsl as u;
                        diesel::update(u::users.find(user_id))
                            .set((
                                u::balance_nanos.eq(saturating_sub!(u::balance_nanos, charged)),
                                u::reserved_nanos.eq(saturating_sub!(u::reserved_nanos, released)),
                            ))
                            .execute(conn)
                            .await?;
                    }
                }
                for (token_id, delta) in &per_token {
                    use gateway_tokens::dsl as t;
                    let (back_nanos, back_tokens) = token_back.remove(token_id).unwrap_or_default();
                    diesel::update(t::gateway_tokens.find(*token_id))
                        .set((
                            t::spent_nanos.eq(saturating_add!(t::spent_nanos, delta.cost_nanos)),
                            t::spent_tokens.eq(saturating_add!(t::spent_tokens, delta.tokens)),
                            t::request_count.eq(saturating_add!(t::request_count, delta.requests)),
                            t::reserved_nanos.eq(saturating_sub!(t::reserved_nanos, back_nanos)),
                            t::reserved_tokens.eq(saturating_sub!(t::reserved_tokens, back_tokens)),
                            // Batches may land out of order: keep the latest.
                            t::last_used_at.eq(case_when(
                                t::last_used_at.ge(delta.last_used_at),
                                t::last_used_at,
                            )
                            .otherwise(Some(delta.last_used_at))),
                        ))
                        .execute(conn)
                        .await?;
                }
                // Holds of tokens without a counter update above (a record
                // whose token id disagrees with its reservation's): given
                // back all the same, so no take is lost.
                for (token_id, (back_nanos, back_tokens)) in &token_back {
                    use gateway_tokens::dsl as t;
                    diesel::update(t::gateway_tokens.find(*token_id))
                        .set((
                            t::reserved_nanos.eq(saturating_sub!(t::reserved_nanos, *back_nanos)),
                            t::reserved_tokens
                                .eq(saturating_sub!(t::reserved_tokens, *back_tokens)),
                        ))
                        .execute(conn)
                        .await?;
                }
                for ((day, token_id, model), delta) in &per_day {
                    use usage_daily::dsl as u;
                    diesel::insert_into(u::usage_daily)
                        .values((
                            u::day.eq(utc_day(day.saturating_mul(MS_PER_DAY))),
                            u::token_id.eq(token_id),
                            u::model.eq(model),
                            u::requests.eq(delta.requests),
                            u::prompt_tokens.eq(delta.prompt_tokens),
                            u::completion_tokens.eq(delta.completion_tokens),
                            u::cost_nanos.eq(delta.cost_nanos),
                        ))
                        .on_conflict((u::day, u::token_id, u::model))
                        .do_update()
                        .set((
                            u::requests.eq(saturating_add!(u::requests, delta.requests)),
                            u::prompt_tokens
                                .eq(saturating_add!(u::prompt_tokens, delta.prompt_tokens)),
                            u::completion_tokens.eq(saturating_add!(
                                u::completion_tokens,
                                delta.completion_tokens
                            )),
                            u::cost_nanos.eq(saturating_add!(u::cost_nanos, delta.cost_nanos)),
                        ))
                        .execute(conn)
                        .await?;
                }
                Ok::<_, diesel::result::Error>(inserted)
            })
            .await
        })
    }

    /// How many request logs are stored.
    pub async fn count_request_logs(&self) -> Result<i64, DbError> {
        run_query!(self, |conn| {
            request_logs::table.count().get_result(conn).await
        })
    }

    /// A page of request logs, newest first.
    pub async fn list_request_logs(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<RequestLog>, DbError> {
        run_query!(self, |conn| {
            request_logs::table
                .order((request_logs::created_at.desc(), request_logs::id.desc()))
                .limit(limit)
                .offset(offset)
                .select(RequestLog::as_select())
                .load(conn)
                .await
        })
    }

    /// A token's requests, tokens and cost logged since `since_ms` (quota
    /// periods after a restart).
    pub async fn token_spend_since(
        &self,
        token_id: i64,
        since_ms: i64,
    ) -> Result<(i64, i64, i64), DbError> {
        use diesel::dsl::{count_star, sql};
        use diesel::sql_types::BigInt;
        run_query!(self, |conn| {
            request_logs::table
                .filter(request_logs::token_id.eq(token_id))
                .filter(request_logs::created_at.ge(since_ms))
                // SUM(bigint) is NUMERIC on PostgreSQL and INTEGER on SQLite:
                // cast, so one Rust type reads both.
                .select((
                    count_star(),
                    sql::<BigInt>(
                        "CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT)",
                    ),
                    sql::<BigInt>("CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT)"),
                ))
                .first::<(i64, i64, i64)>(conn)
                .await
        })
    }

    /// Charges of a token's requests: how many and their total (nano-USD).
    pub async fn token_charges(&self, token_id: i64) -> Result<(i64, i64), DbError> {
        use diesel::dsl::{count_star, sql};
        use diesel::sql_types::BigInt;
        run_query!(self, |conn| {
            billing_records::table
                .filter(billing_records::token_id.eq(token_id))
                .filter(billing_records::kind.eq("request"))
                .select((
                    count_star(),
                    sql::<BigInt>("CAST(COALESCE(SUM(amount_nanos), 0) AS BIGINT)"),
                ))
                .first::<(i64, i64)>(conn)
                .await
        })
    }

    /// A token's daily rollups, by day then model.
    pub async fn token_usage_daily(&self, token_id: i64) -> Result<Vec<UsageDaily>, DbError> {
        run_query!(self, |conn| {
            usage_daily::table
                .filter(usage_daily::token_id.eq(token_id))
                .order((usage_daily::day, usage_daily::model))
                .select(UsageDaily::as_select())
                .load(conn)
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{FIXED_INSERT_ROWS, fixed_size_chunks, utc_day};

    #[test]
    fn batches_are_cut_into_fixed_size_chunks_that_cover_every_row_once() {
        for len in [0usize, 1, 7, 8, 9, 41, 128, 129, 500, 1000] {
            let rows: Vec<usize> = (0..len).collect();
            let chunks: Vec<&[usize]> = fixed_size_chunks(&rows).collect();
            assert!(
                chunks.iter().all(|c| FIXED_INSERT_ROWS.contains(&c.len())),
                "{len}: {:?}",
                chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
            );
            assert_eq!(chunks.concat(), rows, "{len}");
        }
        // Largest first: 500 = 15 x 32 + 2 x 8 + 4 x 1.
        let sizes: Vec<usize> = fixed_size_chunks(&[0u8; 500]).map(<[u8]>::len).collect();
        let mut expected = vec![32; 15];
        expected.extend([8, 8, 1, 1, 1, 1]);
        assert_eq!(sizes, expected);
    }

    #[test]
    fn utc_days() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(86_399_999), "1970-01-01");
        assert_eq!(utc_day(-1), "1969-12-31");
        // 2024-02-29T12:00:00Z
        assert_eq!(utc_day(1_709_208_000_000), "2024-02-29");
        // 2026-11-22T00:00:00Z
        assert_eq!(utc_day(1_795_305_600_000), "2026-11-22");
    }
}
