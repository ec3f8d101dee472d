//! Storage: the SQLite/PostgreSQL pools, the backend choice, migrations, and
//! one query function per operation (next to its model in the submodules).
//!
//! Policy:
//! - SQLite (the default) is `SyncConnectionWrapper<SqliteConnection>`,
//!   PostgreSQL is `AsyncPgConnection`; both sit in a deadpool pool. SQLite
//!   connections get their PRAGMAs (WAL, `busy_timeout`, `foreign_keys`,
//!   `synchronous=NORMAL`) when created, and the pool recycles them with
//!   [`RecyclingMethod::Fast`] (no check query on every checkout).
//!   SQLite itself runs in multi-thread mode (no per-connection mutex, which
//!   the pool makes needless) without memory statistics
//!   ([`configure_sqlite_library`]).
//! - Every query runs as a task on a runtime the [`Db`] owns (multi-threaded,
//!   two workers, threads named `switchyard-db`), and the caller awaits its
//!   `JoinHandle`. Dropping the caller's future (a timeout, a `select!`, a
//!   client that went away) therefore never drops the query itself: with
//!   `SyncConnectionWrapper` a dropped in-flight query panics on actix's
//!   single-threaded runtimes (DESIGN.md section 8). The query runs to the end
//!   and its result is discarded. Dropping the last `Db` handle shuts the
//!   runtime down and abandons queries still running: whoever writes (the
//!   usage actor) awaits its last flush before letting go of the `Db`.
//! - Pool checkout (waiting for a free connection, or creating one) is bounded
//!   by `database.connect_timeout`, with a tokio timer on the database runtime
//!   (deadpool's own timeouts would need its tokio feature); queries themselves
//!   are not timed out. PostgreSQL connections keep deadpool's verified
//!   recycling (a `SELECT 1` at checkout, to notice dropped connections).
//! - Migrations are embedded per backend and run before the pool serves, on a
//!   blocking thread of the database runtime (a plain `SqliteConnection`, or
//!   `AsyncConnectionWrapper<AsyncPgConnection>`), never through
//!   `AsyncMigrationHarness` on an actix thread.
//! - Query functions return [`DbError`]; a unique violation becomes
//!   [`DbError::Conflict`], a missing row [`DbError::NotFound`] (lookups that
//!   may miss return `Option` instead).

use crate::clock::{Clock, SystemClock};
use crate::config::{Backend, DatabaseSettings};
use diesel::connection::SimpleConnection;
use diesel::result::{ConnectionError, DatabaseErrorKind};
use diesel::{Connection, IntoSql, SqliteConnection};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Runs one query body on the active backend, as a task on the database runtime.
///
/// `$conn` is bound to `&mut SqliteConn` in one arm and `&mut AsyncPgConnection`
/// in the other. Diesel's query types depend on the backend, so a single closure
/// cannot serve both; expanding the same body once per backend is how the query
/// is written once. The body runs in a spawned task: everything it uses must be
/// owned (clone arguments before the macro). It evaluates to a
/// `diesel::QueryResult<T>`; `?` inside it propagates as a [`DbError`].
macro_rules! run_query {
    ($db:expr, |$conn:ident| $body:expr) => {
        run_query!(pools: $db.inner.pools.clone(), $db, |$conn| $body)
    };
    (pools: $pools:expr, $db:expr, |$conn:ident| $body:expr) => {{
        let pools: $crate::db::Pools = $pools;
        let timeout = $db.inner.checkout_timeout;
        let query_timeout = $db.inner.query_timeout;
        let reach = $db.inner.reachability.clone();
        $db.spawn(async move {
            match pools {
                $crate::db::Pools::Sqlite(pool) => {
                    let busy = || $crate::db::all_in_use(&pool);
                    let mut obj = $crate::db::checkout(&reach, timeout, busy, pool.get()).await?;
                    let $conn: &mut $crate::db::SqliteConn = &mut obj;
                    let result: ::diesel::QueryResult<_> = $body;
                    result.map_err($crate::db::DbError::from)
                }
                $crate::db::Pools::Postgres(pool) => {
                    let busy = || $crate::db::all_in_use(&pool);
                    let mut obj = $crate::db::checkout(&reach, timeout, busy, pool.get()).await?;
                    let run = async {
                        let $conn: &mut ::diesel_async::AsyncPgConnection = &mut obj;
                        let result: ::diesel::QueryResult<_> = $body;
                        result.map_err($crate::db::DbError::from)
                    };
                    match ::tokio::time::timeout(query_timeout, run).await {
                        Ok(result) => result,
                        Err(_) => Err($crate::db::abandon_connection(obj, query_timeout)),
                    }
                }
            }
        })
        .await
    }};
}

