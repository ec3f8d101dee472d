//! Shared fixtures: a real database per test, a mock upstream, and the real
//! gateway started in-process on a free loopback port.

pub mod admin;
pub mod billing;
pub mod cli;
pub mod db;
pub mod link;
pub mod load;
pub mod pg;
pub mod process;
pub mod python;

use anyhow::Context;
use awc::http::StatusCode;
use mock_upstream::MockUpstream;
use serde_json::{Value, json};
use std::time::Duration;
use switchyard::config::{
    Backend, KeySettings, ProviderKind, ProviderSettings, RetrySettings, Secret, Settings,
};
use switchyard::{Gateway, StartOptions};

pub const MASTER_KEY: &str = "test-master-key-0123456789abcdef";

/// Generates one test per backend for each `async fn name(Backend) -> anyhow::Result<()>`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_rt::test]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(switchyard::config::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[actix_rt::test]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(switchyard::config::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A provider named `name` on the mock, serving `models`, with these keys
/// (the mock's behaviour is chosen by each key's prefix: `ok-`, `e500-`...).
pub fn mock_provider(
    mock: &MockUpstream,
    name: &str,
    models: &[&str],
    keys: &[&str],
) -> ProviderSettings {
    ProviderSettings {
        name: name.to_owned(),
        kind: ProviderKind::OpenaiCompatible,
        base_url: mock.base_url(),
        api_version: None,
        keys: keys
            .iter()
            .map(|key| KeySettings::Plain(Secret::new(*key)))
            .collect(),
        models: models.iter().map(|model| (*model).to_owned()).collect(),
        headers: Default::default(),
        strategy: Default::default(),
        retry: RetrySettings::default(),
        max_in_flight_per_key: 0,
        weight: 1,
        enabled: true,
    }
}

/// `http://127.0.0.1:PORT`, the mock's root without the `/v1` of
/// [`MockUpstream::base_url`].
pub fn mock_root(mock: &MockUpstream) -> String {
    format!("http://{}", mock.addr())
}

/// Like [`mock_provider`], for a provider of `kind`, with the base URL that
/// kind is configured with in real life: the `/v1` API root for OpenAI and
/// Anthropic, the resource root for Azure (deployments are below
/// `/openai/deployments`), `/v1beta` for Gemini, `/api/paas/v4` for Zhipu.
pub fn kind_provider(
    mock: &MockUpstream,
    name: &str,
    kind: ProviderKind,
    models: &[&str],
    keys: &[&str],
) -> ProviderSettings {
    let base_url = match kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible | ProviderKind::Anthropic => {
            mock.base_url()
        }
        ProviderKind::AzureOpenai => mock_root(mock),
        ProviderKind::Gemini => format!("{}/v1beta", mock_root(mock)),
        ProviderKind::Zhipu => format!("{}/api/paas/v4", mock_root(mock)),
        // Answers in-process; the URL is never used.
        ProviderKind::Echo => String::new(),
    };
    ProviderSettings {
        kind,
        base_url,
        ..mock_provider(mock, name, models, keys)
    }
}

/// A running gateway with its own database and a mock upstream.
pub struct TestGateway {
    pub gateway: Option<Gateway>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub mock: MockUpstream,
    pub client: awc::Client,
    /// What the gateway was started with.
    pub settings: Settings,
    pub options: StartOptions,
    _db: db::TestDb,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    /// Starts a gateway whose default provider `mock` serves `mock-gpt` with
    /// two healthy keys; `configure` may change anything before start.
    pub async fn start(
        backend: Backend,
        configure: impl FnOnce(&mut Settings, &MockUpstream),
    ) -> anyhow::Result<Self> {
        Self::start_with(backend, StartOptions::default(), configure).await
    }

    /// [`TestGateway::start`] with start options (a manual clock...).
    pub async fn start_with(
        backend: Backend,
        options: StartOptions,
        configure: impl FnOnce(&mut Settings, &MockUpstream),
    ) -> anyhow::Result<Self> {
        let mock = MockUpstream::start()?;
        let dir = tempfile::tempdir()?;
        let test_db = db::TestDb::new(backend).await?;
        let mut settings = Settings::for_tests(dir.path())?;
        settings.database = test_db.settings.clone();
        settings.admin.master_key = Secret::new(MASTER_KEY);
        settings.upstream.first_byte_timeout = Duration::from_secs(5);
        settings.upstream.stream_idle_timeout = Duration::from_secs(5);
        settings.providers = vec![mock_provider(
            &mock,
            "mock",
            &["mock-gpt"],
            &["ok-1", "ok-2"],
        )];
        configure(&mut settings, &mock);
        settings.validate()?;
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let gateway = switchyard::start(
            settings.clone(),
            log,
            StartOptions {
                handle_signals: false,
                ..options.clone()
            },
        )
        .await?;
        let url = format!("http://{}", gateway.addr);
        Ok(Self {
            gateway: Some(gateway),
            url,
            mock,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
            settings,
            options,
            _db: test_db,
            _dir: dir,
        })
    }

