//! The router: from a requested model name to a lease on some provider's key.
//!
//! Resolution, in order:
//! 1. redirect rules (`gpt-4` -> `openai/gpt-4o`), followed up to
//!    [`MAX_REDIRECT_HOPS`] times;
//! 2. `provider/model` pins a provider when the prefix names one (otherwise
//!    the whole string is a bare name, since model ids such as
//!    `meta-llama/Llama-3` contain slashes too);
//! 3. a bare name goes to the providers that list it, ordered by the model's
//!    strategy (`[models.NAME] strategy`, default `first-available`:
//!    declaration order);
//! 4. then the model's fallback chain (`[models.NAME] fallbacks`), each entry
//!    a `provider/model` pair.
//!
//! The router then asks each candidate provider for a key in turn and answers
//! with the first lease. That happens on the caller's thread: [`Router`] is a
//! handle to the routing table the actor owns, and [`Router::route`] locks it
//! for the resolution, then each candidate's pool for the lease (see
//! [`crate::provider`]). The actor applies changes (upserts, removals,
//! redirects, discovered models) and supervises provider actors; nothing on
//! the request path waits for it. Keys and providers a request already tried are
//! excluded, which is how a retry moves to another key and then to the next
//! provider.
//!
//! Supervision: `actix::Supervisor` restarts an actor only when it stops
//! itself; a panic in a handler kills it for good (its mailbox closes). So
//! when a route meets a provider whose mailbox is closed it asks the router
//! actor to start a replacement on the same shared state (key health is
//! kept), which then reloads the keys from the [`KeySource`]. The pool never
//! died with the actor, so the request itself is served meanwhile. Other
//! providers never notice.
//!
//! Live changes: [`UpsertProvider`] adds a provider or replaces one of the
//! same name, [`RemoveProvider`] takes one out of routing. Routing futures
//! in flight hold indices into the provider table, so the table never
//! shifts: a replacement takes the place of the provider it replaces (and a
//! provider re-added after its removal takes its old place back), and a
//! removed provider leaves a tombstone that every lookup skips. The actor of
//! a replaced or removed provider is not stopped: it lives until the last
//! lease it handed out reports back (leases hold its address), then stops.

use crate::key_pool::{KeyHealthView, KeySpec, NoUsableKey};
use crate::provider::{KeySource, Lease, ProviderActor, ProviderShared, ProviderSpec};
use crate::retry::KeyStrategy;
use actix::prelude::*;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub const MAX_REDIRECT_HOPS: usize = 8;

use crate::LogHook;

/// A provider as the router sees it.
pub struct ProviderRoute {
    pub spec: Arc<ProviderSpec>,
    /// The provider's supervised actor (admin messages, probes).
    pub addr: Addr<ProviderActor>,
    /// Its key pool and load figures, shared with the actor and leases.
    pub shared: Arc<ProviderShared>,
    /// Bare model names it serves, as declared in settings.
    pub models: Vec<String>,
    /// Model names found in the provider's own model list (model cache),
    /// routable by bare name after the declared ones.
    pub discovered: Vec<String>,
    /// Share of traffic under the `weighted` model strategy.
    pub weight: u32,
}

impl ProviderRoute {
    /// Starts the provider's actor, supervised, on the current arbiter.
    pub fn start(spec: ProviderSpec, keys: Vec<KeySpec>, models: Vec<String>, weight: u32) -> Self {
        let shared = ProviderShared::new(spec, keys);
        let addr = spawn_provider(shared.clone());
        Self {
            spec: shared.spec.clone(),
            addr,
            shared,
            models,
            discovered: Vec::new(),
            weight: weight.max(1),
        }
    }
}

/// A place in the provider table (see the module docs on live changes).
enum Slot {
    Live(ProviderRoute),
    /// Removed by an admin; the name is kept so that re-adding the provider
    /// takes this place back.
    Removed(String),
}

impl Slot {
    fn live(&self) -> Option<&ProviderRoute> {
        match self {
            Slot::Live(route) => Some(route),
            Slot::Removed(_) => None,
        }
    }

    fn live_mut(&mut self) -> Option<&mut ProviderRoute> {
        match self {
            Slot::Live(route) => Some(route),
            Slot::Removed(_) => None,
        }
    }

    fn name(&self) -> &str {
        match self {
            Slot::Live(route) => &route.spec.name,
            Slot::Removed(name) => name,
        }
    }
}

/// The live providers with their indices, tombstones skipped.
fn live(providers: &[Slot]) -> impl Iterator<Item = (usize, &ProviderRoute)> {
    providers
        .iter()
        .enumerate()
        .filter_map(|(index, slot)| slot.live().map(|route| (index, route)))
}

/// Provider name -> index, live providers only.
fn name_index(providers: &[Slot]) -> HashMap<String, usize> {
    live(providers)
        .map(|(index, provider)| (provider.spec.name.clone(), index))
        .collect()
}

/// Model name -> providers serving it: every provider declaring the model
/// (in declaration order), then those that only list it themselves.
fn model_index(providers: &[Slot]) -> HashMap<String, Vec<usize>> {
    let mut by_model: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, provider) in live(providers) {
        for model in &provider.models {
            let serving = by_model.entry(model.clone()).or_default();
            if !serving.contains(&index) {
                serving.push(index);
            }
        }
    }
    for (index, provider) in live(providers) {
        for model in &provider.discovered {
            let serving = by_model.entry(model.clone()).or_default();
            if !serving.contains(&index) {
                serving.push(index);
            }
        }
    }
    by_model
}

fn spawn_provider(shared: Arc<ProviderShared>) -> Addr<ProviderActor> {
    Supervisor::start(move |_| ProviderActor::with_shared(shared))
}

/// How a model is spread over the providers that serve it, and where it
/// goes when they all fail.
#[derive(Debug, Clone, Default)]
pub struct ModelRoute {
    pub strategy: KeyStrategy,
    /// `provider/model` pairs tried after the model's own providers.
    pub fallbacks: Vec<String>,
}

/// What routing decides from: the provider table, its indices, redirects
/// and per-model strategies. Owned by the [`RouterActor`] (which alone
/// changes the table's shape) and read by every [`Router`] handle.
pub struct RouteTable {
    providers: Vec<Slot>,
    by_name: HashMap<String, usize>,
    by_model: HashMap<String, Vec<usize>>,
    redirects: HashMap<String, String>,
    models: HashMap<String, ModelRoute>,
    cursors: HashMap<String, usize>,
    rng: SmallRng,
}

