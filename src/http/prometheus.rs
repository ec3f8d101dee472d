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
//! The route needs the admin credential like `/admin/*` (it names
//! providers and keys, and shows traffic): give Prometheus the master key
//! as a bearer token (`authorization: { credentials_file: ... }`).

use crate::admin::auth::AdminAuth;
use crate::error::ApiError;
use crate::gateway::AppState;
use actix_web::HttpResponse;
use actix_web::web::Data;
use futures_util::future::BoxFuture;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use switchyard_actors::{RecordOutcome, UsageFlags, UsageRecord, UsageSink, WriteReport};

/// Requests written, by (provider, status).
#[derive(Debug, Default)]
pub struct RequestCounters {
    counts: Mutex<BTreeMap<(String, u16), u64>>,
}

impl RequestCounters {
    fn add(&self, records: &[UsageRecord]) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        for record in records {
            let provider = record.provider.clone().unwrap_or_default();
            *counts.entry((provider, record.status)).or_default() += 1;
        }
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> BTreeMap<(String, u16), u64> {
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
            let stored: Vec<UsageRecord> = batch
                .iter()
                .zip(&report.outcomes)
                .filter(|(_, outcome)| **outcome != RecordOutcome::Duplicate)
                .map(|(record, _)| record.clone())
                .collect();
            counters.add(&stored);
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
    family(
        &mut out,
        "switchyard_requests_total",
        "counter",
        "Client requests by serving provider and HTTP status (counted when logged).",
    );
    for ((provider, status), count) in counters.snapshot() {
        let _ = writeln!(
            out,
            "switchyard_requests_total{{provider=\"{}\",status=\"{status}\"}} {count}",
            label(&provider)
        );
    }
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

/// `GET /metrics`
pub async fn metrics(
    _: AdminAuth,
    state: Data<AppState>,
    counters: Data<RequestCounters>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(render(&state, &counters).await))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
