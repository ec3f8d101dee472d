//! One actor per upstream provider: it owns the key pool and lends keys.
//!
//! Handlers are synchronous and O(1) in the common case (see
//! [`crate::key_pool`]): no I/O, no `.await`. The upstream call happens in the
//! HTTP handler holding the [`Lease`]; the lease reports back when finished,
//! or reports `Abandoned` when dropped, so in-flight counts never leak.

use crate::key_pool::{Failure, KeyHealthView, KeyPool, KeySpec, NoUsableKey, Outcome};
use crate::retry::{KeyStrategy, RetryPolicy};
use actix::prelude::*;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// What the router and handlers need to know about a provider, fixed for the
/// actor's life. `Debug` masks header values (they may carry credentials).
#[derive(Clone, PartialEq)]
pub struct ProviderSpec {
    pub name: String,
    /// The adapter that speaks this provider's API (`openai`, ...).
    pub kind: String,
    pub base_url: String,
    /// Kind-specific API version (Azure `api-version`, `anthropic-version`).
    pub api_version: Option<String>,
    /// Extra headers sent upstream with every request.
    pub headers: Vec<(String, String)>,
    pub strategy: KeyStrategy,
    pub policy: RetryPolicy,
}

impl std::fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), crate::redacted(value)))
            .collect();
        f.debug_struct("ProviderSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_version", &self.api_version)
            .field("headers", &headers)
            .field("strategy", &self.strategy)
            .field("policy", &self.policy)
            .finish()
    }
}

pub struct ProviderActor {
    spec: Arc<ProviderSpec>,
    pool: KeyPool,
    stats: Arc<ProviderStats>,
}

/// Provider-wide load figures the router reads without a message, to order
/// providers by `least-in-flight` or `latency`. Written only by the actor.
#[derive(Debug, Default)]
pub struct ProviderStats {
    in_flight: AtomicU32,
    /// Latency EWMA in microseconds, 0 until the first success.
    latency_ewma_us: AtomicU64,
}

impl ProviderStats {
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn latency_ewma_us(&self) -> u64 {
        self.latency_ewma_us.load(Ordering::Relaxed)
    }

    /// Expected wait, lower is better: latency x (in flight + 1).
    pub fn load_score(&self) -> f64 {
        let latency = self.latency_ewma_us().max(1) as f64;
        latency * f64::from(self.in_flight() + 1)
    }

    fn record(&self, outcome: &Outcome) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
        if let Outcome::Success { latency } = outcome {
            let sample = latency.as_micros() as u64;
            let old = self.latency_ewma_us();
            let new = if old == 0 {
                sample
            } else {
                (sample + 4 * old) / 5
            };
            self.latency_ewma_us.store(new, Ordering::Relaxed);
        }
    }
}

/// Where a restarted provider actor reloads its keys from (the database).
pub trait KeySource: Send + Sync + 'static {
    fn load(&self, provider: &str) -> BoxFuture<'static, Result<Vec<KeySpec>, String>>;
}

impl ProviderActor {
    pub fn new(spec: ProviderSpec, keys: Vec<KeySpec>) -> Self {
        Self::with_stats(spec, keys, Arc::default())
    }

    /// An actor that publishes its load into `stats` (shared with the router).
    pub fn with_stats(spec: ProviderSpec, keys: Vec<KeySpec>, stats: Arc<ProviderStats>) -> Self {
        stats.in_flight.store(0, Ordering::Relaxed);
        let pool = KeyPool::new(keys, spec.strategy, spec.policy.clone());
        Self {
            spec: Arc::new(spec),
            pool,
            stats,
        }
    }

    /// Starts the actor under a supervisor on the current arbiter.
    pub fn start_supervised(spec: ProviderSpec, keys: Vec<KeySpec>) -> Addr<Self> {
        Supervisor::start(move |_| Self::new(spec, keys))
    }