pub struct RouterActor {
    table: Arc<Mutex<RouteTable>>,
    key_source: Option<Arc<dyn KeySource>>,
    log: LogHook,
    restarts: u64,
}

/// Locks the table. Every change to it is a few assignments that cannot
/// panic halfway in a way that matters, so a poisoned lock is used as is.
fn lock(table: &Mutex<RouteTable>) -> MutexGuard<'_, RouteTable> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RouterActor {
    pub fn new(providers: Vec<ProviderRoute>, redirects: HashMap<String, String>) -> Self {
        let providers: Vec<Slot> = providers.into_iter().map(Slot::Live).collect();
        let by_name = name_index(&providers);
        let by_model = model_index(&providers);
        let table = RouteTable {
            providers,
            by_name,
            by_model,
            redirects,
            models: HashMap::new(),
            cursors: HashMap::new(),
            rng: SmallRng::from_rng(&mut rand::rng()),
        };
        Self {
            table: Arc::new(Mutex::new(table)),
            key_source: None,
            log: Arc::new(|_| {}),
            restarts: 0,
        }
    }

    /// Per-model strategies and fallback chains, keyed by model name (after
    /// redirects).
    pub fn with_models(self, models: HashMap<String, ModelRoute>) -> Self {
        lock(&self.table).models = models;
        self
    }

    /// Starts the router on `arbiter` (with the provider actors it builds
    /// there) and returns the handle the request path routes with.
    pub async fn start_on(
        arbiter: &actix::ArbiterHandle,
        build: impl FnOnce() -> Self + Send + 'static,
    ) -> Option<Router> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let actor = RouterActor::start_in_arbiter(arbiter, move |_| {
            let router = build();
            let _ = sender.send(router.table.clone());
            router
        });
        let table = receiver.await.ok()?;
        Some(Router { table, actor })
    }

    /// A handle for routing on this thread (tests build the actor here).
    pub fn start_here(self) -> Router {
        let table = self.table.clone();
        Router {
            table,
            actor: self.start(),
        }
    }

    /// Candidate providers for `requested` (see [`RouteTable::resolve`]).
    pub fn resolve(&mut self, requested: &str) -> Result<Vec<(usize, String)>, RouteError> {
        lock(&self.table).resolve(requested)
    }

    /// The table itself (unit tests of its decisions).
    #[cfg(test)]
    fn table(&self) -> MutexGuard<'_, RouteTable> {
        lock(&self.table)
    }

    /// The live provider at `index` (tests).
    pub fn provider_shared(&self, index: usize) -> Option<Arc<ProviderShared>> {
        lock(&self.table)
            .provider(index)
            .map(|provider| provider.shared.clone())
    }

    /// Where replacement provider actors reload their keys from.
    pub fn with_key_source(mut self, source: Arc<dyn KeySource>) -> Self {
        self.key_source = Some(source);
        self
    }

    pub fn with_log(mut self, log: LogHook) -> Self {
        self.log = log;
        self
    }

    /// Provider actors restarted so far.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

impl RouteTable {
    /// The live provider at `index` (`None` for a tombstone).
    fn provider(&self, index: usize) -> Option<&ProviderRoute> {
        self.providers.get(index).and_then(Slot::live)
    }

    fn provider_mut(&mut self, index: usize) -> Option<&mut ProviderRoute> {
        self.providers.get_mut(index).and_then(Slot::live_mut)
    }

    /// Rebuilds the name and model indices after the table changed.
    fn reindex(&mut self) {
        self.by_name = name_index(&self.providers);
        self.by_model = model_index(&self.providers);
    }

    /// Adds `route`, or puts it in the place of the provider (or tombstone)
    /// of the same name. A replaced provider's discovered models carry over
    /// when it still talks to the same API (same kind and base URL).
    fn upsert(&mut self, msg: UpsertProvider) -> Upserted {
        let name = msg.spec.name.clone();
        let position = self.providers.iter().position(|slot| slot.name() == name);
        let slot = position.and_then(|index| self.providers.get_mut(index));
        let outcome = match slot {
            // Same connection settings and a running actor: keep the actor
            // (and its key health), change what the router holds.
            Some(Slot::Live(route)) if *route.spec == msg.spec => {
                route.models = msg.models;
                route.weight = msg.weight.max(1);
                route.shared.set_keys(msg.keys);
                if !route.addr.connected() {
                    route.addr = spawn_provider(route.shared.clone());
                }
                Upserted::Updated
            }
            Some(slot) => {
                let (discovered, outcome) = match &*slot {
                    Slot::Live(old)
                        if old.spec.kind == msg.spec.kind
                            && old.spec.base_url == msg.spec.base_url =>
                    {
                        (old.discovered.clone(), Upserted::Restarted)
                    }
                    Slot::Live(_) => (Vec::new(), Upserted::Restarted),
                    Slot::Removed(_) => (Vec::new(), Upserted::Started),
                };
                let mut route = ProviderRoute::start(msg.spec, msg.keys, msg.models, msg.weight);
                route.discovered = discovered;
                *slot = Slot::Live(route);
                outcome
            }
            None => {
                self.providers.push(Slot::Live(ProviderRoute::start(
                    msg.spec, msg.keys, msg.models, msg.weight,
                )));
                Upserted::Started
            }
        };
        self.reindex();
        outcome
    }

    /// Takes the named provider out of routing; false when there is none.
    fn remove(&mut self, name: &str) -> bool {
        let Some(&index) = self.by_name.get(name) else {
            return false;
        };
        if let Some(slot) = self.providers.get_mut(index) {
            *slot = Slot::Removed(name.to_owned());
        }
        self.reindex();
        true
    }

    fn follow_redirects<'a>(&'a self, requested: &'a str) -> &'a str {
        let mut model = requested;
        for _ in 0..MAX_REDIRECT_HOPS {
            match self.redirects.get(model) {
                Some(target) if target != model => model = target,
                _ => break,
            }
        }
        model
    }

    /// `provider/model` when the prefix names a provider.
    fn pinned(&self, model: &str) -> Option<(usize, String)> {
        let (prefix, rest) = model.split_once('/')?;
        let index = *self.by_name.get(prefix)?;
        (!rest.is_empty()).then(|| (index, rest.to_owned()))
    }

