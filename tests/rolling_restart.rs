//! Rolling restarts (issue 14, item 4), with real processes and signals:
//! the drain after SIGTERM (`server.drain_period`: `/readyz` 503 `draining`
//! while everything else is served, then the listener closes and in-flight
//! requests finish), migrations run once when several instances start at
//! once on one PostgreSQL schema (advisory lock), a rolling restart behind a
//! load balancer that checks `/readyz` loses no request, and nginx accepts
//! the example config in `deploy/nginx.conf`.

pub mod common;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::{Context, ensure};
use common::db::TestDb;
use common::process::{GatewayProcess, free_port};
use futures_util::future::join_all;
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchyard::config::Backend;

on_both_backends!(
    sigterm_drains_then_stops_accepting_and_finishes_in_flight_requests,
    a_second_signal_during_the_drain_stops_at_once,
);

const MASTER: &str = "rolling-master-key-0123456789abcdef";
const SECRET: &str = "rolling-test-secret-key-0123456789";

/// Settings for one instance: `mock-gpt` answers at once, `mock-slow`
/// after `slow_ms`.
fn config(port: u16, db_url: &str, mock: &MockUpstream, drain: &str, slow_ms: u64) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
workers = 2
drain_period = "{drain}"
shutdown_timeout = "30s"
[database]
url = "{db_url}"
[admin]
master_key = "{MASTER}"
[security]
secret_key = "{SECRET}"
[logging]
level = "info"
[upstream]
model_refresh_interval = "0s"
[[providers]]
name = "fast"
kind = "openai-compatible"
base_url = "{base}"
keys = ["ok-a"]
models = ["mock-gpt"]
[[providers]]
name = "slow"
kind = "openai-compatible"
base_url = "{base}"
keys = ["slow{slow_ms}-a"]
models = ["mock-slow"]
"#,
        base = mock.base_url(),
    )
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish()
}

/// GET `url`; status and JSON body (Null when not JSON).
async fn get(client: &awc::Client, url: &str) -> anyhow::Result<(u16, Value)> {
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    let body = response.body().await?;
    Ok((
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    ))
}

