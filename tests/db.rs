//! Storage against real databases: every test runs on SQLite and on PostgreSQL.

pub mod common;

use anyhow::{Context, bail, ensure};
use common::db::TestDb;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use switchyard::config::Backend;
use switchyard::crypto::{SecretCipher, fingerprint};
use switchyard::db::responses::ResponseOwner;
use switchyard::db::schema::*;
use switchyard::db::{
    AdminChallenge, AdminKey, AdminSession, Db, DbError, GatewayToken, ModelPrice, ModelRedirect,
    NewAdminKey, NewAdminSession, NewOperationLog, NewProvider, NewProviderKey, NewToken,
    OperationLog, Provider, ProviderKey, RequestLog, UsageDaily, User, connect, migrate_revert,
    migrate_run,
};
use switchyard_actors::UsageRecord;

/// Generates one test per backend for each `async fn name(Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(switchyard::config::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(switchyard::config::Backend::Postgres).await
                }
            )*
        }
    };
}

on_both_backends!(
    migrations_apply_once_and_revert,
    schema_matches_migrations,
    upserts_update_in_place,
    unique_violations_are_conflicts,
    usage_batch_is_exact,
    a_batch_partly_stored_stores_only_its_new_records,
    a_large_batch_is_stored_whole_once,
    a_batch_is_stored_in_the_order_the_queue_took_it,
    a_request_log_is_found_by_its_row_id_or_its_request_id,
    a_page_and_its_total_agree_while_usage_is_written,
    a_user_shown_while_charged_agrees_with_itself,
);

/// Records [`read_while_usage_is_written`]'s writer commits, one per batch.
const RECORDS: i64 = 400;

/// Calls `read` over and over while a writer task commits `RECORDS`
/// one-record usage batches (`record(n)` for the n-th), and checks that the
/// reads overlapped the writer, not ran before or after it: at least 10 of
/// them saw the figure `read` answers (something the writer moves) change.
async fn read_while_usage_is_written(
    db: &Db,
    record: impl Fn(i64) -> UsageRecord + Send + 'static,
    mut read: impl AsyncFnMut() -> anyhow::Result<i64>,
) -> anyhow::Result<()> {
    let writer = {
        let db = db.clone();
        tokio::spawn(async move {
            for n in 0..RECORDS {
                db.write_usage_batch(&[record(n)]).await?;
            }
            anyhow::Ok(())
        })
    };
    // Reads while the writer runs, and how many of them saw it move.
    let (mut reads, mut moving, mut last) = (0, 0, -1);
    while !writer.is_finished() {
        let figure = read().await?;
        reads += 1;
        if figure != last {
            moving += 1;
            last = figure;
        }
    }
    writer.await??;
    ensure!(
        moving >= 10,
        "only {moving} of {reads} reads saw the writer move"
    );
    Ok(())
}

/// A listed page and its `total` come from one snapshot, while the usage
/// writer commits batches between and during the reads: the request logs'
/// and the charges' pages hold every matching row (the limit is above what
/// the writer writes), so each must hold exactly `total` rows. The page
/// and the count were two statements, and a batch committed between them
/// answered `{"data": [], "total": 1}` (seen in `tests/cli_resources.rs`).
async fn a_page_and_its_total_agree_while_usage_is_written(backend: Backend) -> anyhow::Result<()> {
    let t = TestDb::new(backend).await?;
    let db = connect(&t.settings).await?;
    let token = db.create_token(&new_token("paged", None)).await?.id;
    let logs = switchyard::db::logs::LogFilter {
        model: Some("gpt-4o".to_owned()),
        ..Default::default()
    };
    let charges = switchyard::db::BillingFilter::default();
    read_while_usage_is_written(
        &db,
        move |n| usage(1_795_388_400_000 + n, Some(token), Some("gpt-4o"), n),
        async || {
            let (rows, total) = db.list_request_logs_filtered(&logs, 10_000, 0).await?;
            ensure!(
                i64::try_from(rows.len())? == total,
                "request logs: a page of {} rows for a total of {total}",
                rows.len()
            );
            let (rows, total) = db.list_billing(&charges, 10_000, 0).await?;
            ensure!(
                i64::try_from(rows.len())? == total,
                "charges: a page of {} rows for a total of {total}",
                rows.len()
            );
            Ok(total)
        },
    )
    .await?;
    assert_stored_charged_and_counted(
        &db,
        token,
        &(0..RECORDS)
            .map(|n| usage(0, Some(token), Some("gpt-4o"), n))
            .collect::<Vec<_>>(),
    )
    .await
}

