//! One actor per upstream provider, and the provider's live state that the
//! router's fast path shares with it.
//!
//! The key pool lives in [`ProviderShared`], behind a mutex. Leasing a key
//! and reporting what became of it are short critical sections run on the
//! HTTP worker that serves the request (see [`crate::router::Router`]): no
//! message to another thread per attempt, no health report message per
//! request (profiled in issue 11, the cross-thread hops were the largest
//! single cost of the gateway after the sockets). The actor remains the
//! provider's supervised home: admin changes, probes and supervision go
//! through it, and a restarted actor takes over the same shared state, so
//! key health survives a restart. Every operation on the pool is O(1) in
//! the common case (see [`crate::key_pool`]): no I/O under the lock.
//!
//! A [`Lease`] reports back when finished, or reports `Abandoned` when
//! dropped, so in-flight counts never leak.

use crate::key_pool::{Failure, KeyHealthView, KeyPool, KeySpec, NoUsableKey, Outcome};
use crate::retry::{KeyStrategy, RetryPolicy};
use actix::prelude::*;
use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// What the router and handlers need to know about a provider, fixed for the
/// actor's life.
#[derive(Clone, PartialEq)]
pub struct ProviderSpec {
    pub name: String,
    /// The adapter that speaks this provider's API (`openai`, ...).
    pub kind: String,
    pub base_url: String,
    /// Kind-specific API version (Azure `api-version`, `anthropic-version`).
    pub api_version: Option<String>,
    /// Extra headers sent upstream with every request. They may carry
    /// credentials (an organisation key, a proxy token), so `Debug` masks
    /// their values.
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

/// A provider's live state: its spec, key pool and load figures. Shared by
/// the provider's actor and every lease and router handle that reaches it.
pub struct ProviderShared {
    pub spec: Arc<ProviderSpec>,
    pool: Mutex<KeyPool>,
    stats: ProviderStats,
}

impl ProviderShared {
    pub fn new(spec: ProviderSpec, keys: Vec<KeySpec>) -> Arc<Self> {
        let pool = KeyPool::new(keys, spec.strategy, spec.policy.clone());
        Arc::new(Self {
            spec: Arc::new(spec),
            pool: Mutex::new(pool),
            stats: ProviderStats::default(),
        })
    }

    /// The pool. A panic while it was held (a bug in the pool) leaves it
    /// poisoned; its state is still consistent field by field, and refusing
    /// every later request would turn one bug into an outage.
    fn pool(&self) -> MutexGuard<'_, KeyPool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn stats(&self) -> &ProviderStats {
        &self.stats
    }

    /// Lends a key, excluding the ids in `exclude` (keys this request tried).
    pub fn acquire(self: &Arc<Self>, exclude: &[String]) -> Result<Lease, NoUsableKey> {
        let mut pool = self.pool();
        let index = pool.acquire(Instant::now(), exclude)?;
        let lease = self.lease(&pool, index);
        lease.ok_or(NoUsableKey {
            retry_after: None,
            rate_limited: false,
            busy: false,
        })
    }

    fn lease(self: &Arc<Self>, pool: &KeyPool, index: usize) -> Option<Lease> {
        let key = pool.key(index)?;
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            provider: self.spec.clone(),
            key_index: index,
            key_id: key.id.clone(),
            secret: key.secret.clone(),
            owner: Some(self.clone()),
        })
    }

    fn report(&self, key_index: usize, key_id: &str, outcome: Outcome) {
        self.stats.record(&outcome);
        let mut pool = self.pool();
        // A lease from before a key-set change may point at another key now.
        if pool.key(key_index).is_some_and(|key| key.id == key_id) {
            pool.report(key_index, outcome, Instant::now());
        }
    }

    /// Leases for background probes of idle half-open keys (see
    /// [`KeyPool::take_probes`]); finishing them reports like any lease.
    pub fn take_probes(self: &Arc<Self>) -> Vec<Lease> {
        let mut pool = self.pool();
        let due = pool.take_probes(Instant::now());
        due.into_iter()
            .filter_map(|index| self.lease(&pool, index))
            .collect()
    }

    /// How many keys the provider has, usable or not.
    pub fn key_count(&self) -> usize {
        self.pool().len()
    }

    /// How many keys could take a request now (readiness).
    pub fn usable_keys(&self) -> usize {
        self.pool().usable_keys(Instant::now())
    }

    /// The per-key health table for admins.
    pub fn health(&self) -> Vec<KeyHealthView> {
        self.pool().health(Instant::now())
    }

    /// Enables or disables one key by id; false for an unknown id.
    pub fn set_enabled(&self, key_id: &str, enabled: bool, reason: Option<String>) -> bool {
        self.pool().set_enabled(key_id, enabled, reason)
    }

    /// Rests one key by id for `rest` from now (a cooldown another instance
    /// saw); false for an unknown id.
    pub fn rest(&self, key_id: &str, rest: std::time::Duration) -> bool {
        let now = Instant::now();
        self.pool().rest_until(key_id, now + rest)
    }

    /// Replaces the key set; keys whose id remains keep their health.
    pub fn set_keys(&self, keys: Vec<KeySpec>) {
        self.pool().set_keys(keys);
    }
}

