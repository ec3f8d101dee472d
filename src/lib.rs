//! Switchyard: a self-hosted AI API gateway.
//!
//! [`run`] is the whole server: it opens the database (running migrations),
//! applies settings to it (`config_store`), starts the actors and the HTTP
//! server, and on SIGTERM/Ctrl-C stops accepting, lets in-flight requests
//! finish, flushes usage and returns. `main.rs` only parses arguments.

pub mod admin;
pub mod allocator;
pub mod auth;
pub mod change_feed;
pub mod cli;
pub mod clock;
pub mod config;
pub mod config_store;
pub mod crypto;
pub mod db;
pub mod enforce;
pub mod error;
pub mod gateway;
pub mod http;

pub mod logging;
pub mod metering;
pub mod model_cache;
pub mod probe;
pub mod providers;
pub mod reload;
pub mod retention;
pub mod secrets;
pub mod shared_limits;
pub mod sync;
pub mod telemetry;
pub mod tokens;
pub mod ui;
pub mod upstream;

use crate::auth::session::{SessionActor, SessionConfig};
use crate::config::{Secret, Settings};
use crate::gateway::AppState;
use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context as _;
use slog::{Logger, info, warn};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchyard_actors::{
    FlushAll, FlushReport, Journal, ProviderRoute, Router, RouterActor, UsageActor, UsageConfig,
    UsageQueue,
};

/// A started gateway.
pub struct Gateway {
    /// Where it listens (the real port when `listen` asked for port 0).
    pub addr: SocketAddr,
    stopper: GracefulStop,
    server: actix_rt::task::JoinHandle<std::io::Result<()>>,
    usage: Addr<UsageActor>,
    shutdown_timeout: Duration,
    log: Logger,
    /// Kept for tests and admin tooling that talk to the same database.
    pub db: db::Db,
    /// The router (tests inspect providers through it).
    pub router: Router,
    /// Traces, flushed at the end (`None`: tracing off).
    telemetry: Option<Arc<telemetry::Telemetry>>,
    /// Limits and budget slices (tests read its lease count).
    pub enforcer: Arc<enforce::Enforcer>,
    /// This instance's claim on `usage.journal_dir`, released with it.
    _journal_lock: switchyard_actors::journal::DirLock,
}

/// Options that differ between the real process and in-process tests.
#[derive(Clone, Default)]
pub struct StartOptions {
    /// Stop gracefully on SIGTERM/SIGINT (the real process does; tests don't).
    pub handle_signals: bool,
    /// On a deployment's first start, print what to do next on stdout
    /// (the real process does).
    pub print_next_steps: bool,
    /// The wall clock limits, quotas, expiries and database times read
    /// (tests move a manual one); `None`: the system clock.
    pub clock: Option<Arc<dyn clock::Clock>>,
    /// The `--config` file the settings came from: a reload (SIGHUP,
    /// `POST /admin/reload`) reads the same layers again.
    pub config_file: Option<std::path::PathBuf>,
}

impl Gateway {
    /// Waits for the server to stop (signal or [`Gateway::stop`]), then
    /// flushes usage.
    pub async fn wait(self) -> anyhow::Result<FlushReport> {
        let Gateway {
            server,
            usage,
            shutdown_timeout,
            log,
            enforcer,
            telemetry,
            ..
        } = self;
        let served = server.await;
        let report = flush_usage(&usage, shutdown_timeout, &log).await;
        if let Some(telemetry) = telemetry {
            // Blocks until the last spans are sent: off the actix thread.
            let _ = actix_rt::task::spawn_blocking(move || telemetry.shutdown()).await;
        }
        // After the flush, so the slices' rows no longer hold the spend of
        // the requests just written: what is left unused goes back to the
        // budgets, for the other instances (or this one's next start).
        enforcer.give_back_slices().await;
        served
            .context("server task failed")?
            .context("server failed")?;
        report
    }

    /// Writes every usage record received so far (tests, admin tooling).
    pub async fn flush_usage(&self) -> anyhow::Result<FlushReport> {
        flush_usage(&self.usage, self.shutdown_timeout, &self.log).await
    }

    /// Graceful stop: stop accepting, finish in-flight requests, flush usage.
    pub async fn stop(self) -> anyhow::Result<FlushReport> {
        self.stopper.stop().await;
        self.wait().await
    }
}