    /// The directory the gateway's files (key files, spill file) live in.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// The gateway's database, for a second gateway sharing it.
    pub fn database(&self) -> switchyard::config::DatabaseSettings {
        self._db.settings.clone()
    }

    /// Runs one SQL statement on the gateway's database (see `TestDb::execute`).
    pub async fn sql(&self, sql: &str) -> anyhow::Result<usize> {
        self._db.execute(sql).await
    }

    /// Calls any route with `bearer` (or no credential); the body is JSON
    /// when `body` is given. Returns the status and the JSON answer
    /// (`Null` when empty, a string when not JSON).
    pub async fn call(
        &self,
        bearer: Option<&str>,
        method: awc::http::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(bearer) = bearer {
            request = request.insert_header(("authorization", format!("Bearer {bearer}")));
        }
        let mut response = match body {
            Some(body) => request.send_json(&body).await,
            None => request.send().await,
        }
        .map_err(|e| anyhow::anyhow!("call failed: {e}"))?;
        let bytes = response.body().await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((response.status(), value))
    }

    /// Asks for a login challenge for `key`.
    pub async fn challenge(
        &self,
        key: &switchyard::auth::AdminSigningKey,
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.call(
            None,
            awc::http::Method::POST,
            "/auth/challenge",
            Some(json!({ "public_key": key.public_key().to_text() })),
        )
        .await
    }

    /// Answers a challenge: signs `message` with `key` and posts it.
    pub async fn verify(
        &self,
        key: &switchyard::auth::AdminSigningKey,
        nonce: &str,
        message: &str,
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.call(
            None,
            awc::http::Method::POST,
            "/auth/verify",
            Some(json!({
                "public_key": key.public_key().to_text(),
                "nonce": nonce,
                "signature": key.sign(message).to_text(),
            })),
        )
        .await
    }

    /// The whole login; returns the verify answer (token, session_id, ...).
    pub async fn login(&self, key: &switchyard::auth::AdminSigningKey) -> anyhow::Result<Value> {
        let (status, challenge) = self.challenge(key).await?;
        anyhow::ensure!(status == StatusCode::OK, "challenge: {status} {challenge}");
        let nonce = challenge["nonce"].as_str().context("no nonce")?;
        let message = challenge["message"].as_str().context("no message")?;
        let (status, granted) = self.verify(key, nonce, message).await?;
        anyhow::ensure!(status == StatusCode::OK, "verify: {status} {granted}");
        Ok(granted)
    }

    /// The admin key generated on first start (`admin.key_file`).
    pub fn bootstrap_key(&self) -> anyhow::Result<switchyard::auth::AdminSigningKey> {
        let pem = std::fs::read_to_string(self.data_dir().join("admin_ed25519.key"))?;
        Ok(switchyard::auth::AdminSigningKey::from_pem(&pem)?)
    }

    /// Another gateway instance on the same database, settings and mock
    /// (multi-instance tests); returns it and its base URL. Like a second
    /// instance on one machine, it has a usage journal of its own: one
    /// running instance per `usage.journal_dir`.
    pub async fn start_another_instance(&self) -> anyhow::Result<(Gateway, String)> {
        static INSTANCES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let number = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut settings = self.settings.clone();
        settings.usage.journal_dir = self
            .data_dir()
            .join(format!("usage-journal-{number}"))
            .display()
            .to_string();
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let gateway = switchyard::start(
            settings,
            log,
            StartOptions {
                handle_signals: false,
                ..self.options.clone()
            },
        )
        .await?;
        let url = format!("http://{}", gateway.addr);
        Ok((gateway, url))
    }

    pub fn gateway(&self) -> anyhow::Result<&Gateway> {
        self.gateway.as_ref().context("gateway already stopped")
    }

    /// The admin API of this gateway with the master key. Build it again
    /// after [`TestGateway::restart`]: the address changes.
    pub fn admin_client(&self) -> admin::AdminClient {
        admin::AdminClient::new(self.url.clone(), MASTER_KEY)
    }

    /// Creates a gateway token through the admin API; returns the token.
    pub async fn create_token(&self, body: Value) -> anyhow::Result<String> {
        Ok(self.admin_client().create_token(body).await?.token)
    }

    /// Calls an admin route with the master key; returns whatever came back.
    pub async fn admin(
        &self,
        method: awc::http::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.admin_client().call(method, path, body).await
    }