    fn lease(&self, index: usize, ctx: &Context<Self>) -> Option<Lease> {
        let key = self.pool.key(index)?;
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            provider: self.spec.clone(),
            key_index: index,
            key_id: key.id.clone(),
            secret: key.secret.clone(),
            reporter: Some(ctx.address().recipient()),
        })
    }
}

impl Actor for ProviderActor {
    type Context = Context<Self>;
}

impl Supervised for ProviderActor {}

/// Asks for a key. `exclude` lists key ids this request already tried here.
#[derive(Message)]
#[rtype(result = "Result<Lease, NoUsableKey>")]
pub struct Acquire {
    pub exclude: Vec<String>,
}

/// Reports what became of a lease. Sent with `try_send`: losing one health
/// sample is harmless, blocking a handler is not.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Report {
    pub key_index: usize,
    pub key_id: String,
    pub outcome: Outcome,
}

/// The per-key health table for admins.
#[derive(Message)]
#[rtype(result = "Vec<KeyHealthView>")]
pub struct GetHealth;

/// Enables or disables one key by id; answers false for an unknown id.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct SetKeyEnabled {
    pub key_id: String,
    pub enabled: bool,
    pub reason: Option<String>,
}

/// Replaces the key set (keys added or removed by an admin); health of keys
/// that remain is kept.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReplaceKeys(pub Vec<KeySpec>);

impl Handler<Acquire> for ProviderActor {
    type Result = MessageResult<Acquire>;

    fn handle(&mut self, msg: Acquire, ctx: &mut Context<Self>) -> Self::Result {
        let result = self
            .pool
            .acquire(Instant::now(), &msg.exclude)
            .and_then(|index| {
                self.lease(index, ctx).ok_or(NoUsableKey {
                    retry_after: None,
                    rate_limited: false,
                    busy: false,
                })
            });
        MessageResult(result)
    }
}

impl Handler<Report> for ProviderActor {
    type Result = ();

    fn handle(&mut self, msg: Report, _: &mut Context<Self>) {
        // A lease from before a key-set change may point at another key now.
        if self
            .pool
            .key(msg.key_index)
            .is_some_and(|key| key.id == msg.key_id)
        {
            self.stats.record(&msg.outcome);
            self.pool.report(msg.key_index, msg.outcome, Instant::now());
        }
    }
}

/// Leases for background probes of idle half-open keys (see
/// [`KeyPool::take_probes`]); finishing them reports like any lease.
#[derive(Message)]
#[rtype(result = "Vec<Lease>")]
pub struct TakeProbes;

impl Handler<TakeProbes> for ProviderActor {
    type Result = MessageResult<TakeProbes>;

    fn handle(&mut self, _: TakeProbes, ctx: &mut Context<Self>) -> Self::Result {
        let due = self.pool.take_probes(Instant::now());
        MessageResult(
            due.into_iter()
                .filter_map(|index| self.lease(index, ctx))
                .collect(),
        )
    }
}

/// Makes the actor panic inside a handler: proves supervision in tests.
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

#[cfg(feature = "fault-injection")]
impl Handler<InjectPanic> for ProviderActor {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
        std::panic::panic_any(format!(
            "fault injection: provider `{}` panics on purpose",
            self.spec.name
        ));
    }
}

/// How many keys could take a request now: what readiness needs, without
/// building the whole health table.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct UsableKeys;

impl Handler<UsableKeys> for ProviderActor {
    type Result = usize;

    fn handle(&mut self, _: UsableKeys, _: &mut Context<Self>) -> usize {
        self.pool.usable_keys(Instant::now())
    }
}

impl Handler<GetHealth> for ProviderActor {
    type Result = MessageResult<GetHealth>;

    fn handle(&mut self, _: GetHealth, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.pool.health(Instant::now()))
    }
}

impl Handler<SetKeyEnabled> for ProviderActor {
    type Result = bool;

    fn handle(&mut self, msg: SetKeyEnabled, _: &mut Context<Self>) -> bool {
        self.pool.set_enabled(&msg.key_id, msg.enabled, msg.reason)
    }
}

