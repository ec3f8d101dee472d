//! `GET /metrics`: the Prometheus text format (version 0.0.4).
//!
//! - `switchyard_requests_total{provider,status}`: client requests by the
//!   provider that served them (`""` when none did, e.g. an unknown model)
//!   and the status the client got. Counted when the usage batch holding
//!   the request is written ([`CountingSink`]), so it lags by up to
//!   `usage.flush_interval`; the request path itself pays nothing.
//! - Per routed provider key, from the provider actors' live health:
//!   `switchyard_key_state{provider,key,state}` (1 for the key's current
//!   state: healthy, half_open, cooling_down, open, disabled),
//!   `switchyard_key_in_flight`, `switchyard_key_latency_ewma_ms`, and the
//!   counters `switchyard_key_successes_total`/`..._failures_total` (they
//!   restart from 0 when a provider actor does).
//!
//! - From the same usage records (so the request path pays nothing: the
//!   usage actor's write sums each batch under one lock):
//!   `switchyard_request_duration_seconds` and
//!   `switchyard_time_to_first_token_seconds` histograms by provider and
//!   model, `switchyard_tokens_total{provider,model,token,kind}`,
//!   `switchyard_media_units_total{provider,model,token,unit}` (images,
//!   characters, audio_milliseconds, search_units: the media doors),
//!   `switchyard_cost_usd_total{provider,model,token}` (token: the gateway
//!   token's id), `switchyard_upstream_attempts_total{provider}`,
//!   `switchyard_upstream_failovers_total{provider}` and
//!   `switchyard_request_failures_total{provider,reason}`.
//! - `switchyard_provider_keys{provider,state}`, `switchyard_build_info`,
//!   `switchyard_db_pool_connections{state}` and the usage queue and
//!   journal gauges below.
//!
//! The series are written by hand in the text format: the gateway has done
//! so from the start, the format is a few lines of text, and a registry
//! crate would add per-request label lookups this design avoids.
//!
//! The route needs the admin credential like `/admin/*` (it names
//! providers and keys, and shows traffic), or `metrics.token` when set: a
//! bearer that reads this route and nothing else
//! (`authorization: { credentials_file: ... }` in Prometheus).

use crate::admin::auth::AdminAuth;
use crate::error::ApiError;
use crate::gateway::AppState;
use crate::gateway::auth::presented_token;
use crate::tokens;
use actix_web::dev::Payload;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use futures_util::future::BoxFuture;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use switchyard_actors::{RecordOutcome, UsageFlags, UsageRecord, UsageSink, WriteReport};

/// Upper bounds of the latency histograms' buckets, in seconds.
const LATENCY_BUCKETS_S: [f64; 12] = [
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// One histogram series: cumulative buckets are computed when rendered.
#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [u64; LATENCY_BUCKETS_S.len() + 1],
    count: u64,
    sum_ms: i64,
}

impl Histogram {
    fn observe(&mut self, ms: i64) {
        let ms = ms.max(0);
        let seconds = ms as f64 / 1000.0;
        let slot = LATENCY_BUCKETS_S
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS_S.len());
        if let Some(bucket) = self.buckets.get_mut(slot) {
            *bucket += 1;
        }
        self.count += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }
}

/// (provider, model): `""` for a request no provider served.
type Served = (String, String);

