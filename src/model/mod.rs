//! The systems meshsim simulates: services with worker pools and queues, handler
//! programs, the network, workloads. Models know nothing about TOML; they are built
//! from a `Spec` and write what they measure into `crate::metrics`.

pub mod arena;
pub mod backoff;
pub mod breaker;
pub mod broker;
pub mod client;
pub mod dist;
pub mod faults;
pub mod holds;
pub mod ledger;
pub mod policy;
pub mod retention;
pub mod routing;
pub mod saga;
pub mod spec;
pub mod trace;
pub mod world;

/// `Status` lives below both the model and the metrics (`crate::status`); this keeps
/// `model::status` and `model::Status` as the names the model's files use.
pub use crate::status::{self, Status, Translation};
pub use dist::Dist;
pub use spec::Spec;
pub use world::{Event, World};

use crate::engine::{Limits, RunError, RunStats, SimTime, Simulation, Stop};
use crate::metrics::Metrics;

/// Everything a run produced.
pub struct RunOutput {
    pub metrics: Metrics,
    /// The requests traced (`Observe::trace`); empty otherwise.
    pub traces: crate::metrics::trace::Traces,
    pub stats: RunStats,
    pub requests_sent: u64,
}

/// How far a run has come, reported every `PROGRESS_EVERY` events (for a progress bar).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub now: SimTime,
    /// The run's end, when it has a duration.
    pub end: Option<SimTime>,
    pub events: u64,
    /// Requests sent so far, those whose answer reached their client, and the run's
    /// request limit, when it has one.
    pub requests_sent: u64,
    pub requests_answered: u64,
    pub max_requests: Option<u64>,
}

/// Events between two progress reports: rare enough to cost nothing per event.
pub const PROGRESS_EVERY: u64 = 1 << 16;

/// Runs a system to its end (the duration, or drained after the request limit).
pub fn run(spec: Spec) -> Result<RunOutput, RunError> {
    run_with_progress(spec, &mut |_| Ok(()))
}

/// `run`, calling `progress` every `PROGRESS_EVERY` events. The engine pauses between
/// two events and resumes there, so the run is the same event for event as one call
/// (the engine has no wall clock; whoever watches the progress has). At each pause the
/// run's holds are checked (`holds`), then `progress` may stop the run with an error
/// (the CLI's memory budget).
pub fn run_with_progress(
    spec: Spec,
    progress: &mut dyn FnMut(Progress) -> Result<(), RunError>,
) -> Result<RunOutput, RunError> {
    run_observed(spec, &trace::Observe::default(), progress, None)
}

/// `run_with_progress`, the time-series rows given to `rows` as buckets close instead
/// of kept in the metrics.
pub fn run_streaming(
    spec: Spec,
    progress: &mut dyn FnMut(Progress) -> Result<(), RunError>,
    rows: Option<Box<dyn crate::metrics::RowSink>>,
) -> Result<RunOutput, RunError> {
    run_observed(spec, &trace::Observe::default(), progress, rows)
}

/// `run_streaming`, also recording what `observe` asks for (traces). The report is
/// the same byte for byte with or without it.
pub fn run_observed(
    spec: Spec,
    observe: &trace::Observe,
    progress: &mut dyn FnMut(Progress) -> Result<(), RunError>,
    rows: Option<Box<dyn crate::metrics::RowSink>>,
) -> Result<RunOutput, RunError> {
    let holds = holds::Holds::new(&spec.holds);
    let max_requests = spec.max_requests;
    let end = spec.duration.map(|d| SimTime::ZERO + d);
    let mut limits = Limits {
        end,
        max_events: spec.max_events,
        max_at_instant: spec.max_events_at_one_instant,
        pause_at_events: PROGRESS_EVERY,
    };
    let recorder = trace::Recorder::new(&spec, observe, spec.attribution);
    let mut world = World::new(spec);
    world.recorder = recorder;
    if let Some(sink) = rows {
        world.metrics.series.stream_to(sink);
    }
    let mut sim = Simulation::new(world);
    {
        let (world, sched) = sim.scheduler();
        world.start(sched);
    }
    let stats = loop {
        let stats = sim.run(limits)?;
        if stats.stop != Stop::Paused {
            break stats;
        }
        let (world, sched) = sim.scheduler();
        let now = sched.now();
        holds.check(world, sched.pending(), now, stats.events)?;
        progress(Progress {
            now,
            end,
            events: stats.events,
            requests_sent: world.requests_sent(),
            requests_answered: world.requests_answered(),
            max_requests,
        })?;
        limits.pause_at_events = stats.events.saturating_add(PROGRESS_EVERY);
    };
    let requests_sent = sim.model.requests_sent();
    let traces = sim.model.take_recorded();
    let metrics = sim
        .model
        .finish(stats.end_time, stats.stop == Stop::Drained);
    Ok(RunOutput {
        metrics,
        traces,
        stats,
        requests_sent,
    })
}
