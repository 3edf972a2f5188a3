//! Properties over generated broker scenarios: queue consumers (RabbitMQ and SQS
//! presets), Kafka consumer groups and lossy publishers, under random consumer crashes,
//! broker outages and message loss. Whatever the combination, every queue and group
//! must account for every message it was sent (published = acked + dead-lettered +
//! expired + dropped + deduplicated + lost + publish_failed + in flight), an idempotent
//! consumer (a processed-messages store) must apply its effect at most once per
//! operation, a keyed Kafka group must keep per-key order, and a run must replay byte
//! for byte. One property shows the test can fail: without the store, nack(requeue)
//! after the effect duplicates it. Property 7 pinned down the prefetch bug (a consumer
//! kept the copies the broker had taken back, so its backlog grew past its prefetch).

use super::support::json;
use proptest::prelude::*;
use serde_json::Value;

// ---- running a generated scenario ----

/// Parses and runs a generated scenario; an invalid one is a bug of the generator.
fn simulate(text: &str) -> (String, Value) {
    let sc = meshsim::scenario::from_source("broker_prop.toml", "broker_prop", text, &[])
        .unwrap_or_else(|e| panic!("generated an invalid scenario:\n{e}\n{text}"));
    let out = meshsim::simulate(sc)
        .unwrap_or_else(|e| panic!("did not run within its budget: {e}\n{text}"));
    (out.report.to_json(), json(&out.report))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Checks one queue or group's books from its own fields (not only its `conserved`
/// flag), and that the flag agrees. Returns a description of what is wrong, if anything.
fn books(name: &str, f: &Value) -> Result<(), String> {
    let dl = &f["dead_lettered"];
    let dl_total =
        n(&dl["rejected"]) + n(&dl["expired"]) + n(&dl["maxlen"]) + n(&dl["delivery_limit"]);
    if dl_total != n(&dl["total"]) {
        return Err(format!(
            "{name}: dead-letter reasons sum to {dl_total}, total says {}",
            n(&dl["total"])
        ));
    }
    let accounted = n(&f["acked"])
        + dl_total
        + n(&f["expired"])
        + n(&f["dropped"])
        + n(&f["deduplicated"])
        + n(&f["lost"])
        + n(&f["publish_failed"])
        + n(&f["in_flight_end"]);
    let conserved = n(&f["published"]) == accounted;
    if f["conserved"].as_bool() != Some(conserved) {
        return Err(format!(
            "{name}: conserved = {} but published {} vs accounted {accounted}: {f}",
            f["conserved"],
            n(&f["published"])
        ));
    }
    if !conserved {
        return Err(format!(
            "{name}: published {} != accounted {accounted}: {f}",
            n(&f["published"])
        ));
    }
    if n(&f["redelivered"]) > n(&f["delivered"]) {
        return Err(format!("{name}: more redeliveries than deliveries: {f}"));
    }
    Ok(())
}

/// Every queue and group balances, and so does the report's overall flag.
fn all_books(r: &Value) -> Result<(), String> {
    let c = &r["consistency"];
    for kind in ["queues", "groups"] {
        for (name, f) in c[kind].as_object().unwrap() {
            books(name, f)?;
        }
    }
    if c["conserved"].as_bool() != Some(true) {
        return Err(format!("consistency.conserved is {}", c["conserved"]));
    }
    Ok(())
}

/// Generated runs take a few thousand events; a run that has not drained after this
/// many is stuck, and fails fast instead of growing without bound.
const MAX_EVENTS: u64 = 2_000_000;

fn fault_window(from_ms: u32, len_ms: u32) -> String {
    format!(
        "from = \"{from_ms}ms\"\nuntil = \"{}ms\"\n",
        from_ms + len_ms
    )
}

// ---- queue consumers: RabbitMQ and SQS ----

#[derive(Debug, Clone, Copy, PartialEq)]
enum OnFailure {
    Requeue,
    /// reject(requeue=false), to the dead-letter queue.
    Reject,
    Retry {
        attempts: u32,
        exponential: bool,
    },
    /// Leave it to the ack (visibility) timeout.
    Timeout,
}

#[derive(Debug, Clone)]
struct QueueKnobs {
    sqs: bool,
    instances: u32,
    prefetch: u32,
    concurrency: u32,
    on_failure: OnFailure,
    /// Percent: the handler fails after its effect with this probability.
    fail_pct: u32,
    dedupe: bool,
    requests: u32,
    rate: u32,
    work_ms: u32,
    /// Percent of publishes lost on the way to the broker.
    loss_pct: u32,
    retries: u32,
    /// (instance, from ms, length ms)
    crashes: Vec<(u32, u32, u32)>,
    /// (from ms, length ms)
    broker_down: Option<(u32, u32)>,
    /// The queue's ack (visibility) timeout, shorter than the preset's: deliveries
    /// are taken back while their handlers run or wait.
    ack_timeout_ms: Option<u32>,
    seed: u64,
}

fn on_failure() -> impl Strategy<Value = OnFailure> {
    prop_oneof![
        Just(OnFailure::Requeue),
        Just(OnFailure::Reject),
        (1u32..=5, any::<bool>()).prop_map(|(attempts, exponential)| OnFailure::Retry {
            attempts,
            exponential
        }),
        Just(OnFailure::Timeout),
    ]
}

fn queue_knobs() -> impl Strategy<Value = QueueKnobs> {
    (
        (
            any::<bool>(),
            1u32..=4,
            0u32..=20,
            1u32..=3,
            on_failure(),
            0u32..=30,
        ),
        (100u32..=300, 80u32..=250, 1u32..=60, 0u32..=20, 0u32..=5),
        (
            prop::collection::vec((0u32..4, 0u32..3000, 50u32..1500), 0..=2),
            prop::option::of((0u32..3000, 20u32..800)),
            prop::option::weighted(0.25, 300u32..=3000),
            0u64..i64::MAX as u64,
        ),
    )
        .prop_map(
            |(
                (sqs, instances, prefetch, concurrency, on_failure, fail_pct),
                (requests, rate, work_ms, loss_pct, retries),
                (crashes, broker_down, ack_timeout_ms, seed),
            )| QueueKnobs {
                sqs,
                instances,
                prefetch,
                concurrency,
                on_failure,
                fail_pct,
                dedupe: true,
                requests,
                rate,
                work_ms,
                loss_pct,
                retries,
                crashes: crashes
                    .into_iter()
                    .map(|(i, from, len)| (i % instances, from, len))
                    .collect(),
                broker_down,
                ack_timeout_ms,
                seed,
            },
        )
}

/// The same generator with the store off and a known-bad configuration: nack(requeue)
/// after the effect, failing often, on at least 200 messages.
fn bad_queue_knobs() -> impl Strategy<Value = QueueKnobs> {
    (queue_knobs(), 20u32..=30, 200u32..=300).prop_map(|(mut k, fail_pct, requests)| {
        k.dedupe = false;
        k.on_failure = OnFailure::Requeue;
        k.fail_pct = fail_pct;
        k.requests = requests;
        k.ack_timeout_ms = None;
        k
    })
}

fn queue_scenario(k: &QueueKnobs) -> String {
    let preset = if k.sqs { "sqs" } else { "rabbitmq" };
    let on_failure = match k.on_failure {
        OnFailure::Requeue => "on_failure = \"requeue\"".to_owned(),
        OnFailure::Reject => "on_failure = \"reject\"".to_owned(),
        OnFailure::Retry {
            attempts,
            exponential,
        } => format!(
            "on_failure = \"retry\"\nattempts = {attempts}\ndelay = \"5ms\"\nbackoff = \"{}\"",
            if exponential { "exponential" } else { "fixed" }
        ),
        OnFailure::Timeout => "on_failure = \"timeout\"".to_owned(),
    };
    let ack_timeout = match k.ack_timeout_ms {
        Some(ms) => format!("ack_timeout = \"{ms}ms\""),
        None => String::new(),
    };
    let dedupe = if k.dedupe {
        "dedupe = { by = \"message\" }"
    } else {
        ""
    };
    let mut faults = String::new();
    for &(instance, from, len) in &k.crashes {
        faults += &format!(
            "[[faults]]\nkind = \"crash\"\nservice = \"worker\"\nreplica = {instance}\n{}",
            fault_window(from, len)
        );
    }
    if let Some((from, len)) = k.broker_down {
        faults += &format!(
            "[[faults]]\nkind = \"broker_down\"\nbroker = \"mq\"\n{}",
            fault_window(from, len)
        );
    }
    format!(
        r#"
[simulation]
seed = {seed}
requests = {requests}
max_events = {MAX_EVENTS}
[network]
latency = "1ms"
[workloads.w]
target = "api/send"
rate = {rate}
[services.api]
workers = 64
[services.api.endpoints.send]
steps = [ {{ work = "1ms" }}, {{ publish = "mq/jobs", confirms = true, retries = {retries} }} ]
[brokers.mq]
preset = "{preset}"
latency = {{ dist = "exponential", mean = "1ms" }}
loss = {loss}
[brokers.mq.queues.jobs]
dead_letter = "dlq"
{ack_timeout}
[brokers.mq.queues.dlq]
[consumers.worker]
queue = "mq/jobs"
instances = {instances}
prefetch = {prefetch}
concurrency = {concurrency}
{on_failure}
{dedupe}
steps = [
  {{ work = {{ dist = "exponential", mean = "{work}ms" }} }},
  {{ effect = "charge" }},
  {{ fail = "unavailable", p = {fail} }},
]
{faults}
"#,
        seed = k.seed,
        requests = k.requests,
        rate = k.rate,
        retries = k.retries,
        loss = f64::from(k.loss_pct) / 100.0,
        instances = k.instances,
        prefetch = k.prefetch,
        concurrency = k.concurrency,
        work = k.work_ms,
        fail = f64::from(k.fail_pct) / 100.0,
    )
}

/// What holds for every queue run, store or not.
fn queue_run_invariants(r: &Value) -> Result<(), TestCaseError> {
    prop_assert_eq!(r["stop"].as_str(), Some("drained"));
    all_books(r).map_err(TestCaseError::fail)?;
    let jobs = &r["consistency"]["queues"]["mq/jobs"];
    let worker = &r["consistency"]["consumers"]["worker"];
    // One consumer on the queue: its deliveries are the queue's.
    prop_assert_eq!(n(&jobs["delivered"]), n(&worker["deliveries"]));
    // The run drained with every consumer back up: nothing waits in the work queue.
    prop_assert_eq!(n(&jobs["in_flight_end"]), 0, "mq/jobs: {}", jobs);
    // Confirmed publishes: none is lost unseen.
    prop_assert_eq!(n(&jobs["lost"]), 0);
    // No TTL, no max length, drained: every message taken in was delivered once, and
    // every further delivery carries the redelivered flag.
    prop_assert_eq!(
        n(&jobs["delivered"]),
        n(&jobs["enqueued"]) + n(&jobs["redelivered"]),
        "mq/jobs: {}",
        jobs
    );
    // Each application of the effect is a handler run, which needs a delivery; and
    // every application beyond an operation's first needs a redelivery.
    let e = &r["consistency"]["effects"]["charge"];
    let applied = n(&e["applied"]);
    let ops_applied = n(&e["exactly_once"]) + n(&e["duplicated"]);
    prop_assert!(
        applied <= n(&jobs["delivered"]),
        "effect: {}\nmq/jobs: {}",
        e,
        jobs
    );
    prop_assert!(
        applied - ops_applied <= n(&jobs["redelivered"]),
        "effect: {}\nmq/jobs: {}",
        e,
        jobs
    );
    Ok(())
}

// ---- Kafka consumer groups ----

#[derive(Debug, Clone)]
struct KafkaKnobs {
    partitions: u32,
    instances: u32,
    keys: u32,
    /// "auto" (with an interval), "each", or "batch" (with a size).
    commit: &'static str,
    commit_interval_ms: u32,
    commit_batch: u32,
    assignment: &'static str,
    session_timeout_ms: u32,
    /// max.poll.interval.ms: a handler running longer makes its member leave the group.
    max_poll_ms: Option<u32>,
    dedupe: bool,
    requests: u32,
    rate: u32,
    work_ms: u32,
    crashes: Vec<(u32, u32, u32)>,
    seed: u64,
}

fn kafka_knobs() -> impl Strategy<Value = KafkaKnobs> {
    (
        (1u32..=8, any::<bool>(), 0u32..8, 1u32..=50),
        (
            prop::sample::select(vec!["auto", "each", "batch"]),
            50u32..=2000,
            1u32..=20,
            prop::sample::select(vec!["range", "round_robin", "cooperative"]),
            100u32..=2000,
        ),
        (any::<bool>(), 100u32..=300, 80u32..=250, 1u32..=50),
        (
            prop::collection::vec((0u32..8, 0u32..3000, 50u32..2000), 0..=2),
            prop::option::of(100u32..=500),
            0u64..i64::MAX as u64,
        ),
    )
        .prop_map(
            |(
                (partitions, one_per_partition, fewer, keys),
                (commit, commit_interval_ms, commit_batch, assignment, session_timeout_ms),
                (dedupe, requests, rate, work_ms),
                (crashes, max_poll_ms, seed),
            )| {
                let instances = if one_per_partition {
                    partitions
                } else {
                    1 + fewer % partitions
                };
                KafkaKnobs {
                    partitions,
                    instances,
                    keys,
                    commit,
                    commit_interval_ms,
                    commit_batch,
                    assignment,
                    session_timeout_ms,
                    max_poll_ms,
                    dedupe,
                    requests,
                    rate,
                    work_ms,
                    crashes: crashes
                        .into_iter()
                        .map(|(i, from, len)| (i % instances, from, len))
                        .collect(),
                    seed,
                }
            },
        )
}

fn kafka_scenario(k: &KafkaKnobs) -> String {
    let commit = match k.commit {
        "auto" => format!(
            "commit = \"auto\"\ncommit_interval = \"{}ms\"",
            k.commit_interval_ms
        ),
        "batch" => format!("commit = \"batch\"\ncommit_batch = {}", k.commit_batch),
        other => format!("commit = \"{other}\""),
    };
    let dedupe = if k.dedupe {
        "dedupe = { by = \"message\" }"
    } else {
        ""
    };
    let max_poll = match k.max_poll_ms {
        Some(ms) => format!("max_poll_interval = \"{ms}ms\""),
        None => String::new(),
    };
    let mut faults = String::new();
    for &(instance, from, len) in &k.crashes {
        faults += &format!(
            "[[faults]]\nkind = \"crash\"\nservice = \"billing\"\nreplica = {instance}\n{}",
            fault_window(from, len)
        );
    }
    // A constant broker latency: messages reach the log in the order they were
    // published, so per-key order is the consumers' to keep.
    format!(
        r#"
[simulation]
seed = {seed}
requests = {requests}
max_events = {MAX_EVENTS}
[network]
latency = "1ms"
[workloads.orders]
target = "api/place"
rate = {rate}
keys = {keys}
[services.api]
workers = 64
[services.api.endpoints.place]
steps = [ {{ work = {{ dist = "exponential", mean = "2ms" }} }}, {{ publish = "kafka/orders" }} ]
[brokers.kafka]
preset = "kafka"
latency = "1ms"
[brokers.kafka.topics.orders]
partitions = {partitions}
[consumers.billing]
topic = "kafka/orders"
instances = {instances}
start = "earliest"
{commit}
assignment = "{assignment}"
session_timeout = "{session}ms"
{max_poll}
{dedupe}
steps = [
  {{ work = {{ dist = "exponential", mean = "{work}ms" }} }},
  {{ effect = "charge" }},
]
{faults}
"#,
        seed = k.seed,
        requests = k.requests,
        rate = k.rate,
        keys = k.keys,
        partitions = k.partitions,
        instances = k.instances,
        assignment = k.assignment,
        session = k.session_timeout_ms,
        work = k.work_ms,
    )
}

// ---- lossy publishers without confirms ----

#[derive(Debug, Clone)]
struct LossyKnobs {
    /// "rabbitmq", "sqs" or "kafka".
    preset: &'static str,
    loss_pct: u32,
    instances: u32,
    requests: u32,
    crash: Option<(u32, u32, u32)>,
    broker_down: Option<(u32, u32)>,
    seed: u64,
}

fn lossy_knobs() -> impl Strategy<Value = LossyKnobs> {
    (
        prop::sample::select(vec!["rabbitmq", "sqs", "kafka"]),
        10u32..=30,
        1u32..=3,
        200u32..=300,
        prop::option::of((0u32..3, 0u32..2500, 50u32..1500)),
        prop::option::of((0u32..2500, 20u32..800)),
        0u64..i64::MAX as u64,
    )
        .prop_map(
            |(preset, loss_pct, instances, requests, crash, broker_down, seed)| LossyKnobs {
                preset,
                loss_pct,
                instances,
                requests,
                crash: crash.map(|(i, from, len)| (i % instances, from, len)),
                broker_down,
                seed,
            },
        )
}

fn lossy_scenario(k: &LossyKnobs) -> String {
    let kafka = k.preset == "kafka";
    let (declare, subscribe) = if kafka {
        (
            "[brokers.mq.topics.events]\npartitions = 3",
            "topic = \"mq/events\"\nstart = \"earliest\"\ncommit = \"each\"\nsession_timeout = \"500ms\"",
        )
    } else {
        ("[brokers.mq.queues.events]", "queue = \"mq/events\"")
    };
    let mut faults = String::new();
    if let Some((instance, from, len)) = k.crash {
        faults += &format!(
            "[[faults]]\nkind = \"crash\"\nservice = \"sink\"\nreplica = {instance}\n{}",
            fault_window(from, len)
        );
    }
    if let Some((from, len)) = k.broker_down {
        faults += &format!(
            "[[faults]]\nkind = \"broker_down\"\nbroker = \"mq\"\n{}",
            fault_window(from, len)
        );
    }
    format!(
        r#"
[simulation]
seed = {seed}
requests = {requests}
max_events = {MAX_EVENTS}
[network]
latency = "1ms"
[workloads.w]
target = "api/emit"
rate = 150
keys = 20
[services.api]
workers = 16
[services.api.endpoints.emit]
steps = [ {{ work = "1ms" }}, {{ publish = "mq/events", confirms = false }} ]
[brokers.mq]
preset = "{preset}"
loss = {loss}
{declare}
[consumers.sink]
{subscribe}
instances = {instances}
dedupe = {{ by = "message" }}
steps = [ {{ work = {{ dist = "exponential", mean = "5ms" }} }}, {{ effect = "record" }} ]
{faults}
"#,
        seed = k.seed,
        requests = k.requests,
        preset = k.preset,
        loss = f64::from(k.loss_pct) / 100.0,
        instances = k.instances,
    )
}

fn flow_of<'a>(r: &'a Value, k: &LossyKnobs) -> &'a Value {
    if k.preset == "kafka" {
        &r["consistency"]["groups"]["mq/events@sink"]
    } else {
        &r["consistency"]["queues"]["mq/events"]
    }
}