/// [`run_query!`] for a body of several reads that must agree, such as a
/// page of rows and the count of all that match: the body runs in one
/// transaction started by [`SnapshotRead::begin_snapshot`], so every
/// statement in it sees the same snapshot. Without it a usage batch
/// committed between the page and the count made an answer like
/// `{"data": [], "total": 1}`.
macro_rules! run_snapshot {
    ($db:expr, |$conn:ident| $body:expr) => {
        run_query!($db, |$conn| {
            ::diesel_async::AsyncConnection::transaction($conn, async |$conn| {
                $crate::db::SnapshotRead::begin_snapshot($conn).await?;
                $body
            })
            .await
        })
    };
}

/// How a transaction of [`run_snapshot!`] reads one snapshot.
pub(crate) trait SnapshotRead {
    /// Run first in the transaction.
    async fn begin_snapshot(&mut self) -> diesel::QueryResult<()>;
}

impl SnapshotRead for SqliteConn {
    /// Nothing: SQLite's deferred `BEGIN` takes its WAL snapshot at the
    /// first read and keeps it to the end.
    async fn begin_snapshot(&mut self) -> diesel::QueryResult<()> {
        Ok(())
    }
}

impl SnapshotRead for AsyncPgConnection {
    /// Under PostgreSQL's default, `READ COMMITTED`, each statement takes
    /// a snapshot of its own; `REPEATABLE READ` keeps the first one.
    async fn begin_snapshot(&mut self) -> diesel::QueryResult<()> {
        self.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
    }
}

pub mod admin;
pub mod billing;
mod cached_sql;
pub mod changes;
pub mod limit_shares;
pub mod logs;
pub mod metrics;
pub mod oplog;
pub mod prices;
pub mod providers;
mod reachability;
pub mod redirects;
pub mod reservations;
pub mod responses;
pub mod rollups;
pub mod schema;
pub mod system;
pub mod tokens;
pub mod usage;
pub mod users;

pub use admin::{AdminChallenge, AdminKey, AdminSession, NewAdminKey, NewAdminSession};
pub use billing::{BillingFilter, BillingRecord};
pub use oplog::{NewOperationLog, OperationLog, OperationLogFilter};
pub use prices::{ModelPrice, UnpricedModel};
pub use providers::{NewProvider, NewProviderKey, Provider, ProviderKey};
pub(crate) use reachability::{Reachability, checkout};
pub use redirects::ModelRedirect;
pub use tokens::{GatewayToken, NewToken};
pub use usage::{RequestLog, UsageDaily};
pub use users::{NewUser, User, UserChanges, UserShown};

/// The SQLite connection type: diesel's sync connection run on blocking threads.
pub(crate) type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Run on every new SQLite connection. `busy_timeout` makes a writer wait for
/// the lock instead of failing with SQLITE_BUSY; WAL lets readers proceed next
/// to the usage writer; `synchronous=NORMAL` is durable enough in WAL mode.
/// `cache_size=-512`: each connection's own page cache holds at most 512 KiB
/// (SQLite's default is 2 MB per connection). The file's pages stay in the
/// kernel's page cache either way, a miss costs one `pread`, and the usage
/// writer's appends touch only the right edge of each B-tree; with four
/// connections busy the default cost ~5 MB of the gateway's peak RSS in the
/// bench (bench/README.md).
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; \
     PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-512;";

