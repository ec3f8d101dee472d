//! Usage survives the process: `kill -9` of the real binary under load, and
//! with PostgreSQL down, and again while the next start replays its
//! journal. Every request a client saw answered whole has exactly one row.
//! A second instance pointed at a running one's journal refuses to start.

pub mod common;

use anyhow::Context;
use common::db::TestDb;
use common::load::{Load, compare};
use common::pg::PrivatePostgres;
use common::process::{GatewayProcess, free_port};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use mock_upstream::MockUpstream;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use switchyard::config::{Backend, DatabaseSettings};

on_both_backends!(kill_9_under_load_loses_no_row_and_stores_none_twice);

const MASTER: &str = "crash-test-master-key-0123456789abcdef";
const CLIENTS: usize = 16;

fn write_config(
    dir: &Path,
    port: u16,
    db_url: &str,
    mock: &MockUpstream,
    extra: &str,
) -> anyhow::Result<PathBuf> {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
workers = 2
shutdown_timeout = "10s"
[database]
url = "{db_url}"
connect_timeout = "1s"
[admin]
master_key = "{MASTER}"
[logging]
level = "warning"
[upstream]
model_refresh_interval = "0s"
[[providers]]
name = "mock"
kind = "openai-compatible"
base_url = "{base}"
keys = ["ok-1", "ok-2"]
models = ["mock-gpt"]
{extra}
"#,
            base = mock.base_url(),
        ),
    )?;
    Ok(config)
}

/// Every stored row's request id.
async fn row_ids(settings: &DatabaseSettings) -> anyhow::Result<Vec<String>> {
    let db = switchyard::db::connect(settings).await?;
    Ok(db
        .list_request_logs(10_000_000, 0)
        .await?
        .into_iter()
        .map(|row| row.request_id)
        .collect())
}

