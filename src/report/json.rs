//! `report.json`, schema `meshsim.report/1`. The field names are a contract that tests
//! and CI pipelines read: add fields, never rename or remove them.

use super::RunInfo;
use crate::metrics::consistency::{
    Consistency, ConsumerMetrics, EffectMetrics, ExchangeMetrics, FlowMetrics, IdempotencyMetrics,
    SagaMetrics, TopicMetrics,
};
use crate::metrics::{
    BreakerMetrics, EdgeMetrics, EndpointMetrics, Metrics, StatusCounts, Summary, WorkloadMetrics,
};
use serde::Serialize;
use std::collections::BTreeMap;

pub const SCHEMA: &str = "meshsim.report/1";

#[derive(Serialize, Debug)]
pub struct Report {
    pub schema: &'static str,
    pub scenario: String,
    pub seed: u64,
    /// FNV-1a of the scenario text that ran, in hex.
    pub scenario_hash: String,
    /// Simulated seconds from zero to the end of the run.
    pub duration_s: f64,
    /// Simulated seconds the statistics cover (the run minus the warmup).
    pub window_s: f64,
    pub warmup_s: f64,
    pub events: u64,
    /// "end_time" (the duration ran out) or "drained" (the request limit was reached
    /// and everything in flight finished).
    pub stop: &'static str,
    pub requests_sent: u64,
    pub workloads: BTreeMap<String, WorkloadReport>,
    pub endpoints: BTreeMap<String, EndpointReport>,
    pub edges: BTreeMap<String, EdgeReport>,
    /// Queues, topics, effects, sagas and idempotency stores: present only when the
    /// scenario has some (reports of other scenarios stay as they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<ConsistencyReport>,
    /// Every scheduled fault and how many requests or messages it touched.
    pub faults: Vec<FaultReport>,
    /// The scenario's `[[expect]]` checks, evaluated on this report.
    pub expectations: Vec<ExpectationReport>,
    /// True when the time series hit its row limit and stopped growing.
    pub timeseries_truncated: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct FaultReport {
    pub fault: String,
    pub affected: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct ExpectationReport {
    pub check: String,
    /// [from_s, until_s] when the check reads a time window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_s: Option<[f64; 2]>,
    pub value: f64,
    pub passed: bool,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct LatencyReport {
    pub count: u64,
    pub mean: f64,
    /// The mean's 99% confidence interval by batch means; absent for short runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_ci99: Option<[f64; 2]>,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Serialize, Debug)]
pub struct WorkloadReport {
    pub target: String,
    pub requests: u64,
    pub ok: u64,
    pub degraded: u64,
    pub errors: BTreeMap<String, u64>,
    /// Errors / answers.
    pub error_rate: f64,
    pub in_flight: u64,
    /// Answers (ok or not) per simulated second of the window.
    pub throughput_rps: f64,
    pub latency_ms: LatencyReport,
    /// Where the time of the requests at p99 and at p50 goes (`[report] attribution`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<AttributionReport>,
}

/// A workload's critical-path attribution: see docs/traces.md.
#[derive(Serialize, Debug, Clone)]
pub struct AttributionReport {
    /// Requests at or above the p99 value's histogram bucket, largest share first.
    pub p99: Vec<ShareReport>,
    /// Requests in the p50 value's histogram bucket.
    pub p50: Vec<ShareReport>,
    pub p99_requests: u64,
    pub p50_requests: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct ShareReport {
    /// "service/endpoint".
    #[serde(rename = "where")]
    pub place: String,
    /// queue_wait, work, network, backoff, connection or waiting_on_callee.
    pub what: &'static str,
    pub share: f64,
    /// Mean milliseconds per request of the set.
    pub mean_ms: f64,
}

fn attribution(a: &crate::metrics::attribution::WorkloadAttribution) -> AttributionReport {
    let shares = |v: &[crate::metrics::attribution::Share]| {
        v.iter()
            .map(|s| ShareReport {
                place: s.place.clone(),
                what: s.what.name(),
                share: s.share,
                mean_ms: s.mean_ms,
            })
            .collect()
    };
    AttributionReport {
        p99: shares(&a.p99),
        p50: shares(&a.p50),
        p99_requests: a.p99_requests,
        p50_requests: a.p50_requests,
    }
}

#[derive(Serialize, Debug)]
pub struct QueueLengthReport {
    pub mean: f64,
    pub max: u64,
}

/// Little's law, L = lambda W, checked on the endpoint's own numbers.
#[derive(Serialize, Debug)]
pub struct LittleReport {
    /// Time-average number of admitted requests in the endpoint.
    pub l: f64,
    /// Admitted arrivals per second.
    pub lambda_rps: f64,
    /// Mean time in the endpoint, seconds.
    pub w_s: f64,
    /// |L - lambda W| / L.
    pub relative_error: f64,
}

#[derive(Serialize, Debug)]
pub struct EndpointReport {
    pub service: String,
    pub arrivals: u64,
    pub completed: u64,
    pub ok: u64,
    pub rejected: u64,
    /// Refused or failed at arrival by a fault.
    pub faulted: u64,
    /// Taken in: arrivals = admitted + rejected + faulted.
    pub admitted: u64,
    pub errors: BTreeMap<String, u64>,
    /// Share of the service's workers busy with this endpoint.
    pub utilization: f64,
    pub queue_wait_ms: LatencyReport,
    pub latency_ms: LatencyReport,
    pub queue_length: QueueLengthReport,
    pub little: LittleReport,
    /// Answers nobody waited for any more, and the worker time they took.
    pub orphaned: u64,
    pub orphaned_work_ms: f64,
    /// Requests given up at their propagated deadline: dropped from the queue
    /// unserved, or abandoned while being served.
    pub expired: u64,
}

#[derive(Serialize, Debug)]
pub struct EdgeReport {
    pub policy: String,
    /// Logical calls (what the caller's code asked for).
    pub calls: u64,
    /// Attempts sent (retries and hedges included).
    pub attempts: u64,
    pub retries: u64,
    /// Attempts per logical call.
    pub amplification: f64,
    pub hedges: u64,
    pub hedges_won: u64,
    pub ok: u64,
    /// Failed calls, by final status.
    pub errors: BTreeMap<String, u64>,
    pub fallbacks: u64,
    /// Attempts cut by their per-try timeout, and calls by their deadline.
    pub timeouts: u64,
    /// Calls never sent because the deadline they inherited had already passed.
    pub expired: u64,
    /// Attempts refused before leaving the caller, and retries refused.
    pub rejected: RejectedReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReport>,
    pub lost_requests: u64,
    pub lost_replies: u64,
    pub late_replies: u64,
    pub cancelled: u64,
    pub latency_ms: LatencyReport,
}

/// Where asynchronous messages went and how often effects applied, over the whole run
/// (warmup included: a message published during warmup must still be accounted for).
///
/// Every table is keyed by name. Queue names are `BROKER/QUEUE` (`rabbit/payments`),
/// consumer groups `BROKER/TOPIC@GROUP` (`events/orders@billing`), topics
/// `BROKER/TOPIC`, exchanges `BROKER/EXCHANGE`; idempotency stores by endpoint. None
/// has a dot, so an expectation reads them unquoted:
/// `consistency.queues.rabbit/payments.dead_lettered.total == 0`,
/// `consistency.effects.charge.duplicated == 0`.
#[derive(Serialize, Debug)]
pub struct ConsistencyReport {
    pub queues: BTreeMap<String, FlowReport>,
    pub groups: BTreeMap<String, FlowReport>,
    pub exchanges: BTreeMap<String, ExchangeReport>,
    pub topics: BTreeMap<String, TopicReport>,
    pub consumers: BTreeMap<String, ConsumerReport>,
    pub effects: BTreeMap<String, EffectReport>,
    pub sagas: BTreeMap<String, SagaReport>,
    pub idempotency: BTreeMap<String, IdempotencyReport>,
    /// Publish to every subscriber having handled the message, in ms.
    pub propagation: PropagationReport,
    /// Every queue and group conserved its messages.
    pub conserved: bool,
}

/// One queue, or one consumer group on a topic. published = acked + dead_lettered.total
/// + expired + dropped + deduplicated + lost + publish_failed + in_flight_end.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct FlowReport {
    /// Publishes aimed here (lost and refused ones included; one per copy).
    pub published: u64,
    /// Accepted by the broker.
    pub enqueued: u64,
    pub delivered: u64,
    /// Deliveries of a message delivered before.
    pub redelivered: u64,
    /// Acked (queues), or committed past for the first time (groups).
    pub acked: u64,
    pub dead_lettered: DeadLetterReport,
    /// TTL or retention passed before anyone handled it (without a DLQ).
    pub expired: u64,
    /// Gone without a dead-letter queue to go to, or skipped.
    pub dropped: u64,
    /// Dropped by the broker as a duplicate (deduplication window).
    pub deduplicated: u64,
    /// Never reached the broker, and the publisher was not told.
    pub lost: u64,
    /// Refused or unconfirmed, and the publisher was told.
    pub publish_failed: u64,
    /// Acks for deliveries the broker had already taken back (handled twice).
    pub stale_acks: u64,
    /// Waiting, delivered-unacked, or unconsumed when the run ended.
    pub in_flight_end: u64,
    /// Most messages waiting or unacked at once (queues); largest lag (groups).
    pub max_depth: u64,
    /// Messages of one key handled after a later-published message of that key.
    pub ordering_violations: u64,
    /// Groups only: messages not yet committed at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_end: Option<u64>,
    pub conserved: bool,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct DeadLetterReport {
    pub total: u64,
    pub rejected: u64,
    pub expired: u64,
    pub maxlen: u64,
    pub delivery_limit: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ExchangeReport {
    pub kind: &'static str,
    pub published: u64,
    /// Routed to no queue: dropped (a confirm still says ok).
    pub unroutable: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct TopicReport {
    pub partitions: u32,
    pub published: u64,
    pub appended: u64,
    /// `appended`, per partition (index = partition).
    pub appended_per_partition: Vec<u64>,
    pub lost: u64,
    pub publish_failed: u64,
    /// Removed by retention (consumed or not).
    pub retention_removed: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ConsumerReport {
    pub subscription: String,
    pub deliveries: u64,
    pub handled_ok: u64,
    pub handled_failed: u64,
    /// Deliveries the processed-messages store recognised and skipped.
    pub duplicates_skipped: u64,
    /// Handlers rolled back because a concurrent duplicate committed first.
    pub rolled_back: u64,
    pub rebalances: u64,
    pub partitions_moved: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct EffectReport {
    /// Applications in all.
    pub applied: u64,
    /// Operations that applied it, or should have.
    pub operations: u64,
    pub exactly_once: u64,
    /// Operations that should have applied it and never did.
    pub never: u64,
    /// Operations that applied it more than once.
    pub duplicated: u64,
    pub max_count: u64,
    /// Operations that applied it although their request was answered with an error.
    pub despite_failure: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct SagaReport {
    /// "orchestrated" or "choreography".
    pub kind: &'static str,
    pub started: u64,
    pub completed: u64,
    pub compensated: u64,
    /// A compensation failed too: left inconsistent.
    pub compensation_failed: u64,
    /// Still running when the run ended.
    pub in_flight: u64,
    /// Per action, the sagas that left it done because its compensation failed
    /// (orchestrated; empty for a choreography).
    pub uncompensated: BTreeMap<String, u64>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct IdempotencyReport {
    pub stored: u64,
    /// Retries answered from the store without running the handler.
    pub replayed: u64,
    /// Retries that found the first request still running.
    pub conflicts: u64,
}

/// A latency summary (ms), plus the messages some subscriber never handled.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct PropagationReport {
    #[serde(flatten)]
    pub latency_ms: LatencyReport,
    pub not_propagated: u64,
}

fn flow(f: &FlowMetrics) -> FlowReport {
    let d = &f.dead_lettered;
    FlowReport {
        published: f.published,
        enqueued: f.enqueued,
        delivered: f.delivered,
        redelivered: f.redelivered,
        acked: f.acked,
        dead_lettered: DeadLetterReport {
            total: d.total(),
            rejected: d.rejected,
            expired: d.expired,
            maxlen: d.maxlen,
            delivery_limit: d.delivery_limit,
        },
        expired: f.expired,
        dropped: f.dropped,
        deduplicated: f.deduplicated,
        lost: f.lost,
        publish_failed: f.publish_failed,
        stale_acks: f.stale_acks,
        in_flight_end: f.in_flight_end,
        max_depth: f.max_depth,
        ordering_violations: f.ordering_violations,
        lag_end: (f.kind == "group").then_some(f.lag_end),
        conserved: f.conserved(),
    }
}

/// The `consistency` object; None when the run had nothing asynchronous to report.
pub fn consistency(c: &Consistency) -> Option<ConsistencyReport> {
    if c.is_empty() {
        return None;
    }
    let flows = |kind: &str| {
        c.flows
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| (f.name.clone(), flow(f)))
            .collect()
    };
    Some(ConsistencyReport {
        queues: flows("queue"),
        groups: flows("group"),
        exchanges: c
            .exchanges
            .iter()
            .map(|e| (e.name.clone(), exchange(e)))
            .collect(),
        topics: c
            .topics
            .iter()
            .map(|t| (t.name.clone(), topic(t)))
            .collect(),
        consumers: c
            .consumers
            .iter()
            .map(|k| (k.name.clone(), consumer(k)))
            .collect(),
        effects: c
            .effects
            .iter()
            .map(|e| (e.name.clone(), effect(e)))
            .collect(),
        sagas: c.sagas.iter().map(|s| (s.name.clone(), saga(s))).collect(),
        idempotency: c
            .idempotency
            .iter()
            .map(|i| (i.endpoint.clone(), idempotency(i)))
            .collect(),
        propagation: PropagationReport {
            latency_ms: latency(&c.propagation),
            not_propagated: c.not_propagated,
        },
        conserved: c.conserved(),
    })
}

fn exchange(e: &ExchangeMetrics) -> ExchangeReport {
    ExchangeReport {
        kind: e.kind,
        published: e.published,
        unroutable: e.unroutable,
    }
}

fn topic(t: &TopicMetrics) -> TopicReport {
    TopicReport {
        partitions: t.partitions,
        published: t.published,
        appended: t.appended,
        appended_per_partition: t.appended_per_partition.clone(),
        lost: t.lost,
        publish_failed: t.publish_failed,
        retention_removed: t.retention_removed,
    }
}

fn consumer(k: &ConsumerMetrics) -> ConsumerReport {
    ConsumerReport {
        subscription: k.subscription.clone(),
        deliveries: k.deliveries,
        handled_ok: k.handled_ok,
        handled_failed: k.handled_failed,
        duplicates_skipped: k.duplicates_skipped,
        rolled_back: k.rolled_back,
        rebalances: k.rebalances,
        partitions_moved: k.partitions_moved,
    }
}

fn effect(e: &EffectMetrics) -> EffectReport {
    EffectReport {
        applied: e.applied,
        operations: e.operations,
        exactly_once: e.exactly_once,
        never: e.never,
        duplicated: e.duplicated,
        max_count: e.max_count,
        despite_failure: e.despite_failure,
    }
}

/// A saga's counts. Its in-flight count, when the metrics hold none, is what started
/// and has not ended either way.
fn saga(s: &SagaMetrics) -> SagaReport {
    let in_flight = if s.in_flight > 0 {
        s.in_flight
    } else {
        s.started
            .saturating_sub(s.completed)
            .saturating_sub(s.compensated)
            .saturating_sub(s.compensation_failed)
    };
    SagaReport {
        kind: s.kind,
        started: s.started,
        completed: s.completed,
        compensated: s.compensated,
        compensation_failed: s.compensation_failed,
        in_flight,
        uncompensated: s.uncompensated.clone(),
    }
}

fn idempotency(i: &IdempotencyMetrics) -> IdempotencyReport {
    IdempotencyReport {
        stored: i.stored,
        replayed: i.replayed,
        conflicts: i.conflicts,
    }
}

pub fn latency(s: &Summary) -> LatencyReport {
    let [p50, p90, p99, p999] = s.quantiles_ms([0.5, 0.9, 0.99, 0.999]);
    LatencyReport {
        count: s.count(),
        mean: s.mean_ms(),
        mean_ci99: s
            .mean_ci99_ms()
            .map(|ci| [ci.mean - ci.half_width, ci.mean + ci.half_width]),
        p50,
        p90,
        p99,
        p999,
        max: s.max_ms(),
    }
}

#[derive(Serialize, Debug)]
pub struct CacheReport {
    pub hits: u64,
    pub misses: u64,
    /// Hits that returned a value changed at the source since it was cached.
    pub stale: u64,
    pub hit_ratio: f64,
}

#[derive(Serialize, Debug)]
pub struct RejectedReport {
    pub breaker: u64,
    pub bulkhead: u64,
    pub rate_limit: u64,
    pub budget: u64,
}

#[derive(Serialize, Debug)]
pub struct BreakerReport {
    pub transitions: Vec<TransitionReport>,
    pub time_open_s: f64,
    pub state_at_end: &'static str,
}

#[derive(Serialize, Debug)]
pub struct TransitionReport {
    pub t_s: f64,
    pub from: &'static str,
    pub to: &'static str,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn errors(c: &StatusCounts) -> BTreeMap<String, u64> {
    c.iter().map(|(s, n)| (s.name().to_owned(), n)).collect()
}

fn per_second(n: u64, window_s: f64) -> f64 {
    if window_s > 0.0 {
        n as f64 / window_s
    } else {
        0.0
    }
}

fn endpoint(e: &EndpointMetrics, window_s: f64) -> EndpointReport {
    let l = e.in_system.mean();
    let lambda = per_second(e.admitted, window_s);
    let w = e.latency.mean_ms() * 1e-3;
    EndpointReport {
        service: e.service.clone(),
        arrivals: e.arrivals,
        completed: e.completed,
        ok: e.ok,
        rejected: e.rejected,
        faulted: e.faulted,
        admitted: e.admitted,
        errors: errors(&e.errors),
        utilization: if window_s > 0.0 && e.workers > 0 {
            e.busy_ns as f64 / (e.workers as f64 * window_s * 1e9)
        } else {
            0.0
        },
        queue_wait_ms: latency(&e.queue_wait),
        latency_ms: latency(&e.latency),
        queue_length: QueueLengthReport {
            mean: e.queue_length.mean(),
            max: e.queue_length.max(),
        },
        little: LittleReport {
            l,
            lambda_rps: lambda,
            w_s: w,
            relative_error: if l > 0.0 {
                (l - lambda * w).abs() / l
            } else {
                0.0
            },
        },
        orphaned: e.orphaned,
        orphaned_work_ms: e.orphaned_work_ns as f64 * 1e-6,
        expired: e.expired,
    }
}

fn workload(
    w: &WorkloadMetrics,
    attribution: Option<AttributionReport>,
    window_s: f64,
) -> WorkloadReport {
    let answered = w.ok + w.errors.total();
    WorkloadReport {
        target: w.target.clone(),
        requests: w.requests,
        ok: w.ok,
        degraded: w.degraded,
        errors: errors(&w.errors),
        error_rate: ratio(w.errors.total(), answered),
        in_flight: w.in_flight,
        throughput_rps: per_second(answered, window_s),
        latency_ms: latency(&w.latency),
        attribution,
    }
}

fn edge(e: &EdgeMetrics) -> EdgeReport {
    EdgeReport {
        policy: e.policy.clone(),
        calls: e.calls,
        attempts: e.attempts,
        retries: e.retries,
        amplification: ratio(e.attempts, e.calls),
        hedges: e.hedges,
        hedges_won: e.hedges_won,
        ok: e.ok,
        errors: errors(&e.errors),
        fallbacks: e.fallbacks,
        timeouts: e.timeouts,
        expired: e.expired,
        rejected: RejectedReport {
            breaker: e.rejected_breaker,
            bulkhead: e.rejected_bulkhead,
            rate_limit: e.rejected_rate_limit,
            budget: e.rejected_budget,
        },
        breaker: e.breaker.as_ref().map(breaker),
        cache: e.cached.then(|| CacheReport {
            hits: e.cache_hits,
            misses: e.cache_misses,
            stale: e.cache_stale,
            hit_ratio: ratio(e.cache_hits, e.cache_hits + e.cache_misses),
        }),
        lost_requests: e.lost_requests,
        lost_replies: e.lost_replies,
        late_replies: e.late_replies,
        cancelled: e.cancelled,
        latency_ms: latency(&e.latency),
    }
}

fn breaker(b: &BreakerMetrics) -> BreakerReport {
    BreakerReport {
        transitions: b
            .changes
            .iter()
            .map(|&(t, from, to)| TransitionReport {
                t_s: t.as_secs_f64(),
                from,
                to,
            })
            .collect(),
        time_open_s: b.time_open.as_secs_f64(),
        state_at_end: b.state_at_end,
    }
}

impl Report {
    pub fn new(info: &RunInfo, m: &Metrics) -> Report {
        let window_s = m.window_s();
        Report {
            schema: SCHEMA,
            scenario: info.scenario.clone(),
            seed: info.seed,
            scenario_hash: format!("{:016x}", info.scenario_hash),
            duration_s: info.end_s,
            window_s,
            warmup_s: info.warmup_s,
            events: info.events,
            stop: if info.drained { "drained" } else { "end_time" },
            requests_sent: info.requests_sent,
            workloads: m
                .workloads
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let blame = m.attribution.get(i).map(attribution);
                    (w.name.clone(), workload(w, blame, window_s))
                })
                .collect(),
            endpoints: m
                .endpoints
                .iter()
                .map(|e| (e.name.clone(), endpoint(e, window_s)))
                .collect(),
            edges: m.edges.iter().map(|e| (e.name.clone(), edge(e))).collect(),
            consistency: consistency(&m.consistency),
            faults: m
                .faults
                .iter()
                .map(|f| FaultReport {
                    fault: f.label.clone(),
                    affected: f.affected,
                })
                .collect(),
            expectations: Vec::new(),
            timeseries_truncated: m.series.truncated,
        }
    }

    pub fn json_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a report always serializes")
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a report always serializes");
        s.push('\n');
        s
    }
}

/// What a time window measured, shaped like the report it refines:
/// `{"workloads": {NAME: {...}}}` or `{"endpoints": {NAME: {...}}}`.
pub fn window_view(
    w: &crate::metrics::WindowMetrics,
    run_end: crate::engine::SimTime,
) -> serde_json::Value {
    // A window left open (no `until`) ends with the run.
    let span_s = w.until.min(run_end).saturating_since(w.from).as_secs_f64();
    let entry = serde_json::json!({
        "answers": w.answers,
        "ok": w.ok,
        "errors": errors(&w.errors),
        "error_rate": ratio(w.errors.total(), w.answers),
        "throughput_rps": per_second(w.answers, span_s),
        "latency_ms": latency(&w.latency),
    });
    serde_json::json!({ w.section: { w.name.clone(): entry } })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::{SimDuration, SimTime};
    use crate::metrics::Series;
    use crate::metrics::consistency::*;

    /// Two queues (one that lost track of a message) and a consumer group, with one of
    /// everything else.
    pub(crate) fn sample_consistency() -> Consistency {
        let mut payments = FlowMetrics {
            name: "rabbit/payments".into(),
            kind: "queue",
            published: 10,
            enqueued: 10,
            delivered: 12,
            redelivered: 2,
            acked: 7,
            stale_acks: 1,
            in_flight_end: 1,
            max_depth: 4,
            ordering_violations: 1,
            ..Default::default()
        };
        payments.dead_lettered.rejected = 1;
        payments.dead_lettered.delivery_limit = 1;
        let billing = FlowMetrics {
            name: "events/orders@billing".into(),
            kind: "group",
            published: 5,
            enqueued: 5,
            delivered: 5,
            acked: 3,
            in_flight_end: 2,
            max_depth: 3,
            lag_end: 2,
            ..Default::default()
        };
        let audit = FlowMetrics {
            name: "rabbit/audit".into(),
            kind: "queue",
            published: 3,
            acked: 1,
            ..Default::default()
        };
        let mut propagation = Summary::default();
        for _ in 0..3 {
            propagation.record(SimDuration::from_millis(15));
        }
        Consistency {
            flows: vec![payments, billing, audit],
            exchanges: vec![ExchangeMetrics {
                name: "rabbit/orders".into(),
                kind: "topic",
                published: 13,
                unroutable: 1,
            }],
            topics: vec![TopicMetrics {
                name: "events/orders".into(),
                partitions: 3,
                published: 5,
                appended: 5,
                appended_per_partition: vec![2, 0, 3],
                ..Default::default()
            }],
            consumers: vec![ConsumerMetrics {
                name: "billing".into(),
                subscription: "events/orders@billing".into(),
                deliveries: 5,
                handled_ok: 3,
                handled_failed: 2,
                duplicates_skipped: 1,
                ..Default::default()
            }],
            effects: vec![EffectMetrics {
                name: "charge".into(),
                applied: 1002,
                operations: 1000,
                exactly_once: 998,
                never: 0,
                duplicated: 2,
                max_count: 2,
                despite_failure: 0,
            }],
            sagas: vec![SagaMetrics {
                name: "checkout".into(),
                kind: "orchestrated",
                started: 10,
                completed: 6,
                compensated: 2,
                compensation_failed: 1,
                in_flight: 0,
                uncompensated: [("payments/charge".to_owned(), 1)].into(),
            }],
            idempotency: vec![IdempotencyMetrics {
                endpoint: "payments/charge".into(),
                stored: 100,
                replayed: 3,
                conflicts: 1,
            }],
            propagation,
            not_propagated: 4,
            lag_rows: vec![
                LagRow {
                    start: SimTime::ZERO,
                    end: SimTime::from_nanos(1_000_000_000),
                    flow: 0,
                    depth: 4,
                },
                LagRow {
                    start: SimTime::ZERO,
                    end: SimTime::from_nanos(1_000_000_000),
                    flow: 1,
                    depth: 3,
                },
            ],
        }
    }

    pub(crate) fn metrics(consistency: Consistency) -> Metrics {
        Metrics {
            window_start: SimTime::ZERO,
            window_end: SimTime::from_nanos(2_000_000_000),
            workloads: Vec::new(),
            endpoints: Vec::new(),
            edges: Vec::new(),
            faults: Vec::new(),
            windows: Vec::new(),
            series: Series::new(SimDuration::from_secs(1), Vec::new()),
            consistency,
            attribution: Vec::new(),
        }
    }

    #[test]
    fn no_consistency_object_without_queues_effects_sagas_or_stores() {
        let m = metrics(Consistency::default());
        let r = Report::new(&RunInfo::skeleton(), &m);
        assert!(r.consistency.is_none());
        let json = r.to_json();
        assert!(!json.contains("consistency"), "{json}");
        assert!(json.contains("\"edges\": {},\n  \"faults\": []"), "{json}");
    }

    #[test]
    fn consistency_object_has_every_table_in_order() {
        let m = metrics(sample_consistency());
        let r = Report::new(&RunInfo::skeleton(), &m);
        let json = r.to_json();
        // Right after the edges, tables in their documented order.
        let at = |key: &str| {
            json.find(key)
                .unwrap_or_else(|| panic!("no {key} in {json}"))
        };
        let order = [
            "\"edges\"",
            "\"consistency\"",
            "\"queues\"",
            "\"groups\"",
            "\"exchanges\"",
            "\"topics\"",
            "\"consumers\"",
            "\"effects\"",
            "\"sagas\"",
            "\"idempotency\"",
            "\"propagation\"",
            "\"not_propagated\"",
            "\"faults\"",
        ];
        for pair in order.windows(2) {
            assert!(at(pair[0]) < at(pair[1]), "{pair:?} out of order");
        }
        let v = r.json_value();
        let c = &v["consistency"];
        let q = &c["queues"]["rabbit/payments"];
        let keys = [
            "published",
            "enqueued",
            "delivered",
            "redelivered",
            "acked",
            "dead_lettered",
            "expired",
            "dropped",
            "deduplicated",
            "lost",
            "publish_failed",
            "stale_acks",
            "in_flight_end",
            "max_depth",
            "ordering_violations",
            "conserved",
        ];
        assert_eq!(q.as_object().unwrap().len(), keys.len(), "{q}");
        for k in keys {
            assert!(q.get(k).is_some(), "queue lacks {k}");
        }
        assert_eq!(q["published"], 10);
        assert_eq!(q["redelivered"], 2);
        assert_eq!(q["stale_acks"], 1);
        assert_eq!(
            q["dead_lettered"],
            serde_json::json!({"total": 2, "rejected": 1, "expired": 0, "maxlen": 0, "delivery_limit": 1})
        );
        assert_eq!(q["conserved"], true);
        assert!(q.get("lag_end").is_none(), "queues have no lag");
        assert_eq!(c["queues"]["rabbit/audit"]["conserved"], false);
        assert!(c["queues"].get("events/orders@billing").is_none());
        let g = &c["groups"]["events/orders@billing"];
        assert_eq!(
            (g["lag_end"].as_u64(), g["conserved"].as_bool()),
            (Some(2), Some(true))
        );
        assert_eq!(
            c["exchanges"]["rabbit/orders"],
            serde_json::json!({"kind": "topic", "published": 13, "unroutable": 1})
        );
        assert_eq!(
            c["topics"]["events/orders"],
            serde_json::json!({"partitions": 3, "published": 5, "appended": 5,
                "appended_per_partition": [2, 0, 3], "lost": 0, "publish_failed": 0,
                "retention_removed": 0})
        );
        assert_eq!(
            c["consumers"]["billing"],
            serde_json::json!({"subscription": "events/orders@billing", "deliveries": 5,
                "handled_ok": 3, "handled_failed": 2, "duplicates_skipped": 1, "rolled_back": 0,
                "rebalances": 0, "partitions_moved": 0})
        );
        assert_eq!(
            c["effects"]["charge"],
            serde_json::json!({"applied": 1002, "operations": 1000, "exactly_once": 998,
                "never": 0, "duplicated": 2, "max_count": 2, "despite_failure": 0})
        );
        // in_flight not stored: started - completed - compensated - compensation_failed.
        assert_eq!(
            c["sagas"]["checkout"],
            serde_json::json!({"kind": "orchestrated", "started": 10, "completed": 6,
                "compensated": 2, "compensation_failed": 1, "in_flight": 1,
                "uncompensated": {"payments/charge": 1}})
        );
        assert_eq!(
            c["idempotency"]["payments/charge"],
            serde_json::json!({"stored": 100, "replayed": 3, "conflicts": 1})
        );
        let p = &c["propagation"];
        assert_eq!(p["count"], 3);
        assert_eq!(
            (p["p50"].as_f64(), p["p99"].as_f64()),
            (Some(15.0), Some(15.0))
        );
        assert_eq!(p["max"], 15.0);
        assert_eq!(p["not_propagated"], 4);
        assert_eq!(c["conserved"], false);
    }

    #[test]
    fn saga_in_flight_is_taken_as_stored_and_never_underflows() {
        let mut c = sample_consistency();
        c.sagas[0].in_flight = 7;
        assert_eq!(consistency(&c).unwrap().sagas["checkout"].in_flight, 7);
        c.sagas[0].in_flight = 0;
        c.sagas[0].started = 1;
        assert_eq!(consistency(&c).unwrap().sagas["checkout"].in_flight, 0);
    }

    #[test]
    fn expectations_address_names_with_slashes_and_at_signs() {
        let m = metrics(sample_consistency());
        let v = Report::new(&RunInfo::skeleton(), &m).json_value();
        let value = |check: &str| {
            let c = crate::report::expect::parse(check).unwrap();
            c.evaluate(&v).unwrap()
        };
        assert_eq!(
            value("consistency.effects.charge.duplicated == 2"),
            (2.0, true)
        );
        assert_eq!(
            value("consistency.queues.rabbit/payments.dead_lettered.total == 2"),
            (2.0, true)
        );
        assert_eq!(
            value("consistency.groups.events/orders@billing.lag_end <= 2"),
            (2.0, true)
        );
        assert_eq!(
            value("consistency.queues.rabbit/audit.conserved == 1"),
            (0.0, false)
        );
        assert_eq!(value("consistency.propagation.p99 < 20"), (15.0, true));
        assert_eq!(
            value("consistency.idempotency.payments/charge.replayed > 0"),
            (3.0, true)
        );
    }
}