    /// Candidate providers (indices) in the order to try them, and the model
    /// name each should receive.
    pub fn resolve(&mut self, requested: &str) -> Result<Vec<(usize, String)>, RouteError> {
        let model = self.follow_redirects(requested).to_owned();
        let mut candidates = Vec::new();
        if let Some(pinned) = self.pinned(&model) {
            candidates.push(pinned);
        } else if let Some(indices) = self.by_model.get(&model).cloned() {
            let ordered = self.order(&model, indices);
            candidates.extend(ordered.into_iter().map(|index| (index, model.clone())));
        }
        if let Some(route) = self.models.get(&model) {
            for fallback in &route.fallbacks {
                if let Some(candidate) = self.pinned(fallback)
                    && !candidates.contains(&candidate)
                {
                    candidates.push(candidate);
                }
            }
        }
        if candidates.is_empty() {
            return Err(RouteError::UnknownModel(requested.to_owned()));
        }
        Ok(candidates)
    }

    /// Orders the providers serving `model` by the model's strategy.
    fn order(&mut self, model: &str, mut indices: Vec<usize>) -> Vec<usize> {
        let strategy = self
            .models
            .get(model)
            .map_or(KeyStrategy::FirstAvailable, |route| route.strategy);
        match strategy {
            KeyStrategy::FirstAvailable => {}
            KeyStrategy::RoundRobin => {
                let cursor = self.cursors.entry(model.to_owned()).or_insert(0);
                let len = indices.len().max(1);
                indices.rotate_left(*cursor % len);
                *cursor = (*cursor + 1) % len;
            }
            KeyStrategy::Random => indices.shuffle(&mut self.rng),
            KeyStrategy::Weighted => {
                // Weighted draw without replacement: the first is chosen by
                // weight, the rest follow in declaration order.
                let weights: Vec<u32> = indices
                    .iter()
                    .map(|&index| self.provider(index).map_or(1, |provider| provider.weight))
                    .collect();
                let total: u32 = weights.iter().sum();
                if total > 0 {
                    let mut ticket = self.rng.random_range(0..total);
                    let mut chosen = 0;
                    for (position, weight) in weights.iter().enumerate() {
                        if ticket < *weight {
                            chosen = position;
                            break;
                        }
                        ticket -= weight;
                    }
                    let first = indices.remove(chosen);
                    indices.insert(0, first);
                }
            }
            KeyStrategy::LeastInFlight => indices.sort_by_key(|&index| {
                self.provider(index)
                    .map_or(u32::MAX, |provider| provider.shared.stats().in_flight())
            }),
            KeyStrategy::Latency => indices.sort_by(|&a, &b| {
                let score = |index: usize| {
                    self.provider(index)
                        .map_or(f64::MAX, |provider| provider.shared.stats().load_score())
                };
                score(a).total_cmp(&score(b))
            }),
        }
        indices
    }

    /// Every model a client can ask for by a bare name, with its first provider.
    pub fn models(&self) -> Vec<ModelEntry> {
        let mut entries: Vec<ModelEntry> = self
            .by_model
            .iter()
            .filter_map(|(model, indices)| {
                let provider = self.provider(*indices.first()?)?;
                Some(ModelEntry {
                    id: model.clone(),
                    owned_by: provider.spec.name.clone(),
                })
            })
            .collect();
        for from in self.redirects.keys() {
            let target = self.follow_redirects(from);
            let first = self.pinned(target).map(|(index, _)| index).or_else(|| {
                self.by_model
                    .get(target)
                    .and_then(|indices| indices.first().copied())
            });
            if let Some(provider) = first.and_then(|index| self.provider(index))
                && !entries.iter().any(|entry| &entry.id == from)
            {
                entries.push(ModelEntry {
                    id: from.clone(),
                    owned_by: provider.spec.name.clone(),
                });
            }
        }
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        entries
    }
}

impl RouterActor {
    /// Restarts provider `index` if its actor has died (see module docs).
    fn ensure_alive(&mut self, index: usize, ctx: &mut Context<Self>) {
        let dead = lock(&self.table)
            .provider(index)
            .is_some_and(|provider| !provider.addr.connected());
        if dead {
            self.respawn(index, ctx);
        }
    }

    /// Starts a replacement actor for provider `index` on the same shared
    /// state and reloads its keys.
    fn respawn(&mut self, index: usize, ctx: &mut Context<Self>) {
        let (name, shared) = {
            let mut table = lock(&self.table);
            let Some(provider) = table.provider_mut(index) else {
                return;
            };
            provider.addr = spawn_provider(provider.shared.clone());
            (provider.spec.name.clone(), provider.shared.clone())
        };
        self.restarts += 1;
        (self.log)(&format!(
            "provider.restarted: `{name}` was down and has been restarted"
        ));
        if let Some(source) = &self.key_source {
            ctx.spawn(source.load(&name).into_actor(self).map(
                move |loaded, router, _| match loaded {
                    Ok(keys) => shared.set_keys(keys),
                    Err(error) => {
                        (router.log)(&format!("provider.reload_failed: `{name}`: {error}"))
                    }
                },
            ));
        }
    }

    #[cfg(test)]
    fn ensure_all_alive(&mut self, ctx: &mut Context<Self>) {
        let count = lock(&self.table).providers.len();
        for index in 0..count {
            self.ensure_alive(index, ctx);
        }
    }
}

impl Actor for RouterActor {
    type Context = Context<Self>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    pub id: String,
    pub owned_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No redirect, provider prefix or provider serves this name.
    UnknownModel(String),
    /// Every candidate provider is out of usable keys. `rate_limited`: the
    /// keys that will recover are all resting after a 429, none after errors.
    /// `busy`: some key is only at its concurrency cap.
    NoUsableKey {
        retry_after: Option<Duration>,
        rate_limited: bool,
        busy: bool,
        /// Keys configured across the candidates, usable or not: none at
        /// all is a settings problem, not a health one.
        configured: usize,
    },
    /// A pinned route named no routed provider.
    UnknownProvider(String),
}

/// Keys this request has already tried, per provider.
#[derive(Debug, Clone, Default)]
pub struct Tried {
    entries: Vec<(String, String)>,
}

impl Tried {
    pub fn add(&mut self, provider: &str, key_id: &str) {
        self.entries.push((provider.to_owned(), key_id.to_owned()));
    }