/// Polls until every answered id has a row (a restarted gateway replays its
/// journal in the background).
async fn wait_for_rows(settings: &DatabaseSettings, answered: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (missing, _) = compare(answered, &row_ids(settings).await?);
        if missing.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {} answered requests have no row: {:?}",
            missing.len(),
            answered.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops a gateway cleanly and checks the rows against what was answered.
async fn check_rows(
    mut gateway: GatewayProcess,
    settings: &DatabaseSettings,
    answered: &[String],
) -> anyhow::Result<usize> {
    wait_for_rows(settings, answered).await?;
    gateway.signal("TERM")?;
    anyhow::ensure!(
        gateway.wait_exit(Duration::from_secs(30)).await?.success(),
        "the gateway did not stop cleanly"
    );
    let rows = row_ids(settings).await?;
    let (missing, duplicated) = compare(answered, &rows);
    anyhow::ensure!(missing.is_empty(), "missing: {missing:?}");
    anyhow::ensure!(duplicated.is_empty(), "stored twice: {duplicated:?}");
    // Rows beyond the answered ones: requests in flight at the kill, whose
    // answer the client never got whole (at most one per client).
    let extra = rows.len() - answered.len();
    anyhow::ensure!(extra <= CLIENTS, "{extra} rows nobody was answered for");
    Ok(extra)
}

/// SIGKILL mid-load, restart: every answered request has one row, none two.
async fn kill_9_under_load_loses_no_row_and_stores_none_twice(
    backend: Backend,
) -> anyhow::Result<()> {
    let mock = MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let db = TestDb::new(backend).await?;
    let port = free_port()?;
    let config = write_config(dir.path(), port, &db.settings.url, &mock, "")?;
    let mut gateway = GatewayProcess::start(dir.path(), &config, port).await?;
    let token = gateway
        .admin_client(MASTER)
        .create_token(json!({ "name": "load" }))
        .await?
        .token;

    let load = Load::start(&gateway.url, &token, CLIENTS);
    load.wait_for(1_500, Duration::from_secs(120)).await?;
    gateway.signal("KILL")?;
    gateway.wait_exit(Duration::from_secs(10)).await?;
    let answered = load.stop().await;
    let before_restart = row_ids(&db.settings).await?.len();

    let gateway = GatewayProcess::start(dir.path(), &config, port).await?;
    let extra = check_rows(gateway, &db.settings, &answered).await?;
    eprintln!(
        "{backend:?}: {} answered, {before_restart} rows when killed, all stored once after the restart ({extra} more in flight)",
        answered.len()
    );
    Ok(())
}

/// Two instances of one PostgreSQL deployment on one machine with one
/// `usage.journal_dir` (the same settings file): the second would replay
/// and delete the segment the first is still appending to, losing what the
/// first writes after. It refuses to start instead, naming the directory
/// and the holder, and leaves the journal alone. Once the holder is killed
/// (`kill -9`: no clean-up of its own) the claim is gone, and the next
/// start stores every answered request once.
#[actix_rt::test]
async fn a_second_instance_on_a_running_journal_refuses_to_start() -> anyhow::Result<()> {
    let mock = MockUpstream::start()?;
    let db = TestDb::new(Backend::Postgres).await?;
    let shared = tempfile::tempdir()?;
    let journal = shared.path().join("usage-journal");
    // Instances of one deployment share the secret (docs/deploy.md).
    let journal_setting = format!(
        "journal_dir = \"{}\"\n[security]\nsecret_key = \"crash-test-secret-0123456789abcdef\"",
        journal.display()
    );
    // The first keeps its records in the journal (no flush for 10 min).
    let first_dir = tempfile::tempdir()?;
    let first_port = free_port()?;
    let first_config = write_config(
        first_dir.path(),
        first_port,
        &db.settings.url,
        &mock,
        &format!(
            "[usage]\nflush_interval = \"10m\"\nflush_max_records = 100000\n{journal_setting}\n"
        ),
    )?;
    let mut first = GatewayProcess::start(first_dir.path(), &first_config, first_port).await?;
    let token = first
        .admin_client(MASTER)
        .create_token(json!({ "name": "load" }))
        .await?
        .token;
    let load = Load::start(&first.url, &token, 2);
    load.wait_for(50, Duration::from_secs(60)).await?;

    let second_dir = tempfile::tempdir()?;
    let second_port = free_port()?;
    let second_config = write_config(
        second_dir.path(),
        second_port,
        &db.settings.url,
        &mock,
        &format!("[usage]\n{journal_setting}\n"),
    )?;
    let refused = match GatewayProcess::start(second_dir.path(), &second_config, second_port).await
    {
        Ok(_) => anyhow::bail!("a second gateway started on a running gateway's usage journal"),
        Err(error) => error.to_string(),
    };
    let expected = format!(
        "the usage journal {} is in use by another running gateway (process {})",
        journal.display(),
        first.child.id()
    );
    anyhow::ensure!(refused.contains(&expected), "{refused}");
    anyhow::ensure!(
        row_ids(&db.settings).await?.is_empty(),
        "the refused instance wrote rows from the first one's journal"
    );

    let at_refusal = load.answered_count();
    load.wait_for(at_refusal + 50, Duration::from_secs(60))
        .await
        .context("the first instance must go on serving")?;
    first.signal("KILL")?;
    first.wait_exit(Duration::from_secs(10)).await?;
    let answered = load.stop().await;

    let second = GatewayProcess::start(second_dir.path(), &second_config, second_port).await?;
    let extra = check_rows(second, &db.settings, &answered).await?;
    eprintln!(
        "{} answered by the first instance, all stored once by the second ({extra} more in flight)",
        answered.len()
    );
    Ok(())
}

/// PostgreSQL goes down under load (answers go on; records wait in the
/// journal), the gateway is killed; PostgreSQL comes back, and the next
/// gateway is killed in the middle of replaying the backlog (a trigger
/// holds one of its batches); a third start finishes the job: every
/// answered request has one row, none two.
#[actix_rt::test]
async fn kill_9_during_an_outage_and_during_replay_loses_nothing() -> anyhow::Result<()> {
    let pg = PrivatePostgres::start()?;
    let mock = MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let settings = DatabaseSettings {
        url: pg.url(),
        max_connections: 2,
        connect_timeout: Duration::from_secs(5),
        sync_interval: Duration::from_secs(1),
        token_cache_ttl: Duration::from_secs(30),
        stale_token_grace: Duration::from_secs(600),
        query_timeout: Duration::from_secs(30),
    };
    let port = free_port()?;
    // Small batches, so the replay takes several transactions.
    let config = write_config(
        dir.path(),
        port,
        &pg.url(),
        &mock,
        "[usage]\nflush_max_records = 100\nmax_buffered_records = 300\n",
    )?;
    let mut gateway = GatewayProcess::start(dir.path(), &config, port).await?;
    let token = gateway
        .admin_client(MASTER)
        .create_token(json!({ "name": "load" }))
        .await?
        .token;
    let load = Load::start(&gateway.url, &token, CLIENTS);
    load.wait_for(300, Duration::from_secs(60)).await?;

    pg.stop_server("immediate")?;
    let at_outage = load.answered_count();
    load.wait_for(at_outage + 2_000, Duration::from_secs(120))
        .await
        .context("answers must go on while the database is down")?;
    gateway.signal("KILL")?;
    gateway.wait_exit(Duration::from_secs(10)).await?;
    let answered = load.stop().await;
    pg.start_server()?;
    let before_replay = row_ids(&settings).await?.len();
    anyhow::ensure!(
        before_replay + 1_000 < answered.len(),
        "the outage left no backlog ({before_replay} rows, {} answered)",
        answered.len()
    );

    // Hold the replay in its middle: inserting this record waits for an
    // advisory lock the test holds.
    let blocker = answered
        .get(answered.len() - 500)
        .context("answered")?
        .clone();
    let mut holder = AsyncPgConnection::establish(&pg.url()).await?;
    diesel::sql_query("SELECT pg_advisory_lock(4242)")
        .execute(&mut holder)
        .await?;
    let mut admin = AsyncPgConnection::establish(&pg.url()).await?;
    diesel::sql_query(format!(
        "CREATE FUNCTION hold_replay() RETURNS trigger AS $$ BEGIN \
         IF NEW.request_id = '{blocker}' THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF; \
         RETURN NEW; END $$ LANGUAGE plpgsql"
    ))
    .execute(&mut admin)
    .await?;
    diesel::sql_query(
        "CREATE TRIGGER hold_replay BEFORE INSERT ON request_logs \
         FOR EACH ROW EXECUTE FUNCTION hold_replay()",
    )
    .execute(&mut admin)
    .await?;

    let mut gateway = GatewayProcess::start(dir.path(), &config, port).await?;
    // The replay has committed the batches before the held one and waits.
    wait_for_blocked_insert(&mut admin).await?;
    let mid_replay = row_ids(&settings).await?.len();
    gateway.signal("KILL")?;
    gateway.wait_exit(Duration::from_secs(10)).await?;
    anyhow::ensure!(
        before_replay < mid_replay && mid_replay < answered.len(),
        "not killed mid-replay: {before_replay} rows before, {mid_replay} at the kill, {} answered",
        answered.len()
    );
    // The killed gateway's held transaction does not know it is orphaned
    // until it next talks to its client; end it as TCP keepalive would.
    diesel::sql_query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'",
    )
    .execute(&mut admin)
    .await?;
    diesel::sql_query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut holder)
        .await?;
    diesel::sql_query("DROP TRIGGER hold_replay ON request_logs")
        .execute(&mut admin)
        .await?;

    let gateway = GatewayProcess::start(dir.path(), &config, port).await?;
    let extra = check_rows(gateway, &settings, &answered).await?;
    eprintln!(
        "outage: {} answered ({at_outage} before PostgreSQL went down), {before_replay} rows after the first kill, {mid_replay} when killed mid-replay, all stored once after the third start ({extra} more in flight)",
        answered.len()
    );
    Ok(())
}

/// Waits until some session waits on the advisory lock (the held insert).
async fn wait_for_blocked_insert(admin: &mut AsyncPgConnection) -> anyhow::Result<()> {
    use diesel::sql_types::BigInt;
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = BigInt)]
        waiting: i64,
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = diesel::sql_query(
            "SELECT count(*) AS waiting FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'",
        )
        .load::<Waiting>(&mut *admin)
        .await?;
        if rows.as_slice().first().is_some_and(|row| row.waiting > 0) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the replay never reached the held batch"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}
