//! A typed client for the admin API, carrying its credential (the master key
//! or a session token), the way tests talk to `/admin/*`: over HTTP, never
//! through `switchyard::` internals, so that moving handlers around inside
//! the server changes no test.
//!
//! Two layers: [`AdminClient::call`] returns whatever came back (for tests
//! that assert a refusal), and everything else expects success and fails with
//! an [`AdminError`] that names the route, the status and the body, so a
//! broken precondition reads as such in the test output.

use anyhow::Context;
use awc::http::{Method, StatusCode};
use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

/// An admin call that did not succeed the way the test expected.
#[derive(Debug)]
pub struct AdminError {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub body: Value,
    /// What the test wanted instead (`2xx`, `201`, `400 invalid_request`...).
    pub expected: String,
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: expected {}, got {} {}",
            self.method, self.path, self.expected, self.status, self.body
        )
    }
}

impl std::error::Error for AdminError {}

/// A token just created: the secret (shown once), its id, and the whole answer.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub token: String,
    pub id: i64,
    pub answer: Value,
}

/// The admin API of one running gateway, with one credential.
#[derive(Clone)]
pub struct AdminClient {
    client: awc::Client,
    url: String,
    bearer: String,
}

impl AdminClient {
    /// A client for the gateway at `url` (`http://127.0.0.1:PORT`) sending
    /// `Authorization: Bearer BEARER` (the master key or a session token).
    pub fn new(url: impl Into<String>, bearer: impl Into<String>) -> Self {
        Self {
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
            url: url.into(),
            bearer: bearer.into(),
        }
    }

    /// The same gateway with another credential.
    pub fn with_bearer(&self, bearer: impl Into<String>) -> Self {
        Self {
            bearer: bearer.into(),
            ..self.clone()
        }
    }