/// What the usage batches said, summed. Changed once per written batch
/// (in the usage actor's write, off the request path), read per scrape.
#[derive(Debug, Default, Clone)]
struct Aggregates {
    /// (provider, status) → requests.
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<Served, Histogram>,
    /// Streams only: arrival to the first content byte.
    ttft: BTreeMap<Served, Histogram>,
    /// (provider, model, token id, `prompt`|`completion`) → tokens.
    tokens: BTreeMap<(String, String, String, &'static str), u64>,
    /// (provider, model, token id, unit) → media units (images,
    /// characters, audio milliseconds, search units).
    media_units: BTreeMap<(String, String, String, &'static str), u64>,
    /// (provider, model, token id) → nano-USD charged.
    cost_nanos: BTreeMap<(String, String, String), i64>,
    /// provider → upstream attempts.
    attempts: BTreeMap<String, u64>,
    /// provider → attempts beyond each request's first (failovers).
    failovers: BTreeMap<String, u64>,
    /// (provider, error class) → failed requests.
    errors: BTreeMap<(String, String), u64>,
}

/// One (provider, model, token) group of a batch, summed before it is
/// merged into [`Aggregates`].
#[derive(Default)]
struct BatchGroup<'a> {
    /// status → requests.
    statuses: BTreeMap<u16, u64>,
    latency: Histogram,
    ttft: Histogram,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// In [`MEDIA_UNITS`] order.
    media_units: [u64; MEDIA_UNITS.len()],
    cost_nanos: i64,
    attempts: u64,
    failovers: u64,
    /// error class → failed requests.
    errors: BTreeMap<&'a str, u64>,
}

/// The media units' label values, in [`BatchGroup::media_units`] order.
const MEDIA_UNITS: [&str; 4] = ["images", "characters", "audio_milliseconds", "search_units"];

impl<'a> BatchGroup<'a> {
    fn add(&mut self, record: &'a UsageRecord) {
        *self.statuses.entry(record.status).or_default() += 1;
        self.latency.observe(record.latency_ms);
        if let Some(ttft) = record.ttft_ms {
            self.ttft.observe(ttft);
        }
        self.prompt_tokens += u64::try_from(record.prompt_tokens).unwrap_or(0);
        self.completion_tokens += u64::try_from(record.completion_tokens).unwrap_or(0);
        let media = [
            record.images,
            record.characters,
            record.audio_ms,
            record.search_units,
        ];
        for (sum, figure) in self.media_units.iter_mut().zip(media) {
            *sum += u64::try_from(figure).unwrap_or(0);
        }
        if record.cost_nanos > 0 {
            self.cost_nanos = self.cost_nanos.saturating_add(record.cost_nanos);
        }
        let attempts = u64::try_from(record.attempts).unwrap_or(0);
        if attempts > 0 {
            self.attempts += attempts;
            self.failovers += attempts - 1;
        }
        if let Some(class) = &record.error_class {
            *self.errors.entry(class.as_str()).or_default() += 1;
        }
    }
}

impl Histogram {
    fn merge(&mut self, other: &Histogram) {
        for (bucket, more) in self.buckets.iter_mut().zip(other.buckets) {
            *bucket += more;
        }
        self.count += other.count;
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
    }
}

impl Aggregates {
    /// Adds one group of a batch. Series are created only for what the
    /// group has (no zero-valued token, unit, cost or attempt series).
    fn merge(&mut self, provider: &str, model: &str, token_id: Option<i64>, group: BatchGroup<'_>) {
        let token = token_id.map(|id| id.to_string()).unwrap_or_default();
        for (status, count) in group.statuses {
            *self
                .requests
                .entry((provider.to_owned(), status))
                .or_default() += count;
        }
        let served = (provider.to_owned(), model.to_owned());
        if group.ttft.count > 0 {
            self.ttft
                .entry(served.clone())
                .or_default()
                .merge(&group.ttft);
        }
        self.latency
            .entry(served)
            .or_default()
            .merge(&group.latency);
        for (kind, figure) in [
            ("prompt", group.prompt_tokens),
            ("completion", group.completion_tokens),
        ] {
            if figure > 0 {
                *self
                    .tokens
                    .entry((provider.to_owned(), model.to_owned(), token.clone(), kind))
                    .or_default() += figure;
            }
        }
        for (unit, figure) in MEDIA_UNITS.into_iter().zip(group.media_units) {
            if figure > 0 {
                *self
                    .media_units
                    .entry((provider.to_owned(), model.to_owned(), token.clone(), unit))
                    .or_default() += figure;
            }
        }
        if group.cost_nanos > 0 {
            let cost = self
                .cost_nanos
                .entry((provider.to_owned(), model.to_owned(), token))
                .or_default();
            *cost = cost.saturating_add(group.cost_nanos);
        }
        if group.attempts > 0 {
            *self.attempts.entry(provider.to_owned()).or_default() += group.attempts;
            *self.failovers.entry(provider.to_owned()).or_default() += group.failovers;
        }
        for (class, count) in group.errors {
            *self
                .errors
                .entry((provider.to_owned(), class.to_owned()))
                .or_default() += count;
        }
    }
}

/// The figures `/metrics` computes from usage records.
#[derive(Debug, Default)]
pub struct RequestCounters {
    counts: Mutex<Aggregates>,
}

impl RequestCounters {
    /// Adds a written batch. The batch is first summed per (provider,
    /// model, token) under borrowed keys, then each group is merged once:
    /// a batch of a thousand records from a few groups allocates a few
    /// label strings, not a dozen per record (it did, bench/README.md).
    fn add<'a>(&self, records: impl IntoIterator<Item = &'a UsageRecord>) {
        let mut groups: BTreeMap<(&str, &str, Option<i64>), BatchGroup<'a>> = BTreeMap::new();
        for record in records {
            let provider = record.provider.as_deref().unwrap_or_default();
            let model = record
                .upstream_model
                .as_deref()
                .or(record.requested_model.as_deref())
                .unwrap_or_default();
            groups
                .entry((provider, model, record.token_id))
                .or_default()
                .add(record);
        }
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        for ((provider, model, token_id), group) in groups {
            counts.merge(provider, model, token_id, group);
        }
    }

