//! `report.json`, schema `meshsim.report/1`. The field names are a contract that tests
//! and CI pipelines read: add fields, never rename or remove them.

use super::RunInfo;
use crate::metrics::{EndpointMetrics, Metrics, StatusCounts, Summary};
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

pub fn latency(s: &Summary) -> LatencyReport {
    LatencyReport {
        count: s.count(),
        mean: s.mean_ms(),
        mean_ci99: s
            .mean_ci99_ms()
            .map(|ci| [ci.mean - ci.half_width, ci.mean + ci.half_width]),
        p50: s.quantile_ms(0.5),
        p90: s.quantile_ms(0.9),
        p99: s.quantile_ms(0.99),
        p999: s.quantile_ms(0.999),
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
                .map(|w| {
                    let answered = w.ok + w.errors.total();
                    (
                        w.name.clone(),
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
                        },
                    )
                })
                .collect(),
            endpoints: m
                .endpoints
                .iter()
                .map(|e| (e.name.clone(), endpoint(e, window_s)))
                .collect(),
            edges: m
                .edges
                .iter()
                .map(|e| {
                    (
                        e.name.clone(),
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
                            breaker: e.breaker.as_ref().map(|b| BreakerReport {
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
                            }),
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
                        },
                    )
                })
                .collect(),
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
