//! What one lease costs with 10 and with 10,000 keys in a provider: the key
//! pool alone, and a whole route as an HTTP worker takes it (`Router::route`
//! under the table's and the pool's locks, then `Lease::finish`). Run by `make bench`; prints a table. A tenth of the keys
//! are cooling down, so choices skip some keys as they would in production.

use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_actors::{
    Failure, KeyPool, KeySpec, KeyStrategy, Outcome, ProviderRoute, ProviderSpec, RetryPolicy,
    RouterActor, Tried,
};

const POOL_ROUNDS: u32 = 200_000;
const ROUTE_ROUNDS: u32 = 100_000;
const MODEL: &str = "bench-model";

fn keys(count: usize) -> Vec<KeySpec> {
    (0..count)
        .map(|i| KeySpec {
            id: format!("key-{i}"),
            secret: Arc::from(format!("secret-{i}")),
            weight: 1 + (i % 3) as u32,
            priority: (i % 5) as i32,
            enabled: true,
            disabled_reason: None,
            max_in_flight: 0,
        })
        .collect()
}

/// A pool with every tenth key rate limited.
fn pool(count: usize, strategy: KeyStrategy) -> KeyPool {
    let mut pool = KeyPool::new(keys(count), strategy, RetryPolicy::default());
    let now = Instant::now();
    for index in (0..count).step_by(10) {
        pool.report(
            index,
            Outcome::Failure(Failure::RateLimited {
                retry_after: Some(Duration::from_secs(3600)),
            }),
            now,
        );
    }
    pool
}

fn pool_ns_per_lease(count: usize, strategy: KeyStrategy) -> f64 {
    let mut pool = pool(count, strategy);
    let started = Instant::now();
    for _ in 0..POOL_ROUNDS {
        let now = Instant::now();
        if let Ok(index) = pool.acquire(now, &[]) {
            pool.report(
                index,
                Outcome::Success {
                    latency: Duration::from_millis(1),
                },
                now,
            );
        }
    }
    started.elapsed().as_nanos() as f64 / f64::from(POOL_ROUNDS)
}

fn spec() -> ProviderSpec {
    ProviderSpec {
        name: "bench".to_owned(),
        kind: "openai".to_owned(),
        base_url: "http://127.0.0.1:9/v1".to_owned(),
        api_version: None,
        headers: Vec::new(),
        strategy: KeyStrategy::RoundRobin,
        policy: RetryPolicy::default(),
    }
}

/// `Router::route` + `Lease::finish` as a request handler does it: on a
/// worker thread, with the router actor (and the provider's) living on
/// another arbiter, as the control arbiter does in the server. Returns
/// (mean, p50, p99) in microseconds.
async fn router_route(count: usize) -> (f64, f64, f64) {
    let arbiter = Arbiter::new();
    let keys = keys(count);
    let Some(router) = RouterActor::start_on(&arbiter.handle(), move || {
        let route = ProviderRoute::start(spec(), keys, vec![MODEL.to_owned()], 1);
        RouterActor::new(vec![route], HashMap::new())
    })
    .await
    else {
        eprintln!("the router did not start");
        return (0.0, 0.0, 0.0);
    };
    let tried = Tried::default();
    // Warm up: caches, allocator.
    for _ in 0..ROUTE_ROUNDS / 10 {
        if let Ok(routed) = router.route(MODEL, &tried) {
            routed.lease.finish(Outcome::Abandoned);
        }
    }
    let mut samples = Vec::with_capacity(ROUTE_ROUNDS as usize);
    for _ in 0..ROUTE_ROUNDS {
        let started = Instant::now();
        if let Ok(routed) = router.route(MODEL, &tried) {
            routed.lease.finish(Outcome::Success {
                latency: Duration::from_millis(1),
            });
        }
        samples.push(started.elapsed().as_nanos() as f64 / 1000.0);
    }
    arbiter.stop();
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (mean, at(0.5), at(0.99))
}

fn main() {
    println!("lease cost: key pool alone (ns per acquire + report, 10% of keys cooling)");
    println!(
        "{:<16} {:>12} {:>14} {:>8}",
        "strategy", "10 keys", "10,000 keys", "ratio"
    );
    for strategy in [
        KeyStrategy::RoundRobin,
        KeyStrategy::FirstAvailable,
        KeyStrategy::Random,
        KeyStrategy::Weighted,
        KeyStrategy::LeastInFlight,
        KeyStrategy::Latency,
    ] {
        let small = pool_ns_per_lease(10, strategy);
        let large = pool_ns_per_lease(10_000, strategy);
        println!(
            "{:<16} {:>12.0} {:>14.0} {:>7.2}x",
            format!("{strategy:?}"),
            small,
            large,
            large / small
        );
    }
    let system = System::new();
    system.block_on(async {
        println!();
        println!(
            "lease cost: Router::route + Lease::finish on a worker, router on another arbiter (us)"
        );
        println!("{:<10} {:>8} {:>8} {:>8}", "keys", "mean", "p50", "p99");
        for count in [10, 10_000] {
            let (mean, p50, p99) = router_route(count).await;
            println!("{count:<10} {mean:>8.2} {p50:>8.2} {p99:>8.2}");
        }
    });
}
