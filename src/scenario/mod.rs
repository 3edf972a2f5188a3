//! The scenario language: TOML in, a validated model `Spec` out, in two stages
//! (`raw` mirrors the file with spans; `build` checks it and builds the spec). Every
//! error names the file, line and column and what was expected there.

pub mod build;
pub mod diag;
pub mod duration;
pub mod overrides;
pub mod raw;

pub use build::ExpectSpec;
pub use diag::Located;

use crate::engine::rng::stable_hash;
use crate::model::Spec;
use std::path::Path;

/// A checked scenario, ready to run.
pub struct Scenario {
    pub path: String,
    pub name: String,
    pub description: String,
    pub spec: Spec,
    /// FNV-1a of the text that was run (overrides applied): with the seed, what
    /// reproduces a report.
    pub source_hash: u64,
    pub expectations: Vec<ExpectSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Override(String),
    #[error("{rendered}")]
    Invalid {
        rendered: String,
        located: Vec<Located>,
    },
}

impl ScenarioError {
    /// The located problems (empty for read and override errors).
    pub fn located(&self) -> &[Located] {
        match self {
            ScenarioError::Invalid { located, .. } => located,
            _ => &[],
        }
    }
}

pub fn load(path: &Path, overrides: &[String]) -> Result<Scenario, ScenarioError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: label.clone(),
        source,
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".to_owned());
    from_source(&label, &stem, &text, overrides)
}

/// Parses `text` (named `path` in messages), applying `--set` overrides first.
pub fn from_source(
    path: &str,
    default_name: &str,
    text: &str,
    overrides: &[String],
) -> Result<Scenario, ScenarioError> {
    let text = match overrides::apply(text, overrides) {
        Ok(t) => t,
        // The file itself is not TOML: report that against the file, below.
        Err(_) if toml::from_str::<toml::Table>(text).is_err() => text.to_owned(),
        Err(e) => return Err(ScenarioError::Override(e)),
    };
    let note = (!overrides.is_empty()).then_some("with the --set overrides applied");
    let invalid = |diags: Vec<diag::Diagnostic>| ScenarioError::Invalid {
        rendered: diag::render(path, &text, &diags, note),
        located: diags.iter().map(|d| diag::locate(path, &text, d)).collect(),
    };
    let raw: raw::RawScenario = toml::from_str(&text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        invalid(vec![diag::Diagnostic::new(
            span,
            humane(e.message().trim_end()),
            "here",
        )])
    })?;
    let built = build::build(&raw, default_name).map_err(invalid)?;
    check_expectation_paths(&built.spec, &built.expectations).map_err(invalid)?;
    Ok(Scenario {
        path: path.to_owned(),
        name: built.name,
        description: built.description,
        spec: built.spec,
        source_hash: stable_hash(text.as_bytes()),
        expectations: built.expectations,
    })
}

/// serde names Rust types ("expected i64"); a scenario author thinks in TOML values.
fn humane(message: &str) -> String {
    message
        .replace(
            "expected i64",
            "expected an integer from -9223372036854775808 to 9223372036854775807 (TOML's range)",
        )
        .replace("expected f64", "expected a number")
        .replace("expected a boolean", "expected true or false")
}

/// Every expectation must read a number that a report of this scenario has: an unknown
/// path is an error before the run, never a silent pass. The paths are checked against
/// the report of an empty run of the same system.
fn check_expectation_paths(
    spec: &crate::model::Spec,
    expectations: &[ExpectSpec],
) -> Result<(), Vec<diag::Diagnostic>> {
    if expectations.is_empty() {
        return Ok(());
    }
    let metrics = crate::model::World::new(spec.clone()).finish(crate::engine::SimTime::ZERO, true);
    let report =
        crate::report::Report::new(&crate::report::RunInfo::skeleton(), &metrics).json_value();
    let mut diags = Vec::new();
    for e in expectations {
        let view = match e.window {
            Some(w) => crate::report::json::window_view(&metrics.windows[w], metrics.window_end),
            None => report.clone(),
        };
        for path in e.check.paths() {
            if let Err(why) = crate::report::expect::resolve(&view, path) {
                diags.push(diag::Diagnostic::new(
                    e.span.clone(),
                    format!("unknown metric path: {why}"),
                    "a number in report.json (see the README for its schema)",
                ));
            }
        }
    }
    if diags.is_empty() { Ok(()) } else { Err(diags) }
}