/// POST a chat completion for `model`; status and body.
async fn chat(
    client: &awc::Client,
    base: &str,
    token: &str,
    model: &str,
) -> anyhow::Result<(u16, String)> {
    let mut response = client
        .post(format!("{base}/v1/chat/completions"))
        .insert_header(("authorization", format!("Bearer {token}")))
        .send_json(&json!({ "model": model, "messages": [{ "role": "user", "content": "hi" }] }))
        .await
        .map_err(|e| anyhow::anyhow!("chat {model}: {e}"))?;
    let body = response.body().await?;
    Ok((
        response.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

async fn sigterm_drains_then_stops_accepting_and_finishes_in_flight_requests(
    backend: Backend,
) -> anyhow::Result<()> {
    let mock = MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let db = TestDb::new(backend).await?;
    let port = free_port()?;
    let path = dir.path().join("gateway.toml");
    // The slow request (8 s upstream) outlives the drain (3 s) by far.
    std::fs::write(&path, config(port, &db.settings.url, &mock, "3s", 8000))?;
    let mut process = GatewayProcess::start(dir.path(), &path, port).await?;
    let client = client();
    let token = process
        .admin_client(MASTER)
        .create_token(json!({ "name": "drain" }))
        .await?
        .token;
    let (status, body) = get(&client, &format!("{}/readyz", process.url)).await?;
    ensure!(status == 200, "ready before the signal: {status} {body}");

    process.signal("TERM")?;
    // Draining: not ready, with "draining" first among the problems...
    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = loop {
        let (status, body) = get(&client, &format!("{}/readyz", process.url)).await?;
        if status == 503 {
            break body;
        }
        ensure!(Instant::now() < deadline, "/readyz still {status}: {body}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    ensure!(ready["status"] == json!("not_ready"), "{ready}");
    ensure!(ready["problems"][0] == json!("draining"), "{ready}");
    ensure!(ready["database"] == json!("ok"), "{ready}");
    // ...alive, and still serving every request.
    let (status, body) = get(&client, &format!("{}/healthz", process.url)).await?;
    ensure!(status == 200, "/healthz during the drain: {status} {body}");
    let (status, body) = chat(&client, &process.url, &token, "mock-gpt").await?;
    ensure!(status == 200, "chat during the drain: {status} {body}");
    // A request accepted during the drain and still running after it.
    let slow = {
        let client = client.clone();
        let url = process.url.clone();
        let token = token.clone();
        actix_rt::spawn(async move { chat(&client, &url, &token, "mock-slow").await })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while mock.total_calls() < 2 {
        ensure!(Instant::now() < deadline, "the slow request never arrived");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }

    // After the drain the port refuses new connections while the slow
    // request is still in flight.
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_ok() {
        ensure!(
            Instant::now() < deadline,
            "still accepting 20 s after SIGTERM"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(
        !slow.is_finished(),
        "the slow request ended before the listener closed"
    );
    let (status, body) = slow.await??;
    ensure!(status == 200, "in-flight request: {status} {body}");
    let status = process.wait_exit(Duration::from_secs(30)).await?;
    ensure!(status.success(), "exit status {status}");

    let log = std::fs::read_to_string(dir.path().join("gateway.log"))?;
    ensure!(
        log.matches("shutdown.drain_started").count() == 1
            && log.matches("shutdown.drain_ended").count() == 1,
        "one line at the start and one at the end of the drain:\n{log}"
    );
    Ok(())
}

async fn a_second_signal_during_the_drain_stops_at_once(backend: Backend) -> anyhow::Result<()> {
    let mock = MockUpstream::start()?;
    let dir = tempfile::tempdir()?;
    let db = TestDb::new(backend).await?;
    let port = free_port()?;
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config(port, &db.settings.url, &mock, "120s", 100))?;
    let mut process = GatewayProcess::start(dir.path(), &path, port).await?;
    let client = client();
    process.signal("TERM")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(&client, &format!("{}/readyz", process.url)).await?;
        if status == 503 && body["problems"][0] == json!("draining") {
            break;
        }
        ensure!(Instant::now() < deadline, "/readyz still {status}: {body}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    process.signal("INT")?;
    // Far less than the 120 s drain.
    let status = process.wait_exit(Duration::from_secs(30)).await?;
    ensure!(status.success(), "exit status {status}");
    let log = std::fs::read_to_string(dir.path().join("gateway.log"))?;
    ensure!(log.contains("shutdown.drain_ended"), "{log}");
    Ok(())
}

/// Rows of `__diesel_schema_migrations` as `SELECT` counts them.
async fn count(db: &TestDb, sql: &str) -> anyhow::Result<usize> {
    db.execute(sql).await
}

#[actix_rt::test]
async fn three_instances_started_at_once_on_one_postgres_schema_migrate_once() -> anyhow::Result<()>
{
    let mock = MockUpstream::start()?;
    let db = TestDb::new(Backend::Postgres).await?;
    let mut dirs = Vec::new();
    let mut starts = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config(port, &db.settings.url, &mock, "0s", 100))?;
        dirs.push(dir);
        starts.push((dirs.len() - 1, path, port));
    }
    // All three processes are spawned before any is waited for: they run
    // their migrations at the same moment on an empty schema.
    let processes = join_all(
        starts
            .iter()
            .map(|(i, path, port)| GatewayProcess::start(dirs[*i].path(), path, *port)),
    )
    .await;
    let mut running = Vec::new();
    for (i, process) in processes.into_iter().enumerate() {
        running.push(process.with_context(|| format!("instance {i}"))?);
    }

    let migrations =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres"))?
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .count();
    ensure!(migrations > 0);
    let rows = count(&db, "SELECT version FROM __diesel_schema_migrations").await?;
    ensure!(
        rows == migrations,
        "{rows} migration rows for {migrations} migrations"
    );
    let duplicated = count(
        &db,
        "SELECT version FROM __diesel_schema_migrations GROUP BY version HAVING count(*) > 1",
    )
    .await?;
    ensure!(duplicated == 0, "{duplicated} migrations recorded twice");

    // And all three serve, from the one schema.
    let client = client();
    let token = running[0]
        .admin_client(MASTER)
        .create_token(json!({ "name": "three" }))
        .await?
        .token;
    for process in &running {
        let (status, body) = chat(&client, &process.url, &token, "mock-gpt").await?;
        ensure!(status == 200, "{}: {status} {body}", process.url);
    }
    Ok(())
}

/// A load balancer in the test: round robin over the backends whose
/// `/readyz` answered 200 at the last check (every 200 ms), a new connection
/// per request and no retries,
/// so a request sent to an instance that no longer accepts is a failure the
/// client sees.
struct Balancer {
    backends: Vec<String>,
    ready: Vec<AtomicBool>,
    served: Vec<AtomicU64>,
    next: AtomicU64,
}

impl Balancer {
    fn pick(&self) -> Option<usize> {
        let n = self.backends.len() as u64;
        (0..n)
            .map(|_| (self.next.fetch_add(1, Ordering::Relaxed) % n) as usize)
            .find(|&i| self.ready[i].load(Ordering::Relaxed))
    }
}

async fn balance(
    request: HttpRequest,
    body: web::Bytes,
    balancer: web::Data<Balancer>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    let Some(i) = balancer.pick() else {
        return HttpResponse::ServiceUnavailable().body("no backend ready");
    };
    // A new connection per request: what a closed listener refuses (a
    // pooled keep-alive connection would hide the moment it closes).
    let mut forward = client
        .request(
            request.method().clone(),
            format!("{}{}", balancer.backends[i], request.uri()),
        )
        .force_close();
    for (name, value) in request.headers() {
        if name != "host" && name != "connection" {
            forward = forward.insert_header((name.clone(), value.clone()));
        }
    }
    match forward.send_body(body).await {
        Ok(mut response) => match response.body().limit(16 * 1024 * 1024).await {
            Ok(bytes) => {
                balancer.served[i].fetch_add(1, Ordering::Relaxed);
                HttpResponse::build(response.status()).body(bytes)
            }
            Err(error) => HttpResponse::BadGateway().body(format!("backend {i} body: {error}")),
        },
        Err(error) => HttpResponse::BadGateway().body(format!("backend {i}: {error}")),
    }
}

async fn health_checks(balancer: Arc<Balancer>, stop: Arc<AtomicBool>) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(1))
        .finish();
    while !stop.load(Ordering::Relaxed) {
        for (i, backend) in balancer.backends.iter().enumerate() {
            let ready = matches!(
                client
                    .get(format!("{backend}/readyz"))
                    .force_close()
                    .send()
                    .await,
                Ok(response) if response.status() == 200
            );
            balancer.ready[i].store(ready, Ordering::Relaxed);
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_rt::test]
async fn rolling_restart_of_one_of_two_instances_under_load_fails_no_request() -> anyhow::Result<()>
{
    let mock = MockUpstream::start()?;
    let db = TestDb::new(Backend::Postgres).await?;
    let mut instances = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let path = dir.path().join("gateway.toml");
        // Drain 3 s: 15 checks of the balancer. Requests take ~200 ms
        // upstream, so some are always in flight when the listener closes.
        std::fs::write(&path, config(port, &db.settings.url, &mock, "3s", 200))?;
        let process = GatewayProcess::start(dir.path(), &path, port).await?;
        instances.push((dir, path, port, process));
    }
    let token = instances[0]
        .3
        .admin_client(MASTER)
        .create_token(json!({ "name": "rolling" }))
        .await?
        .token;

    let balancer = Arc::new(Balancer {
        backends: instances.iter().map(|i| i.3.url.clone()).collect(),
        ready: (0..2).map(|_| AtomicBool::new(false)).collect(),
        served: (0..2).map(|_| AtomicU64::new(0)).collect(),
        next: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    actix_rt::spawn(health_checks(balancer.clone(), stop.clone()));
    let lb_port = free_port()?;
    let data = web::Data::from(balancer.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::Data::new(
                awc::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .finish(),
            ))
            .default_service(web::to(balance))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", lb_port))?
    .run();
    let server_handle = server.handle();
    actix_rt::spawn(server);
    let lb = format!("http://127.0.0.1:{lb_port}");

    let deadline = Instant::now() + Duration::from_secs(20);
    while !balancer.ready.iter().all(|r| r.load(Ordering::Relaxed)) {
        ensure!(Instant::now() < deadline, "backends never ready");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }

    // Load: 6 clients in a loop until told to stop; each returns how many
    // requests succeeded and what the failed ones got.
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (lb, token, stop) = (lb.clone(), token.clone(), stop.clone());
            actix_rt::spawn(async move {
                let client = client();
                let mut ok = 0_u64;
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match chat(&client, &lb, &token, "mock-slow").await {
                        Ok((200, _)) => ok += 1,
                        Ok((status, body)) => failures.push(format!("{status}: {body}")),
                        Err(error) => failures.push(error.to_string()),
                    }
                }
                (ok, failures)
            })
        })
        .collect();

    let outcome = async {
        // Some load on both first.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !balancer
            .served
            .iter()
            .all(|s| s.load(Ordering::Relaxed) >= 5)
        {
            ensure!(Instant::now() < deadline, "no load reached both instances");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        // Restart instance 0: SIGTERM, wait for its exit, start it again.
        let (dir, path, port, mut process) = instances.remove(0);
        process.signal("TERM")?;
        let status = process.wait_exit(Duration::from_secs(60)).await?;
        ensure!(status.success(), "exit status {status}");
        drop(process);
        let before = balancer.served[0].load(Ordering::Relaxed);
        let process = GatewayProcess::start(dir.path(), &path, port).await?;
        // The restarted instance takes traffic again.
        let deadline = Instant::now() + Duration::from_secs(30);
        while balancer.served[0].load(Ordering::Relaxed) < before + 5 {
            ensure!(
                Instant::now() < deadline,
                "the restarted instance got no traffic"
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        instances.insert(0, (dir, path, port, process));
        anyhow::Ok(())
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let finished = join_all(clients).await;
    server_handle.stop(false).await;
    outcome?;

    let mut ok = 0;
    let mut failures = Vec::new();
    for client in finished {
        let (client_ok, client_failures) = client?;
        ok += client_ok;
        failures.extend(client_failures);
    }
    ensure!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        ok + failures.len() as u64
    );
    ensure!(ok >= 20, "only {ok} requests");
    Ok(())
}

#[test]
fn nginx_accepts_the_example_config() -> anyhow::Result<()> {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf");
    let prefix = tempfile::tempdir()?;
    let output = std::process::Command::new("nginx")
        .arg("-t")
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(format!("{}/", prefix.path().display()))
        .arg("-e")
        .arg(prefix.path().join("error.log"))
        .arg("-g")
        .arg(format!(
            "pid {};",
            prefix.path().join("nginx.pid").display()
        ))
        .output()
        .context("running nginx (Debian package nginx-light)")?;
    let text = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "nginx -t failed:\n{text}");
    ensure!(text.contains("test is successful"), "{text}");
    Ok(())
}