/// A graceful stop: stop accepting, let in-flight requests finish, and cut
/// the streams still open after `server.shutdown_timeout` (they end with an
/// error event; see `http::shutdown`).
#[derive(Clone)]
struct GracefulStop {
    handle: ServerHandle,
    stream_cutoff: http::shutdown::StreamCutoff,
    timeout: Duration,
}

impl GracefulStop {
    async fn stop(&self) {
        let cutoff = self.stream_cutoff.fire_after(self.timeout);
        self.handle.stop(true).await;
        cutoff.abort();
    }

    /// Stop at once (a second signal): cut streams now, then drop the rest.
    async fn stop_now(&self) {
        self.stream_cutoff.fire();
        self.handle.stop(false).await;
    }
}

async fn flush_usage(
    usage: &Addr<UsageActor>,
    deadline: Duration,
    log: &Logger,
) -> anyhow::Result<FlushReport> {
    let report = usage
        .send(FlushAll { deadline })
        .await
        .context("usage actor gone before the final flush")?;
    info!(log, "shutdown.usage_flushed"; "written" => report.written,
        "left_in_journal" => report.journal_backlog, "unwritten" => report.unwritten);
    Ok(report)
}

/// Runs the gateway until a signal stops it. `config_file` is the
/// `--config` the settings were loaded with (reloads read it again).
pub async fn run(
    settings: Settings,
    config_file: Option<std::path::PathBuf>,
    log: Logger,
) -> anyhow::Result<()> {
    for warning in &settings.load_warnings {
        warn!(log, "settings.layers"; "warning" => warning);
    }
    let gateway = start(
        settings,
        log.clone(),
        StartOptions {
            handle_signals: true,
            print_next_steps: true,
            config_file,
            ..StartOptions::default()
        },
    )
    .await?;
    let report = gateway.wait().await?;
    if report.unwritten > 0 {
        anyhow::bail!(
            "{} usage records could be neither written nor journaled",
            report.unwritten
        );
    }
    info!(log, "shutdown.complete");
    Ok(())
}

/// What a new operator does after the first start, printed once (the
/// quick start's commands with this deployment's address and files).
fn next_steps(
    addr: SocketAddr,
    admin_key_file: &str,
    master_key_file: Option<&str>,
    model: &str,
) -> String {
    let url = format!("http://{addr}");
    let master = master_key_file
        .map(|file| format!("\n  master key    {file} (admin API bearer; keep it secret)"))
        .unwrap_or_default();
    format!(
        "Switchyard is listening on {url}. First start of this deployment; next steps:\n\
         \x20 admin key     {admin_key_file} (Ed25519; it logs you in: keep it safe){master}\n\
         \x20 log in        switchyard admin login --key {admin_key_file} --server {url}\n\
         \x20 a token       switchyard admin tokens create --name my-app\n\
         \x20 try it        curl {url}/v1/chat/completions -H \"Authorization: Bearer $TOKEN\" \
         -H 'content-type: application/json' \
         -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'\n\
         \x20 dashboard     {url}/ui (log in with the admin key file)\n\
         (printed once; README.md has the rest)"
    )
}

