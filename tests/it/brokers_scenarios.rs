//! The bundled broker scenarios (order_events_pubsub, email_dlq, hybrid_order), end to
//! end: the numbers that are exact by construction (routing counts under constant
//! arrivals, every term of each queue's conservation law, identities between consumer,
//! queue and effect counters) are asserted exactly; the random ones within bands. A
//! few runs change one setting (`--set`) to show the claim depends on it.

use super::support::{json, run_file};
use serde_json::Value;

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn report(name: &str, overrides: &[&str]) -> Value {
    let out = run_file(name, overrides);
    let failed: Vec<String> = out
        .report
        .expectations
        .iter()
        .filter(|e| !e.passed)
        .map(|e| format!("{} (value {})", e.check, e.value))
        .collect();
    if overrides.is_empty() {
        assert!(failed.is_empty(), "{name}: failed expectations: {failed:?}");
    }
    json(&out.report)
}

fn queue<'a>(r: &'a Value, name: &str) -> &'a Value {
    let q = &r["consistency"]["queues"][name];
    assert!(q.is_object(), "no queue {name} in the report");
    q
}

/// Every term of published = acked + dead_lettered.total + expired + dropped +
/// deduplicated + lost + publish_failed + in_flight_end, recomputed here; and the
/// dead-letter total is the sum of its reasons.
fn assert_conserved(r: &Value, name: &str) {
    let q = queue(r, name);
    let dl = &q["dead_lettered"];
    assert_eq!(
        n(&dl["total"]),
        n(&dl["rejected"]) + n(&dl["expired"]) + n(&dl["maxlen"]) + n(&dl["delivery_limit"]),
        "{name}: dead-letter reasons"
    );
    let terms = n(&q["acked"])
        + n(&dl["total"])
        + n(&q["expired"])
        + n(&q["dropped"])
        + n(&q["deduplicated"])
        + n(&q["lost"])
        + n(&q["publish_failed"])
        + n(&q["in_flight_end"]);
    assert_eq!(n(&q["published"]), terms, "{name}: conservation: {q}");
    assert_eq!(q["conserved"], true, "{name}");
}

/// A queue where every published copy was accepted, delivered once, acked, and nothing
/// else happened.
fn assert_clean(r: &Value, name: &str, copies: u64) {
    let q = queue(r, name);
    assert_conserved(r, name);
    for (field, want) in [
        ("published", copies),
        ("enqueued", copies),
        ("delivered", copies),
        ("acked", copies),
        ("redelivered", 0),
        ("expired", 0),
        ("dropped", 0),
        ("deduplicated", 0),
        ("lost", 0),
        ("publish_failed", 0),
        ("stale_acks", 0),
        ("in_flight_end", 0),
    ] {
        assert_eq!(n(&q[field]), want, "{name}.{field}");
    }
    assert_eq!(n(&q["dead_lettered"]["total"]), 0, "{name}: dead letters");
}

fn effect<'a>(r: &'a Value, name: &str) -> &'a Value {
    let e = &r["consistency"]["effects"][name];
    assert!(e.is_object(), "no effect {name} in the report");
    e
}

/// Applied exactly once for each of `ops` operations, and never otherwise.
fn assert_exactly_once(r: &Value, name: &str, ops: u64) {
    let e = effect(r, name);
    assert_eq!(n(&e["operations"]), ops, "{name}.operations");
    assert_eq!(n(&e["exactly_once"]), ops, "{name}.exactly_once");
    assert_eq!(n(&e["applied"]), ops, "{name}.applied");
    assert_eq!(n(&e["never"]), 0, "{name}.never");
    assert_eq!(n(&e["duplicated"]), 0, "{name}.duplicated");
    assert_eq!(n(&e["despite_failure"]), 0, "{name}.despite_failure");
}

fn consumer<'a>(r: &'a Value, name: &str) -> &'a Value {
    let c = &r["consistency"]["consumers"][name];
    assert!(c.is_object(), "no consumer {name} in the report");
    c
}

// ---- order_events_pubsub ----

