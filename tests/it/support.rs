//! Helpers shared by the integration tests.

use meshsim::FinishedRun;
use meshsim::report::Report;
use meshsim::scenario::{self, ScenarioError};

/// Parses and runs a scenario given as text; panics with the rendered error if invalid.
pub fn run(text: &str, overrides: &[&str]) -> FinishedRun {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let sc = scenario::from_source("test.toml", "test", text, &overrides)
        .unwrap_or_else(|e| panic!("invalid scenario:\n{e}"));
    meshsim::simulate(sc).expect("run within its event budget")
}

/// Runs a bundled scenario file from scenarios/.
pub fn run_file(name: &str, overrides: &[&str]) -> FinishedRun {
    let path = format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let sc = scenario::from_source(&format!("scenarios/{name}"), name, &text, &overrides)
        .unwrap_or_else(|e| panic!("invalid scenario:\n{e}"));
    meshsim::simulate(sc).expect("run within its event budget")
}

/// The error a scenario text produces (it must be invalid).
pub fn error(text: &str) -> ScenarioError {
    match scenario::from_source("bad.toml", "bad", text, &[]) {
        Ok(_) => panic!("expected this scenario to be rejected:\n{text}"),
        Err(e) => e,
    }
}

/// (name, text) of every scenario under scenarios/, in name order.
pub fn bundled_scenarios() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

pub fn json(report: &Report) -> serde_json::Value {
    serde_json::from_str(&report.to_json()).unwrap()
}