/// Starts everything and returns once the server is listening.
pub async fn start(
    settings: Settings,
    log: Logger,
    options: StartOptions,
) -> anyhow::Result<Gateway> {
    // HTTPS upstreams: select rustls's backend once per process (a second
    // call, from another gateway in the same test process, is a no-op).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Arc::new(settings);
    // The one wall clock: limits, quotas, expiries and every time column
    // the database writes (`Db::now_ms`). Latency and timeouts use
    // `Instant`, a monotonic clock, on purpose: they measure spans, never
    // dates.
    let clock: Arc<dyn clock::Clock> = options
        .clock
        .clone()
        .unwrap_or_else(|| Arc::new(clock::SystemClock));
    let database = db::connect(&settings.database)
        .await
        .with_context(|| format!("opening the database ({:?})", settings.database.backend()))?
        .with_clock(clock.clone());
    info!(log, "database.ready"; "backend" => ?settings.database.backend());

    let secret = resolve_secret(
        &settings.security.secret_key,
        &settings.security.secret_key_file,
        "security.secret_key",
        "sysecret-",
        &log,
    )?;
    // Instances starting at once store their settings one after the other
    // (the data key, server id, first admin key, providers, keys, prices).
    let seeding = database.lock_seeding(&settings.database).await?;
    // Stops here, before anything is read or written with it, when the
    // secret is not the one the data key is wrapped under.
    let cipher = Arc::new(secrets::open_cipher(&database, secret.expose(), &log).await?);
    let master_key = if settings.admin.master_key_enabled {
        Some(resolve_secret(
            &settings.admin.master_key,
            &settings.admin.master_key_file,
            "admin.master_key",
            "symaster-",
            &log,
        )?)
    } else {
        None
    };

    let server_id = auth::bootstrap::server_id(&database).await?;
    let first_start =
        auth::bootstrap::ensure_admin_key(&database, &settings.admin.key_file, &log).await?;
    let sessions = SessionActor::new(
        database.clone(),
        &server_id,
        SessionConfig {
            challenge_ttl: settings.admin.challenge_ttl,
            session_ttl: settings.admin.session_ttl,
            cache_ttl: settings.admin.session_cache_ttl,
        },
    )
    .start_supervised();

    config_store::apply_settings(&database, &settings, &cipher, &log).await?;
    drop(seeding);
    let providers = config_store::load_providers(&database, &cipher, &log).await?;
    let prices = metering::PriceTable::with_log(log.clone());
    prices.replace(config_store::load_prices(&database).await?);
    let redirects = config_store::load_redirects(&database).await?;

    // The router and the provider actors live on one "control" arbiter:
    // changes and supervision happen there. Requests do not go there: they
    // route on their own worker through the `Router` handle (a lock on the
    // routing table, then one on the provider's key pool), since a
    // cross-thread hop per attempt and a health message per request were the
    // largest costs a profile found (issue 11; DESIGN.md §8 measures ~6 µs
    // p50 per hop, and on two cores each wake-up is a context switch).
    let control = Arbiter::new();
    let control_handle = control.handle();
    for provider in &providers {
        info!(log, "provider.started"; "provider" => &provider.spec.name, "kind" => &provider.spec.kind,
            "keys" => provider.keys.len(), "models" => provider.models.len());
    }
    let key_source = Arc::new(config_store::DbKeySource {
        db: database.clone(),
        cipher: cipher.clone(),
        log: log.clone(),
    });
    let model_routes = settings
        .models
        .iter()
        .map(|(model, route)| (model.clone(), route.route()))
        .collect();
    let router_log = log.clone();
    // Built on the control arbiter, so the provider actors it starts (and
    // restarts) live there too.
    let routing = RouterActor::start_on(&control_handle, move || {
        let routes = providers
            .into_iter()
            .map(|provider| {
                ProviderRoute::start(
                    provider.spec,
                    provider.keys,
                    provider.models,
                    provider.weight,
                )
            })
            .collect();
        RouterActor::new(routes, redirects)
            .with_models(model_routes)
            .with_key_source(key_source)
            .with_log(Arc::new(move |message: &str| {
                warn!(router_log, "{}", message)
            }))
    })
    .await
    .context("starting the router")?;

    probe::start(routing.clone(), settings.health.clone(), log.clone());
    let probe_router = routing.clone();
    let enforcer = Arc::new(enforce::Enforcer::new(
        database.clone(),
        prices.clone(),
        clock.clone(),
        settings.limits.clone(),
        log.clone(),
    ));
    enforce::start_expiry(enforcer.clone(), settings.limits.reservation_ttl / 4).await;
    let token_cache = tokens::TokenCache::new(
        settings.database.token_cache_ttl,
        settings.database.stale_token_grace,
    );
    sync::start(
        sync::Sync {
            db: database.clone(),
            tokens: token_cache.clone(),
            prices: prices.clone(),
            log: log.clone(),
        },
        settings.database.sync_interval,
    );
    change_feed::start(
        change_feed::ChangeFeed {
            db: database.clone(),
            database_url: settings.database.url.clone(),
            tokens: token_cache.clone(),
            prices: prices.clone(),
            router: routing.clone(),
            cipher: cipher.clone(),
            sessions: sessions.clone(),
            log: log.clone(),
        },
        settings.database.sync_interval,
    );
    retention::start(
        database.clone(),
        clock.clone(),
        &settings.usage,
        log.clone(),
    );
    let model_cache = model_cache::ModelCache::new(clock.clone());
    model_cache::start(
        routing.clone(),
        model_cache.clone(),
        settings.upstream.model_refresh_interval,
        settings.upstream.first_byte_timeout,
        log.clone(),
    );

    let usage_log = log.clone();
    // `GET /metrics` counts requests as their usage is written.
    let request_counters = web::Data::new(http::prometheus::RequestCounters::default());
    let sink_counters = request_counters.clone().into_inner();
    let journal = Journal::open(&settings.usage.journal_dir)
        .with_context(|| format!("opening the usage journal {}", settings.usage.journal_dir))?;
    // Before anything reads or deletes a segment: a second gateway on the
    // same directory stops here instead of replaying the first one's open
    // segment and deleting it under its writes.
    let journal_lock = journal.lock()?;
    // Which way records reach the page cache depends on the filesystem
    // (docs/architecture.md): said once, for an operator comparing hosts.
    info!(log, "usage.journal"; "dir" => %journal.dir().display(),
        "appends" => if journal.maps_segments() { "mapped" } else { "write" });
    adopt_legacy_spill(&journal, Path::new(&settings.usage.spill_file), &log)?;
    let sink = metering::DbUsageSink::new(
        database.clone(),
        journal.dir().join("dead-letters.jsonl"),
        log.clone(),
    );
    let usage_config = UsageConfig {
        flush_interval: settings.usage.flush_interval,
        flush_max_records: settings.usage.flush_max_records,
        max_buffered_records: settings.usage.max_buffered_records,
        max_retry_delay: settings.usage.max_retry_delay,
    };
    let usage_queue = UsageQueue::journaled(&usage_config, journal)
        .with_context(|| format!("reading the usage journal {}", settings.usage.journal_dir))?;
    // Supervised: a panic restarts it (rebuilding from the journal) instead
    // of ending accounting for the life of the process.
    let usage = UsageActor::new(
        usage_queue.clone(),
        Arc::new(http::prometheus::CountingSink {
            inner: Arc::new(sink),
            counters: sink_counters,
        }),
        usage_config,
        Arc::new(move |message: &str| warn!(usage_log, "{}", message)),
    )
    .start_supervised(&Arbiter::new().handle());

    // Settings reloads: SIGHUP (below) and `POST /admin/reload`.
    let reloader = web::Data::new(reload::Reloader {
        config_file: options.config_file.clone(),
        started: settings.clone(),
        db: database.clone(),
        cipher: cipher.clone(),
        router: routing.clone(),
        prices: prices.clone(),
        enforcer: enforcer.clone(),
        log: log.clone(),
        one_at_a_time: tokio::sync::Mutex::new(()),
    });
    let sighup_reloader = reloader.clone();

    let stream_cutoff = http::shutdown::StreamCutoff::default();
    let draining = http::shutdown::Draining::default();
    let router_for_admin = routing.clone();
    let state = web::Data::new(AppState {
        settings: settings.clone(),
        db: database.clone(),
        router: routing.clone(),
        usage: usage_queue,
        tokens: token_cache.clone(),
        prices: prices.clone(),
        log: log.clone(),
        concurrency: gateway::slots::ConcurrencyLimit::new(settings.server.max_concurrent_requests),
        clock: clock.clone(),
        throttle: http::throttle::AuthThrottle::new(settings.limits.auth.clone()),
        master_key_hash: master_key.as_ref().map(|key| tokens::hash(key.expose())),
        enforcer: enforcer.clone(),
        stream_cutoff: stream_cutoff.clone(),
        draining: draining.clone(),
    });

    // The admin plane's own state (`crate::admin`): what admin changes must
    // keep in line (router, token cache, enforcer, prices, model cache) is
    // shared with the data plane; sessions, master key and the admin throttle
    // are the admin plane's alone.
    let admin_state = web::Data::new(admin::AdminState {
        settings: settings.clone(),
        db: database.clone(),
        cipher: cipher.clone(),
        router: router_for_admin,
        sessions,
        master_key,
        throttle: http::throttle::AuthThrottle::new(settings.limits.auth.clone()),
        tokens: token_cache.clone(),
        enforcer: enforcer.clone(),
        prices,
        models: model_cache,
        clock: clock.clone(),
        log: log.clone(),
    });

    // Both planes read bodies under the same rules and log the same way.
    let body_intake = web::Data::new(http::body::BodyIntake {
        budget: http::body::BodyBudget::new(settings.server.max_body_bytes_in_flight),
        timeout: settings.server.body_read_timeout,
    });
    let telemetry = telemetry::Telemetry::start(&settings.tracing)?;
    if telemetry.is_some() {
        info!(log, "tracing.enabled"; "endpoint" => telemetry::traces_url(&settings.tracing.otlp_endpoint));
    }
    let request_logging = web::Data::new(http::context::RequestLogging {
        log: log.clone(),
        access_log: settings.logging.access_log,
        telemetry: telemetry.clone(),
    });
    // `server.tls`: the pair is checked before anything listens, so a bad
    // one is the start's one-line error.
    let tls = match &settings.server.tls {
        Some(tls) => {
            let pair = http::tls::load_pair(tls).map_err(anyhow::Error::msg)?;
            info!(log, "tls.loaded"; "sha256" => http::tls::fingerprint(&pair));
            let resolver = http::tls::CertResolver::new(pair);
            let config = http::tls::server_config(resolver.clone()).map_err(anyhow::Error::msg)?;
            Some((tls.clone(), resolver, config))
        }
        None => None,
    };
    let served_over_tls = web::Data::new(http::browser::ServedOverTls(tls.is_some()));
    let cors = settings.server.cors.clone();
    let upstream = settings.upstream.clone();
    let mut server = HttpServer::new(move || {
        // Runs on each worker thread as it starts.
        allocator::widen_worker_thread_cache();
        // One awc client per worker: awc clients are !Send.
        let connector = awc::Connector::new()
            .timeout(upstream.connect_timeout)
            .limit(0)
            .conn_keep_alive(Duration::from_secs(60));
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(upstream.first_byte_timeout)
            .disable_redirects()
            .finish();
        App::new()
            .app_data(state.clone())
            .app_data(admin_state.clone())
            .app_data(reloader.clone())
            .app_data(web::Data::new(client))
            .app_data(request_counters.clone())
            .app_data(body_intake.clone())
            .app_data(request_logging.clone())
            .app_data(web::QueryConfig::default().error_handler(|error, _| {
                error::ApiError::bad_request(format!("Invalid query string: {error}")).into()
            }))
            .app_data(web::PathConfig::default().error_handler(|_, _| {
                error::ApiError::NotFound("No such resource".to_owned()).into()
            }))
            .app_data(served_over_tls.clone())
            .wrap(middleware::from_fn(http::context::request_context))
            .wrap(match http::browser::cors(&cors) {
                Some(cors) => middleware::Condition::new(true, cors),
                None => middleware::Condition::new(false, actix_cors::Cors::default()),
            })
            .wrap(middleware::from_fn(http::browser::security_headers))
            .configure(http::routes)
            .default_service(web::to(http::not_found))
    })
    // Ours cuts open streams first (`http::shutdown`); actix drops what is
    // left a little later, once those last events are out.
    .shutdown_timeout(
        (settings.server.shutdown_timeout + http::shutdown::ACTIX_MARGIN)
            .as_secs_f64()
            .ceil() as u64,
    )
    // Streams are many small writes: with Nagle's algorithm on, each one
    // after the first waits for the client's delayed ACK (~40 ms).
    .tcp_nodelay(true);
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    // actix-server's own handlers stop the whole actix System on a signal
    // (taking the usage actor down before its final flush) and treat Ctrl-C
    // as a forced stop. Ours make SIGTERM and Ctrl-C both graceful.
    server = server.disable_signals();
    // actix-http keeps serving a request whose client half-closed (FIN) the
    // connection; with this off, a FIN drops the handler at once, which
    // cancels the upstream call and settles the usage row as 499.
    server = server.h1_allow_half_closed(!settings.upstream.cancel_on_client_disconnect);
    let server = match &tls {
        Some((_, _, config)) => server.bind_rustls_0_23(&settings.server.listen, config.clone()),
        None => server.bind(&settings.server.listen),
    }
    .with_context(|| format!("binding {}", settings.server.listen))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .context("the server bound no address")?;
    if first_start && options.print_next_steps {
        // Before the server runs: whoever sees it answer can read this.
        let master_key_file = (settings.admin.master_key_enabled
            && settings.admin.master_key.is_empty())
        .then_some(settings.admin.master_key_file.as_str());
        // The first model the settings serve (the demo's `demo-echo`, say).
        let model = settings
            .providers
            .iter()
            .find_map(|provider| provider.models.first())
            .map_or("gpt-4o-mini", String::as_str);
        println!(
            "{}",
            next_steps(addr, &settings.admin.key_file, master_key_file, model)
        );
    }
    let server = server.run();
    let handle = server.handle();
    let stopper = GracefulStop {
        handle: handle.clone(),
        stream_cutoff,
        timeout: settings.server.shutdown_timeout,
    };
    if options.handle_signals {
        actix_rt::spawn(stop_on_signal(
            stopper.clone(),
            Drain {
                flag: draining,
                period: settings.server.drain_period,
            },
            log.clone(),
        ));
        reload::spawn_sighup_listener(log.clone(), move || {
            let reloader = sighup_reloader.clone();
            Box::pin(async move { reloader.reload_and_log("SIGHUP").await })
        });
    }
    if let Some((tls, resolver, _)) = tls {
        actix_rt::spawn(http::tls::reload(
            tls,
            resolver,
            options.handle_signals,
            log.clone(),
        ));
    }
    info!(log, "server.listening"; "addr" => %addr);
    Ok(Gateway {
        addr,
        stopper,
        server: actix_rt::spawn(server),
        usage,
        shutdown_timeout: settings.server.shutdown_timeout,
        log,
        db: database,
        router: probe_router,
        enforcer,
        telemetry,
        _journal_lock: journal_lock,
    })
}

