//! Background probes: every `health.probe_interval`, each provider lends its
//! idle half-open keys (`Router::take_probes`), and each is tried with a
//! cheap request, the provider's model list. The outcome is reported through
//! the lease like any attempt: success closes the circuit, failure re-opens
//! it for longer. Runs on its own arbiter with its own HTTP client, so probes
//! never compete with client requests for a worker.

use crate::config::HealthSettings;
use crate::providers;
use crate::upstream::{UpstreamClient, send_failure, status_failure};
use actix::prelude::*;
use actix_web::http::Method;
use slog::{Logger, debug, info};
use std::time::{Duration, Instant};
use switchyard_actors::{Lease, Outcome, Router};

pub fn start(router: Router, settings: HealthSettings, log: Logger) {
    if settings.probe_interval.is_zero() {
        return;
    }
    let arbiter = Arbiter::new();
    // The HTTP client is not Send: build it on the probe arbiter's thread.
    arbiter.spawn_fn(move || {
        actix_rt::spawn(run(router, settings, log));
    });
}

async fn run(router: Router, settings: HealthSettings, log: Logger) {
    let client = awc::Client::builder()
        .timeout(settings.probe_timeout)
        .disable_redirects()
        .finish();
    let mut tick = actix_rt::time::interval(settings.probe_interval);
    loop {
        tick.tick().await;
        if !router.actor().connected() {
            // The router is gone: the server is shutting down.
            return;
        }
        for lease in router.take_probes() {
            actix_rt::spawn(probe(client.clone(), lease, log.clone()));
        }
    }
}

async fn probe(client: awc::Client, lease: Lease, log: Logger) {
    let spec = lease.provider.clone();
    if providers::echo::is_echo(&spec) {
        // Answers in-process: nothing to probe.
        lease.finish(Outcome::Success {
            latency: Duration::ZERO,
        });
        return;
    }
    let adapter = providers::adapter_of(&spec);
    let request = UpstreamClient::new(&client).request(
        Method::GET,
        &lease,
        &adapter.probe_path(&spec),
        "",
        None,
        |request| request,
    );
    let started = Instant::now();
    let outcome = match request.send().await {
        Ok(response) => match status_failure(&response) {
            None => Outcome::Success {
                latency: started.elapsed(),
            },
            Some(failure) => Outcome::Failure(failure),
        },
        Err(error) => Outcome::Failure(send_failure(&error)),
    };
    match outcome {
        Outcome::Success { .. } => {
            info!(log, "probe.recovered"; "provider" => &spec.name, "key_id" => &lease.key_id)
        }
        _ => {
            debug!(log, "probe.failed"; "provider" => &spec.name, "key_id" => &lease.key_id, "outcome" => ?outcome)
        }
    }
    lease.finish(outcome);
}
