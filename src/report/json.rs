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
    /// True when the time series hit its row limit and stopped growing.
    pub timeseries_truncated: bool,
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
    pub errors: BTreeMap<String, u64>,
    /// Share of the service's workers busy with this endpoint.
    pub utilization: f64,
    pub queue_wait_ms: LatencyReport,
    pub latency_ms: LatencyReport,
    pub queue_length: QueueLengthReport,
    pub little: LittleReport,
}

#[derive(Serialize, Debug)]
pub struct EdgeReport {
    pub calls: u64,
    pub ok: u64,
    pub timeouts: u64,
    pub errors: BTreeMap<String, u64>,
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
    let lambda = per_second(e.arrivals - e.rejected, window_s);
    let w = e.latency.mean_ms() * 1e-3;
    EndpointReport {
        service: e.service.clone(),
        arrivals: e.arrivals,
        completed: e.completed,
        ok: e.ok,
        rejected: e.rejected,
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
                            calls: e.calls,
                            ok: e.ok,
                            timeouts: e.timeouts,
                            errors: errors(&e.errors),
                            lost_requests: e.lost_requests,
                            lost_replies: e.lost_replies,
                            late_replies: e.late_replies,
                            cancelled: e.cancelled,
                            latency_ms: latency(&e.latency),
                        },
                    )
                })
                .collect(),
            timeseries_truncated: m.series.truncated,
        }
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a report always serializes");
        s.push('\n');
        s
    }
}