/// The drain before a graceful stop (`server.drain_period`).
struct Drain {
    flag: http::shutdown::Draining,
    period: Duration,
}

/// First SIGTERM or SIGINT: drain (`/readyz` answers 503 for
/// `server.drain_period` while everything is still served), then graceful
/// stop (stop accepting, finish in-flight requests up to
/// `server.shutdown_timeout`). A second one, during either: stop at once.
async fn stop_on_signal(stopper: GracefulStop, drain: Drain, log: Logger) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!(log, "signals.unavailable");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!(log, "shutdown.signal"; "signal" => "SIGTERM"),
        _ = int.recv() => info!(log, "shutdown.signal"; "signal" => "SIGINT"),
    }
    if !drain.period.is_zero() {
        drain.flag.start();
        info!(log, "shutdown.drain_started";
            "drain_period_ms" => drain.period.as_millis() as u64);
        let started = std::time::Instant::now();
        tokio::select! {
            () = actix_rt::time::sleep(drain.period) => {
                info!(log, "shutdown.drain_ended";
                    "drained_ms" => started.elapsed().as_millis() as u64);
            }
            _ = term.recv() => {
                info!(log, "shutdown.drain_ended"; "drained_ms" => started.elapsed().as_millis() as u64,
                    "cut_by" => "SIGTERM");
                stopper.stop_now().await;
                return;
            }
            _ = int.recv() => {
                info!(log, "shutdown.drain_ended"; "drained_ms" => started.elapsed().as_millis() as u64,
                    "cut_by" => "SIGINT");
                stopper.stop_now().await;
                return;
            }
        }
    }
    let graceful = stopper.stop();
    tokio::select! {
        () = graceful => {}
        _ = term.recv() => stopper.stop_now().await,
        _ = int.recv() => stopper.stop_now().await,
    }
}