    pub fn keys_of(&self, provider: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(name, _)| name == provider)
            .map(|(_, key)| key.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Routes one attempt of a request through the actor's mailbox. Only this
/// crate's tests do: requests route on their own worker with
/// [`Router::route`], which takes the same decisions.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "Result<Routed, RouteError>")]
pub struct Route {
    pub model: String,
    pub tried: Tried,
}

/// A lease plus the model name to send upstream.
#[derive(Debug)]
pub struct Routed {
    pub lease: Lease,
    pub upstream_model: String,
}

/// Lists the routable models.
#[derive(Message)]
#[rtype(result = "Vec<ModelEntry>")]
pub struct ListModels;

/// Replaces the models a provider listed itself (model cache refresh).
/// Answers false when there is no such provider.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct SetDiscoveredModels {
    pub provider: String,
    pub models: Vec<String>,
}

/// Replaces the redirect rules (admin API changes).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetRedirects(pub HashMap<String, String>);

/// Replaces the per-model strategies and fallback chains (a settings
/// reload, `src/reload.rs`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetModelRoutes(pub HashMap<String, ModelRoute>);

/// Looks a provider's actor up by name. Only this crate's tests use it:
/// outside the actors, providers are reached through [`Router`] by name, so
/// nothing else holds a provider's address (issue 11).
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "Option<Addr<ProviderActor>>")]
pub struct GetProvider(pub String);

/// A handle to the routing table, cheap to clone and usable from any thread:
/// what the request path routes with (see the module docs).
#[derive(Clone)]
pub struct Router {
    table: Arc<Mutex<RouteTable>>,
    actor: Addr<RouterActor>,
}

impl Router {
    /// The router actor, for changes and admin views.
    pub fn actor(&self) -> &Addr<RouterActor> {
        &self.actor
    }

    /// Routes one attempt of a request for `model`, excluding the keys in
    /// `tried`: a lease on the first candidate provider with a usable key.
    pub fn route(&self, model: &str, tried: &Tried) -> Result<Routed, RouteError> {
        let candidates = {
            let mut table = lock(&self.table);
            let found = table.resolve(model)?;
            self.candidates(&table, found)
        };
        acquire_first(candidates, tried)
    }

    /// A lease on a key of the named provider (the proxy and the model cache
    /// name their provider); the model name is the requested one.
    pub fn route_pinned(&self, provider: &str, tried: &Tried) -> Result<Lease, RouteError> {
        let candidates = {
            let table = lock(&self.table);
            let index = table
                .by_name
                .get(provider)
                .copied()
                .ok_or_else(|| RouteError::UnknownProvider(provider.to_owned()))?;
            self.candidates(&table, vec![(index, String::new())])
        };
        acquire_first(candidates, tried).map(|routed| routed.lease)
    }

    /// The named live provider's shared state (restarted if its actor died).
    fn provider(&self, name: &str) -> Option<Arc<ProviderShared>> {
        let table = lock(&self.table);
        let index = *table.by_name.get(name)?;
        self.candidates(&table, vec![(index, String::new())])
            .pop()
            .map(|(shared, _)| shared)
    }

    /// Every live provider, in declaration order.
    fn live_providers(&self) -> Vec<Arc<ProviderShared>> {
        let table = lock(&self.table);
        let found = live(&table.providers)
            .map(|(index, _)| (index, String::new()))
            .collect();
        self.candidates(&table, found)
            .into_iter()
            .map(|(shared, _)| shared)
            .collect()
    }

    /// Names of the routed providers, in declaration order.
    pub fn provider_names(&self) -> Vec<String> {
        self.live_providers()
            .iter()
            .map(|shared| shared.spec.name.clone())
            .collect()
    }

    /// Whether `name` is a routed provider.
    pub fn routes_provider(&self, name: &str) -> bool {
        self.provider(name).is_some()
    }

    /// The named provider's key health; `None` when it is not routed.
    pub fn health(&self, name: &str) -> Option<Vec<KeyHealthView>> {
        self.provider(name).map(|shared| shared.health())
    }

    /// Every routed provider's key health, in declaration order.
    pub fn health_all(&self) -> Vec<(String, Vec<KeyHealthView>)> {
        self.live_providers()
            .iter()
            .map(|shared| (shared.spec.name.clone(), shared.health()))
            .collect()
    }

    /// Enables or disables one key; `None` when the provider is not routed,
    /// `Some(false)` when it has no such key.
    pub fn set_key_enabled(
        &self,
        name: &str,
        key_id: &str,
        enabled: bool,
        reason: Option<String>,
    ) -> Option<bool> {
        self.provider(name)
            .map(|shared| shared.set_enabled(key_id, enabled, reason))
    }

    /// Rests one key of the named provider for `rest` (a cooldown another
    /// instance shared). `None` when the provider is not routed, else
    /// whether it has that key.
    pub fn rest_key(&self, name: &str, key_id: &str, rest: std::time::Duration) -> Option<bool> {
        self.provider(name).map(|shared| shared.rest(key_id, rest))
    }

    /// Replaces the named provider's keys (health of surviving ids kept);
    /// false when it is not routed.
    pub fn replace_keys(&self, name: &str, keys: Vec<KeySpec>) -> bool {
        self.provider(name)
            .map(|shared| shared.set_keys(keys))
            .is_some()
    }

    /// Keys that could take a request now, over every routed provider.
    pub fn usable_keys(&self) -> usize {
        self.live_providers()
            .iter()
            .map(|shared| shared.usable_keys())
            .sum()
    }

    /// Leases for background probes of idle half-open keys, every provider.
    pub fn take_probes(&self) -> Vec<Lease> {
        self.live_providers()
            .iter()
            .flat_map(|shared| shared.take_probes())
            .collect()
    }

    /// The shared state of each found provider; asks the actor to restart
    /// those whose actor died (the request goes on with the shared state).
    fn candidates(
        &self,
        table: &RouteTable,
        found: Vec<(usize, String)>,
    ) -> Vec<(Arc<ProviderShared>, String)> {
        found
            .into_iter()
            .filter_map(|(index, upstream_model)| {
                let provider = table.provider(index)?;
                if !provider.addr.connected() {
                    self.actor.do_send(EnsureAlive(index));
                }
                Some((provider.shared.clone(), upstream_model))
            })
            .collect()
    }
}

