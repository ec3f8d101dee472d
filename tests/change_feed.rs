//! Three instances on one PostgreSQL (issue 14): a change made through one
//! reaches the others within a second through the change feed (LISTEN/NOTIFY),
//! and key health that matters (a key put to rest by a 429 with
//! `Retry-After`, a key the upstream refused with 401) is shared, so the
//! others do not spend requests on it.
//!
//! The polling fallback is set to a minute here, so only the notifications
//! can make the deadlines. Each deadline is polled, never slept.

pub mod common;

use anyhow::{Context, ensure};
use common::admin::AdminClient;
use common::{MASTER_KEY, TestGateway, chat_body};
use serde_json::{Value, json};
use std::future::Future;
use std::time::{Duration, Instant};
use switchyard::Gateway;
use switchyard::config::{Backend, KeySettings, Secret, Settings};
use switchyard_actors::KeyStrategy;

/// "Within a second" (issue 14).
const DEADLINE: Duration = Duration::from_secs(1);

/// The first instance (whose mock and database the others share) and two more.
struct Three {
    first: TestGateway,
    others: Vec<(Gateway, String)>,
}

impl Three {
    async fn start(configure: impl FnOnce(&mut Settings)) -> anyhow::Result<Self> {
        let first = TestGateway::start(Backend::Postgres, |settings, _| {
            // Only notifications can be fast enough.
            settings.database.sync_interval = Duration::from_secs(60);
            configure(settings);
        })
        .await?;
        let mut others = Vec::new();
        for _ in 0..2 {
            others.push(first.start_another_instance().await?);
        }
        Ok(Self { first, others })
    }

    /// The base URLs of the two other instances.
    fn other_urls(&self) -> Vec<String> {
        self.others.iter().map(|(_, url)| url.clone()).collect()
    }

    async fn chat_status(&self, url: &str, token: &str, model: &str) -> anyhow::Result<u16> {
        let mut response = self
            .first
            .client
            .post(format!("{url}/v1/chat/completions"))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send_json(&chat_body(model, "hi"))
            .await
            .map_err(|error| anyhow::anyhow!("chat on {url}: {error}"))?;
        let _ = response.body().await;
        Ok(response.status().as_u16())
    }

    async fn stop(self) -> anyhow::Result<()> {
        for (gateway, _) in self.others {
            gateway.stop().await?;
        }
        self.first.stop().await
    }
}

