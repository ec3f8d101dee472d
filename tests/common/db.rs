//! A fresh, real database per test: SQLite in a temporary directory, or a
//! PostgreSQL schema of its own (from `TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`) that is dropped with the fixture.
//! An unreachable PostgreSQL fails the test: nothing is skipped.

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use switchyard::config::{Backend, DatabaseSettings};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Where one test's database lives; dropping it removes the database.
pub struct TestDb {
    pub settings: DatabaseSettings,
    /// Held so that the SQLite file lives as long as the test.
    _sqlite_dir: Option<tempfile::TempDir>,
    /// Drops the PostgreSQL schema.
    _pg_schema: Option<PgSchema>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> anyhow::Result<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                // A subdirectory that does not exist yet: connect must create it.
                let path = dir.path().join("data").join("switchyard.db");
                let url = format!("sqlite://{}", path.display());
                Ok(TestDb {
                    settings: settings(url),
                    _sqlite_dir: Some(dir),
                    _pg_schema: None,
                })
            }
            Backend::Postgres => {
                let base = std::env::var("TEST_DATABASE_URL")
                    .unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
                let name = format!(
                    "sy_test_{}_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed),
                    switchyard::clock::system_now_ms()
                );
                let mut conn = AsyncPgConnection::establish(&base)
                    .await
                    .with_context(|| format!("PostgreSQL at {base} is required for these tests"))?;
                conn.batch_execute(&format!("CREATE SCHEMA {name}")).await?;
                let separator = if base.contains('?') { '&' } else { '?' };
                // `-c search_path=<schema>`, percent-encoded.
                let url = format!("{base}{separator}options=-c%20search_path%3D{name}");
                Ok(TestDb {
                    settings: settings(url),
                    _sqlite_dir: None,
                    _pg_schema: Some(PgSchema { base, name }),
                })
            }
        }
    }
}

impl TestDb {
    /// Runs one SQL statement on a connection of its own (outside any
    /// gateway's pool); returns the affected rows. For moving a row's clock
    /// (an expiry) where waiting would be the only other way.
    pub async fn execute(&self, sql: &str) -> anyhow::Result<usize> {
        use diesel_async::RunQueryDsl;
        match self.settings.backend() {
            Backend::Sqlite => {
                let mut conn = diesel_async::sync_connection_wrapper::SyncConnectionWrapper::<
                    diesel::SqliteConnection,
                >::establish(self.settings.sqlite_path())
                .await?;
                conn.batch_execute("PRAGMA busy_timeout=5000;").await?;
                Ok(diesel::sql_query(sql).execute(&mut conn).await?)
            }
            Backend::Postgres => {
                let mut conn = AsyncPgConnection::establish(&self.settings.url).await?;
                Ok(diesel::sql_query(sql).execute(&mut conn).await?)
            }
        }
    }
}

fn settings(url: String) -> DatabaseSettings {
    DatabaseSettings {
        url,
        max_connections: 4,
        connect_timeout: Duration::from_secs(10),
        sync_interval: Duration::from_secs(1),
        token_cache_ttl: Duration::from_secs(30),
        stale_token_grace: Duration::from_secs(600),
        query_timeout: Duration::from_secs(30),
    }
}

struct PgSchema {
    base: String,
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let base = self.base.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        // Drop may run inside the test's runtime, where blocking on another
        // runtime is not allowed: use a thread of its own.
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = AsyncPgConnection::establish(&base).await?;
                conn.batch_execute(&sql).await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}
