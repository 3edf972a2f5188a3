//! What a run measured. The model writes here while it runs; reports read only this,
//! never the engine's or the model's internals. Every entry carries its own name, so a
//! report needs nothing else to print it.

pub mod attribution;
pub mod consistency;
pub mod loghist;
pub mod series;
pub mod stats;
pub mod trace;

pub use series::{BucketExtras, ERROR_CLASSES, RowSink, Series, SeriesKind, SeriesRow};
pub use stats::{BatchMeans, MeanCi, Summary, TimeWeighted, student_t_995};

use crate::engine::{SimDuration, SimTime};
use crate::status::Status;

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

// The metrics of workloads, endpoints and edges are `repr(C)`: the counters every
// request touches come first, in one 64-byte line, then the summaries (each its own
// 64-byte-aligned block), then what errors and reports read. A request through a deep
// chain touches every endpoint's metrics on its way; in declaration order (Rust would
// sort the fields by alignment) each hop touches as few lines as can be.

/// One workload: the requests its clients sent, measured at the client.
#[derive(Debug)]
#[repr(C)]
pub struct WorkloadMetrics {
    /// Requests sent in the measured window.
    pub requests: u64,
    pub ok: u64,
    /// Ok answers that lost an optional part (an `all_settled` branch failed).
    pub degraded: u64,
    /// Sent and not answered when the run ended.
    pub in_flight: u64,
    /// Arrival to final answer, every answer (errors included).
    pub latency: Summary,
    pub errors: StatusCounts,
    pub name: String,
    pub target: String,
}

/// One endpoint, measured at the server.
#[derive(Debug)]
#[repr(C)]
pub struct EndpointMetrics {
    /// Requests that reached a replica (rejected ones included).
    pub arrivals: u64,
    /// Taken in (queued or started): what Little's law counts as arrivals.
    pub admitted: u64,
    /// Answered (any status).
    pub completed: u64,
    pub ok: u64,
    /// Worker-nanoseconds spent on this endpoint inside the measured window.
    pub busy_ns: u128,
    /// Answers nobody was waiting for any more (a caller anywhere up the chain had
    /// timed out or cancelled), and the worker time they took: work wasted.
    pub orphaned: u64,
    /// Requests given up at their propagated deadline: dropped from the queue unserved,
    /// or abandoned while being served (deadline-aware services only).
    pub expired: u64,
    /// Arrival at the replica to the start on a worker.
    pub queue_wait: Summary,
    /// Arrival at the replica to the answer leaving it.
    pub latency: Summary,
    /// Requests of this endpoint admitted and not yet answered (Little's L).
    pub in_system: TimeWeighted,
    /// Requests of this endpoint waiting for a worker.
    pub queue_length: TimeWeighted,
    pub orphaned_work_ns: u128,
    pub errors: StatusCounts,
    /// Turned away because the replica's queue was full.
    pub rejected: u64,
    /// Refused or failed at arrival by a fault (down, crash, error).
    pub faulted: u64,
    /// Workers of the service (all replicas), the denominator of utilization.
    pub workers: u64,
    pub name: String,
    pub service: String,
}

/// One caller -> endpoint edge, measured at the caller, through its client policy.
#[derive(Debug)]
#[repr(C)]
pub struct EdgeMetrics {
    /// Logical calls: what the caller's code asked for, however many attempts it took.
    pub calls: u64,
    /// Attempts sent over the network (retries and hedges included).
    pub attempts: u64,
    pub retries: u64,
    pub hedges: u64,
    pub ok: u64,
    /// Failed calls turned into a fallback answer.
    pub fallbacks: u64,
    /// Attempts cut by their per-try timeout, or calls by their deadline.
    pub timeouts: u64,
    /// Attempts abandoned (a join no longer needed them, another hedge won, the
    /// caller's deadline passed), and calls abandoned before their attempt left.
    pub cancelled: u64,
    /// Call start to the outcome the caller saw.
    pub latency: Summary,
    /// Logical calls answered by a hedge.
    pub hedges_won: u64,
    /// Logical calls that ended in failure, by final status (fallbacks excluded).
    pub errors: StatusCounts,
    /// Calls never sent: the deadline they inherited had already passed.
    pub expired: u64,
    /// Attempts refused before leaving the caller.
    pub rejected_breaker: u64,
    pub rejected_bulkhead: u64,
    pub rejected_rate_limit: u64,
    /// Retries the retry budget or the gRPC throttle refused.
    pub rejected_budget: u64,
    /// With a cache: calls answered from it, calls that went through, and hits that
    /// returned a value changed at the source since it was cached.
    /// The edge's policy has a cache (the counts below are then reported).
    pub cached: bool,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_stale: u64,
    pub breaker: Option<BreakerMetrics>,
    /// Requests and replies the network dropped (the caller only sees a timeout).
    pub lost_requests: u64,
    pub lost_replies: u64,
    /// Replies that arrived after the caller had given up (timed out or cancelled).
    pub late_replies: u64,
    pub name: String,
    pub policy: String,
}

#[derive(Debug, Clone)]
pub struct BreakerMetrics {
    /// (time, from, to) for every state change.
    pub changes: Vec<(SimTime, &'static str, &'static str)>,
    pub time_open: SimDuration,
    pub state_at_end: &'static str,
}

/// One scheduled fault and how much it touched.
#[derive(Debug, Clone)]
pub struct FaultMetrics {
    pub label: String,
    /// When it is in force, [from, until): plots shade this window.
    pub from: SimTime,
    pub until: SimTime,
    /// Requests or messages the fault actually changed: a fault that touched nothing
    /// proves nothing.
    pub affected: u64,
}

#[derive(Debug)]
pub struct Metrics {
    /// Statistics cover [window_start, window_end]: warmup excluded.
    pub window_start: SimTime,
    pub window_end: SimTime,
    pub workloads: Vec<WorkloadMetrics>,
    pub endpoints: Vec<EndpointMetrics>,
    pub edges: Vec<EdgeMetrics>,
    pub faults: Vec<FaultMetrics>,
    pub windows: Vec<WindowMetrics>,
    pub series: Series,
    pub consistency: consistency::Consistency,
    /// Per workload, where its p99 and p50 go (`[report] attribution`); empty when off.
    pub attribution: Vec<attribution::WorkloadAttribution>,
}

/// A workload's or endpoint's answers given in [from, until).
#[derive(Debug)]
pub struct WindowMetrics {
    /// "workloads" or "endpoints", and the name: where the window sits in report.json.
    pub section: &'static str,
    pub name: String,
    pub from: SimTime,
    pub until: SimTime,
    pub answers: u64,
    pub ok: u64,
    pub errors: StatusCounts,
    pub latency: Summary,
}

impl WindowMetrics {
    pub fn record(&mut self, now: SimTime, latency: SimDuration, status: Status) {
        if now < self.from || now >= self.until {
            return;
        }
        self.answers += 1;
        if status.is_ok() {
            self.ok += 1;
        } else {
            self.errors.add(status);
        }
        self.latency.record(latency);
    }
}

impl Metrics {
    pub fn window_s(&self) -> f64 {
        self.window_end
            .saturating_since(self.window_start)
            .as_secs_f64()
    }
}
