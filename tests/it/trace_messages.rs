//! A traced request's messages: the publish, the broker hop, every delivery (numbered,
//! redelivered or not), the consumer's handler with its calls, the settlement, the
//! redelivery after a nack or an ack timeout, dead-lettering, and a topic's partition
//! and offset. Constant distributions, so every time is exact.

use crate::trace::{check_shape, events, observed};
use meshsim::metrics::trace::Traces;
use meshsim::model::spec::WorkloadId;
use meshsim::model::trace::TraceSelect;
use serde_json::Value;

/// One order: api works 5 ms and publishes to mq/orders; the worker calls the ledger
/// and works 2 ms. The ledger is down from 1008 ms to 1010 ms: the worker's first
/// delivery finds it down and fails. Every hop is 1 ms.
const ORDERS: &str = r#"
[simulation]
requests = 1
[network]
latency = "1ms"
[workloads.w]
target = "api/post"
arrivals = "constant"
rate = 1                       # the request leaves at 1 s
[services.api.endpoints.post]
steps = [{ work = "5ms" }, { publish = "mq/orders" }]
[services.ledger.endpoints.put]
steps = [{ work = "3ms" }]
[brokers.mq]
latency = "1ms"
[brokers.mq.queues.orders]
ack_timeout = "30ms"
dead_letter = "dlq"
[brokers.mq.queues.dlq]
[consumers.worker]
queue = "mq/orders"
on_failure = "requeue"
steps = [{ call = "ledger/put" }, { work = "2ms" }]
[consumers.auditor]
queue = "mq/dlq"
steps = [{ work = "1ms" }]
[[faults]]
kind = "down"
service = "ledger"
from = "1008ms"
until = "1010ms"
"#;

fn first_request(text: &str, overrides: &[&str]) -> (Traces, Vec<Value>) {
    let (_, traces) = observed(
        "orders",
        text,
        overrides,
        TraceSelect::Request {
            workload: WorkloadId(0),
            number: 1,
        },
    );
    assert_eq!(traces.traces.len(), 1);
    let ev = events(&traces);
    check_shape(&ev);
    (traces, ev)
}

/// Milliseconds since the request left (at 1 s).
fn ms(e: &Value, key: &str) -> f64 {
    let x = e[key].as_f64().unwrap();
    let x = if key == "ts" { x - 1e6 } else { x };
    (x / 1e3 * 1e6).round() / 1e6
}

fn of_cat<'a>(ev: &'a [Value], cat: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["cat"] == cat).collect()
}

/// (name, start ms, duration ms) of a category's spans.
fn timed(ev: &[Value], cat: &str) -> Vec<(String, f64, f64)> {
    of_cat(ev, cat)
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                ms(e, "ts"),
                ms(e, "dur"),
            )
        })
        .collect()
}