/// Asks each candidate in turn for a lease.
fn acquire_first(
    candidates: Vec<(Arc<ProviderShared>, String)>,
    tried: &Tried,
) -> Result<Routed, RouteError> {
    let mut retry_after: Option<Duration> = None;
    let mut failing_keys_rest = false;
    let mut busy = false;
    let mut configured = 0;
    for (shared, upstream_model) in candidates {
        let exclude = tried.keys_of(&shared.spec.name);
        match shared.acquire(&exclude) {
            Ok(lease) => {
                return Ok(Routed {
                    lease,
                    upstream_model,
                });
            }
            Err(NoUsableKey {
                retry_after: wait,
                rate_limited,
                busy: at_cap,
            }) => {
                failing_keys_rest |= wait.is_some() && !rate_limited;
                busy |= at_cap;
                configured += shared.key_count();
                retry_after = match (retry_after, wait) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    Err(RouteError::NoUsableKey {
        retry_after,
        rate_limited: retry_after.is_some() && !failing_keys_rest,
        busy,
        configured,
    })
}

/// Restarts the provider at an index if its actor died (sent by routes that
/// met a closed mailbox).
#[derive(Message)]
#[rtype(result = "()")]
struct EnsureAlive(usize);

impl Handler<EnsureAlive> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: EnsureAlive, ctx: &mut Context<Self>) {
        self.ensure_alive(msg.0, ctx);
    }
}

#[cfg(test)]
impl Handler<Route> for RouterActor {
    type Result = MessageResult<Route>;

    fn handle(&mut self, msg: Route, ctx: &mut Context<Self>) -> Self::Result {
        let found = match self.resolve(&msg.model) {
            Ok(found) => found,
            Err(error) => return MessageResult(Err(error)),
        };
        for (index, _) in &found {
            self.ensure_alive(*index, ctx);
        }
        let candidates = {
            let table = lock(&self.table);
            found
                .into_iter()
                .filter_map(|(index, upstream_model)| {
                    Some((table.provider(index)?.shared.clone(), upstream_model))
                })
                .collect()
        };
        MessageResult(acquire_first(candidates, &msg.tried))
    }
}

impl Handler<SetDiscoveredModels> for RouterActor {
    type Result = bool;

    fn handle(&mut self, msg: SetDiscoveredModels, _: &mut Context<Self>) -> bool {
        let mut table = lock(&self.table);
        let Some(&index) = table.by_name.get(&msg.provider) else {
            return false;
        };
        if let Some(provider) = table.provider_mut(index) {
            provider.discovered = msg.models;
        }
        table.by_model = model_index(&table.providers);
        true
    }
}

impl Handler<SetRedirects> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: SetRedirects, _: &mut Context<Self>) {
        lock(&self.table).redirects = msg.0;
    }
}

impl Handler<SetModelRoutes> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: SetModelRoutes, _: &mut Context<Self>) {
        lock(&self.table).models = msg.0;
    }
}

impl Handler<ListModels> for RouterActor {
    type Result = MessageResult<ListModels>;

    fn handle(&mut self, _: ListModels, _: &mut Context<Self>) -> Self::Result {
        MessageResult(lock(&self.table).models())
    }
}

#[cfg(test)]
impl Handler<GetProvider> for RouterActor {
    type Result = Option<Addr<ProviderActor>>;

    fn handle(&mut self, msg: GetProvider, ctx: &mut Context<Self>) -> Self::Result {
        let index = *lock(&self.table).by_name.get(&msg.0)?;
        self.ensure_alive(index, ctx);
        lock(&self.table)
            .provider(index)
            .map(|provider| provider.addr.clone())
    }
}

/// Provider names and actors, in declaration order; removed providers are
/// not listed. This crate's tests only (see [`GetProvider`]).
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "Vec<(String, Addr<ProviderActor>)>")]
pub struct ListProviders;

#[cfg(test)]
impl Handler<ListProviders> for RouterActor {
    type Result = MessageResult<ListProviders>;

    fn handle(&mut self, _: ListProviders, ctx: &mut Context<Self>) -> Self::Result {
        self.ensure_all_alive(ctx);
        MessageResult(
            live(&lock(&self.table).providers)
                .map(|(_, provider)| (provider.spec.name.clone(), provider.addr.clone()))
                .collect(),
        )
    }
}

/// Adds a provider to routing, or replaces the one of the same name (admin
/// changes, effective for the next request). A new actor is started on the
/// router's arbiter unless only the models, weight or keys changed.
#[derive(Message)]
#[rtype(result = "Upserted")]
pub struct UpsertProvider {
    pub spec: ProviderSpec,
    pub keys: Vec<KeySpec>,
    /// Bare model names it serves.
    pub models: Vec<String>,
    /// Share of traffic under a model's `weighted` strategy.
    pub weight: u32,
}

/// What [`UpsertProvider`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A provider new to routing (or back after its removal) was started.
    Started,
    /// Its connection settings changed: a new actor took its place (key
    /// health starts afresh).
    Restarted,
    /// Only models, weight or keys changed: the running actor was kept.
    Updated,
}

impl Handler<UpsertProvider> for RouterActor {
    type Result = MessageResult<UpsertProvider>;

    fn handle(&mut self, msg: UpsertProvider, _: &mut Context<Self>) -> Self::Result {
        MessageResult(lock(&self.table).upsert(msg))
    }
}

/// Takes a provider out of routing (deleted or disabled by an admin);
/// answers false when no such provider is routed.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct RemoveProvider(pub String);

impl Handler<RemoveProvider> for RouterActor {
    type Result = bool;

    fn handle(&mut self, msg: RemoveProvider, _: &mut Context<Self>) -> bool {
        lock(&self.table).remove(&msg.0)
    }
}

/// Makes the named provider's actor panic (supervision tests); answers
/// false when no such provider is routed.
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "bool")]
pub struct InjectProviderPanic(pub String);

#[cfg(feature = "fault-injection")]
impl Handler<InjectProviderPanic> for RouterActor {
    type Result = bool;

    fn handle(&mut self, msg: InjectProviderPanic, _: &mut Context<Self>) -> bool {
        let table = lock(&self.table);
        let Some(provider) = table.by_name.get(&msg.0).and_then(|&i| table.provider(i)) else {
            return false;
        };
        provider.addr.do_send(crate::provider::InjectPanic);
        true
    }
}

/// Whether the named provider's actor is running (supervision tests).
#[derive(Message)]
#[rtype(result = "Option<bool>")]
pub struct ProviderRunning(pub String);

impl Handler<ProviderRunning> for RouterActor {
    type Result = Option<bool>;