/// Which idle connection a checkout gets: the one used last. Each connection
/// keeps its own prepared statements (the usage writer's multi-row INSERTs
/// are a few hundred KB each) and, on SQLite, its own page cache; deadpool's
/// default (first in, first out) hands out every connection in turn, so all
/// of them filled both. Last in, first out keeps the work on as few
/// connections as the concurrency needs: peak RSS in bench/README.md.
const POOL_QUEUE_MODE: deadpool::managed::QueueMode = deadpool::managed::QueueMode::Lifo;

/// Worker threads of the database runtime. The work there is I/O-bound
/// (PostgreSQL) or runs on the runtime's blocking threads (SQLite).
const DB_WORKER_THREADS: usize = 2;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection: checkout timed out, connecting failed, the pool is closed.
    #[error("database unavailable: {0}")]
    Pool(String),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[source] diesel::result::Error),
    /// Applying or reverting migrations failed.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The row does not exist.
    #[error("not found")]
    NotFound,
    /// A unique constraint was violated (the message names it).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database runtime failed to start or a query task panicked.
    #[error("database runtime: {0}")]
    Runtime(String),
}

impl DbError {
    /// The database could not be reached or could not serve the query now
    /// (connection lost, pool exhausted, locked, shutting down), as opposed
    /// to refusing this query for what it asked. The first kind is retried
    /// and answered 503; the second is the query's own fault.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::Error as E;
        match self {
            DbError::Pool(_) | DbError::Runtime(_) => true,
            DbError::Query(E::BrokenTransactionManager) => true,
            DbError::Query(E::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::ClosedConnection
                        | DatabaseErrorKind::UnableToSendCommand
                        | DatabaseErrorKind::SerializationFailure
                ) || {
                    let message = info.message().to_ascii_lowercase();
                    TRANSIENT_MESSAGES
                        .iter()
                        .any(|transient| message.contains(transient))
                }
            }
            DbError::Query(_)
            | DbError::Migration(_)
            | DbError::NotFound
            | DbError::Conflict(_) => false,
        }
    }
}

/// Words in a database error that mean "not now" rather than "not this":
/// SQLite's busy/locked and I/O errors, PostgreSQL's shutdown, recovery,
/// deadlock, timeout and connection messages.
const TRANSIENT_MESSAGES: [&str; 12] = [
    "locked",
    "busy",
    "deadlock",
    "timeout",
    "timed out",
    "connection",
    "terminating",
    "shutting down",
    "recovery",
    "read-only",
    "disk",
    "i/o",
];

impl From<diesel::result::Error> for DbError {
    fn from(err: diesel::result::Error) -> Self {
        match err {
            diesel::result::Error::NotFound => DbError::NotFound,
            diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                DbError::Conflict(info.message().to_owned())
            }
            other => DbError::Query(other),
        }
    }
}

/// The pool of the active backend (cheap to clone: deadpool pools are `Arc`s).
#[derive(Clone)]
pub(crate) enum Pools {
    Sqlite(Pool<SqliteConn>),
    Postgres(Pool<AsyncPgConnection>),
}

/// The runtime that runs all database work. Its last drop shuts it down in the
/// background, which unlike a plain drop is allowed inside an async context
/// (the `Db` is typically dropped on an actix or tokio thread).
struct DbRuntime(Option<tokio::runtime::Runtime>);