#[test]
fn pubsub_routes_every_key_to_exactly_the_matching_queues() {
    let r = report("order_events_pubsub.toml", &[]);
    // Constant arrivals, 85/s in all: 1700 requests are 20 s, split by rate.
    let sent = [
        ("shoppers", 800),      // order.created
        ("cancellers", 200),    // order.cancelled
        ("card_payments", 400), // payment.succeeded
        ("refunds", 100),       // payment.refund.issued
        ("signups", 200),       // user.created
    ];
    for (w, count) in sent {
        assert_eq!(n(&r["workloads"][w]["requests"]), count, "{w}");
        assert_eq!(n(&r["workloads"][w]["ok"]), count, "{w}");
    }
    let ex = &r["consistency"]["exchanges"]["rabbit/events"];
    assert_eq!(ex["kind"], "topic");
    assert_eq!(n(&ex["published"]), 1700);
    assert_eq!(n(&ex["unroutable"]), 0);
    // order.created + order.cancelled; all but the three-word refund key; everything.
    assert_clean(&r, "rabbit/inventory", 800 + 200);
    assert_clean(&r, "rabbit/notifications", 800 + 200 + 400 + 200);
    assert_clean(&r, "rabbit/audit", 1700);
    assert_eq!(r["consistency"]["conserved"], true);
    // Each consumer handled its queue's copies, once each.
    for (c, copies) in [
        ("stock_keeper", 1000),
        ("notifier", 1600),
        ("auditor", 1700),
    ] {
        let k = consumer(&r, c);
        assert_eq!(n(&k["deliveries"]), copies, "{c}");
        assert_eq!(n(&k["handled_ok"]), copies, "{c}");
        assert_eq!(n(&k["handled_failed"]), 0, "{c}");
    }
    assert_exactly_once(&r, "update_stock", 1000);
    assert_exactly_once(&r, "notify", 1600);
    assert_exactly_once(&r, "audit", 1700);
    // Every message reached all its subscribers.
    let p = &r["consistency"]["propagation"];
    assert_eq!(n(&p["count"]), 1700);
    assert_eq!(n(&p["not_propagated"]), 0);
    assert!(p["p99"].as_f64().unwrap() < 100.0, "{p}");
}

#[test]
fn pubsub_star_is_one_word_and_hash_is_any() {
    // Binding notifications with `payment.#` instead of `payment.*` lets the
    // three-word refunds in too: exactly the 100 refunds more.
    let r = report(
        "order_events_pubsub.toml",
        &["brokers.rabbit.exchanges.events.bindings.3.key=payment.#"],
    );
    assert_clean(&r, "rabbit/notifications", 1600 + 100);
    assert_exactly_once(&r, "notify", 1700);
    // Dropping the audit queue's `#` binding (made to match nothing) leaves refunds
    // routed nowhere: unroutable, dropped silently by the exchange.
    let r = report(
        "order_events_pubsub.toml",
        &["brokers.rabbit.exchanges.events.bindings.5.key=nothing.matches.this"],
    );
    let ex = &r["consistency"]["exchanges"]["rabbit/events"];
    assert_eq!(n(&ex["published"]), 1700);
    assert_eq!(n(&ex["unroutable"]), 100);
    assert_eq!(n(&queue(&r, "rabbit/audit")["published"]), 0);
    assert_clean(&r, "rabbit/inventory", 1000);
    assert_clean(&r, "rabbit/notifications", 1600);
    // The refunds' messages had no subscriber at all: not counted in propagation.
    assert_eq!(n(&r["consistency"]["propagation"]["count"]), 1600);
}

// ---- email_dlq ----

