//! Usage: request logs, token spend counters and daily rollups, written in
//! batches by the usage actor.

use super::schema::{
    billing_records, gateway_tokens, request_logs, reservations, usage_daily, users,
};
use super::{Db, DbError, SqliteConn};
use diesel::dsl::case_when;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use std::collections::BTreeMap;
use switchyard_actors::UsageRecord;

/// Rows per multi-row INSERT: 500 rows of 21 columns stay well under SQLite's
/// bind limit (32,766) and PostgreSQL's (65,535).
const INSERT_CHUNK_ROWS: usize = 500;

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

/// The UTC calendar day of a unix-milliseconds instant, as `YYYY-MM-DD`.
pub fn utc_day(ms: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    let days = ms.div_euclid(86_400_000);
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
type DayKey = (String, i64, String);

type Aggregates = (
    BTreeMap<i64, TokenDelta>,
    BTreeMap<DayKey, DailyDelta>,
    BTreeMap<i64, i64>,
);

/// Per-token counters, per-day rollups and per-user charges of a batch.
fn aggregate(records: &[UsageRecord]) -> Aggregates {
    let mut per_token: BTreeMap<i64, TokenDelta> = BTreeMap::new();
    let mut per_day: BTreeMap<DayKey, DailyDelta> = BTreeMap::new();
    let mut per_user: BTreeMap<i64, i64> = BTreeMap::new();
    for r in records {
        if let Some(user_id) = r.user_id {
            *per_user.entry(user_id).or_default() += r.cost_nanos;
        }
        let Some(token_id) = r.token_id else { continue };
        let t = per_token.entry(token_id).or_default();
        t.cost_nanos += r.cost_nanos;
        t.tokens += r.prompt_tokens + r.completion_tokens;
        t.requests += 1;
        t.last_used_at = t.last_used_at.max(r.created_at_ms);
        let model = r.requested_model.clone().unwrap_or_default();
        let d = per_day
            .entry((utc_day(r.created_at_ms), token_id, model))
            .or_default();
        d.requests += 1;
        d.prompt_tokens += r.prompt_tokens;
        d.completion_tokens += r.completion_tokens;
        d.cost_nanos += r.cost_nanos;
    }
    (per_token, per_day, per_user)
}

/// Multi-row INSERT into `request_logs`, in chunks of [`INSERT_CHUNK_ROWS`].
///
/// The one dialect difference of this module: diesel builds SQLite's
/// multi-row INSERT only through its sync `Connection` API, which
/// `SyncConnectionWrapper`'s async query path does not reach, so the SQLite arm
/// runs it on the wrapped sync connection (same connection, same transaction).
trait InsertRequestLogs {
    fn insert_request_logs(
        &mut self,
        rows: Vec<NewRequestLog>,
        charges: Vec<NewCharge>,
    ) -> BoxFuture<'_, QueryResult<()>>;
}

impl InsertRequestLogs for SqliteConn {
    fn insert_request_logs(
        &mut self,
        rows: Vec<NewRequestLog>,
        charges: Vec<NewCharge>,
    ) -> BoxFuture<'_, QueryResult<()>> {
        self.spawn_blocking(move |conn| {
            for chunk in rows.chunks(INSERT_CHUNK_ROWS) {
                diesel::RunQueryDsl::execute(
                    diesel::insert_into(request_logs::table).values(chunk),
                    conn,
                )?;
            }
            for chunk in charges.chunks(INSERT_CHUNK_ROWS) {
                diesel::RunQueryDsl::execute(
                    diesel::insert_into(billing_records::table).values(chunk),
                    conn,
                )?;
            }
            Ok(())
        })
    }
}

impl InsertRequestLogs for AsyncPgConnection {
    fn insert_request_logs(
        &mut self,
        rows: Vec<NewRequestLog>,
        charges: Vec<NewCharge>,
    ) -> BoxFuture<'_, QueryResult<()>> {
        async move {
            for chunk in rows.chunks(INSERT_CHUNK_ROWS) {
                diesel::insert_into(request_logs::table)
                    .values(chunk)
                    .execute(self)
                    .await?;
            }
            for chunk in charges.chunks(INSERT_CHUNK_ROWS) {
                diesel::insert_into(billing_records::table)
                    .values(chunk)
                    .execute(self)
                    .await?;
            }
            Ok(())
        }
        .boxed()
    }
}

