//! What a run measured. The model writes here while it runs; reports read only this,
//! never the engine's or the model's internals. Every entry carries its own name, so a
//! report needs nothing else to print it.

pub mod series;
pub mod stats;

pub use series::{Series, SeriesKind, SeriesRow};
pub use stats::{BatchMeans, MeanCi, Summary, TimeWeighted, student_t_995};

use crate::engine::SimTime;
use crate::model::Status;

/// Counts per status code, errors only (ok is counted apart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts([u64; Status::COUNT]);

impl StatusCounts {
    pub fn add(&mut self, s: Status) {
        self.0[s.index()] += 1;
    }
    pub fn get(&self, s: Status) -> u64 {
        self.0[s.index()]
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    /// Non-zero entries in status-code order.
    pub fn iter(&self) -> impl Iterator<Item = (Status, u64)> + '_ {
        Status::ALL
            .into_iter()
            .map(|s| (s, self.get(s)))
            .filter(|&(_, n)| n > 0)
    }
}

/// One workload: the requests its clients sent, measured at the client.
#[derive(Debug)]
pub struct WorkloadMetrics {
    pub name: String,
    pub target: String,
    /// Requests sent in the measured window.
    pub requests: u64,
    pub ok: u64,
    /// Ok answers that lost an optional part (an `all_settled` branch failed).
    pub degraded: u64,
    pub errors: StatusCounts,
    /// Arrival to final answer, every answer (errors included).
    pub latency: Summary,
    /// Sent and not answered when the run ended.
    pub in_flight: u64,
}

/// One endpoint, measured at the server.
#[derive(Debug)]
pub struct EndpointMetrics {
    pub name: String,
    pub service: String,
    /// Requests that reached a replica (rejected ones included).
    pub arrivals: u64,
    /// Turned away because the replica's queue was full.
    pub rejected: u64,
    /// Answered (any status).
    pub completed: u64,
    pub ok: u64,
    pub errors: StatusCounts,
    /// Arrival at the replica to the start on a worker.
    pub queue_wait: Summary,
    /// Arrival at the replica to the answer leaving it.
    pub latency: Summary,
    /// Requests of this endpoint waiting for a worker.
    pub queue_length: TimeWeighted,
    /// Requests of this endpoint admitted and not yet answered (Little's L).
    pub in_system: TimeWeighted,
    /// Worker-nanoseconds spent on this endpoint inside the measured window.
    pub busy_ns: u128,
    /// Workers of the service (all replicas), the denominator of utilization.
    pub workers: u64,
}

/// One caller -> endpoint edge, measured at the caller.
#[derive(Debug)]
pub struct EdgeMetrics {
    pub name: String,
    pub calls: u64,
    pub ok: u64,
    pub timeouts: u64,
    /// Error answers that arrived (timeouts are counted apart).
    pub errors: StatusCounts,
    /// Sent to the latency of the outcome the caller saw (timeouts included).
    pub latency: Summary,
    /// Requests and replies the network dropped (the caller only sees a timeout).
    pub lost_requests: u64,
    pub lost_replies: u64,
    /// Replies that arrived after the caller had given up (timed out or cancelled).
    pub late_replies: u64,
    /// Calls abandoned because a parallel join no longer needed them.
    pub cancelled: u64,
}

#[derive(Debug)]
pub struct Metrics {
    /// Statistics cover [window_start, window_end]: warmup excluded.
    pub window_start: SimTime,
    pub window_end: SimTime,
    pub workloads: Vec<WorkloadMetrics>,
    pub endpoints: Vec<EndpointMetrics>,
    pub edges: Vec<EdgeMetrics>,
    pub series: Series,
}

impl Metrics {
    pub fn window_s(&self) -> f64 {
        self.window_end
            .saturating_since(self.window_start)
            .as_secs_f64()
    }
}