    fn handle(&mut self, msg: ProviderRunning, _: &mut Context<Self>) -> Option<bool> {
        let table = lock(&self.table);
        let index = *table.by_name.get(&msg.0)?;
        table
            .provider(index)
            .map(|provider| provider.addr.connected())
    }
}

/// How many provider actors the router has restarted.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct GetRestarts;

impl Handler<GetRestarts> for RouterActor {
    type Result = u64;

    fn handle(&mut self, _: GetRestarts, _: &mut Context<Self>) -> u64 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::GetHealth;
    use crate::retry::RetryPolicy;

    fn provider(name: &str, models: &[&str], keys: &[&str]) -> ProviderRoute {
        let spec = ProviderSpec {
            name: name.to_owned(),
            kind: "openai".to_owned(),
            base_url: format!("http://{name}.invalid/v1"),
            api_version: None,
            headers: Vec::new(),
            strategy: KeyStrategy::RoundRobin,
            policy: RetryPolicy::default(),
        };
        let keys = keys
            .iter()
            .map(|id| KeySpec {
                id: (*id).to_owned(),
                secret: Arc::from("s"),
                weight: 1,
                priority: 0,
                enabled: true,
                disabled_reason: None,
                max_in_flight: 0,
            })
            .collect();
        ProviderRoute::start(
            spec,
            keys,
            models.iter().map(|m| (*m).to_owned()).collect(),
            1,
        )
    }

    fn router() -> RouterActor {
        let redirects = HashMap::from([
            ("gpt-4".to_owned(), "openai/gpt-4o".to_owned()),
            ("loop-a".to_owned(), "loop-b".to_owned()),
            ("loop-b".to_owned(), "loop-a".to_owned()),
        ]);
        RouterActor::new(
            vec![
                provider("openai", &["gpt-4o", "shared"], &["o1", "o2"]),
                provider("azure", &["shared"], &["a1"]),
            ],
            redirects,
        )
    }