#[test]
fn email_dlq_accounts_for_every_dead_letter_by_reason() {
    let r = report("email_dlq.toml", &[]);
    for q in [
        "rabbit/emails",
        "rabbit/receipts",
        "rabbit/newsletter",
        "rabbit/dead_letters",
    ] {
        assert_conserved(&r, q);
        let q = queue(&r, q);
        assert_eq!(n(&q["in_flight_end"]), 0);
        assert_eq!(n(&q["lost"]), 0);
        assert_eq!(n(&q["dropped"]), 0);
        assert_eq!(
            n(&q["expired"]),
            0,
            "expired messages went to the DLQ instead"
        );
    }
    let requests = |w: &str| n(&r["workloads"][w]["requests"]);
    let (signups, purchases, campaign) = (
        requests("signups"),
        requests("purchases"),
        requests("campaign"),
    );
    assert_eq!(signups + purchases + campaign, 4000);

    // emails: requeue on failure, delivery limit 3 counted on nacks.
    let emails = queue(&r, "rabbit/emails");
    let dl = &emails["dead_lettered"];
    let limit = n(&dl["delivery_limit"]);
    assert_eq!(n(&emails["published"]), signups);
    assert_eq!(
        n(&dl["total"]),
        limit,
        "only the delivery limit dead-letters here"
    );
    assert_eq!(n(&emails["acked"]) + limit, signups);
    let sender = consumer(&r, "email_sender");
    let failed = n(&sender["handled_failed"]);
    assert_eq!(n(&sender["deliveries"]), n(&emails["delivered"]));
    assert_eq!(n(&sender["handled_ok"]), n(&emails["acked"]));
    assert_eq!(n(&emails["delivered"]), n(&emails["acked"]) + failed);
    // Each failure either requeues (a redelivery follows) or is the third: dead letter.
    assert_eq!(n(&emails["redelivered"]), failed - limit);
    // No message is delivered more than three times.
    assert!(n(&emails["delivered"]) <= 3 * signups);
    // 0.3^3 = 2.7% of the signups, within about 4 standard deviations.
    let expected = 0.027 * signups as f64;
    let sd = (expected * (1.0 - 0.027)).sqrt();
    assert!(
        (limit as f64 - expected).abs() < 4.0 * sd,
        "{limit} dead letters, expected about {expected:.0}"
    );
    // Sent once per acked message; the dead-lettered ones never.
    let sent = effect(&r, "sent");
    assert_eq!(n(&sent["operations"]), signups);
    assert_eq!(n(&sent["exactly_once"]), n(&emails["acked"]));
    assert_eq!(n(&sent["never"]), limit);
    assert_eq!(n(&sent["duplicated"]), 0);

    // receipts: reject on failure, dead-lettered at once.
    let receipts = queue(&r, "rabbit/receipts");
    let rejected = n(&receipts["dead_lettered"]["rejected"]);
    assert_eq!(n(&receipts["published"]), purchases);
    assert_eq!(n(&receipts["dead_lettered"]["total"]), rejected);
    assert_eq!(n(&receipts["redelivered"]), 0);
    assert_eq!(n(&receipts["delivered"]), purchases);
    assert_eq!(
        n(&consumer(&r, "receipt_sender")["handled_failed"]),
        rejected
    );
    assert_eq!(n(&receipts["acked"]) + rejected, purchases);
    let expected = 0.05 * purchases as f64;
    let sd = (expected * 0.95).sqrt();
    assert!(
        (rejected as f64 - expected).abs() < 4.0 * sd,
        "{rejected} rejected"
    );
    assert_eq!(n(&effect(&r, "receipt")["never"]), rejected);

    // newsletter: TTL 2 s behind a consumer slowed from 10 s to 25 s.
    let news = queue(&r, "rabbit/newsletter");
    let expired = n(&news["dead_lettered"]["expired"]);
    assert_eq!(n(&news["published"]), campaign);
    assert_eq!(n(&news["dead_lettered"]["total"]), expired);
    assert!(expired > 20, "{expired} expired");
    // An expired message was never delivered: the rest were, once each.
    assert_eq!(n(&news["delivered"]), campaign - expired);
    assert_eq!(n(&news["acked"]), campaign - expired);
    assert_eq!(n(&effect(&r, "newsletter")["never"]), expired);

    // The dead-letter queue got every dead letter, and its consumer alerted once each.
    let dead = limit + rejected + expired;
    let dlq = queue(&r, "rabbit/dead_letters");
    assert_eq!(n(&dlq["published"]), dead);
    assert_eq!(n(&dlq["enqueued"]), dead);
    assert_eq!(n(&dlq["acked"]), dead);
    let alert = effect(&r, "alert");
    assert_eq!(n(&alert["applied"]), dead);
    assert_eq!(n(&alert["exactly_once"]), dead);
    // Not expected by any workload: no `never`.
    assert_eq!(n(&alert["never"]), 0);
    // A dead letter did not reach the subscriber it was published for.
    let p = &r["consistency"]["propagation"];
    assert_eq!(n(&p["not_propagated"]), dead);
    assert_eq!(n(&p["count"]), 4000 - dead);
}