    /// Calls `method path` with a JSON body (when given); returns the status
    /// and the answer (`Null` when empty, a string when not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let body = body.map(|body| body.to_string());
        self.call_raw(method, path, body.as_deref()).await
    }

    /// Calls `method path` with a raw body sent as `application/json` (for
    /// wrong types and malformed JSON).
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.url))
            .insert_header(("authorization", format!("Bearer {}", self.bearer)));
        let sent = match body {
            Some(body) => {
                request = request.insert_header(("content-type", "application/json"));
                request.send_body(body.to_owned()).await
            }
            None => request.send().await,
        };
        let mut response = sent.map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?;
        let bytes = response.body().limit(16 * 1024 * 1024).await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((response.status(), value))
    }

    /// Calls `method path`, which must answer 2xx; returns the answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, answer) = self.call(method.clone(), path, body).await?;
        if !status.is_success() {
            return Err(self.error(method, path, status, answer, "2xx").into());
        }
        Ok(answer)
    }

    /// Calls `method path`, which must answer exactly `want`; returns the answer.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: StatusCode,
    ) -> anyhow::Result<Value> {
        let (status, answer) = self.call(method.clone(), path, body).await?;
        if status != want {
            return Err(self
                .error(method, path, status, answer, want.as_str())
                .into());
        }
        Ok(answer)
    }

    /// Calls `method path`, which must be refused with `status` and the
    /// OpenAI-shaped error `code`; returns the answer.
    pub async fn refused(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
        code: &str,
    ) -> anyhow::Result<Value> {
        let (got, answer) = self.call(method.clone(), path, body).await?;
        if got.as_u16() != status || answer.pointer("/error/code") != Some(&json!(code)) {
            let expected = format!("{status} {code}");
            return Err(self.error(method, path, got, answer, &expected).into());
        }
        Ok(answer)
    }

    /// `GET path`, which must answer 2xx.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with `body`, which must answer 2xx.
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// `POST path` with `body`, which must answer 201 Created.
    pub async fn create(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.expect(Method::POST, path, Some(body), StatusCode::CREATED)
            .await
    }

    /// `PATCH path` with `body`, which must answer 2xx.
    pub async fn patch(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// `PUT path` with `body`, which must answer 2xx.
    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// `DELETE path`, which must answer 2xx.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::DELETE, path, None).await
    }

    // Tokens.

    /// Creates a gateway token (`name`, limits...); must answer 201.
    pub async fn create_token(&self, body: Value) -> anyhow::Result<CreatedToken> {
        let answer = self.create("/admin/tokens", body).await?;
        let token = answer["token"]
            .as_str()
            .with_context(|| format!("no token in {answer}"))?
            .to_owned();
        let id = id_of(&answer)?;
        Ok(CreatedToken { token, id, answer })
    }

    /// Every token's public view.
    pub async fn tokens(&self) -> anyhow::Result<Vec<Value>> {
        data(self.get("/admin/tokens").await?)
    }

    /// One token's public view.
    pub async fn token(&self, id: i64) -> anyhow::Result<Value> {
        self.get(&format!("/admin/tokens/{id}")).await
    }

    /// Changes a token's limits (`null` lifts one); returns the new view.
    pub async fn update_token(&self, id: i64, body: Value) -> anyhow::Result<Value> {
        self.patch(&format!("/admin/tokens/{id}"), body).await
    }

    /// Enables or disables a token.
    pub async fn set_token_enabled(&self, id: i64, enabled: bool) -> anyhow::Result<Value> {
        let action = if enabled { "enable" } else { "disable" };
        self.send(Method::POST, &format!("/admin/tokens/{id}/{action}"), None)
            .await
    }

    // Users and billing.

    /// Creates a user; must answer 201.
    pub async fn create_user(&self, body: Value) -> anyhow::Result<Value> {
        self.create("/admin/users", body).await
    }

    /// The id of the user called `name`.
    pub async fn user_id(&self, name: &str) -> anyhow::Result<i64> {
        let found = self.get(&format!("/admin/users?name={name}")).await?;
        found
            .pointer("/data/0/id")
            .and_then(Value::as_i64)
            .with_context(|| format!("no user {name}: {found}"))
    }

    /// Adds to a user's balance (`amount_usd` or `amount_nanos`, `note`).
    pub async fn topup(&self, user_id: i64, body: Value) -> anyhow::Result<Value> {
        self.post(&format!("/admin/users/{user_id}/topup"), body)
            .await
    }

    // Prices.

    /// Sets `model`'s price.
    pub async fn set_price(&self, model: &str, body: Value) -> anyhow::Result<Value> {
        self.put(&format!("/admin/model-prices/{model}"), body)
            .await
    }

    // Providers and their keys.

    /// Adds a provider (live); must answer 201.
    pub async fn add_provider(&self, body: Value) -> anyhow::Result<Value> {
        self.create("/admin/providers", body).await
    }

    /// Shows a provider, keys masked.
    pub async fn provider(&self, name: &str) -> anyhow::Result<Value> {
        self.get(&format!("/admin/providers/{name}")).await
    }

    /// Changes a provider (live).
    pub async fn update_provider(&self, name: &str, body: Value) -> anyhow::Result<Value> {
        self.patch(&format!("/admin/providers/{name}"), body).await
    }

    /// Removes a provider and its keys (live).
    pub async fn delete_provider(&self, name: &str) -> anyhow::Result<Value> {
        self.delete(&format!("/admin/providers/{name}")).await
    }

    /// Adds a key to `provider`; must answer 201.
    pub async fn add_key(&self, provider: &str, body: Value) -> anyhow::Result<Value> {
        self.create(&format!("/admin/providers/{provider}/keys"), body)
            .await
    }

    /// Enables or disables one of `provider`'s keys.
    pub async fn set_key_enabled(
        &self,
        provider: &str,
        key: &str,
        enabled: bool,
    ) -> anyhow::Result<Value> {
        let action = if enabled { "enable" } else { "disable" };
        self.send(
            Method::POST,
            &format!("/admin/providers/{provider}/keys/{key}/{action}"),
            None,
        )
        .await
    }

    /// Removes one of `provider`'s keys.
    pub async fn delete_key(&self, provider: &str, key: &str) -> anyhow::Result<Value> {
        self.delete(&format!("/admin/providers/{provider}/keys/{key}"))
            .await
    }

    /// The health entries of `provider`'s keys.
    pub async fn key_healths(&self, provider: &str) -> anyhow::Result<Vec<Value>> {
        let answer = self
            .get(&format!("/admin/providers/{provider}/health"))
            .await?;
        answer["keys"]
            .as_array()
            .cloned()
            .with_context(|| format!("no keys array in {answer}"))
    }

    /// The health entry of `provider`'s key `id`.
    pub async fn key_health(&self, provider: &str, id: &str) -> anyhow::Result<Value> {
        self.key_healths(provider)
            .await?
            .into_iter()
            .find(|key| key["id"] == id)
            .with_context(|| format!("no key {id} in {provider}'s health"))
    }

    // Logs.

    /// `GET /admin/request-logs?QUERY` (`query` without the `?`, may be empty).
    pub async fn request_logs(&self, query: &str) -> anyhow::Result<Value> {
        self.get(&format!("/admin/request-logs?{query}")).await
    }

    fn error(
        &self,
        method: Method,
        path: &str,
        status: StatusCode,
        body: Value,
        expected: &str,
    ) -> AdminError {
        AdminError {
            method,
            path: path.to_owned(),
            status,
            body,
            expected: expected.to_owned(),
        }
    }
}

/// The `id` of an answer.
pub fn id_of(value: &Value) -> anyhow::Result<i64> {
    value["id"]
        .as_i64()
        .with_context(|| format!("no id in {value}"))
}

/// The `data` array of a list answer.
pub fn data(answer: Value) -> anyhow::Result<Vec<Value>> {
    answer["data"]
        .as_array()
        .cloned()
        .with_context(|| format!("no data array in {answer}"))
}