/// Moves a spill file left by an earlier version into the journal, where
/// it is replayed like any segment (same JSON lines).
fn adopt_legacy_spill(journal: &Journal, spill: &Path, log: &Logger) -> anyhow::Result<()> {
    let next = journal.segments()?.last().map_or(1, |last| last + 1);
    if journal
        .adopt(spill, next)
        .with_context(|| format!("moving {} into the usage journal", spill.display()))?
    {
        warn!(log, "usage.spill_adopted"; "file" => %spill.display(), "segment" => next);
    }
    Ok(())
}

/// A configured secret, else the one in `file`, else a new one written there
/// with mode 0600. The secret itself is never logged.
/// A configured secret, else the one in `file`, else a new one written there.
/// Generated secrets start with `prefix`, which says what they are
/// (`sy-` is what gateway tokens start with).
fn resolve_secret(
    configured: &Secret,
    file: &str,
    key: &str,
    prefix: &str,
    log: &Logger,
) -> anyhow::Result<Secret> {
    if !configured.is_empty() {
        return Ok(configured.clone());
    }
    let path = Path::new(file);
    match std::fs::read_to_string(path) {
        Ok(content) if !content.trim().is_empty() => return Ok(Secret::new(content.trim())),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {file} (for {key})")),
    }
    let generated = format!("{prefix}{}", hex::encode(rand::random::<[u8; 32]>()));
    write_private_file(path, &generated).with_context(|| format!("writing {file} (for {key})"))?;
    warn!(log, "secret.generated"; "setting" => key, "file" => file);
    Ok(Secret::new(generated))
}

/// Writes `content` to a new file readable only by its owner.
pub fn write_private_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