    /// Requests by (provider, status).
    pub fn snapshot(&self) -> BTreeMap<(String, u16), u64> {
        self.aggregates().requests
    }

    fn aggregates(&self) -> Aggregates {
        self.counts
            .lock()
            .map(|counts| counts.clone())
            .unwrap_or_default()
    }
}

/// A [`UsageSink`] that counts what the sink it wraps wrote.
pub struct CountingSink {
    pub inner: Arc<dyn UsageSink>,
    pub counters: Arc<RequestCounters>,
}

impl UsageSink for CountingSink {
    fn write(
        &self,
        batch: Arc<Vec<UsageRecord>>,
    ) -> BoxFuture<'static, Result<WriteReport, String>> {
        let written = self.inner.write(batch.clone());
        let counters = self.counters.clone();
        Box::pin(async move {
            let report = written.await?;
            // Replayed duplicates were counted when first stored.
            counters.add(
                batch
                    .iter()
                    .zip(&report.outcomes)
                    .filter(|(_, outcome)| **outcome != RecordOutcome::Duplicate)
                    .map(|(record, _)| record),
            );
            Ok(report)
        })
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The exposition text.
pub async fn render(state: &AppState, counters: &RequestCounters) -> String {
    let mut out = String::new();
    let counts = counters.aggregates();
    family(
        &mut out,
        "switchyard_requests_total",
        "counter",
        "Client requests by serving provider and HTTP status (counted when logged).",
    );
    for ((provider, status), count) in &counts.requests {
        let _ = writeln!(
            out,
            "switchyard_requests_total{{provider=\"{}\",status=\"{status}\"}} {count}",
            label(provider)
        );
    }
    render_traffic(&mut out, &counts);
    render_build_and_pool(&mut out, state);
    render_usage(&mut out, state);
    let keys: Vec<_> = state
        .router
        .health_all()
        .into_iter()
        .flat_map(|(provider, health)| health.into_iter().map(move |view| (provider.clone(), view)))
        .collect();
    let series: [(&str, &str, &str); 5] = [
        (
            "switchyard_key_state",
            "gauge",
            "1 for the key's current state.",
        ),
        (
            "switchyard_key_in_flight",
            "gauge",
            "Requests the key is serving now.",
        ),
        (
            "switchyard_key_latency_ewma_ms",
            "gauge",
            "Moving average of the key's latency (0 before its first success).",
        ),
        (
            "switchyard_key_successes_total",
            "counter",
            "Successful upstream attempts since the provider actor started.",
        ),
        (
            "switchyard_key_failures_total",
            "counter",
            "Failed upstream attempts since the provider actor started.",
        ),
    ];
    family(
        &mut out,
        "switchyard_provider_keys",
        "gauge",
        "Keys of each routed provider by state (healthy, half_open, cooling_down, open, disabled).",
    );
    let mut states: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for (provider, view) in &keys {
        *states.entry((provider.as_str(), view.state)).or_default() += 1;
    }
    for ((provider, state), count) in states {
        let _ = writeln!(
            out,
            "switchyard_provider_keys{{provider=\"{}\",state=\"{state}\"}} {count}",
            label(provider)
        );
    }
    for (name, kind, help) in series {
        family(&mut out, name, kind, help);
        for (provider, view) in &keys {
            let labels = format!(
                "provider=\"{}\",key=\"{}\"",
                label(provider),
                label(&view.id)
            );
            let _ = match name {
                "switchyard_key_state" => {
                    writeln!(out, "{name}{{{labels},state=\"{}\"}} 1", view.state)
                }
                "switchyard_key_in_flight" => {
                    writeln!(out, "{name}{{{labels}}} {}", view.in_flight)
                }
                "switchyard_key_latency_ewma_ms" => {
                    writeln!(out, "{name}{{{labels}}} {}", view.latency_ewma_ms)
                }
                "switchyard_key_successes_total" => {
                    writeln!(out, "{name}{{{labels}}} {}", view.successes)
                }
                _ => writeln!(out, "{name}{{{labels}}} {}", view.failures),
            };
        }
    }
    out
}

fn histogram(out: &mut String, name: &str, labels: &str, histogram: &Histogram) {
    let mut cumulative = 0;
    for (bound, count) in LATENCY_BUCKETS_S.iter().zip(&histogram.buckets) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
        histogram.count
    );
    let _ = writeln!(
        out,
        "{name}_sum{{{labels}}} {}",
        histogram.sum_ms as f64 / 1000.0
    );
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count);
}

