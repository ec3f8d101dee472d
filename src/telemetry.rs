//! Traces: OpenTelemetry spans exported over OTLP/HTTP (protobuf), off by
//! default (`tracing.otlp_endpoint`).
//!
//! One server span per request (named after the method and path), carrying
//! the request id (`request.id`), and a child span per upstream attempt
//! (`upstream attempt`: provider, key id, model, attempt number, outcome).
//! An incoming W3C `traceparent` is honoured (the request's span joins the
//! caller's trace as its child), and each attempt sends the upstream a
//! `traceparent` naming the attempt's span.
//!
//! When tracing is off nothing here runs: the request path tests one
//! `Option` (`RequestLogging::telemetry`, `RequestCtx::trace`).
//!
//! The crates are the OpenTelemetry project's own (`opentelemetry`,
//! `opentelemetry_sdk`, `opentelemetry-otlp`, one version family): the
//! W3C propagation, batching and the OTLP encoding are theirs to keep
//! right. Spans are batched and sent from the SDK's own thread with a
//! blocking HTTP client, never from an actix worker.

use crate::config::TracingSettings;
use actix_web::http::header::HeaderMap;
use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use std::sync::Arc;
use std::time::Duration;

/// The tracer of a process whose tracing is on.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

/// A request's (or an attempt's) place in its trace.
#[derive(Clone)]
pub struct Trace {
    telemetry: Arc<Telemetry>,
    cx: Context,
}

/// Where spans go: the setting as given, with `/v1/traces` added when it
/// names only the collector (`http://host:4318`).
pub fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

impl Telemetry {
    /// `None` when `tracing.otlp_endpoint` is empty (tracing off).
    pub fn start(settings: &TracingSettings) -> anyhow::Result<Option<Arc<Self>>> {
        if settings.otlp_endpoint.is_empty() {
            return Ok(None);
        }
        let url = traces_url(&settings.otlp_endpoint);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&url)
            .build()
            .with_context(|| format!("setting up the OTLP exporter for {url}"))?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(settings.export_interval.max(Duration::from_millis(10)))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("switchyard");
        Ok(Some(Arc::new(Self {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
        })))
    }

    /// Starts a request's span: the caller's `traceparent` is its parent.
    pub fn request(
        self: &Arc<Self>,
        headers: &HeaderMap,
        method: &str,
        path: &str,
        request_id: &str,
    ) -> Trace {
        let parent = self.propagator.extract(&Headers(headers));
        let span = self
            .tracer
            .span_builder(format!("{method} {path}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("request.id", request_id.to_owned()),
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("url.path", path.to_owned()),
            ])
            .start_with_context(&self.tracer, &parent);
        Trace {
            telemetry: self.clone(),
            cx: parent.with_span(span),
        }
    }

    /// Sends what is batched and stops exporting (at shutdown).
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

impl Trace {
    /// A child span for one upstream attempt.
    pub fn attempt(&self, provider: &str, key_id: &str, model: &str, attempt: u32) -> Trace {
        let tracer = &self.telemetry.tracer;
        let span = tracer
            .span_builder("upstream attempt")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("provider", provider.to_owned()),
                KeyValue::new("key.id", key_id.to_owned()),
                KeyValue::new("model", model.to_owned()),
                KeyValue::new("attempt", i64::from(attempt)),
            ])
            .start_with_context(tracer, &self.cx);
        Trace {
            telemetry: self.telemetry.clone(),
            cx: self.cx.with_span(span),
        }
    }

    /// The W3C `traceparent` naming this span (sent upstream).
    pub fn traceparent(&self) -> Option<String> {
        let mut fields = TraceParent(None);
        self.telemetry
            .propagator
            .inject_context(&self.cx, &mut fields);
        fields.0
    }

    /// Ends a request's span with the status the client got.
    pub fn finish_request(&self, status: u16) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(Status::error(format!("HTTP {status}")));
        }
        span.end();
    }

    /// Ends an attempt's span: `Err` carries why it failed.
    pub fn finish_attempt(&self, outcome: Result<(), String>) {
        let span = self.cx.span();
        match outcome {
            Ok(()) => span.set_attribute(KeyValue::new("outcome", "ok")),
            Err(error) => {
                span.set_attribute(KeyValue::new("outcome", "failed"));
                span.set_status(Status::error(error));
            }
        }
        span.end();
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Keeps the `traceparent` the propagator writes (W3C `tracestate` is not
/// forwarded: the gateway adds none of its own).
struct TraceParent(Option<String>);

impl Injector for TraceParent {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces/"),
            "http://c:4318/v1/traces"
        );
    }
}
