//! A real PostgreSQL outage (a server of the test's own, stopped and
//! started again): tokens that need no database keep being served past the
//! token cache's TTL, budget-limited tokens are refused with 503 and
//! `Retry-After` (fail closed), no database error answers 500, and the
//! backlog is written within seconds of the database's return. A change
//! heard of just before the outage (another instance's, or one user's made
//! here) refuses no token it did not touch. Through a cut TCP link (a
//! partition: the database silent, not down) neither what is served nor
//! what is refused waits `connect_timeout` on every request.

pub mod common;

use anyhow::Context;
use awc::http::Method;
use common::MASTER_KEY;
use common::admin::AdminClient;
use common::link::Link;
use common::load::compare;
use common::pg::PrivatePostgres;
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchyard::config::{DatabaseSettings, Secret, Settings};
use switchyard::{StartOptions, start};

/// A gateway on a PostgreSQL server of its own, and what a test talks to
/// it with.
struct OnPostgres {
    pg: PrivatePostgres,
    gateway: switchyard::Gateway,
    url: String,
    client: awc::Client,
    admin: AdminClient,
    /// The upstream and the gateway's directory, kept for the test's length.
    _alive: (MockUpstream, tempfile::TempDir),
}

/// Starts a gateway with one provider (`mock-gpt`), `token_cache_ttl` as
/// given and retries quick enough for a test; `adjust` changes the rest.
async fn start_on_postgres(
    token_cache_ttl: Duration,
    adjust: impl FnOnce(&mut Settings, &PrivatePostgres) -> anyhow::Result<()>,
) -> anyhow::Result<OnPostgres> {
    let pg = PrivatePostgres::start()?;
    let mock = MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::for_tests(dir.path())?;
    settings.database = DatabaseSettings {
        url: pg.url(),
        max_connections: 4,
        connect_timeout: Duration::from_secs(1),
        sync_interval: Duration::from_secs(1),
        token_cache_ttl,
        stale_token_grace: Duration::from_secs(600),
        query_timeout: Duration::from_secs(30),
    };
    settings.admin.master_key = Secret::new(MASTER_KEY);
    settings.usage.max_retry_delay = Duration::from_millis(500);
    settings.providers = vec![common::mock_provider(
        &mock,
        "mock",
        &["mock-gpt"],
        &["ok-1"],
    )];
    adjust(&mut settings, &pg)?;
    settings.validate()?;
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let gateway = start(settings, log, StartOptions::default()).await?;
    let url = format!("http://{}", gateway.addr);
    Ok(OnPostgres {
        pg,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(20))
            .finish(),
        admin: AdminClient::new(url.clone(), MASTER_KEY),
        url,
        gateway,
        _alive: (mock, dir),
    })
}

/// [`start_on_postgres`] with the database reached through a [`Link`] the
/// test can cut, and `connect_timeout` as given.
async fn start_behind_link(
    token_cache_ttl: Duration,
    connect_timeout: Duration,
    adjust: impl FnOnce(&mut Settings) -> anyhow::Result<()>,
) -> anyhow::Result<(OnPostgres, Link)> {
    let mut link = None;
    let on = start_on_postgres(token_cache_ttl, |settings, pg| {
        let through = Link::start(pg.port)?;
        settings.database.url = format!("postgres://postgres@127.0.0.1:{}/postgres", through.port);
        settings.database.connect_timeout = connect_timeout;
        link = Some(through);
        adjust(settings)
    })
    .await?;
    Ok((on, link.context("the link")?))
}

/// Exact reservations (no budget slice beyond each estimate), with a price
/// for `mock-gpt`: every request of a budget token needs a new lease, so
/// the database. A request a held slice covers is served through an
/// outage (docs/limits.md).
fn lease_per_request(settings: &mut Settings) {
    settings.limits.budget_slice_fraction = 0.0;
    settings.prices = vec![switchyard::config::PriceSettings {
        model: "mock-gpt".to_owned(),
        input_per_mtok: 1.0,
        output_per_mtok: 1.0,
        ..Default::default()
    }];
}