/// Latency, tokens, cost, attempts and failures, from the usage records.
fn render_traffic(out: &mut String, counts: &Aggregates) {
    let served = |(provider, model): &Served| {
        format!(
            "provider=\"{}\",model=\"{}\"",
            label(provider),
            label(model)
        )
    };
    for (name, help, series) in [
        (
            "switchyard_request_duration_seconds",
            "Client requests from arrival to the last byte sent, by provider and model.",
            &counts.latency,
        ),
        (
            "switchyard_time_to_first_token_seconds",
            "Streamed requests from arrival to the first content byte, by provider and model.",
            &counts.ttft,
        ),
    ] {
        family(out, name, "histogram", help);
        for (key, values) in series {
            histogram(out, name, &served(key), values);
        }
    }
    family(
        out,
        "switchyard_tokens_total",
        "counter",
        "Tokens by provider, model, gateway token id and kind (prompt, completion).",
    );
    for ((provider, model, token, kind), count) in &counts.tokens {
        let _ = writeln!(
            out,
            "switchyard_tokens_total{{provider=\"{}\",model=\"{}\",token=\"{token}\",kind=\"{kind}\"}} {count}",
            label(provider),
            label(model)
        );
    }
    family(
        out,
        "switchyard_media_units_total",
        "counter",
        "Media units billed by provider, model, gateway token id and unit (images, characters, \
         audio_milliseconds, search_units).",
    );
    for ((provider, model, token, unit), count) in &counts.media_units {
        let _ = writeln!(
            out,
            "switchyard_media_units_total{{provider=\"{}\",model=\"{}\",token=\"{token}\",unit=\"{unit}\"}} {count}",
            label(provider),
            label(model)
        );
    }
    family(
        out,
        "switchyard_cost_usd_total",
        "counter",
        "Cost charged in USD by provider, model and gateway token id.",
    );
    for ((provider, model, token), nanos) in &counts.cost_nanos {
        let _ = writeln!(
            out,
            "switchyard_cost_usd_total{{provider=\"{}\",model=\"{}\",token=\"{token}\"}} {}",
            label(provider),
            label(model),
            *nanos as f64 / 1e9
        );
    }
    for (name, help, series) in [
        (
            "switchyard_upstream_attempts_total",
            "Upstream attempts by the provider that finally served or failed the request.",
            &counts.attempts,
        ),
        (
            "switchyard_upstream_failovers_total",
            "Attempts beyond each request's first (another key or provider was tried).",
            &counts.failovers,
        ),
    ] {
        family(out, name, "counter", help);
        for (provider, count) in series {
            let _ = writeln!(out, "{name}{{provider=\"{}\"}} {count}", label(provider));
        }
    }
    family(
        out,
        "switchyard_request_failures_total",
        "counter",
        "Failed client requests by provider and reason (the error class: upstream_timeout, rate_limited, ...).",
    );
    for ((provider, reason), count) in &counts.errors {
        let _ = writeln!(
            out,
            "switchyard_request_failures_total{{provider=\"{}\",reason=\"{}\"}} {count}",
            label(provider),
            label(reason)
        );
    }
}

