//! Reports read `crate::metrics` (plus the run's identity) and render it: the
//! `report.json` contract, the terminal summary, the time-series CSV. Nothing here
//! looks at the engine or the model.

pub mod attribution;
pub mod csv;
pub mod expect;
pub mod files;
pub mod html;
pub mod json;
pub mod numbers;
pub mod plots;
pub mod text;
pub mod trace;
pub mod views;

pub use files::{RUN_OUTPUTS, Staged, check_writable, write_all, write_all_staged};
pub use json::{Report, SCHEMA};

/// Who produced a report: what reproduces it.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub scenario: String,
    pub scenario_path: String,
    pub seed: u64,
    pub scenario_hash: u64,
    pub events: u64,
    pub requests_sent: u64,
    pub drained: bool,
    pub end_s: f64,
    pub warmup_s: f64,
}

impl RunInfo {
    /// For a report of an empty run: its shape, not its numbers.
    pub fn skeleton() -> RunInfo {
        RunInfo {
            scenario: String::new(),
            scenario_path: String::new(),
            seed: 0,
            scenario_hash: 0,
            events: 0,
            requests_sent: 0,
            drained: true,
            end_s: 0.0,
            warmup_s: 0.0,
        }
    }
}