impl OnPostgres {
    /// A chat request with `token` that must answer `want` (`what` names it
    /// in the error); its `x-request-id`.
    async fn expect(&self, token: &str, want: u16, what: &str) -> anyhow::Result<Option<String>> {
        let (status, id, _, body) = self.chat(token).await?;
        anyhow::ensure!(status == want, "{what}: {status} {body}");
        Ok(id)
    }

    /// The status of an admin `GET` of `path` with the master key, whatever
    /// it is.
    async fn admin_status(&self, path: &str) -> anyhow::Result<u16> {
        let (status, _) = self.admin.call(Method::GET, path, None).await?;
        Ok(status.as_u16())
    }

    /// Chats with `token` until it answers `want`, which must happen within
    /// 10 s, answering only `meanwhile` before (`what` names the wait).
    async fn until(
        &self,
        token: &str,
        want: u16,
        meanwhile: u16,
        what: &str,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, _, _, body) = self.chat(token).await?;
            if status == want {
                return Ok(());
            }
            anyhow::ensure!(status == meanwhile, "{what}: {status} {body}");
            anyhow::ensure!(
                Instant::now() < deadline,
                "{what}: still {status} after 10 s"
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every id in `answered` has one row (none twice); how
    /// long that took (at most 10 s).
    async fn all_stored(&self, answered: &[String]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let ids: Vec<String> = match self.gateway.db.list_request_logs(100_000, 0).await {
                Ok(rows) => rows.into_iter().map(|row| row.request_id).collect(),
                Err(_) => Vec::new(),
            };
            let (missing, duplicated) = compare(answered, &ids);
            anyhow::ensure!(duplicated.is_empty(), "stored twice: {duplicated:?}");
            if missing.is_empty() {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "{} answered requests still unwritten after 10 s",
                missing.len()
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A chat request with `token`: the status, `x-request-id`,
    /// `Retry-After` and the body.
    async fn chat(
        &self,
        token: &str,
    ) -> anyhow::Result<(u16, Option<String>, Option<String>, Value)> {
        let mut response = self
            .client
            .post(format!("{}/v1/chat/completions", self.url))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send_json(&json!({
                "model": "mock-gpt",
                "messages": [{ "role": "user", "content": "hi" }],
                "max_tokens": 5,
            }))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (id, retry_after) = (header("x-request-id"), header("retry-after"));
        let body = response.body().await?;
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((response.status().as_u16(), id, retry_after, json))
    }
}

#[actix_rt::test]
async fn a_database_outage_is_served_through_and_the_backlog_lands_within_seconds()
-> anyhow::Result<()> {
    // A short TTL, so that the outage outlasts every cache entry.
    let on = start_on_postgres(Duration::from_millis(300), |settings, _| {
        lease_per_request(settings);
        Ok(())
    })
    .await?;
    let plain = on
        .admin
        .create_token(json!({ "name": "plain" }))
        .await?
        .token;
    let limited = on
        .admin
        .create_token(json!({ "name": "rate-limited", "rpm": 10_000 }))
        .await?
        .token;
    let budget = on
        .admin
        .create_token(json!({ "name": "budget", "budget_usd": 100.0 }))
        .await?
        .token;
    let mut answered = Vec::new();
    for token in [&plain, &limited, &budget] {
        let id = on.expect(token, 200, "before the outage").await?;
        answered.extend(id);
    }

    on.pg.stop_server("immediate")?;
    // Every cache entry is now older than its 300 ms TTL.
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..20 {
        for token in [&plain, &limited] {
            let id = on.expect(token, 200, "served from the stale cache").await?;
            answered.extend(id);
        }
    }
    // A budget needs the database for a new slice: refused, 503, retry.
    let (status, _, retry_after, body) = on.chat(&budget).await?;
    anyhow::ensure!(
        status == 503,
        "budget token during the outage: {status} {body}"
    );
    anyhow::ensure!(retry_after.is_some(), "no Retry-After");
    anyhow::ensure!(
        body.pointer("/error/code").and_then(Value::as_str) == Some("database_unavailable"),
        "{body}"
    );
    // A token never seen before cannot be checked: 503, not 401 or 500.
    let (status, _, _, body) = on
        .chat("sy-neverseenbeforeneverseenbefore0000000000")
        .await?;
    anyhow::ensure!(
        status == 503,
        "unknown token during the outage: {status} {body}"
    );
    // Admin reads are 503 too, never 500.
    let status = on.admin_status("/admin/tokens").await?;
    anyhow::ensure!(status == 503, "admin during the outage: {status}");

    on.pg.start_server()?;
    let landed = on.all_stored(&answered).await?;
    eprintln!(
        "backlog of {} rows written {landed:?} after the database came back",
        answered.len()
    );
    anyhow::ensure!(
        landed < Duration::from_secs(3),
        "the backlog took {landed:?} to land"
    );
    // And the budget token is served again.
    on.expect(&budget, 200, "budget token after the outage")
        .await?;
    on.gateway.stop().await?;
    Ok(())
}

/// Another instance changes two tokens in one transaction, and the database
/// goes down right after this instance heard of it (its poll or the change
/// feed) but before it read the tokens again. The change is applied where
/// the database can be read (the disabled token is refused at once), and a
/// token that was valid when last read is still served through the outage,
/// as a token past its cache TTL is. Before, hearing of a change dropped
/// the token from the cache, so it was refused with 503 for the whole
/// outage: what failed `tests/crash.rs` in CI, where the gateway's poll saw
/// the test's own new token just before the outage.
#[actix_rt::test]
async fn a_token_changed_elsewhere_just_before_an_outage_is_still_served() -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    // A long TTL, so that only hearing of a change can make an entry stale.
    let on = start_on_postgres(Duration::from_secs(600), |settings, _| {
        settings.database.sync_interval = Duration::from_millis(100);
        Ok(())
    })
    .await?;
    let renamed = on.admin.create_token(json!({ "name": "renamed" })).await?;
    let disabled = on.admin.create_token(json!({ "name": "disabled" })).await?;
    for token in [&renamed.token, &disabled.token] {
        on.expect(token, 200, "before the change").await?;
    }

    // What another instance's admin API writes: the change and a new
    // `updated_at`, for both tokens in one transaction.
    let mut elsewhere = AsyncPgConnection::establish(&on.pg.url()).await?;
    diesel::sql_query(format!(
        "UPDATE gateway_tokens SET \
         name = CASE WHEN id = {renamed} THEN 'renamed elsewhere' ELSE name END, \
         enabled = (id <> {disabled}), \
         updated_at = (extract(epoch FROM clock_timestamp()) * 1000)::bigint \
         WHERE id IN ({renamed}, {disabled})",
        renamed = renamed.id,
        disabled = disabled.id,
    ))
    .execute(&mut elsewhere)
    .await?;
    drop(elsewhere);
    // The disabled token is refused once this instance heard of the
    // change; whatever told it (poll or feed) read both rows at once.
    on.until(
        &disabled.token,
        401,
        200,
        "the token disabled elsewhere, until this instance heard of it",
    )
    .await?;

    on.pg.stop_server("immediate")?;
    for _ in 0..5 {
        on.expect(
            &renamed.token,
            200,
            "a token valid when last read, changed elsewhere, during the outage",
        )
        .await?;
    }
    // The disabled one was read again before the outage: still refused.
    on.expect(&disabled.token, 401, "the disabled token during the outage")
        .await?;
    on.pg.start_server()?;
    on.gateway.stop().await?;
    Ok(())
}

/// A user is changed through this instance, and the database goes down
/// before the next request. Only that user's tokens depend on the change:
/// theirs are dropped from the cache (a change made here fails closed:
/// 503 until the database can be read), every other user's stay served.
/// Before, any user change dropped every cached token, so a change to one
/// user refused every user's tokens through an outage that began before
/// their next request.
#[actix_rt::test]
async fn a_user_changed_just_before_an_outage_leaves_other_users_tokens_served()
-> anyhow::Result<()> {
    let on = start_on_postgres(Duration::from_secs(600), |_, _| Ok(())).await?;
    let mut tokens = Vec::new();
    for name in ["changed", "unchanged"] {
        let user = on.admin.create_user(json!({ "name": name })).await?;
        let user_id = user["id"].as_i64().context("user id")?;
        let token = on
            .admin
            .create_token(json!({ "name": name, "user_id": user_id }))
            .await?
            .token;
        on.expect(&token, 200, "before the change").await?;
        tokens.push((user_id, token));
    }
    let [(changed_user, changed_token), (_, unchanged_token)] = &tokens[..] else {
        anyhow::bail!("two users");
    };
    on.admin
        .patch(
            &format!("/admin/users/{changed_user}"),
            json!({ "price_multiplier": 2.0 }),
        )
        .await?;

    on.pg.stop_server("immediate")?;
    on.expect(
        unchanged_token,
        200,
        "another user's token, cached before the change",
    )
    .await?;
    on.expect(
        changed_token,
        503,
        "the changed user's token cannot be read again",
    )
    .await?;
    on.pg.start_server()?;
    on.expect(changed_token, 200, "read again once the database is back")
        .await?;
    on.gateway.stop().await?;
    Ok(())
}

/// A network partition between the gateway and PostgreSQL: nothing is
/// refused, connections just stop answering, so only `connect_timeout`
/// tells. Tokens read before it are served past their cache TTL without
/// waiting that long each time: once a checkout has failed, the gateway
/// serves them as last read and reads them again in the background. Before,
/// every request of such a token waited the whole timeout (5 s by
/// default). When the partition heals, the usage held meanwhile lands.
#[actix_rt::test]
async fn a_partitioned_database_does_not_hold_up_cached_tokens() -> anyhow::Result<()> {
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    let (on, link) =
        start_behind_link(Duration::from_millis(300), CONNECT_TIMEOUT, |_| Ok(())).await?;
    let token = on
        .admin
        .create_token(json!({ "name": "partitioned" }))
        .await?
        .token;
    let mut answered = Vec::new();
    let id = on.expect(&token, 200, "before the partition").await?;
    answered.extend(id);

    link.cut();
    // The token's cache entry is now past its 300 ms TTL.
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    let mut took = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let id = on.expect(&token, 200, "during the partition").await?;
        took.push(started.elapsed());
        answered.extend(id);
    }
    eprintln!("each request during the partition took {took:?}");
    // The first may wait for the checkout that finds the database silent;
    // none after it waits for a connect timeout of its own.
    let waited: Vec<&Duration> = took[1..]
        .iter()
        .filter(|took| **took >= CONNECT_TIMEOUT / 3)
        .collect();
    anyhow::ensure!(
        waited.is_empty(),
        "requests waited for the database after a checkout had found it silent: {took:?}"
    );

    link.restore();
    let landed = on.all_stored(&answered).await?;
    eprintln!("the partition's usage landed {landed:?} after it healed");
    on.expect(&token, 200, "after the partition").await?;
    on.gateway.stop().await?;
    Ok(())
}

/// A partition again, now for what cannot be served without the database:
/// a token never read, a budget that needs a new slice, an admin read. Once
/// a checkout has found the database silent, they are refused (503) at once
/// while one caller a second tries again. Before, each waited the whole
/// `connect_timeout` for a checkout of its own, and a flood of them held
/// the gateway's request slots that long.
#[actix_rt::test]
async fn a_partitioned_database_refuses_what_needs_it_at_once() -> anyhow::Result<()> {
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    // A long TTL: the budget token is read once, before the partition.
    let (on, link) = start_behind_link(Duration::from_secs(600), CONNECT_TIMEOUT, |settings| {
        lease_per_request(settings);
        Ok(())
    })
    .await?;
    let budget = on
        .admin
        .create_token(json!({ "name": "budget", "budget_usd": 100.0 }))
        .await?
        .token;
    on.expect(&budget, 200, "before the partition").await?;
    let unknown = "sy-neverseenbeforeneverseenbefore0000000000";

    link.cut();
    // The first checkout finds the database silent: this one may wait.
    on.expect(unknown, 503, "the first unknown token").await?;
    let shared = &on;
    let timed = |token: String| async move {
        let on = shared;
        let started = Instant::now();
        let (status, _, _, body) = on.chat(&token).await?;
        anyhow::Ok((status, body, started.elapsed()))
    };
    let admin = async {
        let started = Instant::now();
        let status = shared.admin_status("/admin/tokens").await?;
        anyhow::Ok((status, Value::Null, started.elapsed()))
    };
    let callers = [unknown, unknown, unknown, &budget, &budget, &budget].map(str::to_owned);
    let (chats, admin) =
        futures_util::future::join(futures_util::future::join_all(callers.map(timed)), admin).await;
    let mut answers = chats.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    answers.push(admin?);
    for (status, body, _) in &answers {
        anyhow::ensure!(*status == 503, "during the partition: {status} {body}");
    }
    let took: Vec<Duration> = answers.iter().map(|(_, _, took)| *took).collect();
    eprintln!("the refusals during the partition took {took:?}");
    // One of them may be the caller that tries the database again.
    let waited = took
        .iter()
        .filter(|took| **took >= CONNECT_TIMEOUT / 3)
        .count();
    anyhow::ensure!(
        waited <= 1,
        "{waited} of {} refusals waited for the database after a checkout had found it silent: {took:?}",
        took.len()
    );

    link.restore();
    // Served again once a caller has found the database back.
    on.until(&budget, 200, 503, "the budget token after the partition")
        .await?;
    on.gateway.stop().await?;
    Ok(())
}

/// A partition that begins while a query waits for its answer: the query
/// was sent and taken, the answer never comes. Past `query_timeout` the
/// caller gets 503 and the connection is closed, so the next caller gets
/// a fresh one once the link is back. Before, the caller (an admin request
/// here; the usage writer alike) waited until TCP gave up on the
/// connection: minutes to hours on a real network.
#[actix_rt::test]
async fn a_query_caught_by_a_partition_is_given_up_after_query_timeout() -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
    let (on, link) = start_behind_link(
        Duration::from_secs(600),
        Duration::from_secs(3),
        |settings| {
            settings.database.query_timeout = QUERY_TIMEOUT;
            // No poll: the admin read is the only reader of the tokens table.
            settings.database.sync_interval = Duration::ZERO;
            Ok(())
        },
    )
    .await?;
    anyhow::ensure!(on.admin_status("/admin/tokens").await? == 200, "before");