/// `GET /admin/users/{id}` shows a user's balance beside what its requests
/// were charged (`spent_nanos`), while the usage writer charges it: the
/// two must come from one snapshot, so that the balance and the spend
/// always add up to what was topped up. They were read by two calls, and a
/// batch committed between them showed a charge in one and not the other.
async fn a_user_shown_while_charged_agrees_with_itself(backend: Backend) -> anyhow::Result<()> {
    const TOPPED_UP: i64 = 1_000_000_000;
    let t = TestDb::new(backend).await?;
    let db = connect(&t.settings).await?;
    let user = db.create_user("charged").await?.id;
    db.topup(user, TOPPED_UP, None, 1_795_388_400_000)
        .await?
        .context("the user")?;
    let token = db.create_token(&new_token("charged", Some(user))).await?.id;
    read_while_usage_is_written(
        &db,
        move |n| UsageRecord {
            user_id: Some(user),
            ..usage(1_795_388_400_000 + n, Some(token), Some("gpt-4o"), n)
        },
        async || {
            let shown = db.user_shown(user).await?.context("the user")?;
            ensure!(
                shown.user.balance_nanos + shown.spent_nanos == TOPPED_UP,
                "a balance of {} beside a spend of {}",
                shown.user.balance_nanos,
                shown.spent_nanos
            );
            ensure!(shown.token_ids == [token], "{:?}", shown.token_ids);
            Ok(shown.spent_nanos)
        },
    )
    .await?;
    let shown = db.user_shown(user).await?.context("the user")?;
    ensure!(shown.spent_nanos == (0..RECORDS).map(|n| 1_000 + n).sum::<i64>());
    ensure!(db.user_shown(user + 1).await?.is_none());
    Ok(())
}

/// `GET /admin/request-logs/{id}`'s lookup: a number is a row id; anything
/// else is a request id, the gateway's own or one a client sent in
/// `x-request-id`, which clients may reuse: then the newest row answers.
async fn a_request_log_is_found_by_its_row_id_or_its_request_id(
    backend: Backend,
) -> anyhow::Result<()> {
    let t = TestDb::new(backend).await?;
    let db = connect(&t.settings).await?;
    let base = 1_795_388_400_000;
    let mut records: Vec<UsageRecord> = (0..4_i64)
        .map(|n| usage(base + n * 1_000, None, Some("gpt-4o"), n))
        .collect();
    // The gateway's id, as when the client sent none (the row's request id
    // is its record id)...
    records[0].request_id = records[0].record_id.clone();
    // ...and a client's id, sent with three requests.
    for record in &mut records[1..] {
        record.request_id = "client-trace-7".to_owned();
    }
    db.write_usage_batch(&records).await?;
    let own = db
        .get_request_log("rec-0")
        .await?
        .context("the gateway's id")?;
    assert_eq!((own.request_id.as_str(), own.latency_ms), ("rec-0", 100));
    let newest = db
        .get_request_log("client-trace-7")
        .await?
        .context("the client's id")?;
    assert_eq!(newest.latency_ms, records[3].latency_ms);
    assert_eq!(
        newest.created_at,
        base + 3_000,
        "the newest of the reused id"
    );
    let by_row = db
        .get_request_log(&own.id.to_string())
        .await?
        .context("the row id")?;
    assert_eq!(by_row.id, own.id);
    assert!(
        db.get_request_log("rec-1").await?.is_none(),
        "a record id is not a request id"
    );
    assert!(db.get_request_log("nobody-sent-this").await?.is_none());
    Ok(())
}

/// A batch whose first records are stored already (a journal replayed after a
/// crash): only the others are stored, counted and charged, and the write
/// says which. On SQLite this is the path after the INSERT without
/// `RETURNING` finds a stored record and rolls back to its savepoint.
async fn a_batch_partly_stored_stores_only_its_new_records(backend: Backend) -> anyhow::Result<()> {
    let t = TestDb::new(backend).await?;
    let db = connect(&t.settings).await?;
    let token = db.create_token(&new_token("replayed", None)).await?.id;
    let records: Vec<UsageRecord> = (0..60_i64)
        .map(|n| {
            usage(
                1_795_388_400_000 + n * 1_000,
                Some(token),
                Some("gpt-4o"),
                n,
            )
        })
        .collect();
    let ids = |records: &[UsageRecord]| -> BTreeSet<String> {
        records.iter().map(|r| r.record_id.clone()).collect()
    };
    let first = db.write_usage_batch(&records[..40]).await?;
    assert_eq!(BTreeSet::from_iter(first), ids(&records[..40]));
    let second = db.write_usage_batch(&records[20..]).await?;
    assert_eq!(
        BTreeSet::from_iter(second),
        ids(&records[40..]),
        "only the records not stored before are reported inserted"
    );
    assert!(db.write_usage_batch(&records).await?.is_empty());

    assert_stored_charged_and_counted(&db, token, &records).await
}

/// A batch larger than every INSERT size (the writer cuts it into chunks of
/// fixed row counts, 128/32/8/1 on PostgreSQL and 32/8/1 on SQLite, each
/// statement prepared once): every record is stored, charged and counted
/// once, and the batch replayed with one record more stores only that one.
async fn a_large_batch_is_stored_whole_once(backend: Backend) -> anyhow::Result<()> {
    let t = TestDb::new(backend).await?;
    let db = connect(&t.settings).await?;
    let token = db.create_token(&new_token("large", None)).await?.id;
    // 301 = 2 x 128 + 32 + 8 + 5 x 1 on PostgreSQL, 9 x 32 + 8 + 5 x 1 on SQLite.
    let records: Vec<UsageRecord> = (0..301_i64)
        .map(|n| usage(1_795_388_400_000 + n, Some(token), Some("gpt-4o"), n))
        .collect();
    let stored = db.write_usage_batch(&records[..300]).await?;
    assert_eq!(
        BTreeSet::from_iter(stored),
        records[..300]
            .iter()
            .map(|r| r.record_id.clone())
            .collect::<BTreeSet<_>>()
    );
    let replayed = db.write_usage_batch(&records).await?;
    assert_eq!(replayed, vec![records[300].record_id.clone()]);

    assert_stored_charged_and_counted(&db, token, &records).await?;
    // Every row once, each with its own figures.
    let rows = db.list_request_logs(400, 0).await?;
    let mut seen: Vec<(String, i64)> = rows
        .iter()
        .map(|row| (row.request_id.clone(), row.prompt_tokens))
        .collect();
    seen.sort();
    let mut expected: Vec<(String, i64)> = records
        .iter()
        .map(|r| (r.request_id.clone(), r.prompt_tokens))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    Ok(())
}