impl DbRuntime {
    fn new() -> Result<Self, DbError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(DB_WORKER_THREADS)
            .thread_name("switchyard-db")
            .enable_all()
            .build()
            .map(|rt| DbRuntime(Some(rt)))
            .map_err(|err| DbError::Runtime(format!("cannot start the database runtime: {err}")))
    }

    fn handle(&self) -> Result<&tokio::runtime::Handle, DbError> {
        self.0
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .ok_or_else(|| DbError::Runtime("the database runtime is shut down".to_owned()))
    }

    /// Runs `fut` on this runtime and waits for it; dropping the returned
    /// future does not cancel `fut`.
    fn spawn<T, F>(&self, fut: F) -> impl Future<Output = Result<T, DbError>> + use<T, F>
    where
        F: Future<Output = Result<T, DbError>> + Send + 'static,
        T: Send + 'static,
    {
        let handle = self.handle().map(|h| h.spawn(fut));
        async move {
            match handle?.await {
                Ok(result) => result,
                Err(err) => Err(DbError::Runtime(format!("database task failed: {err}"))),
            }
        }
    }

    /// Runs blocking `f` on this runtime's blocking threads and waits for it.
    async fn spawn_blocking<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce() -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        match self.handle()?.spawn_blocking(f).await {
            Ok(result) => result,
            Err(err) => Err(DbError::Runtime(format!("database task failed: {err}"))),
        }
    }
}

impl Drop for DbRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

struct Inner {
    // Field order is drop order: the pools (and their connections) go before the runtime.
    pools: Pools,
    /// The usage writer's own connection on SQLite (a pool of one, next to
    /// `pools`); the same pool as `pools` on PostgreSQL. Its batches'
    /// statements (multi-row INSERTs of every fixed size, the rollup
    /// upserts) are prepared once, on this connection only, instead of on
    /// each pooled one that a batch happened to take (bench/README.md);
    /// it also keeps the request logs' index pages in its cache. One batch
    /// is written at a time, so one connection is never waited for.
    usage_pools: Pools,
    backend: Backend,
    checkout_timeout: Duration,
    /// How long a PostgreSQL query (or transaction) may take once it has a
    /// connection ([`abandon_connection`]).
    query_timeout: Duration,
    reachability: Arc<Reachability>,
    /// SQLite has one writer at a time; writers that find the lock taken
    /// sleep in SQLite's busy handler (in steps up to 100 ms), which under
    /// load turns into long tails. The hot writers (reservations, usage
    /// batches) queue here instead, in order, without sleeping.
    sqlite_writer: tokio::sync::Mutex<()>,
    runtime: DbRuntime,
    /// See [`Db::instance`].
    instance: String,
}

/// A handle on the database: a connection pool for the configured backend and
/// the runtime that runs its queries, and the clock its time columns are
/// written with. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
    /// Where `created_at`, `updated_at`, `revoked_at`... come from: the
    /// gateway's one wall clock (`crate::clock`), so a test that moves time
    /// moves the stored times with it. The system clock unless
    /// [`Db::with_clock`] says otherwise.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

/// Waits for a pooled connection for at most `timeout` (deadpool has no timer
/// of its own here: it would need its tokio feature). Runs on the database
/// runtime, so giving up on a connection being created is safe.
pub(crate) async fn checkout_timeout<T, E: std::fmt::Display>(
    timeout: Duration,
    get: impl Future<Output = Result<T, E>>,
) -> Result<T, DbError> {
    timed_checkout(timeout, get)
        .await
        .map_err(|failure| failure.error)
}

/// Why [`timed_checkout`] got no connection.
pub(crate) struct CheckoutFailure {
    pub error: DbError,
    /// No answer within the timeout (rather than an error).
    pub timed_out: bool,
}

/// [`checkout_timeout`], saying whether it failed by the timeout (what
/// [`reachability::checkout`] tells a silent database by).
pub(crate) async fn timed_checkout<T, E: std::fmt::Display>(
    timeout: Duration,
    get: impl Future<Output = Result<T, E>>,
) -> Result<T, CheckoutFailure> {
    match tokio::time::timeout(timeout, get).await {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(err)) => Err(CheckoutFailure {
            error: DbError::Pool(err.to_string()),
            timed_out: false,
        }),
        Err(_) => Err(CheckoutFailure {
            error: DbError::Pool(format!("no connection within {} ms", timeout.as_millis())),
            timed_out: true,
        }),
    }
}