/// The flows' names, in the file's order.
fn hops(ev: &[Value]) -> Vec<&str> {
    ev.iter()
        .filter(|e| e["ph"] == "s")
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

/// The name of a span's thread.
fn thread_of(ev: &[Value], span: &Value) -> String {
    let m = ev
        .iter()
        .find(|m| {
            m["ph"] == "M"
                && m["name"] == "thread_name"
                && m["pid"] == span["pid"]
                && m["tid"] == span["tid"]
        })
        .unwrap();
    m["args"]["name"].as_str().unwrap().to_owned()
}

#[test]
fn a_nacked_message_is_delivered_again_and_acked_on_time() {
    let (_, ev) = first_request(ORDERS, &[]);
    // The request: 1 ms there, 5 ms of work (the publish takes no time), 1 ms back.
    assert_eq!(
        timed(&ev, "request"),
        [("request #1 -> api/post".to_owned(), 0.0, 7.0)]
    );
    // The publish, at the end of api's work, with no confirm to wait for.
    let publish = of_cat(&ev, "publish");
    assert_eq!(publish.len(), 1);
    assert_eq!((ms(publish[0], "ts"), ms(publish[0], "dur")), (6.0, 0.0));
    assert_eq!(publish[0]["args"]["to"], "mq/orders");
    // At the broker (one hop later, 7 ms) until the ack arrives (20 ms).
    let message = of_cat(&ev, "message");
    assert_eq!(message.len(), 1);
    let m = message[0];
    assert_eq!((ms(m, "ts"), ms(m, "dur")), (7.0, 13.0));
    assert_eq!(m["args"]["outcome"], "acked");
    assert_eq!(m["args"]["deliveries"], 2);
    assert_eq!(thread_of(&ev, m), "mq/orders");
    // Delivery 1 at 7 ms: the worker gets it at 8, the ledger (down) refuses its call
    // at 9, the answer is back at 10, the nack reaches the broker at 11 and the
    // message goes out again at once: delivery 2, redelivered, acked at 20 ms (the
    // worker: 12 ms, the ledger 13 to 16, back at 17, 2 ms of work, 1 ms to the broker).
    let deliveries: Vec<(u64, bool, f64, f64, String)> = of_cat(&ev, "delivery")
        .iter()
        .map(|e| {
            (
                e["args"]["delivery"].as_u64().unwrap(),
                e["args"]["redelivered"].as_bool().unwrap(),
                ms(e, "ts"),
                ms(e, "dur"),
                e["args"]["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        deliveries,
        [
            (1, false, 7.0, 4.0, "nack (requeue)".to_owned()),
            (2, true, 11.0, 9.0, "ack".to_owned()),
        ]
    );
    assert!(
        of_cat(&ev, "delivery")
            .iter()
            .all(|d| d["args"]["parent"] == m["args"]["span"])
    );
    // The worker's two handlers, each with its call to the ledger.
    let handlers: Vec<(String, f64, f64, String)> = of_cat(&ev, "invocation")
        .iter()
        .filter(|e| e["args"]["delivery"].is_u64())
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                ms(e, "ts"),
                ms(e, "dur"),
                e["args"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        handlers,
        [
            (
                "worker/handle (msg #0, delivery 1)".to_owned(),
                8.0,
                2.0,
                "unavailable".to_owned()
            ),
            (
                "worker/handle (msg #0, delivery 2)".to_owned(),
                12.0,
                7.0,
                "ok".to_owned()
            ),
        ]
    );
    let calls: Vec<(String, f64, f64)> = timed(&ev, "call");
    assert_eq!(
        calls,
        [
            ("call ledger/put".to_owned(), 8.0, 2.0),
            ("call ledger/put".to_owned(), 12.0, 5.0)
        ]
    );
    // The broker hops: the publish, each delivery and its settlement; the ledger's
    // request and reply (the refused call reached no invocation).
    let mut h = hops(&ev);
    h.sort_unstable();
    assert_eq!(
        h,
        [
            "ack", "deliver", "deliver", "nack", "publish", "reply", "reply", "request", "request"
        ]
    );
    // Nothing was dead-lettered, nothing waited in the queue.
    assert!(of_cat(&ev, "queued").is_empty());
    assert_eq!(
        ev.iter()
            .filter(|e| e["ph"] == "X" && e["args"]["cut_at_trace_end"] == true)
            .count(),
        0
    );
}

#[test]
fn an_ack_timeout_sends_the_message_again() {
    // The failed handler does not answer the broker: the delivery times out 30 ms
    // after it left (37 ms), the message goes out again, and is acked at 46 ms.
    let (_, ev) = first_request(ORDERS, &["consumers.worker.on_failure=timeout"]);
    let deliveries: Vec<(u64, bool, f64, f64, String)> = of_cat(&ev, "delivery")
        .iter()
        .map(|e| {
            (
                e["args"]["delivery"].as_u64().unwrap(),
                e["args"]["redelivered"].as_bool().unwrap(),
                ms(e, "ts"),
                ms(e, "dur"),
                e["args"]["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        deliveries,
        [
            (1, false, 7.0, 30.0, "ack timeout".to_owned()),
            (2, true, 37.0, 9.0, "ack".to_owned()),
        ]
    );
    let m = of_cat(&ev, "message");
    assert_eq!((ms(m[0], "ts"), ms(m[0], "dur")), (7.0, 39.0));
    // The timed-out delivery has no settlement hop.
    let mut h = hops(&ev);
    h.retain(|n| ["ack", "nack", "deliver"].contains(n));
    h.sort_unstable();
    assert_eq!(h, ["ack", "deliver", "deliver"]);
}

#[test]
fn a_rejected_message_is_followed_into_its_dead_letter_queue() {
    // The reject reaches the broker at 11 ms: dead-lettered into mq/dlq at once,
    // delivered to the auditor (12 ms), 1 ms of work, acked at 14 ms.
    let (_, ev) = first_request(ORDERS, &["consumers.worker.on_failure=reject"]);
    let messages: Vec<(String, f64, f64, String)> = of_cat(&ev, "message")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                ms(e, "ts"),
                ms(e, "dur"),
                e["args"]["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        messages,
        [
            (
                "msg #0 in mq/orders".to_owned(),
                7.0,
                4.0,
                "dead-lettered (rejected)".to_owned()
            ),
            ("msg #0 in mq/dlq".to_owned(), 11.0, 3.0, "acked".to_owned()),
        ]
    );
    assert_eq!(
        timed(&ev, "delivery"),
        [
            ("delivery 1: reject".to_owned(), 7.0, 4.0),
            ("delivery 1: ack".to_owned(), 11.0, 3.0),
        ]
    );
    let mut h = hops(&ev);
    h.retain(|n| !["request", "reply"].contains(n));
    assert_eq!(
        h,
        [
            "publish",
            "deliver",
            "reject",
            "dead-letter",
            "deliver",
            "ack"
        ]
    );
}

#[test]
fn a_message_still_queued_when_the_run_ends_is_cut_there() {
    // Nobody reads mq/dlq: the trace waits for the rejected copy until the run ends,
    // and is cut at the last thing it saw (the dead-lettering, 11 ms).
    let text = ORDERS.replace(r#"queue = "mq/dlq""#, r#"queue = "mq/audit""#)
        + "[brokers.mq.queues.audit]\n";
    let (_, ev) = first_request(&text, &["consumers.worker.on_failure=reject"]);
    let dlq: Vec<&Value> = of_cat(&ev, "message")
        .into_iter()
        .filter(|e| e["name"] == "msg #0 in mq/dlq")
        .collect();
    assert_eq!(dlq.len(), 1);
    assert_eq!((ms(dlq[0], "ts"), ms(dlq[0], "dur")), (11.0, 0.0));
    assert_eq!(dlq[0]["args"]["cut_at_run_end"], true);
    assert_eq!(dlq[0]["args"]["outcome"], "still at the broker");
}

const TOPIC: &str = r#"
[simulation]
requests = 2
[network]
latency = "1ms"
[workloads.w]
target = "api/post"
arrivals = "constant"
rate = 1
[services.api.endpoints.post]
steps = [{ work = "5ms" }, { publish = "kafka/orders", confirms = true }]
[brokers.kafka]
preset = "kafka"
latency = "1ms"
[brokers.kafka.topics.orders]
partitions = 3
[consumers.billing]
topic = "kafka/orders"
steps = [{ work = "4ms" }]
[consumers.shipping]
topic = "kafka/orders"
steps = [{ work = "2ms" }]
"#;

#[test]
fn a_topic_record_shows_its_partition_and_offset_for_each_group() {
    // The second request's record: offset 1 of its partition (both requests have no
    // key, so both go to one partition), appended at 2.007 s; each group reads it.
    let (_, traces) = observed(
        "topic",
        TOPIC,
        &[],
        TraceSelect::Request {
            workload: WorkloadId(0),
            number: 2,
        },
    );
    let ev = events(&traces);
    check_shape(&ev);
    let records: Vec<&Value> = of_cat(&ev, "message");
    assert_eq!(records.len(), 2, "one copy per group");
    let partition = records[0]["args"]["partition"].as_u64().unwrap();
    assert!(partition < 3);
    for (r, group, work) in [(records[0], "billing", 4.0), (records[1], "shipping", 2.0)] {
        assert_eq!(r["args"]["offset"], 1);
        assert_eq!(r["args"]["partition"], partition);
        assert_eq!(r["args"]["group"], group);
        assert_eq!(r["args"]["outcome"], "handled");
        assert_eq!(r["name"], "msg #1 at offset 1");
        assert_eq!(
            thread_of(&ev, r),
            format!("kafka/orders/p{partition} ({group})")
        );
        // Appended at 7 ms after 2 s, delivered at once (1 ms hop), handled when the
        // handler ends: the group's position moves on then.
        assert_eq!((ms(r, "ts") - 1000.0, ms(r, "dur")), (7.0, 1.0 + work));
    }
    // The publisher waits for its confirm: 7 ms there, 8 ms back.
    let publish = of_cat(&ev, "publish");
    assert_eq!(publish.len(), 1);
    assert_eq!(
        (ms(publish[0], "ts") - 1000.0, ms(publish[0], "dur")),
        (6.0, 2.0)
    );
    assert!(
        publish[0]["name"]
            .as_str()
            .unwrap()
            .starts_with("publish msg #1 -> kafka/orders (waiting for the confirm)")
    );
}
