//! Engine throughput on the peers' models (../shared/peers): M/M/c and the 4-hop chain;
//! and on topologies that grow (a deep chain, a wide fan-out), whose events per second
//! should not depend on the depth or the width.
//! Criterion reports events per second ("elem/s"); divide by the events per customer
//! printed at the start to get customers per second, the figure to compare with SimPy.
//!
//!   cargo bench --bench engine
//!   cargo bench --bench engine -- topology
//!   cargo bench --bench engine -- 'payment_worker|sqs_fifo'   # the broker scenarios
//!   MESHSIM_BENCH_DUMP=/tmp/topo cargo bench --bench engine -- topology   # and the TOML files

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meshsim::scenario;

const MMC: &str = include_str!("../scenarios/mmc.toml");

/// Brokers: a RabbitMQ fanout to two worker queues (nack-requeue, a crash, a
/// processed-messages store), and SQS FIFO deduplication with idempotency keys.
const PAYMENT_WORKER: &str = include_str!("../scenarios/payment_worker_rabbitmq.toml");
const SQS_FIFO: &str = include_str!("../scenarios/sqs_fifo_orders.toml");

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

/// A chain of `hops` services, each doing 1 ms of exponential work on an event-loop
/// worker and calling the next over a 1 ms link; `requests` requests at 1000/s.
fn deep_chain(hops: usize, requests: u32) -> String {
    let mut toml =
        format!("[simulation]\nrequests = {requests}\nseed = 42\n[network]\nlatency = \"1ms\"\n");
    for h in 0..hops {
        let next = if h + 1 < hops {
            format!(", {{ call = \"s{}/get\" }}", h + 1)
        } else {
            String::new()
        };
        toml += &format!(
            "[services.s{h}]\nworkers = 8\nworker_during_calls = \"released\"\n\
             [services.s{h}.endpoints.get]\n\
             steps = [{{ work = {{ dist = \"exponential\", mean = \"1ms\" }} }}{next}]\n"
        );
    }
    toml + "[workloads.client]\ntarget = \"s0/get\"\nrate = 1000\n"
}

/// One `parallel` of `width` calls to a leaf service (1 ms exponential work), joined
/// with `all`; `requests` requests at 20/s.
fn fan_out(width: usize, requests: u32) -> String {
    let branches = vec!["{ call = \"leaf/get\" }"; width].join(", ");
    format!(
        "[simulation]\nrequests = {requests}\nseed = 42\n[network]\nlatency = \"1ms\"\n\
         [services.front]\nworkers = 8\nworker_during_calls = \"released\"\n\
         [services.front.endpoints.get]\nsteps = [{{ parallel = [{branches}], join = \"all\" }}]\n\
         [services.leaf]\nworkers = 64\n\
         [services.leaf.endpoints.get]\n\
         steps = [{{ work = {{ dist = \"exponential\", mean = \"1ms\" }} }}]\n\
         [workloads.client]\ntarget = \"front/get\"\nrate = 20\n"
    )
}

fn bench_model(c: &mut Criterion, name: &str, text: &str, overrides: &[&str]) {
    // MESHSIM_BENCH_DUMP=DIR writes each scenario to DIR/NAME.toml, to run it with the
    // CLI (whole-process figures, or an older binary for a before/after).
    if let Some(dir) = std::env::var_os("MESHSIM_BENCH_DUMP") {
        let path = std::path::Path::new(&dir).join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("MESHSIM_BENCH_DUMP is a writable folder");
    }
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

/// The same events per second whatever the depth or the width (within 1.5x): about
/// 400k events per run each.
fn topology(c: &mut Criterion) {
    bench_model(c, "topology_chain_4", &deep_chain(4, 20_000), &[]);
    bench_model(c, "topology_chain_400", &deep_chain(400, 200), &[]);
    bench_model(c, "topology_fanout_10", &fan_out(10, 4_000), &[]);
    bench_model(c, "topology_fanout_1000", &fan_out(1000, 40), &[]);
}

/// The broker scenarios (goal: 5 M events/s), about 300k events per run each.
fn brokers(c: &mut Criterion) {
    bench_model(
        c,
        "payment_worker_rabbitmq",
        PAYMENT_WORKER,
        &["simulation.requests=20000"],
    );
    bench_model(
        c,
        "sqs_fifo_orders",
        SQS_FIFO,
        &["simulation.requests=20000"],
    );
}

criterion_group!(benches, engine, topology, brokers);
criterion_main!(benches);