/// A PostgreSQL connection whose query got no answer within `timeout`
/// ([`run_query!`]): taken out of its pool and closed (the server rolls back
/// whatever it had begun), never handed to the next caller with an answer
/// still owed. A connection gone silent (a network partition) otherwise held
/// its caller until TCP gave up, minutes to hours later, and the usage
/// writer with it (`tests/outage.rs`).
pub(crate) fn abandon_connection<M: deadpool::managed::Manager>(
    connection: deadpool::managed::Object<M>,
    timeout: Duration,
) -> DbError {
    drop(deadpool::managed::Object::take(connection));
    DbError::Pool(format!(
        "the database did not answer within {} ms",
        timeout.as_millis()
    ))
}

/// Whether every connection `pool` may open is open and in use: then a
/// checkout that timed out was waiting its turn, and says nothing of the
/// database ([`reachability`]).
pub(crate) fn all_in_use<M: deadpool::managed::Manager>(pool: &deadpool::managed::Pool<M>) -> bool {
    let status = pool.status();
    status.size >= status.max_size && status.available == 0
}

/// Creates the database's directory, and the database file readable only
/// by its owner: it holds encrypted provider keys, token hashes and usage,
/// and SQLite gives its WAL, shared-memory and journal files the mode of
/// the database file. Files an earlier release created with the process's
/// umask are narrowed to 0600 too.
fn prepare_sqlite_files(path: &str) -> Result<(), DbError> {
    let file_error =
        |what: &str, err: std::io::Error| DbError::Pool(format!("cannot {what} {path}: {err}"));
    if path == ":memory:" || path.starts_with("file:") {
        return Ok(());
    }
    let database = std::path::Path::new(path);
    if let Some(dir) = database.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| {
            DbError::Pool(format!("cannot create directory {}: {err}", dir.display()))
        })?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(database)
        {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(file_error("create", err)),
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = format!("{path}{suffix}");
            match std::fs::metadata(&file) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                        .map_err(|err| file_error("restrict the mode of", err))?;
                }
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(file_error("inspect", err)),
            }
        }
    }
    Ok(())
}