/// Each of `records`, all of `token`, has its request log and its charge,
/// and the token counts them all, at their whole cost.
async fn assert_stored_charged_and_counted(
    db: &Db,
    token: i64,
    records: &[UsageRecord],
) -> anyhow::Result<()> {
    let expected = i64::try_from(records.len())?;
    assert_eq!(db.count_request_logs().await?, expected);
    let (_, charged) = db
        .list_billing(&switchyard::db::BillingFilter::default(), 1, 0)
        .await?;
    assert_eq!(charged, expected);
    let stored = db.get_token(token).await?.context("token")?;
    assert_eq!(stored.request_count, expected);
    assert_eq!(
        stored.spent_nanos,
        records.iter().map(|r| r.cost_nanos).sum::<i64>()
    );
    Ok(())
}

/// The usage queue hands a batch over shard by shard (one per worker), not
/// in the order it took the records: rows are stored in `queue_order`, so
/// their ids, which break ties between requests of one millisecond in the
/// newest-first listing, follow the order requests ended in.
async fn a_batch_is_stored_in_the_order_the_queue_took_it(backend: Backend) -> anyhow::Result<()> {
    let t = TestDb::new(backend).await?;
    let db = connect(&t.settings).await?;
    let token = db.create_token(&new_token("ordered", None)).await?.id;
    // One millisecond, two shards: the second shard's records were taken
    // between the first shard's.
    let batch: Vec<UsageRecord> = [(0, 1), (1, 3), (2, 5), (3, 2), (4, 4), (5, 6)]
        .into_iter()
        .map(|(n, order)| UsageRecord {
            queue_order: order,
            ..usage(1_795_388_400_000, Some(token), Some("gpt-4o"), n)
        })
        .collect();
    db.write_usage_batch(&batch).await?;
    let newest_first: Vec<String> = db
        .list_request_logs(10, 0)
        .await?
        .into_iter()
        .map(|row| row.request_id)
        .collect();
    assert_eq!(
        newest_first,
        ["req-5", "req-2", "req-4", "req-1", "req-3", "req-0"]
    );
    Ok(())
}

/// Cancelling a write on a single-threaded (actix) runtime: must not panic,
/// and the write must still land (DESIGN.md section 8).
#[test]
fn cancelled_usage_write_lands_sqlite() -> anyhow::Result<()> {
    actix_rt::System::new().block_on(cancelled_usage_write_lands(Backend::Sqlite))
}

#[test]
fn cancelled_usage_write_lands_postgres() -> anyhow::Result<()> {
    actix_rt::System::new().block_on(cancelled_usage_write_lands(Backend::Postgres))
}

const INIT_VERSION: &str = "20261122000001";
const LIMITS_VERSION: &str = "20261122000100";
const ADMIN_PLANE_VERSION: &str = "20261201000001";
const USAGE_DURABILITY_VERSION: &str = "20261202000100";
const PER_CALL_PRICES_VERSION: &str = "20261202000300";
const ADMIN_ROLES_VERSION: &str = "20261203000100";
const USAGE_HOURLY_VERSION: &str = "20261203000200";
const ATTEMPT_LOG_VERSION: &str = "20261203000500";
const USAGE_DAILY_ROLLUP_VERSION: &str = "20261203000610";
const CHANGE_FEED_VERSION: &str = "20261204000100";
const LIMIT_SHARES_VERSION: &str = "20261204000200";
const RESPONSE_OWNERS_VERSION: &str = "20261204000400";
const PRICED_UNITS_VERSION: &str = "20261204000500";
const MEDIA_UNITS_VERSION: &str = "20261204000600";

