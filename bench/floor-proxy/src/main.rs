//! The framework floor for `bench/run.sh`: the least a reverse proxy built
//! on the gateway's own HTTP stack does per request. One actix-web server
//! (a worker per core, jemalloc and `TCP_NODELAY`, as the gateway) whose
//! every request goes to the upstream through awc (the gateway's patched copy,
//! one client per worker, pooled keep-alive connections, the same connector
//! settings), the client's `Authorization` passed along; a JSON answer is
//! read whole and sent on, an SSE answer relayed chunk by chunk.
//!
//! No token, limits, routing, parsing, metering or logging: what the bench's
//! gateway rows cost above this row is the gateway's own work, and what this
//! row costs above nginx is the framework's (bench/README.md).
//!
//! `floor-proxy LISTEN_ADDR UPSTREAM_URL`, e.g.
//! `floor-proxy 127.0.0.1:18081 http://127.0.0.1:9000`.

use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use std::time::Duration;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Where every request goes: the upstream's base URL.
struct Upstream(String);

async fn forward(
    request: HttpRequest,
    body: web::Bytes,
    upstream: web::Data<Upstream>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    let url = format!("{}{}", upstream.0, request.path());
    let mut call = client.request(request.method().clone(), url);
    for name in [AUTHORIZATION, CONTENT_TYPE] {
        if let Some(value) = request.headers().get(&name) {
            call = call.insert_header((name, value.clone()));
        }
    }
    let mut answer = match call.send_body(body).await {
        Ok(answer) => answer,
        Err(error) => return HttpResponse::BadGateway().body(error.to_string()),
    };
    let mut reply = HttpResponse::build(answer.status());
    let content_type = answer.headers().get(CONTENT_TYPE).cloned();
    if let Some(content_type) = &content_type {
        reply.insert_header((CONTENT_TYPE, content_type.clone()));
    }
    let streamed = content_type
        .as_ref()
        .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
    if streamed {
        return reply.streaming(answer);
    }
    match answer.body().limit(16 << 20).await {
        Ok(bytes) => reply.body(bytes),
        Err(error) => HttpResponse::BadGateway().body(error.to_string()),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: floor-proxy LISTEN_ADDR UPSTREAM_URL");
        std::process::exit(2);
    };
    let upstream = web::Data::new(Upstream(upstream.trim_end_matches('/').to_owned()));
    let server = HttpServer::new(move || {
        // As the gateway builds its client (src/lib.rs): one per worker.
        let connector = awc::Connector::new()
            .timeout(Duration::from_secs(10))
            .limit(0)
            .conn_keep_alive(Duration::from_secs(60));
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(Duration::from_secs(60))
            .disable_redirects()
            .finish();
        App::new()
            .app_data(upstream.clone())
            .app_data(web::Data::new(client))
            .app_data(web::PayloadConfig::new(16 << 20))
            .default_service(web::to(forward))
    })
    .tcp_nodelay(true)
    .bind(listen.as_str())?;
    println!("listening on {listen}");
    server.run().await
}
