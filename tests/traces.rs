//! OpenTelemetry traces (issue 13, item 7), against a small OTLP/HTTP
//! receiver on loopback that decodes what the gateway exports: a span per
//! request carrying the request id, in the caller's trace when it sent a
//! `traceparent`, a child span per upstream attempt, and the attempt's
//! `traceparent` sent upstream.

pub mod common;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context, ensure};
use common::{TestGateway, chat_body, mock_provider};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard::config::Backend;
use switchyard_actors::KeyStrategy;

on_both_backends!(a_request_span_joins_the_callers_trace_with_a_child_per_attempt,);

/// Spans received, decoded.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Span>>>);

impl Received {
    fn spans(&self) -> Vec<Span> {
        self.0.lock().map(|spans| spans.clone()).unwrap_or_default()
    }
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with a protobuf body.
async fn receiver() -> anyhow::Result<(String, Received, actix_web::dev::ServerHandle)> {
    let received = Received::default();
    let store = received.clone();
    let server = HttpServer::new(move || {
        let store = store.clone();
        App::new().route(
            "/v1/traces",
            web::post().to(move |body: web::Bytes| {
                let store = store.clone();
                async move {
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(request) => {
                            let spans = request
                                .resource_spans
                                .into_iter()
                                .flat_map(|resource| resource.scope_spans)
                                .flat_map(|scope| scope.spans);
                            if let Ok(mut all) = store.0.lock() {
                                all.extend(spans);
                            }
                            HttpResponse::Ok()
                                .content_type("application/x-protobuf")
                                .finish()
                        }
                        Err(_) => HttpResponse::BadRequest().finish(),
                    }
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")?;
    let addr = *server.addrs().first().context("no address")?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok((format!("http://{addr}"), received, handle))
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref()?.value.clone())
        .map(|value| match value {
            any_value::Value::StringValue(text) => text,
            any_value::Value::IntValue(number) => number.to_string(),
            other => format!("{other:?}"),
        })
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn a_request_span_joins_the_callers_trace_with_a_child_per_attempt(
    backend: Backend,
) -> anyhow::Result<()> {
    let (url, received, receiver) = receiver().await?;
    let gw = TestGateway::start(backend, |settings, mock| {
        // The first key fails: two attempts, the second served.
        let mut provider = mock_provider(mock, "mock", &["mock-gpt"], &["e500-1", "ok-2"]);
        provider.strategy = KeyStrategy::FirstAvailable;
        settings.providers = vec![provider];
        settings.tracing.otlp_endpoint = url.clone();
        settings.tracing.export_interval = Duration::from_millis(100);
    })
    .await?;
    let token = gw
        .create_token(serde_json::json!({"name": "traced"}))
        .await?;
    let bearer = format!("Bearer {token}");
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let reply = gw
        .post_with_headers(
            "/v1/chat/completions",
            &[("authorization", &bearer), ("traceparent", &traceparent)],
            &chat_body("mock-gpt", "hello"),
        )
        .await?;
    ensure!(reply.status == 200, "{}: {}", reply.status, reply.text());
    let request_id = reply
        .header("x-request-id")
        .context("no request id")?
        .to_owned();

    // Exported in the background: wait (bounded) for the three spans.
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<Span> = received
            .spans()
            .into_iter()
            .filter(|span| hex::encode(&span.trace_id) == TRACE_ID)
            .collect();
        if spans.len() >= 3 {
            break spans;
        }
        ensure!(
            Instant::now() < deadline,
            "only {} spans of the caller's trace arrived",
            spans.len()
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    let server = spans
        .iter()
        .find(|span| span.name == "POST /v1/chat/completions")
        .with_context(|| format!("no request span in {spans:?}"))?;
    ensure!(hex::encode(&server.parent_span_id) == CALLER_SPAN);
    ensure!(attribute(server, "request.id").as_deref() == Some(request_id.as_str()));
    ensure!(attribute(server, "http.response.status_code").as_deref() == Some("200"));
    let mut attempts: Vec<&Span> = spans
        .iter()
        .filter(|span| span.name == "upstream attempt")
        .collect();
    attempts.sort_by_key(|span| attribute(span, "attempt"));
    ensure!(attempts.len() == 2, "{attempts:?}");
    for span in &attempts {
        ensure!(span.parent_span_id == server.span_id, "{span:?}");
        ensure!(attribute(span, "provider").as_deref() == Some("mock"));
    }
    ensure!(attribute(attempts[0], "key.id").as_deref() == Some("key-1"));
    ensure!(attribute(attempts[0], "outcome").as_deref() == Some("failed"));
    ensure!(attribute(attempts[1], "outcome").as_deref() == Some("ok"));

    // The upstream saw the served attempt's span as its parent.
    let sent = gw
        .mock
        .last_request()
        .and_then(|request| request.header("traceparent").map(str::to_owned));
    let expected = format!("00-{TRACE_ID}-{}-01", hex::encode(&attempts[1].span_id));
    ensure!(sent.as_deref() == Some(expected.as_str()), "{sent:?}");

    // Without a traceparent a request starts a trace of its own.
    let reply = gw
        .post_with_headers(
            "/v1/chat/completions",
            &[("authorization", &bearer)],
            &chat_body("mock-gpt", "hello"),
        )
        .await?;
    ensure!(reply.status == 200);
    let own_id = reply
        .header("x-request-id")
        .context("no request id")?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let root = received
            .spans()
            .into_iter()
            .find(|span| attribute(span, "request.id").as_deref() == Some(own_id.as_str()));
        if let Some(root) = root {
            ensure!(root.parent_span_id.is_empty(), "{root:?}");
            ensure!(hex::encode(&root.trace_id) != TRACE_ID);
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the second request's span never arrived"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await?;
    receiver.stop(true).await;
    Ok(())
}