async fn migrations_apply_once_and_revert(backend: Backend) -> anyhow::Result<()> {
    let t = TestDb::new(backend).await?;
    assert_eq!(
        migrate_run(&t.settings).await?,
        vec![
            INIT_VERSION.to_owned(),
            LIMITS_VERSION.to_owned(),
            ADMIN_PLANE_VERSION.to_owned(),
            USAGE_DURABILITY_VERSION.to_owned(),
            PER_CALL_PRICES_VERSION.to_owned(),
            ADMIN_ROLES_VERSION.to_owned(),
            USAGE_HOURLY_VERSION.to_owned(),
            ATTEMPT_LOG_VERSION.to_owned(),
            USAGE_DAILY_ROLLUP_VERSION.to_owned(),
            CHANGE_FEED_VERSION.to_owned(),
            LIMIT_SHARES_VERSION.to_owned(),
            RESPONSE_OWNERS_VERSION.to_owned(),
            PRICED_UNITS_VERSION.to_owned(),
            MEDIA_UNITS_VERSION.to_owned(),
        ]
    );
    assert!(
        migrate_run(&t.settings).await?.is_empty(),
        "re-running migrations is a no-op"
    );
    {
        let db = connect(&t.settings).await?;
        assert_eq!(db.backend(), backend);
        db.ping().await?;
    }
    assert!(migrate_run(&t.settings).await?.is_empty());
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(MEDIA_UNITS_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(PRICED_UNITS_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(RESPONSE_OWNERS_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(LIMIT_SHARES_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(CHANGE_FEED_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(USAGE_DAILY_ROLLUP_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(ATTEMPT_LOG_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(USAGE_HOURLY_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(ADMIN_ROLES_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(PER_CALL_PRICES_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(USAGE_DURABILITY_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(ADMIN_PLANE_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(LIMITS_VERSION.to_owned())
    );
    assert_eq!(
        migrate_revert(&t.settings).await?,
        Some(INIT_VERSION.to_owned())
    );
    assert_eq!(migrate_revert(&t.settings).await?, None);
    // connect applies what is pending.
    let db = connect(&t.settings).await?;
    assert!(db.list_providers().await?.is_empty());
    Ok(())
}

fn usage(ms: i64, token_id: Option<i64>, model: Option<&str>, n: i64) -> UsageRecord {
    UsageRecord {
        created_at_ms: ms,
        request_id: format!("req-{n}"),
        token_id,
        user_id: None,
        endpoint: "/v1/chat/completions".to_owned(),
        provider: Some("openai".to_owned()),
        key_id: Some("k1".to_owned()),
        requested_model: model.map(str::to_owned),
        upstream_model: model.map(|m| format!("{m}-2025")),
        status: 200,
        error_class: None,
        latency_ms: 100 + n % 50,
        ttft_ms: Some(20),
        prompt_tokens: 10 + n % 7,
        completion_tokens: 5 + n % 11,
        cost_nanos: 1_000 + n,
        priced: true,
        tokens_estimated: n % 2 == 0,
        stream: n % 3 == 0,
        attempts: 1,
        base_cost_nanos: 1_000 + n,
        multiplier_ppm: 1_000_000,
        reservation_id: None,
        record_id: format!("rec-{n}"),
        flags: Default::default(),
        attempt_log: Vec::new(),
        cache_read_tokens: n % 5,
        cache_write_tokens: n % 3,
        reasoning_tokens: n % 4,
        // Media units vary too (on top of the tokens; a real request has
        // one kind, the sums must not care).
        images: n % 2,
        characters: n % 13 * 7,
        audio_ms: n % 9 * 1_000 + n % 1_000,
        search_units: n % 3,
        queue_order: 0,
    }
}

fn new_token(name: &str, user_id: Option<i64>) -> NewToken {
    NewToken {
        name: name.to_owned(),
        token_hash: fingerprint(&format!("sy-{name}")),
        token_prefix: format!("sy-{name}"),
        user_id,
        allowed_models: Some(r#"["gpt-4o"]"#.to_owned()),
        budget_nanos: Some(5_000_000_000),
        budget_tokens: Some(1_000_000),
        rpm: Some(60),
        tpm: Some(100_000),
        expires_at: Some(4_102_444_800_000),
        enabled: true,
        max_parallel: Some(4),
        quotas: None,
        price_multiplier_ppm: None,
    }
}

fn new_provider(name: &str) -> NewProvider {
    NewProvider {
        name: name.to_owned(),
        kind: "openai".to_owned(),
        base_url: Some("https://api.openai.com/v1".to_owned()),
        config_json: "{}".to_owned(),
        enabled: true,
    }
}

fn new_key(
    cipher: &SecretCipher,
    provider_id: i64,
    key_id: &str,
    secret: &str,
) -> anyhow::Result<NewProviderKey> {
    Ok(NewProviderKey {
        provider_id,
        key_id: key_id.to_owned(),
        secret_ciphertext: cipher.encrypt(secret)?,
        secret_hint: format!("sk-...{}", &secret[secret.len().saturating_sub(4)..]),
        secret_fingerprint: fingerprint(secret),
        weight: 1,
        priority: 0,
        enabled: true,
    })
}

/// A direct connection to the test database, outside the `Db` pool.
enum RawConn {
    Sqlite(SyncConnectionWrapper<diesel::SqliteConnection>),
    Postgres(Box<AsyncPgConnection>),
}

impl RawConn {
    async fn open(t: &TestDb) -> anyhow::Result<RawConn> {
        Ok(match t.settings.backend() {
            Backend::Sqlite => {
                RawConn::Sqlite(SyncConnectionWrapper::establish(t.settings.sqlite_path()).await?)
            }
            Backend::Postgres => RawConn::Postgres(Box::new(
                AsyncPgConnection::establish(&t.settings.url).await?,
            )),
        })
    }
}

/// Runs the same body on either connection type.
macro_rules! with_raw {
    ($raw:expr, |$conn:ident| $body:expr) => {
        match $raw {
            RawConn::Sqlite($conn) => $body,
            RawConn::Postgres($conn) => $body,
        }
    };
}

#[derive(QueryableByName)]
struct ColumnName {
    #[diesel(sql_type = Text)]
    name: String,
}

/// The column names of `table` in the database, in order.
async fn db_columns(raw: &mut RawConn, table: &str) -> anyhow::Result<Vec<String>> {
    let rows: Vec<ColumnName> = match raw {
        RawConn::Sqlite(conn) => {
            diesel::sql_query("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind::<Text, _>(table)
                .load(conn)
                .await?
        }
        RawConn::Postgres(conn) => {
            diesel::sql_query(
                "SELECT column_name::text AS name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 ORDER BY ordinal_position",
            )
            .bind::<Text, _>(table)
            .load(conn)
            .await?
        }
    };
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// The column names `schema.rs` declares for a `SELECT all_columns`, in order.
fn schema_columns(select_sql: &str) -> Vec<String> {
    let list = select_sql
        .trim_start_matches("SELECT ")
        .split(" FROM ")
        .next()
        .unwrap_or_default();
    list.split(", ")
        .filter_map(|qualified| qualified.rsplit('.').next())
        .map(|c| c.trim_matches('`').trim_matches('"').to_owned())
        .collect()
}

async fn schema_matches_migrations(backend: Backend) -> anyhow::Result<()> {
    let t = TestDb::new(backend).await?;
    let db = connect(&t.settings).await?;
    let cipher = SecretCipher::new("test master");

    // One row in every table, through the models' own queries.
    let user = db.create_user("alice").await?;
    let provider = db.upsert_provider(&new_provider("openai")).await?;
    db.upsert_provider_key(&new_key(&cipher, provider.id, "k1", "sk-test-0001")?)
        .await?;
    let token = db.create_token(&new_token("ci", Some(user.id))).await?;
    db.upsert_price("gpt-4o", 2_500_000, 10_000_000).await?;
    db.upsert_redirect("gpt-4", "gpt-4o").await?;
    db.write_usage_batch(&[usage(1_795_305_600_000, Some(token.id), Some("gpt-4o"), 1)])
        .await?;
    assert!(db.insert_system_value("server_id", "sy-test").await?);
    let admin_key = db
        .create_admin_key(&NewAdminKey {
            name: "alice".to_owned(),
            public_key: "pk".to_owned(),
            fingerprint: "SHA256:fp".to_owned(),
            enabled: true,
            role: "operator".to_owned(),
        })
        .await?;
    let now = switchyard::clock::system_now_ms();
    db.create_admin_challenge(admin_key.id, "nonce-1", now + 60_000)
        .await?;
    let session = db
        .consume_admin_challenge(
            "nonce-1",
            now,
            &NewAdminSession {
                token_hash: "hash".to_owned(),
                token_prefix: "sya-abc".to_owned(),
                admin_key_id: admin_key.id,
                expires_at: now + 3_600_000,
            },
        )
        .await?
        .context("the challenge was not consumed")?;
    db.insert_operation_log(&NewOperationLog {
        actor: "master-key".to_owned(),
        session_id: Some(session.id),
        action: "token.create".to_owned(),
        target: format!("token:{}", token.id),
        before_json: None,
        after_json: Some("{}".to_owned()),
        request_id: Some("req-1".to_owned()),
    })
    .await?;

    db.record_response_owner("resp_1", "openai", "k1", token.id)
        .await?;
    assert_eq!(
        db.response_owner("resp_1", token.id)
            .await?
            .map(|owner| owner.provider),
        Some("openai".to_owned())
    );
    assert_eq!(db.response_owner("resp_1", token.id + 1).await?, None);

    let mut raw = RawConn::open(&t).await?;

    // Every column declared in schema.rs exists, in the same order, and nothing more.
    let sqlite = backend == Backend::Sqlite;
    macro_rules! same_columns {
        ($table:ident) => {{
            let sql = if sqlite {
                diesel::debug_query::<diesel::sqlite::Sqlite, _>(
                    &$table::table.select($table::all_columns),
                )
                .to_string()
            } else {
                diesel::debug_query::<diesel::pg::Pg, _>(&$table::table.select($table::all_columns))
                    .to_string()
            };
            let declared = schema_columns(&sql);
            let actual = db_columns(&mut raw, stringify!($table)).await?;
            ensure!(
                declared == actual,
                "{}: schema.rs {declared:?} != database {actual:?}",
                stringify!($table)
            );
        }};
    }
    same_columns!(providers);
    same_columns!(provider_keys);
    same_columns!(users);
    same_columns!(gateway_tokens);
    same_columns!(model_prices);
    same_columns!(model_redirects);
    same_columns!(request_logs);
    same_columns!(usage_daily);
    same_columns!(reservations);
    same_columns!(limit_shares);
    same_columns!(limit_pools);
    same_columns!(billing_records);
    same_columns!(system_values);
    same_columns!(admin_keys);
    same_columns!(admin_challenges);
    same_columns!(admin_sessions);
    same_columns!(operation_logs);
    same_columns!(usage_dead_letters);
    same_columns!(change_feed);
    same_columns!(response_owners);
    // usage_hourly is written and read by src/db/rollups.rs, not schema.rs:
    // its columns are the ones that module names, in order.
    let mut rollup_columns: Vec<String> = ["hour", "token_id", "model", "provider"]
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    rollup_columns.extend(switchyard::db::rollups::value_columns());
    assert_eq!(db_columns(&mut raw, "usage_hourly").await?, rollup_columns);

    // Loading `all_columns` into the models proves the column types on this backend.
    with_raw!(&mut raw, |conn| {
        let p: Vec<Provider> = providers::table
            .select(providers::all_columns)
            .load(conn)
            .await?;
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].base_url.as_deref(), Some("https://api.openai.com/v1"));
        let k: Vec<ProviderKey> = provider_keys::table
            .select(provider_keys::all_columns)
            .load(conn)
            .await?;
        assert_eq!(cipher.decrypt(&k[0].secret_ciphertext)?, "sk-test-0001");
        let u: Vec<User> = users::table.select(users::all_columns).load(conn).await?;
        assert_eq!((u[0].status.as_str(), u[0].balance_nanos), ("active", 0));
        let g: Vec<GatewayToken> = gateway_tokens::table
            .select(gateway_tokens::all_columns)
            .load(conn)
            .await?;
        assert_eq!(g[0].user_id, Some(user.id));
        assert_eq!(g[0].expires_at, Some(4_102_444_800_000));
        assert_eq!((g[0].spent_tokens, g[0].request_count), (17, 1));
        let mp: Vec<ModelPrice> = model_prices::table
            .select(model_prices::all_columns)
            .load(conn)
            .await?;
        assert_eq!(mp[0].output_per_mtok_micros, 10_000_000);
        let mr: Vec<ModelRedirect> = model_redirects::table
            .select(model_redirects::all_columns)
            .load(conn)
            .await?;
        assert_eq!(mr[0].to_model, "gpt-4o");
        let rl: Vec<RequestLog> = request_logs::table
            .select(request_logs::all_columns)
            .load(conn)
            .await?;
        assert_eq!(rl[0].ttft_ms, Some(20));
        assert_eq!(rl[0].status, 200);
        let ud: Vec<UsageDaily> = usage_daily::table
            .select(usage_daily::all_columns)
            .load(conn)
            .await?;
        assert_eq!(ud[0].day, "2026-11-22");
        let ak: Vec<AdminKey> = admin_keys::table
            .select(admin_keys::all_columns)
            .load(conn)
            .await?;
        assert_eq!(ak[0].last_login_at, Some(now));
        let ac: Vec<AdminChallenge> = admin_challenges::table
            .select(admin_challenges::all_columns)
            .load(conn)
            .await?;
        assert_eq!(ac[0].used_at, Some(now));
        let asn: Vec<AdminSession> = admin_sessions::table
            .select(admin_sessions::all_columns)
            .load(conn)
            .await?;
        assert_eq!(
            (asn[0].admin_key_id, asn[0].revoked_at),
            (admin_key.id, None)
        );
        let ol: Vec<OperationLog> = operation_logs::table
            .select(operation_logs::all_columns)
            .load(conn)
            .await?;
        assert_eq!(ol[0].session_id, Some(session.id));
        let sv: Vec<(String, String, i64, i64)> = system_values::table
            .select(system_values::all_columns)
            .load(conn)
            .await?;
        assert_eq!(sv[0].1, "sy-test");
        let ro: Vec<ResponseOwner> = response_owners::table
            .select(response_owners::all_columns)
            .load(conn)
            .await?;
        assert_eq!(
            (
                ro[0].provider.as_str(),
                ro[0].key_id.as_str(),
                ro[0].token_id
            ),
            ("openai", "k1", token.id)
        );
    });

    // Foreign keys are enforced (SQLite only with PRAGMA foreign_keys=ON).
    let orphan = db
        .upsert_provider_key(&new_key(&cipher, provider.id + 1000, "k9", "sk-orphan")?)
        .await;
    ensure!(
        matches!(orphan, Err(DbError::Query(_))),
        "orphan key accepted: {orphan:?}"
    );
    Ok(())
}

async fn upserts_update_in_place(backend: Backend) -> anyhow::Result<()> {
    let t = TestDb::new(backend).await?;
    let db = connect(&t.settings).await?;
    let cipher = SecretCipher::new("test master");

    // Providers, by name.
    let first = db.upsert_provider(&new_provider("openai")).await?;
    let mut changed = new_provider("openai");
    changed.base_url = None;
    changed.enabled = false;
    changed.config_json = r#"{"org":"x"}"#.to_owned();
    let second = db.upsert_provider(&changed).await?;
    assert_eq!(second.id, first.id);
    assert_eq!(second.base_url, None);
    assert!(!second.enabled);
    assert_eq!(second.created_at, first.created_at);
    assert_eq!(db.list_providers().await?.len(), 1);
    assert_eq!(
        db.get_provider_by_name("openai").await?.map(|p| p.id),
        Some(first.id)
    );
    assert!(db.get_provider_by_name("nope").await?.is_none());

    // Provider keys, by (provider, key id): an update keeps enabled and the reason.
    let key = db
        .upsert_provider_key(&new_key(&cipher, first.id, "k1", "sk-aaaa-1111")?)
        .await?;
    assert!(key.enabled);
    assert!(
        db.set_provider_key_enabled(first.id, "k1", false, Some("401 from upstream"))
            .await?
    );
    let mut rotated = new_key(&cipher, first.id, "k1", "sk-bbbb-2222")?;
    rotated.weight = 5;
    rotated.priority = 2;
    let updated = db.upsert_provider_key(&rotated).await?;
    assert_eq!(updated.id, key.id);
    assert!(!updated.enabled);
    assert_eq!(
        updated.disabled_reason.as_deref(),
        Some("401 from upstream")
    );
    assert_eq!((updated.weight, updated.priority), (5, 2));
    assert_eq!(updated.secret_fingerprint, fingerprint("sk-bbbb-2222"));
    assert_eq!(cipher.decrypt(&updated.secret_ciphertext)?, "sk-bbbb-2222");
    assert!(
        db.set_provider_key_enabled(first.id, "k1", true, Some("ignored"))
            .await?
    );
    let keys = db.list_provider_keys(first.id).await?;
    assert_eq!(keys.len(), 1);
    assert!(keys[0].enabled);
    assert_eq!(keys[0].disabled_reason, None);
    assert!(
        !db.set_provider_key_enabled(first.id, "nope", true, None)
            .await?
    );
    assert!(db.delete_provider_key(first.id, "k1").await?);
    assert!(!db.delete_provider_key(first.id, "k1").await?);

    // Prices and redirects.
    db.upsert_price("gpt-4o", 2_500_000, 10_000_000).await?;
    let price = db.upsert_price("gpt-4o", 2_000_000, 8_000_000).await?;
    assert_eq!(
        (price.input_per_mtok_micros, price.output_per_mtok_micros),
        (2_000_000, 8_000_000)
    );
    assert_eq!(db.list_prices().await?.len(), 1);
    assert!(db.delete_price("gpt-4o").await?);
    assert!(!db.delete_price("gpt-4o").await?);
    db.upsert_redirect("gpt-4", "gpt-4o").await?;
    db.upsert_redirect("gpt-4", "gpt-4.1").await?;
    let redirects = db.list_redirects().await?;
    assert_eq!(redirects.len(), 1);
    assert_eq!(redirects[0].to_model, "gpt-4.1");
    assert!(db.delete_redirect("gpt-4").await?);
    assert!(!db.delete_redirect("gpt-4").await?);

    // Users and tokens.
    let user = db.create_user("bob").await?;
    assert_eq!(
        db.get_user(user.id).await?.map(|u| u.name),
        Some("bob".to_owned())
    );
    assert!(db.get_user(user.id + 1).await?.is_none());
    // The migration's `default` user (owner of tokens created without one) and bob.
    let names: Vec<String> = db.list_users().await?.into_iter().map(|u| u.name).collect();
    assert_eq!(names, vec!["default".to_owned(), "bob".to_owned()]);
    let token = db.create_token(&new_token("ci", Some(user.id))).await?;
    assert_eq!(token.spent_nanos, 0);
    let found = db
        .find_token_by_hash(&fingerprint("sy-ci"))
        .await?
        .context("token by hash")?;
    assert_eq!(found.id, token.id);
    assert!(db.find_token_by_hash("nope").await?.is_none());
    assert!(db.set_token_enabled(token.id, false).await?);
    assert_eq!(
        db.get_token(token.id).await?.map(|t| t.enabled),
        Some(false)
    );
    assert_eq!(db.list_tokens().await?.len(), 1);
    assert!(db.delete_token(token.id).await?);
    assert!(!db.delete_token(token.id).await?);
    assert!(db.get_token(token.id).await?.is_none());
    Ok(())
}

async fn unique_violations_are_conflicts(backend: Backend) -> anyhow::Result<()> {
    let t = TestDb::new(backend).await?;
    let db = connect(&t.settings).await?;
    let cipher = SecretCipher::new("test master");

    db.create_token(&new_token("a", None)).await?;
    let again = db.create_token(&new_token("a", None)).await;
    ensure!(
        matches!(again, Err(DbError::Conflict(_))),
        "same token hash: {again:?}"
    );

    db.create_user("carol").await?;
    let again = db.create_user("carol").await;
    ensure!(
        matches!(again, Err(DbError::Conflict(_))),
        "same user name: {again:?}"
    );

    let provider = db.upsert_provider(&new_provider("openai")).await?;
    db.upsert_provider_key(&new_key(&cipher, provider.id, "k1", "sk-same-secret")?)
        .await?;
    let same_secret = db
        .upsert_provider_key(&new_key(&cipher, provider.id, "k2", "sk-same-secret")?)
        .await;
    ensure!(
        matches!(same_secret, Err(DbError::Conflict(_))),
        "same secret twice: {same_secret:?}"
    );
    assert_eq!(db.list_provider_keys(provider.id).await?.len(), 1);
    Ok(())
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Sums {
    requests: i64,
    prompt: i64,
    completion: i64,
    cost: i64,
}

async fn usage_batch_is_exact(backend: Backend) -> anyhow::Result<()> {
    let t = TestDb::new(backend).await?;
    let db = connect(&t.settings).await?;
    let mut tokens = Vec::new();
    for name in ["t0", "t1", "t2"] {
        tokens.push(db.create_token(&new_token(name, None)).await?.id);
    }
    // 2026-11-22T23:00:00Z; records span midnight into the next day.
    let start = 1_795_388_400_000_i64;
    let models = [Some("gpt-4o"), Some("claude-sonnet"), None];
    let records: Vec<UsageRecord> = (0..1_200_i64)
        .map(|n| {
            let token = tokens[(n % 3) as usize];
            usage(
                start + n * 6_000,
                Some(token),
                models[(n % 5 % 3) as usize],
                n,
            )
        })
        .collect();
    db.write_usage_batch(&records).await?;
    // A second batch: counters and rollups add up; records without a token are
    // logged only.
    let second: Vec<UsageRecord> = (1_200..1_300_i64)
        .map(|n| {
            let token = if n % 2 == 0 { Some(tokens[0]) } else { None };
            usage(start + n * 6_000, token, Some("gpt-4o"), n)
        })
        .collect();
    db.write_usage_batch(&second).await?;
    let all: Vec<&UsageRecord> = records.iter().chain(&second).collect();

    assert_eq!(db.count_request_logs().await?, 1_300);
    // The media units: request logs, both rollups and the charges (of the
    // records with a token) hold the records' sums, unit by unit.
    let units = |r: &UsageRecord| [r.images, r.characters, r.audio_ms, r.search_units];
    let total = |rows: &mut dyn Iterator<Item = [i64; 4]>| {
        rows.fold([0i64; 4], |sum, row| {
            [
                sum[0] + row[0],
                sum[1] + row[1],
                sum[2] + row[2],
                sum[3] + row[3],
            ]
        })
    };
    let expected = total(&mut all.iter().map(|r| units(r)));
    assert!(expected.iter().all(|sum| *sum > 0), "{expected:?}");
    let logged = db.list_request_logs(2_000, 0).await?;
    assert_eq!(
        total(
            &mut logged
                .iter()
                .map(|l| [l.images, l.characters, l.audio_ms, l.search_units])
        ),
        expected
    );
    for rollup in [
        switchyard::db::rollups::Rollup::Hourly,
        switchyard::db::rollups::Rollup::Daily,
    ] {
        let rows = db.list_rollups(rollup).await?;
        let f = |row: &switchyard::db::rollups::HourlyRow| {
            [
                row.figures.images,
                row.figures.characters,
                row.figures.audio_ms,
                row.figures.search_units,
            ]
        };
        assert_eq!(total(&mut rows.iter().map(f)), expected, "{rollup:?}");
    }
    let (charges, charged) = db
        .list_billing(&switchyard::db::BillingFilter::default(), 2_000, 0)
        .await?;
    let with_token: Vec<&&UsageRecord> = all.iter().filter(|r| r.token_id.is_some()).collect();
    assert_eq!(charged, with_token.len() as i64);
    assert_eq!(
        total(
            &mut charges
                .iter()
                .map(|c| [c.images, c.characters, c.audio_ms, c.search_units])
        ),
        total(&mut with_token.iter().map(|r| units(r)))
    );
    let page = db.list_request_logs(10, 0).await?;
    assert_eq!(page.len(), 10);
    assert_eq!(page[0].request_id, "req-1299");
    assert!(page.windows(2).all(|w| w[0].created_at >= w[1].created_at));
    let last = db.list_request_logs(10, 1_295).await?;
    assert_eq!(last.len(), 5);
    assert_eq!(last[4].request_id, "req-0");

    for &token_id in &tokens {
        let mine: Vec<&&UsageRecord> = all
            .iter()
            .filter(|r| r.token_id == Some(token_id))
            .collect();
        let token = db.get_token(token_id).await?.context("token")?;
        assert_eq!(token.request_count, mine.len() as i64);
        assert_eq!(
            token.spent_nanos,
            mine.iter().map(|r| r.cost_nanos).sum::<i64>()
        );
        assert_eq!(
            token.spent_tokens,
            mine.iter()
                .map(|r| r.prompt_tokens + r.completion_tokens)
                .sum::<i64>()
        );
        assert_eq!(
            token.last_used_at,
            mine.iter().map(|r| r.created_at_ms).max()
        );

        let mut expected: BTreeMap<(String, String), Sums> = BTreeMap::new();
        for r in &mine {
            let day = switchyard::db::usage::utc_day(r.created_at_ms);
            let s = expected
                .entry((day, r.requested_model.clone().unwrap_or_default()))
                .or_default();
            s.requests += 1;
            s.prompt += r.prompt_tokens;
            s.completion += r.completion_tokens;
            s.cost += r.cost_nanos;
        }
        let actual: BTreeMap<(String, String), Sums> = db
            .token_usage_daily(token_id)
            .await?
            .into_iter()
            .map(|d| {
                (
                    (d.day, d.model),
                    Sums {
                        requests: d.requests,
                        prompt: d.prompt_tokens,
                        completion: d.completion_tokens,
                        cost: d.cost_nanos,
                    },
                )
            })
            .collect();
        assert_eq!(actual, expected);
        assert!(actual.keys().any(|(day, _)| day == "2026-11-23"));
        assert!(actual.keys().any(|(_, model)| model.is_empty()));
    }
    // An older batch does not move last_used_at back.
    let before = db.get_token(tokens[1]).await?.context("token")?;
    db.write_usage_batch(&[usage(start - 1_000, Some(tokens[1]), None, 9_999)])
        .await?;
    let after = db.get_token(tokens[1]).await?.context("token")?;
    assert_eq!(after.last_used_at, before.last_used_at);
    assert_eq!(after.request_count, before.request_count + 1);
    Ok(())
}

async fn cancelled_usage_write_lands(backend: Backend) -> anyhow::Result<()> {
    let t = TestDb::new(backend).await?;
    // connect from an actix system thread.
    let db: Db = connect(&t.settings).await?;
    let token = db.create_token(&new_token("big", None)).await?;
    const N: i64 = 5_000;
    let records: Vec<UsageRecord> = (0..N)
        .map(|n| usage(1_795_305_600_000 + n, Some(token.id), Some("gpt-4o"), n))
        .collect();

    {
        let mut write = pin!(db.write_usage_batch(&records));
        // Poll once, so the write starts, then drop it while in flight.
        let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
        if first.is_ready() {
            bail!("the write finished on its first poll: nothing was cancelled");
        }
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let landed = db.count_request_logs().await?;
        if landed == N {
            break;
        }
        ensure!(landed == 0, "a partial batch is visible: {landed} rows");
        ensure!(
            Instant::now() < deadline,
            "the cancelled write never landed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = db.get_token(token.id).await?.context("token")?;
    assert_eq!(token.request_count, N);
    Ok(())
}
