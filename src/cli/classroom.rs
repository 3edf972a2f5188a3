//! Commands for classrooms and CI: `validate` (with lint warnings), `lint`, `show`,
//! `new`, `exercise check`, and suggestions for a misspelled bundled name.

use super::{BUNDLED, invalid, source};
use crate::exercise::{Exercise, ExerciseError};
use crate::lint::{self, Severity};
use crate::report::numbers::plural;
use crate::scenario::{self, Scenario};
use clap::{Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ExerciseCommand {
    /// Run MY.toml against the exercise in DIR: exit 0 passed, 1 not yet, 2 invalid.
    Check { dir: PathBuf, scenario: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Template {
    /// A chain of synchronous calls (client -> a -> b).
    Chain,
    /// One request fanned out to three services in parallel.
    Fanout,
    /// A service that publishes work to a queue, and a consumer.
    Queue,
    /// An orchestrated saga with compensations.
    Saga,
}

impl Template {
    fn text(self) -> &'static str {
        match self {
            Template::Chain => include_str!("templates/chain.toml"),
            Template::Fanout => include_str!("templates/fanout.toml"),
            Template::Queue => include_str!("templates/queue.toml"),
            Template::Saga => include_str!("templates/saga.toml"),
        }
    }
}

/// The scenario and the text it was built from (overrides applied).
fn load_with_text(arg: &str, set: &[String]) -> Result<(Scenario, String), ExitCode> {
    let (path, stem, text) = source(arg).map_err(|e| invalid(&e))?;
    let sc = scenario::from_source(&path, &stem, &text, set).map_err(|e| invalid(&e))?;
    let applied = scenario::overrides::apply(&text, set).unwrap_or(text);
    Ok((sc, applied))
}

pub fn validate(arg: &str, set: &[String]) -> ExitCode {
    let (s, text) = match load_with_text(arg, set) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let findings = lint::lint(&s.spec, &text);
    eprint!("{}", lint::render(&s.path, &text, &findings));
    println!(
        "{}: ok ({}, {}, {}){}",
        s.path,
        plural(s.spec.services.len() as u64, "service"),
        plural(s.spec.endpoints.len() as u64, "endpoint"),
        plural(s.spec.workloads.len() as u64, "workload"),
        if findings.is_empty() {
            String::new()
        } else {
            format!(
                "; lint: {} (meshsim lint explains them)",
                lint::tally(&findings)
            )
        }
    );
    ExitCode::SUCCESS
}

pub fn lint(arg: &str, deny_warnings: bool, set: &[String]) -> ExitCode {
    let (s, text) = match load_with_text(arg, set) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let findings = lint::lint(&s.spec, &text);
    print!("{}", lint::render(&s.path, &text, &findings));
    println!("{}: {}", s.path, lint::tally(&findings));
    let worst = findings.iter().map(|f| f.severity).max();
    let fails = match worst {
        Some(Severity::Error) => true,
        Some(Severity::Warning) => deny_warnings,
        _ => false,
    };
    if fails {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

pub fn show(name: &str) -> ExitCode {
    match bundled(name) {
        Some((_, text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        None => invalid(&format!(
            "no bundled scenario `{name}`{}; `meshsim list` shows them all",
            suggestion(name)
                .map(|s| format!(": did you mean `{s}`?"))
                .unwrap_or_default()
        )),
    }
}

pub fn new(template: Template, file: &Path) -> ExitCode {
    if file.exists() {
        return invalid(&format!(
            "{} exists already: meshsim new does not overwrite a file",
            file.display()
        ));
    }
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Err(e) = crate::report::write_all(
        dir.unwrap_or(Path::new(".")),
        &[(&name, template.text().as_bytes().to_vec())],
    ) {
        eprintln!("cannot write {}: {e}", file.display());
        return ExitCode::from(2);
    }
    println!(
        "wrote {}: run it with `meshsim run {}`",
        file.display(),
        file.display()
    );
    ExitCode::SUCCESS
}

pub fn exercise(action: ExerciseCommand) -> ExitCode {
    match action {
        ExerciseCommand::Check { dir, scenario } => {
            let ex = match Exercise::load(&dir) {
                Ok(e) => e,
                Err(e) => return invalid(&e),
            };
            let label = scenario.display().to_string();
            let text = match std::fs::read_to_string(&scenario) {
                Ok(t) => t,
                Err(e) => return invalid(&format!("cannot read {label}: {e}")),
            };
            match ex.judge(&label, &text) {
                Ok(judged) => {
                    print!("{}", crate::exercise::render(&ex, &label, &judged));
                    // What a static look says too: often the reason a check fails.
                    if let Ok(sc) = scenario::from_source(&label, "answer", &text, &[]) {
                        let findings = lint::lint(&sc.spec, &text);
                        if !findings.is_empty() {
                            println!(
                                "lint: {} (`meshsim lint {label}` explains them)",
                                lint::tally(&findings)
                            );
                        }
                    }
                    if judged.iter().all(|j| j.passed) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e @ (ExerciseError::Exercise(_) | ExerciseError::Scenario(_))) => invalid(&e),
                Err(e @ ExerciseError::Run(_)) => invalid(&e),
            }
        }
    }
}

fn bundled(name: &str) -> Option<(&'static str, &'static str)> {
    BUNDLED
        .iter()
        .find(|(f, _)| f.trim_end_matches(".toml") == name || *f == name)
        .copied()
}

/// The bundled scenario closest to a misspelled name, if one is close.
pub fn suggestion(name: &str) -> Option<&'static str> {
    let name = name.trim_end_matches(".toml");
    BUNDLED
        .iter()
        .map(|(f, _)| f.trim_end_matches(".toml"))
        .map(|b| (edit_distance(name, b), b))
        .filter(|(d, b)| *d <= (b.len() / 3).max(2))
        .min()
        .map(|(_, b)| b)
}

/// A path that does not exist, with a suggestion if it looks like a misspelled
/// bundled name.
pub fn with_suggestion(arg: &str) -> String {
    let bare = !arg.contains('/') && !arg.contains('\\');
    match suggestion(arg).filter(|_| bare && !Path::new(arg).exists()) {
        Some(s) => format!("{arg} (no such file or bundled scenario; did you mean `{s}`?)"),
        None => arg.to_owned(),
    }
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every template's name and text (tests check each is a valid, runnable scenario).
    fn templates() -> Vec<(&'static str, &'static str)> {
        [
            ("chain", Template::Chain),
            ("fanout", Template::Fanout),
            ("queue", Template::Queue),
            ("saga", Template::Saga),
        ]
        .into_iter()
        .map(|(n, t)| (n, t.text()))
        .collect()
    }

    #[test]
    fn every_template_is_a_valid_scenario_that_meets_its_expectations() {
        for (name, text) in templates() {
            let sc = scenario::from_source(name, name, text, &[])
                .unwrap_or_else(|e| panic!("template {name}:\n{e}"));
            let outcome = crate::simulate(sc).expect("runs");
            assert!(
                outcome.passed(),
                "template {name}: {:?}",
                outcome.report.expectations
            );
        }
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("chian", "chain"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("retry_strom", "retry_storm"), 2);
    }

    #[test]
    fn misspelled_bundled_names_get_a_suggestion() {
        assert_eq!(suggestion("chian_165ms"), Some("chain_165ms"));
        assert_eq!(suggestion("retry_strom.toml"), Some("retry_storm"));
        assert_eq!(suggestion("something_else_entirely"), None);
    }
}