/// The provider's supervised home on the router's arbiter: admin messages
/// and probes reach its [`ProviderShared`] through it.
pub struct ProviderActor {
    shared: Arc<ProviderShared>,
}

/// Provider-wide load figures the router reads to order providers by
/// `least-in-flight` or `latency`.
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
        Self::with_shared(ProviderShared::new(spec, keys))
    }

    /// An actor for existing shared state (a restart keeps key health).
    pub fn with_shared(shared: Arc<ProviderShared>) -> Self {
        Self { shared }
    }

    /// Starts the actor under a supervisor on the current arbiter.
    pub fn start_supervised(spec: ProviderSpec, keys: Vec<KeySpec>) -> Addr<Self> {
        let shared = ProviderShared::new(spec, keys);
        Supervisor::start(move |_| Self::with_shared(shared))
    }
}

impl Actor for ProviderActor {
    type Context = Context<Self>;
}

impl Supervised for ProviderActor {}

/// Asks the actor for a key. `exclude` lists key ids this request already
/// tried here. Only this crate's tests lease through the mailbox: requests
/// lease on their own worker through [`crate::Router`] (issue 11).
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "Result<Lease, NoUsableKey>")]
pub struct Acquire {
    pub exclude: Vec<String>,
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

#[cfg(test)]
impl Handler<Acquire> for ProviderActor {
    type Result = MessageResult<Acquire>;

    fn handle(&mut self, msg: Acquire, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.shared.acquire(&msg.exclude))
    }
}

/// Leases for background probes of idle half-open keys.
#[derive(Message)]
#[rtype(result = "Vec<Lease>")]
pub struct TakeProbes;

impl Handler<TakeProbes> for ProviderActor {
    type Result = MessageResult<TakeProbes>;

    fn handle(&mut self, _: TakeProbes, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.shared.take_probes())
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
            self.shared.spec.name
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
        self.shared.usable_keys()
    }
}

impl Handler<GetHealth> for ProviderActor {
    type Result = MessageResult<GetHealth>;

    fn handle(&mut self, _: GetHealth, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.shared.health())
    }
}

impl Handler<SetKeyEnabled> for ProviderActor {
    type Result = bool;

    fn handle(&mut self, msg: SetKeyEnabled, _: &mut Context<Self>) -> bool {
        self.shared
            .set_enabled(&msg.key_id, msg.enabled, msg.reason)
    }
}

impl Handler<ReplaceKeys> for ProviderActor {
    type Result = ();

    fn handle(&mut self, msg: ReplaceKeys, _: &mut Context<Self>) {
        self.shared.set_keys(msg.0);
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
    owner: Option<Arc<ProviderShared>>,
}

impl Lease {
    /// Reports the attempt's outcome to the provider's pool.
    pub fn finish(mut self, outcome: Outcome) {
        self.report(outcome);
    }

    /// Shorthand for a failure outcome.
    pub fn fail(self, failure: Failure) {
        self.finish(Outcome::Failure(failure));
    }

    fn report(&mut self, outcome: Outcome) {
        if let Some(owner) = self.owner.take() {
            owner.report(self.key_index, &self.key_id, outcome);
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
        self.report(Outcome::Abandoned);
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
