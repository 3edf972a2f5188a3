//! The broker gaps of issue 11 section 5, with exact counts under constant arrivals:
//! TTL expiry on time (not only when the queue is next touched), `key` on a topic
//! publish choosing the partition, per-partition `appended` counts, and the summary's
//! queue table showing what the JSON has (expired, dropped, publish-failed).

use super::support::{json, run};
use meshsim::model::routing::kafka_partition;
use serde_json::Value;

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// 10 publishes 100 ms apart in the first second, then nothing: `q` (TTL 1 s) is read
/// by one consumer holding its single prefetch slot for 10 s, so every message but the
/// first waits in the queue until its TTL runs out, at most ~2 s into a 2.5 s run.
fn ttl_scenario(dead_letter: bool) -> String {
    format!(
        r#"
[simulation]
seed = 1
duration = "2500ms"
[network]
latency = "1ms"
[workloads.w]
target = "api/send"
arrivals = "constant"
schedule = [{{ at = "0s", rate = 10 }}, {{ at = "1s", rate = 0 }}]
[services.api.endpoints.send]
steps = [{{ publish = "mq/q" }}]
[brokers.mq]
preset = "rabbitmq"
latency = "1ms"
[brokers.mq.queues.q]
ttl = "1s"
{}
[brokers.mq.queues.dlq]
[consumers.slow]
queue = "mq/q"
instances = 1
prefetch = 1
concurrency = 1
steps = [{{ work = "10s" }}]
"#,
        if dead_letter {
            r#"dead_letter = "dlq""#
        } else {
            ""
        }
    )
}

/// Nothing touches `q` after the last publish (the consumer's ack comes at ~10 s, after
/// the run): messages used to stay in it past their TTL, `expired` 0 and all but one
/// `in_flight_end`. Each leaves when its TTL runs out.
#[test]
fn queue_messages_expire_at_their_ttl_even_when_nothing_touches_the_queue() {
    let r = json(&run(&ttl_scenario(true), &[]).report);
    let q = &r["consistency"]["queues"]["mq/q"];
    let published = n(&q["published"]);
    assert!((9..=11).contains(&published), "{q}");
    assert_eq!(n(&q["delivered"]), 1, "{q}");
    assert_eq!(n(&q["dead_lettered"]["expired"]), published - 1, "{q}");
    assert_eq!(n(&q["in_flight_end"]), 1, "{q}");
    assert_eq!(q["conserved"], true, "{q}");
    // ...and reached the dead-letter queue within the run.
    let dlq = &r["consistency"]["queues"]["mq/dlq"];
    assert_eq!(n(&dlq["published"]), published - 1, "{dlq}");
    assert_eq!(n(&dlq["in_flight_end"]), published - 1, "{dlq}");
}

/// The summary's queue table has the JSON's expired, dropped and publish-failed columns.
#[test]
fn the_summary_queue_table_shows_expired_dropped_and_publish_failed() {
    let text = format!(
        "{}{}",
        ttl_scenario(false).replace(
            r#"steps = [{ publish = "mq/q" }]"#,
            r#"steps = [{ publish = "mq/q" }, { publish = "mq/full" }, { publish = "mq/refusing", confirms = true, retries = 0 }]"#
        ),
        r#"
[brokers.mq.queues.full]
max_length = 1
overflow = "drop_head"
[brokers.mq.queues.refusing]
max_length = 1
overflow = "reject_publish"
"#
    );
    let out = run(&text, &[]);
    let r = json(&out.report);
    let p = n(&r["consistency"]["queues"]["mq/q"]["published"]);
    let summary = meshsim::report::text::summary(&out.report, "");
    let header = summary
        .lines()
        .find(|l| l.starts_with("queue/group"))
        .unwrap_or_else(|| panic!("no queue table:\n{summary}"));
    let columns: Vec<&str> = header.split_whitespace().collect();
    let row = |name: &str| -> Vec<String> {
        let line = summary
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}:\n{summary}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    let cell = |name: &str, column: &str| -> u64 {
        // The header's words before "out of order" line up with the row's cells.
        let i = columns
            .iter()
            .position(|c| *c == column)
            .unwrap_or_else(|| panic!("no column {column}: {header}"));
        row(name)[i].parse().unwrap()
    };
    for (queue, expired, dropped, failed, in_flight) in [
        ("mq/q", p - 1, 0, 0, 1),
        ("mq/full", 0, p - 1, 0, 1),
        ("mq/refusing", 0, 0, p - 1, 1),
    ] {
        assert_eq!(cell(queue, "expired"), expired, "{queue}:\n{summary}");
        assert_eq!(cell(queue, "dropped"), dropped, "{queue}:\n{summary}");
        assert_eq!(cell(queue, "publish-failed"), failed, "{queue}:\n{summary}");
        assert_eq!(cell(queue, "in-flight"), in_flight, "{queue}:\n{summary}");
        let j = &r["consistency"]["queues"][queue];
        assert_eq!(
            (n(&j["expired"]), n(&j["dropped"]), n(&j["publish_failed"])),
            (expired, dropped, failed),
            "{queue}: {j}"
        );
    }
}

fn topic_scenario(key: &str, keys: u32) -> String {
    format!(
        r#"
[simulation]
seed = 2
requests = 40
[workloads.w]
target = "api/send"
rate = 100
arrivals = "constant"
keys = {keys}
[services.api.endpoints.send]
steps = [{{ publish = "kafka/t"{key} }}]
[brokers.kafka]
preset = "kafka"
latency = "1ms"
[brokers.kafka.topics.t]
partitions = 4
[consumers.g]
topic = "kafka/t"
instances = 2
steps = [{{ work = "1ms" }}]
"#
    )
}

fn appended(r: &Value) -> Vec<u64> {
    let t = &r["consistency"]["topics"]["kafka/t"];
    let per = t["appended_per_partition"]
        .as_array()
        .unwrap_or_else(|| panic!("no appended_per_partition: {t}"));
    let per: Vec<u64> = per.iter().map(n).collect();
    assert_eq!(per.iter().sum::<u64>(), n(&t["appended"]), "{t}");
    per
}

/// Without a key on the step, the request's key picks the partition: one key (0) puts
/// all 40 messages on the partition of "0".
#[test]
fn a_topic_counts_what_each_partition_appended() {
    let r = json(&run(&topic_scenario("", 1), &[]).report);
    let mut want = vec![0; 4];
    want[kafka_partition(b"0", 4) as usize] = 40;
    assert_eq!(appended(&r), want);
}

/// A `key` on the step is the record key: 40 requests over 16 keys all land on the
/// partition of "order-7" (it used to be ignored, and the requests' keys spread them).
#[test]
fn a_key_on_a_topic_publish_chooses_the_partition() {
    let spread = appended(&json(&run(&topic_scenario("", 16), &[]).report));
    assert!(
        spread.iter().filter(|&&c| c > 0).count() > 1,
        "16 request keys spread over partitions: {spread:?}"
    );
    let r = json(&run(&topic_scenario(r#", key = "order-7""#, 16), &[]).report);
    let mut want = vec![0; 4];
    want[kafka_partition(b"order-7", 4) as usize] = 40;
    assert_eq!(appended(&r), want);
    let g = &r["consistency"]["groups"]["kafka/t@g"];
    assert_eq!(n(&g["acked"]), 40, "{g}");
}