impl Db {
    /// Writes a batch of usage in one transaction: the request logs and the
    /// billing charges (multi-row INSERTs), the release of each settled
    /// request's reservation, one UPDATE of the spend counters per token and
    /// of the balance per user, one upsert per `(day, token, model)` rollup.
    /// Records without a token are logged only. So request logs, token
    /// counters and billing records always agree.
    ///
    /// Dropping the returned future after its first poll does not cancel the
    /// write (see the module docs of [`crate::db`]).
    pub async fn write_usage_batch(&self, records: &[UsageRecord]) -> Result<(), DbError> {
        if records.is_empty() {
            return Ok(());
        }
        let rows: Vec<NewRequestLog> = records.iter().map(NewRequestLog::from).collect();
        let charges: Vec<NewCharge> = records.iter().filter_map(NewCharge::of).collect();
        let reservation_ids: Vec<i64> = records.iter().filter_map(|r| r.reservation_id).collect();
        let (per_token, per_day, per_user) = aggregate(records);
        // No `sqlite_write_turn` here: a dropped caller must never keep the
        // batch from being written (module docs), and waiting for a turn
        // before the query is spawned would allow exactly that.
        run_query!(self, |conn| {
            conn.transaction(async |conn| {
                conn.insert_request_logs(rows, charges).await?;
                // Settled requests give their holds back (a reservation
                // already expired was given back then): one DELETE per chunk,
                // then one UPDATE per token and per user, so a large batch
                // holds the write lock briefly.
                let mut token_back: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
                let mut user_back: BTreeMap<i64, i64> = BTreeMap::new();
                for chunk in reservation_ids.chunks(INSERT_CHUNK_ROWS) {
                    let released: Vec<(i64, Option<i64>, i64, i64, i64)> = diesel::delete(
                        reservations::table.filter(reservations::id.eq_any(chunk.to_vec())),
                    )
                    .returning((
                        reservations::token_id,
                        reservations::user_id,
                        reservations::nanos,
                        reservations::tokens,
                        reservations::user_nanos,
                    ))
                    .get_results(conn)
                    .await?;
                    for (token_id, user_id, nanos, tokens, user_nanos) in released {
                        let back = token_back.entry(token_id).or_default();
                        back.0 += nanos;
                        back.1 += tokens;
                        if let Some(user_id) = user_id {
                            *user_back.entry(user_id).or_default() += user_nanos;
                        }
                    }
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
                                u::balance_nanos.eq(u::balance_nanos - charged),
                                u::reserved_nanos.eq(u::reserved_nanos - released),
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
                            t::spent_nanos.eq(t::spent_nanos + delta.cost_nanos),
                            t::spent_tokens.eq(t::spent_tokens + delta.tokens),
                            t::request_count.eq(t::request_count + delta.requests),
                            t::reserved_nanos.eq(t::reserved_nanos - back_nanos),
                            t::reserved_tokens.eq(t::reserved_tokens - back_tokens),
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
                // Reservations of tokens without a record in this batch
                // (cannot happen today: every reservation's record names its
                // token), given back all the same.
                for (token_id, (back_nanos, back_tokens)) in &token_back {
                    use gateway_tokens::dsl as t;
                    diesel::update(t::gateway_tokens.find(*token_id))
                        .set((
                            t::reserved_nanos.eq(t::reserved_nanos - *back_nanos),
                            t::reserved_tokens.eq(t::reserved_tokens - *back_tokens),
                        ))
                        .execute(conn)
                        .await?;
                }
                for ((day, token_id, model), delta) in &per_day {
                    use usage_daily::dsl as u;
                    diesel::insert_into(u::usage_daily)
                        .values((
                            u::day.eq(day),
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
                            u::requests.eq(u::requests + excluded(u::requests)),
                            u::prompt_tokens.eq(u::prompt_tokens + excluded(u::prompt_tokens)),
                            u::completion_tokens
                                .eq(u::completion_tokens + excluded(u::completion_tokens)),
                            u::cost_nanos.eq(u::cost_nanos + excluded(u::cost_nanos)),
                        ))
                        .execute(conn)
                        .await?;
                }
                Ok::<_, diesel::result::Error>(())
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
    use super::utc_day;

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