    /// Stops the gateway and starts a new one with the same settings and
    /// start options on the same database and mock (state that must survive
    /// a restart); the URL changes.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(old) = self.gateway.take() {
            old.stop().await?;
        }
        let gateway = switchyard::start(
            self.settings.clone(),
            slog::Logger::root(slog::Discard, slog::o!()),
            StartOptions {
                handle_signals: false,
                ..self.options.clone()
            },
        )
        .await?;
        self.url = format!("http://{}", gateway.addr);
        self.gateway = Some(gateway);
        Ok(())
    }

    /// POSTs a chat completion with `token`; returns status, headers and body.
    pub async fn chat(&self, token: &str, body: Value) -> anyhow::Result<Reply> {
        self.post_raw(
            "/v1/chat/completions",
            Some(token),
            serde_json::to_vec(&body)?,
        )
        .await
    }

    /// POSTs a chat completion with `token` and returns the response as it
    /// starts, its body still to read (a stream read chunk by chunk).
    pub async fn open_chat(
        &self,
        token: &str,
        body: &Value,
    ) -> anyhow::Result<
        awc::ClientResponse<
            impl futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>>
            + Unpin
            + use<>,
        >,
    > {
        self.client
            .post(format!("{}/v1/chat/completions", self.url))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send_json(body)
            .await
            .map_err(|e| anyhow::anyhow!("request failed: {e}"))
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<Reply> {
        let mut request = self
            .client
            .post(format!("{}{path}", self.url))
            .insert_header(("content-type", "application/json"));
        if let Some(token) = token {
            request = request.insert_header(("authorization", format!("Bearer {token}")));
        }
        let mut response = request
            .send_body(body)
            .await
            .map_err(|e| anyhow::anyhow!("request failed: {e}"))?;
        let body = response.body().limit(64 * 1024 * 1024).await?;
        Ok(Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: body.to_vec(),
        })
    }

    /// Sends `method path` with exactly these headers (no token is added)
    /// and body; returns the whole answer.
    pub async fn send(
        &self,
        method: awc::http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Reply> {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        let mut response = match body {
            Some(body) => request.send_body(body).await,
            None => request.send().await,
        }
        .map_err(|e| anyhow::anyhow!("request failed: {e}"))?;
        let body = response.body().limit(64 * 1024 * 1024).await?;
        Ok(Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: body.to_vec(),
        })
    }

    /// `GET /metrics` (as the admin) as text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let reply = self.get("/metrics", Some(MASTER_KEY)).await?;
        anyhow::ensure!(reply.status == 200, "/metrics: {}", reply.status);
        Ok(reply.text())
    }

    /// GETs `path` with a gateway token (or none).
    pub async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<Reply> {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|bearer| ("authorization", bearer.as_str()))
            .collect();
        self.send(awc::http::Method::GET, path, &headers, None)
            .await
    }

    /// POSTs a JSON body with exactly these headers (plus `content-type`).
    pub async fn post_with_headers(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> anyhow::Result<Reply> {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(
            awc::http::Method::POST,
            path,
            &all,
            Some(serde_json::to_vec(body)?),
        )
        .await
    }

    /// Writes all buffered usage, then returns the request logs, oldest first.
    pub async fn request_logs(&self) -> anyhow::Result<Vec<switchyard::db::RequestLog>> {
        let gateway = self.gateway()?;
        gateway.flush_usage().await?;
        let mut rows = gateway.db.list_request_logs(100_000, 0).await?;
        rows.reverse();
        Ok(rows)
    }

    /// Polls the mock until it has received `count` requests in all.
    pub async fn wait_for_upstream_calls(&self, count: u64) -> anyhow::Result<()> {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while self.mock.total_calls() < count {
            anyhow::ensure!(
                std::time::Instant::now() < until,
                "the mock saw {} calls, expected {count}",
                self.mock.total_calls()
            );
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(gateway) = self.gateway.take() {
            gateway.stop().await?;
        }
        Ok(())
    }
}

/// A complete HTTP answer.
pub struct Reply {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The OpenAI error code, when the body is an error.
    pub fn error_code(&self) -> Option<String> {
        self.json()
            .ok()?
            .pointer("/error/code")?
            .as_str()
            .map(str::to_owned)
    }
}

/// A minimal valid chat body.
pub fn chat_body(model: &str, content: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": content }] })
}

/// [`chat_body`] asking for a streamed answer.
pub fn stream_chat_body(model: &str, content: &str) -> Value {
    let mut body = chat_body(model, content);
    body["stream"] = json!(true);
    body
}

/// The `data:` payloads of an SSE body, in order.
/// The value of the metric line `name` (with its labels, if any) in a
/// `/metrics` text, or 0.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

pub fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .map(str::to_owned)
        })
        .collect()
}

/// (status, error class, attempts) of each row: what most failure tests compare.
pub fn outcomes(logs: &[switchyard::db::RequestLog]) -> Vec<(i32, Option<&str>, i32)> {
    logs.iter()
        .map(|row| (row.status, row.error_class.as_deref(), row.attempts))
        .collect()
}