impl Handler<ReplaceKeys> for ProviderActor {
    type Result = ();

    fn handle(&mut self, msg: ReplaceKeys, _: &mut Context<Self>) {
        self.pool.set_keys(msg.0);
    }
}

/// A key on loan to one upstream attempt.
///
/// Call [`Lease::finish`] with the outcome. A lease dropped unfinished (the
/// client disconnected, the handler's future was cancelled) reports
/// `Abandoned`, which frees the key's in-flight slot without judging it.
pub struct Lease {
    pub provider: Arc<ProviderSpec>,
    pub key_index: usize,
    pub key_id: String,
    pub secret: Arc<str>,
    reporter: Option<Recipient<Report>>,
}

impl Lease {
    /// Reports the attempt's outcome to the provider actor, without waiting.
    pub fn finish(mut self, outcome: Outcome) {
        self.send(outcome);
    }

    /// Shorthand for a failure outcome.
    pub fn fail(self, failure: Failure) {
        self.finish(Outcome::Failure(failure));
    }

    fn send(&mut self, outcome: Outcome) {
        if let Some(reporter) = self.reporter.take() {
            // A full mailbox drops one health sample; in-flight counts heal
            // when the key set is next replaced. Never block the handler.
            let _ = reporter.try_send(Report {
                key_index: self.key_index,
                key_id: self.key_id.clone(),
                outcome,
            });
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("provider", &self.provider.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.send(Outcome::Abandoned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec() -> ProviderSpec {
        ProviderSpec {
            name: "p".to_owned(),
            kind: "openai".to_owned(),
            base_url: "http://127.0.0.1:1/v1".to_owned(),
            api_version: None,
            headers: Vec::new(),
            strategy: KeyStrategy::RoundRobin,
            policy: RetryPolicy::default(),
        }
    }

    fn key(id: &str) -> KeySpec {
        KeySpec {
            id: id.to_owned(),
            secret: Arc::from("s"),
            weight: 1,
            priority: 0,
            enabled: true,
            disabled_reason: None,
            max_in_flight: 0,
        }
    }

    #[test]
    fn debug_output_never_shows_a_header_value() {
        let spec = ProviderSpec {
            headers: vec![(
                "x-upstream-auth".to_owned(),
                "Bearer hdr-0123456789abcdef-tail".to_owned(),
            )],
            ..spec()
        };
        let printed = format!("{spec:?} {spec:#?}");
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        assert!(printed.contains("x-upstream-auth"), "{printed}");
    }

    #[actix_rt::test]
    async fn leases_report_back_and_dropped_leases_release_the_key() -> Result<(), MailboxError> {
        let addr = ProviderActor::start_supervised(spec(), vec![key("a")]);
        let lease = addr.send(Acquire { exclude: vec![] }).await?;
        let lease = lease.map_err(|_| MailboxError::Closed)?;
        assert_eq!(lease.key_id, "a");
        let health = addr.send(GetHealth).await?;
        assert_eq!(health.first().map(|h| h.in_flight), Some(1));
        drop(lease);
        let health = addr.send(GetHealth).await?;
        assert_eq!(
            health.first().map(|h| (h.in_flight, h.failures)),
            Some((0, 0))
        );

        let lease = addr
            .send(Acquire { exclude: vec![] })
            .await?
            .map_err(|_| MailboxError::Closed)?;
        lease.fail(Failure::RateLimited {
            retry_after: Some(Duration::from_secs(60)),
        });
        let refused = addr.send(Acquire { exclude: vec![] }).await?;
        assert!(refused.is_err());
        assert!(
            addr.send(SetKeyEnabled {
                key_id: "a".to_owned(),
                enabled: true,
                reason: None
            })
            .await?
        );
        assert!(addr.send(Acquire { exclude: vec![] }).await?.is_ok());
        Ok(())
    }
}
