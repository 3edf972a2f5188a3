//! Engine throughput on the peers' models (../shared/peers): M/M/c and the 4-hop chain.
//! Criterion reports events per second ("elem/s"); divide by the events per customer
//! printed at the start to get customers per second, the figure to compare with SimPy.
//!
//!   cargo bench --bench engine

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meshsim::scenario;

const MMC: &str = include_str!("../scenarios/mmc.toml");

/// The SimPy chain's full twin (timeouts and retries with backoff, work not cancelled);
/// scripts/compare_simpy.py runs it beside ../shared/peers/chain_simpy.py.
const CHAIN_TWIN: &str = include_str!("models/chain_simpy_twin.toml");

/// The nominal chain of ../shared/peers/chain_simpy.py (client -> gateway -> a -> b -> c,
/// exponential 50 ms work, 16 workers each, 5 ms per message, per-hop timeouts), without
/// its retries, which arrive with the resilience policies.
const CHAIN: &str = r#"
[simulation]
requests = 20000
seed = 42
[network]
latency = "5ms"
[services.gateway]
workers = 16
[services.gateway.endpoints.get]
steps = [{ work = { dist = "exponential", mean = "50ms" } }, { call = "a/get", timeout = "1s" }]
[services.a]
workers = 16
[services.a.endpoints.get]
steps = [{ work = { dist = "exponential", mean = "50ms" } }, { call = "b/get", timeout = "500ms" }]
[services.b]
workers = 16
[services.b.endpoints.get]
steps = [{ work = { dist = "exponential", mean = "50ms" } }, { call = "c/get", timeout = "250ms" }]
[services.c]
workers = 16
[services.c.endpoints.get]
steps = [{ work = { dist = "exponential", mean = "50ms" } }]
[workloads.client]
target = "gateway/get"
rate = 40
timeout = "2s"
"#;

fn bench_model(c: &mut Criterion, name: &str, text: &str, overrides: &[&str]) {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let load =
        || scenario::from_source(name, name, text, &overrides).expect("valid bench scenario");
    let probe = meshsim::simulate(load()).expect("runs");
    let events = probe.report.events;
    let customers = probe.report.requests_sent;
    eprintln!(
        "{name}: {customers} customers, {events} events, {:.2} events per customer",
        events as f64 / customers as f64
    );
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(events));
    group.sample_size(10);
    group.bench_function("run", |b| {
        b.iter(|| meshsim::simulate(load()).expect("runs").report.events)
    });
    group.finish();
}

fn engine(c: &mut Criterion) {
    bench_model(c, "mmc_lam9_c10", MMC, &["simulation.requests=200000"]);
    bench_model(c, "chain_4hop", CHAIN, &[]);
    bench_model(
        c,
        "chain_simpy_twin",
        CHAIN_TWIN,
        &["simulation.requests=20000"],
    );
}

criterion_group!(benches, engine);
criterion_main!(benches);