/// Sets SQLite's process-wide options once, before its first connection:
/// - multi-thread mode instead of serialized: a connection is only ever used
///   by one thread at a time (the pool hands it out, `SyncConnectionWrapper`
///   holds it under a lock), so SQLite's own per-connection mutex, taken on
///   every bind and step, only cost CPU (a tenth of the usage writer's);
/// - no memory statistics, which take a global mutex on every allocation;
/// - statement journals kept in memory: a multi-row INSERT inside a
///   transaction (the usage writer's) keeps the pages it changes in a
///   statement journal, spilled to a temporary file past 64 KiB. Under load
///   the usage batches spilled: a file created, written and deleted each time,
///   three quarters of the database threads' `pwrite`s (bench/README.md).
///   The journal lives only while its statement runs.
///
/// SQLite accepts these only before it is initialised; in a process that
/// opened a connection earlier (a test, say) they are refused and it stays in
/// its safe default, serialized mode.
fn configure_sqlite_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` is documented safe to call before
        // `sqlite3_initialize` (and returns SQLITE_MISUSE after it, changing
        // nothing); each option takes the arguments given here. Multi-thread
        // mode is sound because no connection is shared between threads at
        // once (see above).
        unsafe {
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD);
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0);
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_STMTJRNL_SPILL, -1);
        }
    });
}

/// Opens a new pooled SQLite connection and sets its PRAGMAs.
/// Run on every new PostgreSQL connection: names the instance, so the
/// change feed's triggers record which instance made a change (the setting
/// is a custom one, not `application_name`, which operators may set).
fn postgres_setup(
    url: &str,
    instance: String,
) -> BoxFuture<'_, diesel::ConnectionResult<AsyncPgConnection>> {
    async move {
        let mut conn = AsyncPgConnection::establish(url).await?;
        // `instance` is hex made here, never input: safe to quote inline.
        conn.batch_execute(&format!("SET switchyard.instance = '{instance}'"))
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
        Ok(conn)
    }
    .boxed()
}

fn sqlite_setup(url: &str) -> BoxFuture<'_, diesel::ConnectionResult<SqliteConn>> {
    async move {
        let mut conn = SqliteConn::establish(url).await?;
        conn.batch_execute(SQLITE_PRAGMAS)
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
        Ok(conn)
    }
    .boxed()
}

fn applied_versions(
    result: diesel::migration::Result<Vec<diesel::migration::MigrationVersion<'static>>>,
) -> Result<Vec<String>, DbError> {
    result
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|err| DbError::Migration(err.to_string()))
}

fn revert_last<C, DB>(
    conn: &mut C,
    migrations: EmbeddedMigrations,
) -> Result<Option<String>, DbError>
where
    C: MigrationHarness<DB>,
    DB: diesel::backend::Backend,
{
    let applied = conn
        .applied_migrations()
        .map_err(|err| DbError::Migration(err.to_string()))?;
    if applied.is_empty() {
        return Ok(None);
    }
    conn.revert_last_migration(migrations)
        .map(|version| Some(version.to_string()))
        .map_err(|err| DbError::Migration(err.to_string()))
}

#[derive(Clone, Copy)]
enum MigrationOp {
    Run,
    Revert,
}

enum MigrationOutcome {
    Applied(Vec<String>),
    Reverted(Option<String>),
}

/// The PostgreSQL advisory lock key held while migrations run (one for the
/// whole database: "SwYdMigr" as bytes). Migrations are rare and short, so
/// serialising them across schemas of one database costs nothing.
pub const MIGRATION_LOCK_KEY: i64 = 0x5377_5964_4d69_6772;

/// The PostgreSQL advisory lock key held while an instance stores its
/// settings at start ("SwYdSeed" as bytes; see [`Db::lock_seeding`]).
pub const SEEDING_LOCK_KEY: i64 = 0x5377_5964_5365_6564;

/// Held while an instance stores what its settings declare at start (the
/// data key, the server id and first admin key, providers, keys, prices):
/// instances starting at once take turns instead of racing on the same
/// rows. Dropping it closes its connection, which releases the lock (as
/// PostgreSQL does if the process dies). Empty on SQLite.
pub struct SeedingLock {
    _conn: Option<AsyncPgConnection>,
}

/// `SELECT <function>(MIGRATION_LOCK_KEY)` on the migration connection.
fn advisory_lock(
    conn: &mut AsyncConnectionWrapper<AsyncPgConnection>,
    function: &str,
) -> Result<(), DbError> {
    diesel::RunQueryDsl::execute(
        diesel::sql_query(format!("SELECT {function}({MIGRATION_LOCK_KEY})")),
        conn,
    )
    .map(drop)
    .map_err(|err| DbError::Migration(format!("{function}: {err}")))
}

/// Runs a migration operation on `runtime`: the connection is made there (with
/// the connect timeout) and the synchronous migration harness runs on one of
/// its blocking threads.
async fn migrate(
    runtime: &DbRuntime,
    settings: &DatabaseSettings,
    op: MigrationOp,
) -> Result<MigrationOutcome, DbError> {
    match settings.backend() {
        Backend::Sqlite => {
            configure_sqlite_library();
            let path = settings.sqlite_path().to_owned();
            prepare_sqlite_files(&path)?;
            runtime
                .spawn_blocking(move || {
                    let mut conn = SqliteConnection::establish(&path)
                        .map_err(|err| DbError::Pool(err.to_string()))?;
                    conn.batch_execute(SQLITE_PRAGMAS)
                        .map_err(|err| DbError::Migration(err.to_string()))?;
                    match op {
                        MigrationOp::Run => applied_versions(
                            conn.run_pending_migrations(SQLITE_MIGRATIONS)
                                .map(|v| v.into_iter().map(|v| v.as_owned()).collect()),
                        )
                        .map(MigrationOutcome::Applied),
                        MigrationOp::Revert => revert_last(&mut conn, SQLITE_MIGRATIONS)
                            .map(MigrationOutcome::Reverted),
                    }
                })
                .await
        }
        Backend::Postgres => {
            let url = settings.url.clone();
            let timeout = settings.connect_timeout;
            // The connection's driver task must live on the database runtime.
            let conn = runtime
                .spawn(async move {
                    checkout_timeout(timeout, AsyncPgConnection::establish(&url)).await
                })
                .await?;
            runtime
                .spawn_blocking(move || {
                    // Blocks on the database runtime's handle: allowed on its blocking threads.
                    let mut conn: AsyncConnectionWrapper<AsyncPgConnection> =
                        AsyncConnectionWrapper::from(conn);
                    // Several instances starting at once on one database
                    // would each see the same migrations pending and run
                    // them concurrently (duplicate-object errors, or a
                    // half-applied schema). A session advisory lock on this
                    // connection serialises them: the first runs the
                    // migrations, the others wait, then find none pending.
                    // It is released below, and by PostgreSQL if the
                    // process dies with the connection.
                    advisory_lock(&mut conn, "pg_advisory_lock")?;
                    let outcome = match op {
                        MigrationOp::Run => applied_versions(
                            conn.run_pending_migrations(POSTGRES_MIGRATIONS)
                                .map(|v| v.into_iter().map(|v| v.as_owned()).collect()),
                        )
                        .map(MigrationOutcome::Applied),
                        MigrationOp::Revert => revert_last(&mut conn, POSTGRES_MIGRATIONS)
                            .map(MigrationOutcome::Reverted),
                    };
                    // A failed unlock is harmless: dropping the connection
                    // ends the session, which releases the lock.
                    let _ = advisory_lock(&mut conn, "pg_advisory_unlock");
                    outcome
                })
                .await
        }
    }
}

/// Applies pending migrations; returns the versions applied (empty when the
/// schema was up to date). For `switchyard migrate run`.
pub async fn migrate_run(settings: &DatabaseSettings) -> Result<Vec<String>, DbError> {
    let runtime = DbRuntime::new()?;
    match migrate(&runtime, settings, MigrationOp::Run).await? {
        MigrationOutcome::Applied(versions) => Ok(versions),
        MigrationOutcome::Reverted(_) => Err(DbError::Migration("unexpected outcome".to_owned())),
    }
}

/// Reverts the last applied migration; returns its version, or `None` when
/// none was applied. For `switchyard migrate revert`.
pub async fn migrate_revert(settings: &DatabaseSettings) -> Result<Option<String>, DbError> {
    let runtime = DbRuntime::new()?;
    match migrate(&runtime, settings, MigrationOp::Revert).await? {
        MigrationOutcome::Reverted(version) => Ok(version),
        MigrationOutcome::Applied(_) => Err(DbError::Migration("unexpected outcome".to_owned())),
    }
}

/// A pool of at most `max_size` SQLite connections, each set up by
/// [`sqlite_setup`].
fn sqlite_pool(settings: &DatabaseSettings, max_size: usize) -> Result<Pool<SqliteConn>, DbError> {
    let mut config = ManagerConfig::<SqliteConn>::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(sqlite_setup);
    let manager =
        AsyncDieselConnectionManager::<SqliteConn>::new_with_config(settings.sqlite_path(), config);
    Pool::builder(manager)
        .max_size(max_size)
        .queue_mode(POOL_QUEUE_MODE)
        .build()
        .map_err(|err| DbError::Pool(err.to_string()))
}

/// Connects to the configured database: applies pending migrations, then
/// builds the pools. Works from an actix system thread and from any tokio runtime.
pub async fn connect(settings: &DatabaseSettings) -> Result<Db, DbError> {
    let runtime = DbRuntime::new()?;
    // Random: instances on different hosts must not share it.
    let instance = format!("sy-{}", hex::encode(rand::random::<[u8; 8]>()));
    migrate(&runtime, settings, MigrationOp::Run).await?;
    let max_size = settings.max_connections.max(1);
    let (pools, usage_pools) = match settings.backend() {
        Backend::Sqlite => (
            Pools::Sqlite(sqlite_pool(settings, max_size)?),
            Pools::Sqlite(sqlite_pool(settings, 1)?),
        ),
        Backend::Postgres => {
            let mut config = ManagerConfig::<AsyncPgConnection>::default();
            let marked = instance.clone();
            config.custom_setup = Box::new(move |url| postgres_setup(url, marked.clone()));
            let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
                &settings.url,
                config,
            );
            let pools = Pools::Postgres(
                Pool::builder(manager)
                    .max_size(max_size)
                    .queue_mode(POOL_QUEUE_MODE)
                    .build()
                    .map_err(|err| DbError::Pool(err.to_string()))?,
            );
            (pools.clone(), pools)
        }
    };
    Ok(Db {
        inner: Arc::new(Inner {
            pools,
            usage_pools,
            backend: settings.backend(),
            checkout_timeout: settings.connect_timeout,
            query_timeout: settings.query_timeout_or_none(),
            reachability: Arc::default(),
            sqlite_writer: tokio::sync::Mutex::new(()),
            runtime,
            instance,
        }),
        clock: Arc::new(SystemClock),
    })
}

impl Db {
    /// The same database, its times written with `clock`.
    #[must_use]
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Db {
        Db {
            inner: self.inner.clone(),
            clock,
        }
    }

    /// Unix time in milliseconds (the unit of every time column), from the
    /// database's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The clock this handle writes times with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Queues a hot SQLite writer behind the others (see `Inner`); nothing
    /// to wait for on PostgreSQL, whose row locks serialise what must be.
    pub(crate) async fn sqlite_write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.inner.backend {
            Backend::Sqlite => Some(self.inner.sqlite_writer.lock().await),
            Backend::Postgres => None,
        }
    }

    /// This process's name for its connections (`switchyard.instance` on
    /// PostgreSQL): the change feed's `origin` of the changes it makes.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The last checkout of a connection failed: the database is down,
    /// silent behind a partition, or every connection is busy past
    /// `connect_timeout`. Cleared by the next checkout that succeeds.
    pub fn is_failing(&self) -> bool {
        self.inner.reachability.is_failing()
    }

    /// While [`Db::is_failing`]: true for one caller a second, which may
    /// try the database again (the others go on with what they have).
    pub fn may_try_while_failing(&self) -> bool {
        self.inner.reachability.may_try()
    }

    /// The connection pool now: `(connections open, connections idle, most
    /// allowed)` (`/metrics`).
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let status = match &self.inner.pools {
            Pools::Sqlite(pool) => pool.status(),
            Pools::Postgres(pool) => pool.status(),
        };
        (status.size, status.available, status.max_size)
    }

    /// Runs `fut` on the database runtime; see the module docs for why.
    fn spawn<T, F>(&self, fut: F) -> impl Future<Output = Result<T, DbError>> + use<T, F>
    where
        F: Future<Output = Result<T, DbError>> + Send + 'static,
        T: Send + 'static,
    {
        self.inner.runtime.spawn(fut)
    }

    /// Takes the start-up seeding lock ([`SeedingLock`]) on a connection of
    /// its own to `settings.url`, waiting for another instance that holds it.
    pub async fn lock_seeding(&self, settings: &DatabaseSettings) -> Result<SeedingLock, DbError> {
        if self.backend() != Backend::Postgres {
            return Ok(SeedingLock { _conn: None });
        }
        let url = settings.url.clone();
        let timeout = settings.connect_timeout;
        // On the database runtime: the connection's driver task lives there.
        let conn = self
            .spawn(async move {
                let mut conn =
                    checkout_timeout(timeout, AsyncPgConnection::establish(&url)).await?;
                diesel::sql_query(format!("SELECT pg_advisory_lock({SEEDING_LOCK_KEY})"))
                    .execute(&mut conn)
                    .await?;
                Ok(conn)
            })
            .await?;
        Ok(SeedingLock { _conn: Some(conn) })
    }

    /// Checks that a connection can be had and answers `SELECT 1`.
    pub async fn ping(&self) -> Result<(), DbError> {
        run_query!(self, |conn| {
            diesel::select(1_i32.into_sql::<diesel::sql_types::Integer>())
                .get_result::<i32>(conn)
                .await
                .map(|_| ())
        })
    }
}