    // Another session holds the tokens table, so that the gateway's read
    // of it waits in the server until the partition has begun.
    let mut holder = AsyncPgConnection::establish(&on.pg.url()).await?;
    diesel::sql_query("BEGIN").execute(&mut holder).await?;
    diesel::sql_query("LOCK TABLE gateway_tokens IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await?;
    let started = Instant::now();
    // The admin client waits up to 30 s for an answer.
    let read = actix_rt::spawn({
        let admin = on.admin.clone();
        async move {
            let (status, _) = admin.call(Method::GET, "/admin/tokens", None).await?;
            anyhow::Ok(status.as_u16())
        }
    });
    // Wait until the server has the gateway's read waiting on the lock.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: Vec<Waiting> = diesel::sql_query(
            // pg_locks, not pg_stat_activity: a statement new to its
            // connection waits while it is parsed, before the activity view
            // shows its text.
            "SELECT count(*) AS waiting FROM pg_locks \
             WHERE NOT granted AND relation = 'gateway_tokens'::regclass",
        )
        .load(&mut holder)
        .await?;
        if waiting.iter().any(|row| row.waiting > 0) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the read never reached the lock");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    link.cut();
    // The read completes in the server; its answer stays in the cut link.
    diesel::sql_query("COMMIT").execute(&mut holder).await?;

    let status = actix_rt::time::timeout(QUERY_TIMEOUT + Duration::from_secs(8), read)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer {:?} after the read began, with query_timeout {QUERY_TIMEOUT:?}",
                started.elapsed()
            )
        })???;
    eprintln!(
        "the read caught by the partition answered {status} after {:?}",
        started.elapsed()
    );
    anyhow::ensure!(status == 503, "the read caught by the partition: {status}");

    link.restore();
    // The abandoned connection is not handed out again: reads succeed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = on.admin_status("/admin/tokens").await?;
        if status == 200 {
            break;
        }
        anyhow::ensure!(status == 503, "after the partition: {status}");
        anyhow::ensure!(
            Instant::now() < deadline,
            "still 503 10 s after the partition healed"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    on.gateway.stop().await?;
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Waiting {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    waiting: i64,
}
