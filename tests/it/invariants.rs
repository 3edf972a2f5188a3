//! Runs that end cleanly where arithmetic reaches the end of the clock.

use super::support::{json, run};
use meshsim::engine::RunError;

/// A Pareto with a shape just above 1 has a finite mean and a tail that reaches past
/// the end of the clock (about 584 years): a draw saturates, and adding the protocol's
/// encode cost to it must saturate too, ending the run with `ClockOverflow`, not a panic.
#[test]
fn a_pareto_draw_past_the_end_of_the_clock_ends_the_run_cleanly() {
    let text = r#"
[simulation]
seed = 3
requests = 2000
[network]
latency = { dist = "pareto", scale = "24000h", shape = 1.0001 }
[policies.grpc]
protocol = "grpc"
[services.front]
workers = 4000
[services.front.endpoints.page]
steps = [{ call = "back/item", policy = "grpc" }]
[services.back]
workers = 4000
[services.back.endpoints.item]
steps = [{ work = "1ms" }]
[workloads.users]
target = "front/page"
rate = 100
"#;
    let sc = meshsim::scenario::from_source("pareto.toml", "pareto", text, &[])
        .unwrap_or_else(|e| panic!("invalid scenario:\n{e}"));
    match meshsim::simulate(sc) {
        Err(RunError::ClockOverflow { .. }) => {}
        Err(e) => panic!("expected the clock to overflow, got {e}"),
        Ok(_) => panic!("expected a draw past the end of the clock (p ~ 0.5% per message)"),
    }
}

fn consumer_scenario(work_ms: u32, ack_timeout_ms: u32) -> String {
    format!(
        r#"
[simulation]
seed = 5
requests = 200
[network]
latency = "1ms"
[workloads.w]
target = "api/send"
rate = 50
[services.api]
workers = 8
[services.api.endpoints.send]
steps = [{{ publish = "mq/jobs" }}]
[brokers.mq]
preset = "sqs"
latency = "1ms"
[brokers.mq.queues.jobs]
ack_timeout = "{ack_timeout_ms}ms"
delivery_limit = 2
[consumers.worker]
queue = "mq/jobs"
instances = 2
prefetch = 1
concurrency = 1
steps = [{{ work = "{work_ms}ms" }}]
"#
    )
}

/// A consumer's handler is wasted work (orphaned) only when the broker took its delivery
/// back before it answered; it used to count every consumer answer as orphaned.
#[test]
fn a_consumer_answer_is_orphaned_only_once_its_delivery_was_taken_back() {
    let ep = |text: &str| {
        let out = super::support::run(text, &[]);
        let r = super::support::json(&out.report);
        r["endpoints"]["worker/handle"].clone()
    };
    // 10 ms of work, 1 s to ack: nothing is taken back.
    let calm = ep(&consumer_scenario(10, 1000));
    assert_eq!(calm["completed"].as_u64(), Some(200), "{calm}");
    assert_eq!(calm["orphaned"].as_u64(), Some(0), "{calm}");
    // 10 ms of work, 5 ms to ack: every handler outlives its delivery, so every answer
    // is wasted (the message reappears, and is dropped after its third delivery).
    let late = ep(&consumer_scenario(10, 5));
    let completed = late["completed"].as_u64().unwrap();
    assert!(completed > 0, "{late}");
    assert_eq!(late["orphaned"].as_u64(), Some(completed), "{late}");
}

/// A consumer handler whose steps all take no time ends inside the call that starts it
/// and settles its delivery there; the bridge must not touch that delivery afterwards
/// (a Kafka group committing each message removed it, and the bridge panicked on a
/// stale id: found by `broker_properties` when an exponential work draw rounded to 0 ns).
#[test]
fn a_consumer_handler_that_takes_no_time_settles_its_delivery_once() {
    let text = r#"
[simulation]
seed = 1
requests = 20
[workloads.orders]
target = "api/place"
rate = 80
keys = 4
[services.api]
[services.api.endpoints.place]
steps = [ { work = "1ms" }, { publish = "kafka/orders" } ]
[brokers.kafka]
preset = "kafka"
[brokers.kafka.topics.orders]
partitions = 2
[consumers.billing]
topic = "kafka/orders"
instances = 2
start = "earliest"
commit = "each"
steps = [ { work = "0s" }, { effect = "charge" } ]
"#;
    let r = json(&run(text, &[]).report);
    let g = &r["consistency"]["groups"]["kafka/orders@billing"];
    assert_eq!(g["published"], 20, "{g}");
    assert_eq!(g["delivered"], 20, "{g}");
    assert_eq!(r["consistency"]["effects"]["charge"]["exactly_once"], 20);
}
