//! The scenario language: TOML in, a validated model `Spec` out, in two stages
//! (`raw` mirrors the file with spans; `build` checks it and builds the spec). Every
//! error names the file, line and column and what was expected there.

pub mod bounds;
pub mod build;
pub mod diag;
pub mod duration;
pub mod memory;
pub mod overrides;
pub mod raw;
pub mod run_error;

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
    /// The text that was run (overrides applied): where a run's error is located.
    pub text: String,
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
    let text = read(&label, path)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".to_owned());
    from_source(&label, &stem, &text, overrides)
}

/// Reads a scenario file. A file that is not UTF-8 is refused at the line and column
/// of its first invalid byte (TOML files are UTF-8), not with a bare I/O error.
pub fn read(label: &str, path: &Path) -> Result<String, ScenarioError> {
    let bytes = std::fs::read(path).map_err(|source| ScenarioError::Read {
        path: label.to_owned(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bad = e.as_bytes()[at];
        // The prefix is valid, so offsets up to `at` mean the same in the lossy text.
        let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let d = diag::Diagnostic::new(
            at..at + 1,
            format!("the file is not UTF-8 text: byte 0x{bad:02x} at offset {at}"),
            "TOML files are UTF-8: re-save the file as UTF-8",
        );
        ScenarioError::Invalid {
            rendered: diag::render(label, &text, std::slice::from_ref(&d), None),
            located: vec![diag::locate(label, &text, &d)],
        }
    })
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
        let span = e
            .span()
            .unwrap_or_else(|| unspanned_error_line(&text, e.message()));
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
        text,
    })
}

/// Where a syntax error the parser gave no span for is: the first line whose text, up
/// to and including it, fails with the same message (found by bisection over the lines,
/// so a few parses of the file). The toml parser reports a key of more than 80 dotted
/// parts ("recursion limit") without a span. Errors that are not syntax errors (a
/// missing top-level table) stay at the start of the file.
fn unspanned_error_line(text: &str, message: &str) -> std::ops::Range<usize> {
    let fails_by = |end: usize| {
        toml::from_str::<toml::Table>(&text[..end])
            .is_err_and(|e| e.span().is_none() && e.message() == message)
    };
    if !fails_by(text.len()) {
        return 0..0;
    }
    // Offsets just past each line's end: the candidate prefixes.
    let ends: Vec<usize> = text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .chain((!text.ends_with('\n')).then_some(text.len()))
        .collect();
    let first = ends.partition_point(|&end| !fails_by(end));
    let Some(&end) = ends.get(first) else {
        return 0..0;
    };
    let start = if first == 0 { 0 } else { ends[first - 1] };
    let line = &text[start..end];
    let indent = line.len() - line.trim_start().len();
    let len = line.trim().len().max(1);
    start + indent..start + indent + len
}

/// serde names Rust types ("expected i64"); a scenario author thinks in TOML values.
fn humane(message: &str) -> String {
    if message == "recursion limit" || message.starts_with("cannot recurse further") {
        return "nested too deeply: a key may have at most 80 dotted parts, and arrays and \
                inline tables may nest at most 80 levels (the TOML parser's limit)"
            .to_owned();
    }
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