/// Polls `check` until it holds; fails once `DEADLINE` (from `since`) passed.
async fn within_deadline<F, Fut>(since: Instant, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(
            since.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_provider_and_key_added_through_one_instance_are_served_by_the_others_within_a_second()
-> anyhow::Result<()> {
    let three = Three::start(|_| {}).await?;
    let token = three.first.create_token(json!({ "name": "t" })).await?;
    for url in three.other_urls() {
        assert_eq!(three.chat_status(&url, &token, "fresh-model").await?, 404);
    }

    // A provider without keys, then its key: two changes, two notifications.
    let admin = three.first.admin_client();
    admin
        .add_provider(json!({
            "name": "fresh",
            "kind": "openai-compatible",
            "base_url": three.first.mock.base_url(),
            "models": ["fresh-model"],
            "keys": [],
        }))
        .await?;
    admin
        .add_key("fresh", json!({ "key": "ok-fresh-key", "id": "main" }))
        .await?;
    let added = Instant::now();
    for url in three.other_urls() {
        within_deadline(added, &format!("the new provider on {url}"), || {
            let (three, url, token) = (&three, &url, &token);
            async move { Ok(three.chat_status(url, token, "fresh-model").await? == 200) }
        })
        .await?;
    }
    assert_eq!(three.first.mock.calls("ok-fresh-key"), 2);

    // Taken away just as fast.
    admin.delete_provider("fresh").await?;
    let deleted = Instant::now();
    for url in three.other_urls() {
        within_deadline(deleted, &format!("the deleted provider on {url}"), || {
            let (three, url, token) = (&three, &url, &token);
            async move { Ok(three.chat_status(url, token, "fresh-model").await? == 404) }
        })
        .await?;
    }
    three.stop().await
}

#[actix_rt::test]
async fn a_token_deleted_on_one_instance_is_refused_by_the_others_within_a_second()
-> anyhow::Result<()> {
    let three = Three::start(|_| {}).await?;
    let admin = three.first.admin_client();
    let created = admin.create_token(json!({ "name": "doomed" })).await?;
    // Cached as valid on every instance first.
    for url in three.other_urls() {
        assert_eq!(
            three.chat_status(&url, &created.token, "mock-gpt").await?,
            200
        );
    }
    admin
        .delete(&format!("/admin/tokens/{}", created.id))
        .await?;
    let deleted = Instant::now();
    for url in three.other_urls() {
        within_deadline(deleted, &format!("the deleted token on {url}"), || {
            let (three, url, token) = (&three, &url, &created.token);
            async move { Ok(three.chat_status(url, token, "mock-gpt").await? == 401) }
        })
        .await?;
    }
    three.stop().await
}

/// The default provider `mock` with a bad key tried first and a good one.
fn bad_key_first(settings: &mut Settings, bad: &str) {
    if let Some(provider) = settings.providers.first_mut() {
        provider.strategy = KeyStrategy::FirstAvailable;
        provider.keys = vec![
            KeySettings::Plain(Secret::new(bad)),
            KeySettings::Plain(Secret::new("ok-1")),
        ];
    }
}

/// The state of key `id` of `mock` as the instance at `url` sees it.
async fn key_state(url: &str, id: &str) -> anyhow::Result<Value> {
    let health = AdminClient::new(url, MASTER_KEY)
        .key_health("mock", id)
        .await?;
    Ok(health["state"].clone())
}

#[actix_rt::test]
async fn a_key_resting_after_a_429_on_one_instance_is_avoided_by_the_others() -> anyhow::Result<()>
{
    let three = Three::start(|settings| bad_key_first(settings, "r429long-1")).await?;
    let token = three.first.create_token(json!({ "name": "t" })).await?;
    // The first instance meets the 429 (Retry-After: 600) and fails over.
    let reply = three
        .first
        .chat(&token, chat_body("mock-gpt", "hi"))
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(three.first.mock.calls("r429long-1"), 1);
    let rested = Instant::now();
    for url in three.other_urls() {
        within_deadline(rested, &format!("the rest on {url}"), || {
            let url = url.clone();
            async move { Ok(key_state(&url, "key-1").await? == "cooling_down") }
        })
        .await?;
    }
    for url in three.other_urls() {
        for _ in 0..3 {
            assert_eq!(three.chat_status(&url, &token, "mock-gpt").await?, 200);
        }
    }
    assert_eq!(
        three.first.mock.calls("r429long-1"),
        1,
        "no other instance spent a request on the resting key"
    );

    // A key added meanwhile reloads the provider everywhere; the rest stays.
    three
        .first
        .admin_client()
        .add_key("mock", json!({ "key": "ok-3", "id": "key-3" }))
        .await?;
    let added = Instant::now();
    for url in three.other_urls() {
        within_deadline(added, &format!("the new key on {url}"), || {
            let url = url.clone();
            async move {
                let keys = AdminClient::new(&url, MASTER_KEY)
                    .key_healths("mock")
                    .await?;
                Ok(keys.len() == 3)
            }
        })
        .await?;
        assert_eq!(key_state(&url, "key-1").await?, "cooling_down", "{url}");
    }
    three.stop().await
}

#[actix_rt::test]
async fn a_key_refused_with_401_on_one_instance_is_avoided_by_the_others() -> anyhow::Result<()> {
    let three = Three::start(|settings| bad_key_first(settings, "e401-1")).await?;
    let token = three.first.create_token(json!({ "name": "t" })).await?;
    let reply = three
        .first
        .chat(&token, chat_body("mock-gpt", "hi"))
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(three.first.mock.calls("e401-1"), 1);
    let refused = Instant::now();
    for url in three.other_urls() {
        within_deadline(refused, &format!("the disabled key on {url}"), || {
            let url = url.clone();
            async move { Ok(key_state(&url, "key-1").await? == "disabled") }
        })
        .await?;
    }
    for url in three.other_urls() {
        for _ in 0..3 {
            assert_eq!(three.chat_status(&url, &token, "mock-gpt").await?, 200);
        }
    }
    assert_eq!(
        three.first.mock.calls("e401-1"),
        1,
        "no other instance spent a request on the refused key"
    );
    let health = three
        .first
        .admin_client()
        .key_health("mock", "key-1")
        .await?;
    ensure!(
        health["disabled_reason"]
            .as_str()
            .context("no reason")?
            .contains("401"),
        "{health}"
    );
    three.stop().await
}

#[actix_rt::test]
async fn an_admin_session_revoked_on_one_instance_is_refused_by_the_others_within_a_second()
-> anyhow::Result<()> {
    // Without the feed, another instance would trust its cached session for
    // this long.
    let three = Three::start(|settings| {
        settings.admin.session_cache_ttl = Duration::from_secs(60);
    })
    .await?;
    let granted = three.first.login(&three.first.bootstrap_key()?).await?;
    let session = granted["token"].as_str().context("no token")?.to_owned();
    let id = granted["session_id"].as_i64().context("no session_id")?;
    let status_on = |url: String| {
        let session = session.clone();
        async move {
            let (status, _) = AdminClient::new(url, session)
                .call(awc::http::Method::GET, "/admin/providers", None)
                .await?;
            anyhow::Ok(status.as_u16())
        }
    };
    for url in three.other_urls() {
        assert_eq!(status_on(url).await?, 200, "cached as valid first");
    }
    three
        .first
        .admin_client()
        .delete(&format!("/admin/sessions/{id}"))
        .await?;
    let revoked = Instant::now();
    for url in three.other_urls() {
        within_deadline(revoked, &format!("the revoked session on {url}"), || {
            let answer = status_on(url.clone());
            async move { Ok(answer.await? == 401) }
        })
        .await?;
    }
    three.stop().await
}