#[test]
fn email_dlq_without_counted_nacks_never_hits_the_delivery_limit() {
    // RabbitMQ 4.x's default: nack(requeue) does not count towards the limit, so the
    // poison-free but flaky sends are retried until they succeed.
    let r = report(
        "email_dlq.toml",
        &["brokers.rabbit.queues.emails.nack_counts=false"],
    );
    let emails = queue(&r, "rabbit/emails");
    let signups = n(&r["workloads"]["signups"]["requests"]);
    assert_conserved(&r, "rabbit/emails");
    assert_eq!(n(&emails["dead_lettered"]["total"]), 0);
    assert_eq!(n(&emails["acked"]), signups);
    assert_exactly_once(&r, "sent", signups);
}

#[test]
fn email_dlq_ttl_does_not_run_in_the_consumers_prefetch_buffer() {
    // With unlimited prefetch the broker pushes every message to the slowed consumer
    // at once; messages wait in its buffer, where no TTL applies: none expire.
    let r = report(
        "email_dlq.toml",
        &["consumers.newsletter_sender.prefetch=0"],
    );
    let news = queue(&r, "rabbit/newsletter");
    let campaign = n(&r["workloads"]["campaign"]["requests"]);
    assert_conserved(&r, "rabbit/newsletter");
    assert_eq!(n(&news["dead_lettered"]["total"]), 0);
    assert_eq!(n(&news["acked"]), campaign);
    assert_exactly_once(&r, "newsletter", campaign);
}

// ---- hybrid_order ----

#[test]
fn hybrid_order_emails_every_successful_order_once() {
    let r = report("hybrid_order.toml", &[]);
    let w = &r["workloads"]["shoppers"];
    let ok = n(&w["ok"]);
    let errors: u64 = w["errors"].as_object().unwrap().values().map(n).sum();
    assert_eq!(n(&w["requests"]), 3000);
    assert_eq!(ok + errors, 3000);
    assert_eq!(n(&w["in_flight"]), 0);
    // Out of stock: about 3% (90 +- 4 sd).
    let refused = n(&w["errors"]["failed_precondition"]);
    assert!((50..=130).contains(&refused), "{refused} refused");
    // Only successful orders were published, each to both queues.
    let ex = &r["consistency"]["exchanges"]["rabbit/events"];
    assert_eq!(n(&ex["published"]), ok);
    assert_eq!(n(&ex["unroutable"]), 0);
    assert_clean(&r, "rabbit/emails", ok);
    assert_clean(&r, "rabbit/analytics", ok);
    assert_exactly_once(&r, "email", ok);
    assert_exactly_once(&r, "track", ok);
    let p = &r["consistency"]["propagation"];
    assert_eq!(n(&p["count"]), ok);
    assert_eq!(n(&p["not_propagated"]), 0);
    // The client does not wait for the email: its p99 is below the email worker's
    // median, and below the propagation median.
    let client_p99 = w["latency_ms"]["p99"].as_f64().unwrap();
    let email_p50 = r["endpoints"]["email_worker/handle"]["latency_ms"]["p50"]
        .as_f64()
        .unwrap();
    assert!(client_p99 < email_p50, "{client_p99} vs {email_p50}");
    assert!(client_p99 < p["p50"].as_f64().unwrap());
    assert!(p["p99"].as_f64().unwrap() < 500.0);
    // The retries were needed.
    let inv = &r["edges"]["api->inventory/check"];
    assert!(n(&inv["attempts"]) > n(&inv["calls"]));
    assert!(n(&inv["timeouts"]) > 0);
}

#[test]
fn hybrid_order_without_retries_fails_more_orders_but_emails_exactly_the_ok_ones() {
    let r = report(
        "hybrid_order.toml",
        &["policies.internal.retry.max_attempts=1"],
    );
    let w = &r["workloads"]["shoppers"];
    let ok = n(&w["ok"]);
    // Transient errors now reach the client (2% unavailable, ~2% timeouts)...
    assert!(n(&w["errors"]["unavailable"]) > 20);
    assert!(n(&w["errors"]["deadline_exceeded"]) > 20);
    // ...and still no failed order is emailed, no successful one is missed.
    assert_eq!(
        n(&r["consistency"]["exchanges"]["rabbit/events"]["published"]),
        ok
    );
    assert_clean(&r, "rabbit/emails", ok);
    assert_exactly_once(&r, "email", ok);
    assert_exactly_once(&r, "track", ok);
}