    #[actix_rt::test]
    async fn discovered_models_route_after_declared_ones_and_redirects_are_replaced() {
        let router = router().start();
        // `gpt-4o` is declared by openai; azure lists it itself, plus a new one.
        let known = router
            .send(SetDiscoveredModels {
                provider: "azure".to_owned(),
                models: vec!["gpt-4o".to_owned(), "o3".to_owned()],
            })
            .await;
        assert_eq!(known.ok(), Some(true));
        let unknown = router
            .send(SetDiscoveredModels {
                provider: "nope".to_owned(),
                models: vec![],
            })
            .await;
        assert_eq!(unknown.ok(), Some(false));
        let ids: Vec<String> = router
            .send(ListModels)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, vec!["gpt-4", "gpt-4o", "o3", "shared"]);
        let routed = router
            .send(Route {
                model: "o3".to_owned(),
                tried: Tried::default(),
            })
            .await;
        assert!(
            matches!(routed, Ok(Ok(ref r)) if r.lease.provider.name == "azure"),
            "o3 must route to azure"
        );
        router
            .send(SetRedirects(HashMap::from([(
                "fast".to_owned(),
                "o3".to_owned(),
            )])))
            .await
            .ok();
        let ids: Vec<String> = router
            .send(ListModels)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, vec!["fast", "gpt-4o", "o3", "shared"]);
    }

    #[actix_rt::test]
    async fn resolves_prefixes_bare_names_and_redirects() {
        let mut router = router();
        assert_eq!(
            router.resolve("openai/gpt-4o"),
            Ok(vec![(0, "gpt-4o".to_owned())])
        );
        assert_eq!(
            router.resolve("azure/anything"),
            Ok(vec![(1, "anything".to_owned())])
        );
        assert_eq!(router.resolve("gpt-4"), Ok(vec![(0, "gpt-4o".to_owned())]));
        assert_eq!(
            router.resolve("shared"),
            Ok(vec![(0, "shared".to_owned()), (1, "shared".to_owned())])
        );
        assert_eq!(
            router.resolve("nope"),
            Err(RouteError::UnknownModel("nope".to_owned()))
        );
        // A slash that names no provider is part of a bare name.
        assert_eq!(
            router.resolve("meta-llama/x"),
            Err(RouteError::UnknownModel("meta-llama/x".to_owned()))
        );
        // Redirect loops end instead of spinning.
        assert!(matches!(
            router.resolve("loop-a"),
            Err(RouteError::UnknownModel(_))
        ));
    }

    #[actix_rt::test]
    async fn retries_move_to_other_keys_then_other_providers() -> Result<(), MailboxError> {
        let router = router().start();
        let mut tried = Tried::default();
        let mut served = Vec::new();
        for _ in 0..3 {
            let routed = router
                .send(Route {
                    model: "shared".to_owned(),
                    tried: tried.clone(),
                })
                .await?;
            let Ok(routed) = routed else {
                panic!("expected a lease, got {routed:?}");
            };
            tried.add(&routed.lease.provider.name, &routed.lease.key_id);
            served.push(format!(
                "{}:{}",
                routed.lease.provider.name, routed.lease.key_id
            ));
        }
        assert_eq!(served, vec!["openai:o1", "openai:o2", "azure:a1"]);
        let exhausted = router
            .send(Route {
                model: "shared".to_owned(),
                tried,
            })
            .await?;
        assert!(matches!(
            exhausted,
            Err(RouteError::NoUsableKey {
                retry_after: None,
                ..
            })
        ));
        Ok(())
    }

    fn spec(name: &str, base_url: &str) -> ProviderSpec {
        ProviderSpec {
            name: name.to_owned(),
            kind: "openai".to_owned(),
            base_url: base_url.to_owned(),
            api_version: None,
            headers: Vec::new(),
            strategy: KeyStrategy::RoundRobin,
            policy: RetryPolicy::default(),
        }
    }

    fn keys(ids: &[&str]) -> Vec<KeySpec> {
        ids.iter()
            .map(|id| KeySpec {
                id: (*id).to_owned(),
                secret: Arc::from("s"),
                weight: 1,
                priority: 0,
                enabled: true,
                disabled_reason: None,
                max_in_flight: 0,
            })
            .collect()
    }

    fn upsert(name: &str, base_url: &str, models: &[&str], key_ids: &[&str]) -> UpsertProvider {
        UpsertProvider {
            spec: spec(name, base_url),
            keys: keys(key_ids),
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            weight: 1,
        }
    }

    async fn provider_names(router: &Addr<RouterActor>) -> Result<Vec<String>, MailboxError> {
        Ok(router
            .send(ListProviders)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    async fn routed_to(
        router: &Addr<RouterActor>,
        model: &str,
    ) -> Result<Result<String, RouteError>, MailboxError> {
        Ok(router
            .send(Route {
                model: model.to_owned(),
                tried: Tried::default(),
            })
            .await?
            .map(|routed| format!("{}:{}", routed.lease.provider.name, routed.lease.key_id)))
    }

    #[actix_rt::test]
    async fn upserted_providers_route_at_once_and_removed_ones_leave_tombstones() {
        let mut router = router();
        assert_eq!(
            router.table().upsert(upsert(
                "extra",
                "http://extra.invalid/v1",
                &["new"],
                &["e1"]
            )),
            Upserted::Started
        );
        assert_eq!(router.resolve("new"), Ok(vec![(2, "new".to_owned())]));
        assert!(router.table().remove("azure"));
        assert!(!router.table().remove("azure"), "already removed");
        assert!(!router.table().remove("nobody"));
        // The others keep their places; the removed one is gone everywhere.
        assert_eq!(router.resolve("new"), Ok(vec![(2, "new".to_owned())]));
        assert_eq!(router.resolve("shared"), Ok(vec![(0, "shared".to_owned())]));
        assert_eq!(
            router.resolve("azure/x"),
            Err(RouteError::UnknownModel("azure/x".to_owned()))
        );
        let models: Vec<String> = router.table().models().into_iter().map(|m| m.id).collect();
        assert_eq!(models, vec!["gpt-4", "gpt-4o", "new", "shared"]);
        // Re-added, it takes its old place back.
        assert_eq!(
            router.table().upsert(upsert(
                "azure",
                "http://azure.invalid/v1",
                &["shared"],
                &["a2"]
            )),
            Upserted::Started
        );
        assert_eq!(router.resolve("azure/x"), Ok(vec![(1, "x".to_owned())]));
        assert_eq!(
            router.resolve("shared"),
            Ok(vec![(0, "shared".to_owned()), (1, "shared".to_owned())])
        );
        assert_eq!(
            router.table().providers.len(),
            3,
            "the table never shifts or grows on re-adds"
        );
    }

    #[actix_rt::test]
    async fn live_changes_reach_the_next_request() -> Result<(), MailboxError> {
        let router = router().start();
        assert_eq!(
            routed_to(&router, "fresh").await?,
            Err(RouteError::UnknownModel("fresh".to_owned()))
        );
        let started = router
            .send(upsert(
                "fresh-co",
                "http://fresh.invalid/v1",
                &["fresh"],
                &["f1"],
            ))
            .await?;
        assert_eq!(started, Upserted::Started);
        assert_eq!(
            routed_to(&router, "fresh").await?,
            Ok("fresh-co:f1".to_owned())
        );
        assert_eq!(
            provider_names(&router).await?,
            vec!["openai", "azure", "fresh-co"]
        );
        assert!(router.send(RemoveProvider("openai".to_owned())).await?);
        assert_eq!(provider_names(&router).await?, vec!["azure", "fresh-co"]);
        assert_eq!(
            routed_to(&router, "shared").await?,
            Ok("azure:a1".to_owned())
        );
        assert_eq!(
            routed_to(&router, "gpt-4o").await?,
            Err(RouteError::UnknownModel("gpt-4o".to_owned()))
        );
        // A redirect to a removed provider is no longer listed either.
        let ids: Vec<String> = router
            .send(ListModels)
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, vec!["fresh", "shared"]);
        assert_eq!(
            router
                .send(GetProvider("openai".to_owned()))
                .await?
                .map(|_| ()),
            None
        );
        Ok(())
    }

    #[actix_rt::test]
    async fn upsert_keeps_the_actor_unless_the_connection_settings_change()
    -> Result<(), MailboxError> {
        let router = router().start();
        let before = router
            .send(GetProvider("azure".to_owned()))
            .await?
            .ok_or(MailboxError::Closed)?;
        let known = router
            .send(SetDiscoveredModels {
                provider: "azure".to_owned(),
                models: vec!["listed".to_owned()],
            })
            .await?;
        assert!(known);
        // Models, weight and keys only: same actor, new keys, new models.
        let updated = router
            .send(upsert(
                "azure",
                "http://azure.invalid/v1",
                &["other"],
                &["a7", "a8"],
            ))
            .await?;
        assert_eq!(updated, Upserted::Updated);
        let after = router
            .send(GetProvider("azure".to_owned()))
            .await?
            .ok_or(MailboxError::Closed)?;
        assert!(after == before, "the running actor is kept");
        let ids: Vec<String> = after
            .send(GetHealth)
            .await?
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(ids, vec!["a7", "a8"]);
        assert_eq!(
            routed_to(&router, "other").await?,
            Ok("azure:a7".to_owned())
        );
        assert_eq!(
            routed_to(&router, "listed").await?,
            Ok("azure:a8".to_owned()),
            "round-robin: the second key"
        );
        assert_eq!(
            routed_to(&router, "shared").await?,
            Ok("openai:o1".to_owned()),
            "azure no longer declares `shared`"
        );
        // A new retry policy: a new actor; same API, so listed models stay.
        let mut changed = upsert("azure", "http://azure.invalid/v1", &["other"], &["a7"]);
        changed.spec.policy.max_attempts = 7;
        assert_eq!(router.send(changed).await?, Upserted::Restarted);
        let restarted = router
            .send(GetProvider("azure".to_owned()))
            .await?
            .ok_or(MailboxError::Closed)?;
        assert!(restarted != before, "a new actor took the place");
        let served = router
            .send(Route {
                model: "listed".to_owned(),
                tried: Tried::default(),
            })
            .await?
            .map_err(|_| MailboxError::Closed)?;
        assert_eq!(served.lease.provider.policy.max_attempts, 7);
        // Another base URL: the provider's own model list is dropped.
        let moved = router
            .send(upsert(
                "azure",
                "http://moved.invalid/v1",
                &["other"],
                &["a7"],
            ))
            .await?;
        assert_eq!(moved, Upserted::Restarted);
        assert_eq!(
            routed_to(&router, "listed").await?,
            Err(RouteError::UnknownModel("listed".to_owned()))
        );
        assert_eq!(
            router.send(GetRestarts).await?,
            0,
            "no supervision restarts"
        );
        Ok(())
    }

    #[actix_rt::test]
    async fn lists_models_and_redirect_sources() {
        let models: Vec<String> = router()
            .table()
            .models()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(models, vec!["gpt-4", "gpt-4o", "shared"]);
    }

    #[actix_rt::test]
    async fn model_strategies_order_providers_and_fallbacks_come_last() {
        let mut router = router().with_models(HashMap::from([
            (
                "shared".to_owned(),
                ModelRoute {
                    strategy: KeyStrategy::RoundRobin,
                    fallbacks: vec!["azure/backup-model".to_owned(), "nobody/x".to_owned()],
                },
            ),
            (
                "gpt-4o".to_owned(),
                ModelRoute {
                    strategy: KeyStrategy::FirstAvailable,
                    fallbacks: vec!["azure/gpt-4o-azure".to_owned()],
                },
            ),
        ]));
        let first: Vec<usize> = (0..4)
            .filter_map(|_| router.resolve("shared").ok())
            .filter_map(|candidates| candidates.first().map(|(index, _)| *index))
            .collect();
        assert_eq!(
            first,
            vec![0, 1, 0, 1],
            "round-robin rotates the first provider"
        );
        let candidates = router.resolve("shared").unwrap_or_default();
        assert_eq!(
            candidates.last(),
            Some(&(1, "backup-model".to_owned())),
            "{candidates:?}"
        );
        // A bare name gets its chain after its own providers...
        assert_eq!(
            router.resolve("gpt-4o"),
            Ok(vec![
                (0, "gpt-4o".to_owned()),
                (1, "gpt-4o-azure".to_owned())
            ])
        );
        // ...a pinned one (here via the redirect gpt-4 -> openai/gpt-4o) does
        // not: pinning means "this provider", unless `[models."openai/gpt-4o"]`
        // declares a chain of its own.
        assert_eq!(router.resolve("gpt-4"), Ok(vec![(0, "gpt-4o".to_owned())]));
    }

    #[actix_rt::test]
    async fn least_in_flight_orders_providers_by_load() -> Result<(), MailboxError> {
        let mut router = router().with_models(HashMap::from([(
            "shared".to_owned(),
            ModelRoute {
                strategy: KeyStrategy::LeastInFlight,
                fallbacks: Vec::new(),
            },
        )]));
        let openai = router.provider_shared(0).ok_or(MailboxError::Closed)?;
        let held = openai.acquire(&[]);
        assert!(held.is_ok());
        let order: Vec<usize> = router
            .resolve("shared")
            .unwrap_or_default()
            .iter()
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(order, vec![1, 0], "the idle provider comes first");
        Ok(())
    }

    #[cfg(feature = "fault-injection")]
    struct FixedKeys(Vec<KeySpec>);

    #[cfg(feature = "fault-injection")]
    impl KeySource for FixedKeys {
        fn load(
            &self,
            _: &str,
        ) -> futures_util::future::BoxFuture<'static, Result<Vec<KeySpec>, String>> {
            let keys = self.0.clone();
            Box::pin(async move { Ok(keys) })
        }
    }

    #[cfg(feature = "fault-injection")]
    #[actix_rt::test]
    async fn a_panicking_provider_is_restarted_with_reloaded_keys() -> Result<(), MailboxError> {
        use crate::provider::InjectPanic;
        let reloaded = vec![KeySpec {
            id: "o-new".to_owned(),
            secret: Arc::from("s"),
            weight: 1,
            priority: 0,
            enabled: true,
            disabled_reason: None,
            max_in_flight: 0,
        }];
        let router = router()
            .with_key_source(Arc::new(FixedKeys(reloaded)))
            .start();
        let openai = router
            .send(GetProvider("openai".to_owned()))
            .await?
            .ok_or(MailboxError::Closed)?;
        let azure = router
            .send(GetProvider("azure".to_owned()))
            .await?
            .ok_or(MailboxError::Closed)?;
        assert!(
            openai.send(InjectPanic).await.is_err(),
            "the panic closes the mailbox"
        );
        assert!(!openai.connected());
        // The other provider never noticed.
        assert!(
            azure
                .send(crate::provider::Acquire { exclude: vec![] })
                .await?
                .is_ok()
        );
        // The next request restarts openai; its keys come from the key source.
        let routed = router
            .send(Route {
                model: "gpt-4o".to_owned(),
                tried: Tried::default(),
            })
            .await?;
        assert!(routed.is_ok(), "{routed:?}");
        assert_eq!(router.send(GetRestarts).await?, 1);
        let restarted = router
            .send(GetProvider("openai".to_owned()))
            .await?
            .ok_or(MailboxError::Closed)?;
        let mut ids = Vec::new();
        for _ in 0..50 {
            ids = restarted
                .send(GetHealth)
                .await?
                .into_iter()
                .map(|h| h.id)
                .collect();
            if ids == ["o-new"] {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(ids, vec!["o-new"]);
        Ok(())
    }

    #[cfg(feature = "fault-injection")]
    #[actix_rt::test]
    async fn a_removed_provider_that_died_is_not_restarted() -> Result<(), MailboxError> {
        use crate::provider::InjectPanic;
        let router = router().start();
        let openai = router
            .send(GetProvider("openai".to_owned()))
            .await?
            .ok_or(MailboxError::Closed)?;
        assert!(openai.send(InjectPanic).await.is_err());
        assert!(router.send(RemoveProvider("openai".to_owned())).await?);
        assert_eq!(provider_names(&router).await?, vec!["azure"]);
        assert_eq!(
            routed_to(&router, "shared").await?,
            Ok("azure:a1".to_owned())
        );
        assert_eq!(router.send(GetRestarts).await?, 0);
        Ok(())
    }

    #[cfg(feature = "fault-injection")]
    #[actix_rt::test]
    async fn a_request_racing_a_panic_is_served_by_the_restarted_provider()
    -> Result<(), MailboxError> {
        use crate::provider::InjectPanic;
        let router = router().start();
        let openai = router
            .send(GetProvider("openai".to_owned()))
            .await?
            .ok_or(MailboxError::Closed)?;
        // The panic is queued ahead of the request's Acquire: the request
        // meets a dying actor.
        openai.do_send(InjectPanic);
        let routed = router
            .send(Route {
                model: "gpt-4o".to_owned(),
                tried: Tried::default(),
            })
            .await?;
        assert!(routed.is_ok(), "{routed:?}");
        assert_eq!(router.send(GetRestarts).await?, 1);
        Ok(())
    }
}