proptest! {
    // No regressions file: a failure prints its minimal scenario, which is what to keep.
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// 1. An idempotent queue consumer (the inbox pattern: the message id is stored in
    /// the effect's transaction) applies its effect at most once per operation, whatever
    /// the preset, prefetch, failure handling, crashes, broker outages and publish loss.
    /// (At 3c89ab2 this failed: a handler whose delivery the broker had taken back, as
    /// on broker_down, applied its effect outside the store's transaction.)
    #[test]
    fn idempotent_queue_consumers_apply_effects_at_most_once(k in queue_knobs()) {
        let text = queue_scenario(&k);
        let (_, r) = simulate(&text);
        queue_run_invariants(&r)?;
        let e = &r["consistency"]["effects"]["charge"];
        prop_assert_eq!(n(&e["duplicated"]), 0, "effect charge: {}\n{}", e, text);
        prop_assert!(n(&e["max_count"]) <= 1, "effect charge: {}\n{}", e, text);
    }

    /// 2. The same generator without the store, nacking (requeue) after the effect 20-30%
    /// of the time, on 200+ messages: duplicates are certain. This property shows the
    /// others can fail.
    #[test]
    fn requeue_after_the_effect_without_a_store_duplicates(k in bad_queue_knobs()) {
        let text = queue_scenario(&k);
        let (_, r) = simulate(&text);
        queue_run_invariants(&r)?;
        let e = &r["consistency"]["effects"]["charge"];
        prop_assert!(n(&e["duplicated"]) > 0, "effect charge: {}\n{}", e, text);
        prop_assert!(n(&e["max_count"]) >= 2);
        prop_assert!(n(&r["consistency"]["queues"]["mq/jobs"]["redelivered"]) > 0);
    }

    /// 3. A keyed Kafka group keeps per-key order and balances its books through
    /// crashes and rebalances under every commit policy and assignor; with a store it
    /// also applies each operation's effect exactly once (the run drains).
    #[test]
    fn kafka_groups_keep_key_order_and_with_a_store_apply_exactly_once(k in kafka_knobs()) {
        let text = kafka_scenario(&k);
        let (_, r) = simulate(&text);
        prop_assert_eq!(r["stop"].as_str(), Some("drained"));
        all_books(&r).map_err(TestCaseError::fail)?;
        let g = &r["consistency"]["groups"]["kafka/orders@billing"];
        prop_assert_eq!(n(&g["ordering_violations"]), 0, "group: {}\n{}", g, text);
        prop_assert_eq!(n(&g["in_flight_end"]), 0, "group: {}\n{}", g, text);
        prop_assert_eq!(n(&g["acked"]), n(&g["published"]), "group: {}\n{}", g, text);
        let e = &r["consistency"]["effects"]["charge"];
        prop_assert!(n(&e["applied"]) <= n(&g["delivered"]), "effect: {}\ngroup: {}", e, g);
        if k.dedupe {
            let e = &r["consistency"]["effects"]["charge"];
            prop_assert_eq!(n(&e["duplicated"]), 0, "effect charge: {}\n{}", e, text);
            prop_assert!(n(&e["max_count"]) <= 1, "effect charge: {}\n{}", e, text);
            prop_assert_eq!(n(&e["never"]), 0, "effect charge: {}\n{}", e, text);
            prop_assert_eq!(n(&e["exactly_once"]), u64::from(k.requests), "effect charge: {}\n{}", e, text);
        }
    }

    /// 4. A publisher without confirms on a lossy broker loses messages unseen: the
    /// books still balance, with the loss in `lost`, and exactly the messages that never
    /// got handled are the operations whose effect never happened.
    #[test]
    fn unconfirmed_publishes_are_lost_and_accounted(k in lossy_knobs()) {
        let text = lossy_scenario(&k);
        let (_, r) = simulate(&text);
        prop_assert_eq!(r["stop"].as_str(), Some("drained"));
        all_books(&r).map_err(TestCaseError::fail)?;
        let f = flow_of(&r, &k);
        prop_assert!(n(&f["lost"]) > 0, "flow: {}\n{}", f, text);
        // Nobody is told of a failure without confirms.
        prop_assert_eq!(n(&f["publish_failed"]), 0, "flow: {}\n{}", f, text);
        prop_assert_eq!(n(&f["published"]), u64::from(k.requests), "flow: {}\n{}", f, text);
        let e = &r["consistency"]["effects"]["record"];
        prop_assert_eq!(n(&e["never"]), n(&f["published"]) - n(&f["acked"]), "effect: {}\nflow: {}\n{}", e, f, text);
        // Every request was answered ok: the publisher never knew.
        prop_assert_eq!(n(&r["workloads"]["w"]["ok"]), u64::from(k.requests));
    }

    /// 6. A group's `redelivered` counts "offsets read again after a rewind": in a
    /// drained run from the earliest offset, every offset is read once for the first
    /// time, so delivered = published + redelivered; and without a store every
    /// application of the effect beyond an operation's first needs a redelivery.
    #[test]
    fn kafka_group_redeliveries_are_counted(k in kafka_knobs()) {
        let k = KafkaKnobs { dedupe: false, ..k };
        let text = kafka_scenario(&k);
        let (_, r) = simulate(&text);
        let g = &r["consistency"]["groups"]["kafka/orders@billing"];
        let e = &r["consistency"]["effects"]["charge"];
        prop_assert_eq!(
            n(&g["delivered"]),
            n(&g["published"]) + n(&g["redelivered"]),
            "group: {}\n{}", g, text
        );
        let extra = n(&e["applied"]) - n(&e["exactly_once"]) - n(&e["duplicated"]);
        prop_assert!(extra <= n(&g["redelivered"]), "effect: {}\ngroup: {}\n{}", e, g, text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// 5. Same generated broker scenario, same seed: the same report.json, byte for byte.
    #[test]
    fn broker_scenarios_replay_byte_for_byte(
        text in prop_oneof![
            queue_knobs().prop_map(|mut k| {
                k.dedupe = k.seed % 2 == 0;
                // Without a store, a short ack timeout can livelock (property 7).
                if !k.dedupe {
                    k.ack_timeout_ms = None;
                }
                queue_scenario(&k)
            }),
            kafka_knobs().prop_map(|k| kafka_scenario(&k)),
            lossy_knobs().prop_map(|k| lossy_scenario(&k)),
        ]
    ) {
        let (a, _) = simulate(&text);
        let (b, _) = simulate(&text);
        prop_assert!(a == b, "two runs differ:\n{}", text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// 7. A queue consumer with a bounded prefetch and an ack (visibility) timeout
    /// shorter than the preset's still drains its queue: prefetch bounds what an
    /// instance holds, so it works through at most `prefetch` messages at a time, the
    /// first of which finish in time, and every failure is retried or dead-lettered.
    #[test]
    fn queue_consumers_with_short_ack_timeouts_drain(
        k in (queue_knobs(), 1u32..=20, 100u32..=1000).prop_map(|(k, prefetch, t)| QueueKnobs {
            // A bounded prefetch: with prefetch = 0 (unlimited) an instance may really
            // hold more than it can handle within the timeout, and livelock.
            prefetch,
            dedupe: false,
            ack_timeout_ms: Some(t),
            ..k
        })
    ) {
        let text = queue_scenario(&k);
        let sc = meshsim::scenario::from_source("broker_prop.toml", "broker_prop", &text, &[])
            .unwrap_or_else(|e| panic!("generated an invalid scenario:\n{e}\n{text}"));
        let out = meshsim::simulate(sc);
        prop_assert!(out.is_ok(), "did not drain within {} events:\n{}", MAX_EVENTS, text);
        let r = json(&out.unwrap().report);
        queue_run_invariants(&r)?;
    }
}
