//! meshsim: a deterministic discrete-event simulator of how microservices talk to each
//! other. See ARCHITECTURE.md for the map: `engine` (time, events, random streams) knows
//! nothing of services; `model` knows nothing of TOML; `scenario` turns TOML into a
//! model; `metrics` is what a run measured; `report` renders metrics; `cli` is the
//! command line.

pub mod allocator;
pub mod cli;
pub mod engine;
pub mod exercise;
pub mod explore;
pub mod graph;
pub mod lint;
pub mod metrics;
pub mod model;
pub mod multi;
pub mod report;
pub mod scenario;
pub mod status;

use engine::{RunError, Stop};
use metrics::Metrics;
use report::{Report, RunInfo};
use scenario::Scenario;

/// A finished run: the report and the metrics it was made from.
pub struct FinishedRun {
    pub report: Report,
    pub metrics: Metrics,
}

impl FinishedRun {
    /// Did every `[[expect]]` hold?
    pub fn passed(&self) -> bool {
        self.report.expectations.iter().all(|e| e.passed)
    }
}

/// Runs a checked scenario and builds its report.
pub fn simulate(scenario: Scenario) -> Result<FinishedRun, RunError> {
    simulate_with_progress(scenario, &mut |_| Ok(()))
}

/// `simulate`, reporting progress every `model::PROGRESS_EVERY` events (the CLI's
/// progress bar and memory budget: an error stops the run); the outcome is the same
/// byte for byte.
pub fn simulate_with_progress(
    scenario: Scenario,
    progress: &mut dyn FnMut(model::Progress) -> Result<(), RunError>,
) -> Result<FinishedRun, RunError> {
    simulate_streaming(scenario, progress, None)
}

/// `simulate_with_progress`, the time-series rows streamed to `rows` as buckets close
/// (`report::csv::TimeseriesStream`) instead of kept in `metrics.series.rows`.
pub fn simulate_streaming(
    scenario: Scenario,
    progress: &mut dyn FnMut(model::Progress) -> Result<(), RunError>,
    rows: Option<Box<dyn metrics::RowSink>>,
) -> Result<FinishedRun, RunError> {
    simulate_observed(scenario, &model::trace::Observe::default(), progress, rows).map(|(o, _)| o)
}

/// `simulate_streaming`, also recording the traces `observe` asks for; the report is
/// the same byte for byte with or without them.
pub fn simulate_observed(
    scenario: Scenario,
    observe: &model::trace::Observe,
    progress: &mut dyn FnMut(model::Progress) -> Result<(), RunError>,
    rows: Option<Box<dyn metrics::RowSink>>,
) -> Result<(FinishedRun, metrics::trace::Traces), RunError> {
    let seed = scenario.spec.seed;
    let warmup_s = scenario.spec.warmup.as_secs_f64();
    let output = model::run_observed(scenario.spec, observe, progress, rows)?;
    let info = RunInfo {
        scenario: scenario.name,
        scenario_path: scenario.path.clone(),
        seed,
        scenario_hash: scenario.source_hash,
        events: output.stats.events,
        requests_sent: output.requests_sent,
        drained: output.stats.stop == Stop::Drained,
        end_s: output.metrics.window_end.as_secs_f64(),
        warmup_s,
    };
    let mut report = Report::new(&info, &output.metrics);
    // The report as JSON only when a check reads it (a 400-service chain spent 2% of
    // its run building a value nobody read).
    let json = if scenario.expectations.iter().any(|e| e.window.is_none()) {
        report.json_value()
    } else {
        serde_json::Value::Null
    };
    report.expectations = scenario
        .expectations
        .iter()
        .map(|e| {
            let (view, window_s) = match e.window {
                Some(w) => {
                    let m = &output.metrics.windows[w];
                    let until = m.until.min(output.metrics.window_end);
                    (
                        report::json::window_view(m, output.metrics.window_end),
                        Some([m.from.as_secs_f64(), until.as_secs_f64()]),
                    )
                }
                None => (json.clone(), None),
            };
            // Paths were checked against the report's shape before the run.
            let (value, passed) = e.check.evaluate(&view).unwrap_or((f64::NAN, false));
            report::json::ExpectationReport {
                check: e.text.clone(),
                window_s,
                value,
                passed,
            }
        })
        .collect();
    Ok((
        FinishedRun {
            report,
            metrics: output.metrics,
        },
        output.traces,
    ))
}