/// The build, and the database pool's use.
fn render_build_and_pool(out: &mut String, state: &AppState) {
    family(
        out,
        "switchyard_build_info",
        "gauge",
        "Always 1; the labels say what runs.",
    );
    let _ = writeln!(
        out,
        "switchyard_build_info{{version=\"{}\",backend=\"{:?}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        state.db.backend()
    );
    let (open, idle, max) = state.db.pool_status();
    family(
        out,
        "switchyard_db_pool_connections",
        "gauge",
        "Database connections by state (in_use, idle).",
    );
    let _ = writeln!(
        out,
        "switchyard_db_pool_connections{{state=\"in_use\"}} {}",
        open.saturating_sub(idle)
    );
    let _ = writeln!(
        out,
        "switchyard_db_pool_connections{{state=\"idle\"}} {idle}"
    );
    family(
        out,
        "switchyard_db_pool_max_connections",
        "gauge",
        "The most connections the pool opens (database.max_connections).",
    );
    let _ = writeln!(out, "switchyard_db_pool_max_connections {max}");
}

/// The usage pipeline: what it stored, set aside and flagged, and what
/// waits in memory and in the journal.
fn render_usage(out: &mut String, state: &AppState) {
    let stats = state.usage.stats();
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    for (name, kind, help, value) in [
        (
            "switchyard_usage_written_total",
            "counter",
            "Usage records stored by this process.",
            load(&stats.written),
        ),
        (
            "switchyard_usage_duplicates_total",
            "counter",
            "Usage records found already stored (journal replays after a crash).",
            load(&stats.duplicates),
        ),
        (
            "switchyard_usage_dead_letters_total",
            "counter",
            "Usage records the database refused, kept in usage_dead_letters.",
            load(&stats.dead_letters),
        ),
        (
            "switchyard_usage_journal_errors_total",
            "counter",
            "Usage records the journal could not take (kept in memory only).",
            load(&stats.journal_errors),
        ),
        (
            "switchyard_usage_buffered_records",
            "gauge",
            "Usage records held in memory, waiting to be written.",
            stats.buffered() as u64,
        ),
        (
            "switchyard_usage_journal_bytes",
            "gauge",
            "Bytes in the usage journal (records not yet committed).",
            state.usage.journal().map_or(0, |journal| journal.bytes()),
        ),
        (
            "switchyard_budget_leases_total",
            "counter",
            "Budget slices this process leased from the database (docs/limits.md).",
            state.enforcer.budget_leases_total(),
        ),
        (
            "switchyard_limit_share_leases_total",
            "counter",
            "Shares of rate limits, parallelism and quotas this process leased from the database \
             (limits held across instances; docs/limits.md).",
            state.enforcer.share_leases_total(),
        ),
    ] {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        out,
        "switchyard_usage_flagged_total",
        "counter",
        "Usage records with a fixed anomaly: a client string made storable, upstream usage negative or clamped, a cost clamped.",
    );
    for ((_, flag), counter) in UsageFlags::ALL.iter().zip(&stats.flagged) {
        let _ = writeln!(
            out,
            "switchyard_usage_flagged_total{{flag=\"{flag}\"}} {}",
            load(counter)
        );
    }
}

/// `GET /metrics`: `metrics.token` when set, else an admin credential.
pub async fn metrics(
    request: HttpRequest,
    state: Data<AppState>,
    counters: Data<RequestCounters>,
) -> Result<HttpResponse, ApiError> {
    let configured = &state.settings.metrics.token;
    // Hashes compared, as for the master key: the comparison's time says
    // nothing about the token.
    let by_token = !configured.is_empty()
        && presented_token(&request)
            .is_some_and(|presented| tokens::hash(presented) == tokens::hash(configured.expose()));
    if !by_token {
        AdminAuth::from_request(&request, &mut Payload::None).await?;
    }
    let mut text = render(&state, &counters).await;
    if let Some(intake) = request.app_data::<Data<crate::http::body::BodyIntake>>() {
        render_bodies(&mut text, intake.budget.held());
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

fn render_bodies(out: &mut String, held: usize) {
    let name = "switchyard_body_bytes_in_flight";
    family(
        out,
        name,
        "gauge",
        "Bytes held by request bodies being read, counted against server.max_body_bytes_in_flight.",
    );
    let _ = writeln!(out, "{name} {held}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
